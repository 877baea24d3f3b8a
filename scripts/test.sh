#!/usr/bin/env bash
# The README's test command: set up, run the whole meson test suite in build/,
# then the 'unit', 'model-tiny' and 'daemon' suites again in an AddressSanitizer +
# UndefinedBehaviorSanitizer build (build-asan/: hostile-input tests must be
# clean there too), and print a closing line "N passed, N failed" over both.
# A short libFuzzer run (EYRIE_FUZZ_SECONDS per target, default 20) over the
# media decoders, the model/tokenizer parsers and the daemon's request path
# follows; a crash, leak or
# sanitizer report fails the run.
# Exits non-zero on any failure. EYRIE_TEST_ASAN=0 skips the sanitizer pass,
# EYRIE_TEST_FUZZ=0 the fuzzing.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! EYRIE_ALLOW_NO_MODEL=1 scripts/setup.sh; then
    echo "test: set-up failed" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
rc=0
extra=0   # failures outside meson's test logs (sanitizer build, fuzzing)
rm -f build/meson-logs/testlog.json build-asan/meson-logs/testlog.json
# tests run in parallel and each uses OpenMP threads: sleep rather than spin
# while waiting, so an oversubscribed machine does not crawl
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
meson test -C build --print-errorlogs --num-processes "$(nproc)" "$@" || rc=1
logs=(build/meson-logs/testlog.json)
if [ "${EYRIE_TEST_ASAN:-1}" != 0 ]; then
    if [ ! -f build-asan/build.ninja ]; then
        meson setup build-asan -Dbuildtype=debugoptimized -Db_sanitize=address,undefined >/dev/null || extra=$((extra + 1))
    fi
    if ninja -C build-asan >/dev/null; then
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
            meson test -C build-asan --print-errorlogs --num-processes "$(nproc)" \
            --suite unit --suite model-tiny --suite daemon || rc=1
        logs+=(build-asan/meson-logs/testlog.json)
    else
        echo "test: sanitizer build failed" >&2
        extra=$((extra + 1))
    fi
fi
if [ "${EYRIE_TEST_FUZZ:-1}" != 0 ]; then
    secs="${EYRIE_FUZZ_SECONDS:-20}"
    scripts/fuzz-media.sh "$secs" || { echo "test: media fuzzing failed" >&2; extra=$((extra + 1)); }
    scripts/fuzz-loaders.sh "$secs" || { echo "test: loader fuzzing failed" >&2; extra=$((extra + 1)); }
    scripts/fuzz-daemon.sh "$secs" || { echo "test: daemon request fuzzing failed" >&2; extra=$((extra + 1)); }
    scripts/fuzz-hidden.sh "$secs" || { echo "test: hidden-state/checkpoint fuzzing failed" >&2; extra=$((extra + 1)); }
fi
[ "$extra" -gt 0 ] && rc=1
python3 scripts/test-summary.py --extra-failed "$extra" "${logs[@]}" || rc=1
exit $rc
