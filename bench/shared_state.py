#!/usr/bin/env python3
"""The rate-limit filter with its buckets in Redis against in memory.

Issue 19 item 6: proxy CPU per request and p99 of the rate-limit filter with
the Redis shared-state backend against the memory backend, and Redis
commands per request.

Three sluice configurations, each one route to the upstream:

  none    no filter (the baseline)
  memory  the built-in rate-limit filter, [shared_state] backend = "memory"
  redis   the same filter, backend = "redis" (a redis-server this script
          starts on a free port with --save '' --appendonly no)

The filter is `key = ["client_ip"]`, one limit of 1,000,000,000 requests per
1 s: nothing is denied, so every request makes exactly one decision (one
`acquire`; with Redis one EVALSHA round trip), and
`on_store_unavailable = "deny"`, so a store that fails to answer turns into
a 503 and stops the run instead of letting requests through undecided.

The method is bench/compare.py's, whose helpers this imports: one nginx
worker upstream on core 0, sluice `run --threads 1` alone on core 1, h2load
on core 0 (HTTP/1.1: 16 kept-alive connections, one request at a time), and
redis-server on core 0 too (`--redis-core`). Per round and rate the three
configurations run in the same order (none, memory, redis), each in a fresh
sluice: warm-up (a tenth of the run's requests), then rate × seconds
requests at a fixed rate. Around the measured requests (outside any
scrape): sluice's utime+stime (/proc/PID/stat), redis-server's CPU
(/proc/PID/task/*/schedstat, nanoseconds, and utime+stime), `INFO
commandstats` of Redis, and sluice's /metrics (requests, rate-limit filter
calls, shared-state errors, the acquire round-trip histogram). Every request
must succeed with a 2xx, and each configuration must have made exactly one
rate-limit filter call per request (none for `none`), with no shared-state
error.

Then a check that the limit holds: a fresh sluice per backend with one limit
of 100 per 1 h, 400 requests from 16 concurrent connections; exactly 100
must get 200 and the other 300 429 (and a last request a 429 with
Retry-After), with Redis after a FLUSHALL.

Builds nothing: run `cargo build --release -p sluice` first (or
bench/shared_state.sh). Output: bench/results/shared_state.{md,json}.
"""

import argparse
import datetime
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import compare as c
import tls
from policies import check_binary

ADMIN = 18119
CONFIGS = ["none", "memory", "redis"]
PROTOCOLS = ["h1", "h2"]
NAMES = {"h1": "HTTP/1.1", "h2": "HTTP/2 (h2c)"}
KEY_PREFIX = "sluice-bench:"
BIG = 1_000_000_000  # requests per second: never denies

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
REDIS_STATE = """[shared_state]
backend = "redis"
[shared_state.redis]
url = "redis://127.0.0.1:{port}"
key_prefix = "{prefix}"
"""
MEMORY_STATE = '[shared_state]\nbackend = "memory"\n'
ROUTE = f"""[[clusters]]
name = "up"
endpoints = ["127.0.0.1:{c.UP_H1}"]
[[routes]]
name = "bench"
path_prefix = "/"
cluster = "up"
"""
FILTER = """[[routes.filters]]
plugin = "rate-limit"
[routes.filters.config]
key = ["client_ip"]
on_store_unavailable = "deny"
limits = [{{ name = "{name}", requests = {requests}, per = "{per}" }}]
"""


def config(name: str, redis_port: int, limit: tuple[str, int, str] = ("bench", BIG, "1s"), prefix: str = KEY_PREFIX) -> str:
    if name == "none":
        return HEAD + ROUTE
    state = REDIS_STATE.format(port=redis_port, prefix=prefix) if name == "redis" else MEMORY_STATE
    lim = dict(zip(["name", "requests", "per"], limit))
    return HEAD + state + ROUTE + FILTER.format(**lim)


