"""`make soak`: minutes of mixed load against `keyward serve`, watching the
server's memory, descriptors and threads.

    KEYWARD_BIN=build-sanitize/keyward python3 tests/soak/soak.py

scripts/soak.sh builds that binary (AddressSanitizer + UBSan) and sets the
sanitizer options. This script starts it on 127.0.0.1 with a SQLite store
in a temp dir, creates the keys of the load from the first run's root key,
then runs for SOAK_SECONDS, all at once:

- verification: wrk (tests/soak/verify_mix.lua) posting valid, deleted and
  forged keys to /v1/keys/verify and /v1/auth, each answer checked;
- churn: two threads creating and deleting keys in four accounts through
  the root-key API, keeping a ledger of every acknowledged key;
- sign-ins: the console user signing in and out, wrong passwords, and
  guessing that the sign-in limits must answer with 429;
- slow clients: connections that trickle a head or never send, and bursts
  over one client's budget of waiting connections;
- malformed requests: the attacks of tests/http/test_attack.py;
- a prober: GET /healthz every second, /metrics every tenth.

Every INTERVAL_S seconds it reads VmRSS and Threads from /proc/PID/status
and counts /proc/PID/fd, between sign-ins (an argon2id hash maps 64 MiB
for a moment). When the load has stopped, every key in the
ledger must verify (VALID, or NOT_FOUND once deleted), then the server is
stopped with SIGTERM and must exit 0 (LeakSanitizer runs then). It fails
on any unexpected answer, any line on the server's stderr that is not its
JSON log (a sanitizer report is not), a 5xx in that log other than a
sign-in's 503 or the refusal of a transfer coding or HTTP version (501,
505), a server that dies or stops answering, or a bound below.
Prints a table of the samples and one summary line; exits 1 on failure.

Bounds (environment; docs/testing.md says how they were chosen):
  SOAK_RSS_GROWTH_MIB (32)  RSS after the load may exceed the sample at
                            SOAK_WARMUP_S (60) by at most this much
  SOAK_RSS_MAX_MIB (160)    no sample above this
  SOAK_FD_SLACK (0)         descriptors after the load, the store's files
                            aside: at most this many more than before it;
                            the store's files: at most 17 (8 connections)
  SOAK_FD_PEAK (100)        descriptors under load: at most this many more
  threads                   the same in every sample
Other settings: SOAK_SECONDS (600), SOAK_WRK_CONNECTIONS (2).
"""

import http.client
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import soakload
from soakload import Client, Ledger, QuietGate, Stats

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.abspath(os.environ.get("KEYWARD_BIN", "build-sanitize/keyward"))
WRK = os.environ.get("WRK", "wrk")
LUA = os.path.join(HERE, "verify_mix.lua")

INTERVAL_S = 10
SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))
WARMUP_S = int(os.environ.get("SOAK_WARMUP_S", "60"))
RSS_GROWTH_MIB = float(os.environ.get("SOAK_RSS_GROWTH_MIB", "32"))
RSS_MAX_MIB = float(os.environ.get("SOAK_RSS_MAX_MIB", "160"))
FD_SLACK = int(os.environ.get("SOAK_FD_SLACK", "0"))
# The SQLite store pools up to 8 connections (src/store/sqlite.c), opened as
# concurrency asks for them: each holds the database and its WAL open, and
# all share one -shm.
STORE_FDS = 8 * 2 + 1
FD_PEAK = int(os.environ.get("SOAK_FD_PEAK", "100"))
WRK_CONNECTIONS = int(os.environ.get("SOAK_WRK_CONNECTIONS", "2"))
START_TIMEOUT = 60
STOP_TIMEOUT = 120  # SIGTERM to exit, LeakSanitizer's check included


class SoakError(Exception):
    pass


# ---- the server ----


