#!/usr/bin/env python3
"""Black-box tests of the key lifecycle over HTTP: PATCH a key (rename,
disable, expiry, metadata), roll, revoke all, the account's audit log in
pages, DISABLED verifications and metadata in answers.

Runs like test_api.py (and with its helpers): SQLite by default, a fresh
PostgreSQL database each server under scripts/pg.sh. Standard library only.
"""

import base64
import datetime
import json
import threading
import time

import test_api as api
from kwserver import Server
from kwtest import check, eq, run_tests, tmpdir

expect = api.expect
expect_error = api.expect_error
call = api.call
new_account = api.new_account
new_key = api.new_key
verify = api.verify


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_path(acc, key_id, tail=""):
    return "/v1/accounts/%s/keys/%s%s" % (acc, key_id, tail)


def get_key(acc, key_id):
    _, doc = expect(200, "GET", key_path(acc, key_id), root=True)
    return doc


def create(acc, body):
    _, doc = expect(201, "POST", "/v1/accounts/%s/keys" % acc, body, root=True)
    return doc["key"], doc["secret"]


def patch(acc, key_id, body, status=200):
    _, doc = expect(status, "PATCH", key_path(acc, key_id), body, root=True)
    return doc


def audit(acc, limit=None, cursor=None, server=None):
    query = []
    if limit is not None:
        query.append("limit=%s" % limit)
    if cursor is not None:
        query.append("cursor=%s" % cursor)
    path = "/v1/accounts/%s/audit%s" % (acc, "?" + "&".join(query) if query else "")
    _, doc = expect(200, "GET", path, root=True, server=server)
    return doc


def unchanged(acc, before, what):
    after = get_key(acc, before["id"])
    before = dict(before, last_used_at=None, status=None)
    after = dict(after, last_used_at=None, status=None)
    eq(after, before, "%s changed the key" % what)


def auth(secret, server=None):
    status, rh, _ = call("GET", "/v1/auth", headers={"API-Key": secret}, server=server)
    return status, rh


# ---- the key object ----


def test_key_object_has_lifecycle_fields():
    acc = new_account("Fields")
    key, _ = new_key(acc)
    eq(set(key), api.KEY_FIELDS, "members of a created key")
    eq((key["enabled"], key["status"], key["rolled_from"], key["rolled_to"], key["metadata"]),
       (True, "active", None, None, None), "a new key's lifecycle fields")
    _, listing = expect(200, "GET", "/v1/accounts/%s/keys" % acc, root=True)
    eq(set(listing["keys"][0]), api.KEY_FIELDS, "members of a listed key")
    soon, _ = create(acc, {"name": "soon", "expires_in": 3600})
    eq(soon["status"], "expiring", "a key expiring within 7 days")


# ---- create with expires_in and metadata ----

BAD_METADATA = [
    ({"a": "x" * 1100}, "too big"),
    ({"m%d" % i: i for i in range(17)}, "17 members"),
    ({"Bad": 1}, "a capital in a member name"),
    ({"1a": 1}, "a member name starting with a digit"),
    ({"a-b": 1}, "a dash in a member name"),
    ({"a" * 33: 1}, "a member name of 33 characters"),
    ({"a": None}, "a null value"),
    ({"a": {"b": 1}}, "a nested object"),
    ({"a": [1]}, "an array value"),
    ([1], "not an object"),
    ("text", "a string"),
    (3, "a number"),
]


