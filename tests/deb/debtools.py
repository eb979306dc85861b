"""debtools - what tests/deb/test_deb.py is made of: a small TAP runner of
dependent cases, commands, the man page's and the unit's text, `keyward
serve` over HTTP, the check of an strace log against the unit's sandbox, and
the throwaway root. Standard library only.
"""

import fcntl
import http.client
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import traceback

# The checks every black-box test uses, from tests/lib.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from kwtest import Failure, check, eq  # noqa: E402,F401 (test_deb.py takes them from here)

CMD_TIMEOUT = 300
IS_ROOT = os.geteuid() == 0

# ---------------------------------------------------------------- TAP ----


class Skip(Exception):
    pass


class NotRun(Exception):
    pass


CASES = []


def case(needs_root=False, after=()):
    """Registers a test case, run in the order of definition. Without root a
    case that needs_root is skipped; a case whose `after` cases did not pass
    fails at once."""

    def wrap(fn):
        CASES.append((fn, needs_root, tuple(after)))
        return fn

    return wrap


def note(text):
    """Prints text as TAP diagnostics."""
    for line in str(text).splitlines():
        print("# " + line)
    sys.stdout.flush()


def run_cases():
    """Runs every case; prints the plan and "ok"/"not ok" lines; returns the exit code."""
    print("1..%d" % len(CASES), flush=True)
    passed = set()
    failed = 0
    for i, (fn, needs_root, after) in enumerate(CASES, 1):
        name = fn.__name__[len("test_"):] if fn.__name__.startswith("test_") else fn.__name__
        try:
            if needs_root and not IS_ROOT:
                raise Skip("needs root (dpkg -i into a throwaway root)")
            broken = [a.__name__ for a in after if a.__name__ not in passed]
            if broken:
                raise NotRun("not run: %s failed or was skipped" % ", ".join(broken))
            fn()
            passed.add(fn.__name__)
            print("ok %d - %s" % (i, name), flush=True)
        except Skip as why:
            print("ok %d - %s # SKIP %s" % (i, name, why), flush=True)
        except NotRun as why:
            failed += 1
            print("not ok %d - %s" % (i, name))
            note(why)
        except Exception:  # a failed check or an unexpected error
            failed += 1
            print("not ok %d - %s" % (i, name))
            note(traceback.format_exc())
    return 1 if failed else 0


def sh(args, timeout=CMD_TIMEOUT, ok=True, **kwargs):
    """Runs a command; returns (rc, stdout, stderr) as text. ok: insist on exit 0."""
    proc = subprocess.run(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=timeout,
        **kwargs,
    )
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    if ok and proc.returncode != 0:
        raise Failure(
            "%s: exit %d\nstdout: %s\nstderr: %s" % (" ".join(args), proc.returncode, out, err)
        )
    return proc.returncode, out, err


# ------------------------------------------------- man page, unit file ----


def unroff(text):
    """Roff source to plain text: font escapes dropped, \\- to -, quotes."""
    text = re.sub(r"\\f[BIRP]|\\f\(..", "", text)
    return text.replace("\\-", "-").replace("\\(dq", '"').replace("\\(em", "-").replace("\\e", "\\")


def man_section(source, title):
    """The lines of the roff source between `.SH TITLE` and the next `.SH`."""
    lines, inside = [], False
    for line in source.splitlines():
        if line.startswith(".SH"):
            inside = line[3:].strip().strip('"') == title
            continue
        if inside:
            lines.append(line)
    check(lines, "the man page has no section %s" % title)
    return lines


def tp_tags(lines):
    """The tag line of every .TP entry, as plain text."""
    return [unroff(lines[i + 1]) for i, l in enumerate(lines[:-1]) if l.strip() == ".TP"]


def help_commands(text):
    """The command names that `keyward --help` lists under "Commands:"."""
    names, inside = [], False
    for line in text.splitlines():
        if line.strip() == "Commands:":
            inside = True
            continue
        if inside:
            if not line.startswith("  "):
                break
            names.append(re.split(r"\s{2,}", line.strip())[0])
    return names


def unit_values(path, name):
    """The values of every `name=` line of a unit file, in order."""
    values = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^%s=(.*)$" % re.escape(name), line.strip())
            if m:
                values.append(m.group(1).strip())
    return values


# ---------------------------------------------------- `keyward serve` ----


