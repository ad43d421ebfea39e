"""The idle-connection part of bench/compare.py: memory per idle client connection.

For each proxy (not direct), protocol (HTTP/1.1, and HTTP/2 with prior
knowledge, h2c) and repetition, the proxy is started fresh, warmed up with
a few connections that are then closed, and left to settle; its RSS is read
(VmRSS summed over its processes: nginx's master and worker). Then N client
connections are opened one after the other; on each, one request (the same
GET with the bearer token as the load) is sent and its response read to the
end, and the connection is kept open with nothing more on it. One second
later the RSS is read again: (after − before) / N is the proxy's memory per
idle connection. Also recorded: how long opening the N connections with
their requests took, and the proxy's CPU over the idle second (it should be
about zero: no timers firing per connection).

The client runs in this process, pinned to the load core; kernel socket
buffers are not in any process's RSS, so they are not counted. The proxies
run with configs whose connection limits are raised above N (raise_limits).
"""

import os
import random
import re
import resource
import socket
import statistics
import time
from pathlib import Path

PROTOCOLS = ["h1", "h2"]  # h2: h2c with prior knowledge, as in the load
NAMES = {"h1": "HTTP/1.1", "h2": "h2c"}
WARM_UP = 8  # connections opened, used once and closed before the first reading
SETTLE = 0.5  # seconds between the warm-up and the first reading
IDLE = 1.0  # seconds between the last response and the second reading


def raise_fd_limit(need: int) -> None:
    """Soft RLIMIT_NOFILE up to the hard limit (and the hard limit too if
    that is short and the process may raise it); the proxies started later
    inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            return
        except (ValueError, OSError):
            raise SystemExit(f"--idle-connections needs {need} open files, the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def raise_limits(work: Path, n: int) -> None:
    """Rewrite the configs compare.py wrote in `work` so every proxy takes
    n connections and more. The load configs keep their own limits: nginx
    allocates its connection array to worker_connections at start, which
    would change its RSS in the load tables."""
    limit = n + 1024

    def edit(name: str, pattern: str, replacement: str) -> None:
        path = work / name
        text, count = re.subn(pattern, replacement, path.read_text(), count=1, flags=re.M)
        if not count:
            raise SystemExit(f"idle connections: no /{pattern}/ in {name} to raise")
        path.write_text(text)

    edit("nginx.conf", r"worker_connections \d+;", f"worker_connections {limit};")
    edit("nginx.conf", r"^worker_processes", f"worker_rlimit_nofile {2 * limit};\nworker_processes")
    edit("haproxy.cfg", r"maxconn \d+", f"maxconn {limit}")
    for name in ["sluice.toml", "sluice-4-filters.toml"]:  # [limits] before the first table array
        edit(name, r"^\[\[listeners\]\]", f"[limits]\nmax_connections = {limit}\n\n[[listeners]]")


def status_kib(pids: list[int], field: str = "VmRSS") -> int:
    """A memory field of /proc/PID/status (VmRSS, VmHWM), summed over pids."""
    total = 0
    for pid in pids:
        m = re.search(rf"{field}:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
        total += int(m.group(1)) if m else 0
    return total


# --- clients -------------------------------------------------------------------


def read_h1_response(sock: socket.socket) -> int:
    """Read one HTTP/1.1 response (Content-Length or chunked); its status."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("connection closed before the response head")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ", 2)[1])
    length = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
    chunked = re.search(rb"\r\ntransfer-encoding:[^\r]*chunked", head, re.I)
    while (len(body) < int(length.group(1))) if length else (chunked and not body.endswith(b"0\r\n\r\n")):
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("connection closed before the end of the response body")
        body += chunk
    return status


