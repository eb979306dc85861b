"""soakload - the kinds of load of `make soak`, each a thread that runs until
told to stop and checks every answer it gets.

    stats = Stats(); stop = threading.Event()
    t = threading.Thread(target=churn, args=(port, root, accounts, ledger, stats, stop))

Every worker counts its requests in Stats and records anything unexpected
(a status, a body, a timeout, a connection the server did not close in
time) as an error there; it never raises. Standard library only.
"""

import http.client
import json
import os
import random
import select
import socket
import sys
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "lib"), os.path.join(HERE, "..", "http")]

import test_attack  # noqa: E402  (the attack requests and how a refusal must look)
from kwtest import Failure  # noqa: E402

TIMEOUT = 10  # seconds for any one answer; slower counts as the server not answering
ERRORS_KEPT = 5  # in full, of each kind of load


class Stats:
    """Requests per kind of load, and the errors seen (the first few in full)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = {}
        self.answers = {}  # "kind status" -> count, for the statuses allowed but notable
        self.errors = 0
        self.errors_by_kind = {}
        self.first_errors = []  # at most ERRORS_KEPT of each kind

    def count(self, kind, n=1):
        with self.lock:
            self.requests[kind] = self.requests.get(kind, 0) + n

    def answer(self, what):
        with self.lock:
            self.answers[what] = self.answers.get(what, 0) + 1

    def error(self, kind, message):
        with self.lock:
            self.errors += 1
            self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1
            if self.errors_by_kind[kind] <= ERRORS_KEPT:
                self.first_errors.append("%.1fs %s: %s" % (time.monotonic() - T0, kind, message))

    def total(self):
        with self.lock:
            return sum(self.requests.values())


T0 = time.monotonic()


def start_clock():
    """Error times are counted from here (the start of the load)."""
    global T0
    T0 = time.monotonic()


# ---- keys ----

B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _base62(n, width):
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(B62[r])
    return "".join(reversed(out))


def forged_key(environment="production", checksum_ok=True):
    """A key of the right shape that keyward never issued: NOT_FOUND with a
    right checksum (it reaches the hash and the store), else MALFORMED."""
    head = "kw_%s_%s" % (environment, _base62(int.from_bytes(os.urandom(32), "big"), 43))
    crc = zlib.crc32(head.encode())
    if not checksum_ok:
        crc ^= 1
    return head + _base62(crc, 6)


class Ledger:
    """Every key whose create was answered 201: its secret, account, and
    whether its delete was answered 204 since. A create or delete that got
    no answer (an error already) makes its account's keys unknown: the
    account leaves the churn, and the final check skips its list and the
    key whose delete got no answer."""

    def __init__(self):
        self.lock = threading.Lock()
        self.keys = {}  # key id -> {"secret", "account", "environment", "deleted": bool or None}
        self.unsure = set()  # accounts with a create or delete that got no answer

    def lost(self, account, key_id=None):
        with self.lock:
            self.unsure.add(account)
            if key_id:
                self.keys[key_id]["deleted"] = None

    def created(self, doc):
        k = doc["key"]
        with self.lock:
            self.keys[k["id"]] = {"secret": doc["secret"], "account": k["account_id"],
                                  "environment": k["environment"], "deleted": False}

    def deleted(self, key_id):
        with self.lock:
            self.keys[key_id]["deleted"] = True

    def get(self, key_id):
        with self.lock:
            return dict(self.keys[key_id])

    def active(self, account):
        with self.lock:
            return [i for i, k in self.keys.items()
                    if k["account"] == account and k["deleted"] is False]

    def snapshot(self):
        with self.lock:
            return {i: dict(k) for i, k in self.keys.items()}


# ---- HTTP ----


class Client:
    """One kept-alive connection from a given source address; reconnects
    after an error and every `renew` requests (so accepts and closes go on)."""

    def __init__(self, port, source="127.0.0.1", renew=200):
        self.port, self.source, self.renew = port, source, renew
        self.conn, self.used = None, 0

    def request(self, method, path, body=None, headers=None):
        """(status, lower-case headers, body: JSON decoded when it is JSON); raises OSError,
        http.client.HTTPException or ValueError (a JSON body that is not JSON)."""
        if self.conn is None or self.used >= self.renew:
            self.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT,
                                                   source_address=(self.source, 0))
            self.used = 0
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            h["Content-Type"] = "application/json"
        self.used += 1
        try:
            self.conn.request(method, path, body, h)
            resp = self.conn.getresponse()
            data = resp.read()
        except BaseException:
            self.close()
            raise
        rh = {k.lower(): v for k, v in resp.getheaders()}
        if rh.get("connection", "").lower() == "close":
            self.close()
        if data and rh.get("content-type", "").startswith("application/json"):
            data = json.loads(data)
        return resp.status, rh, data

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _call(client, stats, kind, want, method, path, body=None, headers=None, on_lost=None):
    """One request that must be answered with a status in want; returns
    (status, headers, body), or None after recording an error. on_lost is
    called when no answer came (the request may or may not have been done)."""
    stats.count(kind)
    try:
        status, h, doc = client.request(method, path, body, headers)
    except (OSError, http.client.HTTPException, ValueError) as e:
        stats.error(kind, "%s %s: %s: %s" % (method, path, type(e).__name__, e))
        if on_lost:
            on_lost()
        return None
    if status not in want:
        stats.error(kind, "%s %s: status %d, want %s: %.200r" % (method, path, status, want, doc))
        return None
    return status, h, doc


def _check_verify(client, stats, kind, secret, code, key_id=None):
    r = _call(client, stats, kind, (200,), "POST", "/v1/keys/verify", {"key": secret})
    if r and (r[2].get("code") != code or (key_id and r[2].get("key_id") != key_id)):
        stats.error(kind, "verify: %r, want %s %s" % (r[2], code, key_id or ""))
    r = _call(client, stats, kind, (204 if code == "VALID" else 401,), "GET", "/v1/auth",
              headers={"API-Key": secret})
    if r and r[1].get("x-keyward-code") != code:
        stats.error(kind, "auth: X-Keyward-Code %r, want %s" % (r[1].get("x-keyward-code"), code))


# ---- create/delete churn through the root-key API ----


def compare_list(stats, kind, account, doc, active):
    """Records an error unless the key list doc holds exactly the key ids in active."""
    listed = set(k["id"] for k in doc["keys"])
    if listed != set(active):
        stats.error(kind, "%s lists %d keys, the ledger has %d: not listed %s, not in the ledger %s"
                    % (account, len(listed), len(active), sorted(set(active) - listed),
                       sorted(listed - set(active))))


def churn(port, root, accounts, full_account, ledger, stats, stop):
    """Creates and deletes keys in accounts (this thread's own: no other
    writer touches them), 5 to 20 active in each; checks each new key
    verifies and each deleted one is refused at once, the account's list
    against the ledger every 25 changes, and that the full account refuses
    a 26th key."""
    auth = {"Authorization": "Bearer " + root}
    client = Client(port)
    ops = 0
    while not stop.is_set():
        usable = [a for a in accounts if a not in ledger.unsure]
        if not usable:
            stop.wait(1)
            continue
        acc = random.choice(usable)
        active = ledger.active(acc)
        keys = "/v1/accounts/%s/keys" % acc
        if len(active) < 5 or (len(active) < 20 and random.random() < 0.55):
            env = random.choice(("production", "staging", "soak1"))
            r = _call(client, stats, "churn", (201,), "POST", keys,
                      {"name": "soak %d" % ops, "environment": env}, auth,
                      on_lost=lambda: ledger.lost(acc))
            if r:
                ledger.created(r[2])
                _check_verify(client, stats, "churn", r[2]["secret"], "VALID", r[2]["key"]["id"])
        else:
            key_id = random.choice(active)
            secret = ledger.get(key_id)["secret"]
            if _call(client, stats, "churn", (204,), "DELETE", "%s/%s" % (keys, key_id),
                     headers=auth, on_lost=lambda: ledger.lost(acc, key_id)):
                ledger.deleted(key_id)
                _check_verify(client, stats, "churn", secret, "NOT_FOUND")
                _call(client, stats, "churn", (404,), "GET", "%s/%s" % (keys, key_id),
                      headers=auth)
        ops += 1
        if ops % 25 == 0 and acc not in ledger.unsure:
            r = _call(client, stats, "churn", (200,), "GET", keys, headers=auth)
            if r:
                compare_list(stats, "churn", acc, r[2], ledger.active(acc))
        if ops % 40 == 0:
            r = _call(client, stats, "churn", (409,), "POST", "/v1/accounts/%s/keys" % full_account,
                      {"name": "one too many"}, auth)
            if r and r[2]["error"]["code"] != "key_limit_reached":
                stats.error("churn", "a 26th key: %r" % r[2])
        stop.wait(0.01)
    client.close()


# ---- console sign-ins ----


class QuietGate:
    """Lets the sampler read the server's RSS while no sign-in is in
    flight: a sign-in's argon2id hash maps 64 MiB for a fraction of a
    second, which says nothing about a leak."""

    def __init__(self):
        self.cond = threading.Condition()
        self.busy = 0
        self.quiet_wanted = False

    def enter(self):
        with self.cond:
            while self.quiet_wanted:
                self.cond.wait()
            self.busy += 1

    def leave(self):
        with self.cond:
            self.busy -= 1
            self.cond.notify_all()

    def quiet(self, timeout=15):
        """Blocks new sign-ins and waits for those in flight; call done() after."""
        with self.cond:
            self.quiet_wanted = True
            self.cond.wait_for(lambda: self.busy == 0, timeout)

    def done(self):
        with self.cond:
            self.quiet_wanted = False
            self.cond.notify_all()


def _sign_in(port, source, email, password, stats, gate, want):
    """POST /v1/session from source; 503 (no capacity to check a password
    now) is always a fair answer. Returns (status, headers, body) or None."""
    client = Client(port, source)
    gate.enter()
    try:
        r = _call(client, stats, "signin", tuple(want) + (503,), "POST", "/v1/session",
                  {"email": email, "password": password})
    finally:
        gate.leave()
        client.close()
    if r:
        stats.answer("signin %d" % r[0])
        if r[0] in (429, 503) and r[2].get("error", {}).get("code") not in (
                "rate_limited", "unavailable"):
            stats.error("signin", "%d without the JSON error: %r" % (r[0], r[2]))
        if r[0] == 429 and not r[1].get("retry-after", "").isdigit():
            stats.error("signin", "429 without Retry-After")
    return r


def signin_admin(port, password, stats, gate, stop):
    """The console user signs in (200), reads its session, signs out (204),
    and the old cookie is refused (401); then a wrong password (401). The
    two alternate, so the user's failure counter never reaches its limit."""
    n = 0
    while not stop.is_set():
        source = "127.0.40.%d" % (1 + n % 250)
        n += 1
        r = _sign_in(port, source, "admin@localhost", password, stats, gate, (200,))
        if r and r[0] == 200:
            cookie = r[1].get("set-cookie", "").split(";")[0]
            csrf = r[2]["csrf_token"]
            c = Client(port, source)
            got = _call(c, stats, "signin", (200,), "GET", "/v1/session", headers={"Cookie": cookie})
            if got and got[2]["user"]["email"] != "admin@localhost":
                stats.error("signin", "GET /v1/session: %r" % got[2])
            _call(c, stats, "signin", (204,), "DELETE", "/v1/session",
                  headers={"Cookie": cookie, "X-CSRF-Token": csrf,
                           "Origin": "http://127.0.0.1:%d" % port})
            _call(c, stats, "signin", (401,), "GET", "/v1/session", headers={"Cookie": cookie})
            c.close()
        _sign_in(port, source, "admin@localhost", password + "x", stats, gate, (401,))
        stop.wait(1)


