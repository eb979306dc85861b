#!/usr/bin/env python3
"""Black-box tests of `keyward backup` and `keyward restore` (SQLite store).

A backup is taken while `keyward serve` creates and deletes keys for
several threads at once; restored into a new data directory with the same
pepper, every key whose create was acknowledged before the backup began
verifies, and every key whose delete was acknowledged before it does not.
Then: the file's mode, atomicity (a failed backup leaves FILE as it was and
no temporary file), what restore refuses, a wrong pepper, --json.

Every test runs the built binary ($KEYWARD_BIN) in a fresh directory.
"""

import concurrent.futures
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import threading
import time

import kwserver
from kwserver import Server
from kwtest import BIN, check, data_dir, eq, ok_run, run, run_tests, stderr_log, tmpdir

# These tests are about the SQLite store, also when the suite runs beside PostgreSQL.
kwserver.PG_SERVER = None

PEPPER_B = "1:" + "b2" * 32
SCHEMA_VERSION = 5


# ---- helpers ----


def js(args, env=None, rc=0):
    out, _ = ok_run(list(args) + ["--json"], env=env, rc=rc)
    return json.loads(out)


def verify_code(secret, dirname):
    """(exit code, verification code or None, stderr) of `key verify` in data dir dirname."""
    rc, out, err = run(["key", "verify", "--json"], stdin=secret + "\n",
                       env={"KEYWARD_DATA_DIR": dirname})
    return rc, (json.loads(out)["code"] if out else None), err


def refused(args, rc=1, env=None, stdin=None):
    """Runs a command that must fail with rc and one sentence on stderr; returns the sentence."""
    got, out, err = run(args, stdin=stdin, env=env)
    eq(got, rc, "exit code of %s (stderr %r)" % (args, err))
    eq(out, "", "stdout of %s" % args)
    lines = err.splitlines()
    check(lines and lines[0].startswith("keyward: "), "error of %s: %r" % (args, err))
    if rc == 1:
        eq(len(lines), 1, "one sentence on stderr for %s: %r" % (args, err))
    return lines[0]


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def listing(dirname):
    return sorted(os.listdir(dirname))


def new_data_dir(name, pepper_from=None, pepper_text=None):
    """A new data directory (0700) holding a copy of a pepper file, or the given keyring."""
    d = os.path.join(tmpdir(), name)
    os.mkdir(d, 0o700)
    if pepper_from:
        shutil.copyfile(pepper_from, os.path.join(d, "pepper"))
    elif pepper_text:
        with open(os.path.join(d, "pepper"), "w") as f:
            f.write(pepper_text + "\n")
    if pepper_from or pepper_text:
        os.chmod(os.path.join(d, "pepper"), 0o600)
    return d


def pepper_text():
    with open(os.path.join(data_dir(), "pepper")) as f:
        return f.read()


def make_store():
    """A data dir (the default one) holding an account and a key; returns the key's secret."""
    acc = js(["account", "create", "Acme"])["id"]
    return js(["key", "create", "--account", acc, "--name", "CRM"])["secret"]


