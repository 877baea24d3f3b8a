#!/usr/bin/env bash
# Build and run the libFuzzer target for the drafter trainer's file parsers
# (tests/fuzz/fuzz_hidden.c: the offline hidden-state directory read by
# ey_hid_open/ey_hid_get, and trainer checkpoints read by ey_e3t_load).
# Clang only; not part of the meson build.
#   scripts/fuzz-hidden.sh [SECONDS]
# Seeds: valid tiny hidden-state directories and checkpoints written by the
# fuzz binary itself (EY_FUZZ_HIDDEN_SEEDS) into build-fuzz/seeds-hidden;
# new inputs go to build-fuzz/corpus-hidden, crashes to build-fuzz/crash-hidden-*.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-60}"
OUT=build-fuzz
mkdir -p "$OUT"
CC="${CC:-clang}"
BLAS="$(pkg-config --cflags openblas)"
FLAGS="-g -O1 -std=c11 -D_GNU_SOURCE -fno-math-errno -fopenmp -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I. $BLAS"
LIBS="$(pkg-config --cflags --libs libcjson) -lopenblas -lm -lpthread"
SRCS="train/hidden_io.c train/e3_train.c common/ey_err.c kernels/ey_dtype.c"
# The fp32 training kernels are not on the parsing path (nothing is trained):
# built without sanitizers.
"$CC" -O2 -std=c11 -D_GNU_SOURCE -fno-math-errno -fopenmp -I. $BLAS -c train/e3t_kernels.c \
  -o "$OUT/e3t_kernels.o"
# shellcheck disable=SC2086
"$CC" $FLAGS tests/fuzz/fuzz_hidden.c $SRCS "$OUT/e3t_kernels.o" $LIBS -o "$OUT/fuzz-hidden"
seeds="$OUT/seeds-hidden"
rm -rf "$seeds"
mkdir -p "$seeds" "$OUT/corpus-hidden"
EY_FUZZ_HIDDEN_SEEDS="$seeds" OMP_NUM_THREADS=1 "$OUT/fuzz-hidden"
echo "== fuzz-hidden for ${SECS}s"
if ! ASAN_OPTIONS=detect_leaks=1 OMP_NUM_THREADS=1 "$OUT/fuzz-hidden" -max_total_time="$SECS" \
    -max_len=262144 -rss_limit_mb=2048 -timeout=20 -artifact_prefix="$OUT/crash-hidden-" \
    -print_final_stats=1 "$OUT/corpus-hidden" "$seeds" > "$OUT/fuzz-hidden.log" 2>&1; then
  echo "fuzz-hidden: FAILED (see $OUT/fuzz-hidden.log)"; grep -E "ERROR|SUMMARY" "$OUT/fuzz-hidden.log" | head -5
  exit 1
fi
grep -E "stat::number_of_executed_units|Done" "$OUT/fuzz-hidden.log" || true
