#!/usr/bin/env bash
# Org N's share of the lifecycle of chaincode $CC_NAME (default fedledger): a ccaas package that
# points at org N's own chaincode server, the server's TLS certificate, the server itself,
# install on org N's peer, approve the definition for org N.
# FEDLEDGER_CONTRACT=module:Class serves another contract (tests only).
set -eu
. "$(dirname "$0")/lib.sh"
load_fabric
n=$1
cc=$(cc_dir "$n")
proc=$(cc_proc "$n")
mkdir -p "$cc"
peerdir="$(org_dir "$n")/peers/$(peer_host "$n")"
if [ ! -f "$cc/tls/server.crt" ]; then
    "$PY" "$NET_DIR/tools.py" issue-tls "$(peer_tls_ca "$n")" "$(org_dir "$n")/tlsca/priv_sk" "$cc/tls" \
        "ccaas.org$n.example.com"
fi
"$PY" "$NET_DIR/tools.py" ccaas-package "$cc/$CC_NAME.tar.gz" "$CC_LABEL" \
    "$HOST:$(ccserver_port "$n")" "$cc/tls/ca.crt" "$peerdir/tls/server.crt" "$peerdir/tls/server.key"
"$PY" "$NET_DIR/tools.py" package-id "$cc/$CC_NAME.tar.gz" "$CC_LABEL" >"$cc/package_id"
pkg=$(cat "$cc/package_id")
if [ -n "${FEDLEDGER_CONTRACT:-}" ]; then echo "$FEDLEDGER_CONTRACT" >"$cc/contract"; fi
if [ -n "${CC_PORT_DELTA:-}" ]; then echo "$CC_PORT_DELTA" >"$RUN/chaincode/$CC_NAME/port_delta"; fi

# Always restart our server so it runs the current code; a stale one would keep the peer's stream.
stop_pid "$proc"
start_ccserver "$n"

use_org "$n"
if ! peer lifecycle chaincode queryinstalled 2>/dev/null | grep -q "$pkg"; then
    peer lifecycle chaincode install "$cc/$CC_NAME.tar.gz" 2>>"$LOGS/cli.log" ||
        die "install on peer0.org$n failed; see $LOGS/cli.log"
fi
if peer lifecycle chaincode queryapproved -C "$CHANNEL" -n "$CC_NAME" --sequence "$CC_SEQUENCE" -O json \
    2>/dev/null | grep -q "\"package_id\": \"$pkg\""; then
    log "org$n: $pkg already installed and approved"
    exit 0
fi
# shellcheck disable=SC2046
peer lifecycle chaincode approveformyorg $(orderer_args) --channelID "$CHANNEL" --name "$CC_NAME" \
    --version "$CC_VERSION" --sequence "$CC_SEQUENCE" --package-id "$pkg" >>"$LOGS/cli.log" 2>&1 ||
    die "approveformyorg of $CC_NAME by $(org_msp "$n") failed; see $LOGS/cli.log"
log "org$n: installed and approved $pkg"
