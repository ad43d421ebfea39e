#!/usr/bin/env bash
# Head-of-line blocking by a spinning filter: the good route's latency with
# one worker thread while another route's filter spins to a 500 ms CPU
# deadline on every request (see bench/head-of-line.py).
#   bench/head-of-line.sh [--before OLD_BINARY] [--requests N] [--rounds N]
# Builds sluice in release mode and the test filters (for hostile.wasm).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p sluice
[ -f target/wasm-components/wasm32-wasip2/plugin/hostile.wasm ] || cargo test -p sluice --test hostile_filters --no-run
exec python3 bench/head-of-line.py "$@"
