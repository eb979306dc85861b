#!/usr/bin/env python3
"""The Debian package, end to end; TAP on stdout.

Builds keyward_VERSION_ARCH.deb with scripts/deb.sh (once, plus a second
package of a higher version for the upgrade), checks its contents, lintian,
the man page and the config file against the binary's commands and settings,
and the systemd unit (systemd-analyze security and verify, and the system
calls, address families and files of a real `keyward serve` session under
strace against what the unit's sandbox allows).

As root it then installs the package with dpkg into a THROWAWAY ROOT: an
overlay of / (upper layer in a temporary folder) in a private mount
namespace (unshare), entered with chroot. dpkg, adduser and keyward change
only the upper layer, which is deleted afterwards; the host is untouched.
systemd is not PID 1 there, so the maintainer scripts must cope without it.
In it: files, owners and modes; `keyward serve` as the keyward user (first
run printed once, no secret in any file); the config file with every line
uncommented; an upgrade (data and pepper kept, the root key and an API key
still verify); remove; purge (data kept, config gone). Not as root, those
cases are skipped with the reason.

Environment: KEYWARD_SOURCE_DIR (default: two folders up),
KEYWARD_DEB_BUILD (build folder for scripts/deb.sh, default
SOURCE/build-deb-test). The tools are in debtools.py beside this file;
standard library only.
"""

import gzip
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time

from debtools import (
    FIRST_RUN,
    IS_ROOT,
    Serve,
    ThrowawayRoot,
    case,
    check,
    eq,
    help_commands,
    man_section,
    note,
    request,
    run_cases,
    sandbox_problems,
    sh,
    tp_tags,
    traced_pid,
    unit_values,
    unroff,
)

SRC = os.path.abspath(
    os.environ.get("KEYWARD_SOURCE_DIR")
    or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
)
BUILD = os.environ.get("KEYWARD_DEB_BUILD") or os.path.join(SRC, "build-deb-test")
IN_NS = "KEYWARD_DEB_TMP"  # set in the private mount namespace: the test's folder
MAX_EXPOSURE = 2.0
UNIT = "lib/systemd/system/keyward.service"
CONF = "etc/keyward/keyward.conf"

S = {}  # what the cases hand on to each other

# --------------------------------------------------------- the package ----


def deb_path(version):
    """The package of that version, built by test_build."""
    return S["debs"][version]


def build_deb(version, outdir):
    """scripts/deb.sh: builds the package (of that version, or the default) into outdir."""
    env = dict(os.environ, KEYWARD_DEB_BUILD=BUILD)
    env.pop("KEYWARD_DEB_LOCKED", None)
    if version:
        env["KEYWARD_DEB_VERSION"] = version
    else:
        env.pop("KEYWARD_DEB_VERSION", None)
    _, out, _ = sh([os.path.join(SRC, "scripts", "deb.sh"), outdir], env=env, timeout=900)
    path = out.strip().splitlines()[-1]
    check(os.path.isfile(path), "deb.sh printed %r, which is not a file" % path)
    return path


@case()
def test_build():
    t0 = time.monotonic()
    outdir = os.path.join(S["tmp"], "debs")
    first = build_deb(None, outdir)
    version = sh(["dpkg-deb", "-f", first, "Version"])[1].strip()
    arch = sh(["dpkg", "--print-architecture"])[1].strip()
    eq(os.path.basename(first), "keyward_%s_%s.deb" % (version, arch), "package file name")
    upgrade = version + "+1"
    sh(["dpkg", "--compare-versions", upgrade, "gt", version])
    second = build_deb(upgrade, outdir)
    eq(sh(["dpkg-deb", "-f", second, "Version"])[1].strip(), upgrade, "second package's version")
    S["version"], S["upgrade"] = version, upgrade
    S["debs"] = {version: first, upgrade: second}
    # The package's files, unpacked, for the checks that need no install.
    S["x"] = os.path.join(S["tmp"], "x")
    sh(["dpkg-deb", "-x", first, S["x"]])
    S["bin"] = os.path.join(S["x"], "usr/bin/keyward")
    note("built %s and %s in %.1f s" % (os.path.basename(first), os.path.basename(second),
                                         time.monotonic() - t0))


