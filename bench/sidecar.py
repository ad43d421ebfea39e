#!/usr/bin/env python3
"""What two sidecars cost a call from one pod to another, in cleartext and with mTLS.

Called by bench/sidecar.sh, which installs the tools and builds the release
binary; needs root (network namespaces, iptables, SO_MARK).

Setup, as in tests/sidecar.rs and docs/sidecar.md: two "pods", network
namespaces A (10.77.0.1) and B (10.77.0.2) joined by a veth pair, with
names unique to this run. The application in B is sluice's echo demo
upstream (`sluice --threads 1 demo-upstream --listen 10.77.0.2:8080`,
HTTP/1.1 and h2c prior knowledge on one port, hyper's auto server), which
answers every request with a JSON echo of it (about 300-500 bytes). The
pods' routes carry `quickack 1` (see quickack_routes: the demo upstream's
h2c answers would otherwise wait ~20 ms each on Nagle and delayed ACKs;
--no-quickack to see it). Each pod runs its sidecar, `sluice --threads 1
run`: interception listeners 0.0.0.0:15006 (inbound) and 127.0.0.1:15001
(outbound), admin on 127.0.0.1:15020, `[sidecar] mark = 1337`, no access
log, and one of

  passthrough  no routes: the implicit inbound-/outbound-passthrough routes;
  filters      one route with a header-rewrite filter (sets one request
               header): `direction = "outbound"` in A, `"inbound"` in B;
  mtls         passthrough plus `[mesh]`: each pod's SVID (a P-256 key and
               a certificate with the URI SAN spiffe://bench.test/ns/bench/
               sa/<pod>, serverAuth+clientAuth, made with openssl in the
               work directory and signed by a CA made there too, which is
               the trust bundle), `networks = ["10.77.0.0/24"]` (so A's
               outbound hop to B is mutual TLS), `mtls = "strict"` (B's
               inbound closes anything that is not mesh mTLS).

The load generator is h2load in pod A, calling http://10.77.0.2:8080/ at a
fixed rate (`--rps` per connection, as bench/compare.py does: HTTP/1.1 16
connections × 1 request, h2c 4 connections × 16 streams) for a fixed number
of requests, after a warm-up of a tenth of them (at least one second's).
Cases, per protocol:

  direct            sidecars running, no redirection rules;
  one-hop           rules in B only, passthrough configs (A's sidecar runs
                    without rules): one cleartext proxy hop, B's inbound
                    sidecar → app;
  sidecars          rules from `sluice iptables --no-ipv6` in both pods,
                    passthrough configs: A's outbound sidecar → B's inbound
                    sidecar → app;
  sidecars+filters  the same with the filter configs;
  sidecars+mtls     the same with the mtls configs: the hop from A's sidecar
                    to B's is mutual TLS.

Per run: the achieved rate, p50/p99/p99.9 of h2load's per-request times
(`--log-file`), their overhead over the direct run of the same round and
protocol, and each sidecar's utime+stime (/proc/PID/stat) over the measured
requests divided by their number (in the direct case that is the
sidecars' background CPU, spread over requests they never see). Each
sidecar's request counter (`sluice_requests_total` on its admin listener)
must have grown by exactly the run's requests on the expected route (none
for direct, none in A for one-hop), and a probe request before the runs
checks through the echo that the request really passed the sidecars
(`via`), their filters (the added headers) and, with mTLS, that B's sidecar
verified A's certificate (`x-forwarded-client-cert` with A's SPIFFE ID).
With mTLS, B's `sluice_tls_handshakes_total{listener="inbound"}` must also
have risen from before the run's warm-up (the hop was TLS; with `mtls =
"strict"` a cleartext connection would have been closed, so every counted
request came over it); in every other case it must not exist or not rise.

Idle: each sidecar session (fresh processes per variant and round) first
installs the rules and then waits `--idle-seconds` with no traffic,
measuring each sidecar's CPU in ms per second (utime+stime in 10 ms ticks;
and, finer, the nanoseconds of /proc/PID/task/*/schedstat), with VmRSS
right after start and again after all of the session's load.

Each round runs the three sessions (the variant order alternates); direct
and one-hop run in the passthrough session, before its sidecars case.
Reported: the median [min–max] over rounds, and per protocol the goal of
the mTLS work: what two sidecars with mTLS add over direct (p50, p99;
medians over rounds of the per-round overhead) against what one cleartext
hop adds, as a ratio (goal: at most 2).
Nothing is pinned: on two cores the load generator, the app and both
sidecars share them, as pods on one node would.

Output: bench/results/sidecar.{json,md}.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import compare as c
import policies

SUBNET = "10.77.0"
A_IP, B_IP = f"{SUBNET}.1", f"{SUBNET}.2"
APP_PORT, INBOUND, OUTBOUND, ADMIN, MARK = 8080, 15006, 15001, 15020, 1337
URL = f"http://{B_IP}:{APP_PORT}/"
PROTOCOLS = ["h1", "h2"]
NAMES = {"h1": "HTTP/1.1", "h2": "HTTP/2 (h2c)"}
SHAPE = {p: c.SHAPE[p] for p in PROTOCOLS}  # compare.py's connection shapes
VARIANTS = {"passthrough": "sidecars", "filters": "sidecars+filters", "mtls": "sidecars+mtls"}  # variant → its case
CASES = ["direct", "one-hop", *VARIANTS.values()]
POD = {"a": "A", "b": "B"}
# The route each sidecar serves the load on, per case (a pod not named serves none).
ROUTES = {
    "direct": {},
    "one-hop": {"b": "inbound-passthrough"},
    "sidecars": {"a": "outbound-passthrough", "b": "inbound-passthrough"},
    "sidecars+filters": {"a": "out", "b": "in"},
    "sidecars+mtls": {"a": "outbound-passthrough", "b": "inbound-passthrough"},
}
# The pods whose redirection rules are installed, per case.
RULES = {case: ["a", "b"] for case in CASES} | {"direct": [], "one-hop": ["b"]}
TRUST_DOMAIN = "bench.test"
SPIFFE = {pod: f"spiffe://{TRUST_DOMAIN}/ns/bench/sa/{pod}" for pod in POD}

SIDECAR_CONFIG = f"""plugins_dir = "plugins"

