#!/usr/bin/env bash
# The README's main command: set up, start the daemon (eyried) on the default
# model, stream one chat answer through the sample client, stop the daemon.
#
#   scripts/run.sh ["question"]
#
# EYRIE_SYSTEM sets the system prompt; EYRIE_DRAFTER a drafter directory
# (speculative decoding; the answer is the same), by default the drafter
# trained for the default model (samples/drafters/smollm2-135m-eagle3;
# EYRIE_DRAFTER=none runs without one). Without the sample client's
# Python packages the C client (`eyrie generate --url`) asks instead.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
question="${1:-What is the capital of France?}"
dir=$(mktemp -d /tmp/eyrie-run.XXXXXX)
url="ipc://$dir/eyrie.sock"
args=(--listen "$url" --log-file "$dir/eyried.log")
# the shipped drafter fits the default model only: no default with EYRIE_MODEL
default_drafter=none
[ -z "${EYRIE_MODEL:-}" ] && [ -d samples/drafters/smollm2-135m-eagle3 ] &&
    default_drafter=samples/drafters/smollm2-135m-eagle3
drafter="${EYRIE_DRAFTER:-$default_drafter}"
# chain k=1: the fastest shape measured for this drafter (docs/benchmarks.md)
[ "$drafter" != none ] && args+=(--drafter "$drafter" --spec-method chain --spec-k 1)
build/eyried "${args[@]}" &
pid=$!
cleanup() {
    kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 1 600); do  # the model loads in well under a minute
    build/eyrie health --url "$url" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$dir/eyried.log" >&2; exit 1; }
    sleep 0.1
done
system="${EYRIE_SYSTEM:-You are a helpful assistant.}"
if python3 -c 'import pynng, google.protobuf, grpc_tools' 2>/dev/null; then
    python3 samples/chat_client.py --url "$url" --system "$system" --temperature 0 \
        --max-tokens 128 "$question"
else
    echo "(the Python sample client's packages are missing: using eyrie generate --url)" >&2
    build/eyrie generate --url "$url" --chat "$question" --system "$system" \
        --temperature 0 --max-tokens 128
fi
