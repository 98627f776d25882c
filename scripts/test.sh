#!/usr/bin/env bash
# The full test suite: every crate's unit, property, conformance and doc
# tests, then (when the Kafka driver is built) the real-broker tests against a
# tansu broker this script installs and starts on a free loopback port.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --all-targets
cargo test --workspace --doc

if [ -f scripts/test-broker.sh ] && [ -d transport-kafka ]; then
  # shellcheck source=/dev/null
  source scripts/test-broker.sh
  broker_start
  trap broker_stop EXIT
  FAUSTUS_TEST_KAFKA="$BROKER_ADDR" cargo test --workspace --all-targets -- --ignored
fi
