#!/usr/bin/env bash
# make add-org: Org3 joins the live channel. Its config group (rendered by configtxgen) goes in
# through a config update signed by the Org1 and Org2 admins (Application Admins = MAJORITY);
# peer0.org3 joins from the genesis block and catches up; every deployed chaincode gets an Org3
# server, install and approval. The chaincodes' endorsement policy is the channel's MAJORITY
# Endorsement, which counts Org3 as soon as the config update commits (now 2 of 3). Last, the
# contract's consortium rules admit Org3MSP (admit.py: a rules change approved by the members' admins).
set -eu
. "$(dirname "$0")/lib.sh"
load_fabric
[ -f "$RUN/READY" ] || die "no network: run make network-up first"
N=3
admit() {
    "$PY" "$NET_DIR/admit.py" "$RUN" "Org${N}MSP" 2>>"$LOGS/admit.log" || die "admitting Org${N}MSP to the consortium failed; see $LOGS/admit.log"
    tail -n 1 "$LOGS/admit.log" | sed 's/^/[network] /' >&2
}
if [ -f "$RUN/org$N.added" ]; then
    log "Org${N}MSP is already a member of $CHANNEL"
    admit
    exit 0
fi
# Every step below can be re-run: a failed add-org is resumed by running it again.
t0=$(date +%s)
ch="$RUN/channel"
in_channel() {
    use_org 1
    # shellcheck disable=SC2046
    peer channel fetch config "$ch/config_now.block" -c "$CHANNEL" $(orderer_args) 2>/dev/null &&
        "$PY" "$NET_DIR/tools.py" block-orgs "$ch/config_now.block" | grep -qw "Org${N}MSP"
}

if [ ! -d "$(org_dir $N)" ]; then
    log "Org$N crypto material"
    cryptogen generate --config="$NET_DIR/templates/crypto-config-org$N.yaml" --output="$ORGS_DIR" >/dev/null
fi
if in_channel; then
    log "Org${N}MSP already in the channel config"
else
    log "Org$N config group and channel config update"
    configtxgen -configPath "$RUN/config/configtx" -profile Org${N}Definition -channelID "org${N}def" \
        -outputBlock "$ch/org${N}def.block" 2>>"$LOGS/configtxgen.log"
    use_org 1 Admin
    # shellcheck disable=SC2046
    peer channel fetch config "$ch/config_before_org$N.block" -c "$CHANNEL" $(orderer_args) 2>>"$LOGS/cli.log"
    "$PY" "$NET_DIR/tools.py" add-org-update "$ch/config_before_org$N.block" "$ch/org${N}def.block" \
        "Org${N}MSP" "$CHANNEL" "$ch/add_org$N.update"
    peer channel signconfigtx -f "$ch/add_org$N.update" 2>>"$LOGS/cli.log"
    use_org 2 Admin
    # shellcheck disable=SC2046
    peer channel update -f "$ch/add_org$N.update" -c "$CHANNEL" $(orderer_args) 2>>"$LOGS/cli.log" ||
        die "config update rejected; see $LOGS/cli.log"
    for i in $(seq 1 60); do
        # shellcheck disable=SC2046
        peer channel fetch config "$ch/config_after_org$N.block" -c "$CHANNEL" $(orderer_args) 2>/dev/null || true
        if "$PY" "$NET_DIR/tools.py" block-orgs "$ch/config_after_org$N.block" 2>/dev/null | grep -qw "Org${N}MSP"; then
            break
        fi
        [ "$i" -lt 60 ] || die "Org${N}MSP not in the channel config after the update"
        sleep 0.5
    done
fi

log "peer0.org$N"
if ! pid_alive "peer0.org$N"; then
    for p in $(peer_port $N) $(peer_cc_port $N) $(peer_ops_port $N); do
        port_free "$p" || die "port $p on $HOST is already in use"
    done
fi
start_bg "peer0.org$N" "$NET_DIR/peer.sh" "$N"
wait_healthz "$(peer_ops_port $N)" "peer0.org$N"
use_org $N Admin
if ! peer channel list 2>/dev/null | grep -qx "$CHANNEL"; then
    retry 10 peer channel join -b "$ch/$CHANNEL.block" 2>>"$LOGS/cli.log" ||
        die "peer0.org$N could not join $CHANNEL; see $LOGS/cli.log"
fi
height() { peer channel getinfo -c "$CHANNEL" 2>/dev/null | sed -n 's/.*"height":\([0-9]*\).*/\1/p'; }
use_org 1
target=$(height)
use_org $N Admin
for i in $(seq 1 120); do
    h=$(height || true)
    [ "${h:-0}" -ge "$target" ] && break
    [ "$i" -lt 120 ] || die "peer0.org$N stuck at height ${h:-0} (< $target)"
    sleep 0.5
done
log "peer0.org$N caught up to height $h"

for cc in $(deployed_chaincodes); do
    log "chaincode $cc for Org$N"
    contract=""
    [ -f "$RUN/chaincode/$cc/org1/contract" ] && contract=$(cat "$RUN/chaincode/$cc/org1/contract")
    CC_NAME=$cc FEDLEDGER_CONTRACT=$contract "$NET_DIR/deploy-cc.sh" $N
    CC_NAME=$cc wait_chaincode $N
done
# Only now does the rest of the tooling (network-up's health check, status) count Org N in.
grep -qw "$N" "$RUN/orgs" || echo "$(cat "$RUN/orgs") $N" >"$RUN/orgs"
# shellcheck disable=SC2046
"$PY" "$NET_DIR/tools.py" network-json "$RUN" $(cat "$RUN/orgs")
date -u +%FT%TZ >"$RUN/org$N.added"
log "Org${N}MSP joined $CHANNEL in $(($(date +%s) - t0))s"
admit
