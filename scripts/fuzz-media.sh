#!/usr/bin/env bash
# Build and run eyrie's media libFuzzer targets (clang only; not part of the
# meson build). Usage:
#   scripts/fuzz-media.sh [SECONDS_PER_TARGET] [image|audio|mel ...]
# Default: 60 s for each of image, audio and mel. Seeds: samples/media and
# tests/fixtures/media/corpus; new inputs go to build-fuzz/corpus-<target>;
# crashes to build-fuzz/crash-<target>-*.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-60}"; shift || true
TARGETS=("${@:-image audio mel}")
OUT=build-fuzz
mkdir -p "$OUT"
fail=0
CC="${CC:-clang}"
FLAGS="-g -O1 -std=c11 -D_GNU_SOURCE -fno-math-errno -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I."
LIBS="$(pkg-config --cflags --libs libturbojpeg libpng libavformat libavcodec libavutil libswresample) -lm"
SRCS="modalities/image/image_decode.c modalities/image/image_jpeg.c modalities/image/image_png.c
      modalities/image/image_resize.c modalities/image/vision_prep.c modalities/audio/audio_decode.c
      modalities/audio/audio_mel.c common/ey_err.c"
for t in ${TARGETS[@]}; do
  def="EY_FUZZ_$(echo "$t" | tr a-z A-Z)"
  "$CC" $FLAGS -D"$def" tests/fuzz/fuzz_media.c $SRCS $LIBS -o "$OUT/fuzz-$t"
  mkdir -p "$OUT/corpus-$t"
  echo "== fuzz-$t for ${SECS}s"
  if ! ASAN_OPTIONS=detect_leaks=1 "$OUT/fuzz-$t" -max_total_time="$SECS" -max_len=262144 -rss_limit_mb=2048 \
    -timeout=20 -artifact_prefix="$OUT/crash-$t-" -print_final_stats=1 \
    "$OUT/corpus-$t" samples/media tests/fixtures/media/corpus > "$OUT/fuzz-$t.log" 2>&1; then
    echo "fuzz-$t: FAILED (see $OUT/fuzz-$t.log)"; grep -E "ERROR|SUMMARY" "$OUT/fuzz-$t.log" | head -5; fail=1
  fi
  grep -E "stat::number_of_executed_units|Done" "$OUT/fuzz-$t.log" || true
done
exit $fail
