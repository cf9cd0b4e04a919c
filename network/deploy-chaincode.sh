#!/usr/bin/env bash
# Deploys chaincode $CC_NAME (default fedledger) to every member org: one ccaas server per org,
# installed and approved by each, committed without its own policy so the channel's
# /Channel/Application/Endorsement (MAJORITY) applies. Waits until every peer can run it.
# Skips the commit if the definition at $CC_SEQUENCE is already committed.
set -eu
. "$(dirname "$0")/lib.sh"
load_fabric
ORGS=$(cat "$RUN/orgs")
for n in $ORGS; do "$NET_DIR/deploy-cc.sh" "$n"; done
use_org 1
if ! peer lifecycle chaincode querycommitted -C "$CHANNEL" -n "$CC_NAME" 2>/dev/null |
    grep -q "Sequence: $CC_SEQUENCE,"; then
    peers=""
    for n in $ORGS; do
        peers="$peers --peerAddresses $HOST:$(peer_port "$n") --tlsRootCertFiles $(peer_tls_ca "$n")"
    done
    # shellcheck disable=SC2046,SC2086
    peer lifecycle chaincode commit $(orderer_args) --channelID "$CHANNEL" --name "$CC_NAME" \
        --version "$CC_VERSION" --sequence "$CC_SEQUENCE" $peers 2>>"$LOGS/cli.log" ||
        die "commit of $CC_NAME failed; see $LOGS/cli.log"
fi
for n in $ORGS; do wait_chaincode "$n"; done
log "chaincode $CC_NAME committed and reachable on $(for n in $ORGS; do printf 'peer0.org%s ' "$n"; done)"
