//! A real `redis-server` for the tests, started on a free loopback port
//! with persistence off, killed on drop. Without the package the test
//! prints `skipped:` (and fails under `SLUICE_REQUIRE_ROOT_TESTS=1`, as
//! `.ci/run` sets it, which also installs the package).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub addr: SocketAddr,
    child: Option<Child>,
}

/// Whether `redis-server` can run here; prints `skipped:` when it cannot
/// (and fails when it is required).
pub fn available(test: &str) -> bool {
    let ok = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !super::tls::required(),
            "{test}: redis-server is not installed, but SLUICE_REQUIRE_ROOT_TESTS=1 requires this test to run"
        );
        println!("skipped: {test}: redis-server is not installed (apt-get install redis-server)");
    }
    ok
}

impl RedisServer {
    /// Start on a free port.
    pub fn start() -> RedisServer {
        let mut server = RedisServer {
            addr: super::service::reserve_port(),
            child: None,
        };
        server.restart();
        server
    }

    /// The URL sluice's config takes.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Kill the server (its data is gone: no persistence).
    pub fn stop(&mut self) {
        self.freeze(false);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freeze (SIGSTOP) or thaw (SIGCONT) the server: a host that stops
    /// answering without closing its connections.
    pub fn freeze(&self, frozen: bool) {
        if let Some(child) = &self.child {
            let signal = if frozen { "-STOP" } else { "-CONT" };
            let status = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .expect("kill");
            assert!(status.success(), "kill {signal}");
        }
    }

    /// Start (again) on the same port, and wait until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.addr.port().to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.cli(&["PING"]).as_deref() != Some("PONG") {
            assert!(Instant::now() < deadline, "redis-server did not answer within 20 s");
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("redis-server on {} exited: {status}", self.addr);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Ours, not another process's on a port taken meanwhile.
        if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
            panic!("redis-server on {} exited: {status}", self.addr);
        }
    }

    /// Run one command through `redis-cli`; its output, trimmed, if it ran.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.addr.port().to_string()])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|s| !s.starts_with("Could not connect"))
    }

    /// Every key, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .cli(&["--raw", "KEYS", "*"])
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        keys.sort();
        keys
    }

    /// How many commands of `name` (lower case, e.g. `evalsha`) it ran
    /// successfully (`calls` less `failed_calls`: an `EVALSHA` answered
    /// `NOSCRIPT` fails).
    pub fn calls(&self, name: &str) -> u64 {
        let stats = self.cli(&["INFO", "commandstats"]).unwrap_or_default();
        let field = |line: &str, field: &str| -> u64 {
            line.split([':', ','])
                .find_map(|kv| kv.strip_prefix(field)?.strip_prefix('=')?.parse().ok())
                .unwrap_or(0)
        };
        stats
            .lines()
            .find(|l| l.starts_with(&format!("cmdstat_{name}:")))
            .map_or(0, |l| field(l, "calls") - field(l, "failed_calls"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
