#!/usr/bin/env python3
"""Run every test suite and print one closing line "N passed, N failed".

1. unit tests (check) through meson; each check test case counts once,
   read from check's "Checks: N, Failures: F, Errors: E" summary;
2. the integration suite (tests/integration/run.py), one per test, against
   build/sipxferd;
3. the libFuzzer smoke run (fuzz/run --smoke), one per fuzz target;
4. the integration suite again against an ASan+UBSan build
   (scripts/asan-build.sh), so every scenario also runs under the sanitizers.

SIPXFER_QUICK=1 skips 3 and 4."""
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


def counted(cmd, tag, env=None, prefix=""):
    """Run cmd, echo its output, return the counts of its "<tag>: N passed,
    N failed" line (a run that prints none counts as one failure)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT, env=env)
    passed = failed = None
    for line in proc.stdout:
        sys.stdout.write(prefix + line)
        sys.stdout.flush()
        m = re.match(tag + r": (\d+) passed, (\d+) failed", line.strip())
        if m:
            passed, failed = int(m.group(1)), int(m.group(2))
    rc = proc.wait()
    if passed is None:
        return 0, 1
    if rc != 0 and failed == 0:
        failed = 1
    return passed, failed


def integration_tests(args, env=None, prefix=""):
    runner = os.path.join(ROOT, "tests", "integration", "run.py")
    return counted([sys.executable, runner] + args, "integration", env, prefix)


def fuzz_smoke():
    return counted([os.path.join(ROOT, "fuzz", "run"), "--smoke"], "fuzz")


def asan_integration(args):
    build = subprocess.call([os.path.join(ROOT, "scripts", "asan-build.sh")],
                            stdout=sys.stderr)
    if build != 0:
        print("asan: build failed", flush=True)
        return 0, 1
    env = dict(os.environ)
    env["SIPXFERD"] = os.path.join(ROOT, "build-asan", "sipxferd")
    env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1:quarantine_size_mb=16")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    # scripts/lsan.supp: empty since tls_guard.c frees what sofia left (it says so)
    env.setdefault("LSAN_OPTIONS", "suppressions=" + os.path.join(ROOT, "scripts", "lsan.supp"))
    return integration_tests(args, env, prefix="[asan] ")


def main():
    args = sys.argv[1:]
    results = [unit_tests(), integration_tests(args)]
    if not os.environ.get("SIPXFER_QUICK") and not args:
        results.append(fuzz_smoke())
        results.append(asan_integration(args))
    passed = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
