#!/usr/bin/env python3
"""Counts test cases in a meson testlog.json: prints "PASSED FAILED SKIPPED".

Every test speaks TAP, so a case is an "ok N" or "not ok N" line of its
output, and an "ok N ... # SKIP" line a skipped one (counted apart, never as
passed); a test that crashed before printing its plan counts as one failure.
"""
import json
import re
import sys

passed = failed = skipped = 0
with open(sys.argv[1], encoding="utf-8") as log:
    for line in log:
        entry = json.loads(line)
        out = entry.get("stdout") or ""
        skip = len(re.findall(r"^ok \d+[^\n]*#\s*skip", out, re.M | re.I))
        ok = len(re.findall(r"^ok \d+", out, re.M)) - skip
        bad = len(re.findall(r"^not ok \d+", out, re.M))
        if entry.get("result") not in ("OK", "EXPECTEDFAIL", "SKIP") and bad == 0:
            bad = 1
        passed += ok
        failed += bad
        skipped += skip
print(passed, failed, skipped)