class Server:
    """keyward serve on 127.0.0.1 (a free port), its stderr in a file."""

    def __init__(self, tmp):
        self.log_path = os.path.join(tmp, "server.log")
        self.log = open(self.log_path, "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWARD_")}
        self.data_dir = os.path.join(tmp, "var")
        env["KEYWARD_DATA_DIR"] = self.data_dir
        self.proc = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:0", "--json"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.log, cwd=tmp, env=env)
        self.first_run = self._first_run()
        self.port = self._port()

    def _first_run(self):
        out = b""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.proc.poll() is None:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                out += os.read(self.proc.stdout.fileno(), 65536)
                try:
                    return json.loads(out)
                except ValueError:
                    continue
        raise SoakError("keyward serve printed no first-run document: %r" % out[:200])

    def _port(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.proc.poll() is None:
            with open(self.log_path, "rb") as f:
                for line in f:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    if event.get("event") == "listening":
                        return int(event["detail"].rsplit(":", 1)[1])
            time.sleep(0.1)
        raise SoakError("keyward serve did not listen (exit %s)" % self.proc.poll())

    def sample(self):
        """{"rss": VmRSS in KiB, "fds": open descriptors, "store_fds": those of files in
        the data dir, "threads", "db": bytes of the database and its WAL}, or None when
        the server has exited."""
        pid = self.proc.pid
        try:
            status = {}
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    k, _, v = line.partition(":")
                    status[k] = v.split()
            fd_dir = "/proc/%d/fd" % pid
            fds = store_fds = 0
            for fd in os.listdir(fd_dir):
                fds += 1
                try:
                    store_fds += os.readlink(os.path.join(fd_dir, fd)).startswith(self.data_dir)
                except OSError:
                    pass  # closed in the meantime
            db = sum(os.path.getsize(os.path.join(self.data_dir, f))
                     for f in ("keyward.db", "keyward.db-wal")
                     if os.path.exists(os.path.join(self.data_dir, f)))
            return {"rss": int(status["VmRSS"][0]), "fds": fds, "store_fds": store_fds,
                    "threads": int(status["Threads"][0]), "db": db}
        except (OSError, KeyError):
            return None

    def stop(self):
        """SIGTERM; returns the exit code (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.log.close()


class LogScanner:
    """Reads the server's stderr as it grows: every line must be a JSON log
    line, and no request may have been answered 5xx except a sign-in's 503."""

    def __init__(self, path, stats):
        self.path, self.stats = path, stats
        self.offset = 0
        self.logged = 0  # access log lines (requests)

    def scan(self):
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].splitlines():
            if not line.startswith(b"{"):
                # A sanitizer report: its rules and blank lines say nothing.
                if line.strip(b"= \t"):
                    self.stats.error("server", "stderr: %.300s" % line.decode("utf-8", "replace"))
                continue
            if b'"status":' not in line:
                continue
            self.logged += 1
            if b'"status":5' in line:
                doc = json.loads(line)
                # 501 and 505 refuse a transfer coding or an HTTP version: the
                # gate's answers to the malformed load, which checks them itself.
                refusal = doc["status"] in (501, 505) and doc.get("route") == "unmatched"
                signin = doc["status"] == 503 and doc.get("route") == "/v1/session"
                if not (refusal or signin):
                    self.stats.error("server", "logged %s" % line.decode("utf-8", "replace"))

    def rest(self):
        """Scans what is left, an unfinished last line included."""
        self.scan()
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            tail = f.read()
        if tail.strip():
            self.stats.error("server", "stderr: %.300s" % tail.decode("utf-8", "replace"))


