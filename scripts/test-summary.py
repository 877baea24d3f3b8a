#!/usr/bin/env python3
"""Summarise meson testlog.json files into the closing line 'N passed, N failed'.

Expected failures count as passed, unexpected passes and timeouts as failed,
skips are reported separately (a skip is never a pass)."""
import json
import sys

passed = failed = skipped = 0
args = sys.argv[1:]
if args[:1] == ["--extra-failed"]:
    failed += int(args[1])  # failures outside the logs (sanitizer build, fuzzing)
    args = args[2:]
for path in args:
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                r = json.loads(line).get("result", "")
                if r in ("OK", "EXPECTEDFAIL"):
                    passed += 1
                elif r == "SKIP":
                    skipped += 1
                else:
                    failed += 1
    except OSError as e:
        print(f"test-summary: {e}", file=sys.stderr)
        failed += 1
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed or passed == 0 else 0)
