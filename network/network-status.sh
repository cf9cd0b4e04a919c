#!/usr/bin/env bash
# make network-status: processes, channel heights per peer, committed chaincode definition.
set -eu
. "$(dirname "$0")/lib.sh"
[ -d "$RUN" ] || { echo "network: not created ($RUN missing)"; exit 1; }
load_fabric
ORGS=$(cat "$RUN/orgs" 2>/dev/null || echo "1 2")
state=READY
[ -f "$RUN/READY" ] || state="NOT READY"
[ -f "$RUN/RESTARTING" ] && state="RESTARTING"
echo "network: $state ($RUN)"
echo "processes:"
for f in "$PIDS"/*.pid; do
    [ -f "$f" ] || continue
    name=$(basename "$f" .pid)
    if pid_alive "$name"; then s="up"; else s="DOWN"; fi
    printf '  %-32s pid %-8s %s\n' "$name" "$(cat "$f")" "$s"
done
echo "health:"
for i in 1 2 3; do
    printf '  %-18s %s\n' "orderer$i" "$(curl -s "http://$HOST:$(orderer_ops_port "$i")/healthz" || echo unreachable)"
done
for n in $ORGS; do
    printf '  %-18s %s\n' "peer0.org$n" "$(curl -s "http://$HOST:$(peer_ops_port "$n")/healthz" || echo unreachable)"
done
echo "channel $CHANNEL heights:"
for n in $ORGS; do
    use_org "$n"
    h=$(peer channel getinfo -c "$CHANNEL" 2>/dev/null | sed -n 's/.*"height":\([0-9]*\).*/\1/p')
    printf '  %-18s %s\n' "peer0.org$n" "${h:-unknown}"
done
echo "chaincode definition:"
use_org 1
peer lifecycle chaincode querycommitted -C "$CHANNEL" -n "$CC_NAME" 2>&1 | sed 's/^/  /'
