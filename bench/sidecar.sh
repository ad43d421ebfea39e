#!/usr/bin/env bash
# Sidecar benchmark (see bench/sidecar.py and bench/README.md): two pods
# (network namespaces on a veth pair), B's app behind both sidecars, load
# from A with h2load; direct vs through the sidecars vs with filter routes,
# and the sidecars' idle CPU and RSS. Must run as root.
#   bench/sidecar.sh [--rounds N] [--rate R] [--requests N] [--idle-seconds S]
#                    [--protocols h1 h2] [--out DIR]
# Installs h2load (nghttp2-client), ip (iproute2) and iptables (Debian) if
# missing, builds sluice in release mode, then runs bench/sidecar.py, which
# writes bench/results/sidecar.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root: network namespaces, iptables and SO_MARK need it" >&2; exit 1; }
need=()
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v ip >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need[@]}"
fi
cargo build --release -p sluice
export SIDECAR_BENCH_COMMAND="bench/sidecar.sh $*"
exec python3 bench/sidecar.py "$@"
