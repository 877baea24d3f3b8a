#!/usr/bin/env bash
# Build and run the libFuzzer target over the daemon's request path
# (tests/fuzz/fuzz_daemon.c: protobuf decoding, validation, tokenization,
# answers), with the tiny chat fixture model. Clang only; not part of the
# meson build. Needs build/ configured (for the generated protobuf code).
#   scripts/fuzz-daemon.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-60}"
OUT=build-fuzz
mkdir -p "$OUT/proto"
CC="${CC:-clang}"
protoc-c --proto_path=proto --c_out="$OUT/proto" proto/eyrie.proto
FLAGS="-g -O1 -std=c11 -D_GNU_SOURCE -fno-math-errno -fopenmp -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I. -I$OUT/proto"
LIBS="$(pkg-config --cflags --libs libcjson libpcre2-8 libutf8proc libprotobuf-c nanomsg) -lm -lpthread"
SRCS="$OUT/proto/eyrie.pb-c.c daemon/engine.c daemon/dconfig.c daemon/result_pb.c core/*.c
      common/ey_err.c kernels/ey_dtype.c"
# The CPU kernels are not on the request path (no forward runs): built without
# sanitizers, since cpu_matmul.c alone takes minutes to compile with them.
KOBJ=()
for k in kernels/cpu/cpu_backend.c kernels/cpu/cpu_matmul.c kernels/cpu/cpu_matmul_ref.c \
         kernels/cuda/cuda_stub.c; do
  o="$OUT/$(basename "$k" .c).o"
  "$CC" -O2 -std=c11 -D_GNU_SOURCE -fno-math-errno -fopenmp -I. -c "$k" -o "$o"
  KOBJ+=("$o")
done
# shellcheck disable=SC2086
"$CC" $FLAGS tests/fuzz/fuzz_daemon.c $SRCS "${KOBJ[@]}" $LIBS -o "$OUT/fuzz-daemon"
seeds="$OUT/seeds-daemon"
mkdir -p "$seeds" "$OUT/corpus-daemon"
EYD_FUZZ_SEEDS="$seeds" "$OUT/fuzz-daemon"
echo "== fuzz-daemon for ${SECS}s"
if ! ASAN_OPTIONS=detect_leaks=1 "$OUT/fuzz-daemon" -max_total_time="$SECS" -max_len=65536 \
    -rss_limit_mb=2048 -timeout=20 -artifact_prefix="$OUT/crash-daemon-" -print_final_stats=1 \
    "$OUT/corpus-daemon" "$seeds" > "$OUT/fuzz-daemon.log" 2>&1; then
  echo "fuzz-daemon: FAILED (see $OUT/fuzz-daemon.log)"; grep -E "ERROR|SUMMARY" "$OUT/fuzz-daemon.log" | head -5
  exit 1
fi
grep -E "stat::number_of_executed_units|Done" "$OUT/fuzz-daemon.log" || true
