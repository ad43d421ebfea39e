#!/usr/bin/env bash
# One command for the comparison benchmark (see bench/README.md):
#   bench/compare.sh [--rounds N] [--run-seconds S] [--protocols h1 h2 h1tls h2tls handshake]
#                    [--targets ...] [--handshake-rate N] [--out DIR] [--no-readme]
# Installs nginx, HAProxy, h2load and openssl (Debian) and matplotlib (PyPI) if
# missing, builds sluice in release mode, then runs bench/compare.py, which
# writes bench/results/latest.{md,json,png} and copies the table into README.md.
# TLS (h1tls, h2tls, handshake; on by default) uses one certificate made with
# openssl at the start of the run for every proxy; see bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v haproxy >/dev/null || need+=(haproxy)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v taskset >/dev/null || need+=(util-linux)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "${need[@]}"
    # The packages start system services; the benchmark runs its own.
    $sudo systemctl disable --now nginx haproxy 2>/dev/null || $sudo service nginx stop 2>/dev/null || true
fi
python3 -c "import matplotlib" 2>/dev/null || python3 -m pip install --quiet matplotlib
[ "$(nproc)" -ge 2 ] || { echo "needs two cores: the proxy on one, load and upstream on the other"; exit 1; }
cargo build --release -p sluice
exec python3 bench/compare.py "$@"
