"""The TLS part of bench/compare.py: certificate, listener configs, checks, report.

Every proxy terminates TLS with the same certificate and key, made with the
openssl CLI at the start of the run: an ECDSA P-256 leaf for `localhost` and
127.0.0.1, signed by a throwaway ECDSA P-256 CA. The upstream stays
cleartext; only the direct target's upstream nginx gets a TLS port too, so the
direct run of a TLS protocol is TLS end to end and the latency overhead of a
proxy still cancels the client's TLS work.

compare.py runs the loads (h2load) and measures; this module makes the
certificate, writes the TLS lines of each config, checks what each target
negotiates (probe), and writes the TLS section of the report.
"""

import re
import secrets
import socket
import ssl
import statistics
import subprocess
from pathlib import Path

# Kept-alive protocols over TLS, beside the cleartext ones; "handshake" is a
# new TLS connection per request (and the same over cleartext, as reference).
KEEPALIVE = ["h1tls", "h2tls"]
HANDSHAKE = "handshake"
NAMES = {"h1tls": "HTTP/1.1 over TLS", "h2tls": "HTTP/2 over TLS (ALPN h2)"}
CLEARTEXT = {"h1tls": "h1", "h2tls": "h2"}
SNI = "localhost"  # h2load and the probe connect to 127.0.0.1 and send this name
# h2load offers one cipher suite per version, so every target negotiates the
# same one (left to themselves, nginx and sluice follow the client's order and
# HAProxy its own, which picks AES-256); the key exchange is h2load's first
# group, X25519.
H2LOAD_CIPHERS = ["--tls13-ciphers=TLS_AES_128_GCM_SHA256", "--ciphers=ECDHE-ECDSA-AES128-GCM-SHA256"]

# The line in each config template where the TLS listener goes.
MARK = re.compile(r"^[ \t]*#tls\n", re.M)


def uses_tls(protocols: list[str]) -> bool:
    return any(p in KEEPALIVE or p == HANDSHAKE for p in protocols)


# --- certificate -------------------------------------------------------------


def make_cert(work: Path) -> dict:
    """A throwaway CA and a server certificate it signs; returns the paths."""
    d = work / "tls"
    d.mkdir(exist_ok=True)

    def openssl(*args: str) -> None:
        r = subprocess.run(["openssl", *args], cwd=d, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"openssl {args[0]} failed:\n{r.stderr}")

    p256 = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    openssl("genpkey", *p256, "-out", "ca-key.pem")
    openssl(
        "req", "-x509", "-new", "-key", "ca-key.pem", "-subj", "/CN=sluice bench CA", "-days", "7", "-sha256",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", "-out", "ca.pem",
    )
    openssl("genpkey", *p256, "-out", "server-key.pem")  # PKCS#8
    openssl("req", "-new", "-key", "server-key.pem", "-subj", f"/CN={SNI}", "-out", "server.csr")
    (d / "server.ext").write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth\n"
        f"subjectAltName = DNS:{SNI}, IP:127.0.0.1\n"
    )
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-days", "7", "-sha256",
        "-set_serial", "0x" + secrets.token_hex(16), "-extfile", "server.ext", "-out", "server.pem",
    )
    # The chain served is the leaf alone (the client trusts the CA directly);
    # HAProxy wants certificate and key in one file.
    (d / "combined.pem").write_text((d / "server.pem").read_text() + (d / "server-key.pem").read_text())
    return {k: str(d / f) for k, f in [("ca", "ca.pem"), ("cert", "server.pem"), ("key", "server-key.pem"), ("combined", "combined.pem")]}


# --- configs ---------------------------------------------------------------


def nginx_listener(port: int, cert: dict) -> str:
    """nginx 1.22 syntax (`listen … ssl http2`; 1.25+ would be `http2 on;`).
    Session cache and tickets on, as sluice has both."""
    return f"""        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert['cert']};
        ssl_certificate_key {cert['key']};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        ssl_session_tickets on;
"""


