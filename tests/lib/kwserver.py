"""kwserver - starts `keyward serve` for a black-box test and talks HTTP to it.

    with Server() as srv:               # fresh data dir, port 0, first run
        status, headers, body = srv.request("GET", "/healthz")
        acc = srv.first_run["account"]["id"]; root = srv.root_key

The server runs the built binary ($KEYWARD_BIN) in a temporary directory
(or data_dir=...), listening on 127.0.0.1 on a free port. Its stderr (the
access log) is collected in srv.log(). Standard library only.

The store: SQLite in the data directory by default. When
KEYWARD_TEST_STORE_URL names a PostgreSQL server (scripts/pg.sh sets it),
each Server gets a fresh, randomly named database there instead (created
and dropped with psql), KEYWARD_STORE pointing at it and the fixed test
pepper TEST_PEPPER in KEYWARD_PEPPER. A Server given data_dir=... keeps one
database per directory, so a restart on the same directory finds its data
again; those are dropped when the test process exits. store_url=... makes
several Servers share one database (see create_database()).
"""

import atexit
import http.client
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import zlib

BIN = os.path.abspath(os.environ.get("KEYWARD_BIN", "build/keyward"))
START_TIMEOUT = 30
PG_SERVER = os.environ.get("KEYWARD_TEST_STORE_URL") or None
# Every node of one database must hash with the same pepper: a fixed test keyring.
TEST_PEPPER = "1:" + "5a" * 16 + "c3" * 16
PSQL_TIMEOUT = 60

# ---- PostgreSQL databases (only when KEYWARD_TEST_STORE_URL is set) ----


