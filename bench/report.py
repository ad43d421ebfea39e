"""The report of bench/compare.py: latest.md's tables, latest.png, README.md.

Per protocol and rate, each target's CPU per request with its ratios to
nginx, HAProxy and Pingora, peak RSS and latency overhead over direct; the
TLS section (bench/tls.py), the memory per idle connection (bench/idle.py)
and the closed-loop capacities.
"""

import statistics
import sys
from pathlib import Path

import idle
import tls

ROOT = Path(__file__).resolve().parent.parent
KEEPALIVE = ["h1", "h2", *tls.KEEPALIVE]  # the protocols with per-request runs
# The ratio columns: CPU per request over this target's, at the same protocol and rate.
RATIOS = {"nginx": "×nginx", "haproxy": "×HAProxy", "pingora": "×Pingora"}


def med_range(xs: list[float], fmt: str = "{:.1f}") -> str:
    if not xs:
        return "–"
    return f"{fmt.format(statistics.median(xs))} [{fmt.format(min(xs))}–{fmt.format(max(xs))}]"


def summarise(data: dict) -> dict:
    """Per protocol, rate and target: lists over rounds, latency as overhead over direct."""
    direct = {(r["round"], r["protocol"], r["rate_label"]): r for r in data["runs"] if r["target"] == "direct"}
    s: dict = {}
    for r in data["runs"]:
        d = direct[(r["round"], r["protocol"], r["rate_label"])]
        e = s.setdefault((r["protocol"], r["rate_label"], r["target"]), {k: [] for k in ["cpu", "rss", "p50", "p99", "p999"]})
        if r["cpu_us_per_req"] is not None:
            e["cpu"].append(r["cpu_us_per_req"])
            e["rss"].append(r["peak_rss_kib"] / 1024)
        for q in ["p50", "p99", "p999"]:
            v = r[f"{q}_us"]
            e[q].append(v if r["target"] == "direct" else v - d[f"{q}_us"])
    return s


def ratio(s: dict, key: tuple, other: tuple) -> float | None:
    a, b = s.get(key, {}).get("cpu"), s.get(other, {}).get("cpu")
    return statistics.median(a) / statistics.median(b) if a and b else None


def markdown(data: dict, args) -> str:
    s = summarise(data)
    names = {"h1": "HTTP/1.1", "h2": "HTTP/2 (h2c)", **tls.NAMES}
    lines = [
        f"Measured {data['date']} on {data['machine']}; {args.rounds} rounds, "
        f"{args.run_seconds} s of requests per run; median [min–max] over rounds. "
        "CPU is the proxy's utime+stime per request on its one core; latency is the "
        "h2load request time minus the direct run's in the same round (µs). "
        "Command: `bench/compare.sh`.",
        "",
    ]

    others = [t for t in RATIOS if t in args.targets]
    columns = [RATIOS[t] for t in others]

    def tables(proto: str) -> list[str]:
        lines = []
        for label in ["half", "low"]:
            rate = data["rates"][proto][label]
            what = {"half": "half of the slowest proxy's capacity", "low": "low rate"}[label]
            if label == "half" and proto in data.get("half_paired", []):
                what += ", the lower of cleartext and TLS"
            if label == "half" and args.half_rate:
                what = "fixed by --half-rate"
            lines += [
                f"**{names[proto]}, {rate} req/s ({what})**",
                "",
                f"| target | CPU µs/request | {' | '.join(columns)} | peak RSS MiB | p50 | p99 | p99.9 |",
                "|---|---|" + "---|" * len(columns) + "---|---|---|---|",
            ]
            for t in args.targets:
                e = s.get((proto, label, t))
                if not e:
                    continue
                rs = [ratio(s, (proto, label, t), (proto, label, other)) for other in others]
                lat = [med_range(e[q], "{:.0f}") for q in ["p50", "p99", "p999"]]
                if t == "direct":
                    lat = [f"({x} absolute)" for x in lat]
                else:
                    lat = [f"+{x}" if not x.startswith("-") else x for x in lat]
                lines.append(
                    f"| {t} | {med_range(e['cpu'])} | " + "".join(f"{f'{r:.2f}' if r else '–'} | " for r in rs)
                    + f"{med_range(e['rss'], '{:.1f}')} | " + " | ".join(lat) + " |"
                )
            lines.append("")
        return lines

    for proto in args.protocols:
        if proto in ("h1", "h2"):
            lines += tables(proto)
    lines += tls.markdown(data, args, s, ratio, med_range, tables)
    lines += idle.markdown(data, args.targets, med_range)
    caps = ", ".join(
        f"{names[p]}: " + ", ".join(f"{t} {c:.0f}" for t, c in data["capacity"][p].items()) for p in data["capacity"]
    )
    if caps:
        lines.append(f"Closed-loop capacity (req/s, one short run, load generator on the other core): {caps}.")
    return "\n".join(lines) + "\n"


def chart(data: dict, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summarise(data)
    protocols = [p for p in args.protocols if p in KEEPALIVE]
    if not protocols:
        return
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(protocols)
    for i, proto in enumerate(protocols):
        for ax, key, ts in [(axes[0], "cpu", args.targets[1:]), (axes[1], "p99", args.targets[1:])]:
            meds, lo, hi = [], [], []
            for t in ts:
                xs = s.get((proto, "half", t), {}).get(key) or [0]  # Pingora has no TLS runs
                m = statistics.median(xs)
                meds.append(m)
                lo.append(m - min(xs))
                hi.append(max(xs) - m)
            xs_pos = [j + i * width for j in range(len(ts))]
            label = f"{proto} @ {data['rates'][proto]['half']} req/s"
            ax.bar(xs_pos, meds, width, yerr=[lo, hi], capsize=3, label=label)
            ax.set_xticks([j + width * (len(protocols) - 1) / 2 for j in range(len(ts))], ts)
    axes[0].set_title("proxy CPU per request (µs, lower is better)")
    axes[1].set_title("p99 latency overhead over direct (µs)")
    for ax in axes:
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"sluice vs nginx vs HAProxy vs Pingora, one core each — {data['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def update_readme(table: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    begin, end = "<!-- bench:compare:begin -->", "<!-- bench:compare:end -->"
    if begin not in text or end not in text:
        print("README.md has no bench markers; table not copied", file=sys.stderr)
        return
    head, rest = text.split(begin, 1)
    readme.write_text(head + begin + "\n" + table + rest[rest.index(end) :])
