#!/usr/bin/env python3
"""Black-box tests of the keyward HTTP API (see src/http/openapi.json).

Runs the built binary ($KEYWARD_BIN) as `keyward serve` on a free loopback
port. Most tests share one server (each works in accounts of its own); the
tests of shutdown, restart and last-used times start their own.
Standard library only.
"""

import atexit
import datetime
import http.client
import json
import re
import signal
import socket
import threading
import time

from kwserver import Server
from kwtest import check, eq, run_tests, tmpdir

KEY_RE = re.compile(r"^kw_([a-z][a-z0-9]{0,15})_([A-Za-z0-9]{43})([A-Za-z0-9]{6})$")
ID_RE = {
    "acc": re.compile(r"^acc_[A-Za-z0-9]{16,32}$"),
    "key": re.compile(r"^key_[A-Za-z0-9]{16,32}$"),
}
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
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
ACCOUNT_FIELDS = {"id", "name", "created_at", "key_limit"}
KEY_LIMIT = 25
MAX_BODY = 16384
JSON_CT = {"Content-Type": "application/json"}

# Every route the server serves: (method, path template). GET implies HEAD.
ROUTES = [
    ("POST", "/v1/accounts"),
    ("GET", "/v1/accounts/{account_id}"),
    ("POST", "/v1/accounts/{account_id}/keys"),
    ("GET", "/v1/accounts/{account_id}/keys"),
    ("GET", "/v1/accounts/{account_id}/keys/{key_id}"),
    ("PATCH", "/v1/accounts/{account_id}/keys/{key_id}"),
    ("DELETE", "/v1/accounts/{account_id}/keys/{key_id}"),
    ("POST", "/v1/accounts/{account_id}/keys/{key_id}/roll"),
    ("POST", "/v1/accounts/{account_id}/keys/revoke"),
    ("GET", "/v1/accounts/{account_id}/audit"),
    ("POST", "/v1/keys/verify"),
    ("GET", "/v1/auth"),
    ("POST", "/v1/session"),
    ("GET", "/v1/session"),
    ("DELETE", "/v1/session"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/"),
    ("GET", "/sign-in"),
    ("GET", "/settings/integrations"),
    ("GET", "/settings/integrations/api"),
    ("GET", "/assets/{name}"),
]
MANAGEMENT = [(m, p) for m, p in ROUTES if p.startswith("/v1/accounts")]

# ---- the shared server ----

_shared = []


def srv():
    """The server most tests share (started on first use, stopped at exit)."""
    if not _shared:
        s = Server().start()
        _shared.append(s)
        atexit.register(s.cleanup)
    return _shared[0]


# ---- helpers ----


def call(method, path, body=None, headers=None, root=False, server=None):
    """One request on a new connection; checks the headers every response carries."""
    s = server or srv()
    status, rh, doc = s.request(method, path, body, headers, root=root)
    eq(rh.get("cache-control"), "no-store", "%s %s: Cache-Control" % (method, path))
    eq(rh.get("x-content-type-options"), "nosniff", "%s %s: X-Content-Type-Options" % (method, path))
    return status, rh, doc


def expect(want_status, method, path, body=None, headers=None, root=False, server=None):
    status, rh, doc = call(method, path, body, headers, root, server)
    eq(status, want_status, "%s %s status (body %r)" % (method, path, doc))
    return rh, doc


def check_error(doc, code, what=""):
    """doc is exactly {"error": {"code": code, "message": "<sentence>"}}."""
    check(isinstance(doc, dict), "%s: error body is not a JSON object: %r" % (what, doc))
    eq(set(doc), {"error"}, "%s: members of the error body" % what)
    eq(set(doc["error"]), {"code", "message"}, "%s: members of error" % what)
    eq(doc["error"]["code"], code, "%s: error code" % what)
    msg = doc["error"]["message"]
    check(isinstance(msg, str) and msg.strip(), "%s: empty error message" % what)
    return msg


def expect_error(status, code, method, path, body=None, headers=None, root=False, server=None):
    rh, doc = expect(status, method, path, body, headers, root, server)
    check(rh.get("content-type", "").startswith("application/json"),
          "%s %s: error content type %r" % (method, path, rh.get("content-type")))
    return check_error(doc, code, "%s %s" % (method, path))


def new_account(name="Acme", server=None):
    _, doc = expect(201, "POST", "/v1/accounts", {"name": name}, root=True, server=server)
    return doc["id"]


def new_key(acc, name="CRM", environment=None, expires_at=None, server=None):
    body = {"name": name}
    if environment is not None:
        body["environment"] = environment
    if expires_at is not None:
        body["expires_at"] = expires_at
    _, doc = expect(201, "POST", "/v1/accounts/%s/keys" % acc, body, root=True, server=server)
    return doc["key"], doc["secret"]


def verify(key, environment=None, server=None, **extra):
    body = {"key": key}
    if environment is not None:
        body["environment"] = environment
    body.update(extra)
    _, doc = expect(200, "POST", "/v1/keys/verify", body, server=server)
    return doc


def auth(headers, server=None):
    status, rh, _ = call("GET", "/v1/auth", headers=headers, server=server)
    return status, rh


def rfc3339(t):
    return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def raw_exchange(port, data, timeout=10):
    """Sends raw bytes; returns (status, headers, body) or None if the server closed first."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            sock.sendall(data)
        except OSError:
            pass  # the server may answer and close before reading everything
        resp = http.client.HTTPResponse(sock)
        try:
            resp.begin()
            body = resp.read()
        except (OSError, http.client.HTTPException):
            return None
        rh = {k.lower(): v for k, v in resp.getheaders()}
        if rh.get("content-type", "").startswith("application/json") and body:
            body = json.loads(body)
        return resp.status, rh, body
    finally:
        sock.close()


def chunked(body, size):
    out = b""
    for i in range(0, len(body), size):
        piece = body[i : i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def metrics(server=None):
    """The /metrics exposition as {series: value}."""
    rh, text = expect(200, "GET", "/metrics", server=server)
    check(rh["content-type"].startswith("text/plain"), "metrics content type %r" % rh["content-type"])
    text = text.decode()
    series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, value = line.rsplit(" ", 1)
        series[name] = float(value)
    return series, text


def wait_for_log(server, needle, timeout=30):
    deadline = time.monotonic() + timeout
    while needle not in server.log():
        check(time.monotonic() < deadline, "the server never logged %r" % needle)
        time.sleep(0.02)


def stop_clean(server, sig=signal.SIGTERM):
    """Stops server with sig; insists on exit code 0 and no sanitizer report on stderr."""
    rc = server.stop(sig)
    log = server.log()
    for needle in (b"Sanitizer", b"runtime error:"):
        at = log.find(needle)
        check(at < 0, "stderr holds a sanitizer report: %r" % log[max(0, at - 200) : at + 3000])
    eq(rc, 0, "exit code after signal %d" % sig)
    return log


# ---- operations ----


def test_healthz():
    rh, doc = expect(200, "GET", "/healthz")
    check(rh["content-type"].startswith("application/json"), "healthz content type")
    eq(doc, {"status": "ok"}, "healthz body")


def test_head_is_get_without_body():
    for path in ("/healthz", "/openapi.json", "/", "/metrics"):
        get_h, _ = expect(200, "GET", path)
        rh, body = expect(200, "HEAD", path)
        eq(body, b"", "HEAD %s body" % path)
        eq(rh.get("content-type"), get_h.get("content-type"), "HEAD %s Content-Type" % path)
        if path != "/metrics":  # the metrics change between two requests
            eq(rh.get("content-length"), get_h.get("content-length"),
               "HEAD %s Content-Length" % path)
    # HEAD of a management route needs the root key like GET does
    acc = srv().account_id
    expect(401, "HEAD", "/v1/accounts/%s" % acc)
    expect(200, "HEAD", "/v1/accounts/%s" % acc, root=True)


def test_home_page_is_html():
    rh, body = expect(200, "GET", "/")
    check(rh["content-type"].startswith("text/html"), "/ content type %r" % rh["content-type"])
    check(b"<html" in body.lower() or b"<!doctype html" in body.lower(), "/ is not an HTML page")
    check("content-security-policy" in rh, "/ has no Content-Security-Policy")


def test_unknown_paths_are_404():
    for path in (
        "/nope",
        "/v1",
        "/v1/accounts/",
        "/v1/accounts//keys",
        "/v1/accounts/%s/keys/" % srv().account_id,
        "/v1/accounts/%s/keys/key_x/extra" % srv().account_id,
        "/healthz/",
        "//healthz",
        "/v2/auth",
        "/openapi.yaml",
    ):
        for method in ("GET", "POST", "DELETE"):
            msg = expect_error(404, "not_found", method, path, root=True)
            check(path not in msg or path == "/v1", "404 message echoes the path")


def test_percent_encoded_paths_do_not_reach_other_routes():
    """An encoded "/" or NUL inside a path parameter is part of that parameter.

    Ids are plain ASCII, so a "%" in one makes it malformed (400) or the
    path unknown (404); it must never be decoded into a separator that
    selects another route, nor into a NUL that cuts the id short.
    """
    acc = srv().account_id
    key, _ = new_key(acc, "percent")
    for path in (
        "/v1/accounts/%s%%2Fkeys" % acc,
        "/v1/accounts/%s%%2fkeys" % acc,
        "/v1/accounts/%s/keys%%2F%s" % (acc, key["id"]),
        "/v1/accounts/%s/keys/%s%%00" % (acc, key["id"]),
        "/v1/accounts/%s/keys/%s%%00/../../other" % (acc, key["id"]),
        "/v1/accounts/%s%%00/keys" % acc,
    ):
        for method in ("GET", "DELETE"):
            status, _, doc = call(method, path, root=True)
            check(status in (400, 404, 405), "%s %s answers %d %r" % (method, path, status, doc))
    _, got = expect(200, "GET", "/v1/accounts/%s/keys/%s" % (acc, key["id"]), root=True)
    eq(got["id"], key["id"], "the key is still there")


def test_wrong_method_is_405_with_allow():
    acc = srv().account_id
    key, _ = new_key(acc, "allow-test")
    by_path = {}
    for method, path in ROUTES:
        by_path.setdefault(path, set()).add(method)
    for template, methods in by_path.items():
        path = template.replace("{account_id}", acc).replace("{key_id}", key["id"]).replace("{name}", "app.js")
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            if method in methods:
                continue
            rh, doc = expect(405, method, path, root=True)
            check_error(doc, "method_not_allowed", "%s %s" % (method, template))
            check("allow" in rh, "%s %s: 405 without Allow" % (method, template))
            allowed = {m.strip() for m in rh["allow"].split(",") if m.strip()}
            eq(allowed - {"HEAD"}, methods, "%s %s: Allow" % (method, template))


def test_openapi_document_lists_every_route():
    rh, doc = expect(200, "GET", "/openapi.json")
    check(rh["content-type"].startswith("application/json"), "openapi content type")
    check(isinstance(doc, dict), "openapi.json is not a JSON object")
    check(str(doc.get("openapi", "")).startswith("3.1"), "openapi version %r" % doc.get("openapi"))
    paths = doc.get("paths", {})
    for method, path in ROUTES:
        check(path in paths, "%s is not in the OpenAPI paths" % path)
        check(method.lower() in paths[path], "%s %s is not in the OpenAPI document" % (method, path))


def test_every_documented_operation_is_served():
    _, doc = expect(200, "GET", "/openapi.json")
    acc = new_account("Documented")
    bodies = {
        ("post", "/v1/accounts"): {"name": "From OpenAPI"},
        ("post", "/v1/accounts/{account_id}/keys"): {"name": "From OpenAPI"},
        ("patch", "/v1/accounts/{account_id}/keys/{key_id}"): {"name": "Patched"},
        ("post", "/v1/accounts/{account_id}/keys/{key_id}/roll"): {},
        ("post", "/v1/accounts/{account_id}/keys/revoke"): {"environment": "nowhere"},
    }
    seen = 0
    for template, item in doc["paths"].items():
        for method in ("get", "put", "post", "delete", "patch", "head", "options"):
            if method not in item:
                continue
            key, secret = new_key(acc, "doc-%s" % method)
            path = template.replace("{account_id}", acc).replace("{key_id}", key["id"]).replace("{name}", "app.js")
            body = bodies.get((method, template))
            if (method, template) == ("post", "/v1/keys/verify"):
                body = {"key": secret}
            headers = {"API-Key": secret} if template == "/v1/auth" else None
            status, _, answer = call(method.upper(), path, body, headers, root=True)
            check(status not in (404, 405),
                  "documented %s %s answers %d %r" % (method.upper(), template, status, answer))
            # Session routes need a session (tested on their own below): 400/401 will do.
            check(status < 400 or template == "/v1/session", "documented %s %s answers %d %r"
                  % (method.upper(), template, status, answer))
            seen += 1
            if method != "delete":
                expect(204, "DELETE", "/v1/accounts/%s/keys/%s" % (acc, key["id"]), root=True)
    check(seen >= len(ROUTES), "the document has only %d operations" % seen)


def test_metrics_count_requests_and_hold_no_key():
    acc = new_account("Metrics")
    key, secret = new_key(acc)
    before, _ = metrics()
    expect(200, "GET", "/healthz")
    expect(200, "GET", "/healthz")
    verify(secret)
    verify("kw_production_nope")
    expect(404, "GET", "/definitely/unknown")
    key2, secret2 = new_key(acc, "second")
    after, text = metrics()

    def delta(series):
        return after.get(series, 0) - before.get(series, 0)

    check(delta('keyward_http_requests_total{route="/healthz",method="GET",status="200"}') >= 2,
          "healthz requests did not count")
    check(delta('keyward_http_requests_total{route="/v1/keys/verify",method="POST",status="200"}')
          >= 2, "verify requests did not count")
    check(delta('keyward_verifications_total{code="VALID"}') >= 1, "VALID not counted")
    check(delta('keyward_verifications_total{code="MALFORMED"}') >= 1, "MALFORMED not counted")
    check(any(k.startswith("keyward_http_requests_total{") and 'status="404"' in k and v > 0
              for k, v in after.items()), "404s are not counted")
    eq(delta("keyward_active_keys"), 1, "active keys after one more key")
    for code in ("VALID", "MALFORMED", "NOT_FOUND", "EXPIRED", "ENVIRONMENT_MISMATCH", "DISABLED"):
        check('keyward_verifications_total{code="%s"}' % code in after, "no series for %s" % code)
    check(any(k.startswith("keyward_build_info{") for k in after), "no keyward_build_info")
    hist = "keyward_http_request_duration_seconds"
    check("# TYPE %s histogram" % hist in text, "no histogram TYPE line")
    check('%s_bucket{route="/healthz",method="GET",le="+Inf"}' % hist in after, "no +Inf bucket")
    check('%s_count{route="/healthz",method="GET"}' % hist in after, "no _count")
    check('%s_sum{route="/healthz",method="GET"}' % hist in after, "no _sum")
    eq(after['%s_count{route="/healthz",method="GET"}' % hist],
       after['%s_bucket{route="/healthz",method="GET",le="+Inf"}' % hist], "_count vs +Inf bucket")
    for s in (secret, secret2, srv().root_key, key["id"], acc):
        check(s not in text, "metrics contain %s" % s[:20])
    expect(204, "DELETE", "/v1/accounts/%s/keys/%s" % (acc, key2["id"]), root=True)
    again, _ = metrics()
    eq(again["keyward_active_keys"] - after["keyward_active_keys"], -1, "active keys after delete")


def test_verification_is_answered_from_memory():
    """Repeated and forged keys never reach the store, and /metrics shows the index."""
    import kwserver

    acc = new_account("FromMemory")
    keys = [new_key(acc, "mem %d" % i) for i in range(5)]
    before, _ = metrics()
    for _ in range(4):
        for _key, secret in keys:
            eq(verify(secret)["code"], "VALID", "a stored key")
    for i in range(20):
        forged = kwserver.forge_key("production" if i % 2 else "staging")
        eq(verify(forged)["code"], "NOT_FOUND", "a forged key")
    after, text = metrics()
    eq(after["keyward_verify_store_lookups_total"], before["keyward_verify_store_lookups_total"],
       "store lookups for 20 verifications and 20 forged keys")
    check(after['keyward_verify_index_lookups_total{result="hit"}']
          - before['keyward_verify_index_lookups_total{result="hit"}'] >= 40,
          "hits for 40 verifications")
    eq(after["keyward_verify_index_ready"], 1, "index ready")
    check(after["keyward_verify_index_keys"] >= 5, "keys in the index")
    check(after["keyward_verify_index_bytes"] > 0, "index bytes")
    eq(after["keyward_change_feed_lag"], 0, "feed lag")
    check(after["keyward_change_feed_position"] >= 5, "feed position")
    # Each create and each delete is one change applied to the index, and
    # nothing else: the verifications above changed nothing.
    eq(after["keyward_verify_index_invalidations_total"],
       before["keyward_verify_index_invalidations_total"], "changes applied by verifications")
    expect(204, "DELETE", "/v1/accounts/%s/keys/%s" % (acc, keys[0][0]["id"]), root=True)
    again, _ = metrics()
    eq(again["keyward_verify_index_invalidations_total"]
       - after["keyward_verify_index_invalidations_total"], 1, "changes applied for one delete")
    eq(again["keyward_verify_index_keys"] - after["keyward_verify_index_keys"], -1,
       "keys in the index after one delete")
    for _key, secret in keys:
        check(secret not in text, "metrics contain a key")

# ---- accounts and credentials ----


def test_account_create_and_get():
    rh, doc = expect(201, "POST", "/v1/accounts", {"name": "Acme"}, root=True)
    check(rh["content-type"].startswith("application/json"), "content type")
    eq(set(doc), ACCOUNT_FIELDS, "account members")
    check(ID_RE["acc"].match(doc["id"]), "account id %r" % doc["id"])
    eq(doc["name"], "Acme", "name")
    check(TIME_RE.match(doc["created_at"]), "created_at %r" % doc["created_at"])
    eq(doc["key_limit"], KEY_LIMIT, "key_limit")
    _, got = expect(200, "GET", "/v1/accounts/%s" % doc["id"], root=True)
    eq(got, doc, "GET account")
    other = new_account("Acme")
    check(other != doc["id"], "two accounts share an id")
    # the first run's account
    _, first = expect(200, "GET", "/v1/accounts/%s" % srv().account_id, root=True)
    eq(first["name"], "Default", "first-run account name")


def test_account_create_validation():
    for body, field in (({}, "name"), ({"name": 5}, "name"), ({"name": None}, "name"),
                        ({"name": "x", "extra": 1}, "extra")):
        msg = expect_error(400, "invalid_request", "POST", "/v1/accounts", body, root=True)
        check(field in msg, "message %r does not name %s" % (msg, field))
    for name in ("", "   ", "a\u0007b", "x" * 101):
        expect_error(400, "invalid_request", "POST", "/v1/accounts", {"name": name}, root=True)


def test_management_requires_a_root_key():
    acc = srv().account_id
    key, secret = new_key(acc, "for-401")
    bad_headers = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic " + srv().root_key},
        {"Authorization": srv().root_key},
        {"Authorization": "Bearer kw_root_" + "A" * 49},
        {"Authorization": "Bearer " + srv().root_key[:-1] + ("A" if srv().root_key[-1] != "A" else "B")},
        {"Authorization": "Bearer garbage"},
        {"Authorization": "Bearer " + secret},  # an account's key is not a root key
        {"API-Key": srv().root_key},
        {"Cookie": "session=" + srv().root_key},
    ]
    for method, template in MANAGEMENT:
        path = template.replace("{account_id}", acc).replace("{key_id}", key["id"]).replace("{name}", "app.js")
        body = {"name": "x"} if method == "POST" else None
        for h in bad_headers:
            msg = expect_error(401, "unauthorized", method, path, body, h)
            check(srv().root_key not in msg and secret not in msg, "401 message echoes a key")
        # a root key in the query string is never accepted
        expect_error(401, "unauthorized", method,
                     path + "?access_token=" + srv().root_key + "&key=" + srv().root_key, body)
    # ... and nothing changed: the key still exists and verifies
    expect(200, "GET", "/v1/accounts/%s/keys/%s" % (acc, key["id"]), root=True)
    eq(verify(secret)["code"], "VALID", "key after refused management requests")
    # the scheme is case-insensitive
    expect(200, "GET", "/v1/accounts/%s" % acc,
           headers={"Authorization": "bearer " + srv().root_key})


def test_account_key_is_not_a_root_key():
    acc = new_account("KeyAsRoot")
    key, secret = new_key(acc)
    h = {"Authorization": "Bearer " + secret}
    expect_error(401, "unauthorized", "GET", "/v1/accounts/%s" % acc, headers=h)
    expect_error(401, "unauthorized", "GET", "/v1/accounts/%s/keys" % acc, headers=h)
    expect_error(401, "unauthorized", "POST", "/v1/accounts/%s/keys" % acc, {"name": "x"}, h)
    expect_error(401, "unauthorized", "DELETE", "/v1/accounts/%s/keys/%s" % (acc, key["id"]),
                 headers=h)
    expect_error(401, "unauthorized", "POST", "/v1/accounts", {"name": "x"}, h)
    # and a root key is not an account key
    eq(verify(srv().root_key)["code"], "NOT_FOUND", "root key verified as an account key")
    status, rh = auth({"API-Key": srv().root_key})
    eq(status, 401, "root key on /v1/auth")
    check("x-keyward-account-id" not in rh, "root key on /v1/auth: account id header")


def test_malformed_path_ids_are_400():
    acc = srv().account_id
    bad_accounts = ["xyz", "acc_", "acc_!!", "key_" + "A" * 22, "acc_" + "A" * 200, "ACC_abc"]
    bad_keys = ["xyz", "key_", "acc_" + "A" * 22, "key_%21%21", "key_" + "A" * 200]
    for bad in bad_accounts:
        for method, template in MANAGEMENT:
            if "{account_id}" not in template:
                continue
            path = template.replace("{account_id}", bad).replace("{key_id}", "key_" + "A" * 22)
            body = {"name": "x"} if method in ("POST", "PATCH") else None
            msg = expect_error(400, "invalid_request", method, path, body, root=True)
            check("account" in msg.lower(), "message %r does not name the account id" % msg)
    for bad in bad_keys:
        for method in ("GET", "DELETE"):
            msg = expect_error(400, "invalid_request", method,
                               "/v1/accounts/%s/keys/%s" % (acc, bad), root=True)
            check("key" in msg.lower(), "message %r does not name the key id" % msg)
    # without a root key the answer is 401, whatever the ids
    expect_error(401, "unauthorized", "GET", "/v1/accounts/xyz")


def test_unknown_ids_are_404():
    acc = srv().account_id
    unknown_acc = "acc_" + "Z" * 22
    unknown_key = "key_" + "Z" * 22
    expect_error(404, "not_found", "GET", "/v1/accounts/%s" % unknown_acc, root=True)
    expect_error(404, "not_found", "GET", "/v1/accounts/%s/keys" % unknown_acc, root=True)
    expect_error(404, "not_found", "POST", "/v1/accounts/%s/keys" % unknown_acc, {"name": "x"},
                 root=True)
    expect_error(404, "not_found", "GET", "/v1/accounts/%s/keys/%s" % (acc, unknown_key), root=True)
    expect_error(404, "not_found", "DELETE", "/v1/accounts/%s/keys/%s" % (acc, unknown_key),
                 root=True)
    expect_error(404, "not_found", "GET", "/v1/accounts/%s/keys/%s" % (unknown_acc, unknown_key),
                 root=True)


def test_cross_account_ids_are_404_like_unknown():
    a = new_account("Tenant A")
    b = new_account("Tenant B")
    key, secret = new_key(a, "A's key")
    unknown = "key_" + "Q" * 22
    for method in ("GET", "DELETE"):
        _, cross = expect(404, method, "/v1/accounts/%s/keys/%s" % (b, key["id"]), root=True)
        _, none = expect(404, method, "/v1/accounts/%s/keys/%s" % (b, unknown), root=True)
        eq(cross, none, "%s of another account's key vs an unknown key" % method)
        check_error(cross, "not_found", method)
        check(key["id"] not in json.dumps(cross) and a not in json.dumps(cross),
              "404 reveals the other account")
    _, listing = expect(200, "GET", "/v1/accounts/%s/keys" % b, root=True)
    eq(listing["keys"], [], "B's list")
    eq(listing["active_count"], 0, "B's active_count")
    # nothing happened to A's key
    eq(verify(secret)["code"], "VALID", "A's key after B's delete")
    _, got = expect(200, "GET", "/v1/accounts/%s/keys/%s" % (a, key["id"]), root=True)
    eq(got["id"], key["id"], "A's key under A")


# ---- keys ----


def test_key_create_list_get_delete():
    acc = new_account("Keys")
    made = []
    for i, env in enumerate(("production", "staging", None)):
        rh, doc = expect(201, "POST", "/v1/accounts/%s/keys" % acc,
                         dict({"name": "Key %d" % i}, **({"environment": env} if env else {})),
                         root=True)
        eq(set(doc), {"key", "secret"}, "create answer members")
        key, secret = doc["key"], doc["secret"]
        eq(set(key), KEY_FIELDS, "key members")
        m = KEY_RE.match(secret)
        check(m, "secret shape %r" % secret[:16])
        want_env = env or "production"
        eq(m.group(1), want_env, "secret environment")
        eq(key["environment"], want_env, "environment")
        eq(key["account_id"], acc, "account_id")
        eq(key["name"], "Key %d" % i, "name")
        check(ID_RE["key"].match(key["id"]), "key id %r" % key["id"])
        check(TIME_RE.match(key["created_at"]), "created_at")
        eq(key["last_used_at"], None, "last_used_at")
        eq(key["expires_at"], None, "expires_at")
        prefix = "kw_%s_" % want_env
        check(key["masked"].startswith(prefix + secret[len(prefix) : len(prefix) + 4]),
              "masked %r" % key["masked"])
        check(key["masked"].endswith(secret[-4:]), "masked end %r" % key["masked"])
        check(secret[len(prefix) : -6] not in key["masked"], "masked shows the secret")
        made.append((key, secret))
    _, listing = expect(200, "GET", "/v1/accounts/%s/keys" % acc, root=True)
    eq(set(listing), {"keys", "active_count", "key_limit"}, "list members")
    eq([k["id"] for k in listing["keys"]], [k["id"] for k, _ in reversed(made)], "newest first")
    eq(listing["active_count"], 3, "active_count")
    eq(listing["key_limit"], KEY_LIMIT, "key_limit")
    for key, _ in made:
        _, got = expect(200, "GET", "/v1/accounts/%s/keys/%s" % (acc, key["id"]), root=True)
        eq(got, key, "GET key")
    key, secret = made[0]
    _, body = expect(204, "DELETE", "/v1/accounts/%s/keys/%s" % (acc, key["id"]), root=True)
    eq(body, b"", "204 body")
    expect_error(404, "not_found", "GET", "/v1/accounts/%s/keys/%s" % (acc, key["id"]), root=True)
    expect_error(404, "not_found", "DELETE", "/v1/accounts/%s/keys/%s" % (acc, key["id"]),
                 root=True)
    _, listing = expect(200, "GET", "/v1/accounts/%s/keys" % acc, root=True)
    eq(listing["active_count"], 2, "active_count after delete")
    eq(verify(secret)["code"], "NOT_FOUND", "deleted key")
    eq(verify(made[1][1])["code"], "VALID", "other key after delete")


def test_key_create_validation():
    acc = new_account("Validation")
    path = "/v1/accounts/%s/keys" % acc
    cases = [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "tab\there"}, "name"),
        ({"name": "nl\nhere"}, "name"),
        ({"name": 7}, "name"),
        ({"name": None}, "name"),
        ({"name": ["a"]}, "name"),
        ({"name": "ok", "environment": "Production"}, "environment"),
        ({"name": "ok", "environment": ""}, "environment"),
        ({"name": "ok", "environment": "1abc"}, "environment"),
        ({"name": "ok", "environment": "a" * 17}, "environment"),
        ({"name": "ok", "environment": "with_underscore"}, "environment"),
        ({"name": "ok", "environment": 3}, "environment"),
        ({"name": "ok", "expires_at": "tomorrow"}, "expires_at"),
        ({"name": "ok", "expires_at": "2999-13-01T00:00:00Z"}, "expires_at"),
        ({"name": "ok", "expires_at": 4102444800}, "expires_at"),
        ({"name": "ok", "expires_at": "2000-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "ok", "expires_at": rfc3339(time.time() - 60)}, "expires_at"),
        ({"name": "ok", "secret": "kw_production_x"}, "secret"),
        ({"name": "ok", "account_id": acc}, "account_id"),
    ]
    for body, field in cases:
        msg = expect_error(400, "invalid_request", "POST", path, body, root=True)
        check(field in msg, "message %r for %r does not name %s" % (msg, body, field))
    _, listing = expect(200, "GET", path, root=True)
    eq(listing["keys"], [], "no key was created by a refused request")
    # accepted variants
    k, _ = new_key(acc, "x" * 100)
    eq(k["name"], "x" * 100, "100-character name")
    k, _ = new_key(acc, "Unicode ✓ name")
    eq(k["name"], "Unicode ✓ name", "unicode name")
    _, doc = expect(201, "POST", path, {"name": "null expiry", "expires_at": None}, root=True)
    eq(doc["key"]["expires_at"], None, "expires_at null")
    future = rfc3339(time.time() + 86400 * 30)
    _, doc = expect(201, "POST", path, {"name": "expiring", "expires_at": future}, root=True)
    eq(doc["key"]["expires_at"], future, "expires_at")
    k, s = new_key(acc, "short env", environment="a")
    eq(k["environment"], "a", "one-letter environment")
    check(s.startswith("kw_a_"), "secret of environment a")
    k, _ = new_key(acc, "long env", environment="a" + "b2" * 7 + "c")
    eq(k["environment"], "a" + "b2" * 7 + "c", "16-character environment")


INVISIBLE = [
    "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u2060", "\u00ad", "\ufeff",
    "\u202e", "\u2066", "\u180e", "\u034f", "\ufe0f", "\u3164", "\uffa0", "\u115f",
    "\U000e0041", "\U000e0001", "\U000e0100",
]


def test_invisible_names_are_refused():
    """A name holding a format or default-ignorable character, or only blanks,
    is refused with a message naming the field and the character, for keys
    and accounts alike; no key is created."""
    acc = new_account("Invisible")
    path = "/v1/accounts/%s/keys" % acc
    for ch in INVISIBLE:
        code = "U+%04X" % ord(ch)
        for name in ("a%sb" % ch, "%sAcme" % ch, "Acme %s" % ch, ch):
            for where in (path, "/v1/accounts"):
                msg = expect_error(400, "invalid_request", "POST", where, {"name": name},
                                   root=True)
                check(msg.startswith("name must not contain") and code in msg,
                      "%s: message %r for %r does not name the field and %s"
                      % (where, msg, name, code))
    for blank in ("\u3000", "\u2800", " \u2800\u3000\u00a0 ", "\u2028", "\u0085"):
        for where in (path, "/v1/accounts"):
            msg = expect_error(400, "invalid_request", "POST", where, {"name": blank}, root=True)
            check(msg.startswith("name must not be empty"), "%r: %r" % (blank, msg))
    _, listing = expect(200, "GET", path, root=True)
    eq(listing["keys"], [], "no key was created by a refused name")
    for name in ("\u2801\u2800\u2803", "\u6771\u4eac\u3000\u5927", "Cafe\u0301"):
        key, _ = new_key(acc, name)
        eq(key["name"], name, "visible name %r" % name)
    key, _ = new_key(acc, "\u3000\u2800 Trimmed \u2800\u00a0")
    eq(key["name"], "Trimmed", "blanks are trimmed from the ends")


def test_key_expiry_boundaries():
    """No expiry (absent or null) is apart from every time: the epoch however
    written, and any past second, is refused and creates nothing; times parse
    to the second in UTC up to 9999-12-31T23:59:59Z."""
    acc = new_account("Expiry")
    path = "/v1/accounts/%s/keys" % acc
    refused = [
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z has already passed"),
        ("1970-01-01T01:00:00+01:00", "1970-01-01T00:00:00Z has already passed"),
        ("1969-12-31T23:00:00-01:00", "1970-01-01T00:00:00Z has already passed"),
        ("1970-01-01t00:00:00z", "in the future"),
        ("1970-01-01T00:00:00.999Z", "in the future"),
        (rfc3339(time.time() - 1), "in the future"),
        ("10000-01-01T00:00:00Z", "RFC 3339"),
        ("9999-12-31T23:59:59-00:01", "9999-12-31T23:59:59Z"),
        ("2099-06-15T12:00:60Z", "leap second"),
        ("2099-01-01T00:00:00+24:00", "does not exist"),
        ("2099-01-01T00:00:00+14:60", "does not exist"),
        ("2099-02-29T00:00:00Z", "does not exist"),
        ("2099-01-01 00:00:00Z", "RFC 3339"),
    ]
    for value, says in refused:
        msg = expect_error(400, "invalid_request", "POST", path,
                           {"name": "refused", "expires_at": value}, root=True)
        check("expires_at" in msg and says in msg,
              "message %r for %r does not name expires_at and say %r" % (msg, value, says))
    _, listing = expect(200, "GET", path, root=True)
    eq(listing["keys"], [], "a refused expiry creates nothing")
    accepted = [
        ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"),
        ("2098-12-31T23:59:60Z", "2098-12-31T23:59:59Z"),
        ("2099-01-01T13:59:60+14:00", "2098-12-31T23:59:59Z"),
        ("2099-01-01t14:00:00+14:00", "2099-01-01T00:00:00Z"),
        ("2098-12-31T12:00:00-12:00", "2099-01-01T00:00:00Z"),
        ("2099-01-01T00:00:00.999999z", "2099-01-01T00:00:00Z"),
    ]
    for value, stored in accepted:
        key, secret = new_key(acc, "accepted", expires_at=value)
        eq(key["expires_at"], stored, "expires_at of %r" % value)
        eq(verify(secret)["code"], "VALID", "a key expiring at %r verifies" % value)
    for body in ({"name": "absent"}, {"name": "null", "expires_at": None}):
        _, doc = expect(201, "POST", path, body, root=True)
        eq(doc["key"]["expires_at"], None, "no expiry for %r" % body)
        eq(verify(doc["secret"])["code"], "VALID", "a key without expiry verifies")
    _, listing = expect(200, "GET", path, root=True)
    eq(listing["active_count"], len(accepted) + 2, "every accepted key is active")


def test_content_type_must_be_json():
    acc = srv().account_id
    routes = [
        ("/v1/accounts", b'{"name":"x"}', True),
        ("/v1/accounts/%s/keys" % acc, b'{"name":"x"}', True),
        ("/v1/keys/verify", b'{"key":"kw_production_x"}', False),
    ]
    for path, body, root in routes:
        for ct in (None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx",
                   "application/json; charset=latin1", "application/json; charset=utf-16",
                   "text/json", "multipart/form-data; boundary=x", ""):
            h = {} if ct is None else {"Content-Type": ct}
            expect_error(415, "unsupported_media_type", "POST", path, body, h, root=root)
        for ct in ("application/json", "application/json; charset=utf-8",
                   "application/json;charset=UTF-8", "Application/JSON",
                   'application/json; charset="utf-8"'):
            status, _, doc = call("POST", path, body, {"Content-Type": ct}, root=root)
            check(status in (200, 201), "POST %s with %r: %d %r" % (path, ct, status, doc))


def test_malformed_json_is_400():
    acc = srv().account_id
    targets = [("/v1/keys/verify", False), ("/v1/accounts/%s/keys" % acc, True),
               ("/v1/accounts", True)]
    bodies = [
        b"",
        b"{",
        b"}",
        b"{\"name\":}",
        b"{'name':'x'}",
        b"{\"name\":\"x\",}",
        b"{\"name\":\"x\"} trailing",
        b"{\"name\":\"x\"}{}",
        b"[]",
        b"[{\"name\":\"x\"}]",
        b"\"string\"",
        b"null",
        b"42",
        b"true",
        b"name=x",
        b"\xef\xbb\xbf{\"name\":\"x\"}",  # a byte order mark is not JSON
    ]
    for path, root in targets:
        for body in bodies:
            msg = expect_error(400, "invalid_request", "POST", path, body, JSON_CT, root=root)
            check("trailing" not in msg, "message quotes the body")


def test_invalid_utf8_is_400():
    acc = srv().account_id
    targets = [("/v1/keys/verify", b"key", False), ("/v1/accounts/%s/keys" % acc, b"name", True),
               ("/v1/accounts", b"name", True)]
    bad_strings = [b"\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
                   b"abc\x80", b"\xe2\x82"]
    for path, field, root in targets:
        for bad in bad_strings:
            body = b'{"' + field + b'":"' + bad + b'"}'
            msg = expect_error(400, "invalid_request", "POST", path, body, JSON_CT, root=root)
            check("utf-8" in msg.lower() or "utf8" in msg.lower(), "message %r" % msg)
        # in a member name too
        body = b'{"' + field + b'":"x","\xff":"y"}'
        expect_error(400, "invalid_request", "POST", path, body, JSON_CT, root=root)
        # a lone surrogate escape and a NUL character are refused as well
        for esc in (b"\\ud800", b"\\u0000"):
            body = b'{"' + field + b'":"a' + esc + b'b"}'
            expect_error(400, "invalid_request", "POST", path, body, JSON_CT, root=root)
    _, listing = expect(200, "GET", "/v1/accounts/%s/keys" % acc, root=True)
    for k in listing["keys"]:
        check("\ufffd" not in k["name"], "a key was created from invalid UTF-8")


def test_duplicate_unknown_and_mistyped_members():
    acc = srv().account_id
    _, secret = new_key(acc, "members")
    path_keys = "/v1/accounts/%s/keys" % acc
    msg = expect_error(400, "invalid_request", "POST", path_keys,
                       b'{"name":"a","name":"b"}', JSON_CT, root=True)
    check("name" in msg or "twice" in msg or "duplicate" in msg.lower(), "duplicate: %r" % msg)
    expect_error(400, "invalid_request", "POST", "/v1/keys/verify",
                 ('{"key":"%s","key":"%s"}' % (secret, secret)).encode(), JSON_CT)
    # unknown members are named when short and plain ...
    for name in ("extra", "Name", "name ", "environmnet", "expires"):
        msg = expect_error(400, "invalid_request", "POST", path_keys,
                           {"name": "x", name: "y"}, root=True)
        if re.match(r"^[A-Za-z0-9_-]{1,32}$", name):
            check('"%s"' % name in msg, "unknown member %r not named in %r" % (name, msg))
    msg = expect_error(400, "invalid_request", "POST", "/v1/keys/verify",
                       {"key": secret, "account_id": "acc_x"})
    check("account_id" in msg, "unknown member not named: %r" % msg)
    # ... and never quoted when they could be a secret
    for name in (secret, "x" * 200, "a b\u00e9<script>"):
        msg = expect_error(400, "invalid_request", "POST", "/v1/keys/verify",
                           {"key": "kw_production_x", name: 1})
        check(name not in msg, "unknown member quoted: %r" % msg)
        check(secret[14:-6] not in msg, "message holds a secret")
    # wrong types name the member and never quote the value
    for body, field in (({"key": 1}, "key"), ({"key": None}, "key"), ({"key": [secret]}, "key"),
                        ({"key": {"k": secret}}, "key"), ({"key": True}, "key"),
                        ({"key": secret, "environment": 1}, "environment"),
                        ({"key": secret, "environment": ["production"]}, "environment"),
                        ({"key": secret, "environment": False}, "environment")):
        msg = expect_error(400, "invalid_request", "POST", "/v1/keys/verify", body)
        check(field in msg, "message %r does not name %s" % (msg, field))
        check(secret[14:-6] not in msg, "message holds the secret")
    msg = expect_error(400, "invalid_request", "POST", "/v1/keys/verify", {"environment": "x"})
    check("key" in msg, "missing key: %r" % msg)
    msg = expect_error(400, "invalid_request", "POST", "/v1/keys/verify", {})
    check("key" in msg, "missing key: %r" % msg)


def test_payload_too_large_with_content_length():
    acc = srv().account_id
    port = srv().port
    root = srv().root_key
    for path, auth_h in (("/v1/keys/verify", b""),
                         ("/v1/accounts/%s/keys" % acc, b"Authorization: Bearer " + root.encode() + b"\r\n"),
                         ("/v1/accounts", b"Authorization: Bearer " + root.encode() + b"\r\n")):
        for size in (MAX_BODY + 1, MAX_BODY * 4, 1 << 20):
            body = b'{"name":"' + b"a" * (size - 11) + b'"}'
            eq(len(body), size, "test body size")
            got = raw_exchange(port, b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + auth_h
                               + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                               % len(body) + body)
            check(got is not None, "%s: %d bytes: connection closed without an answer" % (path, size))
            eq(got[0], 413, "%s: %d-byte body" % (path, size))
            check_error(got[2], "payload_too_large", path)
        # a declared length over the limit is refused before the body is sent
        got = raw_exchange(port, b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + auth_h
                           + b"Content-Type: application/json\r\nContent-Length: 999999999\r\n\r\n")
        check(got is not None, "huge Content-Length: closed without an answer")
        eq(got[0], 413, "huge Content-Length")
    # exactly at the limit is fine
    body = b'{"key":"' + b"a" * (MAX_BODY - 10) + b'"}'
    eq(len(body), MAX_BODY, "test body size")
    _, doc = expect(200, "POST", "/v1/keys/verify", body, JSON_CT)
    eq(doc, {"valid": False, "code": "MALFORMED"}, "16 KiB verify")
    # an oversize body without credentials is refused too (401 or 413, never processed)
    status, _, _ = call("POST", "/v1/accounts", b"x" * (MAX_BODY + 1), JSON_CT)
    check(status in (401, 413), "oversize unauthenticated body: %d" % status)


def test_payload_too_large_chunked():
    acc = srv().account_id
    port = srv().port
    root = srv().root_key.encode()
    head = (b"POST /v1/accounts/" + acc.encode() + b"/keys HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + root + b"\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    _, before = expect(200, "GET", "/v1/accounts/%s/keys" % acc, root=True)
    for size, piece in ((MAX_BODY + 1, 4096), (MAX_BODY + 1, 1), (MAX_BODY * 3, 1000), (200000, 65536)):
        body = (b'{"name":"' + b"b" * size + b'"}')[: size]
        got = raw_exchange(port, head + chunked(body, piece))
        check(got is not None, "chunked %d bytes: closed without an answer" % size)
        eq(got[0], 413, "chunked %d-byte body" % size)
        check_error(got[2], "payload_too_large", "chunked")
    _, after = expect(200, "GET", "/v1/accounts/%s/keys" % acc, root=True)
    eq(after["active_count"], before["active_count"], "a chunked oversize body created a key")
    # a small chunked body works
    got = raw_exchange(port, head + chunked(b'{"name":"chunked"}', 3))
    eq(got[0], 201, "small chunked body")
    eq(got[2]["key"]["name"], "chunked", "small chunked body's name")
    vhead = (b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n")
    body = b'{"key":"' + b"a" * (MAX_BODY - 10) + b'"}'
    made = got[2]["key"]["id"]
    got = raw_exchange(port, vhead + chunked(body, 5000))
    eq(got[0], 200, "chunked body of exactly 16 KiB")
    expect(204, "DELETE", "/v1/accounts/%s/keys/%s" % (acc, made), root=True)


def test_uri_too_long_is_414():
    port = srv().port
    for n in (8200, 10000, 12000, 16000):
        for target in (b"/" + b"a" * n, b"/healthz?q=" + b"a" * n,
                       b"/v1/accounts/acc_" + b"A" * n):
            got = raw_exchange(port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            check(got is not None, "%d-byte URI: closed without an answer" % n)
            eq(got[0], 414, "%d-byte URI" % n)
            check_error(got[2], "uri_too_long", "414")
    for n in (40000, 200000):
        got = raw_exchange(port, b"GET /" + b"a" * n + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        check(got is None or 400 <= got[0] < 500, "%d-byte URI: %r" % (n, got and got[0]))
    got = raw_exchange(port, b"GET /healthz?q=" + b"a" * 7000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    eq(got[0], 200, "a 7 KB URI")
    expect(200, "GET", "/healthz")


def test_headers_too_large_is_431():
    port = srv().port
    for n in (8300, 10000, 12000, 15000, 16000):
        got = raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * n
                           + b"\r\n\r\n")
        check(got is not None, "%d-byte header: closed without an answer" % n)
        eq(got[0], 431, "%d-byte header" % n)
        check_error(got[2], "headers_too_large", "431")
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 90) for i in range(100))  # ~10 KB
    got = raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    eq(got and got[0], 431, "many headers")
    check_error(got[2], "headers_too_large", "431")
    # a management request: refused as too large, not as unauthorized
    got = raw_exchange(port, b"GET /v1/accounts/" + srv().account_id.encode()
                       + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                       + srv().root_key.encode() + b"\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
    eq(got and got[0], 431, "large headers with a root key")
    for n in (40000, 300000):
        got = raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * n
                           + b"\r\n\r\n")
        check(got is None or 400 <= got[0] < 500, "%d-byte header: %r" % (n, got and got[0]))
    got = raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Ok: " + b"a" * 7000
                       + b"\r\n\r\n")
    eq(got[0], 200, "7 KB of headers")
    expect(200, "GET", "/healthz")


# ---- verification ----


def test_verify_codes():
    acc = new_account("Verify")
    key, secret = new_key(acc, "Production CRM")
    skey, ssecret = new_key(acc, "Staging", environment="staging")
    doc = verify(secret)
    eq(doc, {"valid": True, "code": "VALID", "account_id": acc, "key_id": key["id"],
             "name": "Production CRM", "environment": "production"}, "VALID answer")
    eq(verify(secret, "production")["code"], "VALID", "matching environment")
    _, doc = expect(200, "POST", "/v1/keys/verify", {"key": secret, "environment": None})
    eq(doc["code"], "VALID", "environment null")
    eq(verify(ssecret, "staging")["key_id"], skey["id"], "staging key")

    def invalid(doc, code, what):
        eq(doc, {"valid": False, "code": code}, what)

    invalid(verify(secret, "staging"), "ENVIRONMENT_MISMATCH", "production key, staging wanted")
    invalid(verify(ssecret, "production"), "ENVIRONMENT_MISMATCH", "staging key, production wanted")
    for bad in ("", "x", "kw_production_", secret[:-1], secret + "A", secret.replace("kw_", "kx_"),
                secret[:-6] + ("AAAAAA" if secret[-6:] != "AAAAAA" else "BBBBBB"),
                " " + secret, secret + "\n", secret.upper(), "kw_production_" + "é" * 49):
        invalid(verify(bad), "MALFORMED", "verify %r" % bad[:20])
    # well-formed with a valid checksum but unknown: the secret of a deleted key
    gone, gone_secret = new_key(acc, "gone")
    expect(204, "DELETE", "/v1/accounts/%s/keys/%s" % (acc, gone["id"]), root=True)
    invalid(verify(gone_secret), "NOT_FOUND", "deleted key")
    invalid(verify(gone_secret, "production"), "NOT_FOUND", "deleted key with environment")
    # environment of the request must itself be a label
    status, _, doc = call("POST", "/v1/keys/verify", {"key": secret, "environment": "Bad Env!"})
    check(status == 400 or (status == 200 and doc.get("valid") is False),
          "invalid environment label: %d %r" % (status, doc))
    if status == 400:
        check_error(doc, "invalid_request", "verify with a bad environment")


def test_verify_expired_key():
    acc = new_account("Expiry")
    expires = int(time.time()) + 3
    key, secret = new_key(acc, "short-lived", expires_at=rfc3339(expires))
    eq(key["expires_at"], rfc3339(expires), "expires_at")
    eq(verify(secret)["code"], "VALID", "before expiry")
    status, rh = auth({"API-Key": secret})
    eq(status, 204, "auth before expiry")
    while time.time() < expires + 1.2:
        time.sleep(0.2)
    eq(verify(secret), {"valid": False, "code": "EXPIRED"}, "after expiry")
    eq(verify(secret, "staging")["valid"], False, "after expiry, other environment")
    status, rh = auth({"API-Key": secret})
    eq(status, 401, "auth after expiry")
    eq(rh.get("x-keyward-code"), "EXPIRED", "auth code after expiry")
    check("x-keyward-key-id" not in rh and "x-keyward-account-id" not in rh, "ids on EXPIRED")
    _, listing = expect(200, "GET", "/v1/accounts/%s/keys" % acc, root=True)
    eq(listing["active_count"], 0, "an expired key is not active")


def test_auth_endpoint():
    acc = new_account("Auth")
    key, secret = new_key(acc)
    skey, ssecret = new_key(acc, "staging", environment="staging")
    for h in ({"API-Key": secret}, {"Authorization": "Bearer " + secret},
              {"api-key": secret}, {"Authorization": "bearer " + secret}):
        status, rh = auth(h)
        eq(status, 204, "auth with %s" % list(h))
        eq(rh.get("x-keyward-account-id"), acc, "X-Keyward-Account-Id")
        eq(rh.get("x-keyward-key-id"), key["id"], "X-Keyward-Key-Id")
        eq(rh.get("x-keyward-environment"), "production", "X-Keyward-Environment")
        eq(rh.get("x-keyward-code"), "VALID", "X-Keyward-Code")
    # API-Key is preferred over Authorization
    status, rh = auth({"API-Key": secret, "Authorization": "Bearer junk"})
    eq((status, rh.get("x-keyward-key-id")), (204, key["id"]), "API-Key preferred")
    status, rh = auth({"API-Key": "junk", "Authorization": "Bearer " + secret})
    eq((status, rh.get("x-keyward-code")), (401, "MALFORMED"), "API-Key preferred (invalid)")
    # refusals
    gone, gone_secret = new_key(acc, "gone")
    expect(204, "DELETE", "/v1/accounts/%s/keys/%s" % (acc, gone["id"]), root=True)
    for h, code in (({"API-Key": "junk"}, "MALFORMED"), ({"API-Key": secret[:-1]}, "MALFORMED"),
                    ({"API-Key": ""}, "MALFORMED"),
                    ({"Authorization": "Bearer kw_production_xyz"}, "MALFORMED"),
                    ({"API-Key": gone_secret}, "NOT_FOUND"),
                    ({"API-Key": ssecret, "X-Keyward-Environment-Required": "production"},
                     "ENVIRONMENT_MISMATCH"),
                    ({"API-Key": secret, "X-Keyward-Environment-Required": "staging"},
                     "ENVIRONMENT_MISMATCH")):
        status, rh, doc = call("GET", "/v1/auth", headers=h)
        eq(status, 401, "auth %r" % h)
        eq(rh.get("x-keyward-code"), code, "X-Keyward-Code for %r" % h)
        for name in ("x-keyward-account-id", "x-keyward-key-id", "x-keyward-environment"):
            check(name not in rh, "%s on a refused key" % name)
        check_error(doc, "unauthorized", "auth refusal")
        check(secret not in json.dumps(doc), "401 echoes the key")
    for h in ({}, {"Authorization": "Basic " + secret}, {"Authorization": "Bearer "},
              {"X-Api-Key": secret}, {"Cookie": "key=" + secret}):
        status, rh, doc = call("GET", "/v1/auth", headers=h)
        eq(status, 401, "auth without a key %r" % list(h))
        check("x-keyward-account-id" not in rh, "account id without a key")
        check_error(doc, "unauthorized", "auth without a key")
    # a key in the query string is never accepted
    for q in ("key", "api_key", "api-key", "apikey", "token", "access_token"):
        status, rh, _ = call("GET", "/v1/auth?%s=%s" % (q, secret))
        eq(status, 401, "key in the query string ?%s=" % q)
        check("x-keyward-key-id" not in rh, "key id from the query string")
    # the environment restriction
    status, rh = auth({"API-Key": ssecret, "X-Keyward-Environment-Required": "staging"})
    eq((status, rh.get("x-keyward-environment")), (204, "staging"), "staging key, staging required")
    for bad in ("Staging", "bad label", "1x", "a" * 17, "staging,production"):
        status, rh, doc = call("GET", "/v1/auth",
                               headers={"API-Key": ssecret, "X-Keyward-Environment-Required": bad})
        eq(status, 400, "invalid required environment %r" % bad)
        check_error(doc, "invalid_request", "invalid required environment")
        check("x-keyward-key-id" not in rh, "key id with an invalid environment label")
    # HEAD works like GET
    status, rh, body = call("HEAD", "/v1/auth", headers={"API-Key": secret})
    eq((status, rh.get("x-keyward-key-id"), body), (204, key["id"], b""), "HEAD /v1/auth")


def test_key_limit_with_100_parallel_creates():
    acc = new_account("Limit")
    port = srv().port
    root = srv().root_key
    results = []
    lock = threading.Lock()
    barrier = threading.Barrier(100)

    def worker(i):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.connect()
            barrier.wait(timeout=60)
            conn.request("POST", "/v1/accounts/%s/keys" % acc, body=json.dumps({"name": "k%d" % i}),
                         headers={"Content-Type": "application/json",
                                  "Authorization": "Bearer " + root})
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
            with lock:
                results.append((resp.status, json.loads(data)))
        except Exception as e:  # reported below
            with lock:
                results.append((None, repr(e)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = [s for s, _ in results]
    check(None not in statuses, "requests failed: %r" % [d for s, d in results if s is None][:3])
    eq(statuses.count(201), KEY_LIMIT, "201 answers")
    eq(statuses.count(409), 100 - KEY_LIMIT, "409 answers")
    for s, doc in results:
        if s == 409:
            check_error(doc, "key_limit_reached", "409")
    secrets = {doc["secret"] for s, doc in results if s == 201}
    eq(len(secrets), KEY_LIMIT, "distinct secrets")
    _, listing = expect(200, "GET", "/v1/accounts/%s/keys" % acc, root=True)
    eq(len(listing["keys"]), KEY_LIMIT, "listed keys")
    eq(listing["active_count"], KEY_LIMIT, "active_count")
    eq({k["id"] for k in listing["keys"]}, {doc["key"]["id"] for s, doc in results if s == 201},
       "listed ids vs created ids")
    # one more is refused, a delete makes room for exactly one
    expect_error(409, "key_limit_reached", "POST", "/v1/accounts/%s/keys" % acc, {"name": "26th"},
                 root=True)
    expect(204, "DELETE", "/v1/accounts/%s/keys/%s" % (acc, listing["keys"][0]["id"]), root=True)
    new_key(acc, "replacement")
    expect_error(409, "key_limit_reached", "POST", "/v1/accounts/%s/keys" % acc, {"name": "27th"},
                 root=True)
    # the limit is per account
    new_key(new_account("Other"), "unaffected")


def test_delete_then_verify_is_not_found_at_once():
    acc = new_account("DeleteVerify")
    port = srv().port
    root = srv().root_key
    for i in range(20):
        key, secret = new_key(acc, "round %d" % i)
        eq(verify(secret)["code"], "VALID", "round %d before delete" % i)
        status, _ = auth({"API-Key": secret})
        eq(status, 204, "round %d auth before delete" % i)
        if i % 2:
            # the very next request on the same connection
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("DELETE", "/v1/accounts/%s/keys/%s" % (acc, key["id"]),
                         headers={"Authorization": "Bearer " + root})
            resp = conn.getresponse()
            resp.read()
            eq(resp.status, 204, "round %d delete" % i)
            conn.request("POST", "/v1/keys/verify", body=json.dumps({"key": secret}),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            eq(json.loads(resp.read()), {"valid": False, "code": "NOT_FOUND"}, "round %d" % i)
            conn.request("GET", "/v1/auth", headers={"API-Key": secret})
            resp = conn.getresponse()
            resp.read()
            eq((resp.status, resp.getheader("X-Keyward-Code")), (401, "NOT_FOUND"),
               "round %d auth" % i)
            conn.close()
        else:
            expect(204, "DELETE", "/v1/accounts/%s/keys/%s" % (acc, key["id"]), root=True)
            eq(verify(secret), {"valid": False, "code": "NOT_FOUND"}, "round %d verify" % i)
            status, rh = auth({"API-Key": secret})
            eq((status, rh.get("x-keyward-code")), (401, "NOT_FOUND"), "round %d auth" % i)
        expect_error(404, "not_found", "DELETE", "/v1/accounts/%s/keys/%s" % (acc, key["id"]),
                     root=True)
    _, listing = expect(200, "GET", "/v1/accounts/%s/keys" % acc, root=True)
    eq((listing["keys"], listing["active_count"]), ([], 0), "all deleted")


def test_cli_delete_while_serving_is_refused_at_once():
    """A delete by another process (the CLI) reaches the server's very next verification."""
    import os
    import subprocess

    import kwserver

    s = srv()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWARD_")}
    env["KEYWARD_DATA_DIR"] = os.path.join(s.dir, "var")
    if s.store_url:
        env["KEYWARD_STORE"] = s.store_url
        env["KEYWARD_PEPPER"] = kwserver.TEST_PEPPER
    acc = new_account("CliDelete")
    for i in range(10):
        key, secret = new_key(acc, "round %d" % i)
        for _ in range(3):  # answered from memory after the first time
            eq(verify(secret)["code"], "VALID", "round %d before delete" % i)
        proc = subprocess.run(
            [kwserver.BIN, "key", "delete", "--account", acc, key["id"]],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
        )
        eq(proc.returncode, 0, "CLI delete: %r" % proc.stderr)
        eq(verify(secret), {"valid": False, "code": "NOT_FOUND"}, "round %d verify" % i)
        status, rh = auth({"API-Key": secret})
        eq((status, rh.get("x-keyward-code")), (401, "NOT_FOUND"), "round %d auth" % i)


def test_keep_alive_serves_many_requests_on_one_connection():
    acc = srv().account_id
    conn = http.client.HTTPConnection("127.0.0.1", srv().port, timeout=30)
    conn.connect()
    local = conn.sock.getsockname()
    root = {"Authorization": "Bearer " + srv().root_key}
    steps = [
        ("GET", "/healthz", None, {}, 200),
        ("POST", "/v1/accounts/%s/keys" % acc, json.dumps({"name": "keepalive"}),
         dict(root, **JSON_CT), 201),
        ("GET", "/v1/accounts/%s/keys" % acc, None, root, 200),
        ("POST", "/v1/keys/verify", '{"key":"x"}', JSON_CT, 200),
        ("GET", "/nope", None, {}, 404),
        ("PUT", "/healthz", None, {}, 405),
        ("POST", "/v1/keys/verify", "{", JSON_CT, 400),
        ("POST", "/v1/keys/verify", '{"key":"x"}', {"Content-Type": "text/plain"}, 415),
        ("GET", "/v1/accounts/%s" % acc, None, {}, 401),
        ("HEAD", "/healthz", None, {}, 200),
        ("GET", "/metrics", None, {}, 200),
        ("GET", "/openapi.json", None, {}, 200),
    ]
    for method, path, body, headers, want in steps:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        eq(resp.status, want, "%s %s on the kept-alive connection" % (method, path))
        check(conn.sock is not None and conn.sock.getsockname() == local,
              "the server closed the connection after %s %s" % (method, path))
    conn.close()


# ---- secrets ----


def test_secret_is_shown_once():
    s = srv()
    acc = new_account("ShownOnce")
    rolled_key, first = new_key(acc, "rolled once")
    # A roll's secret is shown once too: its answer is the only place.
    status, _, doc = call("POST", "/v1/accounts/%s/keys/%s/roll" % (acc, rolled_key["id"]),
                          {"grace_seconds": 3600}, root=True)
    eq(status, 201, "roll")
    key, secret = doc["key"], doc["secret"]
    middle = KEY_RE.match(secret).group(2)
    eq(len(middle), 43, "middle length")
    root_middle = KEY_RE.match(s.root_key).group(2)
    first_middle = KEY_RE.match(first).group(2)
    needles = (secret, middle, first, first_middle, s.root_key, root_middle)
    verify(secret)
    verify(first)
    auth({"API-Key": secret})
    auth({"Authorization": "Bearer " + secret})
    call("GET", "/v1/accounts/%s" % acc, headers={"Authorization": "Bearer " + secret})
    verify(secret + "x")
    responses = []
    for method, path, h in (("GET", "/v1/accounts/%s/keys" % acc, None),
                            ("GET", "/v1/accounts/%s/keys/%s" % (acc, key["id"]), None),
                            ("GET", "/v1/accounts/%s/keys/%s" % (acc, rolled_key["id"]), None),
                            ("GET", "/v1/accounts/%s/audit" % acc, None),
                            ("GET", "/v1/accounts/%s" % acc, None),
                            ("GET", "/metrics", None), ("GET", "/openapi.json", None),
                            ("GET", "/", None), ("GET", "/healthz", None),
                            ("GET", "/v1/auth", {"API-Key": secret}),
                            ("POST", "/v1/keys/verify", None)):
        body = {"key": secret} if path == "/v1/keys/verify" else None
        status, rh, doc = call(method, path, body, h, root=True)
        blob = (json.dumps(doc) if isinstance(doc, (dict, list)) else doc.decode("utf-8", "replace"))
        blob += json.dumps(rh)
        responses.append(blob)
        for needle in needles:
            check(needle not in blob, "%s %s shows a secret" % (method, path))
    log = s.log()
    for needle in needles:
        check(needle.encode() not in log, "the access log holds a secret")
    # At rest: the data dir's files (the SQLite database, its WAL) and, on
    # PostgreSQL, a pg_dump of the database. The key's id must be there (so
    # the right store was searched), its secret and the secret's middle not.
    stored = s.stored_bytes()
    check(any(key["id"].encode() in data for _, data in stored),
          "the key's id is in none of %r" % [what for what, _ in stored])
    for what, data in stored:
        for needle in needles:
            check(needle.encode() not in data, "%s holds a secret in clear" % what)


def test_access_log_lines():
    s = srv()
    acc = new_account("LogTenant")
    key, secret = new_key(acc, "logged")
    marker_path = "/v1/accounts/%s/keys/%s" % (acc, key["id"])
    expect(200, "GET", marker_path, root=True)
    expect(404, "GET", "/no/such/" + secret)
    call("POST", "/v1/keys/verify", {"key": secret})
    call("GET", "/v1/auth", headers={"API-Key": secret})
    call("GET", "/v1/auth", headers={"Authorization": "Bearer " + secret})
    call("HEAD", "/healthz")
    call("BREW", "/healthz")
    call("GET", "/healthz?token=" + secret)
    call("GET", "/v1/accounts/acc_" + "N" * 22, root=True)
    expect(200, "GET", "/healthz", headers={"User-Agent": "agent-" + secret})
    wait_for_log(s, b'"route":"/v1/accounts/{account_id}/keys/{key_id}"')
    log = s.log()
    for needle in (secret, KEY_RE.match(secret).group(2), s.root_key, acc, key["id"],
                   "acc_" + "N" * 22, "logged", "LogTenant", "agent-", "/no/such"):
        check(needle.encode() not in log, "the access log holds %r" % needle[:24])
    requests = []
    for line in log.splitlines():
        doc = json.loads(line)  # every line of stderr is JSON
        if "event" in doc:
            continue
        eq(set(doc), {"time", "client", "method", "route", "status", "ms"}, "access log members")
        requests.append(doc)
    check(len(requests) > 20, "few access log lines")
    routes = {p for _, p in ROUTES} | {"unmatched"}
    for doc in requests:
        check(doc["route"] in routes, "route %r is not a template" % doc["route"])
        check(isinstance(doc["status"], int) and 100 <= doc["status"] < 600, "status")
        check(isinstance(doc["ms"], (int, float)) and doc["ms"] >= 0, "ms")
        eq(doc["client"], "127.0.0.1", "client")
        check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", doc["time"]), "time")
        check(re.match(r"^[A-Z]+$", doc["method"]), "method %r" % doc["method"])
    check(any(d["route"] == "/v1/accounts/{account_id}/keys/{key_id}" and d["method"] == "GET"
              and d["status"] == 200 for d in requests), "no line for GET key")
    check(any(d["route"] == "unmatched" and d["status"] == 404 for d in requests),
          "no unmatched line")
    check(any(d["method"] == "HEAD" and d["route"] == "/healthz" for d in requests), "no HEAD line")
    check(not any(d["method"] == "BREW" for d in requests), "an unknown method reached the log")


# ---- lifecycle: first run, graceful stop, restart ----


def test_first_run_output():
    s = srv()
    fr = s.first_run
    eq(set(fr), {"console_url", "account", "user", "password", "root_key", "secret"},
       "first-run members")
    eq(fr["console_url"], "http://127.0.0.1:%d/" % s.port, "console_url")
    check(ID_RE["acc"].match(fr["account"]["id"]), "account id")
    eq(fr["user"]["email"], "admin@localhost", "user email")
    eq(fr["user"]["account_id"], fr["account"]["id"], "user's account")
    check(fr["root_key"]["id"].startswith("rk_"), "root key id")
    check("secret" not in fr["root_key"] and "hash" not in fr["root_key"], "root key object")
    check(len(fr["password"]) >= 12, "password length")
    check(KEY_RE.match(fr["secret"]), "root key shape")
    expect(200, "GET", "/v1/accounts/%s" % fr["account"]["id"], root=True)
    log = s.log()
    check(fr["password"].encode() not in log and fr["secret"].encode() not in log,
          "stderr holds a first-run secret")


def test_graceful_stop_finishes_request_in_flight():
    s = Server(data_dir=tmpdir()).start()
    try:
        acc = s.account_id
        key, secret = new_key(acc, server=s)
        # headers in; the server asks for the body, so the request is in flight
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=30)
        body = json.dumps({"key": secret}).encode()
        sock.sendall(b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = sock.recv(4096)
            check(chunk, "closed before 100 Continue")
            got += chunk
        check(got.startswith(b"HTTP/1.1 100"), "no 100 Continue: %r" % got[:40])
        s.proc.send_signal(signal.SIGTERM)
        wait_for_log(s, b'"event":"stopping"')
        # While it drains, a new connection is closed at once, unanswered, so a
        # load balancer retries it elsewhere instead of waiting in the backlog.
        late = socket.create_connection(("127.0.0.1", s.port), timeout=30)
        try:
            late.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        except OSError:
            pass  # already closed
        check(_closed_by_server(late, 5), "a connection made while stopping was kept waiting")
        late.close()
        sock.sendall(body)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        doc = json.loads(resp.read())
        eq(resp.status, 200, "request in flight at SIGTERM")
        eq(doc["code"], "VALID", "answer of the request in flight")
        eq((resp.getheader("Connection") or "").lower(), "close", "Connection while stopping")
        sock.close()
        check(b'"event":"stopped"' in stop_clean(s), "no stopped event")
    finally:
        s.cleanup()


def _closed_by_server(sock, within):
    """True when the server closes sock (EOF or reset) within `within` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_connection_limits_and_idle_timeout():
    env = {"KEYWARD_MAX_CONNECTIONS_PER_IP": "4", "KEYWARD_IDLE_TIMEOUT_S": "2"}
    s = Server(data_dir=tmpdir(), env=env).start()
    try:
        held = [socket.create_connection(("127.0.0.1", s.port), timeout=10) for _ in range(4)]
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        check(_closed_by_server(extra, 5), "a fifth connection from one address was kept")
        extra.close()
        # idle connections are closed after the idle timeout, freeing the slots
        for c in held:
            check(_closed_by_server(c, 10), "an idle connection outlived the idle timeout")
            c.close()
        status, _, doc = s.request("GET", "/healthz")
        eq((status, doc), (200, {"status": "ok"}), "served again once the slots are free")
    finally:
        s.cleanup()


def test_slow_clients_do_not_delay_others():
    s = Server(data_dir=tmpdir()).start()
    try:
        key, secret = new_key(s.account_id, server=s)
        slow = []
        for _ in range(8):  # more slow clients than server threads
            c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            c.sendall(b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\nContent-Le")
            slow.append(c)
        for i in range(50):
            eq(verify(secret, server=s)["code"], "VALID", "request %d beside slow clients" % i)
        for c in slow:
            c.sendall(b"ngth: 2\r\nContent-Type: application/json\r\n\r\n{}")
            resp = http.client.HTTPResponse(c)
            resp.begin()
            eq(resp.status, 400, "the slow request is answered in the end")
            c.close()
    finally:
        s.cleanup()


def _sign_in(s, password, origin=None, email="admin@localhost"):
    headers = dict(JSON_CT)
    if origin:
        headers["Origin"] = origin
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
    conn.request("POST", "/v1/session", json.dumps({"email": email, "password": password}),
                 headers)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    doc = json.loads(body) if body else None
    cookie = resp.getheader("Set-Cookie")
    return resp.status, cookie, doc, resp.getheader("Retry-After")


def _with_session(s, method, path, cookie, csrf=None, origin="same", body=None):
    value = cookie.split(";", 1)[0]
    headers = {"Cookie": value}
    if csrf:
        headers["X-CSRF-Token"] = csrf
    if origin == "same":
        headers["Origin"] = "http://127.0.0.1:%d" % s.port
    elif origin:
        headers["Origin"] = origin
    return s.request(method, path, body, headers)


def test_sessions_sign_in_scope_csrf_and_sign_out():
    s = Server(data_dir=tmpdir()).start()
    try:
        password = s.first_run["password"]
        acc = s.account_id
        # wrong password and unknown email: the same 401
        st1, c1, d1, _ = _sign_in(s, "wrong password 123")
        st2, c2, d2, _ = _sign_in(s, password, email="nobody@example.com")
        eq((st1, st2), (401, 401), "failed sign-ins")
        eq(d1, d2, "the same answer for a wrong password and an unknown email")
        check(c1 is None and c2 is None, "no cookie on a failed sign-in")
        # a foreign Origin cannot sign in
        st, cookie, doc, _ = _sign_in(s, password, origin="http://evil.example")
        eq((st, cookie), (403, None), "sign-in from another origin")
        st, cookie, doc, _ = _sign_in(s, password, origin="http://127.0.0.1:%d" % s.port)
        eq(st, 200, "sign-in: %r" % doc)
        for attr in ("HttpOnly", "SameSite=Strict", "Path=/"):
            check(attr in cookie, "cookie lacks %s: %r" % (attr, cookie))
        check("Secure" not in cookie, "Secure without TLS or secure_cookies")
        eq(doc["user"]["account_id"], acc, "session account")
        eq(doc["user"]["email"], "admin@localhost", "session email")
        csrf = doc["csrf_token"]
        token = cookie.split(";", 1)[0].split("=", 1)[1]
        check(token not in json.dumps(doc), "the session token is in the body")
        # GET /v1/session answers the same body
        status, _, again = _with_session(s, "GET", "/v1/session", cookie, origin=None)
        eq((status, again), (200, doc), "GET /v1/session")
        # reads of its own account work without CSRF
        status, _, keys = _with_session(s, "GET", "/v1/accounts/%s/keys" % acc, cookie, origin=None)
        eq(status, 200, "session lists its keys")
        # state changes need both the CSRF token and this Origin; refused ones change nothing
        path = "/v1/accounts/%s/keys" % acc
        for csrf_v, origin, why in [(None, "same", "no CSRF token"),
                                    ("x" * 43, "same", "a wrong CSRF token"),
                                    (csrf, "http://evil.example", "a foreign Origin"),
                                    (csrf, None, "no Origin")]:
            status, _, answer = _with_session(s, "POST", path, cookie, csrf_v, origin,
                                              {"name": "Refused"})
            eq((status, answer["error"]["code"]), (403, "forbidden"), why)
        status, _, keys = _with_session(s, "GET", path, cookie, origin=None)
        eq(keys["keys"], [], "refused creates created nothing")
        status, _, made = _with_session(s, "POST", path, cookie, csrf, "same", {"name": "Console"})
        eq(status, 201, "create with session: %r" % made)
        status, _, _ = _with_session(s, "DELETE", "%s/%s" % (path, made["key"]["id"]), cookie,
                                     None, "same")
        eq(status, 403, "delete without CSRF")
        # another account is out of reach, exactly like one that does not exist
        other = new_account("Other", server=s)
        status, _, answer = _with_session(s, "GET", "/v1/accounts/%s/keys" % other, cookie,
                                          origin=None)
        _, _, unknown = _with_session(s, "GET", "/v1/accounts/acc_%s/keys" % ("A" * 22), cookie,
                                      origin=None)
        eq((status, answer), (404, unknown), "another account's keys through a session")
        status, _, _ = _with_session(s, "POST", "/v1/accounts", cookie, csrf, "same",
                                     {"name": "Nope"})
        eq(status, 403, "a session cannot create accounts")
        # the audit log names the user
        entries = s.request("GET", "/v1/accounts/%s/keys" % acc, root=True)
        check(entries[0] == 200, "root still works beside sessions")
        # sign out needs the CSRF token too; then the cookie is dead
        status, _, _ = _with_session(s, "DELETE", "/v1/session", cookie, None, "same")
        eq(status, 403, "sign-out without CSRF")
        status, rh, _ = _with_session(s, "DELETE", "/v1/session", cookie, csrf, "same")
        eq(status, 204, "sign-out")
        check("Max-Age=0" in rh.get("set-cookie", ""), "sign-out clears the cookie")
        status, _, _ = _with_session(s, "GET", "/v1/session", cookie, origin=None)
        eq(status, 401, "replayed cookie after sign-out")
        status, _, _ = _with_session(s, "GET", "/v1/accounts/%s/keys" % acc, cookie, origin=None)
        eq(status, 401, "replayed cookie on the API")
        # nothing secret reached the log
        log = stop_clean(s)
        for secret in (password, token, csrf):
            check(secret.encode() not in log, "a secret is in the log")
    finally:
        s.cleanup()


def test_failed_sign_ins_are_limited_with_429():
    s = Server(data_dir=tmpdir()).start()
    try:
        for i in range(5):
            st, _, _, _ = _sign_in(s, "wrong password %d" % i)
            eq(st, 401, "failure %d" % i)
        st, _, doc, retry = _sign_in(s, s.first_run["password"])
        eq((st, doc["error"]["code"]), (429, "rate_limited"), "the right password after 5 failures")
        check(retry and int(retry) > 0, "Retry-After: %r" % retry)
        # another email is not limited by this one's failures (the address limit is higher)
        st, _, _, _ = _sign_in(s, "whatever password", email="other@example.com")
        eq(st, 401, "another email")
    finally:
        s.cleanup()


def test_last_used_flushed_on_stop_and_restart_shows_no_secret():
    env = {"KEYWARD_LAST_USED_INTERVAL_MS": "3600000"}
    first = Server(data_dir=tmpdir(), env=env).start()
    try:
        root = first.root_key
        password = first.first_run["password"]
        acc = first.account_id
        key, secret = new_key(acc, server=first)
        unused, _ = new_key(acc, "never used", server=first)
        eq(verify(secret, server=first)["code"], "VALID", "verify before stop")
        status, _ = auth({"API-Key": secret}, server=first)
        eq(status, 204, "auth before stop")
        stop_clean(first)
    finally:
        first.cleanup()
    second = Server(data_dir=tmpdir(), env=env, first_run=False).start()
    try:
        h = {"Authorization": "Bearer " + root}
        _, got = expect(200, "GET", "/v1/accounts/%s/keys/%s" % (acc, key["id"]), headers=h,
                        server=second)
        check(got["last_used_at"] is not None, "last_used_at was not written at shutdown")
        check(TIME_RE.match(got["last_used_at"]), "last_used_at %r" % got["last_used_at"])
        _, got = expect(200, "GET", "/v1/accounts/%s/keys/%s" % (acc, unused["id"]), headers=h,
                        server=second)
        eq(got["last_used_at"], None, "last_used_at of a key never used")
        eq(verify(secret, server=second)["code"], "VALID", "key after restart")
        stop_clean(second, signal.SIGINT)
        out = second.stdout_start + (second.stdout_rest or b"")
        for needle in (root.encode(), password.encode(), b"kw_", b"secret", b"password", b"{"):
            check(needle not in out, "the restart printed %r: %r" % (needle, out[:200]))
        check(root.encode() not in second.log() and password.encode() not in second.log(),
              "the restart logged a secret")
    finally:
        second.cleanup()


def test_shared_server_stops_cleanly():
    """Last: the server every test above used exits 0 on SIGTERM, with no sanitizer report."""
    s = srv()
    expect(200, "GET", "/healthz")
    log = stop_clean(s)
    lines = [line for line in log.splitlines() if line.strip()]
    for line in lines:
        json.loads(line)  # nothing but JSON lines on stderr
    check(b'"event":"stopped"' in lines[-1], "last line is not the stopped event")


if __name__ == "__main__":
    run_tests(globals())
