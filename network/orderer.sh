#!/usr/bin/env bash
# shellcheck disable=SC2034  # the settings are exported by `set -a`
# Runs Raft orderer N (1..3) in the foreground. network-up.sh starts it in the background.
set -eu
. "$(dirname "$0")/lib.sh"
load_fabric
n=$1
dir=$(orderer_dir "$n")
data="$RUN/nodes/orderer$n"
mkdir -p "$data"
set -a  # everything assigned below is exported to the process
FABRIC_CFG_PATH="$RUN/config/orderer"
FABRIC_LOGGING_SPEC=${FABRIC_LOGGING_SPEC:-INFO}
ORDERER_GENERAL_LISTENADDRESS=$HOST
ORDERER_GENERAL_LISTENPORT=$(orderer_port "$n")
ORDERER_GENERAL_LOCALMSPID=OrdererMSP
ORDERER_GENERAL_LOCALMSPDIR="$dir/msp"
ORDERER_GENERAL_BOOTSTRAPMETHOD=none
ORDERER_GENERAL_TLS_ENABLED=true
ORDERER_GENERAL_TLS_PRIVATEKEY="$dir/tls/server.key"
ORDERER_GENERAL_TLS_CERTIFICATE="$dir/tls/server.crt"
ORDERER_GENERAL_TLS_ROOTCAS="[$dir/tls/ca.crt]"
ORDERER_GENERAL_CLUSTER_CLIENTCERTIFICATE="$dir/tls/server.crt"
ORDERER_GENERAL_CLUSTER_CLIENTPRIVATEKEY="$dir/tls/server.key"
ORDERER_GENERAL_CLUSTER_ROOTCAS="[$dir/tls/ca.crt]"
ORDERER_CHANNELPARTICIPATION_ENABLED=true
ORDERER_ADMIN_LISTENADDRESS="$HOST:$(orderer_admin_port "$n")"
ORDERER_ADMIN_TLS_ENABLED=true
ORDERER_ADMIN_TLS_PRIVATEKEY="$dir/tls/server.key"
ORDERER_ADMIN_TLS_CERTIFICATE="$dir/tls/server.crt"
ORDERER_ADMIN_TLS_ROOTCAS="[$dir/tls/ca.crt]"
ORDERER_ADMIN_TLS_CLIENTAUTHREQUIRED=true
ORDERER_ADMIN_TLS_CLIENTROOTCAS="[$dir/tls/ca.crt]"
ORDERER_OPERATIONS_LISTENADDRESS="$HOST:$(orderer_ops_port "$n")"
ORDERER_METRICS_PROVIDER=prometheus
ORDERER_FILELEDGER_LOCATION="$data/ledger"
ORDERER_CONSENSUS_WALDIR="$data/etcdraft/wal"
ORDERER_CONSENSUS_SNAPDIR="$data/etcdraft/snapshot"
exec orderer
