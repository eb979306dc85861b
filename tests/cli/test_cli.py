#!/usr/bin/env python3
"""Black-box tests of the keyward command line (see packaging/keyward.1 and
docs/operations.md).

Every test runs the built binary ($KEYWARD_BIN) in a fresh directory.
"""

import datetime
import json
import os
import re
import select
import stat
import subprocess
import time

from kwtest import (
    check,
    data_dir,
    eq,
    ok_run,
    popen,
    run,
    run_bytes,
    run_tests,
    stderr_log,
    tmpdir,
)

KEY_RE = re.compile(r"^kw_([a-z][a-z0-9]{0,15})_([A-Za-z0-9]{43})([A-Za-z0-9]{6})$")
KEY_FIELDS = {
    "id",
    "account_id",
    "name",
    "environment",
    "masked",
    "created_at",
    "last_used_at",
    "expires_at",
    "enabled",
    "status",
    "rolled_from",
    "rolled_to",
    "metadata",
}
PEPPER_A = "1:" + "a1" * 32
PEPPER_B = "1:" + "b2" * 32

COMMANDS = [
    ["account", "create"],
    ["account", "list"],
    ["account", "show"],
    ["key", "create"],
    ["key", "list"],
    ["key", "show"],
    ["key", "update"],
    ["key", "roll"],
    ["key", "delete"],
    ["key", "revoke-all"],
    ["key", "verify"],
    ["user", "add"],
    ["root-key", "create"],
    ["root-key", "list"],
    ["root-key", "delete"],
    ["audit", "list"],
    ["migrate"],
    ["serve"],
]


# ---- helpers ----


def js(args, stdin=None, env=None, rc=0):
    """Runs a command with --json; returns the parsed document."""
    out, _ = ok_run(list(args) + ["--json"], stdin, env, rc)
    return json.loads(out)


def account(name="Acme", env=None):
    return js(["account", "create", name], env=env)["id"]


def new_key(acc, name="Production CRM", environment=None, env=None, extra=()):
    args = ["key", "create", "--account", acc, "--name", name] + list(extra)
    if environment:
        args += ["--env", environment]
    doc = js(args, env=env)
    return doc["key"], doc["secret"]


def verify(secret, extra=(), env=None):
    """Returns (rc, verification object)."""
    rc, out, err = run(["key", "verify", "--json"] + list(extra), stdin=secret + "\n", env=env)
    check(out, "key verify printed nothing (exit %d): %s" % (rc, err))
    return rc, json.loads(out)


def not_accepted(secret, extra=(), env=None):
    """True when the key does not verify: NOT_FOUND, or keyward refuses the pepper."""
    rc, out, err = run(["key", "verify", "--json"] + list(extra), stdin=secret + "\n", env=env)
    if rc != 1:
        return False
    return json.loads(out)["code"] == "NOT_FOUND" if out else "pepper" in err


def key_ids(acc, env=None):
    return [k["id"] for k in js(["key", "list", "--account", acc], env=env)["keys"]]


def db_bytes():
    """Bytes of the SQLite database and its WAL, as far as they exist."""
    blob = b""
    for name in ("keyward.db", "keyward.db-wal"):
        path = os.path.join(data_dir(), name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                blob += f.read()
    return blob


def read_until(fd, needle, timeout=10):
    """Reads fd until needle (bytes) has been seen; returns what was read."""
    got = b""
    deadline = time.monotonic() + timeout
    while needle not in got:
        left = deadline - time.monotonic()
        check(left > 0, "timed out waiting for %r, got %r" % (needle, got))
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 4096)
            check(chunk, "end of output before %r, got %r" % (needle, got))
            got += chunk
    return got


