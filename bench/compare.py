#!/usr/bin/env python3
"""sluice against direct, nginx, HAProxy and Pingora, measured in one run.

Called by bench/compare.sh, which installs the tools and builds the release
binaries (sluice, and the Pingora proxy in bench/pingora). Every target
serves the same request (GET with a JWT) from the same upstream (an nginx
returning a fixed body, on core 0 with the load generator); the proxy under
test runs alone on core 1 with one worker.

For each round, protocol (HTTP/1.1, HTTP/2 cleartext, and the same two over
TLS) and rate, every target is started fresh, warmed up, then sent a fixed
number of requests at a fixed rate with h2load. Recorded per run: the proxy's utime+stime over the run
(/proc/PID/stat) divided by the requests, its peak RSS (VmHWM), and the
latency of every request (h2load --log-file) → p50/p99/p99.9. Latency is
reported as overhead over the direct run of the same round. Targets run in a
different order each round, so drift in the machine spreads over all.

With TLS ("handshake" protocol) each round also opens a new connection per
request at a fixed rate, over TLS (a full handshake each) and over cleartext,
and records the proxy's CPU per connection. The TLS pieces (certificate,
listener configs, checks, report section) are in bench/tls.py. Pingora is
cleartext only: it sits out the TLS protocols.

Then (--idle-connections, default 4000) every proxy's memory per idle
client connection, HTTP/1.1 and h2c: bench/idle.py. The report (tables,
chart) is written by bench/report.py.

Output: bench/results/latest.{json,md,png}, and the table in README.md
between the bench markers.
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import idle
import report
import tls

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SLUICE = ROOT / "target" / "release" / "sluice"
# bench/pingora, built by compare.sh into its own target directory.
PINGORA = Path(os.environ.get("PINGORA_BIN") or ROOT / "target" / "pingora" / "release" / "sluice-bench-pingora")
SECRET = "bench-secret-bench-secret-0123456789"
BODY = "x" * 511 + "\n"  # the upstream's fixed 512-byte response body
TICK = os.sysconf("SC_CLK_TCK")
UP_H1, UP_H2, UP_TLS = 19100, 19101, 19102  # upstream: HTTP/1.1, h2c (prior knowledge), TLS (direct only)
PX_H1, PX_H2, PX_TLS = 18100, 18101, 18102  # proxy under test; TLS: ALPN h2 or http/1.1
LOAD_CORE, PROXY_CORE = "0", "1"
PATH = "/bench/item?id=42"
TARGETS = ["direct", "sluice", "sluice-4-filters", "nginx", "haproxy", "pingora"]
CLEARTEXT_ONLY = {"pingora"}  # no TLS listener: sits out h1tls, h2tls and handshake
# h2load shape: HTTP/1.1 gets 16 connections (one request at a time each),
# HTTP/2 4 connections with up to 16 streams each.
# Over TLS the same shapes; h2load offers ALPN h2 (and http/1.1 with --h1).
SHAPE = {"h1": ["--h1", "-c", "16", "-m", "1"], "h2": ["-c", "4", "-m", "16"]}
SHAPE.update({p: SHAPE[c] for p, c in tls.CLEARTEXT.items()})
PROTOCOLS = [*SHAPE, tls.HANDSHAKE]


def jwt() -> str:
    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "bench"}).encode())
    claims = {"sub": "bench-user", "iss": "bench", "aud": "api", "exp": int(time.time()) + 86400}
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


# --- configurations -------------------------------------------------------

NGINX_COMMON = """
worker_processes 1;
daemon off;
master_process on;
pid {work}/{name}.pid;
error_log {work}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_temp_path {work}/{name}-body;
    proxy_temp_path {work}/{name}-proxy;
    fastcgi_temp_path {work}/{name}-fastcgi;
    uwsgi_temp_path {work}/{name}-uwsgi;
    scgi_temp_path {work}/{name}-scgi;
{server}
}}
"""

UPSTREAM_SERVER = f"""
    server {{
        listen 127.0.0.1:{UP_H1};
        listen 127.0.0.1:{UP_H2} http2;
        #tls
        location / {{ default_type text/plain; return 200 "{BODY.strip()}\\n"; }}
    }}
