#!/usr/bin/env bash
# Where a proxy's CPU goes on one request path, from a perf profile:
#   bench/profile.sh [target] [h1|h2] [rate] [seconds]
# Starts the same upstream and sluice configuration as bench/compare.py (proxy
# on core 1, one thread; upstream and h2load on core 0), records the proxy with
# `perf record -e cpu-clock -g` (hardware counters are not available on these
# VMs) while h2load sends a fixed rate, and prints the share of samples by
# component (kernel, Wasm JIT code, wasmtime, hyper/h2/http, tokio, sluice,
# libc allocator/memcpy) and the top symbols. Needs `perf` (Debian
# linux-perf); run bench/compare.sh once first for the other tools. The
# recording stays in $PERF_DATA (default /tmp/sluice-profile.perf) for
# `perf report -i`. Targets: sluice, sluice-4-filters, nginx, haproxy.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${1:-sluice-4-filters}
PROTO=${2:-h1}
RATE=${3:-6000}
SECONDS_=${4:-10}
command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)"; exit 1; }
if [ -z "${SLUICE_BIN:-}" ]; then
    cargo build --release -p sluice 2>&1 | tail -1
    SLUICE_BIN=target/release/sluice
fi
SLUICE_BIN=$(realpath "$SLUICE_BIN")
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; rm -rf "$WORK"' EXIT
python3 - "$WORK" <<'PY'
import sys; sys.path.insert(0, "bench")
from pathlib import Path
import compare
compare.write_configs(Path(sys.argv[1]))
Path(sys.argv[1], "token").write_text(compare.jwt())
PY
taskset -c 0 nginx -p "$WORK" -c "$WORK/upstream.conf" > "$WORK/upstream.log" 2>&1 &
case $TARGET in
    sluice|sluice-4-filters)
        SLUICE_WASM_PERF_MAP=1 RUST_LOG=warn taskset -c 1 "$SLUICE_BIN" run --threads 1 --config "$WORK/$TARGET.toml" > "$WORK/proxy.log" 2>&1 &
        PROXY=$!; sleep 1.5 ;;
    nginx)
        taskset -c 1 nginx -p "$WORK" -c "$WORK/nginx.conf" > "$WORK/proxy.log" 2>&1 &
        sleep 1.5; PROXY=$(pgrep -P $!) ;;  # the worker
    haproxy)
        taskset -c 1 haproxy -db -f "$WORK/haproxy.cfg" > "$WORK/proxy.log" 2>&1 &
        PROXY=$!; sleep 1.5 ;;
    *) echo "unknown target $TARGET (sluice, sluice-4-filters, nginx, haproxy)"; exit 1 ;;
esac
if [ "$PROTO" = h1 ]; then SHAPE=(--h1 -c 16 -m 1); PORT=18100; CLIENTS=16; else SHAPE=(-c 4 -m 16); PORT=18101; CLIENTS=4; fi
N=$((RATE * (SECONDS_ + 3)))
taskset -c 0 h2load "${SHAPE[@]}" --rps $((RATE / CLIENTS)) -n $N -H "authorization: Bearer $(cat "$WORK/token")" \
    "http://127.0.0.1:$PORT/bench/item?id=42" > "$WORK/h2load.out" 2>&1 &
LOAD=$!
sleep 1.5
PERF_DATA=${PERF_DATA:-/tmp/sluice-profile.perf}
perf record -q -F 4000 -e cpu-clock --call-graph ${CALL_GRAPH:-fp} -p "$PROXY" -o "$PERF_DATA" -- sleep "$SECONDS_" 2>/dev/null
wait $LOAD
grep -E "^requests:|^status codes:" "$WORK/h2load.out"
perf report -i "$PERF_DATA" --no-children --sort dso,sym --stdio -g none 2>/dev/null > "$WORK/report.txt"
python3 - "$WORK/report.txt" "$TARGET" "$PROTO" "$RATE" "$(basename "$SLUICE_BIN")" <<'PY'
import re, sys
from collections import Counter
path, target, proto, rate, sluice_dso = sys.argv[1:]
rows = []
for line in open(path):
    m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)", line)
    if m:
        rows.append((float(m.group(1)), m.group(2), m.group(4).strip()))

def component(dso, sym):
    if dso.startswith("[kernel"):
        return "kernel (TCP loopback, epoll, scheduler)"
    if dso in ("[unknown]", "[anon]") or dso.endswith(".cwasm") or dso.startswith(("[JIT]", "jitted", "perf-", "memfd")):
        return "Wasm JIT code (the filters themselves)"
    if dso.startswith("libc") or dso == "[vdso]" or dso.startswith("libm"):
        return "libc (malloc/free, memcpy) and vdso"
    for prefix, name in [("wasmtime", "wasmtime runtime + host-call glue"), ("cranelift", "wasmtime runtime + host-call glue"),
                         ("sluice::wasm", "wasmtime runtime + host-call glue"), ("<sluice::wasm", "wasmtime runtime + host-call glue"),
                         ("hyper", "hyper / h2 / http / httparse"), ("<hyper", "hyper / h2 / http / httparse"),
                         ("h2::", "hyper / h2 / http / httparse"), ("<h2::", "hyper / h2 / http / httparse"),
                         ("http::", "hyper / h2 / http / httparse"), ("<http::", "hyper / h2 / http / httparse"),
                         ("httparse", "hyper / h2 / http / httparse"), ("tokio", "tokio runtime"), ("<tokio", "tokio runtime"),
                         ("sluice", "sluice (router, forwarding, telemetry)"), ("<sluice", "sluice (router, forwarding, telemetry)")]:
        if sym.startswith(prefix):
            return name
    if dso == sluice_dso:
        return "other Rust code in the binary (std, bytes, hashing, futures)"
    return f"{dso} (the proxy's own code)"

by = Counter()
for pct, dso, sym in rows:
    by[component(dso, sym)] += pct
print(f"\nperf profile of {target}, {proto}, {rate} req/s: share of the proxy's CPU samples")
for name, pct in by.most_common():
    print(f"  {pct:5.1f}%  {name}")
print("\ntop symbols:")
for pct, dso, sym in sorted(rows, reverse=True)[:25]:
    print(f"  {pct:5.2f}%  {dso:<18} {sym[:110]}")
PY