@case(after=[test_build])
def test_contents():
    deb = deb_path(S["version"])
    _, listing, _ = sh(["dpkg-deb", "-c", deb])
    entries = {}
    for line in listing.splitlines():
        mode, owner, _size, _date, _time, path = line.split(None, 5)
        entries[path.split(" -> ")[0].lstrip(".")] = (mode, owner)
    want = {
        "/usr/bin/keyward": "-rwxr-xr-x",
        "/etc/keyward/keyward.conf": "-rw-r--r--",
        "/lib/systemd/system/keyward.service": "-rw-r--r--",
        "/usr/share/man/man1/keyward.1.gz": "-rw-r--r--",
        "/usr/share/doc/keyward/copyright": "-rw-r--r--",
        "/usr/share/doc/keyward/changelog.Debian.gz": "-rw-r--r--",
    }
    for path, mode in want.items():
        check(path in entries, "%s is not in the package" % path)
        eq(entries[path][0], mode, path + " mode")
    for path, (mode, owner) in entries.items():
        eq(owner, "root/root", path + " owner")
    check("/var/lib/keyward/" not in entries, "the data directory must not be a packaged file")
    _, conffiles, _ = sh(["dpkg-deb", "-I", deb, "conffiles"])
    eq(conffiles.split(), ["/etc/keyward/keyward.conf"], "conffiles")
    depends = sh(["dpkg-deb", "-f", deb, "Depends"])[1]
    for lib in ("libsodium23", "libsqlite3-0", "libmicrohttpd12", "libpq5", "libunistring",
                "adduser"):
        check(lib in depends, "Depends lacks %s: %s" % (lib, depends))
    with open(os.path.join(S["x"], "usr/share/doc/keyward/copyright"), encoding="utf-8") as f:
        copyright_text = f.read()
    check(copyright_text.startswith("Format: https://www.debian.org/doc/packaging-manuals/"
                                    "copyright-format/1.0/"), "copyright is not DEP-5")
    check("License: MIT" in copyright_text, "copyright does not say MIT")
    with open(os.path.join(SRC, "meson.build"), encoding="utf-8") as f:
        check("license : 'MIT'" in f.read(), "meson.build's license is no longer MIT")


@case(after=[test_build])
def test_lintian():
    rc, out, err = sh(["lintian", "--pedantic", "--display-experimental", deb_path(S["version"])],
                      ok=False)
    tags = [l for l in out.splitlines() if re.match(r"^[EWIPX]: ", l)]
    note("lintian: %s" % ("no tags" if not tags else "%d tag(s)" % len(tags)))
    for t in tags:
        note(t)
    errors = [t for t in tags if t.startswith("E: ")]
    check(not errors, "lintian errors: %s" % errors)
    check(rc in (0, 2) or not errors, "lintian exit %d: %s" % (rc, err))


def man_source():
    with gzip.open(os.path.join(S["x"], "usr/share/man/man1/keyward.1.gz"), "rt",
                   encoding="utf-8") as f:
        return f.read()


@case(after=[test_build])
def test_man_page_commands():
    _, help_text, _ = sh([S["bin"], "--help"])
    in_help = help_commands(help_text)
    check(len(in_help) >= 10, "found only %r in keyward --help" % in_help)
    in_man = []
    for tag in tp_tags(man_section(man_source(), "COMMANDS")):
        words = []
        for w in tag.split():
            if not re.fullmatch(r"[a-z][a-z-]*", w):
                break
            words.append(w)
        in_man.append(" ".join(words))
    missing = [c for c in in_help if c not in in_man]
    extra = [c for c in in_man if c not in in_help]
    if extra:
        note("in the man page but not in keyward --help: %s" % ", ".join(extra))
    if missing:
        note("in keyward --help but not in the man page: %s" % ", ".join(missing))
    check(not missing and not extra, "the man page's commands differ from keyward --help")
    rc, _, warnings = sh(["man", "--warnings", "-l", "-E", "UTF-8",
                          os.path.join(S["x"], "usr/share/man/man1/keyward.1.gz")],
                         env=dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MAN_DISABLE_SECCOMP="1"))
    eq(warnings.strip(), "", "man --warnings")


