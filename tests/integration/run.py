#!/usr/bin/env python3
"""Run the integration tests: each test_*.py module registers cases with
harness.case; cases run in parallel (each on its own ports), and the last
line is "integration: N passed, N failed".

  run.py [-j N] [-k SUBSTRING]...
"""
import argparse
import concurrent.futures
import importlib
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402


def run_case(name, fn):
    t = harness.T(name.replace(".", "-"))
    start = time.time()
    ok = False
    try:
        fn(t)
        for d in t.daemons:
            if d.proc is not None and d.proc.poll() is not None and d.proc.returncode not in (0,):
                raise harness.TestFailure("sipxferd died (exit %s):\n%s" % (
                    d.proc.returncode, d.log_text()[-3000:]))
        ok = True
        return name, "PASS", time.time() - start, "\n".join(t.notes)
    except harness.Skip as e:
        ok = True
        return name, "SKIP", time.time() - start, str(e)
    except Exception as e:  # a failing test, whatever raised
        detail = "%s: %s" % (type(e).__name__, e) if isinstance(e, harness.TestFailure) \
            else traceback.format_exc()
        for d in t.daemons:
            detail += "\n--- sipxferd log tail (%s) ---\n%s" % (d.log, d.log_text()[-2500:])
        detail += "\n--- files in %s" % t.dir
        return name, "FAIL", time.time() - start, detail
    finally:
        t.cleanup(ok)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-j", type=int, default=int(os.environ.get("SIPXFER_TEST_JOBS", "6")))
    ap.add_argument("-k", action="append", default=[])
    args, _ = ap.parse_known_args()
    if not os.access(harness.SIPXFERD, os.X_OK):
        print("integration: %s not built" % harness.SIPXFERD)
        print("integration: 0 passed, 1 failed")
        return 1
    for fn in sorted(os.listdir(HERE)):
        if fn.startswith("test_") and fn.endswith(".py"):
            importlib.import_module(fn[:-3])
    cases = [c for c in harness.CASES if not args.k or any(k in c[0] for k in args.k)]
    # slow cases first so they overlap with the rest
    cases.sort(key=lambda c: not c[2])
    passed = failed = skipped = 0
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.j) as ex:
        futs = [ex.submit(run_case, name, fn) for name, fn, _ in cases]
        for f in concurrent.futures.as_completed(futs):
            name, res, secs, detail = f.result()
            print("%s %s (%.1fs)" % (res, name, secs), flush=True)
            if res == "PASS":
                passed += 1
                if detail:
                    print("  " + detail.replace("\n", "\n  "), flush=True)
            elif res == "SKIP":
                skipped += 1
                print("  skipped: " + detail, flush=True)
            else:
                failed += 1
                print("  " + detail.replace("\n", "\n  "), flush=True)
    print("integration: %d skipped, %.0fs" % (skipped, time.time() - t0))
    print("integration: %d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
