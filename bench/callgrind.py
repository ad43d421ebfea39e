"""Instructions per request: sluice under valgrind's callgrind, which counts
the instructions a process executes (user space only), so the figure does
not move with the machine's load the way CPU time does here.

    python3 bench/callgrind.py [--targets sluice,sluice-4-filters] \
        [--protocols h1,h2] [--requests 1000,4000] [--top 25] \
        [--peers nginx,haproxy] name=target/release/sluice [other=...]

For each binary, target and protocol it starts compare.py's upstream and
sluice config under callgrind twice, sends the smaller and then the larger
number of requests (h2load, 4 connections; the bench's GET with its bearer
token), after a first start that fills the compiled-filter cache, and reports (Ir of the larger run − Ir of the smaller) / (the
difference in requests): what one request costs, with start-up and
shutdown cancelled out. `--top N` also prints the N functions whose
per-request count differs most from the first binary's (or, with one binary,
the most expensive ones), by the same subtraction. `--keep DIR` leaves the
profiles there (`callgrind.<target>.<protocol>.<requests>.<binary's file name>.out`), for
`callgrind_annotate --tree=caller` and the like.

Valgrind cannot hold the default Wasm pool's address-space reservation, so
sluice runs with `SLUICE_WASM_POOL_INSTANCES=8` and the filter route with
`max_instances = 1` per filter. Filters run as Wasm compiled code, which
callgrind counts like any other code; their functions have no names here
(`???:0x…`) and are summed as "Wasm (compiled filters)". Needs valgrind
(`apt-get install valgrind`) besides compare.py's nginx and h2load.

Besides compare.py's `sluice` and `sluice-4-filters`, `--targets` takes
`sluice-filters-1` to `-3`, the filter route cut after its first 1 to 3
filters (auth, rate-limit, header-rewrite; traffic-split is the fourth):
the steps from `sluice` through them to `sluice-4-filters` are what each
filter adds where it runs in the chain. And `sluice-h2-upstream`, the
plain route with an HTTP/2 cluster (h2c to the upstream nginx's HTTP/2
port).

`--peers nginx,haproxy` counts the same for compare.py's nginx and HAProxy
proxies (nginx without its master process, so the one process under
callgrind is the one that serves), on the plain route: the instructions a
proxy written in C spends per request, for scale. Their symbols come from
the distribution's binaries; the totals do not need them.
"""

import argparse
import collections
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import compare

POOL_INSTANCES = "8"
WASM = "Wasm (compiled filters)"
PEERS = ("nginx", "haproxy")


def small_filter_config(work: Path) -> None:
    """The filter route with one instance per filter, within the small pool."""
    path = work / "sluice-4-filters.toml"
    text = path.read_text()
    text = re.sub(r'(\[\[routes\.filters\]\]\nplugin = "[^"]+")', r"\1\nmax_instances = 1", text)
    path.write_text(text)


def chain_prefix_configs(work: Path) -> None:
    """`sluice-filters-N.toml`: the filter route with only its first N
    filters (N = 1-3), so that the steps between them give each filter's
    share of the chain, counted where it runs in the chain."""
    text = (work / "sluice-4-filters.toml").read_text()
    entries = text.split("[[routes.filters]]")
    for n in range(1, len(entries) - 1):
        (work / f"sluice-filters-{n}.toml").write_text("[[routes.filters]]".join(entries[: n + 1]))


def h2_upstream_config(work: Path) -> None:
    """`sluice-h2-upstream.toml`: the plain route, its cluster speaking h2c
    to the upstream nginx's HTTP/2 port."""
    text = (work / "sluice.toml").read_text()
    cluster = f'name = "up"\nendpoints = ["127.0.0.1:{compare.UP_H1}"]'
    if cluster not in text:
        sys.exit("callgrind.py: compare.py's sluice config no longer has the cluster `up` as expected")
    h2 = f'name = "up"\nendpoints = ["127.0.0.1:{compare.UP_H2}"]\nprotocol = "http2"'
    (work / "sluice-h2-upstream.toml").write_text(text.replace(cluster, h2))


def proxy_command(binary: str, target: str, work: Path) -> list[str]:
    """How to start `target` (a sluice config, or a peer) in the foreground."""
    if target == "nginx":
        conf = work / "nginx-single.conf"
        conf.write_text((work / "nginx.conf").read_text().replace("master_process on;", "master_process off;"))
        return ["nginx", "-p", str(work), "-c", str(conf)]
    if target == "haproxy":
        return ["haproxy", "-db", "-f", str(work / "haproxy.cfg")]
    return [binary, "run", "--threads", "1", "--config", str(work / f"{target}.toml")]


