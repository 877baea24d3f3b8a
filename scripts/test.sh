#!/usr/bin/env bash
# The README's test command: set up, run the whole meson test suite, and
# print a closing line "N passed, N failed". Exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || exit 1
meson test -C build --print-errorlogs --num-processes "$(nproc)" "$@"
rc=$?
python3 scripts/test-summary.py build/meson-logs/testlog.json
exit $rc
