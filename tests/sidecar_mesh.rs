//! `[mesh]` for real: pods (Linux network namespaces) each running an
//! application and the real `sluice` binary as its sidecar with
//! `sluice iptables` rules, and mutual TLS between the sidecars with SPIFFE
//! identities from a test CA — the applications speak plain HTTP and TCP
//! and know nothing of it.
//!
//! - `sidecar_two_pods_mtls` (pods A and B, both `mtls = "strict"`):
//!   - HTTP/1.1 and HTTP/2 (prior knowledge) from `curl` in A reach B's app
//!     with exactly one `x-forwarded-client-cert`, the one B's sidecar
//!     vouches for (A's SPIFFE ID and certificate hash), the client's
//!     forged one gone; B's access log has A's identity and TLSv1.3.
//!   - On the wire (tcpdump on B's `eth0`) that traffic is TLS: a
//!     handshake towards port 8080, no trace of a marker header the
//!     HTTP/1.1 request carried nor of the HTTP/2 connection preface. The
//!     control: plaintext HTTP with another marker, sent from A around A's
//!     sidecar (a socket with sluice's mark), shows in the capture — and
//!     strict B closes it unanswered
//!     (`sluice_intercept_closed_total{reason="not_mesh"}`).
//!   - The application's own TLS (A's client, B's server, their own CA)
//!     passes end to end inside the mesh hop; raw TCP with a half-close
//!     and a server-speaks-first protocol on an opaque port pass too.
//!   - Rotation: A's certificate is replaced (a Kubernetes Secret's
//!     `..data` swap) under a steady stream of requests; not one fails,
//!     and the first connection A opens afterwards presents the new
//!     certificate (its hash in B's app's `x-forwarded-client-cert`).
//! - `mesh_identity_reaches_the_app` (B a hub, A and C each linked to it):
//!   B's inbound route runs `authz` allowing only A's SPIFFE ID: A gets
//!   200 and its identity reaches the app, C gets 403 `RBAC: access
//!   denied` and the app never sees the request; B's access log names both
//!   callers. A holds B to B's identity (`[[mesh.peers]]`) and gets
//!   through; C, holding B to a wrong identity on one port, gets 502: the
//!   caller checks the callee.
//!
//! Each needs root, `ip`, `curl` and `iptables` (the first also
//! `tcpdump`): without them it prints `skipped: …` (fails under
//! `SLUICE_REQUIRE_ROOT_TESTS=1`); when it runs it prints `ran as root`.
//! Waits are polls with generous ceilings (`netns::CEILING`); nothing
//! asserts a duration.

mod common;

use bytes::Bytes;
use common::echoed;
use common::netns::{
    ADMIN_PORT, BANNER, BANNER_PORT, CEILING, ECHO_PORT, HubPods, Pod, TwoPods, check_opaque_round_trips, connect_from,
    curl_echo, in_ns, listen_in, logged, metric_at_least, metric_sum, run_in, run_ok, runtime, serve_echo, serve_tls,
    spawn_sidecar, wait_for,
};
use common::tls::{Ca, Issued, Leaf};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tokio::runtime::Runtime;

/// B's application (HTTP).
const APP_PORT: u16 = 8080;
/// The same application on a second port: a destination A's sidecar has
/// no pooled connection to until a test first calls it.
const FRESH_PORT: u16 = 8081;
/// B's TLS server (the application's own TLS).
const TLS_PORT: u16 = 8443;
/// `[sidecar] mark`: what lets sluice's own connections out of its pod.
const MARK: u32 = 1337;

const XFCC: &str = "x-forwarded-client-cert";
const CLOSED: &str = "sluice_intercept_closed_total";
const INTERCEPTED: &str = "sluice_intercepted_connections_total";
const HANDSHAKE_ERRORS: &str = "sluice_tls_handshake_errors_total";

/// The identities of `sidecar_two_pods_mtls`.
const A_ID: &str = "spiffe://sluice.test/ns/a/sa/a";
const B_ID: &str = "spiffe://sluice.test/ns/b/sa/b";

