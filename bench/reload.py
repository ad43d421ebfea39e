#!/usr/bin/env python3
"""Hot-reload benchmark for the release binary.

Measures, against a running `sluice` (release build):
  * time from a plugin file's write (editor-style rename) to the first
    response from the new version, for a cache miss (content never seen:
    a fresh custom section makes a new hash, so it is compiled) and for a
    cache hit (content compiled before: loaded from the .cwasm cache);
  * the proxy's RSS after 1 reload and after 100 reloads.

Usage: bench/reload.py [rounds]   (builds nothing: run `cargo build --release`
and `cargo test -p sluice --test reload --no-run` first so the binary and the
test filters exist; bench/reload.sh does that.)
"""
import http.client, json, os, random, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/sluice")
WASM_DIR = os.path.join(ROOT, "target/wasm-components/wasm32-wasip2/plugin")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20


def leb(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def with_custom_section(component, payload):
    """A component with one more custom section: same behaviour, new hash."""
    name = b"bench-pad"
    body = leb(len(name)) + name + payload
    return component + b"\x00" + leb(len(body)) + body


def write_renamed(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def version(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/")
    r = c.getresponse()
    r.read()
    c.close()
    return r.getheader("x-filter-version")


def time_to_serve(path, data, want, port):
    write_renamed(path, data)
    t0 = time.perf_counter()
    while version(port) != want:
        time.sleep(0.001)
        if time.perf_counter() - t0 > 10:
            raise SystemExit(f"version {want} never served")
    return (time.perf_counter() - t0) * 1e3


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def main():
    v1 = open(os.path.join(WASM_DIR, "version_1.wasm"), "rb").read()
    v2 = open(os.path.join(WASM_DIR, "version_2.wasm"), "rb").read()
    work = tempfile.mkdtemp()
    plugins = os.path.join(work, "plugins")
    os.makedirs(plugins)
    cache = os.path.join(work, "cache")
    plugin = os.path.join(plugins, "versioned.wasm")
    write_renamed(plugin, v1)
    up = subprocess.Popen([BIN, "demo-upstream", "--listen", "127.0.0.1:19100"], stderr=subprocess.DEVNULL)
    with open(os.path.join(work, "c.toml"), "w") as f:
        f.write(f'''plugins_dir = "plugins"
cache_dir = "{cache}"
[[listeners]]
name = "bench"
address = "127.0.0.1:18100"
[[clusters]]
name = "up"
endpoints = ["127.0.0.1:19100"]
[[routes]]
cluster = "up"
[[routes.filters]]
plugin = "versioned"
''')
    proxy = subprocess.Popen([BIN, "run", "--config", os.path.join(work, "c.toml")],
                             env={**os.environ, "RUST_LOG": "warn"}, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                if version(18100) == "1":
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit("proxy did not start")
            time.sleep(0.05)

        # Cache miss: a version nobody has compiled yet, every time.
        miss = []
        for i in range(ROUNDS):
            base, want = (v2, "2") if i % 2 == 0 else (v1, "1")
            miss.append(time_to_serve(plugin, with_custom_section(base, os.urandom(16)), want, 18100))
        # Cache hit: the two plain versions alternate; each was compiled once
        # (first two writes), later writes load the .cwasm from disk.
        time_to_serve(plugin, v2, "2", 18100)
        time_to_serve(plugin, v1, "1", 18100)
        hit = []
        for i in range(ROUNDS):
            data, want = (v2, "2") if i % 2 == 0 else (v1, "1")
            hit.append(time_to_serve(plugin, data, want, 18100))

        # Memory: after 1 more reload, then after 100 more.
        time_to_serve(plugin, v2, "2", 18100)
        time.sleep(0.5)
        rss_1 = rss_kib(proxy.pid)
        for i in range(100):
            data, want = (v1, "1") if i % 2 == 0 else (v2, "2")
            time_to_serve(plugin, data, want, 18100)
        time.sleep(0.5)
        rss_100 = rss_kib(proxy.pid)

        def show(name, xs):
            xs = sorted(xs)
            print(f"{name:<32} median {statistics.median(xs):7.1f} ms   min {xs[0]:7.1f}   max {xs[-1]:7.1f}   (n={len(xs)})")

        print("time from write (rename) to the new version serving; includes the 75 ms debounce + 40 ms settle")
        show("cache miss (compile)", miss)
        show("cache hit (.cwasm from disk)", hit)
        print(f"proxy RSS after 1 reload: {rss_1} KiB; after 100 more: {rss_100} KiB ({rss_100 - rss_1:+} KiB)")
    finally:
        proxy.kill()
        up.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