def haproxy_listener(port: int, cert: dict) -> str:
    # HAProxy's session cache (tune.ssl.cachesize) and tickets are on by default.
    return f"    bind 127.0.0.1:{port} ssl crt {cert['combined']} alpn h2,http/1.1 ssl-min-ver TLSv1.2\n"


def sluice_listener(port: int, cert: dict) -> str:
    return f"""[[listeners]]
name = "tls"
address = "127.0.0.1:{port}"
[listeners.tls]
cert = "{cert['cert']}"
key = "{cert['key']}"
min_version = "1.2"
"""


def place(template: str, lines: str) -> str:
    """Put `lines` (or nothing) where the template has its `#tls` line."""
    if not MARK.search(template):
        raise ValueError("config template has no #tls line")
    return MARK.sub(lambda _: lines, template, count=1)


# --- checks ------------------------------------------------------------------


def probe(port: int, cert: dict, request: bytes) -> dict:
    """What a verifying client (Python's ssl, OpenSSL) gets from a TLS port:
    version, cipher and ALPN of a full handshake, the status of one request
    over it, whether the session resumes from its ticket/ID, whether h2 is
    chosen when offered first, and whether TLS 1.2 is accepted."""

    def context(alpn: list[str], tls12_only: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=cert["ca"])  # verifies chain and name
        ctx.set_alpn_protocols(alpn)
        if tls12_only:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def connect(ctx: ssl.SSLContext, session=None) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        return ctx.wrap_socket(raw, server_hostname=SNI, session=session)

    out: dict = {}
    h1 = context(["http/1.1"])
    with connect(h1) as s:
        out.update(version=s.version(), cipher=s.cipher()[0], alpn_h1=s.selected_alpn_protocol())
        s.sendall(request)
        resp = b""
        try:
            while chunk := s.recv(65536):
                resp += chunk
        except (ssl.SSLError, OSError):
            pass  # an unclean close after the response
        out["status"] = int(resp.split(b" ", 2)[1]) if resp.startswith(b"HTTP/1.") else None
        session = s.session  # holds the TLS 1.3 ticket read with the response
    with connect(h1, session) as s:
        out["resumed"] = s.session_reused
    with connect(context(["h2", "http/1.1"])) as s:
        out["alpn_h2"] = s.selected_alpn_protocol()
    try:
        with connect(context(["http/1.1"], tls12_only=True)) as s:
            out["tls12"] = s.version()
    except (ssl.SSLError, OSError) as e:
        out["tls12"] = f"refused ({e.__class__.__name__})"
    return out


def h2load_tls_info(out: str) -> dict:
    """What h2load printed about its (last) TLS session."""
    info = {}
    for key, label in [("tls_protocol", "TLS Protocol"), ("cipher", "Cipher"), ("temp_key", "Server Temp Key"), ("alpn", "Application protocol")]:
        m = re.search(rf"^{label}: (.+)$", out, re.M)
        info[key] = m.group(1).strip() if m else None
    return info


def h2load_mean_us(out: str, label: str) -> float | None:
    """The mean column of one of h2load's timing lines, in µs."""
    m = re.search(rf"^{label}:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b", out, re.M)
    if not m:
        return None
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]


# --- report ------------------------------------------------------------------


