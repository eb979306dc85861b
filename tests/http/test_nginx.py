"""Black-box test: Debian's nginx in front of an application, asking
`keyward serve` about every request with auth_request.

The nginx configuration is tests/http/nginx.conf.in, the one docs/nginx.md
quotes (a test checks that the two agree). Each test starts keyward (fresh
data dir, first run), a tiny application that echoes the X-Keyward-*
headers it receives, and nginx, all on 127.0.0.1, and stops them all.

Standard library only. nginx is /usr/sbin/nginx (or $NGINX);
`scripts/deps.sh test` installs it.
"""

import base64
import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from kwserver import Server  # noqa: E402
from kwtest import check, eq, run_tests, tmpdir  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "nginx.conf.in")
DOC = os.path.join(HERE, "..", "..", "docs", "nginx.md")
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
START_TIMEOUT = 15
REQUEST_TIMEOUT = 10

# The addresses in the template, each replaced by a free loopback port.
KEYWARD_ADDR = "server 127.0.0.1:8080;"
APP_ADDR = "server 127.0.0.1:3000;"
PUBLIC_ADDR = "listen 127.0.0.1:8000;"

# The test's own frame around the template: everything inside the temp dir.
MAIN_CONF = """daemon off;
%(user)s
worker_processes 1;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log info;
events { worker_connections 256; }
http {
    access_log %(dir)s/access.log;
    client_body_temp_path %(dir)s/client_body;
    proxy_temp_path %(dir)s/proxy;
    fastcgi_temp_path %(dir)s/fastcgi;
    uwsgi_temp_path %(dir)s/uwsgi;
    scgi_temp_path %(dir)s/scgi;
    include %(dir)s/keyward.conf;
}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """The protected application: answers every request with the X-Keyward-*,
    API-Key and Authorization headers it received, as JSON."""

    def __init__(self):
        self.hits = 0
        self.body = None
        app = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                app.hits += 1
                seen = {
                    k.lower(): v
                    for k, v in self.headers.items()
                    if k.lower().startswith("x-keyward-")
                    or k.lower() in ("api-key", "authorization")
                }
                body = json.dumps({"path": self.path, "headers": seen}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                app.body = self.rfile.read(length)
                self.do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def site_conf(keyward_port, app_port, public_port):
    """The template with the three addresses replaced."""
    with open(TEMPLATE) as f:
        conf = f.read()
    for old, new in (
        (KEYWARD_ADDR, "server 127.0.0.1:%d;" % keyward_port),
        (APP_ADDR, "server 127.0.0.1:%d;" % app_port),
        (PUBLIC_ADDR, "listen 127.0.0.1:%d;" % public_port),
    ):
        eq(conf.count(old), 1, "occurrences of %r in nginx.conf.in" % old)
        conf = conf.replace(old, new)
    return conf


class Nginx:
    def __init__(self, keyward_port, app_port):
        if not os.access(NGINX, os.X_OK):
            raise AssertionError(
                "nginx not found at %s: install it with `scripts/deps.sh test` "
                "(Debian package nginx-light) or set NGINX" % NGINX
            )
        self.dir = os.path.join(tmpdir(), "nginx")
        os.makedirs(self.dir)
        self.proc = None
        last_error = ""
        for _ in range(3):  # a free port can be taken before nginx binds it
            self.port = free_port()
            with open(os.path.join(self.dir, "keyward.conf"), "w") as f:
                f.write(site_conf(keyward_port, app_port, self.port))
            with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
                # As root, nginx's workers would run as "nobody", who cannot
                # enter the private temp dir.
                user = "user root;" if os.geteuid() == 0 else ""
                f.write(MAIN_CONF % {"dir": self.dir, "user": user})
            self.proc = subprocess.Popen(
                [NGINX, "-p", self.dir, "-c", os.path.join(self.dir, "nginx.conf")],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if self._wait_ready():
                return
            last_error = self.stop()
        raise AssertionError("nginx did not start: %s" % last_error)

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def error_log(self):
        try:
            with open(os.path.join(self.dir, "error.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        """Stops nginx (SIGTERM, SIGKILL after 10 s); returns its stderr and error log."""
        if not self.proc:
            return ""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self.proc = None
        return (err or b"").decode("utf-8", "replace") + self.error_log()


class Stack:
    """keyward + the application + nginx in front, for one test."""

    def __enter__(self):
        self.kw = self.app = self.nginx = None
        try:
            self.kw = Server().start()
            self.app = App()
            self.nginx = Nginx(self.kw.port, self.app.port)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        if self.nginx:
            self.nginx.stop()
        if self.app:
            self.app.stop()
        if self.kw:
            self.kw.cleanup()

    def get(self, path="/api/orders", headers=None, method="GET", body=None):
        """A request through nginx; returns (status, headers, decoded JSON body or bytes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.nginx.port, timeout=REQUEST_TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            rh = {k.lower(): v for k, v in resp.getheaders()}
            try:
                data = json.loads(data)
            except ValueError:
                pass
            return resp.status, rh, data
        finally:
            conn.close()

    def get_ok(self, path="/api/orders", headers=None):
        """A GET that must reach the application; returns the headers it saw."""
        before = self.app.hits
        status, _, body = self.get(path, headers)
        if status != 200:
            raise AssertionError(
                "GET %s via nginx: %s %r\nnginx: %s"
                % (path, status, body, self.nginx.error_log()[-2000:])
            )
        eq(self.app.hits, before + 1, "application hits")
        eq(body["path"], path, "path the application saw")
        return body["headers"]

    def refused(self, path="/api/orders", headers=None, want=401):
        """A GET that nginx must refuse without reaching the application; returns the body."""
        before = self.app.hits
        status, rh, body = self.get(path, headers)
        eq(status, want, "status of GET %s with %r" % (path, sorted(headers or {})))
        eq(self.app.hits, before, "application hits (must not be reached)")
        if want == 401:
            eq(body["error"]["code"], "unauthorized", "error code")
            check(rh.get("www-authenticate", "").startswith("Bearer"), "WWW-Authenticate: %r" % rh)
        return body


def check_identity(seen, key):
    eq(seen.get("x-keyward-account-id"), key["account_id"], "X-Keyward-Account-Id")
    eq(seen.get("x-keyward-key-id"), key["id"], "X-Keyward-Key-Id")
    eq(seen.get("x-keyward-environment"), key["environment"], "X-Keyward-Environment")
    eq(
        sorted(seen),
        ["x-keyward-account-id", "x-keyward-environment", "x-keyward-key-id"],
        "headers the application saw",
    )


# ---- tests ----


def test_api_key_header_reaches_app_with_identity():
    with Stack() as st:
        created = st.kw.create_key(environment="production")
        key = created["key"]
        seen = st.get_ok(headers={"API-Key": created["secret"]})
        check_identity(seen, key)
        # The secret itself is not forwarded to the application.
        check("api-key" not in seen, "API-Key forwarded: %r" % seen)
        # Kept-alive connections to keyward: many requests in a row.
        for _ in range(20):
            check_identity(st.get_ok(headers={"API-Key": created["secret"]}), key)


def test_bearer_header_works():
    with Stack() as st:
        created = st.kw.create_key(environment="staging")
        seen = st.get_ok(headers={"Authorization": "Bearer " + created["secret"]})
        check_identity(seen, created["key"])
        check("authorization" not in seen, "Authorization forwarded: %r" % seen)


def test_metadata_reaches_app_base64url():
    with Stack() as st:
        meta = {"plan": "pro", "seats": 12, "beta": True}
        status, _, doc = st.kw.request("POST", "/v1/accounts/%s/keys" % st.kw.account_id,
                                       {"name": "with metadata", "metadata": meta}, root=True)
        eq(status, 201, "create with metadata: %r" % doc)
        seen = st.get_ok(headers={"API-Key": doc["secret"]})
        raw = seen.get("x-keyward-metadata", "")
        check(raw and "=" not in raw, "X-Keyward-Metadata as the application saw it: %r" % seen)
        decoded = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        eq(decoded, meta, "the application decodes the key's metadata")
        # a forged header never reaches the application, with or without metadata
        plain = st.kw.create_key()
        seen = st.get_ok(headers={"API-Key": plain["secret"], "X-Keyward-Metadata": "e30"})
        check("x-keyward-metadata" not in seen, "forged metadata reached the app: %r" % seen)
        seen = st.get_ok(headers={"API-Key": doc["secret"], "X-Keyward-Metadata": "e30"})
        eq(seen.get("x-keyward-metadata"), raw, "keyward's metadata replaces a forged header")


def test_missing_key_is_401_and_app_not_reached():
    with Stack() as st:
        st.refused()
        st.refused(path="/staging/x")
        st.refused(headers={"Authorization": "Basic dXNlcjpwYXNz"})
        st.refused(headers={"Authorization": "Bearer "})
        eq(st.app.hits, 0, "application hits")


def test_invalid_or_malformed_key_is_401():
    with Stack() as st:
        good = st.kw.create_key()["secret"]
        bad = [
            "kw_bad",
            "not-a-key",
            good[:-1] + ("A" if good[-1] != "A" else "B"),  # one character changed
            good + "x",
            "x" * 4000,
            st.kw.root_key,  # a root key is not an API key
        ]
        for value in bad:
            st.refused(headers={"API-Key": value})
            st.refused(headers={"Authorization": "Bearer " + value})
        eq(st.app.hits, 0, "application hits")


def test_forged_identity_headers_never_reach_app():
    with Stack() as st:
        created = st.kw.create_key(environment="production")
        forged = {
            "X-Keyward-Account-Id": "acc_forged",
            "X-Keyward-Key-Id": "key_forged",
            "X-Keyward-Environment": "admin",
            "X-Keyward-Code": "VALID",
            "X-Keyward-Environment-Required": "nothing",
            "X-Keyward-Metadata": "eyJhZG1pbiI6dHJ1ZX0",
        }
        # Without a key: still refused.
        st.refused(headers=forged)
        # With a valid key: the application sees keyward's values only.
        seen = st.get_ok(headers=dict(forged, **{"API-Key": created["secret"]}))
        check_identity(seen, created["key"])
        # Different spelling of the names.
        lower = {k.lower(): v for k, v in forged.items()}
        seen = st.get_ok(headers=dict(lower, **{"api-key": created["secret"]}))
        check_identity(seen, created["key"])
        # Forged headers cannot relax the environment rule either.
        prod = dict(forged, **{"API-Key": created["secret"]})
        prod["X-Keyward-Environment-Required"] = "production"
        st.refused(path="/staging/x", headers=prod)


def test_deleted_key_refused_on_next_request():
    with Stack() as st:
        acc = st.kw.account_id
        for round_ in range(5):
            created = st.kw.create_key(name="round %d" % round_)
            headers = {"API-Key": created["secret"]}
            for _ in range(3):
                st.get_ok(headers=headers)
            status, _, body = st.kw.request(
                "DELETE", "/v1/accounts/%s/keys/%s" % (acc, created["key"]["id"]), root=True
            )
            eq(status, 204, "DELETE key: %r" % (body,))
            for _ in range(10):
                st.refused(headers=headers)
                st.refused(headers={"Authorization": "Bearer " + created["secret"]})


def test_environment_restricted_location():
    with Stack() as st:
        prod = st.kw.create_key(environment="production")
        staging = st.kw.create_key(environment="staging")
        st.refused(path="/staging/deploy", headers={"API-Key": prod["secret"]})
        st.refused(path="/staging/deploy", headers={"Authorization": "Bearer " + prod["secret"]})
        check_identity(st.get_ok("/staging/deploy", {"API-Key": staging["secret"]}), staging["key"])
        # The unrestricted location takes both.
        check_identity(st.get_ok(headers={"API-Key": prod["secret"]}), prod["key"])
        check_identity(st.get_ok(headers={"API-Key": staging["secret"]}), staging["key"])


def test_post_with_body_passes_through():
    with Stack() as st:
        created = st.kw.create_key()
        payload = json.dumps({"items": ["x" * 100] * 200}).encode()  # larger than keyward's body limit
        headers = {"API-Key": created["secret"], "Content-Type": "application/json"}
        status, _, body = st.get(method="POST", headers=headers, body=payload)
        eq(status, 200, "POST via nginx: %r" % (body,))
        check_identity(body["headers"], created["key"])
        eq(st.app.body, payload, "body the application received")
        status, _, _ = st.get(method="POST", headers={"Content-Type": "application/json"}, body=payload)
        eq(status, 401, "POST without a key")
        eq(st.app.hits, 1, "application hits")


def test_keyward_down_fails_closed():
    with Stack() as st:
        created = st.kw.create_key()
        st.get_ok(headers={"API-Key": created["secret"]})
        st.kw.stop()
        body = st.refused(headers={"API-Key": created["secret"]}, want=503)
        eq(body["error"]["code"], "unavailable", "error code")


def test_doc_quotes_the_tested_config():
    with open(TEMPLATE) as f:
        conf = f.read()
    with open(DOC) as f:
        doc = f.read()
    check(
        "```nginx\n" + conf + "```\n" in doc,
        "docs/nginx.md must quote tests/http/nginx.conf.in verbatim in a ```nginx block",
    )


if __name__ == "__main__":
    if not shutil.which(NGINX) and not os.access(NGINX, os.X_OK):
        print("1..1")
        print("not ok 1 - nginx not found at %s: run scripts/deps.sh test" % NGINX)
        sys.exit(1)
    run_tests(globals())
