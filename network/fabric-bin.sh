#!/usr/bin/env bash
# Resolves the pinned Fabric binaries and their sampleconfig, building them only if needed.
#
# Order: $FABRIC_BIN, then the binaries recorded in fabric-bin/paths.env by an earlier run, then binaries
# on PATH, then a previous build in ./fabric-bin, then
# `go install` from the Go module proxy. Whatever is found must report the pinned version.
# Writes fabric-bin/paths.env (FABRIC_BIN_DIR, FABRIC_SAMPLECONFIG) for the network scripts.
set -eu

FABRIC_VERSION=2.5.16
FABRIC_MODULE=github.com/hyperledger/fabric
FABRIC_PSEUDO=v1.4.0-rc1.0.20260617221605-f871cf92a026 # the v2.5.16 commit
TOOLS="peer orderer configtxgen cryptogen osnadmin"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/fabric-bin"
PATHS_ENV="$OUT/paths.env"

log() { echo "fabric-bin: $*" >&2; }

# is_pinned DIR: all tools present in DIR and `peer version` says the pinned version.
is_pinned() {
    local dir=$1 tool
    for tool in $TOOLS; do [ -x "$dir/$tool" ] || return 1; done
    if "$dir/peer" version 2>/dev/null | grep -q "Version: v\{0,1\}$FABRIC_VERSION\$"; then return 0; fi
    # `go install` builds carry no ldflags version; the module version is in the build info.
    go version -m "$dir/peer" 2>/dev/null | grep -q "${FABRIC_MODULE}[[:space:]]*${FABRIC_PSEUDO}"
}

# find_sampleconfig DIR: core.yaml/orderer.yaml templates for binaries in DIR.
find_sampleconfig() {
    local dir=$1 cand modcache
    modcache=$(go env GOMODCACHE 2>/dev/null || true)
    for cand in "${FABRIC_CFG_TEMPLATES:-}" "$dir/../config" "$OUT/config" "$(recorded FABRIC_SAMPLECONFIG)" \
        "${modcache:+$modcache/$FABRIC_MODULE@$FABRIC_PSEUDO/sampleconfig}"; do
        if [ -n "$cand" ] && [ -f "$cand/core.yaml" ] && [ -f "$cand/orderer.yaml" ]; then
            (cd "$cand" && pwd)
            return 0
        fi
    done
    return 1
}

write_paths() {
    local bindir=$1 cfg
    if ! cfg=$(find_sampleconfig "$bindir"); then
        log "no sampleconfig (core.yaml, orderer.yaml) found for $bindir;"
        log "set FABRIC_CFG_TEMPLATES to the sampleconfig/ directory of Fabric $FABRIC_VERSION"
        exit 1
    fi
    mkdir -p "$OUT"
    local tmp="$PATHS_ENV.tmp"
    printf 'FABRIC_BIN_DIR=%s\nFABRIC_SAMPLECONFIG=%s\n' "$bindir" "$cfg" >"$tmp"
    if [ -f "$PATHS_ENV" ] && cmp -s "$tmp" "$PATHS_ENV"; then
        rm -f "$tmp"
        log "Fabric $FABRIC_VERSION already available: $bindir (config $cfg)"
    else
        mv "$tmp" "$PATHS_ENV"
        log "using Fabric $FABRIC_VERSION binaries in $bindir, config templates in $cfg"
    fi
}

# recorded KEY: a value of the paths.env an earlier run wrote (empty if none).
recorded() {
    [ -f "$PATHS_ENV" ] && sed -n "s/^$1=//p" "$PATHS_ENV" || true
}

candidates() {
    if [ -n "${FABRIC_BIN:-}" ]; then echo "$FABRIC_BIN"; fi
    recorded FABRIC_BIN_DIR # the binaries found before: `make network-up` needs FABRIC_BIN only once
    if command -v peer >/dev/null 2>&1; then dirname "$(readlink -f "$(command -v peer)")"; fi
    echo "$OUT"
}

for dir in $(candidates); do
    if [ -d "$dir" ] && is_pinned "$dir"; then
        write_paths "$(cd "$dir" && pwd)"
        exit 0
    fi
    if [ -n "${FABRIC_BIN:-}" ] && [ "$dir" = "$FABRIC_BIN" ]; then
        log "FABRIC_BIN=$FABRIC_BIN does not hold Fabric $FABRIC_VERSION ($TOOLS); ignoring it"
    fi
done

command -v go >/dev/null 2>&1 || { log "Go is needed to build Fabric $FABRIC_VERSION"; exit 1; }
log "building Fabric $FABRIC_VERSION with the Go module proxy (several minutes on 2 cores)"
mkdir -p "$OUT"
pkgs=""
for tool in $TOOLS; do pkgs="$pkgs $FABRIC_MODULE/cmd/$tool@$FABRIC_PSEUDO"; done
# shellcheck disable=SC2086
if ! GOBIN="$OUT" go install $pkgs; then
    log "go install failed. If the module proxy refuses $FABRIC_MODULE, put Fabric $FABRIC_VERSION"
    log "binaries on PATH (or FABRIC_BIN) with their sampleconfig in ../config or FABRIC_CFG_TEMPLATES."
    exit 1
fi
modcache=$(go env GOMODCACHE)
if [ -d "$modcache/$FABRIC_MODULE@$FABRIC_PSEUDO/sampleconfig" ]; then
    mkdir -p "$OUT/config"
    cp "$modcache/$FABRIC_MODULE@$FABRIC_PSEUDO/sampleconfig/"*.yaml "$OUT/config/"
    chmod u+w "$OUT/config/"*.yaml
fi
is_pinned "$OUT" || { log "built binaries do not report Fabric $FABRIC_VERSION"; exit 1; }
write_paths "$OUT"