/// The identities of `mesh_identity_reaches_the_app`.
const FRONTEND: &str = "spiffe://sluice.test/ns/shop/sa/frontend";
const BATCH: &str = "spiffe://sluice.test/ns/shop/sa/batch";
const API: &str = "spiffe://sluice.test/ns/shop/sa/api";
const NOT_API: &str = "spiffe://sluice.test/ns/shop/sa/not-api";

/// A pod's config body: `[sidecar]` (sluice's connections carry mark
/// 1337, port 7000 is opaque) and `[mesh]` with the credentials in
/// `secret`, `mtls` (`strict` or `permissive`) and every address of the
/// pods' `10.N.0.0/16` meshed (N from `pod`); then `extra`
/// (`[[mesh.peers]]`, routes).
fn mesh_config(secret: &Secret, mtls: &str, pod: Ipv4Addr, extra: &str) -> String {
    let [_, n, _, _] = pod.octets();
    format!(
        r#"[sidecar]
mark = {MARK}
opaque_ports = [{BANNER_PORT}]

[mesh]
cert = {cert:?}
key = {key:?}
trust_bundle = {bundle:?}
mtls = "{mtls}"
networks = ["10.{n}.0.0/16"]

{extra}"#,
        cert = secret.path("tls.crt"),
        key = secret.path("tls.key"),
        bundle = secret.path("ca.crt"),
    )
}

/// A pod's mesh credentials laid out as a mounted Kubernetes Secret:
/// `tls.crt` and `tls.key` are links into `..data`, which
/// [`Secret::publish`] swaps in one rename (how they rotate); `ca.crt` is
/// the trust bundle. Deleted when dropped.
struct Secret {
    dir: tempfile::TempDir,
}

impl Secret {
    fn new(ca: &Ca, workload: &Issued) -> Secret {
        let secret = Secret {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        std::fs::write(secret.path("ca.crt"), ca.pem()).expect("write the trust bundle");
        secret.publish("1", workload);
        for file in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{file}"), secret.path(file)).expect("link a Secret file");
        }
        secret
    }

    /// Make `workload` the certificate and key at once: a new directory
    /// `..<version>`, then `..data` pointed at it by a rename.
    fn publish(&self, version: &str, workload: &Issued) {
        let dir = self.dir.path().join(format!("..{version}"));
        std::fs::create_dir(&dir).expect("Secret version directory");
        std::fs::write(dir.join("tls.crt"), &workload.cert_pem).expect("write the certificate");
        std::fs::write(dir.join("tls.key"), &workload.key_pem).expect("write the key");
        std::fs::set_permissions(dir.join("tls.key"), std::fs::Permissions::from_mode(0o600)).expect("key mode");
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(format!("..{version}"), &tmp).expect("link the new version");
        std::fs::rename(&tmp, self.dir.path().join("..data")).expect("swap `..data`");
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }
}

/// An application: HTTP/1.1 and h2c on every listener it is given,
/// answering each request with a JSON echo of its path, version and
/// headers (what [`echoed`] reads), and keeping the paths it served.
#[derive(Clone, Default)]
struct App {
    served: Arc<Mutex<Vec<String>>>,
}

