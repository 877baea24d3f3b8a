#!/usr/bin/env bash
# The README's main command: set up, then one chat completion with the
# default model (SmolLM2-135M-Instruct), streamed to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec build/eyrie generate --chat "${1:-What is the capital of France?}" \
    --system "${EYRIE_SYSTEM:-You are a helpful assistant.}" --temperature 0 --max-tokens 128
