#!/usr/bin/env bash
# make network-up: Org1+Org2 (one peer each), 3 Raft orderers, channel `mychannel` through the
# channel participation API, chaincode `fedledger` as a service (one server per org), MAJORITY
# endorsement. Idempotent: a healthy network is left alone; a network whose processes died is
# restarted on its existing ledgers; a half-built one is wiped and built again.
set -eu
. "$(dirname "$0")/lib.sh"
load_fabric

ORGS="1 2"
[ -f "$RUN/orgs" ] && ORGS=$(cat "$RUN/orgs")

all_healthy() {
    local i n
    for i in 1 2 3; do
        pid_alive "orderer$i" && curl -sf "http://$HOST:$(orderer_ops_port "$i")/healthz" >/dev/null || return 1
    done
    for n in $ORGS; do
        pid_alive "peer0.org$n" && curl -sf "http://$HOST:$(peer_ops_port "$n")/healthz" >/dev/null || return 1
        for cc in $(deployed_chaincodes); do CC_NAME=$cc pid_alive "$(CC_NAME=$cc cc_proc "$n")" || return 1; done
    done
}

start_orderer() {
    start_bg "orderer$1" "$NET_DIR/orderer.sh" "$1"
}
start_peer() {
    start_bg "peer0.org$1" "$NET_DIR/peer.sh" "$1"
}
# BUILT: the network was fully built once (restart it); READY: it is up and usable now.
if [ -f "$RUN/BUILT" ]; then
    if [ -f "$RUN/READY" ] && all_healthy; then
        log "network already up and healthy ($RUN)"
        exit 0
    fi
    log "network state exists but processes are down: restarting them on the existing ledgers"
    echo "restarting dead processes $(date -u +%FT%TZ)" >"$RUN/RESTARTING"
    rm -f "$RUN/READY"
    for i in 1 2 3; do pid_alive "orderer$i" || start_orderer "$i"; done
    for i in 1 2 3; do wait_healthz "$(orderer_ops_port "$i")" "orderer$i"; done
    for n in $ORGS; do pid_alive "peer0.org$n" || start_peer "$n"; done
    for n in $ORGS; do wait_healthz "$(peer_ops_port "$n")" "peer0.org$n"; done
    for cc in $(deployed_chaincodes); do
        for n in $ORGS; do CC_NAME=$cc start_ccserver "$n"; done
        for n in $ORGS; do CC_NAME=$cc wait_chaincode "$n"; done
    done
    rm -f "$RUN/RESTARTING"
    date -u +%FT%TZ >"$RUN/READY"
    log "network restarted"
    exit 0
fi

if [ -d "$RUN" ]; then
    log "incomplete network in $RUN: removing it"
    "$NET_DIR/network-down.sh"
fi

t0=$(date +%s)
mkdir -p "$RUN"/{config/peer,config/orderer,config/configtx,channel,chaincode,nodes,logs,pids}
for p in $(orderer_port 1) $(orderer_port 2) $(orderer_port 3) $(peer_port 1) $(peer_port 2) \
    $(ccserver_port 1) $(ccserver_port 2) $(orderer_ops_port 1) $(peer_ops_port 1) $(peer_ops_port 2); do
    port_free "$p" || die "port $p on $HOST is already in use"
done

log "crypto material (cryptogen, NodeOUs)"
cryptogen generate --config="$NET_DIR/templates/crypto-config.yaml" --output="$ORGS_DIR" >/dev/null

log "config files from $FABRIC_SAMPLECONFIG"
"$PY" "$NET_DIR/tools.py" patch-core "$FABRIC_SAMPLECONFIG/core.yaml" "$RUN/config/peer/core.yaml" \
    "$NET_DIR/builders/ccaas"
cp "$FABRIC_SAMPLECONFIG/orderer.yaml" "$RUN/config/orderer/orderer.yaml"
sed -e "s|@ORGS@|$ORGS_DIR|g" -e "s|@HOST@|$HOST|g" -e "s|@BATCH_TIMEOUT@|$BATCH_TIMEOUT|g" \
    -e "s|@ORDERER1_PORT@|$(orderer_port 1)|g" -e "s|@ORDERER2_PORT@|$(orderer_port 2)|g" \
    -e "s|@ORDERER3_PORT@|$(orderer_port 3)|g" -e "s|@PEER1_PORT@|$(peer_port 1)|g" \
    -e "s|@PEER2_PORT@|$(peer_port 2)|g" -e "s|@PEER3_PORT@|$(peer_port 3)|g" \
    "$NET_DIR/templates/configtx.yaml" >"$RUN/config/configtx/configtx.yaml"
echo "1 2" >"$RUN/orgs"

log "channel genesis block"
configtxgen -configPath "$RUN/config/configtx" -profile FedLedgerChannel -channelID "$CHANNEL" \
    -outputBlock "$RUN/channel/$CHANNEL.block" 2>>"$LOGS/configtxgen.log"

log "orderers"
for i in 1 2 3; do start_orderer "$i"; done
for i in 1 2 3; do wait_healthz "$(orderer_ops_port "$i")" "orderer$i"; done
admin="$(orderer_org_dir)/users/Admin@example.com/tls"
for i in 1 2 3; do
    osnadmin channel join --channelID "$CHANNEL" --config-block "$RUN/channel/$CHANNEL.block" \
        -o "$HOST:$(orderer_admin_port "$i")" --ca-file "$(orderer_ca)" \
        --client-cert "$admin/client.crt" --client-key "$admin/client.key" >>"$LOGS/osnadmin.log" 2>&1 ||
        die "orderer$i could not join $CHANNEL; see $LOGS/osnadmin.log"
done

log "peers"
for n in 1 2; do start_peer "$n"; done
for n in 1 2; do wait_healthz "$(peer_ops_port "$n")" "peer0.org$n"; done
for n in 1 2; do
    use_org "$n"
    retry 10 peer channel join -b "$RUN/channel/$CHANNEL.block" 2>>"$LOGS/cli.log" ||
        die "peer0.org$n could not join $CHANNEL; see $LOGS/cli.log"
done

log "chaincode $CC_NAME (ccaas, one server per org)"
"$NET_DIR/deploy-chaincode.sh"

"$PY" "$NET_DIR/tools.py" network-json "$RUN" 1 2
log "waiting until each gateway can plan endorsements by both orgs (gossip discovery)"
"$PY" "$NET_DIR/tools.py" wait-endorsable "$RUN" 90 2>>"$LOGS/cli.log" || die "endorsement never became possible; see $LOGS/cli.log"
date -u +%FT%TZ >"$RUN/BUILT"
rm -f "$RUN/RESTARTING"
date -u +%FT%TZ >"$RUN/READY"
log "network up in $(($(date +%s) - t0))s: $RUN/network.json"
