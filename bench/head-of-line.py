#!/usr/bin/env python3
"""Head-of-line blocking by a spinning filter (see bench/head-of-line.sh).

sluice runs with one worker thread (`--threads 1`) and two routes: `/good`
(no filter) and `/spin` (the `hostile` test filter in `loop` mode: it spins
to its CPU deadline, 500 ms, on every request). A client sends good-route
requests one after another on a keep-alive connection, first alone, then
while another client keeps one spinning request in flight at all times.
Reported per binary: the good route's latency percentiles in both cases.
With a binary whose filter calls hold the worker (`--before`), good
requests wait for the spin to end; with cooperative calls they do not.
"""

import argparse
import http.client
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time


class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without these, headers and body go out as separate small writes and
    # Nagle's algorithm meets delayed ACKs (40 ms a response).
    disable_nagle_algorithm = True
    wbufsize = 65536

    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def start_sluice(binary, hostile, upstream_port, workdir):
    port = free_port()
    plugins = os.path.join(workdir, "plugins")
    os.makedirs(plugins, exist_ok=True)
    target = os.path.join(plugins, "hostile.wasm")
    if not os.path.exists(target):
        os.symlink(os.path.abspath(hostile), target)
    config = os.path.join(workdir, "config.toml")
    with open(config, "w") as f:
        f.write(
            f'plugins_dir = "{plugins}"\n\n[[listeners]]\nname = "bench"\naddress = "127.0.0.1:{port}"\n\n'
            f'[[clusters]]\nname = "app"\nendpoints = ["127.0.0.1:{upstream_port}"]\n\n'
            '[[routes]]\nname = "good"\npath_prefix = "/good"\ncluster = "app"\n\n'
            '[[routes]]\nname = "spin"\npath_prefix = "/spin"\ncluster = "app"\n'
            '[[routes.filters]]\nplugin = "hostile"\ndeadline = "500ms"\nmax_instances = 4\n'
            'config = { mode = "loop" }\n'
        )
    proc = subprocess.Popen(
        [binary, "--threads", "1", "run", "--config", config],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit(f"{binary} did not start")


def good_latencies(port, requests):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    took = []
    for _ in range(requests):
        start = time.perf_counter()
        conn.request("GET", "/good")
        resp = conn.getresponse()
        resp.read()
        took.append((time.perf_counter() - start) * 1e6)
        assert resp.status == 200, resp.status
    conn.close()
    return took


def spin_forever(port, stop, spins):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        conn.request("GET", "/spin")
        resp = conn.getresponse()
        resp.read()
        spins.append(resp.status)


def measure(binary, hostile, upstream_port, requests):
    with tempfile.TemporaryDirectory() as workdir:
        proc, port = start_sluice(binary, hostile, upstream_port, workdir)
        try:
            good_latencies(port, 200)  # warm up
            alone = good_latencies(port, requests)
            stop, spins = threading.Event(), []
            spinner = threading.Thread(target=spin_forever, args=(port, stop, spins))
            spinner.start()
            time.sleep(0.2)
            loaded = good_latencies(port, requests)
            stop.set()
            spinner.join()
        finally:
            proc.terminate()
            proc.wait()
    summary = lambda xs: {p: round(percentile(xs, p)) for p in (50, 90, 99)} | {"max": round(max(xs))}
    return {"alone": summary(alone), "spinning": summary(loaded), "spins": len(spins), "spin_statuses": sorted(set(spins))}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/sluice")
    parser.add_argument("--before", help="a second binary to compare (e.g. a build without cooperative calls)")
    parser.add_argument("--hostile", default="target/wasm-components/wasm32-wasip2/plugin/hostile.wasm")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    binaries = [("after", args.binary)] + ([("before", args.before)] if args.before else [])
    results = {}
    for round_ in range(args.rounds):
        for label, binary in binaries:
            r = measure(binary, args.hostile, upstream.server_address[1], args.requests)
            results.setdefault(label, []).append(r)
            print(f"round {round_ + 1} {label}: good route µs alone {r['alone']}, "
                  f"with a filter spinning 500 ms per request {r['spinning']} ({r['spins']} spins, statuses {r['spin_statuses']})",
                  flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
