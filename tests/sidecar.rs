//! Sidecar mode for real: two pods (Linux network namespaces on one veth
//! link), each running an application and the real `sluice` binary as its
//! sidecar, with the traffic redirected by `sluice iptables` — the pod's
//! applications know nothing of sluice.
//!
//! - `sidecar_two_pods` (iptables): `curl` in pod A calls pod B's echo app
//!   plainly; the request passes A's outbound route and B's inbound route,
//!   each adding a header, over HTTP/1.1 and HTTP/2 (prior knowledge), and
//!   a 10 MB body arrives whole; a path no inbound route matches still
//!   passes (`inbound-passthrough`), and so does the reverse direction. Both
//!   access logs and metrics show the request. After `sluice iptables
//!   --remove` the same call goes straight to the app.
//! - `sidecar_tcp_passthrough` (nftables): what is not HTTP passes through
//!   both sidecars as opaque TCP, untouched: raw bytes with a half-close,
//!   a server-speaks-first protocol on an opaque port, a TLS handshake end
//!   to end; a client that sends nothing is closed after `detect_timeout`.
//!   Also a redis PING when redis-server and redis-cli are installed.
//!
//! Each needs root, `ip`, `curl` and `iptables` or `nft`: without them it
//! prints `skipped: …` (fails under `SLUICE_REQUIRE_ROOT_TESTS=1`); when it
//! runs it prints `ran as root`. Waits are polls with generous ceilings
//! (`netns::CEILING`); nothing asserts a duration.

mod common;

use common::netns::{
    BANNER, BANNER_PORT, CEILING, ECHO_PORT, Pod, Sidecar, TwoPods, check_opaque_round_trips, connect_from, curl_echo,
    in_ns, listen_in, logged, metric_at_least, metric_sum, raw_bytes, run_in, run_ok, runtime, serve_echo, serve_tls,
    spawn_sidecar, wait_for,
};
use common::tls::Ca;
use common::{Upstream, echoed};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use tokio::runtime::Runtime;

/// The echo app's port in both pods.
const APP_PORT: u16 = 8080;
/// B's TLS server.
const TLS_PORT: u16 = 8443;

/// `[sidecar]` for every pod: sluice's own connections carry mark 1337,
/// port 7000 is opaque, silence is cut after 1s.
const SIDECAR: &str = r#"[sidecar]
mark = 1337
opaque_ports = [7000]
detect_timeout = "1s"
"#;

/// Pod `pod`'s routes for the HTTP test: `out` (outbound, every path,
/// WebSockets allowed) sets `x-sidecar-<pod>: outbound`; `in` (inbound, `/hello` only) sets
/// `x-sidecar-<pod>: inbound` and runs the probe filter, which reports the
/// direction and original destination it sees as `x-probe-conn-*`
/// headers. Neither names a cluster: the request goes where it was going.
/// `extra` is appended (clusters).
fn http_routes(pod: &str, extra: &str) -> String {
    format!(
        r#"{SIDECAR}
{extra}
[[routes]]
name = "out"
direction = "outbound"
path_prefix = "/"
upgrades = ["websocket"]
[[routes.filters]]
plugin = "header-rewrite"
[routes.filters.config]
request.set = {{ "x-sidecar-{pod}" = "outbound" }}

[[routes]]
name = "in"
direction = "inbound"
path_prefix = "/hello"
[[routes.filters]]
plugin = "header-rewrite"
[routes.filters.config]
request.set = {{ "x-sidecar-{pod}" = "inbound" }}
[[routes.filters]]
plugin = "probe"
config = {{ connection_headers = true }}
"#
    )
}

/// The echo app of `pod` on its port 8080, naming itself `name`.
fn echo_app(rt: &Runtime, pod: &Pod, name: &str) -> Upstream {
    let listener = listen_in(pod, APP_PORT);
    let _runtime = rt.enter();
    Upstream::from_std(name, listener)
}

const INTERCEPTED: &str = "sluice_intercepted_connections_total";

/// The labels of connections the interception listener of `direction`
/// (named after it) took as `protocol`.
fn taken(direction: &'static str, protocol: &'static str) -> [(&'static str, &'static str); 3] {
    [
        ("listener", direction),
        ("direction", direction),
        ("protocol", protocol),
    ]
}

