#!/usr/bin/env bash
# shellcheck disable=SC2034  # the settings are exported by `set -a`
# Runs peer0 of org N in the foreground. network-up.sh / add-org.sh start it in the background.
set -eu
. "$(dirname "$0")/lib.sh"
load_fabric
n=$1
host=$(peer_host "$n")
dir="$(org_dir "$n")/peers/$host"
data="$RUN/nodes/$host"
mkdir -p "$data"
set -a  # everything assigned below is exported to the process
FABRIC_CFG_PATH="$RUN/config/peer"
FABRIC_LOGGING_SPEC=${FABRIC_LOGGING_SPEC:-INFO}
CORE_PEER_ID=$host
CORE_PEER_LOCALMSPID=$(org_msp "$n")
CORE_PEER_MSPCONFIGPATH="$dir/msp"
CORE_PEER_ADDRESS="$HOST:$(peer_port "$n")"
CORE_PEER_LISTENADDRESS="$HOST:$(peer_port "$n")"
CORE_PEER_CHAINCODEADDRESS="$HOST:$(peer_cc_port "$n")"
CORE_PEER_CHAINCODELISTENADDRESS="$HOST:$(peer_cc_port "$n")"
CORE_PEER_GOSSIP_BOOTSTRAP="$HOST:$(peer_port "$n")"
CORE_PEER_GOSSIP_EXTERNALENDPOINT="$HOST:$(peer_port "$n")"
CORE_PEER_FILESYSTEMPATH="$data/ledger"
CORE_LEDGER_SNAPSHOTS_ROOTDIR="$data/snapshots"
CORE_PEER_TLS_ENABLED=true
CORE_PEER_TLS_CERT_FILE="$dir/tls/server.crt"
CORE_PEER_TLS_KEY_FILE="$dir/tls/server.key"
CORE_PEER_TLS_ROOTCERT_FILE="$dir/tls/ca.crt"
CORE_PEER_MAXRECVMSGSIZE=$MAX_MSG_BYTES
CORE_PEER_MAXSENDMSGSIZE=$MAX_MSG_BYTES
CORE_OPERATIONS_LISTENADDRESS="$HOST:$(peer_ops_port "$n")"
CORE_METRICS_PROVIDER=prometheus
# The peer connects to each org's chaincode server itself (ccaas); no Docker anywhere.
CORE_CHAINCODE_EXECUTETIMEOUT=${FEDLEDGER_CC_EXECUTE_TIMEOUT:-120s}
exec peer node start