def markdown(data: dict, args, s: dict, ratio, med_range, table) -> list[str]:
    """The TLS section: kept-alive tables (`table(proto)` writes them as for
    cleartext), the ratio to nginx against cleartext's, per-connection cost,
    and what each target negotiated."""
    keepalive = [p for p in args.protocols if p in KEEPALIVE]
    hs = data.get("handshake")
    if not keepalive and not hs:
        return []
    lines = [
        "### TLS",
        "",
        "The same certificate for every proxy (ECDSA P-256 leaf for localhost, signed by a throwaway CA, "
        "made with openssl at the start of the run); the upstream stays cleartext, the direct rows are "
        "TLS to the upstream nginx. Kept-alive runs use the same connections, rates and method as cleartext."
        + (" pingora: cleartext only (bench/pingora has no TLS listener), so it has no rows here." if "pingora" in args.targets else ""),
        "",
    ]
    for proto in keepalive:
        lines += table(proto)
    both = [p for p in keepalive if CLEARTEXT[p] in args.protocols]
    proxies = [t for t in args.targets if t not in ("direct", "nginx")]
    if both and "nginx" in args.targets:
        lines += [
            "**×nginx, TLS against cleartext** (CPU per request, ratio of medians at the same rate; "
            "the goal is a TLS ratio no worse than the cleartext one)",
            "",
            "| target | protocol | rate, req/s | cleartext ×nginx | TLS ×nginx | TLS ≤ cleartext |",
            "|---|---|---|---|---|---|",
        ]
        for t in proxies:
            for p in both:
                c = CLEARTEXT[p]
                for label in ["half", "low"]:
                    rc = ratio(s, (c, label, t), (c, label, "nginx"))
                    rt = ratio(s, (p, label, t), (p, label, "nginx"))
                    if rc is None or rt is None:
                        continue
                    rc_rate, rt_rate = data["rates"][c][label], data["rates"][p][label]
                    rates = f"{label}: {rc_rate}" if rc_rate == rt_rate else f"{label}: {rc_rate} / {rt_rate} (TLS)"
                    lines.append(f"| {t} | {NAMES[p]} | {rates} | {rc:.2f} | {rt:.2f} | {'yes' if rt <= rc else 'no'} |")
        lines.append("")
    if hs:
        lines += handshake_table(hs, args, med_range)
    probes = data.get("tls", {}).get("probe", {})
    if probes:
        lines += [
            "**What each proxy negotiates** (a verifying Python/OpenSSL client: full handshake offering "
            "http/1.1, one request, then a resumption attempt with the session it got)",
            "",
            "| target | version | cipher | status | resumes | ALPN when h2 offered | TLS 1.2 |",
            "|---|---|---|---|---|---|---|",
        ]
        for t, p in probes.items():
            lines.append(
                f"| {t} | {p['version']} | {p['cipher']} | {p['status']} | {'yes' if p['resumed'] else 'no'} "
                f"| {p['alpn_h2']} | {p['tls12']} |"
            )
        lines.append("")
    return lines


def handshake_table(hs: dict, args, med_range) -> list[str]:
    by: dict = {}
    for r in hs["runs"]:
        by.setdefault((r["mode"], r["target"]), []).append(r)

    def cpu(mode: str, t: str) -> list[float]:
        return [r["cpu_us_per_conn"] for r in by.get((mode, t), [])]

    targets = [t for t in args.targets if by.get(("tls", t))]
    nginx = statistics.median(cpu("tls", "nginx")) if by.get(("tls", "nginx")) else None
    lines = [
        f"**A new connection per request, {hs['rate']} connections/s** (h2load `--h1`, one request per "
        "connection, opened in groups every 10 ms; h2load never offers a session, so every TLS connection "
        "is a full handshake. CPU is the proxy's per connection: accept, handshake, the request, close. "
        "The cleartext run at the same rate is subtracted for the TLS share.)",
        "",
        "| target | CPU µs per TLS connection | ×nginx | CPU µs per cleartext connection | TLS share µs "
        "| proxy core busy % | achieved conn/s | negotiated (h2load) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in targets:
        runs = by[("tls", t)]
        tls_cpu, tcp_cpu = cpu("tls", t), cpu("tcp", t)
        rn = statistics.median(tls_cpu) / nginx if nginx else None
        diff = statistics.median(tls_cpu) - statistics.median(tcp_cpu) if tcp_cpu else None
        seen = sorted({f"{r['tls_protocol']} {r['cipher']} {(r['temp_key'] or '').split(' ')[0]}" for r in runs})
        lines.append(
            f"| {t} | {med_range(tls_cpu)} | {f'{rn:.2f}' if rn else '–'} | {med_range(tcp_cpu)} "
            f"| {f'{diff:.0f}' if diff is not None else '–'} | {med_range([r['proxy_busy'] * 100 for r in runs], '{:.0f}')} "
            f"| {med_range([r['achieved_rate'] for r in runs], '{:.0f}')} | {'; '.join(seen)} |"
        )
    lines.append("")
    return lines
