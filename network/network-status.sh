#!/usr/bin/env bash
# make network-status: per-process health (each orderer, peer, chaincode server: up/down, port, /healthz,
# the Raft leader), channel heights per peer, committed chaincode definition.
set -eu
. "$(dirname "$0")/lib.sh"
[ -d "$RUN" ] || { echo "network: not created ($RUN missing)"; exit 1; }
load_fabric
ORGS=$(cat "$RUN/orgs" 2>/dev/null || echo "1 2")
state=READY
[ -f "$RUN/READY" ] || state="NOT READY"
[ -f "$RUN/RESTARTING" ] && state="RESTARTING"
echo "network: $state ($RUN)"
echo "processes (address, pid, up/down, /healthz, Raft role):"
if [ -f "$RUN/network.json" ]; then
    "$PY" "$NET_DIR/health.py" "$RUN"
else
    echo "  no network.json yet: network-up has not finished"
fi
echo "channel $CHANNEL heights:"
for n in $ORGS; do
    use_org "$n"
    h=$(peer channel getinfo -c "$CHANNEL" 2>/dev/null | sed -n 's/.*"height":\([0-9]*\).*/\1/p')
    printf '  %-18s %s\n' "peer0.org$n" "${h:-unknown}"
done
echo "chaincode definition:"
use_org 1
peer lifecycle chaincode querycommitted -C "$CHANNEL" -n "$CC_NAME" 2>&1 | sed 's/^/  /'