/// 10 MiB that are not one byte repeated.
fn big_body() -> Vec<u8> {
    (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A pod's nat rules as `iptables -t nat -S` lists them.
fn nat_rules(pod: &Pod) -> String {
    run_ok(&pod.ns, &["iptables", "-t", "nat", "-S"])
}

#[test]
fn sidecar_two_pods() {
    let Some(pods) = TwoPods::new("sidecar_two_pods", &["iptables"]) else {
        return;
    };
    let (a, b) = (&pods.a, &pods.b);
    let rt = runtime();
    let _app_a = echo_app(&rt, a, "a");
    let _app_b = echo_app(&rt, b, "b");
    let b6 = b.ip6.expect("pod B has an IPv6 address");
    let _app_b6 = {
        let listener = in_ns(&b.ns, || std::net::TcpListener::bind((b6, APP_PORT))).expect("bind B's IPv6 app");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let _runtime = rt.enter();
        Upstream::from_std("b6", listener)
    };
    // In A, a cluster takes over B's port 9090 (where nothing listens) and
    // the service name `b-service` (on any address), sending both to B's
    // app on 8080.
    let claims = format!(
        r#"[[clusters]]
name = "b-app"
endpoints = ["{}:{APP_PORT}"]
destinations = ["{}:9090"]
services = ["b-service"]
"#,
        b.ip, b.ip
    );
    let sidecar_a = spawn_sidecar(&a.ns, &http_routes("a", &claims));
    let sidecar_b = spawn_sidecar(&b.ns, &http_routes("b", ""));
    for (pod, sidecar) in [(a, &sidecar_a), (b, &sidecar_b)] {
        sidecar.iptables(&[]);
        let rules = nat_rules(pod);
        assert!(rules.contains("REDIRECT"), "no REDIRECT rules in {}:\n{rules}", pod.ns);
    }
    let app_b = format!("http://{}:{APP_PORT}", b.ip);
    let original_dst = format!("{}:{APP_PORT}", b.ip);

    // HTTP/1.1: out through A's route `out`, in through B's route `in`.
    let echo = curl_echo(a, &[&format!("{app_b}/hello")]);
    assert_eq!(echo["upstream"], "b", "{echo}");
    assert_eq!(echo["version"], "HTTP/1.1", "{echo}");
    assert_eq!(echoed(&echo, "x-sidecar-a"), ["outbound"], "{echo}");
    assert_eq!(echoed(&echo, "x-sidecar-b"), ["inbound"], "{echo}");
    // B's filter saw the interception facts.
    assert_eq!(echoed(&echo, "x-probe-conn-direction"), ["inbound"], "{echo}");
    assert_eq!(
        echoed(&echo, "x-probe-conn-original-dst"),
        [original_dst.as_str()],
        "{echo}"
    );
    assert_eq!(echoed(&echo, "x-probe-conn-listener"), ["inbound"], "{echo}");
    for (sidecar, direction, route) in [(&sidecar_a, "outbound", "out"), (&sidecar_b, "inbound", "in")] {
        let line = logged(sidecar, direction, "/hello");
        assert_eq!(line["original_dst"], original_dst.as_str(), "{line}");
        assert_eq!(line["route"], route, "{line}");
        assert_eq!(line["status"], 200, "{line}");
    }
    metric_at_least(&sidecar_a, INTERCEPTED, &taken("outbound", "http1"), 1.0);
    metric_at_least(&sidecar_b, INTERCEPTED, &taken("inbound", "http1"), 1.0);
    metric_at_least(
        &sidecar_a,
        "sluice_requests_total",
        &[("route", "out"), ("status", "2xx")],
        1.0,
    );
    metric_at_least(
        &sidecar_b,
        "sluice_requests_total",
        &[("route", "in"), ("status", "2xx")],
        1.0,
    );

    // HTTP/2 with prior knowledge stays HTTP/2 all the way to the app.
    let echo = curl_echo(a, &["--http2-prior-knowledge", &format!("{app_b}/hello/h2")]);
    assert_eq!(echo["version"], "HTTP/2.0", "{echo}");
    assert_eq!(echoed(&echo, "x-sidecar-a"), ["outbound"], "{echo}");
    assert_eq!(echoed(&echo, "x-sidecar-b"), ["inbound"], "{echo}");
    logged(&sidecar_a, "outbound", "/hello/h2");
    logged(&sidecar_b, "inbound", "/hello/h2");
    metric_at_least(&sidecar_a, INTERCEPTED, &taken("outbound", "http2"), 1.0);
    metric_at_least(&sidecar_b, INTERCEPTED, &taken("inbound", "http2"), 1.0);

    // A WebSocket passes A's `out` route (which allows it) and B's
    // implicit inbound route (which always does: `/ws` matches no `in`).
    websocket_between(a, b, &sidecar_a, &sidecar_b);

    // A path B's inbound route does not match passes on B's implicit
    // route, without B's header.
    let echo = curl_echo(a, &[&format!("{app_b}/elsewhere")]);
    assert_eq!(echo["upstream"], "b", "{echo}");
    assert_eq!(echoed(&echo, "x-sidecar-a"), ["outbound"], "{echo}");
    assert!(echoed(&echo, "x-sidecar-b").is_empty(), "{echo}");
    let line = logged(&sidecar_b, "inbound", "/elsewhere");
    assert_eq!(line["route"], "inbound-passthrough", "{line}");
    logged(&sidecar_a, "outbound", "/elsewhere");

    // The other way round: B's outbound route, A's inbound route.
    let echo = curl_echo(b, &[&format!("http://{}:{APP_PORT}/hello/from-b", a.ip)]);
    assert_eq!(echo["upstream"], "a", "{echo}");
    assert_eq!(echoed(&echo, "x-sidecar-b"), ["outbound"], "{echo}");
    assert_eq!(echoed(&echo, "x-sidecar-a"), ["inbound"], "{echo}");
    let line = logged(&sidecar_b, "outbound", "/hello/from-b");
    assert_eq!(line["original_dst"], format!("{}:{APP_PORT}", a.ip).as_str(), "{line}");
    logged(&sidecar_a, "inbound", "/hello/from-b");

    // A's cluster claims B's port 9090 by address, and `b-service` by
    // name, whatever address the client dialled.
    let echo = curl_echo(a, &[&format!("http://{}:9090/hello/claimed", b.ip)]);
    assert_eq!(echo["upstream"], "b", "{echo}");
    assert_eq!(echoed(&echo, "x-sidecar-a"), ["outbound"], "{echo}");
    let line = logged(&sidecar_a, "outbound", "/hello/claimed");
    assert_eq!(line["cluster"], "b-app", "{line}");
    assert_eq!(line["original_dst"], format!("{}:9090", b.ip).as_str(), "{line}");
    let line = logged(&sidecar_b, "inbound", "/hello/claimed");
    assert_eq!(line["original_dst"], original_dst.as_str(), "{line}");
    let echo = curl_echo(
        a,
        &["-H", "Host: b-service", &format!("http://{}:9091/hello/service", b.ip)],
    );
    assert_eq!(echo["upstream"], "b", "{echo}");
    assert_eq!(logged(&sidecar_a, "outbound", "/hello/service")["cluster"], "b-app");

    // IPv6: the same path over the pods' IPv6 addresses
    // (`IP6T_SO_ORIGINAL_DST`, the `[::]` and `[::1]` listeners).
    let echo = curl_echo(a, &["-g", &format!("http://[{b6}]:{APP_PORT}/hello/v6")]);
    assert_eq!(echo["upstream"], "b6", "{echo}");
    assert_eq!(echoed(&echo, "x-sidecar-a"), ["outbound"], "{echo}");
    assert_eq!(echoed(&echo, "x-sidecar-b"), ["inbound"], "{echo}");
    let original_v6 = format!("[{b6}]:{APP_PORT}");
    assert_eq!(
        echoed(&echo, "x-probe-conn-original-dst"),
        [original_v6.as_str()],
        "{echo}"
    );
    assert_eq!(echoed(&echo, "x-probe-conn-listener"), ["inbound6"], "{echo}");
    for (sidecar, direction) in [(&sidecar_a, "outbound"), (&sidecar_b, "inbound")] {
        let line = logged(sidecar, direction, "/hello/v6");
        assert_eq!(line["original_dst"], original_v6.as_str(), "{line}");
    }

    // A 10 MB body arrives whole, over HTTP/1.1 and HTTP/2.
    let body = big_body();
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), &body).expect("write the body");
    let upload = format!("@{}", file.path().display());
    for (version, path) in [
        ("--http1.1", "/hello/upload-h1"),
        ("--http2-prior-knowledge", "/hello/upload-h2"),
    ] {
        let echo = curl_echo(a, &[version, "--data-binary", &upload, &format!("{app_b}{path}")]);
        assert_eq!(echo["body_len"], body.len(), "{version}: {echo}");
        assert_eq!(echo["body_sha256"], sha256_hex(&body).as_str(), "{version}: {echo}");
        assert_eq!(echoed(&echo, "x-sidecar-b"), ["inbound"], "{version}: {echo}");
        logged(&sidecar_a, "outbound", path);
        logged(&sidecar_b, "inbound", path);
    }

    // Without the rules the same call goes straight to the app.
    for (pod, sidecar) in [(a, &sidecar_a), (b, &sidecar_b)] {
        sidecar.iptables(&["--remove"]);
        let rules = nat_rules(pod);
        assert!(
            !rules.contains("REDIRECT"),
            "REDIRECT rules left in {}:\n{rules}",
            pod.ns
        );
    }
    let logs_before = (sidecar_a.access_log_lines().len(), sidecar_b.access_log_lines().len());
    let intercepted = |s: &Sidecar| metric_sum(&s.metrics(), INTERCEPTED, &[]);
    let intercepted_before = (intercepted(&sidecar_a), intercepted(&sidecar_b));
    let echo = curl_echo(a, &[&format!("{app_b}/hello")]);
    assert_eq!(echo["upstream"], "b", "{echo}");
    assert!(echoed(&echo, "x-sidecar-a").is_empty(), "{echo}");
    assert!(echoed(&echo, "x-sidecar-b").is_empty(), "{echo}");
    let logs_after = (sidecar_a.access_log_lines().len(), sidecar_b.access_log_lines().len());
    assert_eq!(logs_after, logs_before, "the access logs grew without the rules");
    let intercepted_after = (intercepted(&sidecar_a), intercepted(&sidecar_b));
    assert_eq!(
        intercepted_after, intercepted_before,
        "connections intercepted without the rules"
    );
}

