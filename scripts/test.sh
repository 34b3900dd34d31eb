#!/usr/bin/env bash
# The test command (README): installs the real test peers this machine lacks, then runs
# every test. Tests start their servers themselves on loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
for installer in scripts/peers/install-*.sh; do
  [ -e "$installer" ] || continue
  bash "$installer"
done
# In CI a test whose server cannot start must fail, never skip.
export LATCHKEY_REQUIRE_PEERS="${LATCHKEY_REQUIRE_PEERS:-${CI:-}}"
cargo test --all-targets --no-fail-fast "$@"
