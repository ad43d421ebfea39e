#!/usr/bin/env python3
"""What the traffic policies cost per request when nothing fails.

Issue 15 item 11: P2C over peak EWMA with retries enabled may cost at most
2 µs of proxy CPU per request more than round robin without retries.

  A  lb = "round_robin", no [routes.retry]
  B  lb = "peak_ewma", [routes.retry] retry_on = ["5xx", "connect-failure",
     "reset"], retries = 2

Each is a cluster of the same three endpoints (one upstream nginx worker on
three ports) and a route to it: A serves /a/…, B /b/…. Nothing fails, so B
sends no retries: what is measured is the bookkeeping (EWMA updates, P2C
picks, the retry budget, keeping the request for replay).

The method is bench/compare.py's, whose helpers this imports: sluice
(`run --threads 1`) alone on core 1, the upstream and h2load on core 0; a
run warms up, then sends rate × seconds requests at a fixed rate and reads
sluice's utime+stime from /proc before and after. By default one sluice
serves both routes and the runs alternate A B, B A, … in that process, so
process-to-process variation (a few µs) stays out of B − A, which is taken
within each round; --separate starts a fresh sluice with only A or only B
for every run instead. After each run the admin listener's /clusters and
/metrics confirm the policy in force, that all three endpoints served and
that no retry was sent. --null gives B A's policies: the noise floor.

Builds nothing: run `cargo build --release -p sluice` first (a missing
binary, or one older than its sources, stops the run). Output:
bench/results/policies.{md,json}.
"""

import argparse
import datetime
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import compare as c

UPSTREAM_PORTS = [19110, 19111, 19112]  # one nginx worker, three endpoints
ADMIN = 18109
LIMIT_US = 2.0  # the issue's budget for B − A
# Student's t, two-sided 95%, for n rounds: T95[n - 1] (n - 1 degrees of freedom); 2.1 from 16 on.
T95 = [0, 12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.2, 2.18, 2.16, 2.15, 2.1]
PROTOCOLS = ["h1", "h2"]  # downstream HTTP/1.1 and h2c; the upstream is HTTP/1.1 either way
NAMES = {"h1": "HTTP/1.1", "h2": "HTTP/2 (h2c)"}

UPSTREAM_SERVER = """
    server {{
{listen}
        location / {{ default_type text/plain; return 200 "{body}\\n"; }}
    }}
""".format(listen="\n".join(f"        listen 127.0.0.1:{p};" for p in UPSTREAM_PORTS), body=c.BODY.strip())

ENDPOINTS = ", ".join(f'"127.0.0.1:{p}"' for p in UPSTREAM_PORTS)
HEAD = f"""plugins_dir = "plugins"
[admin]
address = "127.0.0.1:{ADMIN}"
[[listeners]]
name = "h1"
address = "127.0.0.1:{c.PX_H1}"
[[listeners]]
name = "h2"
address = "127.0.0.1:{c.PX_H2}"
"""
# One cluster and one route per policy set: A serves /a/…, B serves /b/….
PART = """[[clusters]]
name = "{cluster}"
endpoints = [{endpoints}]
lb = "{lb}"
[[routes]]
name = "{key}"
path_prefix = "/{key}"
cluster = "{cluster}"
{retry}"""
RETRY = '[routes.retry]\nretry_on = ["5xx", "connect-failure", "reset"]\nretries = 2\n'
POLICY = {"A": ("rr", "round_robin", ""), "B": ("ewma", "peak_ewma", RETRY)}


def part(key: str, null: bool) -> str:
    cluster, lb, retry = POLICY[key]
    if null:  # B with A's policies, under its own names: the noise floor
        lb, retry = POLICY["A"][1:]
    return PART.format(cluster=cluster, endpoints=ENDPOINTS, lb=lb, key=key.lower(), retry=retry)


def configs(separate: bool, null: bool) -> dict:
    """Config file stem → text: one sluice serving both routes, or one each."""
    if separate:
        return {f"sluice-{k.lower()}": HEAD + part(k, null) for k in "AB"}
    return {"sluice-ab": HEAD + part("A", null) + part("B", null)}


