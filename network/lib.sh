# Shared settings and helpers for the network scripts. Sourced, never run.
# Everything listens on 127.0.0.1; all state lives under run/network.
# shellcheck shell=bash disable=SC2034

NET_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NET_DIR="$NET_ROOT/network"
RUN="${FEDLEDGER_NETWORK_DIR:-$NET_ROOT/run/network}"
ORGS_DIR="$RUN/organizations"
LOGS="$RUN/logs"
PIDS="$RUN/pids"
HOST=127.0.0.1
CHANNEL=mychannel
CC_NAME=${CC_NAME:-fedledger}
CC_VERSION=${CC_VERSION:-1.0}
CC_SEQUENCE=${CC_SEQUENCE:-1}
CC_LABEL="${CC_NAME}_$CC_VERSION"
PY="${PYTHON:-$NET_ROOT/.venv/bin/python}"
# The helpers (tools.py, admit.py) and chaincode servers import this checkout's fedledger, not whichever
# checkout the venv was installed from (a script run by path would otherwise see only site-packages).
export PYTHONPATH="$NET_ROOT${PYTHONPATH:+:$PYTHONPATH}"
# gRPC limit for peers and chaincode servers: 50 MB+ transient payloads must get through.
MAX_MSG_BYTES=$((256 * 1024 * 1024))
BATCH_TIMEOUT=${FEDLEDGER_BATCH_TIMEOUT:-50ms}  # p50 88 ms vs 235 ms at 200 ms (bench/commit_latency.py)

# Ports (all shifted by FEDLEDGER_PORT_OFFSET, so a second network can run beside the first;
# network/tools.py network-json uses the same table). Orderer N: listen/cluster, admin, operations.
PORT_OFFSET=${FEDLEDGER_PORT_OFFSET:-0}
orderer_port() { echo $((PORT_OFFSET + 7050 + ($1 - 1) * 100)); }
orderer_admin_port() { echo $((PORT_OFFSET + 7053 + ($1 - 1) * 100)); }
orderer_ops_port() { echo $((PORT_OFFSET + 9443 + $1 - 1)); }
# Peer of org N: 7051 / 9051 / 11051, its chaincode listener +1, operations 9446 / 9447 / 9448.
peer_port() { echo $((PORT_OFFSET + 5051 + $1 * 2000)); }
peer_cc_port() { echo $((PORT_OFFSET + 5052 + $1 * 2000)); }
peer_ops_port() { echo $((PORT_OFFSET + 9445 + $1)); }
# Chaincode servers: fedledger on 7999 / 9999 / 11999; another chaincode (tests) sets CC_PORT_DELTA.
# The delta of a deployed chaincode is kept in run/network/chaincode/NAME/port_delta.
ccserver_port() {
    local d=${CC_PORT_DELTA:-}
    [ -n "$d" ] || d=$(cat "$RUN/chaincode/$CC_NAME/port_delta" 2>/dev/null || echo 0)
    echo $((PORT_OFFSET + 5999 + $1 * 2000 - d))
}
# Process name and state dir of org N's server for chaincode $CC_NAME.
cc_proc() { if [ "$CC_NAME" = fedledger ]; then echo "ccserver.org$1"; else echo "ccserver-$CC_NAME.org$1"; fi; }
cc_dir() { echo "$RUN/chaincode/$CC_NAME/org$1"; }

log() { echo "[network] $*" >&2; }
die() { echo "[network] ERROR: $*" >&2; exit 1; }

load_fabric() {
    [ -f "$NET_ROOT/fabric-bin/paths.env" ] || "$NET_DIR/fabric-bin.sh"
    # shellcheck disable=SC1091
    . "$NET_ROOT/fabric-bin/paths.env"
    export PATH="$FABRIC_BIN_DIR:$PATH"
}

org_domain() { echo "org$1.example.com"; }
org_msp() { echo "Org$1MSP"; }
peer_host() { echo "peer0.org$1.example.com"; }
org_dir() { echo "$ORGS_DIR/peerOrganizations/org$1.example.com"; }
orderer_org_dir() { echo "$ORGS_DIR/ordererOrganizations/example.com"; }
orderer_dir() { echo "$(orderer_org_dir)/orderers/orderer$1.example.com"; }
orderer_ca() { echo "$(orderer_org_dir)/tlsca/tlsca.example.com-cert.pem"; }
peer_tls_ca() { echo "$(org_dir "$1")/tlsca/tlsca.org$1.example.com-cert.pem"; }