def write_configs(work: Path, redis_port: int, check_limit: int) -> dict:
    (work / "logs").mkdir(exist_ok=True)  # nginx opens logs/error.log before reading its config
    for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"]:
        (work / f"upstream-{sub}").mkdir(exist_ok=True)
    server = tls.place(c.UPSTREAM_SERVER, "")
    (work / "upstream.conf").write_text(c.NGINX_COMMON.format(work=work, name="upstream", server=server))
    (work / "plugins").mkdir(exist_ok=True)
    confs = {f"sluice-{n}": config(n, redis_port) for n in CONFIGS}
    for n in ["memory", "redis"]:
        confs[f"sluice-check-{n}"] = config(n, redis_port, ("check", check_limit, "1h"), "sluice-bench-check:")
    for name, text in confs.items():
        path = work / f"{name}.toml"
        path.write_text(text)
        r = subprocess.run([str(c.SLUICE), "check", "--config", str(path)], capture_output=True, text=True, cwd=work)
        if r.returncode:
            sys.exit(
                f"target/release/sluice rejects {name}.toml (a build older than the Redis backend? "
                f"rebuild with `cargo build --release -p sluice`):\n{r.stdout}{r.stderr}\n--- {name}.toml ---\n{text}"
            )
    return confs


# --- redis -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_cli(port: int, *args: str) -> str:
    r = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=30)
    if r.returncode:
        sys.exit(f"redis-cli {' '.join(args)} failed: {r.stdout}{r.stderr}")
    return r.stdout


def commandstats(port: int) -> dict:
    """INFO commandstats: command → {calls, usec, rejected_calls, failed_calls}."""
    out = {}
    for line in redis_cli(port, "INFO", "commandstats").splitlines():
        m = re.match(r"cmdstat_([^:]+):(.*)", line.strip())
        if m:
            fields = dict(kv.split("=", 1) for kv in m.group(2).split(","))
            out[m.group(1)] = {k: float(v) for k, v in fields.items() if k != "usec_per_call"}
    return out


def commandstats_delta(before: dict, after: dict) -> dict:
    """What ran between two commandstats() readings, less the first reading's
    own INFO (counted once its reply is out, so it is in the second)."""
    out = {}
    for cmd, a in after.items():
        b = before.get(cmd, {})
        d = {k: v - b.get(k, 0) for k, v in a.items()}
        if cmd == "info":
            d["calls"] -= 1
            d["usec"] = 0  # its own time cannot be told apart; none of ours ran
        if d.get("calls"):
            out[cmd] = d
    return out


def schedstat_ns(pid: int) -> int:
    """Nanoseconds on CPU of all the process's threads (alive now)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # the thread just exited
    return total


def machine_busy() -> float:
    """CPU seconds spent by everything, all cores (/proc/stat: user, nice,
    system, irq, softirq, steal)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / c.TICK


def ours_cpu(pids: list[int]) -> float:
    """CPU seconds of these processes, this script and its waited-for
    children (h2load)."""
    t = os.times()
    return c.cpu_seconds(pids) + t.user + t.system + t.children_user + t.children_system


# --- sluice metrics ----------------------------------------------------------


def metrics() -> dict:
    """The /metrics figures a run is checked and described by."""
    with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {"requests": 0.0, "rl_calls": 0.0, "rl_outcomes": {}, "state_errors": 0.0, "acquire_sum": 0.0, "acquire_count": 0.0}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        v = float(value)
        if name.startswith("sluice_requests_total{"):
            out["requests"] += v
        elif name.startswith("sluice_filter_calls_total{") and 'plugin="rate-limit"' in name and 'phase="request_headers"' in name:
            out["rl_calls"] += v
            outcome = re.search(r'outcome="([^"]*)"', name).group(1)
            out["rl_outcomes"][outcome] = out["rl_outcomes"].get(outcome, 0) + v
        elif name.startswith("sluice_shared_state_errors_total"):
            out["state_errors"] += v
        elif name.startswith("sluice_shared_state_operation_duration_seconds_sum{") and 'operation="acquire"' in name:
            out["acquire_sum"] += v
        elif name.startswith("sluice_shared_state_operation_duration_seconds_count{") and 'operation="acquire"' in name:
            out["acquire_count"] += v
    return out