def test_create_with_expires_in_and_metadata():
    acc = new_account("Create")
    meta = {"plan": "pro", "seats": 12, "beta": True, "ratio": 0.5}
    before = time.time()
    key, secret = create(acc, {"name": "meta", "expires_in": 600, "metadata": meta})
    eq(key["metadata"], meta, "metadata as given")
    eq(list(key["metadata"]), list(meta), "members keep their order")
    exp = datetime.datetime.strptime(key["expires_at"], "%Y-%m-%dT%H:%M:%SZ")
    exp = exp.replace(tzinfo=datetime.timezone.utc).timestamp()
    check(before + 598 <= exp <= time.time() + 602, "expires_in 600 gave %s" % key["expires_at"])
    doc = verify(secret)
    eq(doc["metadata"], meta, "VALID answer carries the metadata")
    plain, psecret = new_key(acc, "plain")
    check("metadata" not in verify(psecret), "no metadata member without metadata")
    _, listing = expect(200, "GET", "/v1/accounts/%s/keys" % acc, root=True)
    path = "/v1/accounts/%s/keys" % acc
    bad_bodies = [({"name": "x", "expires_in": 60, "expires_at": rfc3339(time.time() + 3600)},
                   "expires_in with expires_at"),
                  ({"name": "x", "expires_in": 0}, "expires_in 0"),
                  ({"name": "x", "expires_in": -5}, "negative expires_in"),
                  ({"name": "x", "expires_in": 1.5}, "float expires_in"),
                  ({"name": "x", "expires_in": "60"}, "string expires_in"),
                  ({"name": "x", "expires_in": 10 ** 13}, "expires_in past year 9999"),
                  ({"name": "x", "expires_at": "2020-01-01T00:00:00Z"}, "expires_at in the past"),
                  ({"name": "x", "expires_at": "tomorrow"}, "malformed expires_at"),
                  ({"name": "x", "colour": "red"}, "unknown field")]
    bad_bodies += [({"name": "x", "metadata": m}, "metadata: " + why) for m, why in BAD_METADATA]
    for body, why in bad_bodies:
        msg = expect_error(400, "invalid_request", "POST", path, body, root=True)
        check(msg.strip(), why)
    _, after = expect(200, "GET", "/v1/accounts/%s/keys" % acc, root=True)
    eq(len(after["keys"]), len(listing["keys"]), "refused creates created nothing")
    # exactly 16 members and a null metadata are fine
    key16, _ = create(acc, {"name": "sixteen", "metadata": {"m%d" % i: i for i in range(16)}})
    eq(len(key16["metadata"]), 16, "16 members")
    none, _ = create(acc, {"name": "none", "metadata": None})
    eq(none["metadata"], None, "null metadata is none")


# ---- PATCH ----


def test_patch_rename_disable_enable_expiry_metadata():
    acc = new_account("Patch")
    key, secret = new_key(acc, "before")
    doc = patch(acc, key["id"], {"name": "after"})
    eq((doc["name"], doc["id"]), ("after", key["id"]), "renamed")
    eq(set(doc), api.KEY_FIELDS, "PATCH answers the key object")
    doc = patch(acc, key["id"], {"enabled": False})
    eq((doc["enabled"], doc["status"]), (False, "disabled"), "disabled")
    eq(verify(secret), {"valid": False, "code": "DISABLED"}, "disabled key verifies DISABLED")
    status, rh = auth(secret)
    eq((status, rh.get("x-keyward-code")), (401, "DISABLED"), "/v1/auth of a disabled key")
    doc = patch(acc, key["id"], {"enabled": True})
    eq((doc["enabled"], doc["status"]), (True, "active"), "enabled")
    eq(verify(secret)["code"], "VALID", "enabled key verifies again")
    later = rfc3339(time.time() + 30 * 86400)
    doc = patch(acc, key["id"], {"expires_at": later})
    eq(doc["expires_at"], later, "expiry set")
    doc = patch(acc, key["id"], {"expires_at": None})
    eq(doc["expires_at"], None, "expiry cleared")
    meta = {"tier": "gold", "n": 3}
    doc = patch(acc, key["id"], {"metadata": meta})
    eq(doc["metadata"], meta, "metadata set")
    eq(verify(secret)["metadata"], meta, "verification shows the new metadata")
    status, rh = auth(secret)
    eq(status, 204, "auth with metadata")
    raw = rh.get("x-keyward-metadata", "")
    check(raw and "=" not in raw, "X-Keyward-Metadata is unpadded base64url: %r" % raw)
    decoded = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    eq(decoded, meta, "the decoded header is the metadata")
    doc = patch(acc, key["id"], {"metadata": None})
    eq(doc["metadata"], None, "metadata cleared")
    check("x-keyward-metadata" not in auth(secret)[1], "no header without metadata")
    doc = patch(acc, key["id"], {"name": "both", "enabled": False})
    eq((doc["name"], doc["enabled"]), ("both", False), "several members at once")


