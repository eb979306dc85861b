#!/usr/bin/env python3
"""Black-box tests of console sign-in under pressure: the password-check
queue (503 with Retry-After when full, answers when the server stops),
limits that hold for parallel attempts, the client address behind trusted
proxies (X-Forwarded-For, Forwarded) and never from an untrusted peer, and
the Origin check. Standard library only.

Most servers here run with password_checks_per_s = 0 (no budget), so that
the checks the tests need do not wait for it.
"""

import http.client
import json
import random
import signal
import threading
import time

from kwserver import Server
from kwtest import check, eq, run_tests, tmpdir

NO_BUDGET = {"KEYWARD_PASSWORD_CHECKS_PER_S": "0"}
PER_EMAIL = 5  # failed sign-ins per email and window (the default)
PER_ADDR = 20  # ... per client address


def sign_in(port, email, password="wrong password 123", headers=None, source=None, timeout=60):
    """POST /v1/session on a new connection (from source, an address of
    127.0.0.0/8, when given); returns (status, headers, body)."""
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request("POST", "/v1/session", json.dumps({"email": email, "password": password}), h)
        resp = conn.getresponse()
        body = resp.read()
        rh = {k.lower(): v for k, v in resp.getheaders()}
        doc = json.loads(body) if rh.get("content-type", "").startswith("application/json") else body
        return resp.status, rh, doc
    finally:
        conn.close()


def parallel_sign_ins(port, n, email_of, source_of=lambda i: None, headers_of=lambda i: None):
    """n sign-ins sent at once, each on its own connection; returns their
    (status, headers, body) in order."""
    conns = []
    for i in range(n):
        source = source_of(i)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120,
                                       source_address=(source, 0) if source else None)
        c.connect()
        conns.append(c)
    barrier = threading.Barrier(n)
    results = [None] * n

    def one(i):
        h = {"Content-Type": "application/json"}
        h.update(headers_of(i) or {})
        body = json.dumps({"email": email_of(i), "password": "wrong password %d" % i})
        barrier.wait()
        try:
            conns[i].request("POST", "/v1/session", body, h)
            resp = conns[i].getresponse()
            data = resp.read()
            rh = {k.lower(): v for k, v in resp.getheaders()}
            results[i] = (resp.status, rh, json.loads(data) if data else None)
        except OSError as e:
            results[i] = (type(e).__name__, {}, None)
        finally:
            conns[i].close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    return results


def metric(srv, name):
    """The value of an unlabelled series of /metrics, or None when there is none."""
    _, _, text = srv.request("GET", "/metrics")
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return None


def statuses(results):
    counts = {}
    for status, _, _ in results:
        counts[status] = counts.get(status, 0) + 1
    return counts