# use_org N [User]: switch the peer CLI to Admin@ (or another user) of org N.
use_org() {
    local n=$1 user=${2:-Admin}
    local home
    home="$(org_dir "$n")/users/$user@org$n.example.com"
    FABRIC_CFG_PATH="$RUN/config/peer"
    CORE_PEER_TLS_ENABLED=true
    CORE_PEER_LOCALMSPID=$(org_msp "$n")
    CORE_PEER_MSPCONFIGPATH="$home/msp"
    CORE_PEER_TLS_ROOTCERT_FILE=$(peer_tls_ca "$n")
    CORE_PEER_ADDRESS="$HOST:$(peer_port "$n")"
    # Mutual-TLS identity for the CLI's client connections.
    CORE_PEER_TLS_CLIENTCERT_FILE="$home/tls/client.crt"
    CORE_PEER_TLS_CLIENTKEY_FILE="$home/tls/client.key"
    export FABRIC_CFG_PATH CORE_PEER_TLS_ENABLED CORE_PEER_LOCALMSPID CORE_PEER_MSPCONFIGPATH \
        CORE_PEER_TLS_ROOTCERT_FILE CORE_PEER_ADDRESS CORE_PEER_TLS_CLIENTCERT_FILE CORE_PEER_TLS_CLIENTKEY_FILE
}

orderer_args() {
    echo "-o $HOST:$(orderer_port 1) --ordererTLSHostnameOverride orderer1.example.com --tls --cafile $(orderer_ca)"
}

pid_alive() { [ -f "$PIDS/$1.pid" ] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }

# start_bg NAME CMD...: run CMD detached, log to logs/NAME.log, pid in pids/NAME.pid.
start_bg() {
    local name=$1
    shift
    mkdir -p "$LOGS" "$PIDS"
    if pid_alive "$name"; then
        log "$name already running (pid $(cat "$PIDS/$name.pid"))"
        return 0
    fi
    setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
    echo $! >"$PIDS/$name.pid"
    log "started $name (pid $!)"
}

# stop_pid NAME: SIGTERM then SIGKILL exactly the recorded process.
stop_pid() {
    local name=$1 pid i
    [ -f "$PIDS/$name.pid" ] || return 0
    pid=$(cat "$PIDS/$name.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        log "stopped $name (pid $pid)"
    fi
    rm -f "$PIDS/$name.pid"
}

# port_free PORT: nothing listens on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# wait_healthz PORT NAME [SECONDS]: poll the operations endpoint until it answers 200.
wait_healthz() {
    local port=$1 name=$2 limit=${3:-60} i
    for i in $(seq 1 $((limit * 5))); do
        if curl -sf "http://$HOST:$port/healthz" >/dev/null 2>&1; then return 0; fi
        if ! pid_alive "$name"; then die "$name exited; see $LOGS/$name.log"; fi
        sleep 0.2
    done
    die "$name not healthy after ${limit}s; see $LOGS/$name.log"
}

# wait_port PORT NAME [SECONDS]: wait until a TCP listener is up.
wait_port() {
    local port=$1 name=$2 limit=${3:-30} i
    for i in $(seq 1 $((limit * 5))); do
        if ! port_free "$port"; then return 0; fi
        if ! pid_alive "$name"; then die "$name exited; see $LOGS/$name.log"; fi
        sleep 0.2
    done
    die "$name not listening on $port after ${limit}s; see $LOGS/$name.log"
}

# retry N CMD...: run CMD up to N times, one second apart (for joins racing leader election).
retry() {
    local n=$1 i
    shift
    for i in $(seq 1 "$n"); do
        if "$@"; then return 0; fi
        sleep 1
    done
    return 1
}

# wait_chaincode N: the peer of org N reaches its $CC_NAME server and gets a contract answer
# (an unknown function must come back as the contract's own [CODE] error).
wait_chaincode() {
    local n=$1 out i
    use_org "$n" User1
    for i in $(seq 1 30); do
        out=$(peer chaincode query -C "$CHANNEL" -n "$CC_NAME" -c '{"Args":["__fedledger_ping__"]}' 2>&1 || true)
        case "$out" in *"[NOT_FOUND]"*) return 0 ;; esac
        sleep 1
    done
    die "peer0.org$n cannot run chaincode $CC_NAME: $out"
}

# start_ccserver N: (re)start org N's server for $CC_NAME from its existing package. A server of
# ours that is alive but not listening (e.g. shutting down) is stopped first.
start_ccserver() {
    local n=$1 port proc
    port=$(ccserver_port "$n")
    proc=$(cc_proc "$n")
    if pid_alive "$proc" && ! port_free "$port"; then
        log "$proc already running (pid $(cat "$PIDS/$proc.pid"))"
        return 0
    fi
    stop_pid "$proc"
    # A stale server on the same port would keep receiving the peer's stream (SO_REUSEPORT).
    port_free "$port" || die "port $port is taken by a process this network did not start; stop it first"
    start_bg "$proc" "$NET_DIR/chaincode-server.sh" "$n"
    wait_port "$port" "$proc" 60
}

# deployed_chaincodes: names of the chaincodes deployed by these scripts.
deployed_chaincodes() {
    local d
    for d in "$RUN"/chaincode/*/; do [ -d "$d" ] && basename "$d"; done
    return 0
}