def test_patch_bad_input_changes_nothing():
    acc = new_account("Patch bad")
    key, _ = new_key(acc, "steady")
    key = patch(acc, key["id"], {"metadata": {"keep": "me"}})
    path = key_path(acc, key["id"])
    bodies = [({}, "empty object"),
              ({"enabled": "false"}, "enabled as a string"),
              ({"enabled": 0}, "enabled as a number"),
              ({"name": 5}, "name as a number"),
              ({"name": ""}, "empty name"),
              ({"expires_at": "2020-01-01T00:00:00Z"}, "expiry in the past"),
              ({"expires_at": rfc3339(time.time() - 1)}, "expiry a second ago"),
              ({"expires_at": "soon"}, "malformed expiry"),
              ({"expires_at": 12345}, "expiry as a number"),
              ({"id": "key_x"}, "unknown field id"),
              ({"environment": "staging"}, "environment cannot change"),
              ({"name": "ok", "colour": "red"}, "a good member with an unknown one")]
    bodies += [({"metadata": m}, "metadata: " + why) for m, why in BAD_METADATA
               if isinstance(m, dict) or m == [1]]
    for body, why in bodies:
        expect_error(400, "invalid_request", "PATCH", path, body, root=True)
        unchanged(acc, key, why)
    expect_error(400, "invalid_request", "PATCH", path, "[]", {"Content-Type": "application/json"},
                 root=True)
    expect_error(415, "unsupported_media_type", "PATCH", path, '{"name":"x"}', root=True)
    unchanged(acc, key, "non-object bodies")


def test_lifecycle_routes_need_auth_and_the_right_account():
    acc = new_account("Owner")
    other = new_account("Other")
    key, _ = new_key(acc, "mine")
    routes = [("PATCH", key_path(acc, key["id"]), {"name": "x"}),
              ("POST", key_path(acc, key["id"], "/roll"), {}),
              ("POST", "/v1/accounts/%s/keys/revoke" % acc, {}),
              ("GET", "/v1/accounts/%s/audit" % acc, None)]
    for method, path, body in routes:
        expect_error(401, "unauthorized", method, path, body)
        expect_error(401, "unauthorized", method, path, body,
                     {"Authorization": "Bearer kw_root_notarootkey"})
    # another account's key is not found, and stays as it was
    for method, path, body in [("PATCH", key_path(other, key["id"]), {"name": "x"}),
                               ("POST", key_path(other, key["id"], "/roll"), {})]:
        expect_error(404, "not_found", method, path, body, root=True)
    unchanged(acc, key, "requests through another account")
    status, _, _ = call("GET", "/v1/accounts/acc_%s/audit" % ("A" * 22), root=True)
    eq(status, 404, "the audit log of an unknown account")
    expect_error(400, "invalid_request", "PATCH", key_path(acc, "nokey"), {"name": "x"},
                 root=True)


# ---- roll ----