def check_binary(allow_stale: bool) -> str:
    """Stop unless target/release/sluice exists and is newer than its sources;
    returns the binary's build time."""
    if not c.SLUICE.exists():
        sys.exit(f"{c.SLUICE} is missing: build it first with `cargo build --release -p sluice`")
    built = c.SLUICE.stat().st_mtime
    sources = [c.ROOT / "Cargo.lock", c.ROOT / "Cargo.toml"]
    for d in ["proxy", "plugins"]:
        sources += [p for p in (c.ROOT / d).rglob("*") if p.is_file() and "target" not in p.parts]
    newer = sorted((p for p in sources if p.exists() and p.stat().st_mtime > built), key=lambda p: -p.stat().st_mtime)
    if newer and not allow_stale:
        shown = ", ".join(str(p.relative_to(c.ROOT)) for p in newer[:5])
        sys.exit(
            f"{c.SLUICE} is older than {len(newer)} source file(s) ({shown}{', …' if len(newer) > 5 else ''}): "
            "rebuild with `cargo build --release -p sluice` (or pass --allow-stale to measure it anyway)"
        )
    return datetime.datetime.fromtimestamp(built, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def write_configs(work: Path, confs: dict) -> None:
    (work / "logs").mkdir(exist_ok=True)  # nginx opens logs/error.log before reading its config
    for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"]:
        (work / f"upstream-{sub}").mkdir(exist_ok=True)
    (work / "upstream.conf").write_text(c.NGINX_COMMON.format(work=work, name="upstream", server=UPSTREAM_SERVER))
    (work / "plugins").mkdir(exist_ok=True)
    for name, text in confs.items():
        path = work / f"{name}.toml"
        path.write_text(text)
        r = subprocess.run([str(c.SLUICE), "check", "--config", str(path)], capture_output=True, text=True, cwd=work)
        if r.returncode:
            sys.exit(
                f"target/release/sluice rejects {name}.toml (is the build older than the traffic-control keys? "
                f"rebuild with `cargo build --release -p sluice`):\n{r.stdout}{r.stderr}\n--- {name}.toml ---\n{text}"
            )


def admin_state(cluster: str) -> dict:
    """The cluster's policy in force, attempts per endpoint and retries sent so far, from the admin listener."""

    def get(path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}{path}", timeout=5) as r:
            return r.read().decode()

    state = next(x for x in json.loads(get("/clusters"))["clusters"] if x["name"] == cluster)
    retries = sum(
        float(line.rsplit(" ", 1)[1])
        for line in get("/metrics").splitlines()
        if line.startswith("sluice_upstream_retries_total{") and f'cluster="{cluster}"' in line
    )
    return {"lb": state["lb"], "endpoint_requests": {e["address"]: e["requests"] for e in state["endpoints"]}, "retries": int(retries)}


def measure(args, work: Path) -> list[dict]:
    c.ensure_free(*UPSTREAM_PORTS, c.PX_H1, c.PX_H2, ADMIN)
    upstream = c.start(["nginx", "-p", str(work), "-c", str(work / "upstream.conf")], c.LOAD_CORE, work, "upstream")
    count, token, runs = args.rate * args.seconds, c.jwt(), []

    def run(t: c.Target, key: str, proto: str, rnd: int) -> None:
        c.PATH = f"/{key.lower()}/bench/item?id=42"  # compare.h2load requests c.PATH
        r = c.fixed_rate_run(t, proto, token, args.rate, count)
        r.update(admin_state(POLICY[key][0]))  # cumulative over the process's life
        want = POLICY["A" if args.null else key][1]
        if r["lb"] != want:
            sys.exit(f"{key}'s cluster runs lb {r['lb']}, not {want}")
        if min(r["endpoint_requests"].values()) == 0:
            sys.exit(f"{key}: an endpoint got no requests: {r['endpoint_requests']}")
        r.update(round=rnd, protocol=proto, config=key, rate=args.rate, process=t.proc.pid)
        runs.append(r)
        slow = f"  (h2load reached only {r['achieved_rate']:.0f}/s)" if r["achieved_rate"] < 0.95 * args.rate else ""
        retried = f"  RETRIES SENT: {r['retries']}" if r["retries"] else ""
        print(
            f"round {rnd} {proto} {args.rate}/s {key} {r['lb']:<11} {r['cpu_us_per_req']:6.2f} µs/req"
            f"  p50 {r['p50_us']} µs  p99 {r['p99_us']} µs{slow}{retried}",
            flush=True,
        )

    # A B, then B A, …: in one process CPU per request drifts down over a run
    # of runs (warming), which a fixed order would count as a difference.
    order = lambda rnd: "AB" if rnd % 2 else "BA"  # noqa: E731
    try:
        for port in UPSTREAM_PORTS:
            c.wait_port(port, upstream, "upstream nginx")
        if args.separate:
            for proto in args.protocols:
                for rnd in range(1, args.rounds + 1):
                    for key in order(rnd):
                        with c.Target(f"sluice-{key.lower()}", work) as t:
                            c.wait_port(ADMIN, t.proc, "sluice admin")
                            run(t, key, proto, rnd)
        else:
            with c.Target("sluice-ab", work) as t:
                c.wait_port(ADMIN, t.proc, "sluice admin")
                for proto in args.protocols:  # all of one protocol's rounds, then the next's
                    for rnd in range(1, args.rounds + 1):
                        for key in order(rnd):
                            run(t, key, proto, rnd)
        return runs
    finally:
        c.stop(upstream)


def summarise(runs: list[dict], protocols: list[str]) -> dict:
    """Per protocol: each config's values over rounds, and B − A within each round."""
    out = {}
    for proto in protocols:
        by = {(r["round"], r["config"]): r for r in runs if r["protocol"] == proto}
        rounds = sorted({rnd for rnd, _ in by})
        s = {k: {q: [by[(rnd, k)][f] for rnd in rounds] for q, f in [("cpu", "cpu_us_per_req"), ("p50", "p50_us"), ("p99", "p99_us")]} for k in "AB"}
        s["diff"] = {q: [b - a for a, b in zip(s["A"][q], s["B"][q])] for q in ["cpu", "p50", "p99"]}
        d, n = s["diff"]["cpu"], len(rounds)
        # Within (or over) the limit only when the 95% confidence interval of the mean (Student's t) says so.
        half = T95[min(n, len(T95)) - 1] * statistics.stdev(d) / n**0.5 if n > 1 else float("inf")
        s["mean_ci95"] = [statistics.mean(d), half]
        s["verdict"] = "yes" if sum(s["mean_ci95"]) <= LIMIT_US else "no" if s["mean_ci95"][0] - half > LIMIT_US else "unclear"
        out[proto] = s
    last = {(r["process"], r["config"]): r for r in runs}  # each process's final counts
    out["retries_B"] = sum(r["retries"] for (_, k), r in last.items() if k == "B")
    out["endpoint_share"] = {}
    for key in "AB":
        totals: dict = {}
        for (_, k), r in last.items():
            for ep, n in r["endpoint_requests"].items():
                totals[ep] = totals.get(ep, 0) + n * (k == key)
        whole = sum(totals.values()) or 1
        out["endpoint_share"][key] = {ep: n / whole for ep, n in sorted(totals.items())}
    return out


def markdown(data: dict) -> str:
    a, s, mr = data["args"], data["summary"], c.med_range
    how = "a fresh sluice per run, one config each" if a["separate"] else "one sluice serving both, A on /a, B on /b"
    lines = [
        f"Measured {data['date']} on {data['machine']}; sluice {data['versions']['sluice']} "
        f"(binary built {data['versions']['binary_built']}); {how}; {a['rounds']} rounds (A B, then B A, …), "
        f"{a['seconds']} s of requests per run at {a['rate']} req/s; median [min–max] over rounds. "
        "CPU is sluice's utime+stime per request on its one core; B−A is taken within each round. "
        f"Command: `{data['command']}`.",
        "",
        "A: `lb = \"round_robin\"`, no retries. B: `lb = \"peak_ewma\"`, `[routes.retry] retry_on = "
        "[\"5xx\", \"connect-failure\", \"reset\"]`, `retries = 2` (nothing fails, so no retry is sent). "
        f"Each a cluster of the same three endpoints (one nginx worker on three ports). Limit: B−A ≤ {LIMIT_US:g} µs; "
        "≤ 2 µs is yes or no only when the 95% confidence interval of B−A's mean is wholly on one side (else: more rounds)."
        + (" **--null: B has A's policies; this is the noise floor, not the policies' cost.**" if a["null"] else ""),
        "",
        "| protocol | A CPU µs/req | B CPU µs/req | B−A µs/req | B−A mean ± 95% CI | ≤ 2 µs | A p50 µs | B p50 µs | A p99 µs | B p99 µs | B−A p99 µs |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for proto in a["protocols"]:
        x = s[proto]
        lines.append(
            f"| {NAMES[proto]} | {mr(x['A']['cpu'], '{:.2f}')} | {mr(x['B']['cpu'], '{:.2f}')} | {mr(x['diff']['cpu'], '{:+.2f}')} "
            f"| {x['mean_ci95'][0]:+.2f} ± {x['mean_ci95'][1]:.2f} | {x['verdict']} | {mr(x['A']['p50'], '{:.0f}')} | {mr(x['B']['p50'], '{:.0f}')} "
            f"| {mr(x['A']['p99'], '{:.0f}')} | {mr(x['B']['p99'], '{:.0f}')} | {mr(x['diff']['p99'], '{:+.0f}')} |"
        )
    share = "; ".join(f"{k}: " + ", ".join(f"{ep.rsplit(':', 1)[1]} {v:.0%}" for ep, v in d.items()) for k, d in s["endpoint_share"].items())
    lines += ["", f"Retries sent by B: {s['retries_B']}. Upstream attempts per endpoint port (warm-ups included): {share}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="rounds of A then B (order flips every round; default 3)")
    p.add_argument("--seconds", type=int, default=10, help="requests per run = rate × this (default 10)")
    p.add_argument("--rate", type=int, default=8000, help="fixed request rate, req/s (default 8000)")
    p.add_argument("--protocols", nargs="+", default=PROTOCOLS, choices=PROTOCOLS)
    p.add_argument("--separate", action="store_true", help="a fresh sluice per run with only A or only B (noisier)")
    p.add_argument("--null", action="store_true", help="give B A's policies: measures the noise floor")
    p.add_argument("--out", type=Path, default=c.RESULTS, help="where policies.{md,json} go")
    p.add_argument("--allow-stale", action="store_true", help="measure a binary older than its sources")
    args = p.parse_args()
    args.protocols = [x for x in PROTOCOLS if x in args.protocols]
    if args.rounds < 1 or args.seconds < 1 or args.rate < 16:
        sys.exit("--rounds and --seconds must be at least 1, --rate at least 16 (h2load's 16 HTTP/1.1 connections)")
    for tool in ["nginx", "h2load", "taskset"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install nginx-light nghttp2-client util-linux (or run bench/compare.sh once)")
    built = check_binary(args.allow_stale)
    confs = configs(args.separate, args.null)
    work = Path(tempfile.mkdtemp(prefix="sluice-policies-"))
    try:
        write_configs(work, confs)
        runs = measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    git = subprocess.run(["git", "-C", str(c.ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(c.ROOT), "status", "--porcelain", "proxy"], capture_output=True, text=True).stdout.strip()
    data = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": c.machine(),
        "command": " ".join(["python3 bench/policies.py", *sys.argv[1:]]),
        "versions": {
            "sluice": git + ("+changes" if dirty else ""),
            "binary_built": built,
            "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
            "h2load": subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.strip(),
        },
        "args": {k: getattr(args, k) for k in ["rounds", "seconds", "rate", "protocols", "separate", "null"]},
        "limit_us": LIMIT_US,
        "configs": confs,
        "runs": runs,
        "summary": summarise(runs, args.protocols),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "policies.json").write_text(json.dumps(data, indent=1))
    table = markdown(data)
    (args.out / "policies.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
