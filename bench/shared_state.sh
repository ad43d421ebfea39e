#!/usr/bin/env bash
# The rate-limit filter with the Redis shared-state backend against the
# memory backend (see bench/shared_state.py and bench/README.md):
#   bench/shared_state.sh [--rounds N] [--seconds S] [--rates R ...] [--protocols h1 h2]
#                         [--redis-core C] [--check-limit N] [--check-requests N] [--out DIR]
# Installs redis-server (and redis-cli), nginx, h2load and taskset (Debian)
# if missing, builds sluice in release mode, then runs bench/shared_state.py,
# which writes bench/results/shared_state.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v nginx >/dev/null || need+=(nginx-light)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "${need[@]}"
    # The packages start system services; the benchmark runs its own.
    $sudo systemctl disable --now nginx redis-server 2>/dev/null || { $sudo service nginx stop; $sudo service redis-server stop; } 2>/dev/null || true
fi
[ "$(nproc)" -ge 2 ] || { echo "needs two cores: sluice on one, load, upstream and Redis on the other"; exit 1; }
cargo build --release -p sluice
exec python3 bench/shared_state.py "$@"