impl App {
    fn serve(&self, rt: &Runtime, listener: std::net::TcpListener) {
        let served = self.served.clone();
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            while let Ok((stream, _)) = listener.accept().await {
                let served = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let answer = echo(&served, &req);
                        async move { Ok::<_, Infallible>(answer) }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
    }

    /// The paths of every request served so far.
    fn served(&self) -> Vec<String> {
        self.served.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn echo(served: &Mutex<Vec<String>>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    served.lock().unwrap_or_else(|e| e.into_inner()).push(path.clone());
    let headers: Vec<Value> = req
        .headers()
        .iter()
        .map(|(k, v)| json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
        .collect();
    let body = json!({ "path": path, "version": format!("{:?}", req.version()), "headers": headers });
    Response::new(Full::new(Bytes::from(body.to_string())))
}

/// A listener on every address of `pod` (a hub is reached on several).
fn listen_everywhere(pod: &Pod, port: u16) -> std::net::TcpListener {
    let listener = in_ns(&pod.ns, || std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))
        .unwrap_or_else(|e| panic!("bind 0.0.0.0:{port} in {}: {e}", pod.ns));
    listener.set_nonblocking(true).expect("nonblocking listener");
    listener
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The `x-forwarded-client-cert` the callee's sidecar (SPIFFE ID `by`)
/// sets for a caller that presented `caller` with SPIFFE ID `uri`.
fn xfcc(by: &str, caller: &Issued, uri: &str) -> String {
    let leaf = caller.chain().remove(0);
    format!("By={by};Hash={};URI={uri}", sha256_hex(leaf.as_ref()))
}

/// A string no other request sends.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `curl` in `from`, whatever the status: the status and the body.
fn curl_status(from: &Pod, url: &str) -> (u16, String) {
    let out = run_ok(
        &from.ns,
        &["curl", "-sS", "--max-time", "60", "-w", "\n%{http_code}", url],
    );
    let (body, status) = out
        .rsplit_once('\n')
        .unwrap_or_else(|| panic!("no status from curl {url}: {out:?}"));
    let status: u16 = status
        .parse()
        .unwrap_or_else(|e| panic!("curl {url}: status {status:?}: {e}"));
    (status, body.to_string())
}

/// The subject of the mesh certificate the sidecar in `pod` uses now
/// (admin `GET /config`).
fn mesh_subject(pod: &Pod) -> String {
    let url = format!("http://127.0.0.1:{ADMIN_PORT}/config");
    let text = run_ok(&pod.ns, &["curl", "-sS", "--max-time", "30", &url]);
    let config: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("/config: {e}: {text}"));
    config["mesh"]["certificate"]["subject"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A connection from `pod` whose packets carry sluice's mark, so the pod's
/// rules let it out as if its sidecar had opened it: it goes around the
/// sidecar, in plaintext. Reads give up after [`CEILING`].
fn connect_marked(pod: &Pod, to: SocketAddr) -> TcpStream {
    let stream = in_ns(&pod.ns, || -> std::io::Result<TcpStream> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.set_mark(MARK)?;
        socket.connect_timeout(&to.into(), CEILING)?;
        Ok(socket.into())
    })
    .unwrap_or_else(|e| panic!("marked connection from {} to {to}: {e}", pod.ns));
    stream.set_read_timeout(Some(CEILING)).expect("read timeout");
    stream
}

/// `tcpdump` on a pod's `eth0`, writing every TCP packet to a file as it
/// arrives (`-U`); killed when dropped.
struct Capture {
    child: Child,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Capture {
    /// Start, and wait until tcpdump says it is listening.
    fn start(pod: &Pod) -> Capture {
        let dir = tempfile::tempdir().expect("tempdir");
        // `.pcap`: AppArmor's tcpdump profile (Ubuntu) writes only those.
        let file = dir.path().join("eth0.pcap");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &pod.ns, "tcpdump", "-i", "eth0", "-U", "-w"])
            .arg(&file)
            .arg("tcp")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcpdump");
        let stderr = child.stderr.take().expect("tcpdump's stderr");
        let capture = Capture { child, file, _dir: dir };
        let (lines, said) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let mut seen = Vec::new();
        loop {
            match said.recv_timeout(CEILING) {
                Ok(line) if line.contains("listening on") => return capture,
                Ok(line) => seen.push(line),
                Err(e) => panic!("tcpdump in {} is not listening ({e}); it said: {seen:?}", pod.ns),
            }
        }
    }

    /// The capture file so far.
    fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.file).unwrap_or_default()
    }

    /// Stop tcpdump (SIGINT: it writes what it has and exits); the capture.
    fn stop(&mut self) -> Vec<u8> {
        let pid = libc::pid_t::try_from(self.child.id()).expect("tcpdump's pid");
        // SAFETY: kill only sends a signal, to a child this test started
        // (`ip netns exec` execs tcpdump in place) and has not reaped.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let _ = self.child.wait();
        self.bytes()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The destination port and payload of each IPv4 TCP packet in a pcap
/// capture of an Ethernet interface.
fn tcp_payloads(pcap: &[u8]) -> Vec<(u16, &[u8])> {
    let u32_at = |at: usize| {
        pcap.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    assert!(
        matches!(u32_at(0), Some(0xa1b2_c3d4 | 0xa1b2_3c4d)),
        "not a little-endian pcap file"
    );
    assert_eq!(u32_at(20), Some(1), "not a capture of Ethernet frames");
    let mut packets = Vec::new();
    let mut at = 24;
    while let Some(len) = u32_at(at + 8) {
        let start = at + 16;
        let Some(frame) = pcap.get(start..start + len as usize) else {
            break;
        };
        at = start + len as usize;
        packets.extend(ipv4_tcp(frame));
    }
    packets
}

/// The destination port and payload of an Ethernet frame carrying IPv4 TCP.
fn ipv4_tcp(frame: &[u8]) -> Option<(u16, &[u8])> {
    let ip = frame.get(14..)?;
    let (version, protocol) = (ip.first()? >> 4, *ip.get(9)?);
    if frame.get(12..14)? != [0x08, 0x00] || version != 4 || protocol != 6 {
        return None;
    }
    let header = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let tcp = ip.get(header..total.min(ip.len()))?;
    let port = u16::from_be_bytes([*tcp.get(2)?, *tcp.get(3)?]);
    let data = usize::from(tcp.get(12)? >> 4) * 4;
    Some((port, tcp.get(data..)?))
}

/// What [`Load`] counted.
#[derive(Default)]
struct Tally {
    stop: AtomicBool,
    ok: AtomicU64,
    failed: Mutex<Vec<String>>,
}

/// `curl` from a pod every 50 ms on a thread of its own, counting what
/// passed and keeping what failed, until stopped (or dropped).
struct Load {
    tally: Arc<Tally>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(pod: &Pod, url: String) -> Load {
        let tally = Arc::new(Tally::default());
        let (ns, counts) = (pod.ns.clone(), tally.clone());
        let thread = std::thread::spawn(move || {
            while !counts.stop.load(Ordering::Relaxed) {
                let out = run_in(
                    &ns,
                    &["curl", "-sS", "--fail", "--max-time", "30", "-o", "/dev/null", &url],
                );
                if out.status.success() {
                    counts.ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    let why = format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
                    counts.failed.lock().unwrap_or_else(|e| e.into_inner()).push(why);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Load {
            tally,
            thread: Some(thread),
        }
    }

    /// Requests that passed so far.
    fn ok(&self) -> u64 {
        self.tally.ok.load(Ordering::Relaxed)
    }

    /// Wait until `more` requests pass beyond those that passed so far.
    fn wait_passes(&self, what: &str, more: u64) {
        let target = self.ok() + more;
        wait_for(what, || {
            let ok = self.ok();
            if ok >= target {
                Ok(())
            } else {
                Err(format!("{ok} passed, {} failed", self.failures().len()))
            }
        });
    }

    fn failures(&self) -> Vec<String> {
        self.tally.failed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stop, and return the failures.
    fn stop(mut self) -> Vec<String> {
        self.halt();
        self.failures()
    }

    fn halt(&mut self) {
        self.tally.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The labels of connections B's inbound listener took as `protocol`
/// (inside the mesh hop, for mesh connections).
fn taken_inbound(protocol: &'static str) -> [(&'static str, &'static str); 3] {
    [
        ("listener", "inbound"),
        ("direction", "inbound"),
        ("protocol", protocol),
    ]
}

#[test]
fn sidecar_two_pods_mtls() {
    let Some(pods) = TwoPods::new("sidecar_two_pods_mtls", &["iptables", "tcpdump"]) else {
        return;
    };
    let (a, b) = (&pods.a, &pods.b);
    let rt = runtime();
    let app_b = App::default();
    for port in [APP_PORT, FRESH_PORT] {
        app_b.serve(&rt, listen_in(b, port));
    }
    serve_echo(&rt, listen_in(b, ECHO_PORT), b"");
    serve_echo(&rt, listen_in(b, BANNER_PORT), BANNER);
    let app_ca = Ca::new("the applications' own CA");
    serve_tls(&rt, listen_in(b, TLS_PORT), &app_ca);

    let mesh_ca = Ca::new("mesh CA");
    let cert_a = mesh_ca.issue(&Leaf::spiffe("a", A_ID));
    let secret_a = Secret::new(&mesh_ca, &cert_a);
    let secret_b = Secret::new(&mesh_ca, &mesh_ca.issue(&Leaf::spiffe("b", B_ID)));
    let sidecar_a = spawn_sidecar(&a.ns, &mesh_config(&secret_a, "strict", a.ip, ""));
    let sidecar_b = spawn_sidecar(&b.ns, &mesh_config(&secret_b, "strict", b.ip, ""));
    for sidecar in [&sidecar_a, &sidecar_b] {
        sidecar.iptables(&[]);
    }
    let url_b = format!("http://{}:{APP_PORT}", b.ip);
    let expected_xfcc = xfcc(B_ID, &cert_a, A_ID);

    // Everything from here to the strict check is captured on B's link.
    let mut capture = Capture::start(b);
    let marker = unique("mesh");
    let marker_header = format!("x-marker: {marker}");

    // HTTP/1.1: the app sees the identity B's sidecar vouches for, and
    // only that (the client's forgery is gone).
    let echo = curl_echo(
        a,
        &[
            "-H",
            "x-forwarded-client-cert: By=evil",
            "-H",
            &marker_header,
            &format!("{url_b}/hello"),
        ],
    );
    assert_eq!(echo["version"], "HTTP/1.1", "{echo}");
    assert_eq!(echoed(&echo, XFCC), [expected_xfcc.as_str()], "{echo}");
    assert_eq!(echoed(&echo, "x-marker"), [marker.as_str()], "{echo}");

    // HTTP/2 with prior knowledge, likewise. (Its headers go HPACK-coded,
    // so the capture looks for its connection preface instead.)
    let echo = curl_echo(a, &["--http2-prior-knowledge", &format!("{url_b}/hello/h2")]);
    assert_eq!(echo["version"], "HTTP/2.0", "{echo}");
    assert_eq!(echoed(&echo, XFCC), [expected_xfcc.as_str()], "{echo}");

    for path in ["/hello", "/hello/h2"] {
        let line = logged(&sidecar_b, "inbound", path);
        assert_eq!(line["peer"], A_ID, "{line}");
        assert_eq!(line["tls"], "TLSv1.3", "{line}");
        assert_eq!(line["status"], 200, "{line}");
        let line = logged(&sidecar_a, "outbound", path);
        assert_eq!(line["status"], 200, "{line}");
    }

    // Strict: plaintext HTTP from A that goes around A's sidecar (sluice's
    // mark) reaches B's sidecar, which closes it unanswered.
    let not_mesh = [
        ("listener", "inbound"),
        ("direction", "inbound"),
        ("reason", "not_mesh"),
    ];
    let closed_before = metric_sum(&sidecar_b.metrics(), CLOSED, &not_mesh);
    let plain = unique("plain");
    let mut stream = connect_marked(a, SocketAddr::from((b.ip, APP_PORT)));
    let request = format!(
        "GET /hello/plain HTTP/1.1\r\nhost: {}\r\nx-marker: {plain}\r\n\r\n",
        b.ip
    );
    stream.write_all(request.as_bytes()).expect("send plaintext HTTP");
    let mut answer = Vec::new();
    if let Err(e) = stream.read_to_end(&mut answer) {
        // A reset is a close too; a timeout is not.
        assert!(
            !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "strict B did not close plaintext within {CEILING:?}"
        );
    }
    assert!(
        answer.is_empty(),
        "strict B answered plaintext: {}",
        String::from_utf8_lossy(&answer)
    );
    metric_at_least(&sidecar_b, CLOSED, &not_mesh, closed_before + 1.0);
    assert!(
        !app_b.served().iter().any(|p| p == "/hello/plain"),
        "{:?}",
        app_b.served()
    );

    // The capture caught the plaintext request (so it would have caught
    // the mesh requests' marker had they been plaintext): by then it has
    // every packet before it too.
    wait_for("the plaintext marker in the capture", || {
        if contains(&capture.bytes(), plain.as_bytes()) {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    });
    let pcap = capture.stop();
    assert!(
        !contains(&pcap, marker.as_bytes()),
        "the HTTP/1.1 request's marker {marker} crossed the wire in plaintext"
    );
    assert!(
        !contains(&pcap, b"PRI * HTTP/2.0"),
        "the HTTP/2 connection preface crossed the wire in plaintext"
    );
    let packets = tcp_payloads(&pcap);
    assert!(
        packets
            .iter()
            .any(|(port, payload)| *port == APP_PORT && payload.starts_with(&[0x16, 0x03])),
        "no TLS handshake towards port {APP_PORT} in the capture ({} TCP packets)",
        packets.len()
    );

    let at = |port: u16| SocketAddr::from((b.ip, port));

    // The application's own TLS passes untouched inside the mesh hop: the
    // handshake only succeeds with the app's certificate.
    let config = common::tls::client_config(&app_ca, None, &[], false);
    let name = rustls::pki_types::ServerName::try_from("b.test").expect("server name");
    let connection = rustls::ClientConnection::new(config, name).expect("TLS client");
    let mut tls = rustls::StreamOwned::new(connection, connect_from(a, at(TLS_PORT)));
    tls.write_all(b"ping\n").expect("TLS handshake and write");
    let mut reply = String::new();
    BufReader::new(&mut tls).read_line(&mut reply).expect("TLS reply");
    assert_eq!(reply, "pong ping\n");
    drop(tls);

    // Raw bytes with a half-close, and a server-first opaque port, through
    // the mesh too.
    check_opaque_round_trips(a, b.ip.into());

    // B took each of those inside a mesh connection: at least one for
    // HTTP and one per relay (TLS, echo, banner), all from A's identity.
    for (protocol, at_least) in [("http1", 1.0), ("http2", 1.0), ("tls", 1.0), ("opaque", 2.0)] {
        metric_at_least(&sidecar_b, INTERCEPTED, &taken_inbound(protocol), at_least);
    }
    let inbound = ("listener", "inbound");
    metric_at_least(
        &sidecar_b,
        "sluice_tls_handshakes_total",
        &[inbound, ("version", "TLSv1.3")],
        4.0,
    );
    metric_at_least(
        &sidecar_b,
        "sluice_tls_peer_identities_total",
        &[inbound, ("trust_domain", "sluice.test")],
        4.0,
    );
    rotation(a, b, &mesh_ca, &secret_a, &app_b);
}

/// Rotate A's certificate under load: no request fails, and the first new
/// connection afterwards (to the app's second port) presents the new one.
fn rotation(a: &Pod, b: &Pod, mesh_ca: &Ca, secret_a: &Secret, app_b: &App) {
    let load = Load::start(a, format!("http://{}:{APP_PORT}/hello/load", b.ip));
    load.wait_passes("requests pass before the rotation", 3);
    assert!(
        !app_b.served().iter().any(|p| p == "/rotated"),
        "the fresh port was used before the rotation"
    );
    let rotated = mesh_ca.issue(&Leaf::spiffe("a-rotated", A_ID));
    secret_a.publish("2", &rotated);
    wait_for("A's sidecar uses the rotated certificate", || {
        let subject = mesh_subject(a);
        if subject.contains("a-rotated") {
            Ok(())
        } else {
            Err(subject)
        }
    });
    // A has no connection to this port yet: a new one, a new handshake.
    let echo = curl_echo(a, &[&format!("http://{}:{FRESH_PORT}/rotated", b.ip)]);
    assert_eq!(echoed(&echo, XFCC), [xfcc(B_ID, &rotated, A_ID)], "{echo}");
    load.wait_passes("requests pass after the rotation", 3);
    let failures = load.stop();
    assert!(
        failures.is_empty(),
        "requests failed during the rotation: {failures:#?}"
    );
}

/// B's inbound route: `authz` allows A's identity (and so denies the rest).
fn authz_route() -> String {
    format!(
        r#"[[routes]]
name = "api"
direction = "inbound"
path_prefix = "/"
[[routes.filters]]
plugin = "authz"
[[routes.filters.config.rules]]
name = "frontend"
action = "allow"
[routes.filters.config.rules.when]
principals = ["{FRONTEND}"]
"#
    )
}

/// `[[mesh.peers]]`: `destination` must present `identity`.
fn peer(destination: &str, identity: &str) -> String {
    format!("[[mesh.peers]]\ndestination = \"{destination}\"\nidentity = \"{identity}\"\n")
}

#[test]
fn mesh_identity_reaches_the_app() {
    let Some(pods) = HubPods::new("mesh_identity_reaches_the_app", &["iptables"], "b", &["a", "c"]) else {
        return;
    };
    let b = &pods.hub;
    let (a, c) = (&pods.spokes[0], &pods.spokes[1]);
    let rt = runtime();
    let app = App::default();
    for port in [APP_PORT, FRESH_PORT] {
        app.serve(&rt, listen_everywhere(b, port));
    }

    let ca = Ca::new("shop mesh CA");
    let cert_a = ca.issue(&Leaf::spiffe("frontend", FRONTEND));
    let cert_c = ca.issue(&Leaf::spiffe("batch", BATCH));
    let secret_a = Secret::new(&ca, &cert_a);
    let secret_b = Secret::new(&ca, &ca.issue(&Leaf::spiffe("api", API)));
    let secret_c = Secret::new(&ca, &cert_c);
    // A holds B to B's identity; C holds B's second port to a wrong one
    // (and B's first port to its trust domain, the default).
    let peers_a = peer(&a.hub_ip.to_string(), API);
    let peers_c = peer(&format!("{}:{FRESH_PORT}", c.hub_ip), NOT_API);
    let sidecar_a = spawn_sidecar(&a.pod.ns, &mesh_config(&secret_a, "strict", a.pod.ip, &peers_a));
    let sidecar_b = spawn_sidecar(&b.ns, &mesh_config(&secret_b, "strict", b.ip, &authz_route()));
    let sidecar_c = spawn_sidecar(&c.pod.ns, &mesh_config(&secret_c, "strict", c.pod.ip, &peers_c));
    for sidecar in [&sidecar_a, &sidecar_b, &sidecar_c] {
        sidecar.iptables(&[]);
    }

    // A is allowed, and the app learns who called.
    let echo = curl_echo(&a.pod, &[&format!("http://{}:{APP_PORT}/from-a", a.hub_ip)]);
    assert_eq!(echoed(&echo, XFCC), [xfcc(API, &cert_a, FRONTEND)], "{echo}");
    let line = logged(&sidecar_b, "inbound", "/from-a");
    assert_eq!(line["peer"], FRONTEND, "{line}");
    assert_eq!(line["route"], "api", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(logged(&sidecar_a, "outbound", "/from-a")["status"], 200);

    // C is denied by B's authz, before the app.
    let (status, body) = curl_status(&c.pod, &format!("http://{}:{APP_PORT}/from-c", c.hub_ip));
    assert_eq!((status, body.trim_end()), (403, "RBAC: access denied"));
    let line = logged(&sidecar_b, "inbound", "/from-c");
    assert_eq!(line["peer"], BATCH, "{line}");
    assert_eq!(line["status"], 403, "{line}");
    assert_eq!(logged(&sidecar_c, "outbound", "/from-c")["status"], 403);

    // Where C expects another identity, C's sidecar refuses B's
    // certificate: the request never reaches B (whose authz would say
    // 403), C gets 502, and B sees a failed handshake.
    let inbound = [("listener", "inbound")];
    let errors_before = metric_sum(&sidecar_b.metrics(), HANDSHAKE_ERRORS, &inbound);
    let (status, body) = curl_status(&c.pod, &format!("http://{}:{FRESH_PORT}/wrong-identity", c.hub_ip));
    assert_eq!(status, 502, "{body}");
    assert_eq!(logged(&sidecar_c, "outbound", "/wrong-identity")["status"], 502);
    wait_for("C's sidecar logs the identity mismatch", || {
        let log = sidecar_c.log_text();
        if log.contains("identity mismatch") && log.contains(NOT_API) {
            Ok(())
        } else {
            Err(log)
        }
    });
    metric_at_least(&sidecar_b, HANDSHAKE_ERRORS, &inbound, errors_before + 1.0);

    let served = app.served();
    assert!(served.iter().any(|p| p == "/from-a"), "{served:?}");
    assert!(
        !served.iter().any(|p| p == "/from-c" || p == "/wrong-identity"),
        "the app saw a request it should not have: {served:?}"
    );
}