def settings_table():
    """(key, variable, flag) of every setting in src/cli/config.c; None where absent."""
    with open(os.path.join(SRC, "src/cli/config.c"), encoding="utf-8") as f:
        src = f.read()
    with open(os.path.join(SRC, "src/cli/cli.h"), encoding="utf-8") as f:
        header = f.read()
    enum = re.search(r"typedef enum \{(.*?)KW_CLI_SETTING_COUNT", header, re.S)
    check(enum, "no settings enum in src/cli/cli.h")
    count = len(re.findall(r"\bKW_CLI_[A-Z_]+\s*,", enum.group(1)))
    rows = re.findall(
        r'\[KW_CLI_[A-Z_]+\]\s*=\s*\{\s*(NULL|"[a-z_]+")\s*,\s*"(KEYWARD_[A-Z_]+)"\s*,\s*'
        r'(NULL|"--[a-z-]+")',
        src,
    )
    eq(len(rows), count, "settings parsed from config.c (the enum has %d)" % count)
    unq = lambda s: None if s == "NULL" else s.strip('"')  # noqa: E731
    return [(unq(k), v, unq(fl)) for k, v, fl in rows]


@case(after=[test_build])
def test_man_page_settings():
    table = settings_table()
    want = set(table) | {(None, "KEYWARD_PEPPER", None)}
    got = set()
    for tag in tp_tags(man_section(man_source(), "SETTINGS")):
        key = [w for w in re.findall(r"[A-Za-z_-]+", tag) if re.fullmatch(r"[a-z][a-z0-9_]*", w)]
        var = re.findall(r"\bKEYWARD_[A-Z0-9_]+", tag)
        flag = re.findall(r"(?<![\w-])--[a-z][a-z-]*", tag)
        check(len(key) <= 1 and len(var) == 1 and len(flag) <= 1, "odd SETTINGS entry: %r" % tag)
        got.add((key[0] if key else None, var[0], flag[0] if flag else None))
    for s in sorted(want - got, key=str):
        note("not in the man page's SETTINGS: %r" % (s,))
    for s in sorted(got - want, key=str):
        note("in the man page but not in src/cli/config.c: %r" % (s,))
    check(want == got, "the man page's settings differ from the settings table")
    # The binary: every variable it reads is in the man page, and every flag
    # of --help (and of serve --help) too.
    with open(S["bin"], "rb") as f:
        in_binary = {v.decode() for v in re.findall(rb"KEYWARD_[A-Z0-9_]+", f.read())}
    eq(in_binary, {v for _, v, _ in want}, "KEYWARD_* variables in the binary")
    man_text = unroff(man_source())
    help_flags = set()
    for args in (["--help"], ["serve", "--help"]):
        help_flags |= set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", sh([S["bin"]] + args)[1]))
    for _, _, flag in table:
        check(flag is None or flag in help_flags, "%s is in no --help" % flag)
    undocumented = sorted(f for f in help_flags if f not in man_text)
    check(not undocumented, "flags of --help missing from the man page: %s" % undocumented)


def conf_lines(path):
    """{key: value} of the commented-out `#key = value` lines of a config file."""
    found = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^#([a-z][a-z0-9_]*) = (\S.*)$", line.rstrip("\n"))
            if m:
                found[m.group(1)] = m.group(2)
    return found