"""

NGINX_PROXY_SERVER = f"""
    upstream up {{
        server 127.0.0.1:{UP_H1};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{PX_H1};
        listen 127.0.0.1:{PX_H2} http2;
        #tls
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
"""

HAPROXY = f"""
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    option http-keep-alive
    http-reuse always
frontend bench
    bind 127.0.0.1:{PX_H1}
    bind 127.0.0.1:{PX_H2} proto h2
    #tls
    option forwardfor
    default_backend up
backend up
    server up 127.0.0.1:{UP_H1}
"""

SLUICE_BASE = f"""
plugins_dir = "plugins"
[[listeners]]
name = "h1"
address = "127.0.0.1:{PX_H1}"
[[listeners]]
name = "h2"
address = "127.0.0.1:{PX_H2}"
#tls
[[clusters]]
name = "up"
endpoints = ["127.0.0.1:{UP_H1}"]
[[clusters]]
name = "up2"
endpoints = ["127.0.0.1:{UP_H1}"]
[[routes]]
name = "bench"
path_prefix = "/"
cluster = "up"
"""

# The four built-ins as a user would chain them: verify the JWT, limit per
# subject (far above the offered rate), rewrite headers both ways, split 90/10
# (both clusters are the same upstream, so every target serves alike).
SLUICE_FILTERS = f"""
[[routes.filters]]
plugin = "auth"
config.jwt = {{ issuers = ["bench"], audiences = ["api"], keys = [{{ kid = "bench", alg = "HS256", secret = "{SECRET}" }}] }}
[[routes.filters]]
plugin = "rate-limit"
config = {{ key = ["context:auth.subject"], limits = [{{ requests = 100000000, per = "1s" }}] }}
[[routes.filters]]
plugin = "header-rewrite"
config.request = {{ set = {{ "x-caller" = "${{context.auth.subject}}" }}, remove = ["x-internal"] }}
config.response = {{ set = {{ "x-served-by" = "sluice" }} }}
[[routes.filters]]
plugin = "traffic-split"
clusters = ["up", "up2"]
config = {{ clusters = [{{ cluster = "up", weight = 90 }}, {{ cluster = "up2", weight = 10 }}] }}
"""


# --- processes -------------------------------------------------------------


def log_tail(proc: subprocess.Popen, lines: int = 20) -> str:
    """The last lines a process started by `start` wrote."""
    return "".join(Path(proc.log_path).read_text(errors="replace").splitlines(True)[-lines:])


def wait_port(port: int, proc: subprocess.Popen, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with status {proc.returncode} while starting:\n{log_tail(proc)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port} within {seconds:g} s")


def ensure_free(*ports: int) -> None:
    for port in ports:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            continue
        sys.exit(f"port {port} is already in use: stop whatever listens there and run again")


def start(cmd: list[str], core: str, work: Path, name: str) -> subprocess.Popen:
    path = work / f"{name}.log"
    with open(path, "ab") as log:
        # sluice logs why a request failed at debug in its request path:
        # only failures, so nothing per request in a clean run.
        env = dict(os.environ, RUST_LOG="warn,sluice::proxy=debug")
        proc = subprocess.Popen(["taskset", "-c", core, *cmd], stdout=log, stderr=log, env=env, cwd=work)
    proc.log_path = path
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def process_tree(pid: int) -> list[int]:
    """The process and its children (nginx's worker)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [pid, *(int(p) for p in out.split())]


def cpu_split(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds of the processes."""
    user = system = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        user += int(fields[11])  # utime (field 14)
        system += int(fields[12])  # stime (field 15)
    return user / TICK, system / TICK


def cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_split(pids))


def peak_rss_kib(pids: list[int]) -> int:
    return idle.status_kib(pids, "VmHWM")


class Target:
    """One proxy (or none, for direct) started on the proxy core; with_tls:
    its config has the TLS listener too."""

    def __init__(self, name: str, work: Path, with_tls: bool = False):
        self.name, self.work, self.proc = name, work, None
        with_tls = with_tls and name not in CLEARTEXT_ONLY
        self.ports = [PX_H1, PX_H2, *([PX_TLS] if with_tls else [])]

    def port(self, proto: str) -> int:
        direct = self.name == "direct"
        if proto in tls.KEEPALIVE:
            return UP_TLS if direct else PX_TLS
        if proto == "h1":
            return UP_H1 if direct else PX_H1
        return UP_H2 if direct else PX_H2

    def __enter__(self) -> "Target":
        w = self.work
        if self.name.startswith("sluice"):
            cmd = [str(SLUICE), "run", "--threads", "1", "--config", str(w / f"{self.name}.toml")]
        elif self.name == "nginx":
            cmd = ["nginx", "-p", str(w), "-c", str(w / "nginx.conf")]
        elif self.name == "haproxy":
            cmd = ["haproxy", "-db", "-f", str(w / "haproxy.cfg")]
        elif self.name == "pingora":  # both ports take HTTP/1.1 and h2c (it detects the preface)
            listen = ["--h1", f"127.0.0.1:{PX_H1}", "--h2c", f"127.0.0.1:{PX_H2}"]
            cmd = [str(PINGORA), *listen, "--upstream", f"127.0.0.1:{UP_H1}", "--threads", "1"]
        else:
            return self
        ensure_free(*self.ports)
        self.proc = start(cmd, PROXY_CORE, w, self.name)
        for port in self.ports:
            wait_port(port, self.proc, self.name)
        time.sleep(0.2)  # nginx forks its worker after listening
        if self.proc.poll() is not None:
            sys.exit(f"{self.name} exited with status {self.proc.returncode} after starting")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc:
            stop(self.proc)

    def pids(self) -> list[int]:
        return process_tree(self.proc.pid) if self.proc else []


def write_configs(work: Path, with_tls: bool = False) -> dict | None:
    """The configs of every target; with_tls: also a TLS listener on each
    (PX_TLS, UP_TLS for direct) with a certificate made now, whose paths are
    returned. Without, the configs have no TLS at all."""
    cert = tls.make_cert(work) if with_tls else None

    def listener(make, port: int) -> str:
        return make(port, cert) if cert else ""

    (work / "logs").mkdir(exist_ok=True)  # nginx opens logs/error.log before reading its config
    for name, server, port in [("upstream", UPSTREAM_SERVER, UP_TLS), ("nginx", NGINX_PROXY_SERVER, PX_TLS)]:
        for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"]:
            (work / f"{name}-{sub}").mkdir(exist_ok=True)
        server = tls.place(server, listener(tls.nginx_listener, port))
        conf = NGINX_COMMON.format(work=work, name=name, server=server)
        (work / f"{name}.conf").write_text(conf)
    (work / "haproxy.cfg").write_text(tls.place(HAPROXY, listener(tls.haproxy_listener, PX_TLS)))
    (work / "plugins").mkdir(exist_ok=True)
    base = tls.place(SLUICE_BASE, listener(tls.sluice_listener, PX_TLS))
    (work / "sluice.toml").write_text(base)
    (work / "sluice-4-filters.toml").write_text(base + SLUICE_FILTERS)
    return cert


# --- load ------------------------------------------------------------------


def h2load(proto: str, port: int, token: str, extra: list[str], log: Path | None = None, shape: list[str] | None = None) -> str:
    cmd = ["taskset", "-c", LOAD_CORE, "h2load", *(shape or SHAPE[proto]), *extra]
    if log:
        cmd.append(f"--log-file={log}")
    cmd += ["-H", f"authorization: Bearer {token}"]
    if proto in tls.KEEPALIVE:  # the name for SNI in the URL, the address here
        cmd += [*tls.H2LOAD_CIPHERS, f"--connect-to=127.0.0.1:{port}", f"https://{tls.SNI}:{port}{PATH}"]
    else:
        cmd.append(f"http://127.0.0.1:{port}{PATH}")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    m = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    status = re.search(r"status codes: \d+ 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not m or m.group(3) != "0" or m.group(4) != "0" or not status or status.groups() != ("0", "0", "0"):
        sys.exit(f"h2load against port {port} ({proto}) had failures:\n{out}")
    if proto in tls.KEEPALIVE:
        want = "http/1.1" if "--h1" in cmd else "h2"
        if tls.h2load_tls_info(out)["alpn"] != want:
            sys.exit(f"h2load against port {port} ({proto}) did not negotiate {want}:\n{out}")
    return out


def capacity(target: Target, proto: str, token: str, seconds: int) -> float:
    """Closed-loop throughput for `seconds` after a 1 s warm-up: requests/s."""
    out = h2load(proto, target.port(proto), token, ["-D", str(seconds), "--warm-up-time=1"])
    return float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out).group(1))


def percentile(sorted_xs: list[int], q: float) -> float:
    return sorted_xs[min(len(sorted_xs) - 1, int(q * len(sorted_xs)))]


def fixed_rate_run(target: Target, proto: str, token: str, rate: int, count: int) -> dict:
    clients = int(SHAPE[proto][SHAPE[proto].index("-c") + 1])
    rps = max(1, rate // clients)
    port = target.port(proto)
    warm = max(rps * clients, count // 10)
    h2load(proto, port, token, ["-n", str(warm), "--rps", str(rps)])
    log = target.work / "latency.tsv"
    pids = target.pids()
    before = cpu_seconds(pids) if pids else 0.0
    out = h2load(proto, port, token, ["-n", str(count), "--rps", str(rps)], log)
    cpu = cpu_seconds(pids) - before if pids else None
    lat = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines() if line)
    log.unlink()
    return {
        "cpu_us_per_req": cpu / count * 1e6 if cpu is not None else None,
        "peak_rss_kib": peak_rss_kib(pids) if pids else None,
        "p50_us": percentile(lat, 0.50),
        "p99_us": percentile(lat, 0.99),
        "p999_us": percentile(lat, 0.999),
        "requests": len(lat),
        "achieved_rate": achieved_rate(out),
    }


def achieved_rate(out: str) -> float:
    """h2load's requests per second over the whole run."""
    return float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out).group(1))


def connection_run(target: Target, mode: str, token: str, rate: int, count: int) -> dict:
    """`count` requests, each on a new HTTP/1.1 connection (TLS: a full
    handshake, as h2load never offers a session to resume), opened at `rate`
    per second: the proxy's CPU per connection."""
    proto = "h1tls" if mode == "tls" else "h1"
    per_10ms = rate // 100  # connections opened every 10 ms

    def run(n: int) -> str:
        shape = ["--h1", "-c", str(n), "-n", str(n), "-r", str(per_10ms), "--rate-period=10ms"]
        return h2load(proto, target.port(proto), token, [], shape=shape)

    run(max(200, count // 10))  # warm-up
    pids = target.pids()
    before = cpu_seconds(pids)
    out = run(count)
    cpu = cpu_seconds(pids) - before
    achieved = achieved_rate(out)
    info = tls.h2load_tls_info(out) if mode == "tls" else {}
    return {
        "cpu_us_per_conn": cpu / count * 1e6,
        "connections": count,
        "achieved_rate": achieved,
        "proxy_busy": cpu / (count / achieved),
        "ttfb_mean_us": tls.h2load_mean_us(out, "time to 1st byte"),
        **info,
    }


# --- the run ---------------------------------------------------------------


def with_log(target: Target, run, *args) -> dict:
    """run(target, *args); when it stops the benchmark (a failed request),
    the message ends with the last lines the proxy logged."""
    try:
        return run(target, *args)
    except SystemExit as stopped:
        tail = log_tail(target.proc, 30) if target.proc else ""
        raise SystemExit(f"{stopped}\n--- {target.name}'s log, last lines:\n{tail}") from None


def serves(name: str, proto: str) -> bool:
    """Whether a target runs a protocol (Pingora has no TLS listener)."""
    return not (name in CLEARTEXT_ONLY and (proto in tls.KEEPALIVE or proto == tls.HANDSHAKE))


def measure(args, work: Path, token: str, cert: dict | None) -> dict:
    with_tls = cert is not None
    keepalive = [p for p in args.protocols if p in SHAPE]
    proxies = args.targets[1:]
    tls_proxies = [n for n in proxies if serves(n, tls.HANDSHAKE)]
    ensure_free(UP_H1, UP_H2, PX_H1, PX_H2, *([UP_TLS, PX_TLS] if with_tls else []))
    upstream = start(["nginx", "-p", str(work), "-c", str(work / "upstream.conf")], LOAD_CORE, work, "upstream")
    try:
        for port in [UP_H1, UP_H2, *([UP_TLS] if with_tls else [])]:
            wait_port(port, upstream, "upstream nginx")
        data: dict = {}
        if with_tls:
            data["tls"] = {"certificate": "ECDSA P-256, CN/SAN localhost + 127.0.0.1, signed by a throwaway P-256 CA"}
            data["tls"]["probe"] = check_tls(tls_proxies, work, token, cert)
        caps: dict = {p: {} for p in keepalive}
        for proto in keepalive:
            for name in (n for n in args.targets if serves(n, proto)):
                with Target(name, work, with_tls) as t:
                    caps[proto][name] = capacity(t, proto, token, args.capacity_seconds)
                print(f"capacity {proto} {name}: {caps[proto][name]:.0f} req/s", flush=True)
        # Fixed rates: a low one, and half of the smallest proxy capacity, so
        # every proxy runs at or below half of what it can do on one core.
        half = {p: args.half_rate or int(min(caps[p][n] for n in proxies if n in caps[p]) / 2) for p in keepalive}
        # A protocol over TLS and in cleartext share the lower of their half
        # rates, so their ratios to nginx compare at one rate.
        paired = [(p, c) for p, c in tls.CLEARTEXT.items() if p in half and c in half]
        for p, c in paired:
            half[p] = half[c] = min(half[p], half[c])
        data["half_paired"] = [c for _, c in paired] + [p for p, _ in paired]
        rates = {p: {"low": args.low_rate, "half": half[p]} for p in keepalive}
        runs, conn_runs = [], []
        for rnd in range(1, args.rounds + 1):
            order = args.targets[:]
            random.Random(rnd).shuffle(order)
            for proto in keepalive:
                for label, rate in rates[proto].items():
                    count = max(5000, rate * args.run_seconds)
                    for name in (n for n in order if serves(n, proto)):
                        with Target(name, work, with_tls) as t:
                            r = with_log(t, fixed_rate_run, proto, token, rate, count)
                        r.update(round=rnd, protocol=proto, rate_label=label, rate=rate, target=name)
                        runs.append(r)
                        cpu = f"{r['cpu_us_per_req']:.1f} µs/req" if r["cpu_us_per_req"] else "-"
                        slow = f"  (h2load reached only {r['achieved_rate']:.0f}/s)" if r["achieved_rate"] < 0.95 * rate else ""
                        print(f"round {rnd} {proto} {label} {rate}/s {name:<17} {cpu:>14}  p99 {r['p99_us']} µs{slow}", flush=True)
            if tls.HANDSHAKE in args.protocols:
                conn_runs += connection_round(args, work, token, rnd, order)
        data.update(capacity=caps, rates=rates, runs=runs)
        if tls.HANDSHAKE in args.protocols:
            data["handshake"] = {"rate": args.handshake_rate, "runs": conn_runs}
        if args.idle_connections:
            data["idle_connections"] = idle_connections(args, work, token, proxies)
        return data
    finally:
        stop(upstream)


def check_tls(proxies: list[str], work: Path, token: str, cert: dict) -> dict:
    """tls.probe of every proxy's TLS port; stops the run if one fails."""
    request = f"GET {PATH} HTTP/1.1\r\nHost: {tls.SNI}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    probes = {}
    for name in proxies:
        with Target(name, work, with_tls=True):
            try:
                probes[name] = tls.probe(PX_TLS, cert, request.encode())
            except OSError as e:  # ssl.SSLError included
                sys.exit(f"TLS check against {name} on port {PX_TLS} failed: {e}")
        print(f"tls {name}: {probes[name]}", flush=True)
    return probes


def connection_round(args, work: Path, token: str, rnd: int, order: list[str]) -> list[dict]:
    """A new connection per request, over TLS (full handshakes) and, to
    subtract, over cleartext, for every proxy (direct has no proxy CPU)."""
    rate = args.handshake_rate
    count = max(1000, rate * args.run_seconds)
    runs = []
    for mode in ["tls", "tcp"]:
        for name in (n for n in order if n != "direct" and serves(n, tls.HANDSHAKE)):
            with Target(name, work, with_tls=True) as t:
                r = with_log(t, connection_run, mode, token, rate, count)
            r.update(round=rnd, mode=mode, rate=rate, target=name)
            runs.append(r)
            print(
                f"round {rnd} new-connection {mode} {rate}/s {name:<17} {r['cpu_us_per_conn']:8.1f} µs/conn"
                f"  achieved {r['achieved_rate']:.0f}/s  proxy busy {r['proxy_busy'] * 100:.0f} %"
                + (f"  {r['tls_protocol']} {r['cipher']} {r['temp_key']}" if mode == "tls" else ""),
                flush=True,
            )
    return runs


def idle_connections(args, work: Path, token: str, proxies: list[str]) -> list[dict]:
    """bench/idle.py's phase, with cleartext configs whose connection limits
    are raised above --idle-connections, in their own directory."""
    idle_work = work / "idle"
    idle_work.mkdir()
    write_configs(idle_work)
    idle.raise_limits(idle_work, args.idle_connections)
    rounds = max(2, args.rounds)

    def make(name: str) -> Target:
        return Target(name, idle_work)

    return idle.run(proxies, rounds, args.idle_connections, token, PATH, make, cpu_seconds, LOAD_CORE)


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    return f"{model.group(1) if model else platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}"


def pingora_version() -> str:
    """The pingora-proxy release bench/pingora is locked to, and the binary's hash."""
    lock = (ROOT / "bench" / "pingora" / "Cargo.lock").read_text()
    m = re.search(r'name = "pingora-proxy"\nversion = "([^"]+)"', lock)
    digest = hashlib.sha256(PINGORA.read_bytes()).hexdigest()[:12]
    return f"pingora-proxy {m.group(1) if m else '?'} (binary sha256 {digest})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--run-seconds", type=int, default=6, help="requests per run = rate × this")
    p.add_argument("--low-rate", type=int, default=1000)
    p.add_argument("--half-rate", type=int, help="use this rate instead of half the slowest proxy's capacity")
    p.add_argument("--capacity-seconds", type=int, default=4)
    p.add_argument(
        "--protocols", nargs="+", default=PROTOCOLS, choices=PROTOCOLS,
        help="h1, h2 (h2c), h1tls, h2tls: kept-alive connections; handshake: a new connection per request (TLS and cleartext)",
    )
    p.add_argument("--handshake-rate", type=int, default=500, help="new connections per second (a multiple of 100)")
    p.add_argument("--targets", nargs="+", default=TARGETS, choices=TARGETS, help="direct always runs")
    p.add_argument(
        "--idle-connections", type=int, default=4000, metavar="N",
        help="memory per idle client connection: N connections to each proxy, HTTP/1.1 and h2c (0: skip)",
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="where latest.{md,json,png} go")
    p.add_argument("--no-readme", action="store_true", help="do not copy the table into README.md")
    args = p.parse_args()
    args.targets = ["direct", *(t for t in args.targets if t != "direct")]
    args.protocols = [p for p in PROTOCOLS if p in args.protocols]
    if args.handshake_rate < 100 or args.handshake_rate % 100:
        sys.exit("--handshake-rate must be a multiple of 100 (h2load opens rate/100 connections every 10 ms)")
    with_tls = tls.uses_tls(args.protocols)
    for tool in ["nginx", "haproxy", "h2load", "taskset", *(["openssl"] if with_tls else [])]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run bench/compare.sh, which installs it")
    if "pingora" in args.targets and not PINGORA.exists():
        sys.exit(f"{PINGORA} is missing: run bench/compare.sh, which builds it (or set PINGORA_BIN)")
    if args.idle_connections:
        try:
            import h2  # noqa: F401  (bench/idle.py's h2c client)
        except ImportError:
            sys.exit("the Python h2 package is missing: run bench/compare.sh, which installs it")
        idle.raise_fd_limit(args.idle_connections + 256)
    work = Path(tempfile.mkdtemp(prefix="sluice-compare-"))
    try:
        cert = write_configs(work, with_tls)
        data = measure(args, work, jwt(), cert)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    data["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    data["machine"] = machine()
    data["versions"] = {
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
        "haproxy": subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.splitlines()[0],
        "sluice": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "h2load": subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.strip(),
    }
    if "pingora" in args.targets:
        data["versions"]["pingora"] = pingora_version()
    if with_tls:  # nginx's and HAProxy's TLS library, and h2load's
        data["versions"]["openssl"] = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(data, indent=1))
    table = report.markdown(data, args)
    (args.out / "latest.md").write_text(table)
    report.chart(data, args, args.out / "latest.png")
    if not args.no_readme:
        report.update_readme(table)
    print(table)


if __name__ == "__main__":
    main()