/// A Python WebSocket echo server in B, a Python client in A: a text and a
/// 100 kB binary message come back equal; both sidecars log the upgrade.
/// Needs python3 with `websockets` (installed by `.ci/run`); without it
/// this part prints a note, or fails under `SLUICE_REQUIRE_ROOT_TESTS=1`.
fn websocket_between(a: &Pod, b: &Pod, sidecar_a: &Sidecar, sidecar_b: &Sidecar) {
    let python = |ns: &str| {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", ns, "python3"])
            .env("PYTHONUNBUFFERED", "1");
        command
    };
    let have = python(&a.ns)
        .args(["-c", "import websockets"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            !common::tls::required(),
            "python3 with `websockets` is required but missing"
        );
        println!("note: no python3 `websockets`; the WebSocket check did not run");
        return;
    }
    let scripts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python");
    let mut server = python(&b.ns)
        .arg(scripts.join("ws_echo_server.py"))
        .arg(b.ip.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the WebSocket server");
    let mut first = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("the server's port");
    let port: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
    let url = format!("ws://{}:{}/ws", b.ip, port["port"]);
    let out = python(&a.ns)
        .arg(scripts.join("ws_client.py"))
        .args([url.as_str(), "100000"])
        .output()
        .expect("run the WebSocket client");
    let _ = server.kill();
    let _ = server.wait();
    let result: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["equal"], true, "{result}");
    assert_eq!(result["text_equal"], true, "{result}");
    for (sidecar, direction) in [(sidecar_a, "outbound"), (sidecar_b, "inbound")] {
        let line = logged(sidecar, direction, "/ws");
        assert_eq!(line["status"], 101, "{line}");
    }
}

