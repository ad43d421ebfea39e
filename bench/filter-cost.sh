#!/usr/bin/env bash
# Per-request proxy CPU cost of the filter chain: the same requests (with a
# JWT) through routes with no filter, each built-in filter alone (rate-limit
# after auth, which gives it its key) and the four-filter chain auth →
# rate-limit → header-rewrite → traffic-split, interleaved over several
# rounds in one run. Method (see ../../shared/field-notes.md): fixed request
# count at a fixed rate below capacity (h2load --rps), proxy pinned to one
# core with one worker thread, load generator and upstream on the other, and
# the proxy's utime+stime from /proc/PID/stat before and after.
#
#   bench/filter-cost.sh [requests-per-run] [rounds]      (ROUTES="none chain4" to narrow)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
ROUNDS=${2:-5}
RATE_PER_CLIENT=${RATE:-250}   # per client; 4 clients → 1000 req/s, far below one core's capacity
command -v h2load >/dev/null || { echo "needs h2load (apt-get install nghttp2-client)"; exit 1; }
cargo build --release -p sluice 2>&1 | tail -1
BIN=target/release/sluice
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT

# A JWT for the auth filter (HS256, valid for a day), as bench/compare.py mints it.
TOKEN=$(python3 -c 'import sys; sys.path.insert(0, "bench"); import compare; print(compare.jwt())')

AUTH='plugin = "auth"
config.jwt = { issuers = ["bench"], audiences = ["api"], keys = [{ kid = "bench", alg = "HS256", secret = "bench-secret-bench-secret-0123456789" }] }'
RATE_LIMIT='plugin = "rate-limit"
config = { key = ["context:auth.subject"], limits = [{ requests = 1000000, per = "1s" }] }'
REWRITE='plugin = "header-rewrite"
config.request = { set = { "x-caller" = "${context.auth.subject}" }, remove = ["x-internal"] }
config.response = { set = { "x-served-by" = "sluice" } }'
SPLIT='plugin = "traffic-split"
clusters = ["up", "up2"]
config = { clusters = [{ cluster = "up", weight = 90 }, { cluster = "up2", weight = 10 }] }'

route() { # name, filter tables…
    local name=$1; shift
    printf '[[routes]]\nname = "%s"\npath_prefix = "/%s/"\ncluster = "up"\n' "$name" "$name"
    for f in "$@"; do printf '[[routes.filters]]\n%s\n' "$f"; done
}

{
cat <<TOML
plugins_dir = "plugins"
[[listeners]]
name = "bench"
address = "127.0.0.1:18080"
[[clusters]]
name = "up"
endpoints = ["127.0.0.1:19000"]
[[clusters]]
name = "up2"
endpoints = ["127.0.0.1:19000"]
TOML
route none
route auth "$AUTH"
route ratelimit "$AUTH" "$RATE_LIMIT"
route rewrite "$REWRITE"
route split "$SPLIT"
route chain4 "$AUTH" "$RATE_LIMIT" "$REWRITE" "$SPLIT"
} > "$WORK/bench.toml"
ROUTES=${ROUTES:-none auth ratelimit rewrite split chain4}

taskset -c 0 "$BIN" demo-upstream --listen 127.0.0.1:19000 2>/dev/null &
RUST_LOG=warn taskset -c 1 "$BIN" run --threads 1 --config "$WORK/bench.toml" &
PROXY=$!
sleep 2
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PROXY/stat"; }
TICK=$(getconf CLK_TCK)

run() { # route protocol → µs of proxy CPU per request
    local route=$1 proto=$2 flag=""
    [ "$proto" = h1 ] && flag="--h1"
    local before after
    before=$(cpu_ticks)
    taskset -c 0 h2load $flag -n "$N" -c 4 -m 1 --rps $RATE_PER_CLIENT -H "authorization: Bearer $TOKEN" "http://127.0.0.1:18080/$route/x" > "$WORK/out" 2>&1
    after=$(cpu_ticks)
    grep -q "succeeded, 0 failed, 0 errored, 0 timeout" "$WORK/out" || { cat "$WORK/out"; exit 1; }
    python3 -c "print(f'{($after - $before) / $TICK / $N * 1e6:.1f}')"
}

# Warm up each route (instance pools, upstream connections).
for r in $ROUTES; do run $r h1 >/dev/null; done

declare -A results
for round in $(seq "$ROUNDS"); do
    for proto in h1 h2; do
        for r in $ROUTES; do
            results[$proto-$r]+="$(run $r $proto) "
        done
    done
done

echo "proxy CPU per request (µs), $N requests × $ROUNDS rounds, $((RATE_PER_CLIENT * 4)) req/s, proxy on 1 core / 1 thread"
printf "%-4s %-10s %8s %8s %8s %s\n" proto route median min max "added vs none (median)"
for proto in h1 h2; do
    base=$(python3 -c "import statistics as s; print(s.median([float(x) for x in '${results[$proto-none]}'.split()]))")
    for r in $ROUTES; do
        python3 - "$proto" "$r" "$base" ${results[$proto-$r]} <<'PY'
import statistics, sys
proto, route, base, *xs = sys.argv[1:]
xs = [float(x) for x in xs]
m = statistics.median(xs)
print(f"{proto:<4} {route:<10} {m:8.1f} {min(xs):8.1f} {max(xs):8.1f} {m - float(base):+.1f}")
PY
    done
done