def test_roll_keeps_the_old_key_for_the_grace_period():
    acc = new_account("Roll")
    meta = {"app": "crm"}
    old, old_secret = create(acc, {"name": "CRM", "environment": "staging", "metadata": meta})
    before = time.time()
    _, doc = expect(201, "POST", key_path(acc, old["id"], "/roll"), {"grace_seconds": 120},
                    root=True)
    eq(set(doc), {"key", "secret", "previous"}, "roll answer members")
    new, secret, prev = doc["key"], doc["secret"], doc["previous"]
    eq((new["name"], new["environment"], new["metadata"]), ("CRM", "staging", meta),
       "the new key keeps name, environment and metadata")
    eq((new["rolled_from"], prev["rolled_to"], prev["id"]), (old["id"], new["id"], old["id"]),
       "the keys are linked")
    eq(prev["status"], "expiring", "the previous key is expiring")
    exp = datetime.datetime.strptime(prev["expires_at"], "%Y-%m-%dT%H:%M:%SZ")
    exp = exp.replace(tzinfo=datetime.timezone.utc).timestamp()
    check(before + 118 <= exp <= time.time() + 122, "grace 120 s: %s" % prev["expires_at"])
    eq(verify(secret)["key_id"], new["id"], "the new key verifies")
    eq(verify(old_secret)["key_id"], old["id"], "the old key verifies during its grace")
    check(secret not in json.dumps(get_key(acc, new["id"])), "the secret is shown once")
    # a rolled key cannot be rolled again
    msg = expect_error(409, "key_state", "POST", key_path(acc, old["id"], "/roll"), {}, root=True)
    check("roll" in msg.lower(), "the message says why: %r" % msg)
    # default grace: a day
    _, doc = expect(201, "POST", key_path(acc, new["id"], "/roll"), {}, root=True)
    exp = datetime.datetime.strptime(doc["previous"]["expires_at"], "%Y-%m-%dT%H:%M:%SZ")
    exp = exp.replace(tzinfo=datetime.timezone.utc).timestamp()
    check(abs(exp - (time.time() + 86400)) < 5, "default grace is 86400 s")
    # grace 0: the previous key is over at once
    k3, s3 = new_key(acc, "instant")
    _, doc = expect(201, "POST", key_path(acc, k3["id"], "/roll"), {"grace_seconds": 0},
                    root=True)
    eq(verify(s3)["code"], "EXPIRED", "grace 0 ends the old key at once")
    # a disabled key cannot be rolled
    k4, _ = new_key(acc, "off")
    patch(acc, k4["id"], {"enabled": False})
    expect_error(409, "key_state", "POST", key_path(acc, k4["id"], "/roll"), {}, root=True)
    # an expired one neither
    expect_error(409, "key_state", "POST", key_path(acc, k3["id"], "/roll"), {}, root=True)


def test_roll_bad_input_changes_nothing():
    acc = new_account("Roll bad")
    key, _ = new_key(acc, "steady")
    path = key_path(acc, key["id"], "/roll")
    for body, why in [({"grace_seconds": -1}, "negative"),
                      ({"grace_seconds": 2592001}, "over 30 days"),
                      ({"grace_seconds": "60"}, "a string"),
                      ({"grace_seconds": 1.5}, "a float"),
                      ({"grace_seconds": None}, "null"),
                      ({"grace_seconds": True}, "a boolean"),
                      ({"grace": 60}, "an unknown field")]:
        expect_error(400, "invalid_request", "POST", path, body, root=True)
        unchanged(acc, key, "roll with grace_seconds " + why)
    _, listing = expect(200, "GET", "/v1/accounts/%s/keys" % acc, root=True)
    eq(len(listing["keys"]), 1, "no key was made")
    _, doc = expect(201, "POST", path, {"grace_seconds": 2592000}, root=True)
    eq(doc["previous"]["rolled_to"], doc["key"]["id"], "30 days is the maximum, and allowed")


# ---- revoke all ----