/// A process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A redis PING from A to a redis-server in B, when redis is installed.
fn redis_ping(a: &Pod, b: &Pod) {
    let installed = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !installed("redis-server") || !installed("redis-cli") {
        println!("note: redis-server or redis-cli not installed; no redis PING through the sidecars");
        return;
    }
    let _server = Killed(
        Command::new("ip")
            .args(["netns", "exec", b.ns.as_str(), "redis-server", "--port", "6379"])
            .args(["--bind", "0.0.0.0", "--protected-mode", "no", "--save", ""])
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server in B"),
    );
    wait_for("redis-server in B answers locally", || {
        let out = run_in(&b.ns, &["redis-cli", "-h", "127.0.0.1", "-p", "6379", "PING"]);
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if text == "PONG" { Ok(()) } else { Err(text) }
    });
    let pong = run_ok(&a.ns, &["redis-cli", "-h", &b.ip.to_string(), "-p", "6379", "PING"]);
    assert_eq!(pong.trim(), "PONG");
}

/// Every line of `nft list ruleset` in `pod`.
fn nft_rules(pod: &Pod) -> String {
    run_ok(&pod.ns, &["nft", "list", "ruleset"])
}

#[test]
fn sidecar_tcp_passthrough() {
    let Some(pods) = TwoPods::new("sidecar_tcp_passthrough", &["nft"]) else {
        return;
    };
    let (a, b) = (&pods.a, &pods.b);
    let rt = runtime();
    serve_echo(&rt, listen_in(b, ECHO_PORT), b"");
    serve_echo(&rt, listen_in(b, BANNER_PORT), BANNER);
    let ca = Ca::new("sidecar test CA");
    serve_tls(&rt, listen_in(b, TLS_PORT), &ca);
    let sidecar_a = spawn_sidecar(&a.ns, SIDECAR);
    let sidecar_b = spawn_sidecar(&b.ns, SIDECAR);
    for (pod, sidecar) in [(a, &sidecar_a), (b, &sidecar_b)] {
        sidecar.iptables(&["--nftables"]);
        let rules = nft_rules(pod);
        assert!(
            rules.contains("redirect"),
            "no nft redirect rules in {}:\n{rules}",
            pod.ns
        );
    }
    let at = |port: u16| SocketAddr::from((b.ip, port));

    // Raw bytes with a half-close, and a server-first opaque port.
    check_opaque_round_trips(a, b.ip.into());

    // TLS from A's client to B's server, end to end: the handshake only
    // succeeds with the app's own certificate.
    let config = common::tls::client_config(&ca, None, &[], false);
    let name = rustls::pki_types::ServerName::try_from("b.test").expect("server name");
    let connection = rustls::ClientConnection::new(config, name).expect("TLS client");
    let mut tls = rustls::StreamOwned::new(connection, connect_from(a, at(TLS_PORT)));
    tls.write_all(b"ping\n").expect("TLS handshake and write");
    let mut reply = String::new();
    BufReader::new(&mut tls).read_line(&mut reply).expect("TLS reply");
    assert_eq!(reply, "pong ping\n");
    drop(tls);

    // A client that sends nothing is closed by A's sidecar.
    let mut silent = connect_from(a, at(ECHO_PORT));
    match silent.read(&mut [0u8; 16]) {
        Ok(0) => {}
        Ok(n) => panic!("the silent client got {n} bytes"),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("the silent client was not closed within {CEILING:?}")
        }
        Err(_reset) => {}
    }
    let detect_timeout = [("direction", "outbound"), ("reason", "detect_timeout")];
    metric_at_least(&sidecar_a, "sluice_intercept_closed_total", &detect_timeout, 1.0);

    redis_ping(a, b);

    // Both sidecars relayed it all: two opaque connections (7001, 7000)
    // and one TLS, the 1 MiB each way at least.
    let bytes = raw_bytes().len() as f64;
    for (sidecar, direction) in [(&sidecar_a, "outbound"), (&sidecar_b, "inbound")] {
        let dir = ("direction", direction);
        metric_at_least(sidecar, INTERCEPTED, &taken(direction, "opaque"), 2.0);
        metric_at_least(sidecar, INTERCEPTED, &taken(direction, "tls"), 1.0);
        metric_at_least(sidecar, "sluice_tcp_relay_connections_total", &[dir], 3.0);
        metric_at_least(
            sidecar,
            "sluice_tcp_relay_bytes_total",
            &[dir, ("from", "client")],
            bytes,
        );
        metric_at_least(
            sidecar,
            "sluice_tcp_relay_bytes_total",
            &[dir, ("from", "destination")],
            bytes,
        );
    }

    for (pod, sidecar) in [(a, &sidecar_a), (b, &sidecar_b)] {
        sidecar.iptables(&["--nftables", "--remove"]);
        let rules = nft_rules(pod);
        assert!(
            !rules.contains("redirect"),
            "nft redirect rules left in {}:\n{rules}",
            pod.ns
        );
    }
}