# --- runs ------------------------------------------------------------------


def run(t: c.Target, cfg: str, proto: str, rate: int, count: int, token: str, redis: subprocess.Popen, redis_port: int, background: list[int]) -> dict:
    """compare.fixed_rate_run, with Redis's CPU and commands and sluice's
    metrics taken around the measured requests only, and the CPU that
    processes other than the benchmark's took meanwhile (a build beside it)."""
    clients = int(c.SHAPE[proto][c.SHAPE[proto].index("-c") + 1])
    rps = max(1, rate // clients)
    port = t.port(proto)
    c.h2load(proto, port, token, ["-n", str(max(rps * clients, count // 10)), "--rps", str(rps)])  # warm-up
    log = t.work / "latency.tsv"
    pids = t.pids()
    m0, cs0 = metrics(), commandstats(redis_port)
    all_pids = pids + background
    busy0, ours0, wall0 = machine_busy(), ours_cpu(all_pids), time.monotonic()
    cpu0, rns0, rt0 = c.cpu_seconds(pids), schedstat_ns(redis.pid), c.cpu_seconds([redis.pid])
    out = c.h2load(proto, port, token, ["-n", str(count), "--rps", str(rps)], log)
    cpu1, rns1, rt1 = c.cpu_seconds(pids), schedstat_ns(redis.pid), c.cpu_seconds([redis.pid])
    busy1, ours1, wall1 = machine_busy(), ours_cpu(all_pids), time.monotonic()
    cs1, m1 = commandstats(redis_port), metrics()
    lat = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines() if line)
    log.unlink()
    cmds = commandstats_delta(cs0, cs1)
    acq_n = m1["acquire_count"] - m0["acquire_count"]
    r = {
        "requests": count,
        "latency_samples": len(lat),
        "cpu_us_per_req": (cpu1 - cpu0) / count * 1e6,
        "redis_cpu_us_per_req": (rns1 - rns0) / 1e3 / count,
        "redis_cpu_us_per_req_ticks": (rt1 - rt0) / count * 1e6,
        "p50_us": c.percentile(lat, 0.50),
        "p99_us": c.percentile(lat, 0.99),
        "p999_us": c.percentile(lat, 0.999),
        "achieved_rate": c.achieved_rate(out),
        # Busy CPU of the whole machine not spent by sluice, nginx, Redis, h2load or this
        # script, as a share of both cores over the run (≈ 0 on a quiet machine; ±2 % is ticks).
        "other_cpu_share": ((busy1 - busy0) - (ours1 - ours0)) / ((wall1 - wall0) * os.cpu_count()),
        "peak_rss_kib": c.peak_rss_kib(pids),
        "redis_commands": cmds,
        "redis_calls_per_req": sum(v["calls"] for v in cmds.values()) / count,
        "evalsha_per_req": cmds.get("evalsha", {}).get("calls", 0) / count,
        "evalsha_usec_per_call": cmds["evalsha"]["usec"] / cmds["evalsha"]["calls"] if "evalsha" in cmds else None,
        "sluice_requests": m1["requests"] - m0["requests"],
        "rl_calls": m1["rl_calls"] - m0["rl_calls"],
        "rl_outcomes": {k: v - m0["rl_outcomes"].get(k, 0) for k, v in m1["rl_outcomes"].items() if v - m0["rl_outcomes"].get(k, 0)},
        "state_errors": m1["state_errors"] - m0["state_errors"],
        "acquire_round_trips": acq_n,
        "acquire_mean_us": (m1["acquire_sum"] - m0["acquire_sum"]) / acq_n * 1e6 if acq_n else None,
    }
    want_calls = 0 if cfg == "none" else count
    problems = []
    if r["sluice_requests"] != count:
        problems.append(f"sluice counted {r['sluice_requests']:.0f} requests, not {count}")
    if r["rl_calls"] != want_calls:
        problems.append(f"{r['rl_calls']:.0f} rate-limit filter calls, not {want_calls}")
    if r["state_errors"]:
        problems.append(f"{r['state_errors']:.0f} shared-state errors")
    if cfg == "redis" and r["acquire_round_trips"] != count:
        problems.append(f"{acq_n:.0f} acquire round trips to Redis, not {count}")
    if problems:
        sys.exit(f"{cfg} {proto} {rate}/s: " + "; ".join(problems) + f"\n{json.dumps(r, indent=1)}")
    return r


def statuses(out: str) -> dict:
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    if not m or not done:
        sys.exit(f"cannot read h2load's output:\n{out}")
    return {"2xx": int(m.group(1)), "3xx": int(m.group(2)), "4xx": int(m.group(3)), "5xx": int(m.group(4)), "errored": int(done.group(5))}


def limit_check(work: Path, backend: str, limit: int, total: int, redis_port: int) -> dict:
    """One limit of `limit` per 1 h; `total` requests from 16 concurrent
    connections, then one more on its own: exactly `limit` pass."""
    if backend == "redis":
        redis_cli(redis_port, "FLUSHALL")
    cs0 = commandstats(redis_port)
    with c.Target(f"sluice-check-{backend}", work) as t:
        c.wait_port(ADMIN, t.proc, "sluice admin")
        cmd = ["taskset", "-c", c.LOAD_CORE, "h2load", "--h1", "-c", "16", "-m", "1", "-n", str(total), f"http://127.0.0.1:{c.PX_H1}{c.PATH}"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
        st = statuses(out)
        conn = http.client.HTTPConnection("127.0.0.1", c.PX_H1, timeout=5)
        conn.request("GET", c.PATH)
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace").strip()
        last = {"status": resp.status, "retry-after": resp.getheader("retry-after"), "ratelimit": resp.getheader("ratelimit"), "body": body}
        conn.close()
        m = metrics()
    cs1 = commandstats(redis_port)
    cmds = commandstats_delta(cs0, cs1)
    r = {
        "backend": backend,
        "limit": f"{limit} per 1h",
        "requests": total,
        "statuses": st,
        "last": last,
        "rl_outcomes": m["rl_outcomes"],
        "state_errors": m["state_errors"],
        "evalsha_calls": cmds.get("evalsha", {}).get("calls", 0) if backend == "redis" else None,
    }
    if backend == "redis":
        keys = [k for k in redis_cli(redis_port, "--scan", "--pattern", "sluice-bench-check:*").split() if k]
        r["redis_keys"] = keys
        bucket = next((k for k in keys if ":r:" in k), None)
        r["bucket_tat"] = redis_cli(redis_port, "GET", bucket).strip() if bucket else None
    ok = st["2xx"] == limit and st["4xx"] == total - limit and st["5xx"] == 0 and st["errored"] == 0 and last["status"] == 429
    if backend == "redis":
        ok = ok and r["evalsha_calls"] == total + 1
    r["ok"] = ok
    return r


def measure(args, work: Path, redis_port: int) -> dict:
    c.ensure_free(c.UP_H1, c.UP_H2, c.PX_H1, c.PX_H2, ADMIN)
    upstream = c.start(["nginx", "-p", str(work), "-c", str(work / "upstream.conf")], c.LOAD_CORE, work, "upstream")
    redis = c.start(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(work), "--daemonize", "no"],
        args.redis_core, work, "redis",
    )
    token, runs = c.jwt(), []
    try:
        c.wait_port(c.UP_H1, upstream, "upstream nginx")
        c.wait_port(redis_port, redis, "redis-server")
        time.sleep(0.2)  # nginx forks its worker after listening
        background = [*c.process_tree(upstream.pid), redis.pid]
        for proto in args.protocols:
            for rnd in range(1, args.rounds + 1):
                for rate in args.rates:
                    count = rate * args.seconds
                    for cfg in CONFIGS:
                        with c.Target(f"sluice-{cfg}", work) as t:
                            c.wait_port(ADMIN, t.proc, "sluice admin")
                            r = run(t, cfg, proto, rate, count, token, redis, redis_port, background)
                        r.update(round=rnd, protocol=proto, rate=rate, config=cfg)
                        runs.append(r)
                        slow = f"  (h2load reached only {r['achieved_rate']:.0f}/s)" if r["achieved_rate"] < 0.95 * rate else ""
                        extra = ""
                        if cfg == "redis":
                            extra = (
                                f"  redis {r['redis_cpu_us_per_req']:5.2f} µs/req, {r['redis_calls_per_req']:.3f} cmds/req"
                                f" ({r['evalsha_per_req']:.3f} evalsha), round trip {r['acquire_mean_us']:.0f} µs"
                            )
                        busy = f"  OTHER PROCESSES {r['other_cpu_share']:.0%} of the CPU" if r["other_cpu_share"] > 0.05 else ""
                        print(
                            f"round {rnd} {proto} {rate}/s {cfg:<6} {r['cpu_us_per_req']:6.2f} µs/req"
                            f"  p50 {r['p50_us']} µs  p99 {r['p99_us']} µs{extra}{slow}{busy}",
                            flush=True,
                        )
        checks = []
        for backend in ["memory", "redis"]:
            chk = limit_check(work, backend, args.check_limit, args.check_requests, redis_port)
            checks.append(chk)
            print(f"limit check {backend}: {chk['statuses']}, last {chk['last']['status']}, ok={chk['ok']}", flush=True)
        return {"runs": runs, "checks": checks}
    finally:
        c.stop(redis)
        c.stop(upstream)


def summarise(runs: list[dict], protocols: list[str], rates: list[int]) -> dict:
    out: dict = {}
    fields = {
        "cpu": "cpu_us_per_req", "redis_cpu": "redis_cpu_us_per_req", "redis_cpu_ticks": "redis_cpu_us_per_req_ticks",
        "p50": "p50_us", "p99": "p99_us", "p999": "p999_us",
        "calls": "redis_calls_per_req", "evalsha": "evalsha_per_req", "evalsha_usec": "evalsha_usec_per_call", "rtt": "acquire_mean_us",
    }
    for proto in protocols:
        for rate in rates:
            by = {(r["round"], r["config"]): r for r in runs if r["protocol"] == proto and r["rate"] == rate}
            rounds = sorted({rnd for rnd, _ in by})
            s = {}
            for cfg in CONFIGS:
                s[cfg] = {q: [by[(rnd, cfg)][f] for rnd in rounds if by[(rnd, cfg)][f] is not None] for q, f in fields.items()}
                if cfg != "none":  # within each round, over the baseline
                    for q in ["cpu", "p50", "p99"]:
                        s[cfg][f"{q}_over_none"] = [by[(rnd, cfg)][fields[q]] - by[(rnd, "none")][fields[q]] for rnd in rounds]
            # Per-command calls per request of the redis runs, summed over rounds.
            cmds: dict = {}
            n = 0
            for rnd in rounds:
                r = by[(rnd, "redis")]
                n += r["requests"]
                for cmd, d in r["redis_commands"].items():
                    e = cmds.setdefault(cmd, {"calls": 0, "usec": 0, "failed_calls": 0, "rejected_calls": 0})
                    for k in e:
                        e[k] += d.get(k, 0)
            s["redis_commands_per_req"] = {k: v["calls"] / n for k, v in sorted(cmds.items(), key=lambda kv: -kv[1]["calls"])}
            s["redis_commands_totals"] = cmds
            out[f"{proto}/{rate}"] = s
    return out


def markdown(data: dict) -> str:
    a, S, mr = data["args"], data["summary"], c.med_range
    lines = [
        f"Measured {data['date']} on {data['machine']}; sluice {data['versions']['sluice']} "
        f"(binary built {data['versions']['binary_built']}), {data['versions']['redis']}; "
        f"{a['rounds']} rounds, {a['seconds']} s of requests per run at a fixed rate, configurations in the order "
        f"none, memory, redis in every round, a fresh sluice per run; median [min–max] over rounds. "
        f"sluice (`run --threads 1`) alone on core 1; the upstream nginx, h2load and redis-server on core {a['redis_core']}. "
        f"Command: `{data['command']}`.",
        "",
        "- **sluice CPU**: its utime+stime per request. **Redis CPU**: redis-server's CPU per request "
        "(all its threads' schedstat; in the none and memory runs Redis is idle, which is its floor). "
        "**over none**: the configuration's figure minus the none run's in the same round.",
        f"- The filter: `key = [\"client_ip\"]`, one limit of {BIG:,} per 1 s (never denies: one decision per request), "
        "`on_store_unavailable = \"deny\"`; Redis with `--save '' --appendonly no`, sluice's default pool (2 connections) "
        "and `command_timeout` (100 ms). Every run checked: all 2xx, one rate-limit call per request, no shared-state error, "
        "and with Redis one acquire round trip per request.",
        "",
    ]
    for proto in a["protocols"]:
        for rate in a["rates"]:
            s = S[f"{proto}/{rate}"]
            lines += [
                f"**{NAMES[proto]}, {rate} req/s**",
                "",
                "| config | sluice CPU µs/req | over none | Redis CPU µs/req | p50 µs | p99 µs | p99.9 µs | p50 over none | p99 over none |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for cfg in CONFIGS:
                x = s[cfg]
                over = lambda q: mr(x[f"{q}_over_none"], "{:+.1f}" if q == "cpu" else "{:+.0f}") if cfg != "none" else "–"  # noqa: E731
                lines.append(
                    f"| {cfg} | {mr(x['cpu'], '{:.1f}')} | {over('cpu')} | {mr(x['redis_cpu'], '{:.2f}')} "
                    f"| {mr(x['p50'], '{:.0f}')} | {mr(x['p99'], '{:.0f}')} | {mr(x['p999'], '{:.0f}')} | {over('p50')} | {over('p99')} |"
                )
            r = s["redis"]
            per = ", ".join(f"{k} {v:.3f}" for k, v in s["redis_commands_per_req"].items())
            tot = s["redis_commands_totals"]
            failed = sum(v["failed_calls"] + v["rejected_calls"] for v in tot.values())
            lines += [
                "",
                f"Redis commands per request (redis runs, `INFO commandstats` deltas over the measured requests): "
                f"all {mr(r['calls'], '{:.3f}')}, EVALSHA {mr(r['evalsha'], '{:.3f}')}; by command, over all rounds: {per}"
                f"{f'; failed or rejected calls: {failed:.0f}' if failed else ''}. "
                f"Redis's own time per EVALSHA (commandstats usec/calls) {mr(r['evalsha_usec'], '{:.2f}')} µs; "
                f"the acquire round trip as sluice times it (mean, `sluice_shared_state_operation_duration_seconds`) "
                f"{mr(r['rtt'], '{:.0f}')} µs.",
                "",
            ]
    other = [r["other_cpu_share"] for r in data["runs"]]
    busy = [f"{r['protocol']} {r['rate']}/s round {r['round']} {r['config']} {r['other_cpu_share']:.0%}" for r in data["runs"] if r["other_cpu_share"] > 0.05]
    lines += [
        f"Other processes' share of the machine's CPU during the measured runs (busy CPU from /proc/stat less the "
        f"benchmark's own processes; about ±2 % is tick rounding): median {statistics.median(other):.1%}, "
        f"max {max(other):.1%}" + (f"; above 5 %: {', '.join(busy)}." if busy else "; no run above 5 %."),
        "",
        f"**Limit check**: one limit of {a['check_limit']} per 1 h, {a['check_requests']} requests over 16 concurrent "
        "HTTP/1.1 connections, then one more:",
        "",
        "| backend | 200 | 429 (4xx) | 5xx / errors | the extra request | EVALSHA calls | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for chk in data["checks"]:
        st, last = chk["statuses"], chk["last"]
        ev = f"{chk['evalsha_calls']:.0f}" if chk["evalsha_calls"] is not None else "–"
        lines.append(
            f"| {chk['backend']} | {st['2xx']} | {st['4xx']} | {st['5xx']} / {st['errored']} "
            f"| {last['status']}, retry-after {last['retry-after']}, `ratelimit: {last['ratelimit']}` | {ev} | {'ok' if chk['ok'] else 'FAILED'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="rounds of none, memory, redis per rate (default 3)")
    p.add_argument("--seconds", type=int, default=10, help="requests per run = rate × this (default 10)")
    p.add_argument("--rates", type=int, nargs="+", default=[2000, 5000], help="fixed request rates, req/s (default 2000 5000)")
    p.add_argument("--protocols", nargs="+", default=["h1"], choices=PROTOCOLS, help="default h1 (HTTP/1.1 kept alive)")
    p.add_argument("--redis-core", default=c.LOAD_CORE, help="the core redis-server is pinned to (default 0, with upstream and h2load)")
    p.add_argument("--check-limit", type=int, default=100, help="the limit check's requests per 1 h (default 100)")
    p.add_argument("--check-requests", type=int, default=400, help="requests the limit check sends (default 400)")
    p.add_argument("--out", type=Path, default=c.RESULTS, help="where shared_state.{md,json} go")
    p.add_argument("--allow-stale", action="store_true", help="measure a binary older than its sources")
    args = p.parse_args()
    args.protocols = [x for x in PROTOCOLS if x in args.protocols]
    if args.rounds < 1 or args.seconds < 1 or min(args.rates) < 16:
        sys.exit("--rounds and --seconds must be at least 1, rates at least 16 (h2load's 16 HTTP/1.1 connections)")
    if args.check_requests <= args.check_limit:
        sys.exit("--check-requests must be above --check-limit")
    for tool in ["nginx", "h2load", "taskset", "redis-server", "redis-cli"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run bench/shared_state.sh, which installs it")
    built = check_binary(args.allow_stale)
    redis_port = free_port()
    work = Path(tempfile.mkdtemp(prefix="sluice-shared-state-"))
    try:
        confs = write_configs(work, redis_port, args.check_limit)
        started = time.monotonic()
        result = measure(args, work, redis_port)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    git = subprocess.run(["git", "-C", str(c.ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(c.ROOT), "status", "--porcelain", "proxy", "plugins"], capture_output=True, text=True).stdout.strip()
    data = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": c.machine(),
        "command": " ".join(["python3 bench/shared_state.py", *sys.argv[1:]]),
        "duration_s": round(time.monotonic() - started),
        "versions": {
            "sluice": git + ("+changes" if dirty else ""),
            "binary_built": built,
            "redis": subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split(" sha=")[0].strip(),
            "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
            "h2load": subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.strip(),
        },
        "args": {k: getattr(args, k) for k in ["rounds", "seconds", "rates", "protocols", "redis_core", "check_limit", "check_requests"]},
        "configs": {k: v.replace(str(redis_port), "<port>") for k, v in confs.items()},
        **result,
        "summary": summarise(result["runs"], args.protocols, args.rates),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "shared_state.json").write_text(json.dumps(data, indent=1))
    table = markdown(data)
    (args.out / "shared_state.md").write_text(table)
    print(table)
    if not all(chk["ok"] for chk in result["checks"]):
        sys.exit("the limit check FAILED: see the table")


if __name__ == "__main__":
    main()