@case(after=[test_build])
def test_config_file_settings():
    path = os.path.join(S["x"], CONF)
    keys = {k for k, _, _ in settings_table() if k}
    in_file = set(conf_lines(path))
    check(in_file == keys, "keyward.conf lacks %s and has unknown %s"
          % (sorted(keys - in_file), sorted(in_file - keys)))
    with open(path, encoding="utf-8") as f:
        text = f.read()
    active = [l for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]
    eq(active, [], "settings not commented out")
    for word in ("KEYWARD_PEPPER", "config"):
        check(word in text, "keyward.conf does not explain %s" % word)


@case(after=[test_build])
def test_unit_security_score():
    unit = os.path.join(S["x"], UNIT)
    _, out, err = sh(["systemd-analyze", "security", "--offline=true", unit], ok=False)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out + err)
    check(m, "no exposure level in: %s %s" % (out, err))
    note("systemd-analyze security --offline=true: %s" % m.group(0))
    check(float(m.group(1)) <= MAX_EXPOSURE, "exposure %s is over %.1f" % (m.group(1), MAX_EXPOSURE))
    eq(unit_values(unit, "ExecStart"),
       ["/usr/bin/keyward --config /etc/keyward/keyward.conf --data-dir /var/lib/keyward serve"],
       "ExecStart")
    eq(unit_values(unit, "User"), ["keyward"], "User")
    eq(unit_values(unit, "StateDirectory"), ["keyward"], "StateDirectory")
    eq(unit_values(unit, "StateDirectoryMode"), ["0700"], "StateDirectoryMode")


# ---- the sandbox against a real serve session, under strace ----


def exercise(port, root_key, account, password):
    """What a service does: health, metrics, the console and a sign-in, a key
    created and verified."""
    eq(request(port, "GET", "/healthz")[0], 200, "GET /healthz")
    eq(request(port, "GET", "/metrics")[0], 200, "GET /metrics")
    eq(request(port, "GET", "/")[0], 200, "GET / (the console)")
    status, _ = request(port, "POST", "/v1/session",
                        {"email": "admin@localhost", "password": password},
                        {"Origin": "http://127.0.0.1:%d" % port})
    check(status in (200, 201), "console sign-in: %d" % status)
    auth = {"Authorization": "Bearer " + root_key}
    eq(request(port, "GET", "/v1/accounts/" + account, headers=auth)[0], 200, "the root key")
    status, doc = request(port, "POST", "/v1/accounts/%s/keys" % account,
                          {"name": "Packaging test", "environment": "production"}, auth)
    eq(status, 201, "POST keys")
    secret = doc["secret"]
    status, doc = request(port, "POST", "/v1/keys/verify", {"key": secret})
    eq((status, doc.get("valid")), (200, True), "verify the new key")
    return secret


@case(after=[test_build])
def test_unit_sandbox_allows_what_serve_uses():
    unit = os.path.join(S["x"], UNIT)
    data = os.path.join(S["tmp"], "strace-data")
    trace = os.path.join(S["tmp"], "strace.txt")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}
    # As a user other than root, like the service: SQLite, for one, calls
    # fchown (denied by ~@privileged) only as root.
    user = []
    if IS_ROOT:
        os.chmod(S["tmp"], 0o711)
        os.makedirs(data, mode=0o700)
        os.chown(data, 65534, 65534)
        user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    srv = Serve(["strace", "-f", "-qq", "-s", "256", "-o", trace] + user +
                [S["bin"], "--data-dir", data, "serve", "--listen", "127.0.0.1:0"], env=env,
                main_pid=lambda: traced_pid(trace))
    try:
        m = FIRST_RUN.search(srv.out.decode())
        check(m, "no first run on stdout: %r" % srv.out)
        exercise(srv.port, m.group(3), m.group(1), m.group(2))
    finally:
        eq(srv.stop(), 0, "serve's exit status after SIGTERM")
    calls, families, problems = sandbox_problems(trace, unit, data)
    check(len(calls) > 20, "strace saw only %r" % sorted(calls))
    note("serve used %d system calls, address families %s" % (len(calls), sorted(families)))
    check(not problems, "the sandbox would break keyward serve:\n" + "\n".join(problems[:20]))