def request(port, method, path, body=None, headers=None):
    """One HTTP request to 127.0.0.1:port; returns (status, JSON body or raw bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = json.dumps(body).encode() if body is not None else None
    hdrs = dict(headers or {})
    if data is not None:
        hdrs["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=hdrs)
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    try:
        return resp.status, json.loads(raw) if raw else None
    except ValueError:
        return resp.status, raw


FIRST_RUN = re.compile(
    r"First run: created the account \"Default\" \((acc_\w+)\).*?Password:\s+(\S+).*?"
    r"Root key:\s+(kw_root_\w+)",
    re.S,
)


class Serve:
    """`keyward serve` started by argv (listening on 127.0.0.1:0) in a session
    of its own. Reads the port from the "listening" event on stderr, and
    stdout until "keyward is serving". stop() signals the process whose pid
    main_pid() returns (argv's own process unless told otherwise)."""

    def __init__(self, argv, env=None, main_pid=None):
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, start_new_session=True)
        self.main_pid = main_pid or (lambda: self.proc.pid)
        self.out, self.err, self.port = b"", b"", None
        deadline = time.monotonic() + 60
        while self.port is None or b"keyward is serving at" not in self.out:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.kill()
                raise Failure("keyward serve did not start: %r %r" % (self.out, self.err[-2000:]))
            ready, _, _ = select.select([self.proc.stdout, self.proc.stderr], [], [], left)
            for f in ready:
                chunk = os.read(f.fileno(), 65536)
                if f is self.proc.stdout:
                    self.out += chunk
                else:
                    self.err += chunk
            m = re.search(rb'"event":"listening","detail":"http://[^"]*:(\d+)"', self.err)
            if m:
                self.port = int(m.group(1))

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = self.proc.communicate()
        self.out += out
        self.err += err

    def stop(self):
        """SIGTERM; returns the exit status; collects the rest of the output."""
        if self.proc.poll() is None:
            os.kill(self.main_pid(), signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
            return "no exit within 60 s of SIGTERM"
        self.out += out
        self.err += err
        return self.proc.returncode


# ------------------------------------------------ the unit's sandbox ----

_GROUPS = {}


def syscall_group(name):
    """The system calls of a systemd group (@name), its subgroups expanded."""
    if name not in _GROUPS:
        _, out, _ = sh(["systemd-analyze", "syscall-filter", name])
        calls = set()
        for line in out.splitlines()[1:]:
            word = line.strip()
            if not word or word.startswith("#"):
                continue
            calls |= syscall_group(word) if word.startswith("@") else {word}
        _GROUPS[name] = calls
    return _GROUPS[name]


def allowed_syscalls(unit):
    """What the unit's SystemCallFilter= lines allow, applied in systemd's order:
    the first line is the allow list, later ones add or (with ~) remove."""
    allowed = None
    for value in unit_values(unit, "SystemCallFilter"):
        deny = value.startswith("~")
        calls = set()
        for n in value.lstrip("~").split():
            calls |= syscall_group(n) if n.startswith("@") else {n}
        if allowed is None:
            check(not deny, "the first SystemCallFilter= must be an allow list")
            allowed = calls
        elif deny:
            allowed -= calls
        else:
            allowed |= calls
    check(allowed, "the unit has no SystemCallFilter=")
    return allowed


EXEC_KEYWARD = re.compile(r'^\d+\s+execve\("[^"]*/keyward"')


def traced_pid(trace):
    """The pid of keyward in an `strace -f -o trace` log: the one that executed it."""
    with open(trace, encoding="utf-8", errors="replace") as f:
        for line in f:
            if EXEC_KEYWARD.match(line):
                return int(line.split()[0])
    raise Failure("no execve of keyward in %s" % trace)


def sandbox_problems(trace, unit, data_dir):
    """Reads an `strace -f -qq` log of keyward from its execve on (systemd
    applies the sandbox there) and returns (system calls, address families,
    problems): what the unit's SystemCallFilter=, RestrictAddressFamilies=,
    MemoryDenyWriteExecute=, ProtectSystem=strict (writes only in data_dir),
    ProcSubset=pid, ProtectHome= and PrivateDevices= would refuse."""
    allowed = allowed_syscalls(unit)
    families = set(" ".join(unit_values(unit, "RestrictAddressFamilies")).split())
    with open(trace, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    start = [i for i, l in enumerate(lines) if EXEC_KEYWARD.match(l)]
    check(start, "no execve of keyward in the trace")
    calls, used, problems = set(), set(), []
    for line in lines[start[0]:]:
        m = re.match(r"^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)(?:\(| resumed>)", line)
        if not m:
            continue
        call = m.group(1)
        calls.add(call)
        if "resumed>" in line:
            continue  # its arguments are on its "<unfinished ...>" line
        if call in ("socket", "socketpair"):
            fam = re.search(r"\((AF_\w+)", line)
            used.add(fam.group(1) if fam else line)
        if call in ("mmap", "mprotect", "pkey_mprotect"):
            if "PROT_EXEC" in line and (call != "mmap" or "PROT_WRITE" in line):
                problems.append("MemoryDenyWriteExecute: " + line)
        if call in ("open", "openat", "openat2") and "= -1" not in line:
            path = re.search(r'"([^"]*)"', line)
            path = path.group(1) if path else ""
            writing = re.search(r"O_WRONLY|O_RDWR|O_CREAT", line)
            if writing and not path.startswith(data_dir + "/") and path != "/dev/null":
                problems.append("ProtectSystem=strict (a write outside the data dir): " + line)
            if re.match(r"/proc/(?!self/|thread-self/|\d+/)", path):
                problems.append("ProcSubset=pid: " + line)
            if re.match(r"/(home|root|run/user)(/|$)", path):
                problems.append("ProtectHome=: " + line)
            if path.startswith("/dev/") and path not in ("/dev/null", "/dev/zero", "/dev/full",
                                                         "/dev/random", "/dev/urandom"):
                problems.append("PrivateDevices=: " + line)
    denied = sorted(calls - allowed)
    if denied:
        problems.append("SystemCallFilter= denies: %s" % ", ".join(denied))
    if used - families:
        problems.append("RestrictAddressFamilies= lacks: %s" % sorted(used - families))
    return calls, used, problems


# ---------------------------------------------------- throwaway root ----


class ThrowawayRoot:
    """An overlay of / at TMP/root whose upper layer is TMP/up, with /proc,
    /dev, /sys and an empty /run: everything a command run in it changes
    lands in TMP/up. The calling process must be in a mount namespace of
    its own (unshare --mount), so the mounts end with it."""

    PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

    def __init__(self, tmp):
        self.up, self.work, self.root = (os.path.join(tmp, d) for d in ("up", "work", "root"))

    def mount(self):
        for d in (self.up, self.work, self.root):
            os.makedirs(d)
        # The dpkg database as it is now, copied under the host's locks into
        # an opaque folder of the upper layer: an apt run on the host during
        # the test changes nothing under it.
        locks = wait_dpkg_lock()
        try:
            os.makedirs(os.path.join(self.up, "var/lib"))
            sh(["cp", "-a", "/var/lib/dpkg", os.path.join(self.up, "var/lib/dpkg")])
            os.setxattr(os.path.join(self.up, "var/lib/dpkg"), "trusted.overlay.opaque", b"y")
        finally:
            for f in locks:
                f.close()
        sh(["mount", "--make-rprivate", "/"])
        sh(["mount", "-t", "overlay", "overlay", "-o",
            "lowerdir=/,upperdir=%s,workdir=%s" % (self.up, self.work), self.root])
        for d in ("proc", "dev", "sys"):
            sh(["mount", "--rbind", "/" + d, os.path.join(self.root, d)])
        sh(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", os.path.join(self.root, "run")])

    def path(self, abspath):
        """Where the root's abspath is, seen from outside."""
        return os.path.join(self.root, abspath.lstrip("/"))

    def run(self, args, ok=True, timeout=CMD_TIMEOUT):
        """Runs a command chrooted into the root, in a clean environment."""
        env = {"PATH": self.PATH, "LC_ALL": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
        return sh(["chroot", self.root] + args, ok=ok, timeout=timeout, env=env)

    def as_user(self, user, args):
        """argv that runs args in the root as user, in a clean environment;
        setpriv execs, so the pid is the command's own."""
        return ["env", "-i", "PATH=" + self.PATH, "LC_ALL=C.UTF-8", "chroot", self.root,
                "setpriv", "--reuid=" + user, "--regid=" + user, "--init-groups"] + args

    def owner_name(self, num, group):
        """The name of user (or group) num in the root's /etc/passwd (/etc/group)."""
        with open(self.path("/etc/group" if group else "/etc/passwd"), encoding="utf-8") as f:
            for line in f:
                parts = line.split(":")
                if int(parts[2]) == num:
                    return parts[0]
        return str(num)

    def stat(self, abspath):
        """(permission bits, owner, group) of a file of the root."""
        st = os.lstat(self.path(abspath))
        return (st.st_mode & 0o7777, self.owner_name(st.st_uid, False),
                self.owner_name(st.st_gid, True))


def wait_dpkg_lock(timeout=600):
    """Takes the host's dpkg locks as apt does (waiting while apt runs);
    returns the open lock files, whose closing releases them."""
    held = []
    deadline = time.monotonic() + timeout
    for name in ("lock-frontend", "lock"):
        f = open(os.path.join("/var/lib/dpkg", name), "a")  # pylint: disable=consider-using-with
        while True:
            try:
                fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise Failure("the host's dpkg stayed locked for %d s" % timeout)
                time.sleep(1)
        held.append(f)
    return held
