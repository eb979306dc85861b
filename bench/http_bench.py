"""HTTP part of `make bench`: wrk against `keyward serve` and against nginx
answering a constant, in the same run, with the same wrk settings.

    python3 bench/http_bench.py BUILD_DIR

Starts keyward on a fresh data dir in a temp dir (access log ON, written to
a file there), creates BENCH_HTTP_KEYS (10000) valid keys, and runs wrk with
bench/http_verify.lua: POST /v1/keys/verify {"key": ...} rotating through all
keys. Then nginx (worker_processes auto, access_log off, keep-alive) answers
the same requests with `return 200 '{"valid":true}'`. Extra lines: keyward
with KEYWARD_ACCESS_LOG=off, and GET /v1/auth with API-Key.

PostgreSQL: when KEYWARD_TEST_STORE_URL names a PostgreSQL server
(scripts/bench.sh runs this script under scripts/pg.sh, a throwaway cluster
on 127.0.0.1), a second keyward runs with --store postgres://... on a fresh
database there, gets the same number of keys, and its verify rounds
alternate with rounds of the SQLite keyward, same wrk settings, access log on
in both. Without that variable the PostgreSQL part is left out.

Sign-in flood: on the same SQLite keyward, verify rounds alternate between
rounds with and without a flood of failed console sign-ins (FLOOD_CONNECTIONS
connections, each sign-in from a random address of 127.0.0.0/8 for a random
email, so that no sign-in limit applies); their throughput and p99 are
printed as ratios of flooded to flood-free rounds, with the password checks
the flood caused. Each flooded round ends once every sign-in sent has its
answer, so that no check spills into the next round.

Prints a table and the keyward/nginx and PostgreSQL/SQLite ratios. Every keyward answer must be
200 and VALID (204 for /v1/auth); any other answer is counted, printed, and
makes the script exit 1. Everything runs on 127.0.0.1 and is stopped and
removed at the end, also on errors and SIGINT/SIGTERM.

Settings (environment): BENCH_HTTP_KEYS (10000), BENCH_HTTP_SECONDS (8) per round,
BENCH_HTTP_ROUNDS (2, keyward and nginx alternate),
BENCH_HTTP_EXTRA_SECONDS (5), BENCH_WRK_THREADS (1), BENCH_WRK_CONNECTIONS (32).
"""

import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LUA = os.path.join(HERE, "http_verify.lua")
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
WRK = os.environ.get("WRK", "wrk")
PG_SERVER = os.environ.get("KEYWARD_TEST_STORE_URL") or None

KEYS = int(os.environ.get("BENCH_HTTP_KEYS", "10000"))
SECONDS = int(os.environ.get("BENCH_HTTP_SECONDS", "8"))
ROUNDS = int(os.environ.get("BENCH_HTTP_ROUNDS", "2"))
EXTRA_SECONDS = int(os.environ.get("BENCH_HTTP_EXTRA_SECONDS", "5"))
WRK_THREADS = int(os.environ.get("BENCH_WRK_THREADS", "1"))
WRK_CONNECTIONS = int(os.environ.get("BENCH_WRK_CONNECTIONS", "32"))
CREATE_THREADS = 8
START_TIMEOUT = 30
FLOOD_CONNECTIONS = 8

NGINX_CONF = """daemon off;
%(user)s
worker_processes %(workers)s;
pid %(dir)s/nginx.pid;
error_log %(dir)s/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %(dir)s/client_body;
    proxy_temp_path %(dir)s/proxy;
    fastcgi_temp_path %(dir)s/fastcgi;
    uwsgi_temp_path %(dir)s/uwsgi;
    scgi_temp_path %(dir)s/scgi;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:%(port)d;
        location = /v1/keys/verify {
            default_type application/json;
            return 200 '{"valid":true}';
        }
    }
}
"""