def signin_guessing(port, stats, gate, stop, email_limit=5, address_limit=20, window_s=900):
    """Guessing that the sign-in limits must stop: one email from many
    addresses (401 until its limit, then 429), and one address trying many
    emails (the same). Within the limits' window the model is exact."""
    email_failures = address_failures = 0
    first_fail = time.monotonic()
    n = 0
    while not stop.is_set():
        n += 1
        expired = time.monotonic() - first_fail > window_s - 10
        want = (401, 429) if expired else ((401,) if email_failures < email_limit else (429,))
        r = _sign_in(port, "127.0.41.%d" % (1 + n % 250), "guessed@soak.invalid",
                     "guess %d" % n, stats, gate, want)
        email_failures += bool(r and r[0] == 401)
        want = (401, 429) if expired else ((401,) if address_failures < address_limit else (429,))
        r = _sign_in(port, "127.0.42.1", "user%d@soak.invalid" % n, "guess", stats, gate, want)
        address_failures += bool(r and r[0] == 401)
        stop.wait(0.5)


# ---- slow clients ----

TRICKLE = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100 + b"\r\n\r\n"
BURST_HEAD = b"GET /healthz HTTP/1.1\r\n"


class _Slow:
    def __init__(self, port, kind, source):
        self.kind, self.source = kind, source
        self.opened = time.monotonic()
        self.sent = 0
        self.got = b""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT,
                                             source_address=(source, 0))
        self.sock.setblocking(False)
        if kind == "burst":
            self.sock.send(BURST_HEAD)

    def age(self):
        return time.monotonic() - self.opened


