//! Pods for the sidecar tests: Linux network namespaces joined by a veth
//! pair, commands and sockets inside a pod, and the real `sluice` binary
//! running in a pod as its sidecar.
//!
//! - [`TwoPods::new`] makes pods A (`10.N.0.1/24`, and `fd00:N::1/64`
//!   when the kernel allows IPv6) and B (`10.N.0.2`, `fd00:N::2`) joined
//!   by a veth pair, `lo` up, no default route; both namespaces (and with
//!   them the veth pair) go when it is dropped. Namespace names carry the
//!   process id and a counter, so tests run in parallel; each pod's
//!   interface is simply `eth0`.
//! - [`HubPods::new`] makes a hub pod with a veth pair of its own to each
//!   spoke pod (IPv4 only): spoke i is `10.N.i.1/24` on its `eth0`, the hub
//!   `10.N.i.2/24` on its `eth<i>`. Spokes reach only the hub.
//! - [`run_in`] runs a command in a pod (`ip netns exec`); [`in_ns`] runs a
//!   closure on a thread that has entered the pod's namespace, which is how
//!   a test makes sockets there: a socket stays in the namespace it was
//!   created in, whichever thread uses it later.
//! - [`spawn_sidecar`] starts `sluice run` in a pod with the sidecar
//!   listeners of [`sidecar_config`] and waits for its admin `/ready`;
//!   [`logged`] and [`metric_at_least`] wait for what it records.
//! - Applications and clients in a pod: [`listen_in`], [`serve_echo`] (raw
//!   TCP echo with half-close), [`serve_tls`] (a TLS line server),
//!   [`connect_from`], [`echo_round_trip`], [`curl_echo`].
//!
//! Needs root, `ip`, `curl` and the tools a test names (`iptables`, `nft`,
//! `tcpdump`): without them the test prints `skipped: …` and passes, unless
//! `SLUICE_REQUIRE_ROOT_TESTS=1` (`.ci/run`), where it fails. A test that
//! runs prints `ran as root`.

use super::tls::{Ca, Leaf};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

/// The inbound interception listener's port, in every pod.
pub const INBOUND_PORT: u16 = 15006;
/// The outbound interception listener's port (on 127.0.0.1).
pub const OUTBOUND_PORT: u16 = 15001;
/// The admin listener's port.
pub const ADMIN_PORT: u16 = 15020;
/// How long a test waits for anything to happen before it fails.
pub const CEILING: Duration = Duration::from_secs(60);

/// Namespaces made by this process so far.
static CREATED: AtomicU32 = AtomicU32::new(0);

/// One pod: a network namespace and its addresses on the pod network.
#[derive(Debug, Clone)]
pub struct Pod {
    /// The namespace (`/run/netns/<ns>`).
    pub ns: String,
    pub ip: Ipv4Addr,
    /// `None` when the kernel refused IPv6 (the tests use IPv4).
    pub ip6: Option<Ipv6Addr>,
}

/// Pods A and B on one network; both namespaces are deleted on drop.
pub struct TwoPods {
    pub a: Pod,
    pub b: Pod,
}

impl TwoPods {
    /// Make the two pods for `test`, or `None` (after printing `skipped:`)
    /// when this machine cannot: not root, a tool missing (`ip` and `curl`
    /// always; `tools` besides), or namespaces refused. With
    /// `SLUICE_REQUIRE_ROOT_TESTS=1` those fail the test instead.
    pub fn new(test: &str, tools: &[&str]) -> Option<TwoPods> {
        let (prefix, n) = reserve(test, tools)?;
        let pod = |side: &str, host: u8| Pod {
            ns: format!("{prefix}-{side}"),
            ip: Ipv4Addr::new(10, n, 0, host),
            ip6: Some(Ipv6Addr::new(0xfd00, n.into(), 0, 0, 0, 0, 0, host.into())),
        };
        let mut pods = TwoPods {
            a: pod("a", 1),
            b: pod("b", 2),
        };
        if let Err(why) = pods.create() {
            skip(test, &format!("cannot make network namespaces: {why}"));
            return None;
        }
        println!("ran as root");
        Some(pods)
    }

