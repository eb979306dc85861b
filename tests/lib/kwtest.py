"""kwtest - a tiny TAP runner for keyward's black-box tests.

A test module defines functions named test_*; run_tests() runs each in a
fresh temporary directory (the working directory of every command, with
KEYWARD_DATA_DIR pointing at its "var" subdirectory) and prints TAP:
"1..N", then "ok N - name" or "not ok N - name" with "# " diagnostics.

Standard library only. The binary is $KEYWARD_BIN (default build/keyward).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import traceback

BIN = os.path.abspath(os.environ.get("KEYWARD_BIN", "build/keyward"))
TIMEOUT = 60


class _State:
    tmp = None  # the current test's directory
    stderr_log = []  # every byte any command wrote to stderr in this test


def tmpdir():
    """The current test's private directory."""
    return _State.tmp


def data_dir():
    """The data directory commands use unless told otherwise."""
    return os.path.join(_State.tmp, "var")


def stderr_log():
    """All stderr output of the current test's commands, as bytes."""
    return b"".join(_State.stderr_log)


def _base_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWARD_")}
    env["KEYWARD_DATA_DIR"] = data_dir()
    return env


def _env(env):
    full_env = _base_env()
    for k, v in (env or {}).items():
        if v is None:
            full_env.pop(k, None)
        else:
            full_env[k] = v
    return full_env


def popen(args, env=None, **kwargs):
    """Starts keyward in the test's directory and environment (see run_bytes)."""
    return subprocess.Popen([BIN] + list(args), env=_env(env), cwd=_State.tmp, **kwargs)


def run_bytes(args, stdin=None, env=None):
    """Runs keyward with args (str or bytes items); returns (rc, stdout, stderr) as bytes.

    env entries override the base environment; a value of None removes the
    variable. stdin is str, bytes or None (then stdin is empty, not a terminal).
    """
    full_env = _env(env)
    if isinstance(stdin, str):
        stdin = stdin.encode()
    proc = subprocess.run(
        [BIN] + list(args),
        input=stdin if stdin is not None else b"",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=full_env,
        cwd=_State.tmp,
        timeout=TIMEOUT,
    )
    _State.stderr_log.append(proc.stderr)
    return proc.returncode, proc.stdout, proc.stderr


def run(args, stdin=None, env=None):
    """Like run_bytes, with stdout and stderr decoded as UTF-8 text."""
    rc, out, err = run_bytes(args, stdin, env)
    return rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


class Failure(AssertionError):
    pass


def check(cond, msg="check failed"):
    if not cond:
        raise Failure(msg)


def eq(got, want, what="value"):
    if got != want:
        raise Failure("%s: got %r, want %r" % (what, got, want))


def ok_run(args, stdin=None, env=None, rc=0):
    """run() that insists on exit status rc; returns (stdout, stderr)."""
    got, out, err = run(args, stdin, env)
    if got != rc:
        raise Failure(
            "keyward %s: exit %d, want %d\nstdout: %s\nstderr: %s"
            % (" ".join(str(a) for a in args), got, rc, out, err)
        )
    return out, err


def run_tests(module_globals):
    """Runs every test_* function of the module in definition order; exits 1 if one failed."""
    tests = [
        (name, fn)
        for name, fn in module_globals.items()
        if name.startswith("test_") and callable(fn)
    ]
    print("1..%d" % len(tests), flush=True)
    failed = 0
    for i, (name, fn) in enumerate(tests, 1):
        _State.tmp = tempfile.mkdtemp(prefix="kwcli-")
        _State.stderr_log = []
        try:
            fn()
            print("ok %d - %s" % (i, name), flush=True)
        except Exception:  # a failed check or an unexpected error
            failed += 1
            print("not ok %d - %s" % (i, name))
            for line in traceback.format_exc().splitlines():
                print("# " + line)
            sys.stdout.flush()
        finally:
            shutil.rmtree(_State.tmp, ignore_errors=True)
    sys.exit(1 if failed else 0)