def served(port):
    """The sum of keyward_http_requests_total on GET /metrics, or None."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=soakload.TIMEOUT)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
    except (OSError, http.client.HTTPException):
        return None
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("keyward_http_requests_total{"))


# ---- the keys the load uses ----


def setup(port, first, tmp):
    """Creates the accounts and keys; returns (cases file, churn accounts,
    full account, ledger). Every key created goes into the ledger."""
    root = first["secret"]
    auth = {"Authorization": "Bearer " + root}
    client = Client(port)
    ledger = Ledger()

    def call(want, method, path, body=None):
        status, _, doc = client.request(method, path, body, auth)
        if status != want:
            raise SoakError("setup: %s %s: %d %r" % (method, path, status, doc))
        return doc

    def account(name):
        return call(201, "POST", "/v1/accounts", {"name": name})["id"]

    def key(acc, env):
        doc = call(201, "POST", "/v1/accounts/%s/keys" % acc, {"name": "soak", "environment": env})
        ledger.created(doc)
        return doc["secret"]

    cases = []
    stable = [first["account"]["id"]] + [account("soak stable %d" % i) for i in range(3)]
    full = account("soak full")
    for acc, n in [(a, 20) for a in stable] + [(full, 25)]:
        for i in range(n):
            env = "staging" if i % 3 == 0 else "production"
            other = "production" if env == "staging" else "staging"
            secret = key(acc, env)
            cases += ["VALID verify %s" % secret, "VALID auth %s" % secret,
                      "VALID verify %s %s" % (secret, env),
                      "ENVIRONMENT_MISMATCH verify %s %s" % (secret, other),
                      "ENVIRONMENT_MISMATCH auth %s %s" % (secret, other)]
    gone = account("soak deleted")
    for i in range(20):
        doc = call(201, "POST", "/v1/accounts/%s/keys" % gone, {"name": "soak gone"})
        ledger.created(doc)
        call(204, "DELETE", "/v1/accounts/%s/keys/%s" % (gone, doc["key"]["id"]))
        ledger.deleted(doc["key"]["id"])
        cases += ["NOT_FOUND verify %s" % doc["secret"], "NOT_FOUND auth %s" % doc["secret"]]
    for i in range(40):
        forged = soakload.forged_key(random.choice(("production", "staging")))
        cases += ["NOT_FOUND verify %s" % forged, "NOT_FOUND auth %s" % forged]
    for i in range(20):
        forged = soakload.forged_key(checksum_ok=False)
        cases += ["MALFORMED verify %s" % forged, "MALFORMED auth %s" % forged]
    cases += ["NOT_FOUND verify %s" % root, "MALFORMED verify not-a-key",
              "MALFORMED auth kw_production_short", "MALFORMED verify kw_PRODUCTION_" + "A" * 49]
    churn = [account("soak churn %d" % i) for i in range(4)]
    client.close()
    random.shuffle(cases)
    path = os.path.join(tmp, "cases.txt")
    with open(path, "w") as f:
        f.write("\n".join(cases) + "\n")
    return path, churn, full, ledger


def check_ledger(port, root, ledger, accounts, stats, threads=4):
    """Every acknowledged key verifies VALID, every deleted one NOT_FOUND,
    and each churned account lists exactly its ledger's active keys."""
    keys = sorted(ledger.snapshot().items())

    def work(part):
        client = Client(port)
        for key_id, k in part:
            if k["deleted"] is None:
                continue  # its delete got no answer: an error already
            want = "NOT_FOUND" if k["deleted"] else "VALID"
            r = soakload._call(client, stats, "ledger", (200,), "POST", "/v1/keys/verify",
                               {"key": k["secret"]})
            if r and (r[2].get("code") != want or (want == "VALID" and r[2]["key_id"] != key_id)):
                stats.error("ledger", "%s: %r, want %s" % (key_id, r[2], want))
        client.close()

    workers = [threading.Thread(target=work, args=(keys[i::threads],)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    client = Client(port)
    for acc in accounts:
        if acc in ledger.unsure:
            continue
        r = soakload._call(client, stats, "ledger", (200,), "GET", "/v1/accounts/%s/keys" % acc,
                           headers={"Authorization": "Bearer " + root})
        if r:
            soakload.compare_list(stats, "ledger", acc, r[2], ledger.active(acc))
    client.close()
    return (sum(1 for _, k in keys if k["deleted"] is False),
            sum(1 for _, k in keys if k["deleted"]))


# ---- the run ----


def run_wrk(port, cases, out_path):
    out = open(out_path, "wb")
    proc = subprocess.Popen([WRK, "-t%d" % WRK_CONNECTIONS, "-c%d" % WRK_CONNECTIONS,
                             "-d%ds" % SECONDS, "--timeout", "5s", "-s", LUA,
                             "http://127.0.0.1:%d" % port, "--", cases],
                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    return proc


def wrk_result(proc, out_path, stats):
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        stats.error("verify", "wrk did not stop")
    text = open(out_path, "rb").read().decode("utf-8", "replace")
    for line in text.splitlines():
        if line.startswith("KWSOAK "):
            r = json.loads(line[len("KWSOAK "):])
            stats.count("verify", r["requests"])
            errs = {k: v for k, v in r.items() if k.startswith("err_") and v}
            if r["bad"]:
                stats.error("verify", "%d wrong answers, the first: %s" % (r["bad"], r["first_bad"]))
            if errs:
                stats.error("verify", "wrk socket errors: %s" % errs)
            return r
    stats.error("verify", "wrk printed no figures (exit %s): %s" % (proc.returncode, text[-500:]))
    return None


def mib(kib):
    return kib / 1024.0


def check_bounds(samples):
    """The bounds of the module docstring: (figures for the report, text of each failure)."""
    failures = []
    start, end = samples[0], samples[-1]
    under_load = [s for s in samples if s["phase"] == "load"]
    warm = next((s for s in under_load if s["t"] >= WARMUP_S), under_load[-1] if under_load else start)
    peak = max(samples, key=lambda s: s["rss"])
    growth = end["rss"] - warm["rss"]
    if mib(peak["rss"]) > RSS_MAX_MIB:
        failures.append("RSS %.1f MiB at %ds is over SOAK_RSS_MAX_MIB=%g"
                        % (mib(peak["rss"]), peak["t"], RSS_MAX_MIB))
    if mib(growth) > RSS_GROWTH_MIB:
        failures.append("RSS grew %.1f MiB from %ds to the end, over SOAK_RSS_GROWTH_MIB=%g"
                        % (mib(growth), warm["t"], RSS_GROWTH_MIB))
    others = lambda s: s["fds"] - s["store_fds"]  # noqa: E731
    if others(end) > others(start) + FD_SLACK:
        failures.append("%d descriptors other than the store's open after the load, %d before "
                        "(SOAK_FD_SLACK=%d)" % (others(end), others(start), FD_SLACK))
    if end["store_fds"] > STORE_FDS:
        failures.append("%d descriptors of the store's files open after the load (at most %d)"
                        % (end["store_fds"], STORE_FDS))
    fd_peak = max(s["fds"] for s in samples)
    if fd_peak > start["fds"] + FD_PEAK:
        failures.append("%d descriptors open under load, %d before (SOAK_FD_PEAK=%d)"
                        % (fd_peak, start["fds"], FD_PEAK))
    threads = sorted(set(s["threads"] for s in samples))
    if len(threads) > 1:
        failures.append("the thread count changed: %s" % threads)
    figures = {"start": start, "end": end, "warm": warm, "peak": peak, "growth": growth,
               "fd_peak": fd_peak, "threads": threads}
    return figures, failures


def report(samples, stats, f, wrk, ledger_counts, failures, log_lines):
    print("\n%6s  %-6s %8s %5s %6s %8s %7s %10s"
          % ("time", "phase", "RSS MiB", "fds", "store", "threads", "db MiB", "served"))
    for s in samples:
        print("%5ds  %-6s %8.1f %5d %6d %8d %7.1f %10s"
              % (s["t"], s["phase"], mib(s["rss"]), s["fds"], s["store_fds"], s["threads"],
                 s["db"] / 1048576.0, s["served"] if s["served"] is not None else "-"))
    with stats.lock:
        kinds = ", ".join("%s %d" % kv for kv in sorted(stats.requests.items()))
        answers = ", ".join("%s: %d" % kv for kv in sorted(stats.answers.items()))
    print("\nrequests: %s; the server logged %d" % (kinds, log_lines))
    if answers:
        print("answers allowed by the limits: %s" % answers)
    if wrk:
        print("wrk verification: %d requests, p50 %.2f ms, p99 %.2f ms, max %.1f ms"
              % (wrk["requests"], wrk["p50_us"] / 1e3, wrk["p99_us"] / 1e3, wrk["max_us"] / 1e3))
    if ledger_counts:
        print("ledger: %d keys VALID, %d deleted keys NOT_FOUND (checked after the load)"
              % ledger_counts)
    print("bounds: RSS at most %g MiB, and at most +%g MiB from %ds to the end; after the load, "
          "descriptors +%d besides the store's and at most %d of the store; under load +%d; "
          "threads constant" % (RSS_MAX_MIB, RSS_GROWTH_MIB, f["warm"]["t"], FD_SLACK, STORE_FDS,
                                FD_PEAK))
    for e in stats.first_errors:
        print("error: %s" % e)
    if stats.errors:
        print("errors by kind of load (the first %d of each above): %s"
              % (soakload.ERRORS_KEPT,
                 ", ".join("%s %d" % kv for kv in sorted(stats.errors_by_kind.items()))))
    for failure in failures:
        print("bound: %s" % failure)
    print("soak: %d requests, %d errors, RSS start/peak/end %.1f/%.1f/%.1f MiB (%+.1f from %ds), "
          "fds start/peak/end %d/%d/%d, threads %s%s"
          % (stats.total(), stats.errors, mib(f["start"]["rss"]), mib(f["peak"]["rss"]),
             mib(f["end"]["rss"]), mib(f["growth"]), f["warm"]["t"],
             f["start"]["fds"], f["fd_peak"], f["end"]["fds"],
             "/".join(map(str, f["threads"])),
             "" if not failures and not stats.errors else " - FAILED"))


def soak(tmp):
    stats = Stats()
    server = Server(tmp)
    try:
        return soak_with(server, tmp, stats)
    finally:
        server.close()


def soak_with(server, tmp, stats):
    wrk = []
    try:
        return run_load(server, tmp, stats, wrk)
    finally:
        for proc in wrk:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def run_load(server, tmp, stats, wrk_procs):
    port, first = server.port, server.first_run
    root = first["secret"]
    scanner = LogScanner(server.log_path, stats)
    t0 = time.monotonic()
    cases, churn_accounts, full, ledger = setup(port, first, tmp)
    print("soak: keyward serve (%s) on 127.0.0.1:%d, pid %d; %d keys and %d verification cases "
          "set up in %.1f s; %d s of load, a sample every %d s"
          % (os.path.relpath(BIN), port, server.proc.pid, len(ledger.snapshot()),
             sum(1 for _ in open(cases)), time.monotonic() - t0, SECONDS, INTERVAL_S), flush=True)

    samples = []
    gate = QuietGate()

    def take(t, phase):
        gate.quiet()
        try:
            s = server.sample()
        finally:
            gate.done()
        if s is None:
            stats.error("server", "exited with %s at %ds" % (server.proc.poll(), t))
            return False
        s.update(t=t, phase=phase, served=served(port))
        samples.append(s)
        scanner.scan()
        print("  %4ds %-6s RSS %6.1f MiB, %3d fds (%d of the store), %2d threads, %d errors"
              % (t, phase, mib(s["rss"]), s["fds"], s["store_fds"], s["threads"], stats.errors),
              flush=True)
        return True

    take(0, "before")
    stop = threading.Event()
    soakload.start_clock()
    latencies = []
    workers = [
        threading.Thread(target=soakload.churn,
                         args=(port, root, churn_accounts[:2], full, ledger, stats, stop)),
        threading.Thread(target=soakload.churn,
                         args=(port, root, churn_accounts[2:], full, ledger, stats, stop)),
        threading.Thread(target=soakload.signin_admin,
                         args=(port, first["password"], stats, gate, stop)),
        threading.Thread(target=soakload.signin_guessing, args=(port, stats, gate, stop)),
        threading.Thread(target=soakload.slow_clients, args=(port, stats, stop)),
        threading.Thread(target=soakload.malformed, args=(port, stats, stop)),
        threading.Thread(target=soakload.health, args=(port, stats, stop, latencies)),
    ]
    wrk_out = os.path.join(tmp, "wrk.out")
    load_start = time.monotonic()
    wrk = run_wrk(port, cases, wrk_out)
    wrk_procs.append(wrk)
    for w in workers:
        w.daemon = True
        w.start()
    alive = True
    t = 0
    while alive and t < SECONDS:
        t = min(t + INTERVAL_S, SECONDS)
        time.sleep(max(0, load_start + t - time.monotonic()))
        alive = take(t, "load")
    stop.set()
    for w in workers:
        w.join(timeout=30)
        if w.is_alive():
            stats.error("load", "%s did not stop" % w._target.__name__)
    wrk_figures = wrk_result(wrk, wrk_out, stats)
    ledger_counts = None
    if alive:
        # The slow clients are gone: the server holds only its own descriptors again.
        time.sleep(INTERVAL_S)
        alive = take(int(time.monotonic() - load_start), "after")
    if alive:
        ledger_counts = check_ledger(port, root, ledger, churn_accounts + [full], stats)
        rc = server.stop()
        if rc != 0:
            stats.error("server", "exit code %s after SIGTERM" % rc)
    scanner.rest()
    if latencies:
        print("GET /healthz: %d probes, slowest %.0f ms" % (len(latencies), max(latencies) * 1e3))
    figures, failures = check_bounds(samples)
    report(samples, stats, figures, wrk_figures, ledger_counts, failures, scanner.logged)
    return 1 if failures or stats.errors else 0


def main():
    if not os.access(BIN, os.X_OK):
        raise SoakError("%s not found (scripts/soak.sh builds it)" % BIN)
    if not shutil.which(WRK):
        raise SoakError("wrk not found: scripts/deps.sh soak installs it")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_signal)
    tmp = tempfile.mkdtemp(prefix="keyward-soak-")
    rc = 1
    try:
        rc = soak(tmp)
    finally:
        if rc == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("soak: the server's log and data are kept in %s" % tmp)
    return rc


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SoakError as e:
        print("soak: %s" % e, file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
        sys.exit(130)
