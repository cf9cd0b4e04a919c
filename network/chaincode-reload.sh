#!/usr/bin/env bash
# make chaincode-reload: restart every org's server of chaincode $CC_NAME (default fedledger) so it
# serves the current contract code. Each server finishes its in-flight transactions first.
# RESTARTING exists while it runs; the definition, packages and ledgers are untouched.
set -eu
. "$(dirname "$0")/lib.sh"
load_fabric
[ -f "$RUN/BUILT" ] || die "no network: run make network-up first"
echo "reloading chaincode $CC_NAME servers $(date -u +%FT%TZ)" >"$RUN/RESTARTING"
ORGS=$(cat "$RUN/orgs")
for n in $ORGS; do
    stop_pid "$(cc_proc "$n")"
    start_ccserver "$n"
    wait_chaincode "$n"
done
rm -f "$RUN/RESTARTING"
log "chaincode $CC_NAME servers reloaded"
