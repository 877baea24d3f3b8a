#!/usr/bin/env bash
# Build and run the libFuzzer targets for the GGUF, safetensors and
# tokenizer.json parsers (clang only; not part of the meson build).
#   scripts/fuzz-loaders.sh [SECONDS_PER_TARGET] [gguf|safetensors|tokjson ...]
# Seeds: the committed model and tokenizer fixtures; findings go to build-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-60}"; shift || true
TARGETS=("${@:-gguf safetensors tokjson}")
OUT=build-fuzz
mkdir -p "$OUT"
fail=0
CC="${CC:-clang}"
FLAGS="-g -O1 -std=c11 -D_GNU_SOURCE -fno-math-errno -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I."
LIBS="$(pkg-config --cflags --libs libcjson libpcre2-8 libutf8proc) -lm"
SRCS="core/gguf.c core/safetensors.c core/tokenizer.c kernels/ey_dtype.c common/ey_err.c"
for t in ${TARGETS[@]}; do
  def="EY_FUZZ_$(echo "$t" | tr a-z A-Z)"
  "$CC" $FLAGS -D"$def" tests/fuzz/fuzz_loaders.c $SRCS $LIBS -o "$OUT/fuzz-$t"
  seeds="$OUT/seeds-$t"
  mkdir -p "$seeds" "$OUT/corpus-$t"
  case $t in
    gguf) cp tests/fixtures/models/llama-gguf/*.gguf "$seeds/" ;;
    safetensors) find tests/fixtures/models -name '*.safetensors' -exec cp {} "$seeds/" \; ;;
    tokjson) cp tests/fixtures/tokenizer/*.json "$seeds/" 2>/dev/null || true ;;
  esac
  echo "== fuzz-$t for ${SECS}s"
  if ! ASAN_OPTIONS=detect_leaks=1 "$OUT/fuzz-$t" -max_total_time="$SECS" -max_len=1048576 -rss_limit_mb=2048 \
    -timeout=20 -artifact_prefix="$OUT/crash-$t-" -print_final_stats=1 \
    "$OUT/corpus-$t" "$seeds" > "$OUT/fuzz-$t.log" 2>&1; then
    echo "fuzz-$t: FAILED (see $OUT/fuzz-$t.log)"; grep -E "ERROR|SUMMARY" "$OUT/fuzz-$t.log" | head -5; fail=1
  fi
  grep -E "stat::number_of_executed_units|Done" "$OUT/fuzz-$t.log" || true
done
exit $fail