# ------------------------------------------------------ throwaway root ----


R = None  # the ThrowawayRoot


@case(needs_root=True, after=[test_build])
def test_install():
    global R  # pylint: disable=global-statement
    R = ThrowawayRoot(S["tmp"])
    R.mount()
    # Start clean even if the host has keyward installed or used.
    if R.run(["dpkg-query", "-W", "-f=${Status}", "keyward"], ok=False)[1].startswith("install"):
        R.run(["dpkg", "--purge", "keyward"])
    for d in ("/var/lib/keyward", "/etc/keyward"):
        shutil.rmtree(R.path(d), ignore_errors=True)
    if R.run(["getent", "passwd", "keyward"], ok=False)[0] == 0:
        R.run(["deluser", "--system", "keyward"])
    shutil.copy(deb_path(S["version"]), R.path("/keyward.deb"))
    _, out, err = R.run(["dpkg", "-i", "/keyward.deb"])
    note("dpkg -i: " + (out + err).strip().replace("\n", "\n  "))
    check(os.path.isdir(R.path("/run")) and not os.path.exists(R.path("/run/systemd/system")),
          "systemd is PID 1 in the throwaway root?")
    check("journalctl -u keyward" in out + err, "no hint where the first-run output goes")


@case(needs_root=True, after=[test_install])
def test_installed_files_owners_modes():
    eq(R.stat("/usr/bin/keyward"), (0o755, "root", "root"), "/usr/bin/keyward")
    eq(R.stat("/etc/keyward/keyward.conf"), (0o644, "root", "root"), "keyward.conf")
    eq(R.stat("/lib/systemd/system/keyward.service"), (0o644, "root", "root"), "the unit")
    _, conffiles, _ = R.run(["dpkg-query", "-W", "-f=${Conffiles}", "keyward"])
    check("/etc/keyward/keyward.conf" in conffiles, "not a conffile: %r" % conffiles)
    _, entry, _ = R.run(["getent", "passwd", "keyward"])
    _name, _, uid, _gid, _gecos, home, shell = entry.strip().split(":")
    check(int(uid) < 1000, "keyward is not a system user (uid %s)" % uid)
    eq((home, shell), ("/var/lib/keyward", "/usr/sbin/nologin"), "keyward's home and shell")
    eq(R.stat("/var/lib/keyward"), (0o700, "keyward", "keyward"), "/var/lib/keyward")
    eq(R.stat("/var/lib/keyward/pepper"), (0o600, "keyward", "keyward"), "the pepper")
    eq(R.stat("/var/lib/keyward/keyward.db"), (0o600, "keyward", "keyward"), "the database")
    link = R.path("/etc/systemd/system/multi-user.target.wants/keyward.service")
    eq(os.readlink(link), "/lib/systemd/system/keyward.service", "the unit is enabled")
    _, out, _ = sh(R.as_user("keyward", ["keyward", "--version"]))
    eq(out.strip(), "keyward " + S["version"].rsplit("-", 1)[0], "keyward --version")


@case(needs_root=True, after=[test_install])
def test_unit_verify_in_root():
    rc, out, err = R.run(["systemd-analyze", "verify", "/" + UNIT], ok=False)
    eq((rc, (out + err).strip()), (0, ""), "systemd-analyze verify")


def serve_in_root():
    """`keyward serve` as the unit runs it, as the keyward user, on a free port."""
    return Serve(R.as_user("keyward", [
        "/usr/bin/keyward", "--config", "/etc/keyward/keyward.conf", "--data-dir",
        "/var/lib/keyward", "serve", "--listen", "127.0.0.1:0"]))


