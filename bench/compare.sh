#!/usr/bin/env bash
# One command for the comparison benchmark (see bench/README.md):
#   bench/compare.sh [--rounds N] [--run-seconds S] [--protocols h1 h2 h1tls h2tls handshake]
#                    [--targets ...] [--handshake-rate N] [--idle-connections N] [--out DIR] [--no-readme]
# Installs nginx, HAProxy, h2load, openssl and cmake (Debian) and matplotlib and
# h2 (PyPI) if missing, builds sluice in release mode and, when the pingora
# target is selected (it is by default), the Pingora proxy in bench/pingora
# into target/pingora, then runs bench/compare.py, which writes
# bench/results/latest.{md,json,png} and copies the table into README.md.
# TLS (h1tls, h2tls, handshake; on by default) uses one certificate made with
# openssl at the start of the run for every proxy; see bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# pingora runs unless --targets is given without it.
pingora=1
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    [ "${args[i]}" = --targets ] || continue
    pingora=0
    for ((j = i + 1; j < ${#args[@]}; j++)); do
        case "${args[j]}" in --*) break ;; pingora) pingora=1 ;; esac
    done
done
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v haproxy >/dev/null || need+=(haproxy)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v taskset >/dev/null || need+=(util-linux)
command -v openssl >/dev/null || need+=(openssl)
# pingora-core builds zlib-ng with cmake.
[ $pingora = 0 ] || command -v cmake >/dev/null || need+=(cmake)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "${need[@]}"
    # The packages start system services; the benchmark runs its own.
    $sudo systemctl disable --now nginx haproxy 2>/dev/null || $sudo service nginx stop 2>/dev/null || true
fi
python3 -c "import matplotlib" 2>/dev/null || python3 -m pip install --quiet matplotlib
python3 -c "import h2" 2>/dev/null || python3 -m pip install --quiet h2  # idle h2c connections
[ "$(nproc)" -ge 2 ] || { echo "needs two cores: the proxy on one, load and upstream on the other"; exit 1; }
cargo build --release -p sluice
# Its own project (not in the workspace) and its own target directory.
[ $pingora = 0 ] || cargo build --release --manifest-path bench/pingora/Cargo.toml --target-dir target/pingora
exec python3 bench/compare.py "$@"
