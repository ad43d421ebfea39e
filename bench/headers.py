#!/usr/bin/env python3
"""What each proxy of bench/compare.py changes in a request and its response.

Each target runs with compare.py's cleartext config, on the proxy core as
in the benchmark, in front of a small upstream written here (on port
19109, not compare.py's, so a benchmark's upstream may run) that records the request
head it gets and answers with a fixed response. One GET is sent over
HTTP/1.1 and one over h2c, with the benchmark's bearer token (the
sluice-4-filters target checks it) and an `X-Forwarded-For` already on it;
the report lists the request headers the upstream got that the client did
not send, those it got changed, and those it did not get; and the same for
the response the client got against what the upstream sent. Header names
are lowercased; values that change per run (dates) are shown as they came.

    python3 bench/headers.py [--targets sluice nginx haproxy pingora]

Prints a markdown table (bench/README.md has the one seen last).
"""

import argparse
import shutil
import socket
import tempfile
import threading
from collections import Counter
from pathlib import Path

import compare
import idle

SENT = [
    ("host", f"127.0.0.1:{compare.PX_H1}"), ("user-agent", "headers.py"), ("accept", "*/*"),
    ("authorization", f"Bearer {compare.jwt()}"), ("x-forwarded-for", "203.0.113.7"),
]
PORT = 19109
# Fixed values, so a proxy replacing them shows.
UPSTREAM_RESPONSE = [
    ("server", "headers-upstream"), ("date", "Thu, 01 Jan 2026 00:00:00 GMT"),
    ("content-type", "text/plain"), ("content-length", "3"),
]


def parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """The first line and the header fields of an HTTP/1.1 head."""
    first, *fields = head.decode("latin-1").split("\r\n")
    pairs = []
    for f in fields:
        name, _, value = f.partition(":")
        pairs.append((name.strip().lower(), value.strip()))
    return first, pairs


class Upstream(threading.Thread):
    """Answers every request on PORT with UPSTREAM_RESPONSE and
    keeps the heads it got."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.heads: list[tuple[str, list[tuple[str, str]]]] = []
        self.sock = socket.create_server(("127.0.0.1", PORT))

    def run(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                self.heads.append(parse_head(head))
                fields = "".join(f"{n}: {v}\r\n" for n, v in UPSTREAM_RESPONSE)
                conn.sendall(f"HTTP/1.1 200 OK\r\n{fields}\r\nok\n".encode())


def h1_request(port: int) -> list[tuple[str, str]]:
    """One GET over HTTP/1.1: the response's header fields."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        fields = "".join(f"{n}: {v}\r\n" for n, v in SENT)
        s.sendall(f"GET {compare.PATH} HTTP/1.1\r\n{fields}\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
    return parse_head(buf.split(b"\r\n\r\n", 1)[0])[1]


def h2_request(port: int) -> list[tuple[str, str]]:
    """One GET over h2c: the response's header fields (pseudo-headers out)."""
    import h2.config
    import h2.connection
    import h2.events

    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="latin-1"))
        conn.initiate_connection()
        pseudo = [(":method", "GET"), (":scheme", "http"), (":authority", SENT[0][1]), (":path", compare.PATH)]
        conn.send_headers(1, pseudo + SENT[1:], end_stream=True)
        s.sendall(conn.data_to_send())
        while True:
            for event in conn.receive_data(s.recv(65536)):
                if isinstance(event, h2.events.ResponseReceived):
                    return [(n, v) for n, v in event.headers if not n.startswith(":")]
            s.sendall(conn.data_to_send())


def diff(before: list[tuple[str, str]], after: list[tuple[str, str]]) -> tuple[list[str], list[str], list[str]]:
    """Added, changed and removed fields from `before` to `after`, field
    lines compared as a multiset (a second field of a name is an addition)."""
    plus, minus = Counter(after) - Counter(before), Counter(before) - Counter(after)
    gone, new, had = {n for n, _ in minus}, {n for n, _ in plus}, {n for n, _ in before}
    fresh = [(n, v) for n, v in after if (n, v) in plus]
    added = [f"`{n}: {v}`" + (" (another field)" if n in had else "") for n, v in fresh if n not in gone]
    changed = [f"`{n}: {v}`" for n, v in fresh if n in gone]
    removed = [f"`{n}`" for n, _ in minus if n not in new]
    return added, changed, removed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--targets", nargs="+", default=["sluice", "nginx", "haproxy", "pingora"], choices=compare.TARGETS[1:])
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sluice-headers-"))
    upstream = Upstream()
    upstream.start()
    rows = []
    try:
        compare.write_configs(work)
        for f in ["nginx.conf", "haproxy.cfg", "sluice.toml", "sluice-4-filters.toml"]:
            path = work / f
            path.write_text(path.read_text().replace(f"127.0.0.1:{compare.UP_H1}", f"127.0.0.1:{PORT}"))
        compare.UP_H1 = PORT  # pingora's --upstream, read when it starts
        for name in args.targets:
            for proto, send in [("h1", h1_request), ("h2", h2_request)]:
                with compare.Target(name, work) as t:
                    upstream.heads.clear()
                    response = send(t.port(proto))
                if not upstream.heads:
                    raise SystemExit(f"{name} ({proto}) sent nothing upstream; its response: {response}")
                first, got = upstream.heads[-1]
                sent = SENT if proto == "h1" else SENT[1:]  # h2: :authority, no host field
                req = diff(sent, got)
                resp = diff(UPSTREAM_RESPONSE, response)
                rows.append((name, proto, first, req, resp))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| target | client → proxy | request line upstream | request headers added | changed | removed | response headers added | changed | removed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, proto, first, req, resp in rows:
        cells = [", ".join(x) or "–" for x in (*req, *resp)]
        print(f"| {name} | {idle.NAMES[proto]} | `{first}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