@case(needs_root=True, after=[test_install])
def test_first_run_as_keyward():
    srv = serve_in_root()
    try:
        text = srv.out.decode()
        m = FIRST_RUN.search(text)
        check(m, "no first-run output on stdout: %r" % text)
        S["account"], S["password"], S["root_key"] = m.group(1), m.group(2), m.group(3)
        eq(text.count("First run:"), 1, "first-run blocks on stdout")
        eq(text.count(S["root_key"]), 1, "the root key on stdout")
        check(S["root_key"].encode() not in srv.err, "the root key is on stderr")
        S["api_key"] = exercise(srv.port, S["root_key"], S["account"], S["password"])
    finally:
        eq(srv.stop(), 0, "serve's exit status after SIGTERM")
    check(S["root_key"].encode() not in srv.err and S["password"].encode() not in srv.err,
          "a secret reached stderr")
    # Started again: nothing more is shown.
    srv = serve_in_root()
    try:
        eq(request(srv.port, "GET", "/healthz")[0], 200, "GET /healthz after a restart")
    finally:
        eq(srv.stop(), 0, "the second serve's exit status")
    check(b"First run" not in srv.out and S["root_key"].encode() not in srv.out,
          "the second start printed the first-run output again: %r" % srv.out)


@case(needs_root=True, after=[test_first_run_as_keyward])
def test_no_secret_in_any_file():
    # The search must find what it looks for: a canary among the files.
    canary = "kw_canary_" + os.urandom(12).hex()
    os.makedirs(os.path.join(R.up, "tmp"), exist_ok=True)
    with open(os.path.join(R.up, "tmp", "keyward-canary"), "w", encoding="utf-8") as f:
        f.write("x" * 5000 + canary)
    secrets = {"canary": canary, "root key": S["root_key"], "password": S["password"],
               "API key": S["api_key"]}
    found = {name: [] for name in secrets}
    scanned = 0
    for dirpath, _dirnames, filenames in os.walk(R.up):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            with open(path, "rb") as f:
                data = f.read()
            scanned += 1
            for what, secret in secrets.items():
                if secret.encode() in data:
                    found[what].append(os.path.relpath(path, R.up))
    os.unlink(os.path.join(R.up, "tmp", "keyward-canary"))
    note("searched %d files of the overlay's upper layer" % scanned)
    eq(found["canary"], ["tmp/keyward-canary"], "where the canary was found")
    for what in ("root key", "password", "API key"):
        eq(found[what], [], "files holding the %s" % what)


@case(needs_root=True, after=[test_first_run_as_keyward])
def test_config_file_uncommented_is_accepted():
    # Every line of the shipped file, uncommented: every key is one keyward
    # knows and every value one it accepts (serve checks its own on start).
    with open(R.path(CONF), encoding="utf-8") as f:
        lines = [re.sub(r"^#([a-z][a-z0-9_]* = )", r"\1", l) for l in f]
    path = "/etc/keyward/uncommented.conf"
    with open(R.path(path), "w", encoding="utf-8") as f:
        f.writelines(lines)
    os.chmod(R.path(path), 0o644)
    try:
        srv = Serve(R.as_user("keyward", ["/usr/bin/keyward", "--config", path, "serve",
                                          "--listen", "127.0.0.1:0"]))
        try:
            eq(request(srv.port, "GET", "/healthz")[0], 200, "GET /healthz")
            auth = {"Authorization": "Bearer " + S["root_key"]}
            eq(request(srv.port, "GET", "/v1/accounts/" + S["account"], headers=auth)[0], 200,
               "the root key, with the file's store and pepper")
        finally:
            eq(srv.stop(), 0, "serve's exit status")
    finally:
        os.unlink(R.path(path))