[admin]
address = "127.0.0.1:{ADMIN}"

[[listeners]]
name = "inbound"
address = "0.0.0.0:{INBOUND}"
intercept = "inbound"

[[listeners]]
name = "outbound"
address = "127.0.0.1:{OUTBOUND}"
intercept = "outbound"

[sidecar]
mark = {MARK}
"""

MESH = f"""
[mesh]
cert = "certs/{{pod}}.pem"
key = "certs/{{pod}}-key.pem"
trust_bundle = "certs/ca.pem"
networks = ["{SUBNET}.0/24"]
mtls = "strict"
"""

FILTER_ROUTE = """
[[routes]]
name = "{route}"
direction = "{direction}"
path_prefix = "/"
[[routes.filters]]
plugin = "header-rewrite"
[routes.filters.config]
request.set = {{ "x-sidecar-{pod}" = "{direction}" }}
"""

# Run inside a pod with python3: GET argv[1], retrying for argv[2] seconds;
# prints the body. No proxy from the environment.
POD_GET = """
import sys, time, urllib.request
url, patience = sys.argv[1], float(sys.argv[2])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
deadline = time.monotonic() + patience
while True:
    try:
        with opener.open(url, timeout=5) as r:
            sys.stdout.write(r.read().decode())
        break
    except Exception as e:
        if time.monotonic() >= deadline:
            sys.exit(f"GET {url}: {e}")
        time.sleep(0.1)
"""


# --- pods and processes ------------------------------------------------------


class Pods:
    """Namespaces A and B joined by a veth pair (eth0 in each), lo up; the
    names carry this process's id. delete() removes whichever exist."""

    def __init__(self) -> None:
        pid = os.getpid()
        self.ns = {"a": f"sluice-bench-{pid}-a", "b": f"sluice-bench-{pid}-b"}
        self.ip = {"a": A_IP, "b": B_IP}
        self.made: list[str] = []

    def create(self, quickack: bool) -> None:
        for ns in self.ns.values():
            ip("netns", "add", ns)
            self.made.append(ns)
        a, b = self.ns["a"], self.ns["b"]
        ip("link", "add", "eth0", "netns", a, "type", "veth", "peer", "name", "eth0", "netns", b)
        for pod, ns in self.ns.items():
            ip("-n", ns, "addr", "add", f"{self.ip[pod]}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", "eth0", "up")
            if quickack:
                quickack_routes(ns, self.ip[pod])

    def delete(self) -> None:
        while self.made:  # the veth pair goes with its namespaces
            subprocess.run(["ip", "netns", "del", self.made.pop()], capture_output=True)