def slow_clients(port, stats, stop, head_timeout=10, budget=16, tricklers=8, silent=8,
                 burst=24, burst_every=30):
    """Keeps `tricklers` connections sending a head a byte every 0.5 s and
    `silent` ones that send nothing, 4 per address, and every burst_every
    seconds opens `burst` from one address that send half a head: more
    than the waiting-connection budget of one client. The server must
    close each within head_timeout + 5 s, answering nothing or 408, and
    keep at most `budget` of a burst past 3 s."""
    conns = []
    next_burst = time.monotonic() + 5
    bursts = 0

    def open_one(kind, source):
        stats.count("slow")
        try:
            conns.append(_Slow(port, kind, source))
        except OSError as e:
            stats.error("slow", "connect from %s: %s" % (source, e))

    for i in range(tricklers):
        open_one("trickle", "127.0.30.%d" % (1 + i // 4))
    for i in range(silent):
        open_one("silent", "127.0.31.%d" % (1 + i // 4))
    while not stop.is_set():
        now = time.monotonic()
        if now >= next_burst:
            bursts += 1
            for _ in range(burst):
                open_one("burst", "127.0.32.%d" % (1 + bursts % 250))
            next_burst = now + burst_every
        for c in conns:
            if c.kind == "trickle" and c.sent < len(TRICKLE) and c.sent < c.age() * 2:
                try:
                    c.sent += c.sock.send(TRICKLE[c.sent:c.sent + 1])
                except BlockingIOError:
                    pass
                except OSError:
                    pass  # closed by the server: recv below sees it
        readable, _, _ = select.select([c.sock for c in conns], [], [], 0.25)
        closed = []
        for c in conns:
            if c.sock not in readable:
                continue
            try:
                b = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                b = b""
            if b:
                c.got += b
            else:
                closed.append(c)
        for c in closed:
            conns.remove(c)
            c.sock.close()
            age = c.age()
            if c.got and not c.got.startswith(b"HTTP/1.1 408 "):
                stats.error("slow", "a %s client got %.80r" % (c.kind, c.got))
            if c.kind != "burst" and age < head_timeout - 1.5:
                stats.error("slow", "a %s client within its budget was cut after %.1f s"
                            % (c.kind, age))
            if c.kind != "burst" and not stop.is_set():
                open_one(c.kind, c.source)
        for c in conns:
            if c.age() > head_timeout + 5:
                stats.error("slow", "a %s client is still open after %.0f s" % (c.kind, c.age()))
                conns.remove(c)
                c.sock.close()
                break
        kept = [c for c in conns if c.kind == "burst" and 3 < c.age() < head_timeout - 1]
        if len(kept) > budget:
            stats.error("slow", "%d waiting connections of one client kept past 3 s" % len(kept))
            for c in kept:
                conns.remove(c)
                c.sock.close()
    for c in conns:
        c.sock.close()


# ---- malformed requests ----


def _malformed_cases():
    """(name, raw request, status, also on a kept-alive connection, JSON answer there too,
    a good request smuggled behind it)."""
    cases = [(n, r, s, True, j, True) for n, r, s, j in test_attack.FRAMING]
    for target in (b"/healthz\x00", b"/health\x00z", b"/healthz?a=\x1b", b"/healthz\xff", b"healthz"):
        cases.append(("target %r" % target, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                      400, True, True, True))
    cases += [
        ("NUL in API-Key", b"GET /v1/auth HTTP/1.1\r\nHost: x\r\nAPI-Key: kw_\x00x\r\n\r\n",
         400, True, True, True),
        ("33 query parameters", b"GET /healthz?" + b"&".join([b"a"] * 33) + b" HTTP/1.1\r\nHost: x\r\n\r\n",
         414, True, True, False),
        ("a long path", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, True, True, False),
        ("65 header fields", b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"A: 1\r\n" * 64 + b"\r\n",
         431, True, True, False),
        ("one huge header", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
         431, True, True, False),
        ("a head that never ends", b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 1100,
         431, False, True, False),
        ("a request line that never ends", b"GET /" + b"a" * 9000, 414, False, True, False),
    ]
    return cases


def _request(head, body=b""):
    return head + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body


# Well-framed requests that keyward itself refuses, each with its status.
BAD_BODIES = [
    (_request(b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n",
              b"{"), 400),
    (_request(b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n",
              b'{"key":"\x00x"}'), 400),
    (_request(b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n",
              b'{"key":"x","key":"y"}'), 400),
    (_request(b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n",
              b"{}"), 415),
    (b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Connection: close\r\nContent-Length: 99999\r\n\r\n", 413),
    (_request(b"GET /no/such HTTP/1.1\r\nHost: x\r\n"), 404),
    (_request(b"DELETE /healthz HTTP/1.1\r\nHost: x\r\n"), 405),
    (_request(b"GET /v1/accounts/acc_x HTTP/1.1\r\nHost: x\r\n"), 401),
]


def malformed(port, stats, stop):
    """Sends each attack of tests/http/test_attack.py and a few bad bodies,
    as the first request of a connection and after a good one; each must
    get its refusal, in keyward's JSON, and the connection closed."""
    cases = _malformed_cases()
    i = 0
    while not stop.is_set():
        name, req, status, kept_alive, json_too, smuggle = cases[i % len(cases)]
        second = kept_alive and (i // len(cases)) % 2 == 1
        i += 1
        stats.count("malformed")
        try:
            resps, tail = test_attack.exchange(port, req + (test_attack.SMUGGLED if smuggle else b""),
                                               before=test_attack.GOOD if second else None)
            test_attack.check_refusal(resps, tail, status, name,
                                      json_body=json_too or not second)
        except (Failure, OSError, ValueError, IndexError) as e:
            stats.error("malformed", "%s (%s request): %s"
                        % (name, "second" if second else "first", e))
        if i % 3 == 0:
            req, status = BAD_BODIES[(i // 3) % len(BAD_BODIES)]
            stats.count("malformed")
            try:
                resps, _ = test_attack.exchange(port, req)
                if not resps or resps[0][0] != status or \
                        "error" not in json.loads(resps[0][2]):
                    raise Failure("%d answers, the first %r" % (len(resps), resps[:1]))
            except (Failure, OSError, ValueError, IndexError) as e:
                stats.error("malformed", "%r: want %d: %s" % (req[:40], status, e))
        stop.wait(0.02)


# ---- is the server still answering ----


def health(port, stats, stop, latencies):
    """GET /healthz every second on a new connection (200 within TIMEOUT),
    GET /metrics every tenth."""
    n = 0
    while not stop.is_set():
        client = Client(port)
        t = time.monotonic()
        r = _call(client, stats, "health", (200,), "GET", "/healthz")
        latencies.append(time.monotonic() - t)
        if r and r[2] != {"status": "ok"}:
            stats.error("health", "GET /healthz: %r" % r[2])
        n += 1
        if n % 10 == 0:
            r = _call(client, stats, "health", (200,), "GET", "/metrics")
            if r and b"keyward_http_requests_total" not in r[2]:
                stats.error("health", "GET /metrics without its counters")
        client.close()
        stop.wait(1)