def fabricate(path, sql):
    """Edits a database file with python's sqlite3, as an operator might."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.executescript(sql)
    finally:
        db.close()


DAMAGE = (
    "CREATE TABLE filler(a, b); CREATE INDEX filler_a ON filler(a);"
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)"
    " INSERT INTO filler SELECT i, -i FROM n;"
    "PRAGMA writable_schema=ON;"
    "UPDATE sqlite_master SET sql = 'CREATE INDEX filler_a ON filler(b)' WHERE name = 'filler_a';"
)


class Load:
    """Creates and deletes keys in several accounts through the server, from several threads.

    Every acknowledged create and delete is recorded with the time its answer
    arrived (time.monotonic(), so the change was committed before it); a
    delete also with the time its request was sent.
    """

    def __init__(self, srv, accounts, threads=8):
        self.srv = srv
        self.accounts = accounts
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.created = []  # (acked, key_id, secret)
        self.deleted = {}  # key_id -> (sent, acked)
        self.errors = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, i):
        mine = []
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                if n % 4 == 0 and mine:
                    acc, key_id = mine.pop(0)
                    sent = time.monotonic()
                    status, _, body = self.srv.request(
                        "DELETE", "/v1/accounts/%s/keys/%s" % (acc, key_id), root=True)
                    acked = time.monotonic()
                    if status != 204:
                        raise AssertionError("delete: %s %r" % (status, body))
                    with self.lock:
                        self.deleted[key_id] = (sent, acked)
                else:
                    acc = self.accounts[(i + n) % len(self.accounts)]
                    status, _, doc = self.srv.request(
                        "POST", "/v1/accounts/%s/keys" % acc, {"name": "load %d.%d" % (i, n)},
                        root=True)
                    acked = time.monotonic()
                    if status != 201:
                        raise AssertionError("create: %s %r" % (status, doc))
                    with self.lock:
                        self.created.append((acked, doc["key"]["id"], doc["secret"]))
                    mine.append((acc, doc["key"]["id"]))
            except Exception as e:  # recorded: the test fails on any
                with self.lock:
                    self.errors.append(repr(e))
            time.sleep(0.003)

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def wait_for(self, creates, deletes, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.created) >= creates and len(self.deleted) >= deletes:
                    return
                check(not self.errors, "load failed: %s" % self.errors[:3])
            time.sleep(0.01)
        raise AssertionError("the load did not reach %d creates" % creates)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


# ---- the tests ----


def test_help():
    for cmd in ("backup", "restore"):
        out, err = ok_run([cmd, "--help"])
        check(out.startswith("usage: keyward " + cmd), "help of %s" % cmd)
        check("pepper" in out, "the help of %s speaks of the pepper" % cmd)
        eq(err, "", "stderr of %s --help" % cmd)
    out, _ = ok_run(["--help"])
    check("backup" in out and "restore" in out, "keyward --help lists backup and restore")
    refused(["backup"], rc=2)
    refused(["backup", "a.db", "b.db"], rc=2)
    refused(["restore"], rc=2)
    refused(["restore", "--bogus", "a.db"], rc=2)


def test_backup_under_write_load_then_restore():
    with Server(data_dir=tmpdir(), args=["--max-keys-per-account", "100000"]) as srv:
        accounts = [srv.account_id]
        for i in range(3):
            status, _, doc = srv.request("POST", "/v1/accounts", {"name": "Load %d" % i},
                                         root=True)
            eq(status, 201, "account create")
            accounts.append(doc["id"])
        load = Load(srv, accounts).start()
        try:
            load.wait_for(creates=200, deletes=40)
            backup = os.path.join(tmpdir(), "backup.db")
            started = time.monotonic()
            doc = js(["backup", backup])
            ended = time.monotonic()
            load.wait_for(creates=len(load.created) + 30, deletes=0)  # still serving
        finally:
            load.finish()
        check(not load.errors, "requests failed during the backup: %s" % load.errors[:3])
        # The server kept serving and writing while the backup ran.
        during = [acked for acked, _, _ in load.created if started <= acked <= ended]
        check(during, "no key was created while the backup ran")
        eq(srv.request("GET", "/healthz")[0], 200, "healthz after the backup")
        pepper = os.path.join(data_dir(), "pepper")
        eq(doc["path"], backup, "path")
        eq(doc["schema_version"], SCHEMA_VERSION, "schema_version")
        eq(doc["bytes"], os.path.getsize(backup), "bytes")
        eq(doc["pepper_file"], pepper, "pepper_file")
        eq(doc["pepper_included"], False, "pepper_included")
        eq(stat.S_IMODE(os.stat(backup).st_mode), 0o600, "mode of the backup")

    # Restore into a new data dir with a copy of the pepper file.
    restored = new_data_dir("restored", pepper_from=pepper)
    got = js(["restore", backup], env={"KEYWARD_DATA_DIR": restored})
    eq(got["path"], os.path.join(restored, "keyward.db"), "restored path")
    eq(got["schema_version"], SCHEMA_VERSION, "restored schema")
    eq(got["replaced"], False, "replaced")
    eq(got["pepper_included"], False, "pepper_included")
    eq(stat.S_IMODE(os.stat(got["path"]).st_mode), 0o600, "mode of the restored database")

    must_verify = [(key_id, secret) for acked, key_id, secret in load.created
                   if acked < started and (key_id not in load.deleted
                                           or load.deleted[key_id][0] > ended)]
    must_not = [(key_id, secret) for acked, key_id, secret in load.created
                if key_id in load.deleted and load.deleted[key_id][1] < started]
    check(len(must_verify) >= 80 and len(must_not) >= 30,
          "%d keys to verify, %d deleted" % (len(must_verify), len(must_not)))

    def outcome(item):
        return item[0], verify_code(item[1], restored)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for key_id, (rc, code, err) in pool.map(outcome, must_verify):
            eq((rc, code), (0, "VALID"), "key %s acknowledged before the backup (%s)" % (key_id, err))
        for key_id, (rc, code, err) in pool.map(outcome, must_not):
            eq((rc, code), (1, "NOT_FOUND"), "key %s deleted before the backup (%s)" % (key_id, err))

    # Nothing secret in anything these commands printed.
    log = stderr_log()
    check(pepper_text().split(":")[-1].strip().encode() not in log, "the pepper was printed")
    check(not any(s.encode() in log for _, _, s in load.created), "a key was printed")


def test_backup_output_and_pepper_reminder():
    secret = make_store()
    rc, out, err = run(["backup", "b.db"])
    eq(rc, 0, "backup: %s" % err)
    size = os.path.getsize(os.path.join(tmpdir(), "b.db"))
    eq(out, "backed up %s/keyward.db to b.db (schema v%d, %d bytes)\n"
       % (data_dir(), SCHEMA_VERSION, size), "stdout")
    eq(err, "keyward: the pepper is not in the backup: keep a copy of %s/pepper too, stored apart "
       "from the backup; without the same pepper no key in the backup verifies.\n" % data_dir(),
       "stderr")
    # With the pepper in KEYWARD_PEPPER there is no file to name, and the value never shows.
    os.mkdir(os.path.join(tmpdir(), "op"), 0o700)
    env = {"KEYWARD_DATA_DIR": os.path.join(tmpdir(), "op"), "KEYWARD_PEPPER": PEPPER_B}
    ok_run(["account", "create", "Op"], env=env)
    rc, out, err = run(["backup", "--json", "op.db"], env=env)
    eq(rc, 0, "backup: %s" % err)
    doc = json.loads(out)
    eq(doc["pepper_file"], None, "pepper_file with KEYWARD_PEPPER")
    check("KEYWARD_PEPPER" in err and PEPPER_B[2:] not in err + out, "KEYWARD_PEPPER reminder")
    # The mode is 0600 whatever the umask, of the backup and of a restored database.
    for umask in (0, 0o277):
        name = "u%o.db" % umask
        proc = subprocess.run([BIN, "backup", name], cwd=tmpdir(), umask=umask,
                              env=dict(os.environ, KEYWARD_DATA_DIR=data_dir()),
                              capture_output=True, timeout=60)
        eq(proc.returncode, 0, "backup with umask %o: %r" % (umask, proc.stderr))
        eq(stat.S_IMODE(os.stat(os.path.join(tmpdir(), name)).st_mode), 0o600,
           "mode of the backup under umask %o" % umask)
        d = new_data_dir("r%o" % umask)
        proc = subprocess.run([BIN, "restore", name], cwd=tmpdir(), umask=umask,
                              env=dict(os.environ, KEYWARD_DATA_DIR=d),
                              capture_output=True, timeout=60)
        eq(proc.returncode, 0, "restore with umask %o: %r" % (umask, proc.stderr))
        eq(stat.S_IMODE(os.stat(os.path.join(d, "keyward.db")).st_mode), 0o600,
           "mode of the restored database under umask %o" % umask)
    check(secret.encode() not in stderr_log(), "a key was printed")


def test_backup_refusals_leave_file_untouched():
    target = os.path.join(tmpdir(), "backups")
    os.mkdir(target)
    file = os.path.join(target, "keyward.db")
    with open(file, "w") as f:
        f.write("yesterday's backup\n")
    before = sha(file)

    msg = refused(["backup", file])
    check("no database" in msg, "no database yet: %r" % msg)

    make_store()
    msg = refused(["backup", target])
    check("is a directory" in msg, "a directory: %r" % msg)
    msg = refused(["backup", os.path.join(data_dir(), "keyward.db")])
    check("database itself" in msg, "the database itself: %r" % msg)
    msg = refused(["backup", os.path.join(tmpdir(), "missing", "b.db")])
    check("Cannot create a file" in msg, "missing directory: %r" % msg)

    # A directory the command may not write to.
    if os.geteuid() == 0:
        # root writes anywhere: run the backup as nobody, on a data dir nobody owns.
        os.chmod(tmpdir(), 0o755)
        for dirpath, _, files in os.walk(data_dir()):
            os.chown(dirpath, 65534, 65534)
            for name in files:
                os.chown(os.path.join(dirpath, name), 65534, 65534)

        def drop():
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
        proc = subprocess.run([BIN, "backup", file], cwd=tmpdir(), preexec_fn=drop,
                              env=dict(os.environ, KEYWARD_DATA_DIR=data_dir()),
                              capture_output=True, timeout=60)
    else:
        os.chmod(target, 0o555)
        try:
            proc = subprocess.run([BIN, "backup", file], cwd=tmpdir(),
                                  env=dict(os.environ, KEYWARD_DATA_DIR=data_dir()),
                                  capture_output=True, timeout=60)
        finally:
            os.chmod(target, 0o755)
    eq(proc.returncode, 1, "backup into an unwritable directory: %r" % proc.stderr)
    check(b"Permission denied" in proc.stderr, "why: %r" % proc.stderr)
    eq(sha(file), before, "FILE after a refused backup")
    eq(listing(target), ["keyward.db"], "files beside FILE")

    # A database that fails the integrity check: the copy is made, checked, thrown away.
    fabricate(os.path.join(data_dir(), "keyward.db"), DAMAGE)
    msg = refused(["backup", file])
    check("integrity check" in msg, "damaged: %r" % msg)
    eq(sha(file), before, "FILE after a failed integrity check")
    eq(listing(target), ["keyward.db"], "files beside FILE")

    msg = refused(["--store", "postgres://keyward:hunter2@127.0.0.1:1/kw", "backup", file])
    check("pg_dump" in msg and "docs/postgres.md" in msg, "PostgreSQL: %r" % msg)
    check("hunter2" not in msg, "the store URL's password was printed")
    msg = refused(["--store", "postgres://keyward:hunter2@127.0.0.1:1/kw", "restore", file])
    check("pg_restore" in msg and "hunter2" not in msg, "PostgreSQL restore: %r" % msg)
    eq(sha(file), before, "FILE at the end")


def test_restore_refusals_change_nothing():
    secret = make_store()
    ok_run(["backup", "good.db"])
    good = os.path.join(tmpdir(), "good.db")
    fresh = os.path.join(tmpdir(), "fresh")  # never created by a refused restore
    env = {"KEYWARD_DATA_DIR": fresh}

    def refuse(path, why):
        msg = refused(["restore", path], env=env)
        check(why in msg, "%s: %r" % (why, msg))
        check(not os.path.exists(fresh), "a refused restore created the data dir")
        return msg

    refuse(os.path.join(tmpdir(), "nothing.db"), "no file")
    msg = refuse(os.path.join(data_dir(), "pepper"), "not a SQLite database")
    check(pepper_text().split(":")[-1].strip() not in msg, "the pepper was printed")

    other = os.path.join(tmpdir(), "other.db")
    fabricate(other, "CREATE TABLE notes(text); INSERT INTO notes VALUES ('hello');")
    refuse(other, "not a keyward database")

    newer = os.path.join(tmpdir(), "newer.db")
    shutil.copyfile(good, newer)
    fabricate(newer, "INSERT INTO schema_migrations VALUES (%d, 0);" % (SCHEMA_VERSION + 1))
    refuse(newer, "newer than this build")

    damaged = os.path.join(tmpdir(), "damaged.db")
    shutil.copyfile(good, damaged)
    fabricate(damaged, DAMAGE)
    refuse(damaged, "integrity check")

    # An existing database that holds data: only with --force.
    db = os.path.join(data_dir(), "keyward.db")
    acc = js(["account", "create", "After the backup"])["id"]
    before, files = sha(db), listing(data_dir())
    msg = refused(["restore", good])
    check("already holds data" in msg and "--force" in msg, "existing data: %r" % msg)
    eq((sha(db), listing(data_dir())), (before, files), "the database after a refusal")
    eq(js(["account", "show", acc])["id"], acc, "data after a refusal")

    # A running server: refused even with --force.
    with Server(data_dir=tmpdir(), first_run=False) as srv:
        eq(srv.request("GET", "/healthz")[0], 200, "healthz")
        msg = refused(["restore", "--force", good])
        check("in use" in msg and "keyward serve" in msg, "server running: %r" % msg)
        eq(srv.verify(secret)["code"], "VALID", "the server's data after a refusal")
        check(not [f for f in listing(data_dir()) if ".tmp-" in f], "temporary file left")

    out, err = ok_run(["restore", "--force", good])
    eq(out, "restored %s over the database at %s (schema v%d)\n" % (good, db, SCHEMA_VERSION),
       "stdout")
    check("%s/pepper must be the pepper file the backup was made with" % data_dir() in err,
          "pepper reminder %r" % err)
    check("deleted since the backup" in err, "reminder of deleted keys %r" % err)
    rc, _, err = run(["account", "show", acc])
    eq(rc, 1, "the account made after the backup is gone: %s" % err)
    eq(verify_code(secret, data_dir())[:2], (0, "VALID"), "the key of the backup")
    eq(listing(data_dir()), ["keyward.db", "pepper"], "data dir after the restore")
    with Server(data_dir=tmpdir(), first_run=False) as srv:
        eq(srv.verify(secret)["code"], "VALID", "keyward serve on the restored database")


def test_restore_migrates_an_older_schema():
    secret = make_store()
    ok_run(["backup", "old.db"])
    old = os.path.join(tmpdir(), "old.db")
    fabricate(old, "DROP TRIGGER audit_log_no_delete; DROP TABLE audit_prune;"
                   "DROP INDEX audit_log_at; ALTER TABLE audit_log DROP COLUMN source_ip;"
                   "ALTER TABLE api_keys DROP COLUMN enabled;"
                   "ALTER TABLE api_keys DROP COLUMN rolled_from;"
                   "ALTER TABLE api_keys DROP COLUMN rolled_to;"
                   "ALTER TABLE api_keys DROP COLUMN metadata;"
                   "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log"
                   "  BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;"
                   "DROP TABLE nodes; DROP TABLE feed_head; DROP TABLE key_changes;"
                   "DROP TABLE sessions; DROP TABLE pepper_checks;"
                   "DELETE FROM schema_migrations WHERE version > 1;")
    d = new_data_dir("restored")
    rc, out, err = run(["restore", "old.db"], env={"KEYWARD_DATA_DIR": d})
    eq(rc, 0, "restore: %s" % err)
    check("before starting keyward, put the pepper file the backup was made with at %s/pepper"
          % d in err, "reminder of the missing pepper %r" % err)
    shutil.copyfile(os.path.join(data_dir(), "pepper"), os.path.join(d, "pepper"))
    os.chmod(os.path.join(d, "pepper"), 0o600)
    eq(out, "restored old.db to %s/keyward.db (schema v1, migrated to v%d)\n" % (d, SCHEMA_VERSION),
       "stdout")
    doc = js(["migrate"], env={"KEYWARD_DATA_DIR": d})
    eq(doc["schema_version"], SCHEMA_VERSION, "schema after restore")
    eq(verify_code(secret, d)[:2], (0, "VALID"), "key after a migrating restore")


def test_restore_with_a_wrong_pepper_verifies_nothing():
    secret = make_store()
    ok_run(["backup", "b.db"])
    right = new_data_dir("right", pepper_from=os.path.join(data_dir(), "pepper"))
    wrong = new_data_dir("wrong", pepper_text=PEPPER_B)
    for d in (right, wrong):
        doc = js(["restore", "b.db"], env={"KEYWARD_DATA_DIR": d})
        eq(doc["pepper_file"], os.path.join(d, "pepper"), "pepper_file")
    eq(verify_code(secret, right)[:2], (0, "VALID"), "with the pepper of the backup")
    # keyward recognises the other pepper and refuses to start: no key verifies.
    rc, code, err = verify_code(secret, wrong)
    eq((rc, code), (1, None), "with another pepper")
    check("pepper" in err and "not the one this database was created with" in err, err)
    check(PEPPER_B[2:] not in err, "the pepper was printed")


def test_restored_database_without_its_pepper_gets_no_new_one():
    secret = make_store()
    ok_run(["backup", "b.db"])
    d = new_data_dir("nopepper")
    ok_run(["restore", "b.db"], env={"KEYWARD_DATA_DIR": d})
    # Any command, serve included, refuses rather than invent a pepper that
    # would verify no restored key (and have to be found and removed).
    for args in (["account", "list"], ["serve", "--listen", "127.0.0.1:0"]):
        rc, _, err = run(args, env={"KEYWARD_DATA_DIR": d})
        eq(rc, 1, "keyward %s without the pepper: %s" % (args[0], err))
        check("the pepper file %s/pepper is missing, and the database already holds keys" % d
              in err, "message %r" % err)
        eq(listing(d), ["keyward.db"], "data dir after keyward %s" % args[0])
    shutil.copyfile(os.path.join(data_dir(), "pepper"), os.path.join(d, "pepper"))
    os.chmod(os.path.join(d, "pepper"), 0o600)
    eq(verify_code(secret, d)[:2], (0, "VALID"), "once the pepper is back")
    # An empty data dir still gets its pepper on first use.
    fresh = new_data_dir("fresh")
    ok_run(["account", "list"], env={"KEYWARD_DATA_DIR": fresh})
    check("pepper" in listing(fresh), "no pepper created for an empty database")


def test_config_file_names_the_database():
    secret = make_store()
    with open(os.path.join(tmpdir(), "keyward.conf"), "w") as f:
        f.write("# where the data lives\ndata_dir = %s\n" % data_dir())
    env = {"KEYWARD_DATA_DIR": None, "KEYWARD_CONFIG": "keyward.conf"}
    doc = js(["backup", "c.db"], env=env)
    eq(doc["database"], os.path.join(data_dir(), "keyward.db"), "database from the config file")
    d = new_data_dir("restored", pepper_from=os.path.join(data_dir(), "pepper"))
    doc = js(["--data-dir", d, "restore", "c.db"], env=env)  # the flag beats the file
    eq(doc["path"], os.path.join(d, "keyward.db"), "the flag beats the file")
    eq(verify_code(secret, d)[:2], (0, "VALID"), "key in the restore")
    with open(os.path.join(tmpdir(), "bad.conf"), "w") as f:
        f.write("data_dir %s\n" % data_dir())
    refused(["--config", "bad.conf", "backup", "d.db"], rc=2)


if __name__ == "__main__":
    run_tests(globals())
