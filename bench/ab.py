"""A/B of sluice builds: CPU per request of two or more sluice binaries,
run alternately in the same session, with compare.py's upstream, configs,
load shape and pinning.

    python3 bench/ab.py [--rounds 3] [--rate 5000] [--seconds 6] \
        [--targets sluice,sluice-4-filters] [--protocols h1,h2] [--nginx] \
        base=/tmp/sluice-before new=target/release/sluice

Each round runs every protocol, target and binary (the binaries' order
reversed every other round), each on a freshly started proxy: a warm-up
of a tenth of the requests, then rate × seconds requests at the fixed
rate. It prints the proxy's user and system CPU per request of each run,
then the medians over rounds; --nginx adds an nginx run per protocol and
round as a yardstick. User CPU is what a change to sluice's code moves
(the kernel's share, TCP on loopback and epoll, stays), so it is printed
apart. Copy the "before" binary aside before building the "after" one.
Machine speed drifts by up to 3× between hours here: only compare binaries measured
in the same invocation.
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import compare


def fixed_rate(target: compare.Target, proto: str, token: str, rate: int, count: int) -> dict:
    clients = int(compare.SHAPE[proto][compare.SHAPE[proto].index("-c") + 1])
    rps = ["--rps", str(max(1, rate // clients))]
    port = target.port(proto)
    compare.h2load(proto, port, token, ["-n", str(max(rate, count // 10)), *rps])
    pids = target.pids()
    user0, sys0 = compare.cpu_split(pids)
    compare.h2load(proto, port, token, ["-n", str(count), *rps])
    user1, sys1 = compare.cpu_split(pids)
    return {
        "user": (user1 - user0) / count * 1e6,
        "system": (sys1 - sys0) / count * 1e6,
        "peak_rss_kib": compare.peak_rss_kib(pids),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("binaries", nargs="+", help="name=path of each sluice binary")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rate", type=int, default=5000)
    p.add_argument("--seconds", type=int, default=6)
    p.add_argument("--targets", default="sluice,sluice-4-filters")
    p.add_argument("--protocols", default="h1,h2")
    p.add_argument("--nginx", action="store_true")
    args = p.parse_args()
    binaries = [b.split("=", 1) for b in args.binaries]
    if any(len(b) != 2 or not Path(b[1]).is_file() for b in binaries):
        sys.exit("each binary is name=path to an existing file")
    # The proxies start in a scratch directory: absolute paths.
    binaries = [(name, str(Path(path).resolve())) for name, path in binaries]
    targets, protocols = args.targets.split(","), args.protocols.split(",")
    work = Path(tempfile.mkdtemp())
    compare.write_configs(work)
    token = compare.jwt()
    upstream = compare.start(["nginx", "-p", str(work), "-c", str(work / "upstream.conf")], compare.LOAD_CORE, work, "upstream")
    compare.wait_port(compare.UP_H1, upstream, "upstream")
    runs: dict[tuple[str, str, str], list[dict]] = {}
    count = args.rate * args.seconds
    try:
        for rnd in range(args.rounds):
            order = binaries if rnd % 2 == 0 else binaries[::-1]
            for proto in protocols:
                cells = [(t, name, path) for t in targets for name, path in order]
                if args.nginx:
                    cells.append(("nginx", "-", ""))
                for target, name, path in cells:
                    compare.SLUICE = Path(path)
                    with compare.Target(target, work) as t:
                        r = fixed_rate(t, proto, token, args.rate, count)
                    runs.setdefault((proto, target, name), []).append(r)
                    print(
                        f"round {rnd + 1} {proto} {target} {name}: user {r['user']:.1f} system {r['system']:.1f} µs/request",
                        flush=True,
                    )
    finally:
        compare.stop(upstream)
    print(f"\nmedians over {args.rounds} rounds at {args.rate} req/s (µs/request; peak RSS MiB):")
    for (proto, target, name), rs in runs.items():
        total = sorted(r["user"] + r["system"] for r in rs)
        user = sorted(r["user"] for r in rs)
        print(
            f"  {proto:<3} {target:<17} {name:<8} total {statistics.median(total):6.1f} [{total[0]:.1f}-{total[-1]:.1f}]"
            f"  user {statistics.median(user):6.1f} [{user[0]:.1f}-{user[-1]:.1f}]"
            f"  system {statistics.median(r['system'] for r in rs):5.1f}"
            f"  peak RSS {max(r['peak_rss_kib'] for r in rs) / 1024:.1f}"
        )


if __name__ == "__main__":
    main()
