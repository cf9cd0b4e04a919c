#!/usr/bin/env bash
# shellcheck disable=SC2034  # the settings are exported by `set -a`
# Runs org N's chaincode server (chaincode as a service) for $CC_NAME (default fedledger) in the
# foreground. The peer of org N dials it with mutual TLS on first use.
set -eu
. "$(dirname "$0")/lib.sh"
n=$1
cc=$(cc_dir "$n")
[ -f "$cc/package_id" ] || die "org$n chaincode $CC_NAME not packaged yet ($cc/package_id)"
set -a  # everything assigned below is exported to the process
CHAINCODE_ID=$(cat "$cc/package_id")
CHAINCODE_SERVER_ADDRESS="$HOST:$(ccserver_port "$n")"
CHAINCODE_TLS_KEY="$cc/tls/server.key"
CHAINCODE_TLS_CERT="$cc/tls/server.crt"
CHAINCODE_TLS_CLIENT_CA="$(peer_tls_ca "$n")"
CHAINCODE_MAX_MESSAGE_BYTES=$MAX_MSG_BYTES
FEDLEDGER_LOG_LEVEL=${FEDLEDGER_LOG_LEVEL:-INFO}
# One BLAS thread: endorsement math is small and serial, and on a busy host OpenBLAS's pool of
# spinning threads made update_features 10-100x slower (bench/aggregation_latency_notes.md).
OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
if [ -f "$cc/contract" ]; then FEDLEDGER_CONTRACT=$(cat "$cc/contract"); fi
exec "$PY" -m fedledger.chaincode.fabric