def digest(rel):
    """SHA-256 of a file of the throwaway root."""
    with open(R.path(rel), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@case(needs_root=True, after=[test_first_run_as_keyward])
def test_upgrade_keeps_data_and_pepper():
    pepper = digest("/var/lib/keyward/pepper")
    shutil.copy(deb_path(S["upgrade"]), R.path("/keyward-upgrade.deb"))
    R.run(["dpkg", "-i", "/keyward-upgrade.deb"])
    eq(R.run(["dpkg-query", "-W", "-f=${Version}", "keyward"])[1], S["upgrade"], "version")
    eq(digest("/var/lib/keyward/pepper"), pepper, "the pepper after the upgrade")
    eq(R.stat("/var/lib/keyward/pepper"), (0o600, "keyward", "keyward"), "the pepper")
    eq(R.stat("/var/lib/keyward"), (0o700, "keyward", "keyward"), "/var/lib/keyward")
    srv = serve_in_root()
    try:
        check(b"First run" not in srv.out, "a first run after the upgrade: %r" % srv.out)
        auth = {"Authorization": "Bearer " + S["root_key"]}
        eq(request(srv.port, "GET", "/v1/accounts/" + S["account"], headers=auth)[0], 200,
           "the root key after the upgrade")
        wrong = {"Authorization": "Bearer " + S["root_key"][:-8] + "AAAAAAAA"}
        eq(request(srv.port, "GET", "/v1/accounts/" + S["account"], headers=wrong)[0], 401,
           "a wrong root key")
        status, doc = request(srv.port, "POST", "/v1/keys/verify", {"key": S["api_key"]})
        eq((status, doc.get("valid")), (200, True), "the API key after the upgrade")
    finally:
        eq(srv.stop(), 0, "serve's exit status")
    S["pepper"] = pepper


@case(needs_root=True, after=[test_upgrade_keeps_data_and_pepper])
def test_remove_keeps_config_and_data():
    R.run(["dpkg", "--remove", "keyward"])
    check(not os.path.exists(R.path("/usr/bin/keyward")), "/usr/bin/keyward is still there")
    check(os.path.isfile(R.path(CONF)), "remove deleted the config file")
    eq(digest("/var/lib/keyward/pepper"), S["pepper"], "the pepper after remove")
    status = R.run(["dpkg-query", "-W", "-f=${Status}", "keyward"])[1]
    eq(status, "deinstall ok config-files", "dpkg status")


@case(needs_root=True, after=[test_remove_keeps_config_and_data])
def test_purge_keeps_data_removes_config():
    _, out, err = R.run(["dpkg", "--purge", "keyward"])
    notes = [l for l in (out + err).splitlines() if l.startswith("keyward: kept /var/lib/keyward")]
    eq(len(notes), 1, "the purge note about the kept data (output: %r)" % (out + err))
    check(not os.path.exists(R.path("/etc/keyward")), "/etc/keyward survived the purge")
    check(not os.path.lexists(
        R.path("/etc/systemd/system/multi-user.target.wants/keyward.service")),
        "the unit is still enabled")
    eq(digest("/var/lib/keyward/pepper"), S["pepper"], "the pepper after purge")
    check(os.path.isfile(R.path("/var/lib/keyward/keyward.db")), "the database is gone")
    rc, status, _ = R.run(["dpkg-query", "-W", "-f=${Status}", "keyward"], ok=False)
    check(rc != 0 or "not-installed" in status, "still known to dpkg: %r" % status)


# ---------------------------------------------------------------- main ----


def main():
    if IS_ROOT and IN_NS not in os.environ:
        # Everything runs in a private mount namespace, so the overlay and
        # its bind mounts vanish with it; the folder goes afterwards, never
        # crossing into another file system.
        tmp = tempfile.mkdtemp(prefix="keyward-deb-")
        try:
            proc = subprocess.run(
                ["unshare", "--mount", "--propagation", "private", "--fork",
                 sys.executable, os.path.abspath(__file__)],
                env=dict(os.environ, **{IN_NS: tmp}),
            )
            return proc.returncode
        finally:
            subprocess.run(["rm", "-rf", "--one-file-system", tmp])
    if IN_NS in os.environ:
        S["tmp"] = os.environ[IN_NS]
        return run_cases()
    S["tmp"] = tempfile.mkdtemp(prefix="keyward-deb-")
    try:
        return run_cases()
    finally:
        shutil.rmtree(S["tmp"], ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
