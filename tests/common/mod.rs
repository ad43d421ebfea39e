//! Shared harness for the end-to-end tests: start sluice in-process (or as
//! the real binary) on ephemeral loopback ports with a config written to a
//! temporary directory, and real HTTP clients to talk to it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod admin;
pub mod dns;
pub mod h2_raw;
pub mod netns;
pub mod redis;
pub mod service;
pub mod tls;

pub use sluice_test_support::test_filter;
#[allow(unused_imports)]
pub use sluice_test_support::upstream::Upstream;

/// Proxy settings that clients (curl, Python's HTTP, WebSocket and gRPC
/// clients) would otherwise honour: removed from their environment, so
/// they talk to the address they are given.
pub const PROXY_VARS: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "grpc_proxy",
];

/// A compiled-component cache shared by the tests, so each test process
/// compiles a plugin once.
pub fn cache_dir() -> PathBuf {
    std::env::temp_dir().join("sluice-test-cache")
}

/// A temporary directory with `config.toml` and `plugins/`.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    /// Write `body` (clusters and routes) after a generated header with a
    /// listener on port 0, the plugins dir and the shared cache; copy the
    /// named test filters into `plugins/` (as `<file stem>.wasm`).
    pub fn new(body: &str, filters: &[(&str, &str)]) -> Workdir {
        let dir = tempfile::tempdir().expect("tempdir");
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).expect("plugins dir");
        for (crate_name, stem) in filters {
            std::fs::copy(test_filter(crate_name), plugins.join(format!("{stem}.wasm"))).expect("copy filter");
        }
        let header = format!(
            "plugins_dir = \"plugins\"\ncache_dir = {:?}\n\n[[listeners]]\nname = \"test\"\naddress = \"127.0.0.1:0\"\n\n",
            cache_dir().display().to_string()
        );
        std::fs::write(dir.path().join("config.toml"), header + body).expect("write config");
        Workdir { dir }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }
}

/// sluice running in this process.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub running: sluice::server::Running,
    pub work: Workdir,
}

impl TestProxy {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Start sluice in-process on `body` (clusters + routes).
pub async fn start(body: &str, filters: &[(&str, &str)]) -> TestProxy {
    start_workdir(Workdir::new(body, filters)).await
}

/// Start sluice in-process on a prepared work directory.
pub async fn start_workdir(work: Workdir) -> TestProxy {
    let config = sluice::config::Config::load(&work.config_path()).unwrap_or_else(|e| panic!("{e}"));
    let running = sluice::server::start(config).await.unwrap_or_else(|e| panic!("{e}"));
    let addr = running.listeners[0].1;
    TestProxy { addr, running, work }
}

/// An HTTP/1.1 client.
pub fn h1() -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .build()
        .expect("client")
}

/// An HTTP/2 client with prior knowledge (h2c).
pub fn h2() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .expect("client")
}

/// The echo JSON's header values for `name`, in order.
pub fn echoed(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .filter(|h| h[0] == name)
                .filter_map(|h| h[1].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The real `sluice` binary serving `config`; killed when dropped.
pub struct BinaryProxy {
    pub child: Child,
    pub addr: SocketAddr,
    /// The admin listener, when the config has one.
    pub admin: Option<SocketAddr>,
    pub work: Workdir,
    /// Every stderr line so far (the process's log).
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Every stdout line so far (where a filter's stdout would land, and
    /// the access log when it goes to `stdout`).
    pub out: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl BinaryProxy {
    /// The log lines so far that contain `needle`.
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().filter(|l| l.contains(needle)).cloned().collect()
    }

    /// The stdout lines so far that contain `needle`.
    pub fn stdout_lines_with(&self, needle: &str) -> Vec<String> {
        let out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        out.iter().filter(|l| l.contains(needle)).cloned().collect()
    }

    /// The process's exit status, polled for up to `within` (panics after).
    pub async fn exit_status(&mut self, within: std::time::Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for sluice") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sluice did not exit within {within:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Drop for BinaryProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the process said (CI keeps only the
        // test's output).
        if std::thread::panicking() {
            let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            let tail = &log[log.len().saturating_sub(60)..];
            eprintln!("--- sluice's log, last {} lines ---\n{}", tail.len(), tail.join("\n"));
        }
    }
}

pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sluice"))
}

/// Start the binary and wait for its "listening" log line.
pub fn start_binary(body: &str, filters: &[(&str, &str)]) -> BinaryProxy {
    start_binary_with(body, filters, &[])
}

/// [`start_binary`] with extra command-line arguments (e.g. `--threads 1`).
pub fn start_binary_with(body: &str, filters: &[(&str, &str)], args: &[&str]) -> BinaryProxy {
    use std::io::{BufRead, BufReader};
    let work = Workdir::new(body, filters);
    let mut command = Command::new(binary());
    command
        .args(args)
        .args(["run", "--config"])
        .arg(work.config_path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A config with its own `[log] level` gets it; RUST_LOG would override it.
    if body.contains("[log]") {
        command.env_remove("RUST_LOG");
    } else {
        command.env("RUST_LOG", "info");
    }
    let mut child = command.spawn().expect("spawn sluice");
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stdout = child.stdout.take().expect("stdout");
    let keep_out = out.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            keep_out.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            keep.lock().unwrap_or_else(|e| e.into_inner()).push(line.clone());
            let admin = line.contains("admin listening");
            if admin || (line.contains("listening") && line.contains("listener=test")) {
                let addr = line
                    .rsplit("address=")
                    .next()
                    .and_then(|a| a.split_whitespace().next())
                    .and_then(|a| a.trim().parse::<SocketAddr>().ok());
                if let Some(addr) = addr {
                    let _ = tx.send((admin, addr));
                }
            }
        }
    });
    let wants_admin = body.contains("[admin]");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut addr, mut admin) = (None, None);
    while addr.is_none() || (wants_admin && admin.is_none()) {
        if let Ok((is_admin, a)) = rx.recv_timeout(Duration::from_millis(100)) {
            if is_admin {
                admin = Some(a);
            } else {
                addr = Some(a);
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("sluice exited early: {status}");
        }
        assert!(Instant::now() < deadline, "sluice did not start listening within 60s");
    }
    let addr = addr.expect("listener address");
    BinaryProxy {
        child,
        addr,
        admin,
        work,
        log,
        out,
    }
}

/// A field of /proc/PID/status in KiB (e.g. `VmRSS`, `VmHWM`).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .strip_prefix(':')?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}
