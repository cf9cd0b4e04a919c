#!/usr/bin/env bash
# make network-down: stop exactly the processes recorded under run/network/pids, remove run/network.
set -eu
. "$(dirname "$0")/lib.sh"
if [ -d "$PIDS" ]; then
    # Chaincode servers and peers first, orderers last, then anything else recorded.
    for f in "$PIDS"/ccserver*.pid "$PIDS"/peer*.pid "$PIDS"/orderer*.pid "$PIDS"/*.pid; do
        [ -f "$f" ] || continue
        stop_pid "$(basename "$f" .pid)"
    done
fi
rm -rf "$RUN"
log "network down"