def quickack_routes(ns: str, own: str) -> None:
    """`quickack 1` on the pod's routes: to the pod subnet, and to its own
    address (which the inbound sidecar dials the app on).

    The demo upstream does not set TCP_NODELAY on the connections it
    accepts, and its h2c responses take more than one write: with several
    streams in flight, Nagle holds a write until the client's delayed ACK,
    ~20 ms a request (its HTTP/1.1 responses are one write and do not
    wait). With quickack every TCP peer in the pods ACKs at once, the same
    in every case; sluice sets TCP_NODELAY on both of its sides itself.
    --no-quickack leaves the kernel's delayed ACKs."""
    ip("-n", ns, "route", "replace", f"{SUBNET}.0/24", "dev", "eth0", "src", own, "quickack", "1")
    ip("-n", ns, "route", "replace", "local", own, "dev", "eth0", "table", "local", "src", own, "quickack", "1")


def ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"`ip {' '.join(args)}` failed: {r.stderr.strip()}")


def in_pod(ns: str, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


PROCS: list[subprocess.Popen] = []  # everything started, stopped on the way out


def spawn(ns: str, cmd: list[str], log: Path) -> subprocess.Popen:
    """`cmd` in pod `ns`. `ip netns exec` execs it, so the pid is cmd's own."""
    with open(log, "ab") as out:
        env = dict(os.environ, RUST_LOG="warn", NO_COLOR="1")
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env)
    proc.log_path = log
    PROCS.append(proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    c.stop(proc)  # SIGTERM, then SIGKILL after 10 s
    if proc in PROCS:
        PROCS.remove(proc)


def http_get(ns: str, url: str, work: Path, patience: float = 0) -> str:
    """GET `url` from inside pod `ns`; stops the run on failure."""
    r = in_pod(ns, ["python3", str(work / "pod_get.py"), url, str(patience)], timeout=patience + 30)
    if r.returncode:
        sys.exit(f"in {ns}: {r.stderr.strip()}")
    return r.stdout


def wait_http(proc: subprocess.Popen, ns: str, url: str, work: Path, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with status {proc.returncode} while starting:\n{c.log_tail(proc)}")
        if in_pod(ns, ["python3", str(work / "pod_get.py"), url, "0"]).returncode == 0:
            return
        time.sleep(0.1)
    sys.exit(f"{what} did not answer {url} within 30 s:\n{c.log_tail(proc)}")


def check_exec(proc: subprocess.Popen, name: str) -> None:
    """The pid is the program's (ip netns exec replaced itself), so /proc/PID is what we measure."""
    comm = Path(f"/proc/{proc.pid}/comm").read_text().strip()
    if comm != name:
        sys.exit(f"pid {proc.pid} is {comm!r}, not {name!r}: cannot measure it")


# --- measurements ------------------------------------------------------------


def rss_kib(pid: int) -> int:
    m = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) if m else 0


def schedstat_ns(pid: int) -> dict[int, int]:
    """Per live thread: nanoseconds on CPU (first field of schedstat)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # the thread just exited
    return out


def idle_cpu(pids: dict[str, int], seconds: float) -> dict[str, dict]:
    """CPU of each process over `seconds` with nothing to do, in ms per second:
    from utime+stime ticks, and from schedstat (threads alive at both ends)."""
    ticks = {k: c.cpu_seconds([p]) for k, p in pids.items()}
    fine = {k: schedstat_ns(p) for k, p in pids.items()}
    start = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - start
    out = {}
    for k, p in pids.items():
        now = schedstat_ns(p)
        ns = sum(now[t] - fine[k][t] for t in now if t in fine[k])
        out[k] = {
            "cpu_ms_per_s": (c.cpu_seconds([p]) - ticks[k]) * 1000 / elapsed,
            "cpu_ms_per_s_schedstat": ns / 1e6 / elapsed,
        }
    return out


def h2load(ns: str, proto: str, extra: list[str], log: Path | None = None) -> str:
    """h2load from pod `ns` to the app; stops the run unless every request got a 2xx."""
    cmd = ["h2load", *SHAPE[proto], *extra, *([f"--log-file={log}"] if log else []), URL]
    out = in_pod(ns, cmd, timeout=600).stdout
    m = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    ok = m and m.group(1) == m.group(2) and m.group(3) == m.group(4) == "0"
    if not ok or not status or status.group(1) != m.group(1):
        sys.exit(f"h2load ({proto}) from {ns} to {URL} had failures:\n{out}")
    return out


def metrics(pods: Pods, work: Path, pod: str) -> str:
    return http_get(pods.ns[pod], f"http://127.0.0.1:{ADMIN}/metrics", work)


def inbound_handshakes(pods: Pods, work: Path) -> float:
    """B's completed TLS handshakes on its inbound listener (all versions)."""
    found = re.findall(r'^sluice_tls_handshakes_total\{([^}]*)\} (\S+)$', metrics(pods, work, "b"), re.M)
    return sum(float(v) for labels, v in found if 'listener="inbound"' in labels)


def served(pods: Pods, work: Path) -> dict[str, dict[str, float]]:
    """Per pod: sluice_requests_total by route, from its admin listener."""
    out = {}
    for pod in pods.ns:
        text = metrics(pods, work, pod)
        routes: dict[str, float] = {}
        for labels, value in re.findall(r"^sluice_requests_total\{([^}]*)\} (\S+)$", text, re.M):
            route = re.search(r'route="([^"]*)"', labels).group(1)
            routes[route] = routes.get(route, 0) + float(value)
        out[pod] = routes
    return out


def check_served(pods: Pods, work: Path, before: dict, case: str, count: int) -> None:
    """Each sidecar served exactly `count` more requests, all on the case's
    route (none for direct, none in A for one-hop). Waits up to 5 s for the
    counters to settle."""
    deadline = time.monotonic() + 5
    while True:
        after = served(pods, work)
        delta = {p: {r: n - before[p].get(r, 0) for r, n in after[p].items() if n != before[p].get(r, 0)} for p in after}
        want = {p: ({ROUTES[case][p]: count} if p in ROUTES[case] else {}) for p in after}
        if delta == want:
            return
        if time.monotonic() >= deadline:
            sys.exit(f"{case}: the sidecars' request counters grew by {delta}, expected {want}")
        time.sleep(0.2)


def fixed_rate_run(pods: Pods, work: Path, pids: dict[str, int], case: str, proto: str, rate: int, count: int) -> dict:
    clients = int(SHAPE[proto][SHAPE[proto].index("-c") + 1])
    rps = ["--rps", str(max(1, rate // clients))]
    # Before the warm-up: A's sidecar pools its connections to B, so the
    # measured run itself may open none.
    handshakes = inbound_handshakes(pods, work)
    h2load(pods.ns["a"], proto, ["-n", str(max(rate, count // 10)), *rps])  # warm-up
    log = work / "latency.tsv"
    before_served = served(pods, work)
    before = {k: c.cpu_seconds([p]) for k, p in pids.items()}
    out = h2load(pods.ns["a"], proto, ["-n", str(count), *rps], log)
    cpu = {k: c.cpu_seconds([p]) - before[k] for k, p in pids.items()}
    check_served(pods, work, before_served, case, count)
    handshakes = inbound_handshakes(pods, work) - handshakes
    if (handshakes > 0) != (case == "sidecars+mtls"):
        sys.exit(f"{case} ({proto}): B's inbound TLS handshakes rose by {handshakes:.0f} over the run and its warm-up")
    lat = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines() if line)
    log.unlink()
    return {
        "achieved_rate": c.achieved_rate(out),
        "p50_us": c.percentile(lat, 0.50),
        "p99_us": c.percentile(lat, 0.99),
        "p999_us": c.percentile(lat, 0.999),
        "requests": len(lat),
        "tls_handshakes_b": handshakes,
        **{f"cpu_us_per_req_{k}": cpu[k] / count * 1e6 for k in pids},
    }


def probe(pods: Pods, work: Path, case: str) -> None:
    """One request from A to B's app: did it pass the sidecars (`via`; for
    one-hop one `X-Forwarded-For` entry, A's, for two two), with filters
    both header-rewrite routes, with mTLS B's check of A's certificate
    (`x-forwarded-client-cert`)? Stops the run if not."""
    echo = json.loads(http_get(pods.ns["a"], f"{URL}probe", work))
    h = echo["headers"]
    filtered = any(k.startswith("x-sidecar-") for k in h)
    xff = [x.strip() for x in h.get("x-forwarded-for", "").split(",") if x.strip()]
    xfcc = h.get("x-forwarded-client-cert", "")
    proxied = "sluice" in h.get("via", "") and not filtered
    checks = {
        "direct": "via" not in h and not filtered and not xff and not xfcc,
        "one-hop": proxied and xff == [A_IP] and not xfcc,
        "sidecars": proxied and xff == [A_IP, A_IP] and not xfcc,
        "sidecars+filters": h.get("x-sidecar-a") == "outbound" and h.get("x-sidecar-b") == "inbound" and not xfcc,
        "sidecars+mtls": proxied and xff == [A_IP, A_IP]
        and f"By={SPIFFE['b']};" in xfcc and xfcc.endswith(f";URI={SPIFFE['a']}"),
    }
    if not checks[case]:
        sys.exit(f"{case}: the probe request did not arrive as expected; the app saw:\n{json.dumps(echo, indent=1)}")


# --- sidecars ------------------------------------------------------------------


def openssl(*args: str) -> None:
    r = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"`openssl {' '.join(args)}` failed:\n{r.stdout}{r.stderr}")


def make_certificates(certs: Path) -> None:
    """In `certs`: a CA (ca.pem, the trust bundle) and per pod an SVID
    (<pod>.pem, <pod>-key.pem): a P-256 key and a certificate with the pod's
    SPIFFE ID as a URI SAN, usable as server and as client."""
    certs.mkdir(exist_ok=True)
    key = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    openssl("genpkey", *key, "-out", str(certs / "ca-key.pem"))
    openssl(
        "req", "-x509", "-new", "-key", str(certs / "ca-key.pem"), "-out", str(certs / "ca.pem"),
        "-days", "2", "-subj", "/O=sluice bench/CN=bench CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    for pod in POD:
        ext = certs / f"{pod}.ext"
        ext.write_text(
            f"subjectAltName=URI:{SPIFFE[pod]}\nextendedKeyUsage=serverAuth,clientAuth\n"
            "keyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n"
        )
        openssl("genpkey", *key, "-out", str(certs / f"{pod}-key.pem"))
        openssl("req", "-new", "-key", str(certs / f"{pod}-key.pem"), "-subj", f"/O=sluice bench/CN={pod}", "-out", str(certs / f"{pod}.csr"))
        openssl(
            "x509", "-req", "-in", str(certs / f"{pod}.csr"), "-CA", str(certs / "ca.pem"), "-CAkey", str(certs / "ca-key.pem"),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(certs / f"{pod}.pem"),
        )  # fmt: skip


def write_configs(work: Path) -> dict[str, str]:
    """Config file stem (a-passthrough, b-filters, …) → text; each must pass `sluice check`."""
    (work / "plugins").mkdir(exist_ok=True)
    (work / "pod_get.py").write_text(POD_GET)
    make_certificates(work / "certs")
    routes = {"a": ("out", "outbound"), "b": ("in", "inbound")}
    confs = {}
    for pod, (route, direction) in routes.items():
        confs[f"{pod}-passthrough"] = SIDECAR_CONFIG
        confs[f"{pod}-filters"] = SIDECAR_CONFIG + FILTER_ROUTE.format(route=route, direction=direction, pod=pod)
        confs[f"{pod}-mtls"] = SIDECAR_CONFIG + MESH.format(pod=pod)
    for stem, text in confs.items():
        path = work / f"{stem}.toml"
        path.write_text(text)
        r = subprocess.run([str(c.SLUICE), "check", "--config", str(path)], capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"target/release/sluice rejects {stem}.toml:\n{r.stdout}{r.stderr}\n--- {stem}.toml ---\n{text}")
    return confs


class Sidecars:
    """Both pods' sidecars on one variant's configs, started fresh and
    ready (admin /ready); rules() installs or removes the redirection."""

    def __init__(self, pods: Pods, work: Path, variant: str, rnd: int):
        self.pods, self.work, self.variant, self.rnd = pods, work, variant, rnd
        self.procs: dict[str, subprocess.Popen] = {}

    def config(self, pod: str) -> Path:
        return self.work / f"{pod}-{self.variant}.toml"

    def __enter__(self) -> "Sidecars":
        for pod, ns in self.pods.ns.items():
            cmd = [str(c.SLUICE), "--threads", "1", "run", "--config", str(self.config(pod))]
            self.procs[pod] = spawn(ns, cmd, self.work / f"sidecar-{pod}-{self.variant}-{self.rnd}.log")
        for pod, proc in self.procs.items():
            wait_http(proc, self.pods.ns[pod], f"http://127.0.0.1:{ADMIN}/ready", self.work, f"sidecar {POD[pod]}")
            check_exec(proc, "sluice")
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:  # on failure measure() stops everything and deletes the pods
            self.rules(False)
        for proc in self.procs.values():
            stop(proc)

    @property
    def pids(self) -> dict[str, int]:
        return {pod: p.pid for pod, p in self.procs.items()}

    def rules(self, on: bool, pods: list[str] | None = None) -> None:
        """Install (or remove) the rules in `pods` (default: both)."""
        for pod in self.pods.ns if pods is None else pods:
            ns = self.pods.ns[pod]
            cmd = [str(c.SLUICE), "iptables", "--config", str(self.config(pod)), "--no-ipv6", *([] if on else ["--remove"])]
            r = in_pod(ns, cmd)
            if r.returncode:
                sys.exit(f"`sluice iptables{'' if on else ' --remove'}` in {ns} failed:\n{r.stdout}{r.stderr}")

    def rss(self) -> dict[str, int]:
        return {pod: rss_kib(pid) for pod, pid in self.pids.items()}


# --- the run -------------------------------------------------------------------


def session(pods: Pods, work: Path, args, variant: str, rnd: int, runs: list, idles: list) -> None:
    """Fresh sidecars on `variant`: idle, then the load (direct and one-hop
    first in the passthrough session), then the RSS after it."""
    case = VARIANTS[variant]
    with Sidecars(pods, work, variant, rnd) as s:
        time.sleep(1)
        rss_start = s.rss()
        s.rules(True)
        idle = idle_cpu(s.pids, args.idle_seconds)
        if variant == "passthrough":
            s.rules(False)
            load(pods, work, args, s, "direct", rnd, runs)
            s.rules(True, RULES["one-hop"])
            load(pods, work, args, s, "one-hop", rnd, runs)
            s.rules(True, [p for p in RULES[case] if p not in RULES["one-hop"]])
        load(pods, work, args, s, case, rnd, runs)
        time.sleep(1)
        rss_after = s.rss()
    for pod in pods.ns:
        e = dict(round=rnd, variant=variant, pod=pod, rss_start_kib=rss_start[pod], rss_after_load_kib=rss_after[pod], **idle[pod])
        idles.append(e)
        print(
            f"round {rnd} {variant:<11} sidecar {POD[pod]}: idle {e['cpu_ms_per_s']:.1f} ms/s "
            f"(schedstat {e['cpu_ms_per_s_schedstat']:.3f}), RSS {e['rss_start_kib']} → {e['rss_after_load_kib']} KiB",
            flush=True,
        )


def load(pods: Pods, work: Path, args, s: Sidecars, case: str, rnd: int, runs: list) -> None:
    """The probe request, then one fixed-rate run per protocol."""
    probe(pods, work, case)
    for proto in args.protocols:
        r = fixed_rate_run(pods, work, s.pids, case, proto, args.rate, args.requests)
        r.update(round=rnd, protocol=proto, case=case)
        runs.append(r)
        report(r, args.rate)


def report(r: dict, rate: int) -> None:
    slow = f"  (h2load reached only {r['achieved_rate']:.0f}/s)" if r["achieved_rate"] < 0.95 * rate else ""
    print(
        f"round {r['round']} {r['protocol']} {r['case']:<16} {r['achieved_rate']:7.0f} req/s  "
        f"A {r['cpu_us_per_req_a']:6.1f} µs/req  B {r['cpu_us_per_req_b']:6.1f} µs/req  "
        f"p50 {r['p50_us']} µs  p99 {r['p99_us']} µs{slow}",
        flush=True,
    )


def measure(args, work: Path) -> tuple[list, list]:
    pods = Pods()
    try:
        pods.create(args.quickack)
        app_cmd = [str(c.SLUICE), "--threads", "1", "demo-upstream", "--listen", f"{B_IP}:{APP_PORT}"]
        app = spawn(pods.ns["b"], app_cmd, work / "app.log")
        wait_http(app, pods.ns["b"], URL, work, "the app (demo upstream)")
        runs: list = []
        idles: list = []
        for rnd in range(1, args.rounds + 1):
            order = list(VARIANTS) if rnd % 2 else list(VARIANTS)[::-1]
            for variant in order:
                session(pods, work, args, variant, rnd, runs, idles)
        return runs, idles
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for proc in PROCS[::-1]:
            stop(proc)
        pods.delete()


def summarise(runs: list, idles: list) -> dict:
    """Per protocol and case: lists over rounds (latency also as overhead over
    direct); per variant and pod: the idle lists."""
    direct = {(r["round"], r["protocol"]): r for r in runs if r["case"] == "direct"}
    s: dict = {}
    for r in runs:
        d = direct[(r["round"], r["protocol"])]
        e = s.setdefault(f"{r['protocol']} {r['case']}", {})
        for k in ["achieved_rate", "p50_us", "p99_us", "p999_us", "cpu_us_per_req_a", "cpu_us_per_req_b"]:
            e.setdefault(k, []).append(r[k])
        for q in ["p50", "p99", "p999"]:
            e.setdefault(f"{q}_overhead_us", []).append(r[f"{q}_us"] - d[f"{q}_us"])
    for i in idles:
        e = s.setdefault(f"idle {i['variant']} {i['pod']}", {})
        for k in ["cpu_ms_per_s", "cpu_ms_per_s_schedstat", "rss_start_kib", "rss_after_load_kib"]:
            e.setdefault(k, []).append(i[k])
    return s


def goal(s: dict, proto: str) -> dict | None:
    """Two sidecars with mTLS against one cleartext hop: the medians over
    rounds of each case's overhead over direct, and their ratio (and the
    per-round ratios)."""
    mtls, hop = s.get(f"{proto} sidecars+mtls"), s.get(f"{proto} one-hop")
    if not mtls or not hop:
        return None
    out = {}
    for q in ["p50", "p99"]:
        x, u = statistics.median(mtls[f"{q}_overhead_us"]), statistics.median(hop[f"{q}_overhead_us"])
        pairs = zip(mtls[f"{q}_overhead_us"], hop[f"{q}_overhead_us"])
        out[q] = {
            "mtls_overhead_us": x,
            "one_hop_overhead_us": u,
            "ratio": x / u if u > 0 else None,
            "ratio_per_round": [a / b if b > 0 else None for a, b in pairs],
        }
    out["met"] = all(out[q]["ratio"] is not None and out[q]["ratio"] <= 2 for q in ["p50", "p99"])
    return out


def goal_line(g: dict) -> str:
    def ratio(q: str) -> str:
        r = g[q]["ratio"]
        rounds = [x for x in g[q]["ratio_per_round"] if x is not None]
        spread = f" [{min(rounds):.2f}–{max(rounds):.2f}]" if len(rounds) > 1 else ""
        return ("n/a" if r is None else f"{r:.2f}") + spread

    p50, p99 = g["p50"], g["p99"]
    return (
        f"two sidecars with mTLS add {p50['mtls_overhead_us']:.0f} µs p50 / {p99['mtls_overhead_us']:.0f} µs p99 over direct; "
        f"one cleartext hop adds {p50['one_hop_overhead_us']:.0f} / {p99['one_hop_overhead_us']:.0f}; "
        f"ratio {ratio('p50')}, {ratio('p99')} (goal ≤ 2: {'met' if g['met'] else 'not met'})"
    )


def markdown(data: dict) -> str:
    a, s, mr = data["args"], data["summary"], c.med_range
    lines = [
        "# Sidecar benchmark",
        "",
        f"Measured {data['date']} on {data['machine']} (nproc {data['nproc']}); sluice {data['versions']['sluice']} "
        f"(binary built {data['versions']['binary_built']}); {a['rounds']} rounds of {a['requests']} requests per run "
        f"at {a['rate']} req/s; median [min–max] over rounds. Command: `{data['command']}` (took {data['duration_s']} s).",
        "",
        "Pods A and B are network namespaces on a veth pair; B's app is `sluice demo-upstream` (echo, HTTP/1.1 and h2c); "
        "h2load in A calls it at a fixed rate. `direct`: sidecars running, no rules; `one-hop`: rules in B only "
        "(one cleartext hop: B's inbound sidecar); `sidecars`: rules from `sluice iptables` in both, no routes "
        "(implicit passthrough); `sidecars+filters`: a header-rewrite route in each (outbound in A, inbound in B); "
        "`sidecars+mtls`: as `sidecars` plus `[mesh]` in both (P-256 SVIDs from one CA, `networks` the pods' "
        "subnet, `mtls = \"strict\"`): A's sidecar → B's is mutual TLS (checked: B's inbound TLS handshakes rose "
        "and the app saw A's SPIFFE ID in `x-forwarded-client-cert`). "
        "CPU is each sidecar's utime+stime (`--threads 1`) per request; overhead is "
        "the latency minus the direct run's in the same round; in the direct row the sidecars' CPU is their "
        "background work, spread over requests they do not see. "
        + ("The pods' routes have `quickack 1` (the demo upstream sets no TCP_NODELAY: its h2c answers would wait "
           "on delayed ACKs). " if a["quickack"] else "Delayed ACKs as the kernel has them (`--no-quickack`). ")
        + "No CPU pinning: two cores shared by h2load, the app and both sidecars.",
        "",
    ]
    for proto in a["protocols"]:
        shape = " ".join(SHAPE[proto])
        lines += [
            f"**{NAMES[proto]}** (h2load `{shape}`)",
            "",
            "| case | req/s | p50 µs | p99 µs | p50 overhead µs | p99 overhead µs | A sidecar CPU µs/req | B sidecar CPU µs/req |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for case in CASES:
            e = s.get(f"{proto} {case}")
            if not e:
                continue
            over = ["–", "–"] if case == "direct" else [mr(e[f"{q}_overhead_us"], "{:+.0f}") for q in ["p50", "p99"]]
            lines.append(
                f"| {case} | {mr(e['achieved_rate'], '{:.0f}')} | {mr(e['p50_us'], '{:.0f}')} | {mr(e['p99_us'], '{:.0f}')} "
                f"| {over[0]} | {over[1]} | {mr(e['cpu_us_per_req_a'])} | {mr(e['cpu_us_per_req_b'])} |"
            )
        lines.append("")
        g = data["goal"].get(proto)
        if g:
            lines += [f"Goal, {NAMES[proto]}: {goal_line(g)}.", ""]
    lines += [
        f"**Idle** (rules installed, no traffic, for {a['idle_seconds']:g} s right after start; CPU in ms per second from "
        "utime+stime ticks of 10 ms, in brackets from schedstat; VmRSS after start → after the session's load):",
        "",
    ]
    for variant in VARIANTS:
        for pod in ["a", "b"]:
            e = s.get(f"idle {variant} {pod}")
            if e:
                lines.append(
                    f"- {variant}, sidecar {POD[pod]}: {mr(e['cpu_ms_per_s'], '{:.1f}')} ms/s "
                    f"(schedstat {mr(e['cpu_ms_per_s_schedstat'], '{:.3f}')}); RSS {mr(e['rss_start_kib'], '{:.0f}')} KiB "
                    f"→ {mr(e['rss_after_load_kib'], '{:.0f}')} KiB"
                )
    return "\n".join(lines) + "\n"


def versions(built: str) -> dict:
    def out(cmd: list[str]) -> str:
        r = subprocess.run(cmd, capture_output=True, text=True)
        return next(iter((r.stdout + r.stderr).strip().splitlines()), "")

    git = out(["git", "-C", str(c.ROOT), "rev-parse", "--short", "HEAD"])
    dirty = out(["git", "-C", str(c.ROOT), "status", "--porcelain", "proxy", "plugins"])
    return {
        "sluice": git + ("+changes" if dirty else ""),
        "binary_built": built,
        "h2load": out(["h2load", "--version"]),
        "iptables": out(["iptables", "--version"]),
    }


def on_signal(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through the cleanup


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    p.add_argument("--rate", type=int, default=1000, help="fixed request rate, req/s (default 1000)")
    p.add_argument("--requests", type=int, default=10000, help="requests per measured run (default 10000)")
    p.add_argument("--idle-seconds", type=float, default=10, help="idle measurement per session (default 10)")
    p.add_argument("--protocols", nargs="+", default=PROTOCOLS, choices=PROTOCOLS)
    p.add_argument("--out", type=Path, default=c.RESULTS, help="where sidecar.{md,json} go")
    p.add_argument("--no-quickack", dest="quickack", action="store_false", help="leave delayed ACKs on (see quickack_routes)")
    p.add_argument("--allow-stale", action="store_true", help="measure a binary older than its sources")
    args = p.parse_args()
    args.protocols = [x for x in PROTOCOLS if x in args.protocols]
    if args.rounds < 1 or args.requests < 100 or args.rate < 16:
        sys.exit("--rounds must be at least 1, --requests at least 100, --rate at least 16")
    if os.geteuid() != 0:
        sys.exit("run as root: network namespaces, iptables and SO_MARK need it")
    for tool in ["ip", "iptables", "h2load", "openssl"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run bench/sidecar.sh, which installs it")
    built = policies.check_binary(args.allow_stale)
    vers = versions(built)  # now: the tree may change while the run goes on
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="sluice-sidecar-"))
    try:
        confs = write_configs(work)
        runs, idles = measure(args, work)
    except KeyboardInterrupt as e:
        sys.exit(f"interrupted ({str(e) or 'Ctrl-C'}); sidecars, app and pods cleaned up")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    data = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": c.machine(),
        "nproc": len(os.sched_getaffinity(0)),
        "command": os.environ.get("SIDECAR_BENCH_COMMAND") or " ".join(["python3 bench/sidecar.py", *sys.argv[1:]]),
        "duration_s": round(time.monotonic() - started),
        "versions": vers,
        "args": {k: getattr(args, k) for k in ["rounds", "rate", "requests", "idle_seconds", "protocols", "quickack"]},
        "configs": confs,
        "runs": runs,
        "idle": idles,
        "summary": summarise(runs, idles),
    }
    data["goal"] = {proto: g for proto in args.protocols if (g := goal(data["summary"], proto))}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sidecar.json").write_text(json.dumps(data, indent=1))
    table = markdown(data)
    (args.out / "sidecar.md").write_text(table)
    print(table)
    for proto, g in data["goal"].items():
        print(f"{NAMES[proto]}: {goal_line(g)}")
    print(f"took {data['duration_s']} s")


if __name__ == "__main__":
    main()