    fn create(&mut self) -> Result<(), String> {
        ip(&["netns", "add", &self.a.ns])?;
        ip(&["netns", "add", &self.b.ns])?;
        let (a, b) = (&self.a.ns, &self.b.ns);
        ip(&[
            "link", "add", "eth0", "netns", a, "type", "veth", "peer", "name", "eth0", "netns", b,
        ])?;
        for pod in [&mut self.a, &mut self.b] {
            let v4 = format!("{}/24", pod.ip);
            ip(&["-n", &pod.ns, "addr", "add", &v4, "dev", "eth0"])?;
            if let Some(v6) = pod.ip6.map(|ip6| format!("{ip6}/64")) {
                // Best effort: no IPv6 (disabled by sysctl) is no reason to skip.
                if ip(&["-n", &pod.ns, "-6", "addr", "add", &v6, "dev", "eth0", "nodad"]).is_err() {
                    pod.ip6 = None;
                }
            }
            ip(&["-n", &pod.ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &pod.ns, "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }
}

impl Drop for TwoPods {
    fn drop(&mut self) {
        // Deleting a namespace also deletes its end of the veth pair, and
        // with it the other end.
        for pod in [&self.a, &self.b] {
            let _ = ip(&["netns", "del", &pod.ns]);
        }
    }
}

/// A hub pod and spoke pods, each spoke joined to the hub by a veth pair
/// of its own; every namespace is deleted on drop. IPv4 only.
pub struct HubPods {
    /// Its `ip` is its address on the first spoke's link.
    pub hub: Pod,
    pub spokes: Vec<Spoke>,
}

/// A pod linked to the hub.
pub struct Spoke {
    pub pod: Pod,
    /// The hub's address on this spoke's link: where the spoke reaches it.
    pub hub_ip: Ipv4Addr,
}

impl HubPods {
    /// Make pod `hub` and one pod per name in `spokes` for `test`: spoke i
    /// is `10.N.i.1/24` on its `eth0`, the hub is `10.N.i.2/24` on its
    /// `eth<i>`. `None` (after printing `skipped:`) when this machine
    /// cannot, as for [`TwoPods::new`].
    pub fn new(test: &str, tools: &[&str], hub: &str, spokes: &[&str]) -> Option<HubPods> {
        let (prefix, n) = reserve(test, tools)?;
        let mut pods = HubPods {
            hub: Pod {
                ns: format!("{prefix}-{hub}"),
                ip: Ipv4Addr::new(10, n, 0, 2),
                ip6: None,
            },
            spokes: Vec::new(),
        };
        if let Err(why) = pods.create(&prefix, n, spokes) {
            skip(test, &format!("cannot make network namespaces: {why}"));
            return None;
        }
        println!("ran as root");
        Some(pods)
    }

    fn create(&mut self, prefix: &str, n: u8, spokes: &[&str]) -> Result<(), String> {
        let hub = self.hub.ns.clone();
        ip(&["netns", "add", &hub])?;
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        for (i, name) in spokes.iter().enumerate() {
            let link = u8::try_from(i).map_err(|_| "too many spokes".to_string())?;
            let spoke = Spoke {
                pod: Pod {
                    ns: format!("{prefix}-{name}"),
                    ip: Ipv4Addr::new(10, n, link, 1),
                    ip6: None,
                },
                hub_ip: Ipv4Addr::new(10, n, link, 2),
            };
            let ns = spoke.pod.ns.clone();
            let (spoke_v4, hub_v4) = (format!("{}/24", spoke.pod.ip), format!("{}/24", spoke.hub_ip));
            // Kept before it exists, so a failure below still deletes it.
            self.spokes.push(spoke);
            ip(&["netns", "add", &ns])?;
            let hub_if = format!("eth{i}");
            ip(&[
                "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &hub_if, "netns", &hub,
            ])?;
            ip(&["-n", &ns, "addr", "add", &spoke_v4, "dev", "eth0"])?;
            ip(&["-n", &hub, "addr", "add", &hub_v4, "dev", &hub_if])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &hub, "link", "set", &hub_if, "up"])?;
        }
        Ok(())
    }
}

impl Drop for HubPods {
    fn drop(&mut self) {
        for pod in std::iter::once(&self.hub).chain(self.spokes.iter().map(|s| &s.pod)) {
            let _ = ip(&["netns", "del", &pod.ns]);
        }
    }
}

/// Check that this machine can make pods for `test` (else print
/// `skipped:`, or fail under `SLUICE_REQUIRE_ROOT_TESTS=1`, and return
/// `None`); then the namespace name prefix for this set of pods and its
/// network number N (`10.N.…`).
fn reserve(test: &str, tools: &[&str]) -> Option<(String, u8)> {
    if let Some(why) = missing_prerequisite(tools) {
        skip(test, &why);
        return None;
    }
    let count = CREATED.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    // Each namespace has its own addresses, so N need not be unique;
    // varying it keeps parallel tests apart in logs and captures.
    let n = ((pid + count) % 250 + 1) as u8;
    Some((format!("sluice-{pid}-{count}"), n))
}

/// Why this machine cannot run a pod test, if it cannot.
fn missing_prerequisite(tools: &[&str]) -> Option<String> {
    // SAFETY: geteuid takes no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root (network namespaces and iptables need it)".into());
    }
    for tool in ["ip", "curl"].iter().chain(tools) {
        let flag = if *tool == "ip" { "-V" } else { "--version" };
        let works = Command::new(tool).arg(flag).output().is_ok_and(|o| o.status.success());
        if !works {
            return Some(format!(
                "`{tool}` is not installed (apt-get install iproute2 iptables nftables curl tcpdump)"
            ));
        }
    }
    None
}

/// Print `skipped:`, or fail when the test is required to run.
fn skip(test: &str, why: &str) {
    assert!(
        !super::tls::required(),
        "{test}: {why}, but SLUICE_REQUIRE_ROOT_TESTS=1 requires this test to run"
    );
    println!("skipped: {test}: {why}");
}

/// `ip <args>` in the test's own namespace.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Run `args` inside namespace `ns` (`ip netns exec`), waiting for it.
pub fn run_in(ns: &str, args: &[&str]) -> Output {
    let mut command = Command::new("ip");
    for var in super::PROXY_VARS {
        command.env_remove(var);
    }
    command
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run `ip netns exec {ns} {}`: {e}", args.join(" ")))
}

/// [`run_in`] that must succeed: its stdout.
pub fn run_ok(ns: &str, args: &[&str]) -> String {
    let out = run_in(ns, args);
    assert!(
        out.status.success(),
        "`{}` in {ns} failed ({}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `f` on a thread inside namespace `ns` and return what it returns.
/// Sockets `f` creates belong to `ns` for good: a listener made here can
/// be served by tokio (`set_nonblocking(true)` + `from_std`), a client
/// socket connects from the pod.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|scope| {
        let thread = scope.spawn(|| {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns changes only this thread's network namespace,
            // with a descriptor that is open for the whole call.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        });
        match thread.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Poll `check` until it answers `Ok`, for at most [`CEILING`]; on
/// timeout fail with `what` and the last `Err` (what was seen instead).
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + CEILING;
    loop {
        match check() {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= deadline => {
                panic!("{what}: not within {CEILING:?}; last seen: {seen}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The config of a pod's sidecar: the fixed part (plugins dir, shared
/// cache, admin on 0.0.0.0:15020, a JSON access log at `access_log`, the
/// interception listeners `inbound` on 0.0.0.0:15006 and `outbound` on
/// 127.0.0.1:15001, and their IPv6 twins `inbound6` on [::]:15006 and
/// `outbound6` on [::1]:15001), then `body` (`[sidecar]` and routes).
pub fn sidecar_config(access_log: &str, body: &str) -> String {
    format!(
        r#"plugins_dir = "plugins"
cache_dir = {cache:?}

[admin]
address = "0.0.0.0:{ADMIN_PORT}"

[access_log]
format = "json"
path = {access_log:?}

[[listeners]]
name = "inbound"
address = "0.0.0.0:{INBOUND_PORT}"
intercept = "inbound"

[[listeners]]
name = "outbound"
address = "127.0.0.1:{OUTBOUND_PORT}"
intercept = "outbound"

[[listeners]]
name = "inbound6"
address = "[::]:{INBOUND_PORT}"
intercept = "inbound"

[[listeners]]
name = "outbound6"
address = "[::1]:{OUTBOUND_PORT}"
intercept = "outbound"

{body}"#,
        cache = super::cache_dir().display().to_string(),
    )
}

/// `sluice run` inside a pod; killed when dropped.
pub struct Sidecar {
    pub ns: String,
    pub child: Child,
    /// Holds `config.toml`, `plugins/` and `access.log`.
    pub dir: tempfile::TempDir,
    /// Every line the process printed so far (stderr and stdout).
    pub log: Arc<Mutex<Vec<String>>>,
}

/// Start the sidecar of pod `ns` on [`sidecar_config`]`(…, body)` and wait
/// until its admin listener answers `/ready` from inside the pod.
pub fn spawn_sidecar(ns: &str, body: &str) -> Sidecar {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("plugins")).expect("plugins dir");
    // The probe test filter, for routes that show what filters see.
    std::fs::copy(
        super::test_filter("probe-filter"),
        dir.path().join("plugins/probe.wasm"),
    )
    .expect("copy the probe");
    let access_log = dir.path().join("access.log").display().to_string();
    std::fs::write(dir.path().join("config.toml"), sidecar_config(&access_log, body)).expect("write config");
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(super::binary())
        .args(["run", "--config"])
        .arg(dir.path().join("config.toml"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice in the pod");
    let log = Arc::new(Mutex::new(Vec::new()));
    collect_lines(child.stdout.take().expect("stdout"), log.clone());
    collect_lines(child.stderr.take().expect("stderr"), log.clone());
    let mut sidecar = Sidecar {
        ns: ns.to_string(),
        child,
        dir,
        log,
    };
    sidecar.wait_ready();
    sidecar
}

/// Keep every line `from` prints in `log`.
fn collect_lines(from: impl Read + Send + 'static, log: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
}

impl Sidecar {
    fn wait_ready(&mut self) {
        let url = format!("http://127.0.0.1:{ADMIN_PORT}/ready");
        let ns = self.ns.clone();
        let deadline = Instant::now() + CEILING;
        while !run_in(&ns, &["curl", "-sf", "-o", "/dev/null", "--max-time", "5", &url])
            .status
            .success()
        {
            // On failure, dropping `self` prints the log.
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sluice in {ns} exited early ({status})");
            }
            assert!(Instant::now() < deadline, "sluice in {ns} not ready within {CEILING:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// `sluice iptables <args> --config <this sidecar's config>` inside the
    /// pod (e.g. `&[]`, `&["--remove"]`, `&["--nftables"]`); must succeed.
    pub fn iptables(&self, args: &[&str]) -> String {
        let binary = super::binary().display().to_string();
        let config = self.config_path().display().to_string();
        let mut command = vec![binary.as_str(), "iptables"];
        command.extend_from_slice(args);
        command.extend(["--config", config.as_str()]);
        run_ok(&self.ns, &command)
    }

    /// The access log so far, one JSON object a line (a line still being
    /// written is left for the next call).
    pub fn access_log_lines(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        text.split_inclusive('\n')
            .filter_map(|l| l.strip_suffix('\n'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("access log line {l:?}: {e}")))
            .collect()
    }

    /// `GET /metrics` on this sidecar.
    pub fn metrics(&self) -> String {
        metrics(&self.ns)
    }

    /// The process's output so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- sluice log in {} ---\n{}", self.ns, self.log_text());
        }
    }
}

/// The Prometheus text of the sidecar in `ns` (`curl` to its admin
/// listener on 127.0.0.1 inside the pod).
pub fn metrics(ns: &str) -> String {
    let url = format!("http://127.0.0.1:{ADMIN_PORT}/metrics");
    run_ok(ns, &["curl", "-sS", "--max-time", "30", &url])
}

/// The sum of the series of metric `name` whose labels include every
/// `labels` pair (0 when none do), whatever order the labels come in.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (label_text, value) = match rest.strip_prefix('{') {
                Some(rest) => rest.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            let have: Vec<(&str, &str)> = label_text
                .split(',')
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    Some((k.trim(), v.trim().trim_matches('"')))
                })
                .collect();
            if !labels.iter().all(|l| have.contains(l)) {
                return None;
            }
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

/// Wait for the access log line of `sidecar` with this direction and
/// path, and return it.
pub fn logged(sidecar: &Sidecar, direction: &str, path: &str) -> Value {
    wait_for(&format!("{}'s access log has {direction} {path}", sidecar.ns), || {
        let lines = sidecar.access_log_lines();
        lines
            .iter()
            .find(|l| l["direction"] == direction && l["path"] == path)
            .cloned()
            .ok_or_else(|| format!("{lines:#?}"))
    })
}

/// Wait until the series of `name` with `labels` on `sidecar` add up to
/// at least `at_least`.
pub fn metric_at_least(sidecar: &Sidecar, name: &str, labels: &[(&str, &str)], at_least: f64) {
    wait_for(&format!("{}: {name}{labels:?} >= {at_least}", sidecar.ns), || {
        let text = sidecar.metrics();
        let value = metric_sum(&text, name, labels);
        if value >= at_least {
            Ok(())
        } else {
            Err(format!("{value}; metrics:\n{text}"))
        }
    });
}

/// A runtime for the pods' servers, apart from the (blocking) test thread.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A listener made inside `pod`, on its pod address.
pub fn listen_in(pod: &Pod, port: u16) -> std::net::TcpListener {
    let listener = in_ns(&pod.ns, || std::net::TcpListener::bind((pod.ip, port)))
        .unwrap_or_else(|e| panic!("bind {}:{port} in {}: {e}", pod.ip, pod.ns));
    listener.set_nonblocking(true).expect("nonblocking listener");
    listener
}

/// `curl <args>` in pod `from`: the echo JSON of a 200 answer.
pub fn curl_echo(from: &Pod, args: &[&str]) -> Value {
    let mut command = vec!["curl", "-sS", "--fail-with-body", "--max-time", "60"];
    command.extend_from_slice(args);
    let body = run_ok(&from.ns, &command);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("curl {args:?} from {}: not an echo ({e}): {body}", from.ns))
}

/// Serve `listener` on `rt`: send `banner`, then echo each connection
/// until the client's EOF, then close the write side.
pub fn serve_echo(rt: &Runtime, listener: std::net::TcpListener, banner: &'static [u8]) {
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut from, mut to) = stream.split();
                if to.write_all(banner).await.is_ok() {
                    let _ = tokio::io::copy(&mut from, &mut to).await;
                }
                let _ = to.shutdown().await;
            });
        }
    });
}

/// Serve TLS on `listener` with `b.test`'s certificate from `ca`: read a
/// line, answer `pong <line>`, close.
pub fn serve_tls(rt: &Runtime, listener: std::net::TcpListener, ca: &Ca) {
    let issued = ca.issue(&Leaf::server("b.test", &["b.test"]));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(issued.chain(), issued.key())
        .expect("server certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let mut tls = tokio::io::BufReader::new(tls);
                let mut line = String::new();
                if tls.read_line(&mut line).await.is_ok() {
                    let _ = tls.write_all(format!("pong {line}").as_bytes()).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
}

/// A TCP connection from inside `pod` to `to`; reads and writes give up
/// after [`CEILING`].
pub fn connect_from(pod: &Pod, to: SocketAddr) -> TcpStream {
    let stream = in_ns(&pod.ns, || TcpStream::connect_timeout(&to, CEILING))
        .unwrap_or_else(|e| panic!("connect from {} to {to}: {e}", pod.ns));
    stream.set_read_timeout(Some(CEILING)).expect("read timeout");
    stream.set_write_timeout(Some(CEILING)).expect("write timeout");
    stream
}

/// A pod's raw TCP echo (client speaks first).
pub const ECHO_PORT: u16 = 7001;
/// A pod's server-speaks-first server; in `opaque_ports`.
pub const BANNER_PORT: u16 = 7000;
/// What that server says first.
pub const BANNER: &[u8] = b"220 ready\r\n";

/// Opaque TCP from `from` to the echo and banner servers at `to`: raw
/// bytes with a half-close come back whole, then EOF; on the opaque port
/// the banner arrives with nothing sent (nobody waits for the client's
/// bytes, which would end in the detect timeout), then an echo.
pub fn check_opaque_round_trips(from: &Pod, to: std::net::IpAddr) {
    let data = raw_bytes();
    let back = echo_round_trip(connect_from(from, SocketAddr::new(to, ECHO_PORT)), &data);
    assert_eq!(back.len(), data.len(), "echoed length");
    assert!(back == data, "the echo differs from what was sent");
    let mut stream = connect_from(from, SocketAddr::new(to, BANNER_PORT));
    let mut banner = [0u8; BANNER.len()];
    stream.read_exact(&mut banner).expect("the banner, with nothing sent");
    assert_eq!(&banner, BANNER);
    assert_eq!(echo_round_trip(stream, b"EHLO a.test\r\n"), b"EHLO a.test\r\n");
}

/// 1 MiB that no sniffing takes for HTTP or TLS (it starts with a zero).
pub fn raw_bytes() -> Vec<u8> {
    (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect()
}

/// Send `data` and half-close while reading: everything read to EOF.
pub fn echo_round_trip(mut stream: TcpStream, data: &[u8]) -> Vec<u8> {
    let mut writer = stream.try_clone().expect("clone stream");
    std::thread::scope(|scope| {
        scope.spawn(move || {
            writer.write_all(data).expect("send the bytes");
            writer.shutdown(Shutdown::Write).expect("half-close");
        });
        let mut back = Vec::new();
        stream.read_to_end(&mut back).expect("read the echo to EOF");
        back
    })
}