def test_revoke_all_with_environment_filter():
    acc = new_account("Revoke")
    prod = [new_key(acc, "p%d" % i) for i in range(3)]
    stag = [new_key(acc, "s%d" % i, environment="staging") for i in range(2)]
    _, doc = expect(200, "POST", "/v1/accounts/%s/keys/revoke" % acc, {"environment": "staging"},
                    root=True)
    eq(doc, {"revoked": 2}, "revoked the staging keys")
    for _, secret in stag:
        eq(verify(secret)["code"], "NOT_FOUND", "a revoked key is NOT_FOUND at once")
    for key, secret in prod:
        eq(verify(secret)["key_id"], key["id"], "production keys untouched")
    _, doc = expect(200, "POST", "/v1/accounts/%s/keys/revoke" % acc, {"environment": "staging"},
                    root=True)
    eq(doc, {"revoked": 0}, "nothing left to revoke")
    expect_error(400, "invalid_request", "POST", "/v1/accounts/%s/keys/revoke" % acc,
                 {"environment": "Bad Env!"}, root=True)
    expect_error(400, "invalid_request", "POST", "/v1/accounts/%s/keys/revoke" % acc,
                 {"env": "staging"}, root=True)
    expect_error(400, "invalid_request", "POST", "/v1/accounts/%s/keys/revoke" % acc,
                 {"environment": 3}, root=True)
    eq(verify(prod[0][1])["code"], "VALID", "refused revokes revoked nothing")
    # GET, PATCH and DELETE of /keys/revoke are 405, not the key "revoke"
    for method in ("GET", "PATCH", "DELETE"):
        rh, doc = expect(405, method, "/v1/accounts/%s/keys/revoke" % acc, root=True)
        eq(rh.get("allow"), "POST", "%s /keys/revoke: Allow" % method)
    _, doc = expect(200, "POST", "/v1/accounts/%s/keys/revoke" % acc, {}, root=True)
    eq(doc, {"revoked": 3}, "an empty object revokes every environment")
    _, listing = expect(200, "GET", "/v1/accounts/%s/keys" % acc, root=True)
    eq(listing["keys"], [], "no key left")


