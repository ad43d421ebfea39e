//! An HTTP/1.1 + h2c upstream on an ephemeral loopback port whose behaviour
//! the test changes while it runs, for the traffic-control tests: failures
//! on a fixed pattern (never chance), a fixed status, a delay before each
//! answer, requests held until released, and a health-check path answered
//! apart from the traffic. Every answer's body is the upstream's name, with
//! `x-upstream: <name>`.
//!
//! - `/healthz`: the health status ([`FlakyUpstream::set_health_status`]),
//!   counted in [`FlakyUpstream::health_checks`] and never as traffic;
//! - `/hold…`: held until [`FlakyUpstream::release`], then answered as
//!   below;
//! - anything else: counted (request number `n` from 0), held while
//!   [`FlakyUpstream::set_hold`] is on, delayed by
//!   [`FlakyUpstream::set_delay`], then answered per the mode — 200, a fixed
//!   status, or 503 for request `n` iff `(n * fail) % of < fail` (exactly
//!   `fail` of every `of` consecutive requests, spread out).

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How non-health requests are answered.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Healthy,
    Always(u16),
    /// 503 for `fail` of every `of` requests.
    Pattern {
        fail: u32,
        of: u32,
    },
}

impl Mode {
    /// The status for request number `n` (from 0).
    fn status(self, n: u64) -> u16 {
        match self {
            Mode::Healthy => 200,
            Mode::Always(status) => status,
            Mode::Pattern { fail, of } => {
                let (fail, of) = (u64::from(fail), u64::from(of.max(1)));
                if (n * fail) % of < fail { 503 } else { 200 }
            }
        }
    }
}

struct State {
    name: String,
    mode: Mutex<Mode>,
    delay: Mutex<Duration>,
    /// Whether every non-health request is held until released.
    hold_all: Mutex<bool>,
    health_status: AtomicU16,
    /// Bumped by `release`: a held request waits for it to pass the value
    /// it saw on arrival.
    release: watch::Sender<u64>,
    requests: AtomicU64,
    failures: AtomicU64,
    health_checks: AtomicU64,
    held: AtomicU64,
}

/// A running controllable upstream; stops accepting when dropped.
pub struct FlakyUpstream {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for FlakyUpstream {
    fn drop(&mut self) {
        self.task.abort();
        // Nothing stays parked on a dropped upstream.
        self.release();
    }
}

impl FlakyUpstream {
    /// Start healthy on `127.0.0.1:0`, naming itself `name`.
    pub async fn start(name: &str) -> FlakyUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind flaky upstream");
        let addr = listener.local_addr().expect("flaky upstream addr");
        let state = Arc::new(State {
            name: name.to_string(),
            mode: Mutex::new(Mode::Healthy),
            delay: Mutex::new(Duration::ZERO),
            hold_all: Mutex::new(false),
            health_status: AtomicU16::new(200),
            release: watch::channel(0).0,
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            health_checks: AtomicU64::new(0),
            held: AtomicU64::new(0),
        });
        let serving = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = sluice::accept::next_connection(&listener).await;
                let state = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| respond(state.clone(), req));
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        FlakyUpstream { addr, state, task }
    }

    /// The name it answers with.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Answer 503 to exactly `fail` of every `of` consecutive requests
    /// (counted from the last [`reset`](Self::reset)), spread out.
    pub fn set_failure_pattern(&self, fail: u32, of: u32) {
        assert!(of > 0 && fail <= of, "failure pattern {fail} of {of}");
        *lock(&self.state.mode) = Mode::Pattern { fail, of };
    }

    /// Answer every request with `status`.
    pub fn set_always(&self, status: u16) {
        *lock(&self.state.mode) = Mode::Always(status);
    }

    /// Answer every request 200.
    pub fn set_healthy(&self) {
        *lock(&self.state.mode) = Mode::Healthy;
    }

    /// Wait this long before answering each request.
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.state.delay) = delay;
    }

    /// Hold every request from now on until [`release`](Self::release) (or
    /// until this is turned off, which releases the held ones).
    pub fn set_hold(&self, hold: bool) {
        *lock(&self.state.hold_all) = hold;
        if !hold {
            self.release();
        }
    }

    /// Let every request held so far go on.
    pub fn release(&self) {
        self.state.release.send_modify(|g| *g += 1);
    }

    /// What `/healthz` answers (200 at start).
    pub fn set_health_status(&self, status: u16) {
        self.state.health_status.store(status, Ordering::SeqCst);
    }

    /// Requests seen, health checks excluded (counted on arrival, before
    /// any hold or delay).
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Requests answered with a status other than 200.
    pub fn failures(&self) -> u64 {
        self.state.failures.load(Ordering::SeqCst)
    }

    /// `/healthz` requests seen.
    pub fn health_checks(&self) -> u64 {
        self.state.health_checks.load(Ordering::SeqCst)
    }

    /// Requests being held right now.
    pub fn held(&self) -> u64 {
        self.state.held.load(Ordering::SeqCst)
    }

    /// Zero the counters (the failure pattern starts over).
    pub fn reset(&self) {
        self.state.requests.store(0, Ordering::SeqCst);
        self.state.failures.store(0, Ordering::SeqCst);
        self.state.health_checks.store(0, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn respond(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    if path == "/healthz" {
        state.health_checks.fetch_add(1, Ordering::SeqCst);
        return Ok(answer(&state.name, state.health_status.load(Ordering::SeqCst)));
    }
    let hold = path.starts_with("/hold") || *lock(&state.hold_all);
    // Subscribed before counting, so a release the test sends once it has
    // seen this request arrive is never missed.
    let mut release = state.release.subscribe();
    let arrived = *release.borrow_and_update();
    let n = state.requests.fetch_add(1, Ordering::SeqCst);
    if hold {
        state.held.fetch_add(1, Ordering::SeqCst);
        let _ = release.wait_for(|g| *g > arrived).await;
        state.held.fetch_sub(1, Ordering::SeqCst);
    }
    let delay = *lock(&state.delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let status = lock(&state.mode).status(n);
    if status != 200 {
        state.failures.fetch_add(1, Ordering::SeqCst);
    }
    Ok(answer(&state.name, status))
}

fn answer(name: &str, status: u16) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(name.to_string())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert("content-type", "text/plain".parse().expect("static header"));
    resp.headers_mut().insert(
        "x-upstream",
        name.parse()
            .unwrap_or_else(|_| "upstream".parse().expect("static header")),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::Mode;

    #[test]
    fn pattern_fails_exactly_fail_of_every_of() {
        for (fail, of) in [(3, 10), (1, 3), (0, 5), (5, 5), (4, 6)] {
            let mode = Mode::Pattern { fail, of };
            for window in 0..5u64 {
                let failed = (window * u64::from(of)..(window + 1) * u64::from(of))
                    .filter(|&n| mode.status(n) == 503)
                    .count();
                assert_eq!(failed, fail as usize, "{fail} of {of}, window {window}");
            }
        }
        let mode = Mode::Pattern { fail: 3, of: 10 };
        let fails: Vec<u64> = (0..10).filter(|&n| mode.status(n) == 503).collect();
        assert_eq!(fails, [0, 4, 7]);
    }
}
