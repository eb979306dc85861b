"""Attacks on the HTTP face, over raw sockets: request framing (RFC 9112
section 6.3), bytes that must never pass, slow and half-open clients,
memory-exhausting heads, and the format of every refusal.

Each class is tried three ways where it applies: as the first request of a
connection (checked by keyward's gate before libmicrohttpd reads it), as
the second request on a kept-alive connection, and pipelined behind a good
request in the same packet (both checked after libmicrohttpd has parsed
them). A refused request is answered at once with keyward's JSON error and
Connection: close, and nothing after it on that connection is answered.
"""

import http.client
import json
import os
import resource
import socket
import statistics
import threading
import time

from kwserver import Server
from kwtest import check, eq, run_tests, tmpdir

_SERVER = None


def srv():
    global _SERVER
    if _SERVER is None:
        _SERVER = Server(data_dir=tmpdir()).start()
    return _SERVER


def connect(port, source=None, timeout=10):
    return socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=(source, 0) if source else None
    )


def read_until_closed(sock, limit=10.0):
    """Everything the server sends until it closes; b'<<open>>' appended if it did not."""
    sock.settimeout(0.5)
    out = b""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            b = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return out + b"<<reset>>"
        if not b:
            return out
        out += b
    return out + b"<<open>>"


def responses(data):
    """Splits raw bytes into [(status, headers, body)] (Content-Length framing)."""
    out = []
    while data.startswith(b"HTTP/1."):
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode()] = v.strip().decode("latin-1")
        n = int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:n]))
        data = rest[n:]
    return out


def exchange(port, payload, before=None):
    """Sends before (a good request, answered first) then payload; returns (responses, tail)."""
    s = connect(port)
    try:
        got = []
        if before:
            s.sendall(before)
            first = b""
            while b"\r\n\r\n" not in first or len(responses(first)) < 1:
                b = s.recv(65536)
                if not b:
                    break
                first += b
            got = responses(first)
            eq([r[0] for r in got], [200], "the good request before the attack")
        try:
            s.sendall(payload)
        except OSError:
            pass
        raw = read_until_closed(s)
        tail = raw[raw.find(b"<<") :] if raw.endswith(b">>") else b""
        return responses(raw), tail
    finally:
        s.close()


GOOD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
SMUGGLED = b"GET /healthz?smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


def check_refusal(resps, tail, status, what, json_body=True):
    """One refusal, JSON, Connection: close, then the connection closed."""
    check(len(resps) >= 1, "%s: no answer (%r)" % (what, tail))
    eq(len(resps), 1, "%s: answers on the connection (a hidden request was served)" % what)
    got_status, headers, body = resps[0]
    eq(got_status, status, "%s: status (body %r)" % (what, body[:200]))
    eq(headers.get("connection", "").lower(), "close", "%s: Connection header" % what)
    eq(tail, b"", "%s: the connection stayed open" % what)
    if json_body:
        eq(headers.get("content-type"), "application/json", "%s: content type" % what)
        doc = json.loads(body)
        check(set(doc) == {"error"} and set(doc["error"]) == {"code", "message"},
              "%s: error body %r" % (what, doc))
        eq(headers.get("x-content-type-options"), "nosniff", "%s: nosniff" % what)
        eq(headers.get("cache-control"), "no-store", "%s: no-store" % what)