def open_h1(port: int, token: str, path: str) -> socket.socket:
    """A connection with one request answered on it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    status = read_h1_response(sock)
    if status != 200:
        sock.close()
        raise OSError(f"status {status}")
    return sock


def open_h2(port: int, token: str, path: str) -> socket.socket:
    """An h2c connection (preface and SETTINGS, the server's SETTINGS
    acknowledged) with one GET stream read to its end."""
    import h2.config
    import h2.connection
    import h2.events

    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    headers = [(":method", "GET"), (":scheme", "http"), (":authority", f"127.0.0.1:{port}"), (":path", path)]
    conn.send_headers(1, [*headers, ("authorization", f"Bearer {token}")], end_stream=True)
    sock.sendall(conn.data_to_send())
    status, ended = None, False
    while not ended:
        data = sock.recv(65536)
        if not data:
            raise OSError("connection closed before the end of the stream")
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                status = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                ended = True
            elif isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                raise OSError(f"h2: {event}")
        if out := conn.data_to_send():  # the SETTINGS ack, window updates
            sock.sendall(out)
    if status != 200:
        sock.close()
        raise OSError(f"status {status}")
    return sock


OPEN = {"h1": open_h1, "h2": open_h2}


# --- the measurement -----------------------------------------------------------


def measure_one(target, proto: str, token: str, path: str, n: int, cpu_seconds) -> dict:
    """One started target: RSS before, N connections opened with a request
    each, RSS after one idle second."""
    port = target.port(proto)
    for _ in range(WARM_UP):
        OPEN[proto](port, token, path).close()
    time.sleep(SETTLE)
    pids = target.pids()
    before = status_kib(pids)
    socks: list[socket.socket] = []
    try:
        start = time.monotonic()
        for i in range(n):
            try:
                socks.append(OPEN[proto](port, token, path))
            except OSError as e:
                raise SystemExit(f"idle connections: {target.name} {proto}, connection {i + 1} of {n} failed: {e}")
        setup = time.monotonic() - start
        cpu = cpu_seconds(pids)
        time.sleep(IDLE)
        idle_cpu = cpu_seconds(pids) - cpu
        after = status_kib(target.pids())
    finally:
        for s in socks:
            s.close()
    return {
        "connections": n,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "bytes_per_conn": (after - before) * 1024 / n,
        "setup_seconds": round(setup, 3),
        "idle_cpu_ms": round(idle_cpu * 1e3, 1),
    }


def run(targets: list[str], rounds: int, n: int, token: str, path: str, make_target, cpu_seconds, load_core: str) -> list[dict]:
    """Every target and protocol, `rounds` times, targets in a different
    order each round; make_target(name) gives compare.py's Target, started
    with the raised-limit configs."""
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(load_core)})
    records = []
    try:
        for rnd in range(1, rounds + 1):
            order = targets[:]
            random.Random(1000 + rnd).shuffle(order)
            for proto in PROTOCOLS:
                for name in order:
                    with make_target(name) as t:
                        r = measure_one(t, proto, token, path, n, cpu_seconds)
                    r.update(target=name, protocol=proto, round=rnd)
                    records.append(r)
                    print(
                        f"idle round {rnd} {proto} {name:<17} {r['bytes_per_conn'] / 1024:7.2f} KiB/conn"
                        f"  RSS {r['rss_before_kib'] / 1024:.1f} → {r['rss_after_kib'] / 1024:.1f} MiB"
                        f"  opened in {r['setup_seconds']:.2f} s  idle CPU {r['idle_cpu_ms']:.0f} ms",
                        flush=True,
                    )
    finally:
        os.sched_setaffinity(0, affinity)
    return records


# --- report --------------------------------------------------------------------


def markdown(data: dict, targets: list[str], med_range) -> list[str]:
    """The table of KiB per idle connection, h1 and h2c per target."""
    idle = data.get("idle_connections")
    if not idle:
        return []
    by: dict = {}
    for r in idle:
        by.setdefault((r["target"], r["protocol"]), []).append(r)
    conns = sorted({r["connections"] for r in idle})
    runs = max(len(rs) for rs in by.values())

    def col(t: str, proto: str, key: str, scale: float = 1, fmt: str = "{:.1f}") -> str:
        return med_range([r[key] * scale for r in by.get((t, proto), [])], fmt)

    def med(t: str, proto: str, key: str, fmt: str, scale: float = 1) -> str:
        xs = [r[key] * scale for r in by.get((t, proto), [])]
        return fmt.format(statistics.median(xs)) if xs else "–"

    lines = [
        f"**Memory per idle client connection** ({', '.join(map(str, conns))} connections per run, each sent one "
        "request and read to the end, then left open and idle; the proxy's RSS one second later minus "
        "before, divided by the connections; median [min–max] over "
        f"{runs} runs, medians in the last three columns; kernel socket buffers are not in RSS)",
        "",
        "| target | KiB per idle HTTP/1.1 connection | KiB per idle h2c connection | RSS before, MiB (h1 / h2c) "
        "| opening them, s (h1 / h2c) | CPU in the idle second, ms (h1 / h2c) |",
        "|---|---|---|---|---|---|",
    ]
    for t in (t for t in targets if (t, "h1") in by or (t, "h2") in by):
        lines.append(
            f"| {t} | {col(t, 'h1', 'bytes_per_conn', 1 / 1024, '{:.2f}')} | {col(t, 'h2', 'bytes_per_conn', 1 / 1024, '{:.2f}')} "
            f"| {med(t, 'h1', 'rss_before_kib', '{:.1f}', 1 / 1024)} / {med(t, 'h2', 'rss_before_kib', '{:.1f}', 1 / 1024)} "
            f"| {med(t, 'h1', 'setup_seconds', '{:.2f}')} / {med(t, 'h2', 'setup_seconds', '{:.2f}')} "
            f"| {med(t, 'h1', 'idle_cpu_ms', '{:.0f}')} / {med(t, 'h2', 'idle_cpu_ms', '{:.0f}')} |"
        )
    lines.append("")
    return lines