def _psql(database, sql):
    """Runs one SQL command as the server's superuser; raises on failure."""
    proc = subprocess.run(
        ["psql", "%s/%s" % (PG_SERVER, database), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=PSQL_TIMEOUT,
    )
    if proc.returncode != 0:
        raise RuntimeError("psql %r: %s" % (sql, proc.stderr.decode("utf-8", "replace")))
    return proc.stdout


def create_database():
    """Creates an empty database on the test server; returns (name, url)."""
    name = "kwhttp_" + secrets.token_hex(8)
    _psql("postgres", "CREATE DATABASE %s" % name)
    return name, "%s/%s" % (PG_SERVER, name)


def drop_database(name):
    """Drops a database of create_database(), ending the sessions still in it."""
    try:
        _psql("postgres", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
    except (RuntimeError, OSError, subprocess.TimeoutExpired):
        pass  # the server may be gone already: scripts/pg.sh removes it anyway


def dump_database(url):
    """The whole database as pg_dump's plain SQL text, as bytes."""
    proc = subprocess.run(
        ["pg_dump", "--no-owner", url],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=PSQL_TIMEOUT,
    )
    if proc.returncode != 0:
        raise RuntimeError("pg_dump: %s" % proc.stderr.decode("utf-8", "replace"))
    return proc.stdout


_dir_databases = {}  # data dir given by a test -> (name, url), dropped at exit


def _drop_dir_databases():
    for name, _ in _dir_databases.values():
        drop_database(name)
    _dir_databases.clear()


atexit.register(_drop_dir_databases)


BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _base62(n, width):
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(BASE62[r])
    return "".join(reversed(out))


def forge_key(environment="production", prefix="kw"):
    """A well-formed key with a correct checksum that no store holds:
    anyone can make one, so a verifier must answer it cheaply."""
    secret = _base62(int.from_bytes(secrets.token_bytes(32), "big"), 43)
    body = "%s_%s_%s" % (prefix, environment, secret)
    return body + _base62(zlib.crc32(body.encode()), 6)




class Server:
    def __init__(self, data_dir=None, args=(), env=None, first_run=True, store_url=None):
        self._own_dir = data_dir is None
        self.dir = tempfile.mkdtemp(prefix="keyward-http-") if data_dir is None else data_dir
        self.database = None  # the database this Server created and drops at cleanup
        self.store_url = store_url  # None: SQLite in the data dir
        if store_url is None and PG_SERVER:
            if self._own_dir:
                self.database, self.store_url = create_database()
            else:
                key = os.path.realpath(self.dir)
                if key not in _dir_databases:
                    _dir_databases[key] = create_database()
                self.store_url = _dir_databases[key][1]
        self.args = list(args)
        self.env = env or {}
        self.expect_first_run = first_run
        self.proc = None
        self.port = None
        self.first_run = None
        self._stderr = b""
        self.stdout_start = b""  # what stdout held by the time the server was ready
        self.stdout_rest = b""  # what stdout held after that, once stopped
        self._reader = None  # drains stderr once started, so the server never blocks on it
        self._lock = threading.Lock()

    # ---- lifecycle ----

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWARD_")}
        env["KEYWARD_DATA_DIR"] = os.path.join(self.dir, "var")
        if self.store_url:
            env["KEYWARD_STORE"] = self.store_url
            env["KEYWARD_PEPPER"] = TEST_PEPPER
        env.update(self.env)
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0", "--json"] + self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.dir,
        )
        deadline = time.monotonic() + START_TIMEOUT
        out = b""
        while self.port is None or (self.expect_first_run and self.first_run is None):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("keyward serve did not start: %r" % self._stderr[-2000:])
            ready, _, _ = select.select([self.proc.stdout, self.proc.stderr], [], [], left)
            for f in ready:
                chunk = os.read(f.fileno(), 65536)
                if f is self.proc.stderr:
                    self._stderr += chunk
                    self._find_port()
                else:
                    out += chunk
                    self.stdout_start = out
                    try:
                        self.first_run = json.loads(out)
                    except ValueError:
                        pass
        # The access log can outgrow the pipe's buffer: keep reading it, or
        # the server would block writing it.
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        return self

    def _drain(self):
        fd = self.proc.stderr.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self._stderr += chunk

    def _find_port(self):
        for line in self._stderr.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "listening":
                self.port = int(event["detail"].rsplit(":", 1)[1])

    def log(self):
        """Everything the server wrote to stderr so far (the access log), as bytes."""
        if self._reader:
            # what the server writes right now is in once nothing came for 50 ms
            while True:
                with self._lock:
                    seen = len(self._stderr)
                time.sleep(0.05)
                with self._lock:
                    if len(self._stderr) == seen:
                        return self._stderr
        if self.proc and self.proc.stderr and not self.proc.stderr.closed:
            while True:
                ready, _, _ = select.select([self.proc.stderr], [], [], 0.05)
                if not ready:
                    break
                chunk = os.read(self.proc.stderr.fileno(), 65536)
                if not chunk:
                    break
                self._stderr += chunk
        return self._stderr

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stops the server with sig; returns its exit code."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        if self._reader:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(timeout=10)
            if not self._reader.is_alive():
                self.proc.stderr.close()
            if not self.proc.stdout.closed:
                self.stdout_rest += self.proc.stdout.read()
                self.proc.stdout.close()
            return self.proc.returncode
        try:
            rest_out, rest_err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rest_out, rest_err = self.proc.communicate()
        self._stderr += rest_err or b""
        self.stdout_rest = rest_out
        return self.proc.returncode

    def cleanup(self):
        self.stop()
        if self.database:
            drop_database(self.database)
            self.database = None
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def stored_bytes(self):
        """Everything the store holds at rest, as [(what, bytes)]: the files of the data
        dir, plus pg_dump's text of the database on PostgreSQL."""
        blobs = []
        for dirpath, _, files in os.walk(self.dir):
            for f in files:
                try:
                    with open(os.path.join(dirpath, f), "rb") as fh:
                        blobs.append((os.path.join(dirpath, f), fh.read()))
                except OSError:
                    pass
        if self.store_url:
            blobs.append(("pg_dump of the database", dump_database(self.store_url)))
        return blobs

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    # ---- what the first run printed ----

    @property
    def root_key(self):
        return self.first_run["secret"]

    @property
    def account_id(self):
        return self.first_run["account"]["id"]

    # ---- HTTP ----

    def request(self, method, path, body=None, headers=None, root=False, timeout=30):
        """Sends one request on a new connection; returns (status, headers, body).

        body: dict/list (sent as JSON with Content-Type application/json),
        bytes or str (sent as is), or None. root=True adds the first run's
        root key as the bearer credential. headers maps lower-case names to
        values; a JSON response body is decoded.
        """
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        if root:
            h.setdefault("Authorization", "Bearer " + self.root_key)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
            rh = {k.lower(): v for k, v in resp.getheaders()}
            if rh.get("content-type", "").startswith("application/json") and data:
                data = json.loads(data)
            return resp.status, rh, data
        finally:
            conn.close()

    def create_key(self, account_id=None, name="CRM", environment=None):
        body = {"name": name}
        if environment:
            body["environment"] = environment
        status, _, doc = self.request(
            "POST", "/v1/accounts/%s/keys" % (account_id or self.account_id), body, root=True
        )
        if status != 201:
            raise AssertionError("create key: %s %r" % (status, doc))
        return doc

    def verify(self, key, environment=None):
        body = {"key": key}
        if environment is not None:
            body["environment"] = environment
        status, _, doc = self.request("POST", "/v1/keys/verify", body)
        if status != 200:
            raise AssertionError("verify: %s %r" % (status, doc))
        return doc