# (name, request, status, JSON also when libmicrohttpd parses it first)
FRAMING = [
    ("two Content-Length", b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Content-Length: 2\r\nContent-Length: 52\r\n\r\n{}", 400, True),
    ("two equal Content-Length", b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 400, True),
    ("Content-Length and Transfer-Encoding", b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, True),
    ("Transfer-Encoding and Content-Length", b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400, True),
    ("gzip coding", b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
     501, True),
    ("gzip, chunked coding", b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, True),
    ("chunked twice", b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, True),
    ("Transfer-Encoding in HTTP/1.0", b"POST /v1/keys/verify HTTP/1.0\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, True),
    ("obs-fold", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400, True),
    ("obs-fold with tab", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n", 400, True),
    ("space before colon", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A : a\r\n\r\n", 400, True),
    ("space in a name", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX A: a\r\n\r\n", 400, True),
    ("non-ASCII name", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-\xc3\xa9: a\r\n\r\n", 400, True),
    ("separator in a name", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX(A): a\r\n\r\n", 400, True),
    ("NUL in a name", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX\x00A: a\r\n\r\n", 400, False),
    ("no colon", b"GET /healthz HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400, False),
    ("no Host in 1.1", b"GET /healthz HTTP/1.1\r\nAccept: */*\r\n\r\n", 400, True),
    ("two Host", b"GET /healthz HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400, True),
    ("two Host in 1.0", b"GET /healthz HTTP/1.0\r\nHost: x\r\nhost: y\r\n\r\n", 400, True),
    ("bad Host", b"GET /healthz HTTP/1.1\r\nHost: a b@c\r\n\r\n", 400, True),
    ("bare LF", b"GET /healthz HTTP/1.1\nHost: x\n\n", 400, True),
    ("bare LF in a field", b"GET /healthz HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", 400, True),
    ("bare CR", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400, True),
    ("HTTP/2.0 line", b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505, False),
    ("two spaces in the line", b"GET  /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400, True),
    ("Content-Length not a number", b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 0x2\r\n\r\n{}", 400, False),
    ("Content-Length list", b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 2, 2\r\n\r\n{}", 400, False),
]


def test_framing_refused_as_first_request():
    port = srv().port
    for name, req, status, _ in FRAMING:
        resps, tail = exchange(port, req + SMUGGLED)
        check_refusal(resps, tail, status, name + " (first request)")


def test_framing_refused_on_a_kept_alive_connection():
    port = srv().port
    for name, req, status, json_too in FRAMING:
        resps, tail = exchange(port, req + SMUGGLED, before=GOOD)
        # libmicrohttpd refuses a few heads it cannot parse before keyward
        # sees them: answered by it (still 4xx/5xx, closed, nothing served).
        check_refusal(resps, tail, status, name + " (second request)", json_body=json_too)


def test_framing_refused_when_pipelined_behind_a_good_request():
    port = srv().port
    for name, req, status, json_too in FRAMING:
        s = connect(port)
        try:
            s.sendall(GOOD + req + SMUGGLED)
            resps = responses(read_until_closed(s))
        finally:
            s.close()
        eq([r[0] for r in resps], [200, status], name + " (pipelined): statuses")
        eq(resps[1][1].get("connection", "").lower(), "close", name + " (pipelined): close")


def test_chunked_bodies_still_work_and_smuggling_through_them_does_not():
    s = srv()
    body = b'{"key":"kw_live_x"}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    req = (b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
    resps, tail = exchange(s.port, req + GOOD)
    eq([r[0] for r in resps], [200, 200], "a chunked request, then a good one")


# ---- bytes that must never pass ----


def test_nul_and_control_bytes_in_header_values_are_refused():
    s = srv()
    status, _, doc = s.request("POST", "/v1/accounts/%s/keys" % s.account_id,
                               json.dumps({"name": "bytes"}).encode(),
                               {"Authorization": "Bearer " + s.root_key,
                                "Content-Type": "application/json"})
    eq(status, 201, "create a key")
    secret = doc["secret"].encode()
    good = b"GET /v1/auth HTTP/1.1\r\nHost: x\r\nAPI-Key: " + secret + b"\r\n\r\n"
    resps, _ = exchange(s.port, good)
    eq(resps[0][0], 204, "the key authenticates")
    for header in (b"API-Key: ", b"Authorization: Bearer "):
        for junk in (b"\x00junk", b"\x00", b"\x01", b"\x08", b"\x0b", b"\x0c", b"\x1b[0m",
                     b"\x7f", b"\x00" + secret):
            req = b"GET /v1/auth HTTP/1.1\r\nHost: x\r\n" + header + secret + junk + b"\r\n\r\n"
            for before in (None, GOOD):
                resps, tail = exchange(s.port, req, before=before)
                what = "%r + %r (%s)" % (header, junk[:6], "second" if before else "first")
                check_refusal(resps, tail, 400, what)
    # verify's JSON body is not a header: NUL there is a JSON matter (\u0000 -> MALFORMED)
    status, _, doc = s.request("POST", "/v1/keys/verify",
                               json.dumps({"key": secret.decode() + "\u0000junk"}).encode(),
                               {"Content-Type": "application/json"})
    check(status == 400 or doc.get("code") != "VALID", "a key with a NUL in JSON verified")


def test_nul_and_control_bytes_in_the_target_are_refused():
    port = srv().port
    for target in (b"/healthz\x00", b"/healthz\x00/x", b"/healthz\x01", b"/healthz\x7f",
                   b"/health\x00z", b"/healthz?a=\x00", b"/healthz?a=\x1b", b"/healthz\xff",
                   b"/healthz\t", b"healthz", b"http://x/healthz"):
        req = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        for before in (None, GOOD):
            resps, tail = exchange(port, req, before=before)
            check_refusal(resps, tail, 400, "target %r (%s)" % (target, "second" if before else "first"))


# ---- sizes: a prompt 414 or 431, never silence ----


def test_heads_that_exhaust_memory_get_414_or_431_promptly():
    port = srv().port
    cases = [
        ("many query parameters", b"GET /healthz?" + b"a=1&" * 4000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        ("1000 short query parameters", b"GET /healthz?" + b"a&" * 1000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        ("33 query parameters", b"GET /healthz?" + b"&".join([b"a"] * 33) + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        ("a long path", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        ("many small headers", b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"A: 1\r\n" * 200 + b"\r\n", 431),
        ("65 header fields", b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"A: 1\r\n" * 64 + b"\r\n", 431),
        ("one huge header", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
        ("a head that never ends", b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 1100, 431),
        ("a request line that never ends", b"GET /" + b"a" * 9000, 414),
    ]
    for name, req, status in cases:
        t = time.monotonic()
        resps, tail = exchange(port, req)
        check_refusal(resps, tail, status, name)
        check(time.monotonic() - t < 3, "%s: answered after %.1f s" % (name, time.monotonic() - t))
    # on a kept-alive connection, within libmicrohttpd's memory, keyward answers in JSON too
    for name, req, status in cases[:4] + cases[5:7]:
        resps, tail = exchange(port, req, before=GOOD)
        check_refusal(resps, tail, status, name + " (second request)")


# ---- slow and half-open clients ----


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def test_a_trickling_client_is_cut_off_at_the_deadline():
    # the first request within request_head_timeout_s of accept; a later one
    # within idle_timeout_s of the previous answer
    env = {"KEYWARD_REQUEST_HEAD_TIMEOUT_S": "2", "KEYWARD_IDLE_TIMEOUT_S": "3"}
    s = Server(data_dir=tmpdir(), env=env).start()
    try:
        for before in (None, GOOD):
            c = connect(s.port)
            if before:
                c.sendall(before)
                c.recv(4096)
            start = time.monotonic()
            head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200 + b"\r\n\r\n"
            cut = None
            for byte in head:  # one byte every 0.25 s: never idle for long
                try:
                    c.send(bytes([byte]))
                except OSError:
                    cut = time.monotonic() - start
                    break
                time.sleep(0.25)
                r = None
                c.setblocking(False)
                try:
                    r = c.recv(4096)
                except (BlockingIOError, ConnectionResetError):
                    pass
                c.setblocking(True)
                if r is not None:
                    cut = time.monotonic() - start
                    if r:
                        eq(responses(r)[0][0] if responses(r) else 408, 408, "the trickler's answer")
                    break
            what = "second request" if before else "first request"
            due = 3 if before else 2
            check(cut is not None, "a trickling client (%s) was never cut off" % what)
            check(due - 0.5 <= cut <= due + 2.5,
                  "a trickling client (%s) was cut off after %.1f s, not %d" % (what, cut, due))
            c.close()
    finally:
        s.cleanup()


def _verify_latencies(port, secret, n):
    body = json.dumps({"key": secret})
    out = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(n):
        t = time.monotonic()
        conn.request("POST", "/v1/keys/verify", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        doc = json.loads(resp.read())
        eq(doc["code"], "VALID", "verify during the flood")
        out.append(time.monotonic() - t)
    conn.close()
    # new connections too: those are what a flood of waiting connections would block
    for _ in range(n // 4):
        t = time.monotonic()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("POST", "/v1/keys/verify", body, {"Content-Type": "application/json"})
        eq(json.loads(c.getresponse().read())["code"], "VALID", "verify on a new connection")
        c.close()
        out.append(time.monotonic() - t)
    return out


def _slow_header_flood(port, addresses, per_address, held):
    """Opens connections that send half a head and never finish it."""
    for a in range(addresses):
        source = "127.0.%d.%d" % (10 + a // 250, 1 + a % 250)
        for _ in range(per_address):
            try:
                c = connect(port, source=source, timeout=5)
                c.setblocking(False)
                c.send(b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\nContent-Le")
                held.append(c)
            except OSError:
                pass  # refused or reset by the server: that is its right
    time.sleep(0.5)


def test_slow_header_flood_does_not_stop_normal_clients():
    # A server sized for 1000 connections, flooded with 1600 that never
    # finish their head from a handful of addresses, then 1600 more from
    # 400 addresses: normal clients, on kept-alive and on new connections,
    # are still served at their usual latency.
    limit = raise_fd_limit()
    check(limit >= 4000, "this test needs 4000 descriptors, the limit is %d" % limit)
    env = {"KEYWARD_REQUEST_HEAD_TIMEOUT_S": "60", "KEYWARD_MAX_CONNECTIONS": "1000"}
    s = Server(data_dir=tmpdir(), env=env).start()
    held = []
    try:
        _, _, doc = s.request("POST", "/v1/accounts/%s/keys" % s.account_id,
                              json.dumps({"name": "flood"}).encode(),
                              {"Authorization": "Bearer " + s.root_key,
                               "Content-Type": "application/json"})
        secret = doc["secret"]
        baseline = _verify_latencies(s.port, secret, 200)
        for addresses, per in ((8, 200), (400, 4)):
            _slow_header_flood(s.port, addresses, per, held)
            during = _verify_latencies(s.port, secret, 200)
            p50, p50_base = statistics.median(during), statistics.median(baseline)
            worst, worst_base = max(during), max(baseline)
            check(p50 <= 3 * p50_base + 0.005,
                  "median verify latency %.2f ms under %d x %d waiting connections, %.2f ms before"
                  % (p50 * 1e3, addresses, per, p50_base * 1e3))
            check(worst <= 10 * worst_base + 0.25,
                  "slowest verify %.1f ms under the flood, %.1f ms before" % (worst * 1e3, worst_base * 1e3))
    finally:
        for c in held:
            c.close()
        s.cleanup()


def test_waiting_connections_per_client_are_budgeted():
    env = {"KEYWARD_WAITING_CONNECTIONS_PER_IP": "4", "KEYWARD_REQUEST_HEAD_TIMEOUT_S": "30"}
    s = Server(data_dir=tmpdir(), env=env).start()
    try:
        slow = []
        for _ in range(12):
            c = connect(s.port, source="127.0.3.3")
            c.sendall(b"GET /healthz HTTP/1.1\r\n")
            slow.append(c)
        time.sleep(2.5)  # beyond the budget, a waiting connection has 1 s to finish its head
        alive = 0
        for c in slow:
            c.sendall(b"Host: x\r\n\r\n")
            c.settimeout(3)
            try:
                alive += c.recv(4096).startswith(b"HTTP/1.1 200")
            except OSError:
                pass
            c.close()
        eq(alive, 4, "waiting connections kept beyond 1 s for one client")
        # another client is not affected, nor is a burst of fast ones from the same address
        c = connect(s.port, source="127.0.3.4")
        c.sendall(GOOD)
        check(c.recv(4096).startswith(b"HTTP/1.1 200"), "another client was refused")
        c.close()
        results = []

        def fast():
            status, _, _ = s.request("GET", "/healthz")
            results.append(status)

        threads = [threading.Thread(target=fast) for _ in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        eq(results.count(200), 40, "a burst of 40 fast requests from one address")
    finally:
        s.cleanup()


def test_idle_connections_that_never_send_are_closed():
    s = Server(data_dir=tmpdir(), env={"KEYWARD_REQUEST_HEAD_TIMEOUT_S": "1"}).start()
    try:
        c = connect(s.port)
        start = time.monotonic()
        data = read_until_closed(c, 5)
        eq(data, b"", "an idle connection got an answer or stayed open")
        check(time.monotonic() - start < 3, "an idle connection lived %.1f s" % (time.monotonic() - start))
        c.close()
    finally:
        s.cleanup()


# ---- errors in keyward's format, and a quiet log ----


def test_every_error_is_json_with_the_security_headers():
    s = srv()
    reqs = [
        b"GET /no/such HTTP/1.1\r\nHost: x\r\n\r\n",
        b"DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"BREW /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n{",
        b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\n\r\n",
        b"GET /v1/accounts/acc_x HTTP/1.1\r\nHost: x\r\n\r\n",
    ] + [req for _, req, _, json_too in FRAMING if json_too]
    for req in reqs:
        resps, _ = exchange(s.port, req)
        check(resps, "no answer to %r" % req[:40])
        status, headers, body = resps[0]
        check(status >= 400, "%r: status %d" % (req[:40], status))
        eq(headers.get("content-type"), "application/json", "%r: content type" % req[:40])
        check(b"<html" not in body.lower(), "%r: an HTML page" % req[:40])
        json.loads(body)["error"]["code"]
        eq(headers.get("x-content-type-options"), "nosniff", "%r: nosniff" % req[:40])


def test_malformed_connections_are_logged_at_most_once_a_second():
    s = Server(data_dir=tmpdir()).start()
    try:
        start = time.monotonic()
        for i in range(300):
            c = connect(s.port)
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX\x01: a\r\n\r\n" if i % 2 else b"GARBAGE\r\n\r\n")
            read_until_closed(c, 2)
            c.close()
        elapsed = time.monotonic() - start
        time.sleep(1.1)
        lines = [json.loads(l) for l in s.log().splitlines()]
        refused = [l for l in lines if l.get("event") in ("refused", "httpd")]
        check(refused, "refusals are not logged at all")
        check(len(refused) <= elapsed + 3,
              "%d log lines about 300 malformed connections in %.1f s" % (len(refused), elapsed))
        check(any("more since the last line" in l["detail"] for l in refused),
              "the log does not count the refusals it left out")
    finally:
        s.cleanup()


if __name__ == "__main__":
    try:
        run_tests(globals())
    finally:
        if _SERVER is not None:
            _SERVER.cleanup()