def run_on_terminal(args, typed=None, prompt=None):
    """Runs keyward with stdin on a pseudo-terminal; types `typed` after `prompt`
    appears on stderr. Returns (rc, stdout, stderr, what the terminal echoed)."""
    master, slave = os.openpty()
    proc = popen(args, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(slave)
    err = b""
    try:
        if prompt is not None:
            err = read_until(proc.stderr.fileno(), prompt)
        if typed is not None:
            os.write(master, typed)
        out, rest = proc.communicate(timeout=30)
        echoed = b""
        while select.select([master], [], [], 0)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            echoed += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return proc.returncode, out.decode(), (err + rest).decode(), echoed


def write_file(name, text, mode=0o600):
    path = os.path.join(tmpdir(), name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


# ---- usage ----


def test_help_of_every_command():
    for args in [["--help"], ["-h"], ["help"]]:
        out, _ = ok_run(args)
        check("usage:" in out and "key create" in out, "top help lists the commands")
    for cmd in COMMANDS:
        for flag in ("--help", "-h"):
            out, err = ok_run(cmd + [flag])
            check(out.startswith("usage: keyward " + " ".join(cmd)), "help of %s" % cmd)
            eq(err, "", "stderr of %s --help" % cmd)
        out, _ = ok_run(["help"] + cmd)
        check(out.startswith("usage: keyward " + " ".join(cmd)), "keyward help %s" % cmd)
    for group in ("account", "key", "root-key", "user", "audit"):
        out, _ = ok_run([group, "--help"])
        check("%s " % group in out, "group help of " + group)
    out, _ = ok_run(["--version"])
    check(out.startswith("keyward "), "version")


def test_usage_errors_exit_2():
    cases = [
        [],
        ["frobnicate"],
        ["key"],
        ["key", "frobnicate"],
        ["--bogus", "account", "list"],
        ["account", "list", "--bogus"],
        ["account", "list", "extra"],
        ["account", "create"],
        ["account", "create", "a", "b"],
        ["account", "show"],
        ["key", "create", "--name", "x"],
        ["key", "create", "--account", "acc_x"],
        ["key", "create", "--account"],
        ["key", "list"],
        ["key", "show", "--account", "acc_x"],
        ["key", "delete", "key_x"],
        ["user", "add", "--account", "acc_x"],
        ["root-key", "create"],
        ["root-key", "delete"],
        ["audit", "list", "--limit"],
        ["account", "list", "--json=yes"],
        ["account", "list", "--max-keys-per-account", "0"],
        ["account", "list", "--max-keys-per-account", "12abc"],
    ]
    for args in cases:
        rc, out, err = run(args)
        eq(rc, 2, "exit of %s" % args)
        check(err.startswith("keyward: "), "message on stderr for %s: %r" % (args, err))
        eq(out, "", "stdout of %s" % args)


def test_serve_refuses_bad_settings_with_exit_2():
    for args, env, word in [
        (["serve", "--listen", "nonsense"], None, "listen"),
        (["serve", "--listen", "127.0.0.1:99999"], None, "port"),
        (["serve", "--threads", "0"], None, "--threads"),
        (["serve"], {"KEYWARD_MAX_BODY_BYTES": "12"}, "KEYWARD_MAX_BODY_BYTES"),
        (["serve"], {"KEYWARD_ACCESS_LOG": "syslog"}, "access_log"),
    ]:
        rc, out, err = run(args, env=env)
        eq(rc, 2, "exit of %r %r" % (args, env))
        check(word in err, err)
        eq(out, "", "nothing printed on stdout, no first run")


def test_bad_input_exits_1():
    """A bad value of an option or argument is bad input, exit 1, as
    docs/operations.md ("Exit codes of the CLI") and the man page say; exit
    2 is for wrong usage only (an unknown or missing option or argument)."""
    acc = account("Bad input")
    missing_acc = "acc_" + "0" * 22
    password = "correct horse battery"
    cases = [
        (["audit", "list", "--limit", "0"], None, "--limit"),
        (["audit", "list", "--limit", "10001"], None, "--limit"),
        (["audit", "list", "--limit", "-1"], None, "--limit"),
        (["audit", "list", "--limit", "ten"], None, "--limit"),
        (["audit", "list", "--limit", "12abc"], None, "--limit"),
        (["audit", "list", "--limit", ""], None, "--limit"),
        (["key", "create", "--account", acc, "--name", "x", "--expires-at", "tomorrow"],
         None, "expires_at"),
        (["key", "create", "--account", acc, "--name", "x", "--expires-at",
          "2001-01-01T00:00:00Z"], None, "expires_at"),
        (["key", "create", "--account", acc, "--name", "x", "--expires-at", ""],
         None, "expires_at"),
        (["key", "create", "--account", acc, "--name", "x", "--env", "Prod"],
         None, "environment"),
        (["key", "create", "--account", acc, "--name", ""], None, "name"),
        (["key", "create", "--account", "acc_nope", "--name", "x"], None, "account id"),
        (["key", "create", "--account", missing_acc, "--name", "x"], None, "not found"),
        (["key", "list", "--account", "acc_nope"], None, "account id"),
        (["key", "list", "--account", missing_acc], None, "not found"),
        (["key", "show", "--account", acc, "key_nope"], None, "key id"),
        (["key", "show", "--account", acc, "key_" + "0" * 22], None, "not found"),
        (["key", "delete", "--account", acc, "key_nope"], None, "key id"),
        (["key", "delete", "--account", acc, "key_" + "0" * 22], None, "not found"),
        (["account", "create", ""], None, "name"),
        (["account", "show", "acc_nope"], None, "account id"),
        (["account", "show", missing_acc], None, "not found"),
        (["root-key", "create", "--name", ""], None, "name"),
        (["root-key", "delete", "rk_" + "0" * 22], None, "not found"),
        (["user", "add", "--account", acc, "--email", "not an email"], password + "\n", "email"),
        (["user", "add", "--account", acc, "--email", "b@example.com"], "short\n", "password"),
    ]
    for args, stdin, word in cases:
        rc, out, err = run(args, stdin=stdin)
        eq(rc, 1, "exit of %s" % args)
        check(err.startswith("keyward: ") and word in err,
              "message of %s names %s: %r" % (args, word, err))
        check("usage:" not in err, "no usage line for bad input %s: %r" % (args, err))
        eq(out, "", "stdout of %s" % args)
    eq(key_ids(acc), [], "bad input created no key")


def test_global_options_before_and_after_command():
    other = os.path.join(tmpdir(), "other")
    ok_run(["--data-dir", other, "account", "create", "Before"])
    ok_run(["account", "create", "After", "--data-dir", other])
    ok_run(["account", "create", "Equals", "--data-dir=" + other])
    names = [a["name"] for a in js(["account", "list", "--data-dir", other])["accounts"]]
    eq(sorted(names), ["After", "Before", "Equals"], "accounts in the other dir")
    check(os.path.exists(os.path.join(other, "keyward.db")), "db in --data-dir")
    check(not os.path.exists(os.path.join(data_dir(), "keyward.db")), "default dir untouched")
    eq(js(["--json", "account", "list", "--data-dir", other])["accounts"][0]["key_limit"], 25, "limit")


# ---- accounts ----


def test_account_create_list_show():
    out, _ = ok_run(["account", "create", "Acme Inc"])
    check(re.search(r"^id:\s+acc_\w+$", out, re.M), "human account has an id line: " + out)
    check(re.search(r"^name:\s+Acme Inc$", out, re.M), "human account has the name")
    doc = js(["account", "create", "Beta"])
    eq(set(doc), {"id", "name", "created_at", "key_limit"}, "account fields")
    check(doc["id"].startswith("acc_"), "account id")
    eq(doc["name"], "Beta", "name")
    eq(doc["key_limit"], 25, "key_limit")
    check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", doc["created_at"]), "RFC 3339 time")
    eq(js(["account", "show", doc["id"]]), doc, "show")
    out, _ = ok_run(["account", "show", doc["id"]])
    check("Beta" in out and doc["id"] in out, "human show")
    docs = js(["account", "list"])["accounts"]
    eq(sorted(a["name"] for a in docs), ["Acme Inc", "Beta"], "list")
    out, _ = ok_run(["account", "list"])
    check(out.splitlines()[0].split()[0] == "ID" and "Beta" in out, "human table: " + out)
    rc, out, err = run(["account", "show", "acc_" + "x" * 22])
    eq(rc, 1, "unknown account")
    check("not found" in err.lower(), err)


def test_account_bad_names():
    for name in ["", "   ", "x" * 101, "a\x01b", "a\nb"]:
        rc, out, err = run(["account", "create", name])
        eq(rc, 1, "account name %r" % name)
        check("name" in err, err)
    rc, _, err = run_bytes(["account", "create", b"a\xffb"])
    eq(rc, 1, "invalid UTF-8 account name")
    eq(js(["account", "list"])["accounts"], [], "no account created")


# ---- keys ----


def test_key_create_shows_secret_once():
    acc = account()
    rc, out, err = run(["key", "create", "--account", acc, "--name", "Production CRM"])
    eq(rc, 0, "key create")
    secrets = [line for line in out.splitlines() if KEY_RE.match(line)]
    eq(len(secrets), 1, "one line holding the secret")
    secret = secrets[0]
    eq(out.count(secret), 1, "secret printed once")
    check(secret not in err and "only" in err and "shown" in err, "warning on stderr: " + err)
    check(secret[14:57] not in out.replace(secret, ""), "no other trace of the secret")
    key_id = re.search(r"^id:\s+(key_\w+)$", out, re.M).group(1)
    doc, secret2 = new_key(acc, "Second", "staging")
    eq(set(doc), KEY_FIELDS, "key fields")
    check(KEY_RE.match(secret2) and secret2.startswith("kw_staging_"), "secret shape")
    eq(doc["environment"], "staging", "environment")
    eq(doc["last_used_at"], None, "last_used_at")
    eq(doc["expires_at"], None, "expires_at")
    check(doc["masked"].startswith("kw_staging_" + secret2[11:15]), "masked")
    for s in (secret, secret2):
        part = KEY_RE.match(s).group(2)
        for args in (
            ["key", "list", "--account", acc],
            ["key", "list", "--account", acc, "--json"],
            ["key", "show", "--account", acc, key_id],
            ["key", "show", "--account", acc, doc["id"], "--json"],
            ["audit", "list"],
            ["audit", "list", "--json"],
        ):
            out, _ = ok_run(args)
            check(s not in out and part not in out, "secret in %s" % args)
    lst = js(["key", "list", "--account", acc])
    eq([k["id"] for k in lst["keys"]], [doc["id"], key_id], "newest first")
    eq((lst["active_count"], lst["key_limit"]), (2, 25), "counts")
    eq(js(["key", "show", "--account", acc, doc["id"]]), doc, "show equals created")
    check(secret not in stderr_log().decode() and secret2 not in stderr_log().decode(), "stderr")


def test_key_verify():
    acc = account()
    key, secret = new_key(acc)
    rc, res = verify(secret)
    eq(rc, 0, "valid key exit")
    eq(
        res,
        {
            "valid": True,
            "code": "VALID",
            "account_id": acc,
            "key_id": key["id"],
            "name": "Production CRM",
            "environment": "production",
        },
        "verification",
    )
    for stdin in (secret, secret + "\r\n"):
        rc, out, err = run(["key", "verify"], stdin=stdin)
        eq(rc, 0, "verify with %r ending" % stdin[-2:])
        check(re.search(r"^code:\s+VALID$", out, re.M), out)
    rc, res = verify(secret, ["--env", "production"])
    eq((rc, res["code"]), (0, "VALID"), "right environment")
    rc, res = verify(secret, ["--env", "staging"])
    eq((rc, res), (1, {"valid": False, "code": "ENVIRONMENT_MISMATCH"}), "env mismatch")
    rc, res = verify("garbage")
    eq((rc, res), (1, {"valid": False, "code": "MALFORMED"}), "garbage")
    bad = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    eq(verify(bad), (1, {"valid": False, "code": "MALFORMED"}), "bad checksum")
    eq(verify(""), (1, {"valid": False, "code": "MALFORMED"}), "empty")
    eq(verify(secret + "\n"), (1, {"valid": False, "code": "MALFORMED"}), "two newlines")
    rc, out, err = run(["key", "verify"], stdin="x" * 5000)
    eq(rc, 1, "oversized input")
    check("too long" in err, err)
    rc, out, err = run(["key", "verify", "--env", "Prod"], stdin=secret)
    eq(rc, 1, "bad --env")
    check("environment" in err, err)
    rc, out, err = run(["key", "verify", secret])
    eq(rc, 2, "key as an argument")
    check(secret not in err and secret not in out and "stdin" in err, err)
    rc, out, err = run(["key", "verify", "--env", "production", "--", secret])
    eq(rc, 2, "key as an argument after --")
    check(secret not in err, err)
    rc, out, err = run(["key", "verify", "--" + secret])
    eq(rc, 2, "key as an option")
    check(secret not in err, err)


def test_verify_from_terminal():
    acc = account()
    _, secret = new_key(acc)
    rc, out, err, echoed = run_on_terminal(
        ["key", "verify"], typed=secret.encode() + b"\n", prompt=b"paste the key"
    )
    eq(rc, 0, "verify from a terminal: " + err)
    check(re.search(r"^code:\s+VALID$", out, re.M), out)
    check(secret.encode() not in echoed, "the key was echoed on the terminal")
    check(secret not in err, "key on stderr")


def test_user_add_on_terminal_generates_password():
    acc = account()
    rc, out, err, _ = run_on_terminal(["user", "add", "--account", acc, "--email", "t@example.com"])
    eq(rc, 0, "user add on a terminal: " + err)
    check(re.search(r"^password: [0-9A-Za-z]{24}$", out, re.M), out)


def test_pepper_variable_leaves_the_environment():
    if not os.path.exists("/proc/self/environ"):
        return
    proc = popen(
        ["key", "verify"],
        env={"KEYWARD_PEPPER": PEPPER_A},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with open("/proc/%d/environ" % proc.pid, "rb") as f:
                environ = f.read()
            if (environ and PEPPER_A.encode() not in environ) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        check(PEPPER_A[2:].encode() not in environ, "KEYWARD_PEPPER still in /proc/PID/environ")
    finally:
        proc.communicate(b"", timeout=30)


def test_last_used_is_recorded():
    acc = account()
    key, secret = new_key(acc)
    eq(verify(secret)[0], 0, "verify")
    shown = js(["key", "show", "--account", acc, key["id"]])
    check(shown["last_used_at"] is not None, "last_used_at set after verify")


def test_key_limit_25():
    acc = account()
    for i in range(25):
        new_key(acc, "key %d" % i)
    rc, out, err = run(["key", "create", "--account", acc, "--name", "one too many"])
    eq(rc, 1, "26th key")
    check("25" in err and ("maximum" in err or "limit" in err), err)
    eq(out, "", "nothing printed")
    lst = js(["key", "list", "--account", acc])
    eq((len(lst["keys"]), lst["active_count"]), (25, 25), "still 25")
    out, _ = ok_run(["key", "list", "--account", acc])
    check("25 of 25" in out, out)


def test_key_limit_configurable():
    acc = account()
    for i in range(3):
        new_key(acc, "k%d" % i, extra=["--max-keys-per-account", "3"])
    rc, _, err = run(
        ["--max-keys-per-account", "3", "key", "create", "--account", acc, "--name", "x"]
    )
    eq(rc, 1, "4th key with a limit of 3")
    check("3" in err, err)
    env = {"KEYWARD_MAX_KEYS_PER_ACCOUNT": "3"}
    eq(run(["key", "create", "--account", acc, "--name", "x"], env=env)[0], 1, "env limit")
    new_key(acc, "fourth")  # the default limit is 25
    eq(len(key_ids(acc)), 4, "four keys")


def test_delete_key():
    acc = account()
    key, secret = new_key(acc)
    keep, keep_secret = new_key(acc, "Keep")
    doc = js(["key", "delete", "--account", acc, key["id"]])
    eq(doc, {"id": key["id"], "deleted": True}, "delete --json")
    eq(verify(secret), (1, {"valid": False, "code": "NOT_FOUND"}), "deleted key")
    eq(verify(keep_secret)[0], 0, "other key still valid")
    rc, _, err = run(["key", "delete", "--account", acc, key["id"]])
    eq(rc, 1, "second delete")
    check("not found" in err.lower(), err)
    rc, _, err = run(["key", "show", "--account", acc, key["id"]])
    eq(rc, 1, "show deleted")
    eq(key_ids(acc), [keep["id"]], "list after delete")
    out, _ = ok_run(["key", "delete", "--account", acc, keep["id"]])
    check(keep["id"] in out, "human delete output")


def test_bad_key_names_and_environments():
    acc = account()
    cases = [
        ("name", ["--name", ""]),
        ("name", ["--name", "   "]),
        ("name", ["--name", "x" * 101]),
        ("name", ["--name", "a\x01b"]),
        ("name", ["--name", "a\x7fb"]),
        ("name", ["--name", "a\u202eb"]),
        ("environment", ["--name", "ok", "--env", "Prod"]),
        ("environment", ["--name", "ok", "--env", "1abc"]),
        ("environment", ["--name", "ok", "--env", "a" * 17]),
        ("environment", ["--name", "ok", "--env", "pro-d"]),
        ("environment", ["--name", "ok", "--env", "root"]),
        ("environment", ["--name", "ok", "--env", ""]),
        ("expires_at", ["--name", "ok", "--expires-at", "tomorrow"]),
        ("expires_at", ["--name", "ok", "--expires-at", "2001-01-01T00:00:00Z"]),
    ]
    for field, args in cases:
        rc, out, err = run(["key", "create", "--account", acc] + args)
        eq(rc, 1, "exit for %r" % args)
        check(field in err, "message names %s: %r" % (field, err))
        eq(out, "", "stdout for %r" % args)
    rc, _, err = run_bytes(["key", "create", "--account", acc, "--name", b"bad\xc3\x28utf8"])
    eq(rc, 1, "invalid UTF-8 name")
    check(b"name" in err, err)
    eq(key_ids(acc), [], "nothing created")
    doc, _ = new_key(acc, "  Trimmed  ", "a" * 16, extra=["--expires-at", "2099-01-01T00:00:00Z"])
    eq((doc["name"], doc["expires_at"]), ("Trimmed", "2099-01-01T00:00:00Z"), "trim, expiry")
    doc, _ = new_key(acc, "x" * 100, "s1")
    eq(len(doc["name"]), 100, "100 characters allowed")


def test_invisible_names_are_refused():
    """keyward refuses invisible and formatting characters in key, account and
    root key names, naming the character, and creates nothing."""
    acc = account("Invisible")
    accounts = js(["account", "list"])
    root_keys = js(["root-key", "list"])
    for ch in ("\u200b", "\u200d", "\u2060", "\u00ad", "\ufeff", "\u3164", "\U000e0041"):
        code = "U+%04X" % ord(ch)
        for args in (["key", "create", "--account", acc, "--name", "a%sb" % ch],
                     ["account", "create", "%sAcme" % ch],
                     ["root-key", "create", "--name", "ops%s" % ch]):
            rc, out, err = run(args)
            eq(rc, 1, "exit for %r" % args)
            eq(out, "", "stdout for %r" % args)
            check("name must not contain" in err and code in err,
                  "message %r for %r does not name %s" % (err, args, code))
    for blank in ("\u2800", "\u3000 \u2800"):
        rc, _, err = run(["key", "create", "--account", acc, "--name", blank])
        eq(rc, 1, "exit for blank name %r" % blank)
        check("name must not be empty" in err, err)
    eq(key_ids(acc), [], "no key created")
    eq(js(["account", "list"]), accounts, "no account created")
    eq(js(["root-key", "list"]), root_keys, "no root key created")


def test_key_expiry_boundaries():
    """The CLI reads --expires-at as the API does: the epoch however written
    and any past second are refused, naming expires_at, and create nothing."""
    acc = account("Expiry")
    past = datetime.datetime.fromtimestamp(int(time.time()) - 1, datetime.timezone.utc)
    refused = [
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z has already passed"),
        ("1970-01-01T01:00:00+01:00", "1970-01-01T00:00:00Z has already passed"),
        ("1969-12-31T23:00:00-01:00", "1970-01-01T00:00:00Z has already passed"),
        (past.strftime("%Y-%m-%dT%H:%M:%SZ"), "in the future"),
        ("10000-01-01T00:00:00Z", "RFC 3339"),
        ("9999-12-31T23:59:59-00:01", "9999-12-31T23:59:59Z"),
        ("2099-06-15T12:00:60Z", "leap second"),
        ("2099-01-01T00:00:00+24:00", "does not exist"),
        ("", "RFC 3339"),
    ]
    for value, says in refused:
        rc, out, err = run(["key", "create", "--account", acc, "--name", "x",
                            "--expires-at", value])
        eq(rc, 1, "exit for --expires-at %r" % value)
        eq(out, "", "stdout for --expires-at %r" % value)
        check("expires_at" in err and says in err,
              "message %r for %r does not name expires_at and say %r" % (err, value, says))
    eq(key_ids(acc), [], "a refused expiry creates nothing")
    for value, stored in [
        ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"),
        ("2098-12-31T23:59:60Z", "2098-12-31T23:59:59Z"),
        ("2099-01-01t14:00:00.5+14:00", "2099-01-01T00:00:00Z"),
    ]:
        doc, _ = new_key(acc, "accepted", extra=["--expires-at", value])
        eq(doc["expires_at"], stored, "expires_at of %r" % value)
    doc, _ = new_key(acc, "never")
    eq(doc["expires_at"], None, "no --expires-at: never")
    out, _ = ok_run(["key", "show", "--account", acc, doc["id"]])
    check(re.search(r"expires_at:\s+never", out), "human output says never: %r" % out)


def test_other_accounts_keys_are_not_found():
    a, b = account("A"), account("B")
    key, secret = new_key(a)
    for args in (["key", "show", "--account", b, key["id"]],
                 ["key", "delete", "--account", b, key["id"]]):
        rc, _, err = run(args)
        eq(rc, 1, "exit of %s" % args)
        check("not found" in err.lower(), err)
    eq(verify(secret)[0], 0, "still valid")
    eq(key_ids(b), [], "b has no keys")
    rc, _, err = run(["key", "list", "--account", "acc_" + "z" * 22])
    eq(rc, 1, "unknown account")
    rc, _, err = run(["key", "create", "--account", "nonsense", "--name", "x"])
    eq(rc, 1, "malformed account id")
    check("account" in err, err)


def test_no_plaintext_at_rest():
    acc = account()
    secrets = [new_key(acc, "k%d" % i, env)[1] for i, env in enumerate(["production", "staging"] * 3)]
    secrets.append(js(["root-key", "create", "--name", "ops"])["secret"])
    for s in secrets[:6]:
        eq(verify(s)[0], 0, "verify")
    ok_run(["key", "delete", "--account", acc, key_ids(acc)[0]])
    files = [os.path.join(data_dir(), n) for n in os.listdir(data_dir())]
    blobs = {}
    for path in files:
        with open(path, "rb") as f:
            blobs[path] = f.read()
    check(any(p.endswith("keyward.db") for p in blobs), "database exists")
    blobs["stderr"] = stderr_log()
    for s in secrets:
        part = KEY_RE.match(s).group(2)
        for where, blob in blobs.items():
            check(s.encode() not in blob, "plaintext key in %s" % where)
            check(part.encode() not in blob, "secret part in %s" % where)


def test_pepper_file_permissions():
    ok_run(["account", "create", "X"])
    pepper = os.path.join(data_dir(), "pepper")
    eq(stat.S_IMODE(os.stat(pepper).st_mode), 0o600, "pepper mode")
    before = db_bytes()
    for mode in (0o640, 0o604):
        os.chmod(pepper, mode)
        for args in (["account", "create", "Y"], ["account", "list"], ["migrate"]):
            rc, out, err = run(args)
            eq(rc, 1, "exit with pepper mode %o" % mode)
            check("pepper" in err and "%o" % mode in err, err)
        eq(db_bytes(), before, "database unchanged")
    os.chmod(pepper, 0o600)
    eq(len(js(["account", "list"])["accounts"]), 1, "works again")


def test_operator_pepper():
    acc = account(env={"KEYWARD_PEPPER": PEPPER_A})
    _, secret = new_key(acc, env={"KEYWARD_PEPPER": PEPPER_A})
    eq(verify(secret, env={"KEYWARD_PEPPER": PEPPER_A})[0], 0, "same pepper")
    check(not_accepted(secret, env={"KEYWARD_PEPPER": PEPPER_B}), "pepper B")
    check(not_accepted(secret), "generated pepper file")
    path_a = write_file("pepper-a", PEPPER_A + "\n")
    eq(verify(secret, ["--pepper-file", path_a])[0], 0, "pepper A from --pepper-file")
    eq(verify(secret, env={"KEYWARD_PEPPER_FILE": path_a})[0], 0, "KEYWARD_PEPPER_FILE")
    path_b = write_file("pepper-b", PEPPER_B + "\n")
    check(not_accepted(secret, ["--pepper-file", path_b], env={"KEYWARD_PEPPER_FILE": path_a}),
          "flag beats variable")
    check(not_accepted(secret, env={"KEYWARD_PEPPER_FILE": path_b}), "pepper B from a file")
    os.chmod(path_a, 0o640)
    rc, _, err = run(["account", "list", "--pepper-file", path_a])
    eq(rc, 1, "group-readable pepper file")
    check(path_a in err and "640" in err, err)
    rc, _, err = run(["account", "list", "--pepper-file", os.path.join(tmpdir(), "missing")])
    eq(rc, 1, "missing pepper file")
    for blob in stderr_log().split(b"\n"):
        check(b"a1a1a1a1" not in blob and b"b2b2b2b2" not in blob, "pepper on stderr")


def test_config_file_and_precedence():
    cfg_dir = os.path.join(tmpdir(), "cfgdata")
    conf = write_file(
        "keyward.conf",
        "# keyward settings\n\n"
        "data_dir = %s\n"
        "  max_keys_per_account=2  \n"
        "key_prefix = acme\n"
        "last_used_interval_ms = 100\n"
        "listen = 127.0.0.1:9999\n"
        "threads = 4\n" % cfg_dir,
    )
    # The tests' default KEYWARD_DATA_DIR would beat the file's data_dir.
    acc = js(["--config", conf, "account", "create", "C"], env={"KEYWARD_DATA_DIR": None})["id"]
    check(os.path.exists(os.path.join(cfg_dir, "keyward.db")), "data_dir from the config file")
    env = {"KEYWARD_CONFIG": conf, "KEYWARD_DATA_DIR": None}
    doc, secret = new_key(acc, "one", env=env)
    check(secret.startswith("acme_production_"), "key_prefix from the config file")
    new_key(acc, "two", env=env)
    eq(run(["key", "create", "--account", acc, "--name", "3"], env=env)[0], 1, "file limit 2")
    env3 = dict(env, KEYWARD_MAX_KEYS_PER_ACCOUNT="3")
    new_key(acc, "three", env=env3)
    eq(run(["key", "create", "--account", acc, "--name", "4"], env=env3)[0], 1, "env limit 3")
    new_key(acc, "four", env=env3, extra=["--max-keys-per-account", "4"])
    eq(len(key_ids(acc, env=env)), 4, "flag limit 4")
    env_dir = os.path.join(tmpdir(), "envdata")
    ok_run(["account", "create", "E"], env=dict(env, KEYWARD_DATA_DIR=env_dir))
    check(os.path.exists(os.path.join(env_dir, "keyward.db")), "variable beats file")
    eq(len(js(["account", "list"], env=env)["accounts"]), 1, "file dir has one account")
    eq(verify(secret, env=env)[0], 0, "verify with the config's prefix")


def test_bad_config_exits_2():
    cases = [
        ("data_dir = x\nbogus = 1\n", 2),
        ("# comment\n\ndata_dir x\n", 3),
        ("max_keys_per_account = ten\n", 1),
        ("max_keys_per_account = 0\n", 1),
        ("last_used_interval_ms = 1e3\n", 1),
        ("pepper = secret\n", 1),
        ("data_dir =\n", 1),
    ]
    for text, line in cases:
        conf = write_file("bad.conf", text)
        rc, out, err = run(["--config", conf, "account", "list"])
        eq(rc, 2, "exit for %r" % text)
        check(conf in err and "line %d" % line in err, "names file and line: %r" % err)
    rc, _, err = run(["account", "list"], env={"KEYWARD_CONFIG": os.path.join(tmpdir(), "no")})
    eq(rc, 2, "missing config file")
    rc, _, err = run(["account", "list"], env={"KEYWARD_MAX_KEYS_PER_ACCOUNT": "many"})
    eq(rc, 2, "bad variable")
    check("KEYWARD_MAX_KEYS_PER_ACCOUNT" in err, err)
    rc, _, err = run(["account", "list"], env={"KEYWARD_LAST_USED_INTERVAL_MS": "-5"})
    eq(rc, 2, "bad interval variable")
    rc, _, err = run(["account", "list", "--key-prefix", "K"])
    eq(rc, 1, "bad key prefix")
    check("prefix" in err, err)


# ---- users ----


def test_user_add():
    acc = account()
    password = "correct horse battery staple"
    doc = js(["user", "add", "--account", acc, "--email", "Ann@Example.com"], stdin=password + "\n")
    eq(set(doc), {"user"}, "no password echoed")
    eq(set(doc["user"]), {"id", "email", "account_id", "created_at"}, "user fields")
    eq((doc["user"]["email"], doc["user"]["account_id"]), ("ann@example.com", acc), "user")
    rc, out, err = run(["user", "add", "--account", acc, "--email", "ann@example.com"],
                       stdin=password)
    eq(rc, 1, "duplicate email")
    check("already" in err, err)
    rc, out, err = run(["user", "add", "--account", acc, "--email", "bob@example.com"],
                       stdin="short\n")
    eq(rc, 1, "short password")
    check("password" in err and "short" not in err, err)
    rc, out, err = run(["user", "add", "--account", acc, "--email", "bob@example.com"],
                       stdin="p" * 1025)
    eq(rc, 1, "long password")
    rc, out, err = run(["user", "add", "--account", acc, "--email", "bob@example.com"],
                       stdin="p" * 2000)
    eq(rc, 1, "very long password")
    rc, out, err = run(["user", "add", "--account", acc, "--email", "not-an-email"],
                       stdin=password)
    eq(rc, 1, "bad email")
    check("email" in err, err)
    rc, out, err = run(["user", "add", "--account", acc, "--email", "c@example.com", password])
    eq(rc, 2, "password as an argument")
    check(password not in err, err)
    ok_run(["user", "add", "--account", acc, "--email", "d@example.com"], stdin="q" * 1024 + "\r\n")
    check(password.encode() not in db_bytes(), "password not stored")


def test_user_add_generates_password():
    acc = account()
    rc, out, err = run(["user", "add", "--account", acc, "--email", "gen@example.com"], stdin="")
    eq(rc, 0, "user add with empty stdin")
    m = re.search(r"^password: ([0-9A-Za-z]{24})$", out, re.M)
    check(m, "generated password printed: " + out)
    eq(out.count(m.group(1)), 1, "printed once")
    check(m.group(1) not in err and "only" in err, err)
    doc = js(["user", "add", "--account", acc, "--email", "gen2@example.com"], stdin="\n")
    check(re.match(r"^[0-9A-Za-z]{24}$", doc["password"]), "generated password in JSON")
    eq(doc["user"]["email"], "gen2@example.com", "email")
    check(m.group(1).encode() not in db_bytes(), "password not stored")


# ---- root keys, migrate, audit ----


def test_root_keys():
    rc, out, err = run(["root-key", "create", "--name", "backend"])
    eq(rc, 0, "root-key create")
    secrets = [line for line in out.splitlines() if line.startswith("kw_root_")]
    eq(len(secrets), 1, "secret line")
    eq(out.count(secrets[0]), 1, "printed once")
    check(secrets[0] not in err and "only" in err, err)
    doc = js(["root-key", "create", "--name", "second"])
    eq(set(doc), {"root_key", "secret"}, "created document")
    check(doc["root_key"]["id"].startswith("rk_"), "rk id")
    check(doc["secret"].startswith("kw_root_"), "root key format")
    lst = js(["root-key", "list"])["root_keys"]
    eq(len(lst), 2, "two root keys")
    for args in (["root-key", "list"], ["root-key", "list", "--json"]):
        out, _ = ok_run(args)
        for s in (secrets[0], doc["secret"]):
            check(s not in out and s[8:51] not in out, "secret in list")
    eq(js(["root-key", "delete", doc["root_key"]["id"]]), {"id": doc["root_key"]["id"],
                                                          "deleted": True}, "delete")
    rc, _, err = run(["root-key", "delete", doc["root_key"]["id"]])
    eq(rc, 1, "second delete")
    check("not found" in err.lower(), err)
    eq(len(js(["root-key", "list"])["root_keys"]), 1, "one left")
    eq(run(["root-key", "create", "--name", ""])[0], 1, "empty root key name")
    eq(verify(doc["secret"])[1]["code"], "NOT_FOUND", "a root key is not an account key")


def test_migrate():
    out, _ = ok_run(["migrate"])
    check(re.match(r"^schema_version:\s+[1-9]\d*$", out.strip()), out)
    doc = js(["migrate"])
    check(isinstance(doc["schema_version"], int) and doc["schema_version"] >= 1, "version")
    eq(js(["migrate"]), doc, "idempotent")


def test_audit_list():
    acc, other = account("A"), account("B")
    key, secret = new_key(acc, "Vendor CRM")
    new_key(other, "Other")
    ok_run(["key", "delete", "--account", acc, key["id"]])
    entries = js(["audit", "list", "--account", acc])["entries"]
    actions = [(e["action"], e["key_name"]) for e in entries]
    check(("key.create", "Vendor CRM") in actions, actions)
    check(("key.delete", "Vendor CRM") in actions, actions)
    check(all(e["account_id"] == acc for e in entries), "filtered by account")
    eq(entries[0]["action"], "key.delete", "newest first")
    eq(entries[0]["actor"], "cli", "actor")
    eq(len(js(["audit", "list", "--limit", "1"])["entries"]), 1, "limit")
    out, _ = ok_run(["audit", "list"])
    check("key.delete" in out and "Vendor CRM" in out, out)
    check(secret not in out and secret[14:57] not in out, "no secret in the audit log")


def test_json_output_is_one_document():
    acc = account()
    key, _ = new_key(acc)
    for args in (
        ["account", "list"],
        ["account", "show", acc],
        ["key", "list", "--account", acc],
        ["key", "show", "--account", acc, key["id"]],
        ["root-key", "list"],
        ["audit", "list"],
        ["migrate"],
    ):
        out, err = ok_run(args + ["--json"])
        check(isinstance(json.loads(out), dict), "one object from %s" % args)
        check(out.endswith("}\n"), "trailing newline")
        eq(err, "", "stderr of %s" % args)


# ---- the key lifecycle ----


def test_key_update_disable_enable_metadata():
    acc = account()
    key, secret = new_key(acc)
    doc = js(["key", "update", "--account", acc, key["id"], "--disable"])
    eq((doc["enabled"], doc["status"]), (False, "disabled"), "disabled")
    eq(verify(secret), (1, {"valid": False, "code": "DISABLED"}), "a disabled key")
    doc = js(["key", "update", "--account", acc, key["id"], "--enable", "--name", "Renamed",
              "--metadata", '{"plan": "pro", "seats": 3}'])
    eq((doc["enabled"], doc["name"], doc["metadata"]), (True, "Renamed", {"plan": "pro", "seats": 3}),
       "enabled, renamed, metadata")
    rc, res = verify(secret)
    eq((rc, res["metadata"]), (0, {"plan": "pro", "seats": 3}), "metadata in the verification")
    later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=9)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    eq(js(["key", "update", "--account", acc, key["id"], "--expires-at", later])["expires_at"],
       later, "expiry set")
    doc = js(["key", "update", "--account", acc, key["id"], "--no-expiry", "--no-metadata"])
    eq((doc["expires_at"], doc["metadata"]), (None, None), "expiry and metadata cleared")
    out, _ = ok_run(["key", "update", "--account", acc, key["id"], "--name", "Plain"])
    check(re.search(r"^status:\s+active$", out, re.M), out)
    # usage errors: 2; bad values: 1; nothing changes
    for args in (["--enable", "--disable"], ["--expires-at", later, "--no-expiry"],
                 ["--metadata", "{}", "--no-metadata"], [], ["--frobnicate"]):
        rc, _, err = run(["key", "update", "--account", acc, key["id"]] + args)
        eq(rc, 2, "key update %s" % args)
    for args in (["--metadata", "[1]"], ["--metadata", '{"Bad": 1}'], ["--metadata", "{"],
                 ["--metadata", '{"a": null}'], ["--expires-at", "2020-01-01T00:00:00Z"],
                 ["--expires-at", "soon"], ["--name", ""]):
        rc, _, err = run(["key", "update", "--account", acc, key["id"]] + args)
        eq(rc, 1, "key update %s: %s" % (args, err))
    eq(js(["key", "show", "--account", acc, key["id"]])["name"], "Plain", "refused updates changed nothing")
    rc, _, _ = run(["key", "update", "--account", account("Other"), key["id"], "--disable"])
    eq(rc, 1, "another account's key")


def test_key_create_expires_in_and_metadata():
    acc = account()
    doc = js(["key", "create", "--account", acc, "--name", "m", "--expires-in", "3600",
              "--metadata", '{"team": "ops"}'])
    eq((doc["key"]["metadata"], doc["key"]["status"]), ({"team": "ops"}, "expiring"), "created")
    check(doc["key"]["expires_at"] is not None, "expires_in sets expires_at")
    rc, _, _ = run(["key", "create", "--account", acc, "--name", "m", "--expires-in", "60",
                    "--expires-at", "2030-01-01T00:00:00Z"])
    eq(rc, 2, "--expires-in with --expires-at")
    for args in (["--expires-in", "0"], ["--expires-in", "-1"], ["--expires-in", "x"],
                 ["--metadata", '{"a": [1]}'], ["--metadata", "3"]):
        rc, _, _ = run(["key", "create", "--account", acc, "--name", "bad"] + args)
        eq(rc, 1, "key create %s" % args)
    eq(len(key_ids(acc)), 1, "refused creates created nothing")


def test_key_roll():
    acc = account()
    key, secret = new_key(acc, extra=["--metadata", '{"app": "crm"}'])
    doc = js(["key", "roll", "--account", acc, key["id"], "--grace", "600"])
    eq(set(doc), {"key", "secret", "previous"}, "roll --json")
    check(KEY_RE.match(doc["secret"]), "a new secret")
    eq((doc["key"]["rolled_from"], doc["previous"]["rolled_to"]), (key["id"], doc["key"]["id"]),
       "linked")
    eq(doc["key"]["metadata"], {"app": "crm"}, "metadata kept")
    eq(verify(secret)[0], 0, "the old key verifies during its grace")
    eq(verify(doc["secret"])[0], 0, "the new key verifies")
    rc, _, err = run(["key", "roll", "--account", acc, key["id"]])
    eq(rc, 1, "a rolled key cannot be rolled again")
    check("roll" in err.lower(), err)
    out, err = ok_run(["key", "roll", "--account", acc, doc["key"]["id"], "--grace", "0"])
    secrets = [line for line in out.splitlines() if KEY_RE.match(line.strip())]
    eq(len(secrets), 1, "plain output shows the new secret once: %r" % out)
    for grace in ("-1", "2592001", "1.5", "x"):
        rc, _, _ = run(["key", "roll", "--account", acc, key["id"], "--grace", grace])
        eq(rc, 1, "--grace %s" % grace)
    rc, _, _ = run(["key", "roll", "--account", acc])
    eq(rc, 2, "roll without KEY_ID")


def test_key_revoke_all():
    acc = account()
    prod = [new_key(acc, "p%d" % i) for i in range(2)]
    stag = [new_key(acc, "s%d" % i, environment="staging") for i in range(3)]
    rc, _, err = run(["key", "revoke-all", "--account", acc])
    eq(rc, 1, "revoke-all without --yes is refused")
    eq(len(key_ids(acc)), 5, "and revokes nothing")
    eq(js(["key", "revoke-all", "--account", acc, "--env", "staging", "--yes"]), {"revoked": 3},
       "staging revoked")
    for _, secret in stag:
        check(not_accepted(secret), "a revoked key is NOT_FOUND")
    for _, secret in prod:
        eq(verify(secret)[0], 0, "production untouched")
    rc, _, _ = run(["key", "revoke-all", "--account", acc, "--env", "Bad Env", "--yes"])
    eq(rc, 1, "bad environment")
    out, _ = ok_run(["key", "revoke-all", "--account", acc, "--yes"])
    check(re.search(r"^revoked:\s+2$", out, re.M), out)
    rc, _, _ = run(["key", "revoke-all", "--yes"])
    eq(rc, 2, "revoke-all without --account")


def test_audit_list_pages():
    acc = account()
    for i in range(5):
        new_key(acc, "k%d" % i)
    first = js(["audit", "list", "--account", acc, "--limit", "2"])
    seen, cursor = list(first["entries"]), first["next_cursor"]
    while cursor:
        page = js(["audit", "list", "--account", acc, "--limit", "2", "--cursor", cursor])
        seen += page["entries"]
        cursor = page["next_cursor"]
    full = js(["audit", "list", "--account", acc])["entries"]
    eq(seen, full, "the pages together are the log")
    check(all(e["source_ip"] is None for e in full), "the CLI records no address")
    out, _ = ok_run(["audit", "list", "--account", acc, "--limit", "2"])
    check("--cursor" in out, "plain output tells how to get the next page: %r" % out)
    rc, _, _ = run(["audit", "list", "--cursor", first["next_cursor"]])
    eq(rc, 2, "--cursor without --account")
    rc, _, _ = run(["audit", "list", "--account", account("B"), "--cursor", first["next_cursor"]])
    eq(rc, 1, "another account's cursor")
    rc, _, _ = run(["audit", "list", "--account", acc, "--cursor", "garbage"])
    eq(rc, 1, "a malformed cursor")


if __name__ == "__main__":
    run_tests(globals())