def log_clients(srv, count, timeout=10):
    """The "client" of the POST /v1/session lines of the access log, in
    order, once there are count of them (the log is written in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        out = []
        for line in srv.log().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("route") == "/v1/session" and entry.get("method") == "POST":
                out.append(entry["client"])
        if len(out) >= count or time.monotonic() > deadline:
            return out
        time.sleep(0.05)


def random_email():
    return "user-%016x@example.com" % random.getrandbits(64)


# ---- limits that hold under concurrency ----


def test_parallel_wrong_passwords_for_one_email_get_at_most_the_limit_of_checks():
    # Many server threads, so that the attempts really run side by side.
    s = Server(args=["--threads", "8"], env=dict(NO_BUDGET, KEYWARD_PASSWORD_CHECK_QUEUE="64"))
    s.start()
    try:
        before = metric(s, "keyward_password_checks_total")
        results = parallel_sign_ins(s.port, 40, lambda i: "admin@localhost")
        counts = statuses(results)
        eq(counts.get(401, 0), PER_EMAIL, "401 answers (password checked) in %r" % counts)
        eq(counts.get(429, 0), 40 - PER_EMAIL, "429 answers in %r" % counts)
        eq(metric(s, "keyward_password_checks_total") - before, PER_EMAIL,
           "password checks for 40 parallel attempts at one email")
        for status, rh, doc in results:
            if status == 429:
                eq(doc["error"]["code"], "rate_limited", "429 code")
                check(int(rh["retry-after"]) > 0, "Retry-After %r" % rh.get("retry-after"))
        # The right password is refused too, until the window ends.
        st, _, _ = sign_in(s.port, "admin@localhost", s.first_run["password"])
        eq(st, 429, "the right password after the limit")
    finally:
        s.cleanup()


def test_parallel_sign_ins_from_one_address_get_at_most_its_limit_of_checks():
    s = Server(args=["--threads", "8"], env=dict(NO_BUDGET, KEYWARD_PASSWORD_CHECK_QUEUE="64"))
    s.start()
    try:
        before = metric(s, "keyward_password_checks_total")
        results = parallel_sign_ins(s.port, 40, lambda i: "user%d@example.com" % i)
        counts = statuses(results)
        eq(counts.get(401, 0), PER_ADDR, "401 answers in %r" % counts)
        eq(metric(s, "keyward_password_checks_total") - before, PER_ADDR,
           "password checks for 40 parallel attempts from one address")
        # Another address is not limited by this one's attempts.
        st, _, _ = sign_in(s.port, random_email(), source="127.0.0.2")
        eq(st, 401, "a sign-in from another address")
    finally:
        s.cleanup()


def test_a_success_does_not_use_up_the_address():
    s = Server(env=NO_BUDGET).start()
    try:
        for i in range(PER_ADDR + 3):
            st, _, doc = sign_in(s.port, "admin@localhost", s.first_run["password"])
            eq(st, 200, "sign-in %d: %r" % (i, doc))
    finally:
        s.cleanup()


# ---- the password-check queue ----


def test_a_full_password_queue_answers_503_with_retry_after_without_checking():
    # One check at a time, one a second, one waiting: the rest find the queue full.
    env = {"KEYWARD_PASSWORD_CHECK_QUEUE": "1", "KEYWARD_PASSWORD_CHECKS_PER_S": "1"}
    s = Server(env=env).start()
    try:
        before = metric(s, "keyward_password_checks_total") or 0
        results = parallel_sign_ins(s.port, 12, lambda i: random_email(),
                                    source_of=lambda i: "127.0.1.%d" % (i + 1))
        counts = statuses(results)
        check(counts.get(503, 0) >= 1 and set(counts) <= {401, 503},
              "answers to 12 parallel sign-ins with a queue of 1: %r" % counts)
        for status, rh, doc in results:
            if status != 503:
                continue
            eq(doc["error"]["code"], "unavailable", "503 code")
            check(doc["error"]["message"].strip(), "503 message")
            eq(rh.get("retry-after"), "1", "Retry-After (a queue of 1 at 1 a second)")
            eq(rh.get("cache-control"), "no-store", "503 Cache-Control")
            check(rh.get("content-type", "").startswith("application/json"), "503 type")
            check("set-cookie" not in rh, "a cookie on a 503")
        eq(metric(s, "keyward_password_checks_total") - before, counts.get(401, 0),
           "password checks: one per 401, none for a 503")
        eq(metric(s, "keyward_password_queue_rejected_total"), counts[503], "rejected metric")
    finally:
        s.cleanup()


def test_stopping_answers_the_sign_ins_that_wait():
    s = Server(env={"KEYWARD_PASSWORD_CHECKS_PER_S": "4"}).start()
    try:
        done = []
        thread = threading.Thread(target=lambda: done.extend(parallel_sign_ins(
            s.port, 10, lambda i: random_email(), source_of=lambda i: "127.0.2.%d" % (i + 1))))
        thread.start()
        time.sleep(0.5)  # in the queue, waiting for the budget
        s.proc.send_signal(signal.SIGTERM)
        thread.join(timeout=120)
        eq(s.stop(), 0, "exit code after SIGTERM")
        eq(len(done), 10, "every sign-in came back")
        for status, _, _ in done:
            check(status in (401, 503), "a waiting sign-in got %r" % (status,))
        log = s.log()
        for needle in (b"Sanitizer", b"runtime error:"):
            check(needle not in log, "sanitizer report: %r" % log[-3000:])
    finally:
        s.cleanup()


# ---- the client address behind proxies ----


def exhaust_address(port, headers, source=None):
    """PER_ADDR failed sign-ins with random emails, with headers, from source."""
    for i in range(PER_ADDR):
        st, _, doc = sign_in(port, random_email(), headers=headers, source=source)
        eq(st, 401, "failure %d: %r" % (i, doc))


def test_a_trusted_proxy_names_the_client():
    env = dict(NO_BUDGET, KEYWARD_TRUSTED_PROXIES="127.0.0.1, ::1")
    s = Server(env=env).start()
    try:
        a = {"X-Forwarded-For": "6.6.6.6, 203.0.113.7"}
        exhaust_address(s.port, a)
        st, rh, doc = sign_in(s.port, random_email(), headers=a)
        eq((st, doc["error"]["code"]), (429, "rate_limited"), "the forwarded client's limit")
        check(int(rh["retry-after"]) > 0, "Retry-After")
        # What the client writes on the left changes nothing: the proxy appended on the right.
        st, _, _ = sign_in(s.port, random_email(), headers={"X-Forwarded-For": "1.2.3.4, 203.0.113.7"})
        eq(st, 429, "the same client behind another left part")
        # Another client behind the same proxy has its own limit, so does the proxy itself.
        st, _, _ = sign_in(s.port, random_email(), headers={"X-Forwarded-For": "203.0.113.8"})
        eq(st, 401, "another forwarded client")
        st, _, _ = sign_in(s.port, random_email(), headers={"Forwarded": 'for="[2001:db8::7]:4711"'})
        eq(st, 401, "a client named by Forwarded")
        st, _, _ = sign_in(s.port, random_email())
        eq(st, 401, "the proxy's own address")
        # Malformed from a trusted peer: the peer's address, never the garbage.
        st, _, _ = sign_in(s.port, random_email(), headers={"X-Forwarded-For": "203.0.113.7, junk"})
        eq(st, 401, "a malformed header counts for the peer")
        clients = log_clients(s, PER_ADDR + 6)
        eq(clients[:PER_ADDR + 2], ["203.0.113.7"] * (PER_ADDR + 2), "access log clients")
        eq(clients[PER_ADDR + 2:], ["203.0.113.8", "2001:db8::7", "127.0.0.1", "127.0.0.1"],
           "access log clients")
        # An untrusted peer's headers are ignored, also by a server that trusts proxies.
        st, _, _ = sign_in(s.port, random_email(), headers={"X-Forwarded-For": "203.0.113.9"},
                           source="127.0.0.2")
        eq(st, 401, "from 127.0.0.2")
        eq(log_clients(s, PER_ADDR + 7)[-1], "127.0.0.2", "the untrusted peer in the log")
    finally:
        s.cleanup()


def test_an_untrusted_peer_cannot_dodge_the_limit_with_headers():
    s = Server(env=NO_BUDGET).start()  # trusted_proxies empty: the default
    try:
        for i in range(PER_ADDR):
            spoof = {"X-Forwarded-For": "198.51.100.%d" % (i + 1),
                     "Forwarded": "for=198.51.100.%d" % (i + 1)}
            st, _, _ = sign_in(s.port, random_email(), headers=spoof)
            eq(st, 401, "failure %d" % i)
        st, _, doc = sign_in(s.port, random_email(), headers={"X-Forwarded-For": "192.0.2.200"})
        eq((st, doc["error"]["code"]), (429, "rate_limited"), "a spoofed header after the limit")
        st, _, _ = sign_in(s.port, random_email(), headers={"Forwarded": "for=192.0.2.201"})
        eq(st, 429, "a spoofed Forwarded after the limit")
        clients = log_clients(s, PER_ADDR + 2)
        eq(clients, ["127.0.0.1"] * (PER_ADDR + 2), "the log names only the peer")
    finally:
        s.cleanup()


def test_invalid_trusted_proxies_stop_the_server_with_a_usage_error():
    s = Server(env={"KEYWARD_TRUSTED_PROXIES": "10.0.0.0/8, 10.0.0.0/33"})
    try:
        s.start()
        raise AssertionError("keyward serve started with a bad trusted_proxies")
    except RuntimeError:
        pass
    eq(s.proc.returncode, 2, "exit code")
    check(b"trusted_proxies: entry 2" in s.log(), "message: %r" % s.log()[-500:])
    s.cleanup()


# ---- Origin ----


def test_sign_in_origin_must_be_this_server_exactly():
    s = Server(env=NO_BUDGET).start()
    try:
        base = "127.0.0.1:%d" % s.port
        same = ["http://" + base, "HTTP://" + base, "https://" + base]
        other = ["http://%s/" % base, "http://%s/console" % base, "http://%s.evil.example" % base,
                 "http://%s@evil.example" % base, "http://evil.example@%s" % base,
                 "http://%s:%d" % ("127.0.0.1", s.port + 1), "http://127.0.0.1", "null",
                 "http://%s#x" % base, "http://%s0" % base, "http://localhost:%d" % s.port]
        for origin in same:
            st, _, _ = sign_in(s.port, random_email(), headers={"Origin": origin})
            eq(st, 401, "Origin %s: a password check" % origin)
        for origin in other:
            st, _, doc = sign_in(s.port, random_email(), headers={"Origin": origin})
            eq((st, doc["error"]["code"]), (403, "forbidden"), "Origin %s" % origin)
    finally:
        s.cleanup()
    # With public_url, its origin; default ports are equal to absent ones.
    s = Server(env=dict(NO_BUDGET, KEYWARD_PUBLIC_URL="https://keys.example.com/")).start()
    try:
        for origin, want in [("https://keys.example.com", 401), ("https://keys.example.com:443", 401),
                             ("https://KEYS.example.com", 401), ("http://keys.example.com", 403),
                             ("https://keys.example.com:8443", 403),
                             ("https://keys.example.com.evil", 403),
                             ("http://127.0.0.1:%d" % s.port, 403)]:
            st, _, _ = sign_in(s.port, random_email(), headers={"Origin": origin})
            eq(st, want, "Origin %s with public_url" % origin)
    finally:
        s.cleanup()


def test_a_malformed_public_url_is_a_usage_error():
    s = Server(env={"KEYWARD_PUBLIC_URL": "https://keys.example.com:99999"})
    try:
        s.start()
        raise AssertionError("keyward serve started with a bad public_url")
    except RuntimeError:
        pass
    eq(s.proc.returncode, 2, "exit code")
    check(b"public_url" in s.log(), "message: %r" % s.log()[-500:])
    s.cleanup()


if __name__ == "__main__":
    run_tests(globals())
