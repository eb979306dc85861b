"""Instructions per request of the HTTP verify path, under callgrind.

    python3 bench/profile.py BUILD_DIR [keyward|trivial|both]

Starts `keyward serve --threads 1` (a fresh data dir, access log on, to a
file) and/or bench's trivial_server under valgrind --tool=callgrind,
creates PROFILE_KEYS (200) keys, zeroes the counters, runs wrk -t1 -c4
with bench/http_verify.lua for PROFILE_SECONDS (10) on valid keys (or on
forged ones: PROFILE_MODE=forged), dumps, and prints the
instructions counted in the server's user space per answered request, then
the functions that cost the most (inclusive, per request).

Instruction counts do not depend on how busy the machine is, unlike
wall-clock figures: this is how to compare two versions of the request
path on a shared machine. Kernel time (system calls) is not counted.
The callgrind files are left in PROFILE_OUT (a temp dir) for
callgrind_annotate or kcachegrind.
"""

import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import http_bench  # noqa: E402

KEYS = int(os.environ.get("PROFILE_KEYS", "200"))
SECONDS = int(os.environ.get("PROFILE_SECONDS", "10"))
MODE = os.environ.get("PROFILE_MODE", "verify")  # verify (valid keys) or forged
SHAPE = (1, 4)
CALLGRIND = ["valgrind", "--tool=callgrind", "--dump-instr=no", "--collect-jumps=no"]


def control(pid, *args):
    subprocess.run(["callgrind_control"] + list(args) + [str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


def annotate(out_file, requests, top):
    """(total instructions, the top inclusive rows, {function: inclusive instructions})."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", out_file],
                          stdout=subprocess.PIPE, check=True).stdout.decode("utf-8", "replace")
    total = None
    rows = []
    by_name = {}
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+PROGRAM TOTALS", line)
        if m:
            total = int(m.group(1).replace(",", ""))
            continue
        m = re.match(r"\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+\S*:(\S+)", line)
        if m:
            n = int(m.group(1).replace(",", ""))
            by_name[m.group(3)] = max(n, by_name.get(m.group(3), 0))
            if len(rows) < top:
                rows.append((n / requests, m.group(3)))
    return total, rows, by_name


# Where a request's instructions go: libmicrohttpd zeroing its connection
# memory for each request, the key service (src/core, src/store), work of
# background threads that does not scale with requests, and the rest (the
# HTTP layer and libmicrohttpd).
PARTS = [("memory pool zeroed by libmicrohttpd", ["__memset_avx2_unaligned_erms"]),
         ("kw_service_key_verify (core and store)", ["kw_service_key_verify"]),
         ("background (last-used flush, access log flush)", ["on_flush_timer", "flusher"])]


def measure(name, proc, port, keys_file, out_file, top):
    http_bench.wrk(port, keys_file, MODE, 2, SHAPE)  # warm-up
    control(proc.pid, "-z")
    r = http_bench.wrk(port, keys_file, MODE, SECONDS, SHAPE)
    control(proc.pid, "-d")
    time.sleep(0.5)
    dumps = sorted(f for f in os.listdir(os.path.dirname(out_file))
                   if f.startswith(os.path.basename(out_file) + "."))
    total, rows, by_name = annotate(os.path.join(os.path.dirname(out_file), dumps[-1]),
                                    r["requests"], top)
    print("%s: %d requests, %d errors; %.0f instructions a request"
          % (name, r["requests"], r["errors"], total / r["requests"]))
    rest = total
    for label, fns in PARTS:
        n = sum(by_name.get(f, 0) for f in fns)
        rest -= n
        print("  %-50s %8.0f" % (label, n / r["requests"]))
    print("  %-50s %8.0f" % ("the rest: the HTTP layer and libmicrohttpd", rest / r["requests"]))
    print("  the most inclusive functions, per request:")
    for per, fn in rows:
        print("  %12.0f  %s" % (per, fn))
    return total / r["requests"]


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    which = sys.argv[2] if len(sys.argv) > 2 else "both"
    top = int(os.environ.get("PROFILE_TOP", "40"))
    out_dir = os.environ.get("PROFILE_OUT") or tempfile.mkdtemp(prefix="keyward-profile-")
    tmp = tempfile.mkdtemp(prefix="keyward-profile-run-")
    binary = os.path.abspath(os.path.join(build, "keyward"))
    http_bench.KEYS = KEYS
    http_bench.START_TIMEOUT = 120
    procs = []
    figures = {}
    try:
        kw = http_bench.Keyward(binary, tmp, "access", args=["--threads", "1"],
                                wrapper=CALLGRIND + ["--callgrind-out-file=" +
                                                     os.path.join(out_dir, "callgrind.keyward")])
        procs.append(kw)
        http_bench.setup_keyward(kw, tmp)
        keys_file = kw.forged_file if MODE == "forged" else kw.keys_file
        if which in ("keyward", "both"):
            figures["keyward"] = measure("keyward", kw.proc, kw.port, keys_file,
                                         os.path.join(out_dir, "callgrind.keyward"), top)
        kw.stop()
        if which in ("trivial", "both"):
            triv = http_bench.Trivial(build, threads=1, wrapper=CALLGRIND + [
                "--callgrind-out-file=" + os.path.join(out_dir, "callgrind.trivial")])
            procs.append(triv)
            figures["trivial"] = measure("trivial", triv.proc, triv.port, keys_file,
                                         os.path.join(out_dir, "callgrind.trivial"), top)
            triv.stop()
    finally:
        for p in procs:
            p.stop()
    if len(figures) == 2:
        print("keyward/trivial instructions a request: %.2f"
              % (figures["keyward"] / figures["trivial"]))
    print("callgrind files: %s" % out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
