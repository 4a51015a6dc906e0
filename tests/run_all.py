#!/usr/bin/env python3
"""Run every test suite and print one closing line "N passed, N failed".

Unit tests (check) run through meson; each check test case counts once,
read from check's "Checks: N, Failures: F, Errors: E" summary. The
integration suite (tests/integration/run.py) counts one per test."""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def unit_tests():
    log = os.path.join(ROOT, "build", "meson-logs", "testlog.json")
    if os.path.exists(log):
        os.unlink(log)
    rc = subprocess.call(["meson", "test", "-C", os.path.join(ROOT, "build"),
                          "--suite", "unit", "--print-errorlogs"])
    passed = failed = 0
    seen = 0
    if os.path.exists(log):
        with open(log) as f:
            for line in f:
                t = json.loads(line)
                seen += 1
                m = re.search(r"Checks: (\d+), Failures: (\d+), Errors: (\d+)",
                              t.get("stdout", "") or "")
                if m:
                    n, fl, er = map(int, m.groups())
                    passed += n - fl - er
                    failed += fl + er
                    if t.get("result") != "OK" and fl + er == 0:
                        failed += 1
                else:
                    # crashed before check printed its summary
                    if t.get("result") == "OK":
                        passed += 1
                    else:
                        failed += 1
    if seen == 0 or (rc != 0 and failed == 0):
        failed += 1
    print("unit: %d passed, %d failed" % (passed, failed), flush=True)
    return passed, failed


def integration_tests(args):
    runner = os.path.join(ROOT, "tests", "integration", "run.py")
    proc = subprocess.Popen([sys.executable, runner] + args, stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    passed = failed = None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        m = re.match(r"integration: (\d+) passed, (\d+) failed", line.strip())
        if m:
            passed, failed = int(m.group(1)), int(m.group(2))
    rc = proc.wait()
    if passed is None:
        return 0, 1
    if rc != 0 and failed == 0:
        failed = 1
    return passed, failed


def main():
    args = sys.argv[1:]
    up, uf = unit_tests()
    ip, iff = integration_tests(args)
    passed, failed = up + ip, uf + iff
    print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