class BenchError(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError("%s exited with %s before listening" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError("%s did not listen on 127.0.0.1:%d within %d s" % (what, port, START_TIMEOUT))


def stop(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Keyward:
    def __init__(self, binary, tmp, name, env=None, args=(), data_dir="var"):
        self.dir = tmp
        self.port = free_port()
        self.log_path = os.path.join(tmp, name + ".log")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWARD_")}
        full_env["KEYWARD_DATA_DIR"] = os.path.join(tmp, data_dir)
        full_env.update(env or {})
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:%d" % self.port, "--json",
             "--max-keys-per-account", str(max(KEYS, 25))] + list(args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=full_env,
            cwd=tmp,
        )
        wait_port(self.port, self.proc, "keyward serve")

    def first_run(self):
        """The first run's JSON document (printed before the server listens)."""
        out = b""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
            try:
                return json.loads(out)
            except ValueError:
                continue
        raise BenchError("keyward printed no first-run document: %r" % out[:200])

    def stop(self):
        stop(self.proc)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()


def create_keys(port, root, account, count):
    """Creates count keys in account with CREATE_THREADS kept-alive connections."""
    keys = []
    lock = threading.Lock()
    errors = []
    per = [count // CREATE_THREADS + (1 if i < count % CREATE_THREADS else 0)
           for i in range(CREATE_THREADS)]

    def work(n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = json.dumps({"name": "bench"})
        headers = {"Authorization": "Bearer " + root, "Content-Type": "application/json"}
        try:
            for _ in range(n):
                conn.request("POST", "/v1/accounts/%s/keys" % account, body, headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 201:
                    raise BenchError("create key: %d %r" % (resp.status, data[:200]))
                secret = json.loads(data)["secret"]
                with lock:
                    keys.append(secret)
        except Exception as e:  # reported by the main thread
            errors.append(e)
        finally:
            conn.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in per]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise BenchError("creating keys failed: %s" % errors[0])
    return keys


def wrk(port, keys_file, mode, seconds):
    """One wrk run; returns the KWBENCH figures as a dict."""
    args = [WRK, "-t%d" % WRK_THREADS, "-c%d" % WRK_CONNECTIONS, "-d%ds" % seconds,
            "--timeout", "5s", "-s", LUA, "http://127.0.0.1:%d" % port, "--", keys_file, mode]
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=seconds + 30)
    out = proc.stdout.decode("utf-8", "replace")
    for line in out.splitlines():
        if line.startswith("KWBENCH "):
            r = json.loads(line[len("KWBENCH "):])
            r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
            r["errors"] = sum(r[k] for k in r if k.startswith("err_"))
            return r
    raise BenchError("wrk printed no figures (exit %d):\n%s" % (proc.returncode, out))


class SignInFlood:
    """FLOOD_CONNECTIONS threads of failed sign-ins, one per connection, each
    from a random 127.0.0.0/8 address for a random email, while on is set."""

    def __init__(self, port):
        self.port = port
        self.on = threading.Event()
        self.quit = threading.Event()
        self.lock = threading.Lock()
        self.busy = 0
        self.answers = {}
        self.threads = [threading.Thread(target=self._work, daemon=True)
                        for _ in range(FLOOD_CONNECTIONS)]
        for t in self.threads:
            t.start()

    def _one(self):
        source = "127.%d.%d.%d" % (random.randint(1, 254), random.randint(0, 255),
                                   random.randint(1, 254))
        body = json.dumps({"email": "flood-%016x@example.com" % random.getrandbits(64),
                           "password": "wrong password"})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60,
                                          source_address=(source, 0))
        try:
            conn.request("POST", "/v1/session", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            return resp.status
        except OSError as e:
            return type(e).__name__
        finally:
            conn.close()

    def _work(self):
        while not self.quit.is_set():
            if not self.on.wait(0.1):
                continue
            with self.lock:
                self.busy += 1
            status = self._one()
            with self.lock:
                self.busy -= 1
                self.answers[status] = self.answers.get(status, 0) + 1

    def pause(self):
        """Stops sending; returns once every sign-in sent has its answer (60 s at most)."""
        self.on.clear()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with self.lock:
                if self.busy == 0:
                    return
            time.sleep(0.02)
        raise BenchError("flood sign-ins still unanswered after 60 s")

    def stop(self):
        self.on.clear()
        self.quit.set()
        for t in self.threads:
            t.join(timeout=90)


def password_checks(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        for line in conn.getresponse().read().decode().splitlines():
            if line.startswith("keyward_password_checks_total "):
                return int(line.split()[1])
    finally:
        conn.close()
    raise BenchError("no keyward_password_checks_total in /metrics")


def flood_rounds(port, keys_file, results):
    """Verify rounds without and with a sign-in flood, ABBA; returns
    (password checks the flood caused, its answers by status)."""
    flood = SignInFlood(port)
    checks = 0
    try:
        for r, flooded in enumerate([False, True, True, False] * max(1, ROUNDS // 2), 1):
            if flooded:
                before = password_checks(port)
                flood.on.set()
                time.sleep(0.3)
            figures = wrk(port, keys_file, "verify", EXTRA_SECONDS)
            if flooded:
                flood.pause()
                checks += password_checks(port) - before
            results.append(("keyward verify, %s #%d" % ("sign-in flood" if flooded
                                                        else "no flood", r), figures, True))
    finally:
        flood.stop()
    return checks, flood.answers


def create_pg_database(server, name):
    """Creates database name on the PostgreSQL server URL; returns its URL."""
    proc = subprocess.run(["psql", server + "/postgres", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                           "-c", "CREATE DATABASE %s" % name],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=60)
    if proc.returncode != 0:
        raise BenchError("creating the PostgreSQL database: %s"
                         % proc.stdout.decode("utf-8", "replace"))
    return "%s/%s" % (server, name)


def setup_keyward(kw, tmp, name):
    """Creates KEYS keys on kw; returns (keys file, seconds it took)."""
    first = kw.first_run()
    t0 = time.monotonic()
    keys = create_keys(kw.port, first["secret"], first["account"]["id"], KEYS)
    setup_s = time.monotonic() - t0
    keys_file = os.path.join(tmp, name)
    with open(keys_file, "w") as f:
        f.write("\n".join(keys) + "\n")
    return keys_file, setup_s


def ms(us):
    return "%.2f ms" % (us / 1000.0)


def start_nginx(tmp, conf_name, workers):
    """nginx answering the bench requests with a constant; returns (process, port)."""
    port = free_port()
    conf = os.path.join(tmp, conf_name)
    with open(conf, "w") as f:
        f.write(NGINX_CONF % {"dir": tmp, "port": port, "workers": workers,
                              "user": "user root;" if os.geteuid() == 0 else ""})
    proc = subprocess.Popen([NGINX, "-p", tmp, "-c", conf], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc, "nginx")
    except BaseException:
        stop(proc)
        raise
    return proc, port


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    binary = os.path.abspath(os.path.join(build, "keyward"))
    for what, path in (("keyward", binary), ("nginx", NGINX)):
        if not os.access(path, os.X_OK):
            raise BenchError("%s not found at %s (run `make build`, scripts/deps.sh bench)"
                             % (what, path))
    if not shutil.which(WRK):
        raise BenchError("wrk not found: scripts/deps.sh bench installs it")

    tmp = tempfile.mkdtemp(prefix="keyward-bench-")
    procs = []

    def on_signal(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_signal)
    results = []
    try:
        # ---- keyward, access log on (to a file) ----
        kw = Keyward(binary, tmp, "access")
        procs.append(kw)
        keys_file, setup_s = setup_keyward(kw, tmp, "keys.txt")
        print("setup: %d keys created over HTTP in %.1f s; wrk -t%d -c%d, %d s a round; "
              "%d CPUs shared by wrk and the server (keyward --threads = CPUs, nginx "
              "worker_processes auto)"
              % (KEYS, setup_s, WRK_THREADS, WRK_CONNECTIONS, SECONDS, os.cpu_count()),
              flush=True)

        # nginx runs from here on, idle while keyward is measured and back.
        ngx, port = start_nginx(tmp, "nginx.conf", "auto")
        procs.append(ngx)

        # Alternate keyward and nginx rounds, so that a slow moment of a shared
        # machine does not land on one target only.
        wrk(kw.port, keys_file, "verify", 1)  # warm-up
        wrk(port, keys_file, "verify", 1)
        for r in range(1, ROUNDS + 1):
            results.append(("keyward POST /v1/keys/verify #%d" % r,
                            wrk(kw.port, keys_file, "verify", SECONDS), True))
            results.append(("nginx return 200 #%d" % r,
                            wrk(port, keys_file, "verify", SECONDS), False))
        stop(ngx)
        results.append(("keyward GET /v1/auth", wrk(kw.port, keys_file, "auth",
                                                       EXTRA_SECONDS), True))
        flood_checks, flood_answers = flood_rounds(kw.port, keys_file, results)

        # ---- keyward on PostgreSQL, rounds alternating with SQLite ----
        if PG_SERVER:
            url = create_pg_database(PG_SERVER, "kwbench")
            pg = Keyward(binary, tmp, "postgres", args=["--store", url], data_dir="pg-var")
            procs.append(pg)
            pg_keys, pg_setup_s = setup_keyward(pg, tmp, "keys-pg.txt")
            print("setup: %d keys created over HTTP on PostgreSQL in %.1f s (a throwaway "
                  "cluster of scripts/pg.sh on 127.0.0.1, fsync off, on the same CPUs as "
                  "wrk and keyward)" % (KEYS, pg_setup_s), flush=True)
            wrk(pg.port, pg_keys, "verify", 1)  # warm-up: the pool fills
            for r in range(1, ROUNDS + 1):
                results.append(("keyward SQLite verify #%d" % r,
                                wrk(kw.port, keys_file, "verify", SECONDS), True))
                results.append(("keyward PostgreSQL verify #%d" % r,
                                wrk(pg.port, pg_keys, "verify", SECONDS), True))
            pg.stop()
        else:
            print("PostgreSQL: left out (KEYWARD_TEST_STORE_URL is not set; scripts/bench.sh "
                  "sets it with scripts/pg.sh)", flush=True)
        kw.stop()
        log_lines = sum(1 for _ in open(kw.log_path, "rb"))

        # ---- keyward, access log off, same data dir ----
        kw = Keyward(binary, tmp, "nolog", {"KEYWARD_ACCESS_LOG": "off"})
        procs.append(kw)
        wrk(kw.port, keys_file, "verify", 1)
        results.append(("keyward verify, access log off", wrk(kw.port, keys_file, "verify",
                                                                 EXTRA_SECONDS), True))
        kw.stop()

        # ---- one core each: keyward --threads 1 against nginx worker_processes 1 ----
        # With every CPU busy, a server thread preempted by wrk holds up its
        # connections for a scheduler slice; giving each server one core shows
        # the latency without that contention, like for like.
        kw = Keyward(binary, tmp, "one-core", args=["--threads", "1"])
        procs.append(kw)
        ngx1, port1 = start_nginx(tmp, "nginx-one.conf", "1")
        procs.append(ngx1)
        wrk(kw.port, keys_file, "verify", 1)
        wrk(port1, keys_file, "verify", 1)
        for r in range(1, ROUNDS + 1):
            results.append(("keyward --threads 1 verify #%d" % r,
                            wrk(kw.port, keys_file, "verify", SECONDS), True))
            results.append(("nginx 1 worker #%d" % r,
                            wrk(port1, keys_file, "verify", SECONDS), False))
        stop(ngx1)
        kw.stop()
    finally:
        for p in procs:
            if isinstance(p, Keyward):
                p.stop()
            else:
                stop(p)
        shutil.rmtree(tmp, ignore_errors=True)

    # ---- report ----
    print()
    print("%-32s %10s %10s %10s %9s %8s %7s" % ("target", "req/s", "p50", "p99", "requests",
                                               "not-ok", "errors"))
    for name, r, is_kw in results:
        # The reference's constant body has no "VALID": only its status counts.
        not_ok = r["bad_status"] + (r["not_valid"] if is_kw else 0)
        print("%-32s %10.0f %10s %10s %9d %8d %7d"
              % (name, r["rps"], ms(r["p50_us"]), ms(r["p99_us"]), r["requests"], not_ok,
                 r["errors"]))
    kw_rounds = [r for n, r, _ in results if n.startswith("keyward POST")]
    ngx_rounds = [r for n, r, _ in results if n.startswith("nginx")]
    kw_rps = sum(r["rps"] for r in kw_rounds) / len(kw_rounds)
    ngx_rps = sum(r["rps"] for r in ngx_rounds) / len(ngx_rounds)
    kw_p99 = sum(r["p99_us"] for r in kw_rounds) / len(kw_rounds)
    ngx_p99 = sum(r["p99_us"] for r in ngx_rounds) / len(ngx_rounds)
    tput = kw_rps / ngx_rps
    p99 = kw_p99 / max(ngx_p99, 1)
    print()
    print("mean of %d rounds: keyward %.0f req/s, p99 %s; nginx %.0f req/s, p99 %s"
          % (ROUNDS, kw_rps, ms(kw_p99), ngx_rps, ms(ngx_p99)))
    for i, (k, n) in enumerate(zip(kw_rounds, ngx_rounds), 1):
        print("round %d: throughput ratio %.2f, p99 ratio %.2f"
              % (i, k["rps"] / n["rps"], k["p99_us"] / max(n["p99_us"], 1)))
    print("keyward/nginx throughput: %.2f   (target >= 0.60)  %s"
          % (tput, "ok" if tput >= 0.6 else "MISSED"))
    print("keyward/nginx p99:        %.2f   (target <= 1.50)  %s"
          % (p99, "ok" if p99 <= 1.5 else "MISSED"))
    one_kw = [r for n, r, _ in results if n.startswith("keyward --threads 1")]
    one_ngx = [r for n, r, _ in results if n.startswith("nginx 1 worker")]
    if one_kw and one_ngx:
        t1 = (sum(r["rps"] for r in one_kw) / len(one_kw)) / (
            sum(r["rps"] for r in one_ngx) / len(one_ngx))
        p1 = (sum(r["p99_us"] for r in one_kw) / len(one_kw)) / max(
            sum(r["p99_us"] for r in one_ngx) / len(one_ngx), 1)
        print("one core each (keyward --threads 1, nginx 1 worker): throughput %.2f  %s, "
              "p99 %.2f  %s" % (t1, "ok" if t1 >= 0.6 else "MISSED", p1,
                                "ok" if p1 <= 1.5 else "MISSED"))
    sq_rounds = [r for n, r, _ in results if n.startswith("keyward SQLite verify")]
    pg_rounds = [r for n, r, _ in results if n.startswith("keyward PostgreSQL verify")]
    if pg_rounds:
        def mean(rounds, what):
            return sum(r[what] for r in rounds) / len(rounds)

        print("mean of %d rounds: keyward on SQLite %.0f req/s, p50 %s, p99 %s; on PostgreSQL "
              "%.0f req/s, p50 %s, p99 %s"
              % (ROUNDS, mean(sq_rounds, "rps"), ms(mean(sq_rounds, "p50_us")),
                 ms(mean(sq_rounds, "p99_us")), mean(pg_rounds, "rps"),
                 ms(mean(pg_rounds, "p50_us")), ms(mean(pg_rounds, "p99_us"))))
        print("PostgreSQL/SQLite throughput: %.2f   p50: %.2f   p99: %.2f"
              % (mean(pg_rounds, "rps") / mean(sq_rounds, "rps"),
                 mean(pg_rounds, "p50_us") / max(mean(sq_rounds, "p50_us"), 1),
                 mean(pg_rounds, "p99_us") / max(mean(sq_rounds, "p99_us"), 1)))
    clean = [r for n, r, _ in results if n.startswith("keyward verify, no flood")]
    flooded = [r for n, r, _ in results if n.startswith("keyward verify, sign-in flood")]
    if clean and flooded:
        def median(rounds, what):
            return statistics.median(r[what] for r in rounds)

        print("sign-in flood (%d connections, random emails from random 127.x addresses, "
              "defaults: 1 password-check thread at SCHED_IDLE, 1 check/s): %d password checks, "
              "answers %r" % (FLOOD_CONNECTIONS, flood_checks, flood_answers))
        ft = median(flooded, "rps") / median(clean, "rps")
        fp = median(flooded, "p99_us") / max(median(clean, "p99_us"), 1)
        print("verification with/without the flood (medians): throughput %.2f  (target >= 0.80)  "
              "%s, p99 %.2f  (target <= 2.00)  %s"
              % (ft, "ok" if ft >= 0.8 else "MISSED", fp, "ok" if fp <= 2.0 else "MISSED"))
    print("access log lines written during the logged runs: %d" % log_lines)

    bad = [(n, r) for n, r, is_kw in results if is_kw and (r["bad_status"] or r["not_valid"]
                                                            or r["errors"])]
    for n, r in bad:
        print("!!! %s: %d answers with the wrong status, %d without VALID, %d socket errors "
              "- THESE FIGURES ARE NOT VERIFICATIONS OF VALID KEYS"
              % (n, r["bad_status"], r["not_valid"], r["errors"]))
    if not bad:
        print("every keyward answer was 200 VALID (204 for /v1/auth)")
    return 1 if bad else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print("bench: %s" % e, file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        sys.exit(130)
