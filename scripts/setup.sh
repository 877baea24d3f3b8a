#!/usr/bin/env bash
# Set up eyrie on a Debian machine (run as root): install the Debian packages
# listed in scripts/deps/*-apt.txt, configure and build into build/, and fetch
# and check the default model. Safe to run again; it skips what is done.
#
#   EYRIE_SKIP_APT=1   skip the package step (packages already present)
#   EYRIE_BUILD_OPTS   extra `meson setup` options (e.g. -Db_sanitize=address)
#   EYRIE_ALLOW_NO_MODEL=1  go on when the default model cannot be fetched
#                      (the test command sets it: those tests then skip)
#   EYRIE_SKIP_PIP=1   skip the Python packages of the sample clients
#                      (scripts/deps/samples-pip.txt; nothing else needs them)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "setup: $*" >&2; }

if [ "${EYRIE_SKIP_APT:-0}" != 1 ]; then
    mapfile -t pkgs < <(cat scripts/deps/*-apt.txt | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' | sort -u)
    missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        if [ "$(id -u)" != 0 ]; then
            log "not root: cannot install packages; run as root or install them yourself"
            exit 1
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

# Python packages of samples/chat_client.py: a failure here only warns (the
# build and the tests do not need them). Debian's python3 is "externally
# managed" (PEP 668), hence the second try.
if [ "${EYRIE_SKIP_PIP:-0}" != 1 ] && \
   ! python3 -c 'import pynng, google.protobuf, grpc_tools' 2>/dev/null; then
    log "installing the sample clients' Python packages (scripts/deps/samples-pip.txt)"
    python3 -m pip install -q -r scripts/deps/samples-pip.txt >/dev/null 2>&1 ||
        python3 -m pip install -q --break-system-packages -r scripts/deps/samples-pip.txt \
            >/dev/null 2>&1 ||
        log "WARNING: could not install scripts/deps/samples-pip.txt; samples/chat_client.py needs it"
fi

if [ ! -f build/build.ninja ]; then
    log "configuring build/"
    wipe=()
    [ -d build/meson-private ] && wipe=(--wipe)   # an earlier configure failed half-way
    # shellcheck disable=SC2086
    meson setup "${wipe[@]}" build ${EYRIE_BUILD_OPTS:-} >/dev/null
fi
log "building"
ninja -C build >/dev/null

log "fetching the default model"
if ! scripts/fetch-model.sh >/dev/null; then
    if [ "${EYRIE_ALLOW_NO_MODEL:-0}" = 1 ]; then
        log "WARNING: the default model could not be fetched; its tests will be skipped"
    else
        exit 1
    fi
fi
log "ready"
