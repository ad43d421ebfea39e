#!/usr/bin/env bash
# Hot-reload benchmark: write-to-serve latency (cache miss / hit) and memory
# after 100 reloads, against the release binary. See reload.py.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p sluice 2>&1 | tail -1
# Builds the test filters (version-1 / version-2) into target/wasm-components.
cargo build -p sluice-test-support 2>&1 | tail -1
exec python3 bench/reload.py "${1:-20}"