def test_revoke_all_under_concurrent_creates():
    acc = new_account("Revoke race")
    other = [new_key(acc, "keep%d" % i, environment="staging") for i in range(3)]
    answered = []  # (time the answer arrived, secret)
    lock = threading.Lock()
    stop = threading.Event()

    def creator(n):
        i = 0
        while not stop.is_set() and i < 8:
            status, _, doc = api.srv().request("POST", "/v1/accounts/%s/keys" % acc,
                                               {"name": "c%d-%d" % (n, i)}, root=True)
            at = time.monotonic()
            if status == 201:
                with lock:
                    answered.append((at, doc["secret"]))
            i += 1

    threads = [threading.Thread(target=creator, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    started = time.monotonic()
    _, doc = expect(200, "POST", "/v1/accounts/%s/keys/revoke" % acc,
                    {"environment": "production"}, root=True)
    stop.set()
    for t in threads:
        t.join()
    with lock:
        before = [s for at, s in answered if at < started]
    check(before, "some creates were answered before the revoke started")
    check(doc["revoked"] >= len(before), "revoked %d, %d created before" % (doc["revoked"],
                                                                           len(before)))
    for secret in before:
        eq(verify(secret)["code"], "NOT_FOUND", "a key created before the revoke is gone")
    for key, secret in other:
        eq(verify(secret)["key_id"], key["id"], "the other environment's keys are untouched")


# ---- audit ----


def test_audit_pages_have_no_gap_and_no_repeat():
    s = Server(data_dir=tmpdir()).start()
    try:
        acc = s.account_id
        secrets = []
        for i in range(7):
            _, _, doc = s.request("POST", "/v1/accounts/%s/keys" % acc, {"name": "a%d" % i},
                                  root=True)
            secrets.append(doc["secret"])
        # a sign-in is in the log too
        conn_status, _, _ = s.request("POST", "/v1/session",
                                      {"email": "admin@localhost",
                                       "password": s.first_run["password"]})
        eq(conn_status, 200, "sign-in")
        full = audit(acc, limit=200, server=s)
        stop = threading.Event()

        def writer():
            i = 0
            while not stop.is_set() and i < 20:
                s.request("POST", "/v1/accounts/%s/keys" % acc, {"name": "w%d" % i}, root=True)
                i += 1

        t = threading.Thread(target=writer)
        t.start()
        try:
            first = audit(acc, limit=2, server=s)
            seen, cursor, pages = list(first["entries"]), first["next_cursor"], 1
            while cursor:
                page = audit(acc, limit=2, cursor=cursor, server=s)
                check(len(page["entries"]) <= 2, "a page holds at most limit entries")
                seen += page["entries"]
                cursor = page["next_cursor"]
                pages += 1
                check(pages < 100, "paging ends")
        finally:
            stop.set()
            t.join()
        # the first page may already hold writes made after `full`: compare from its first entry
        tail = full["entries"]
        start = next((i for i, e in enumerate(seen) if e == tail[0]), None)
        check(start is not None, "the pages reach the entries read before")
        eq(seen[start:], tail, "the pages are the log as it was: no gap, no repeat")
        ats = [e["at"] for e in seen]
        eq(ats, sorted(ats, reverse=True), "newest first")
        for e in seen:
            eq(set(e), {"at", "actor", "action", "key_id", "key_name", "source_ip"}, "entry members")
        actions = [e["action"] for e in tail]
        check("session.create" in actions, "sign-ins are in the log: %r" % actions)
        creates = [e for e in tail if e["action"] == "key.create"]
        eq(len(creates), 7, "each create has its entry")
        for e in creates:
            eq(e["source_ip"], "127.0.0.1", "an HTTP change records the client address")
            check(e["actor"].startswith("root_key:"), "actor %r" % e["actor"])
        text = json.dumps(seen) + json.dumps(full)
        for secret in secrets:
            check(secret not in text, "a secret is in the audit log")
        # bad queries
        path = "/v1/accounts/%s/audit" % acc
        for query in ("limit=0", "limit=201", "limit=abc", "limit=-1", "limit=2&limit=3",
                      "cursor=abc", "cursor=" + "A" * 22, "page=2", "key=" + secrets[0]):
            expect_error(400, "invalid_request", "GET", path + "?" + query, root=True, server=s)
        # a cursor of another account is refused
        other = new_account("Other audit", server=s)
        s.request("POST", "/v1/accounts/%s/keys" % other, {"name": "o1"}, root=True)
        s.request("POST", "/v1/accounts/%s/keys" % other, {"name": "o2"}, root=True)
        foreign = audit(other, limit=1, server=s)["next_cursor"]
        check(foreign, "the other account has a second page")
        expect_error(400, "invalid_request", "GET", path + "?cursor=" + foreign, root=True,
                     server=s)
        log = api.stop_clean(s)
        for secret in secrets:
            check(secret.encode() not in log, "a secret is in the server's log")
    finally:
        s.cleanup()


def test_lifecycle_changes_are_audited():
    acc = new_account("Audited")
    key, _ = new_key(acc, "a")
    patch(acc, key["id"], {"enabled": False})
    patch(acc, key["id"], {"enabled": True})
    patch(acc, key["id"], {"name": "b"})
    expect(201, "POST", key_path(acc, key["id"], "/roll"), {}, root=True)
    expect(200, "POST", "/v1/accounts/%s/keys/revoke" % acc, {}, root=True)
    actions = [e["action"] for e in audit(acc)["entries"]]
    for action in ("key.create", "key.disable", "key.enable", "key.rename", "key.roll",
                   "key.revoke"):
        check(action in actions, "%s is not in %r" % (action, actions))


# ---- metrics ----


def test_metrics_count_disabled():
    acc = new_account("Metrics")
    key, secret = new_key(acc)
    patch(acc, key["id"], {"enabled": False})
    verify(secret)
    _, _, text = call("GET", "/metrics")
    text = text.decode() if isinstance(text, bytes) else text
    check('code="DISABLED"' in text, "the DISABLED code is counted in /metrics")


if __name__ == "__main__":
    run_tests(globals())