def profile(binary: str, target: str, proto: str, requests: int, work: Path, token: str) -> Path:
    """Run a proxy under callgrind for `requests` requests; the profile's path."""
    out = work / f"callgrind.{target}.{proto}.{requests}.{Path(binary).name}.out"
    cmd = [
        "env", f"SLUICE_WASM_POOL_INSTANCES={POOL_INSTANCES}",
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--smc-check=all-non-file",
        *proxy_command(binary, target, work),
    ]
    proc = compare.start(cmd, compare.PROXY_CORE, work, "valgrind")
    port = compare.PX_H1 if proto == "h1" else compare.PX_H2
    shape = ["--h1", "-c", "4", "-m", "1"] if proto == "h1" else ["-c", "4", "-m", "4"]
    try:
        # Compiling the filters under valgrind takes minutes.
        compare.wait_port(port, proc, f"{target} under valgrind", seconds=600)
        compare.h2load(proto, port, token, ["-n", str(requests)], shape=shape)
    finally:
        # Also when h2load failed (it exits): no proxy left holding the port.
        compare.stop(proc)
    return out


def functions(path: Path) -> collections.Counter:
    """Exclusive Ir by function; compiled Wasm summed as one."""
    out = subprocess.run(["callgrind_annotate", "--threshold=100", str(path)], capture_output=True, text=True).stdout
    counts = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([\s\d.]+%\)\s+(.*)", line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        where = m.group(2).split(" [")[0]
        name = WASM if where.startswith("???:0x") else re.sub(r"^(\?\?\?|[^ ]*\.(c|S|h|rs)):", "", where, count=1)
        counts[name] += int(m.group(1).replace(",", ""))
    return counts


def per_request(binary: str, target: str, proto: str, counts: tuple[int, int], work: Path, token: str) -> collections.Counter:
    if target not in PEERS:
        # A first start compiles the filters into the cache (outside both counts).
        profile(binary, target, proto, 10, work, token)
    small, large = (functions(profile(binary, target, proto, n, work, token)) for n in counts)
    span = counts[1] - counts[0]
    return collections.Counter({k: (large[k] - small[k]) / span for k in set(small) | set(large)})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("binaries", nargs="+", help="name=path of each sluice binary")
    p.add_argument("--targets", default="sluice,sluice-4-filters")
    p.add_argument("--protocols", default="h1")
    p.add_argument("--requests", default="1000,4000")
    p.add_argument("--top", type=int, default=0)
    p.add_argument("--keep", type=Path, help="keep the configs and profiles in this directory")
    p.add_argument("--peers", default="", help="also count these proxies: nginx, haproxy")
    args = p.parse_args()
    binaries = [b.split("=", 1) for b in args.binaries]
    if any(len(b) != 2 or not Path(b[1]).is_file() for b in binaries):
        sys.exit("each binary is name=path to an existing file")
    binaries = [(name, str(Path(path).resolve())) for name, path in binaries]
    peers = [p for p in args.peers.split(",") if p]
    if any(p not in PEERS for p in peers):
        sys.exit("--peers takes nginx and/or haproxy")
    counts = tuple(int(n) for n in args.requests.split(","))
    if len(counts) != 2 or counts[0] >= counts[1]:
        sys.exit("--requests takes two counts, the smaller first")
    compare.ensure_free(compare.UP_H1, compare.PX_H1, compare.PX_H2)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        compare.write_configs(work)
        small_filter_config(work)
        chain_prefix_configs(work)
        h2_upstream_config(work)
        token = compare.jwt()
        upstream = compare.start(["nginx", "-p", str(work), "-c", str(work / "upstream.conf")], compare.LOAD_CORE, work, "upstream")
        try:
            compare.wait_port(compare.UP_H1, upstream, "upstream nginx")
            for peer in peers:
                for proto in args.protocols.split(","):
                    fns = per_request(peer, peer, proto, counts, work, token)
                    print(f"{proto:3s} {peer:17s} {'':10s} {sum(fns.values()):9.0f} Ir/request")
            for target in args.targets.split(","):
                for proto in args.protocols.split(","):
                    results = [(name, per_request(path, target, proto, counts, work, token)) for name, path in binaries]
                    for name, fns in results:
                        print(f"{proto:3s} {target:17s} {name:10s} {sum(fns.values()):9.0f} Ir/request"
                              f"  (Wasm {fns[WASM]:.0f}; malloc+free family "
                              f"{sum(v for k, v in fns.items() if re.search(r'malloc|free|unlink_chunk', k)):.0f})")
                    if args.top:
                        base = results[0][1]
                        for name, fns in results[1:] or results:
                            key = (lambda k: abs(fns[k] - base[k])) if len(results) > 1 else (lambda k: fns[k])
                            print(f"  top functions, {name}" + (f" − {results[0][0]}" if len(results) > 1 else ""))
                            for k in sorted(set(fns) | set(base), key=key, reverse=True)[: args.top]:
                                value = fns[k] - base[k] if len(results) > 1 else fns[k]
                                print(f"    {value:9.0f}  {k[:120]}")
        finally:
            compare.stop(upstream)


if __name__ == "__main__":
    main()
