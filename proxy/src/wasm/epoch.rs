//! The epoch ticker: advances wasmtime's epoch every [`EPOCH_TICK`], which
//! is what lets a running filter call be measured against its CPU deadline
//! and interrupted. It ticks only while calls run (and for [`LINGER`] after
//! the last one ended, so a steady stream of calls does not make it stop
//! and start), and otherwise waits without waking: a sidecar or gateway
//! with no traffic, or with routes that run no filter, spends no CPU on it.
//! A call that starts while it waits wakes it; the call's first deadline
//! tick then comes at most one tick later, as it always could.

use super::EPOCH_TICK;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};
use wasmtime::Engine;

/// How long the ticker keeps going after the last call ended.
pub const LINGER: Duration = Duration::from_millis(50);

/// Starts and stops with the runtime.
pub struct Ticker {
    shared: Arc<Shared>,
}

struct Shared {
    /// Calls running now.
    active: AtomicUsize,
    /// When the last call ended, in milliseconds after `start`.
    last_end_ms: AtomicU64,
    start: Instant,
    /// Set by the ticker while it waits for a call.
    parked: AtomicBool,
    stop: AtomicBool,
    wake: SyncSender<()>,
}

impl Shared {
    fn new(wake: SyncSender<()>) -> Arc<Shared> {
        Arc::new(Shared {
            active: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
            start: Instant::now(),
            parked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            wake,
        })
    }

    fn wake(&self) {
        match self.wake.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }

    fn idle_for(&self) -> Duration {
        let now = self.start.elapsed();
        now.saturating_sub(Duration::from_millis(self.last_end_ms.load(Ordering::Relaxed)))
    }
}

impl Ticker {
    /// Start the ticker thread for `engine`.
    pub fn start(engine: Engine) -> std::io::Result<Ticker> {
        let (wake, woken) = std::sync::mpsc::sync_channel(1);
        let shared = Shared::new(wake);
        let ticking = shared.clone();
        std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || run(&ticking, &woken, || engine.increment_epoch()))?;
        Ok(Ticker { shared })
    }

    /// Mark a call as running until the guard drops.
    pub fn enter(&self) -> Active {
        let shared = &self.shared;
        if shared.active.fetch_add(1, Ordering::SeqCst) == 0 && shared.parked.load(Ordering::SeqCst) {
            shared.wake();
        }
        Active(shared.clone())
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
    }
}

/// One running call.
pub struct Active(Arc<Shared>);

impl Drop for Active {
    fn drop(&mut self) {
        let now = self.0.start.elapsed().as_millis() as u64;
        self.0.last_end_ms.store(now, Ordering::Relaxed);
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The ticker thread: tick while busy, wait while idle, until stopped.
fn run(shared: &Shared, woken: &Receiver<()>, mut tick: impl FnMut()) {
    while !shared.stop.load(Ordering::SeqCst) {
        let busy = shared.active.load(Ordering::SeqCst) > 0 || shared.idle_for() < LINGER;
        if busy {
            match woken.recv_timeout(EPOCH_TICK) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => tick(),
                Err(RecvTimeoutError::Disconnected) => return,
            }
            continue;
        }
        // Announce the wait, then look again: a call that started in
        // between either sees `parked` and wakes us, or is seen here.
        shared.parked.store(true, Ordering::SeqCst);
        if shared.active.load(Ordering::SeqCst) == 0 && woken.recv().is_err() {
            return;
        }
        shared.parked.store(false, Ordering::SeqCst);
        // A wake-up sent while we decided not to wait is spent here, so the
        // next tick is not early.
        while woken.try_recv().is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// A ticker thread over a counter instead of an engine.
    fn counting() -> (Ticker, Arc<AtomicU32>) {
        let (wake, woken) = std::sync::mpsc::sync_channel(1);
        let shared = Shared::new(wake);
        let ticks = Arc::new(AtomicU32::new(0));
        let (thread_shared, counter) = (shared.clone(), ticks.clone());
        std::thread::spawn(move || {
            run(&thread_shared, &woken, || {
                counter.fetch_add(1, Ordering::SeqCst);
            })
        });
        (Ticker { shared }, ticks)
    }

    /// Poll `check` for up to ten seconds.
    fn eventually(what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn ticks_only_while_calls_run() {
        let (ticker, ticks) = counting();
        // Idle: it parks once the linger after start has passed.
        eventually("the ticker never parked", || {
            ticker.shared.parked.load(Ordering::SeqCst)
        });
        let before = ticks.load(Ordering::SeqCst);
        std::thread::sleep(LINGER * 2);
        assert_eq!(ticks.load(Ordering::SeqCst), before, "ticked while idle");
        // A call wakes it and it ticks while the call runs.
        let call = ticker.enter();
        eventually("no tick during a call", || ticks.load(Ordering::SeqCst) > before + 2);
        drop(call);
        // After the call (and the linger) it parks again.
        eventually("did not park after the call", || {
            ticker.shared.parked.load(Ordering::SeqCst) && ticker.shared.active.load(Ordering::SeqCst) == 0
        });
        let parked_at = ticks.load(Ordering::SeqCst);
        std::thread::sleep(LINGER * 2);
        assert_eq!(ticks.load(Ordering::SeqCst), parked_at, "ticked after parking");
    }

    #[test]
    fn stops_when_dropped() {
        let (ticker, _) = counting();
        let shared = ticker.shared.clone();
        drop(ticker);
        // The thread holds the other reference until it returns.
        eventually("the ticker thread did not stop", || Arc::strong_count(&shared) == 1);
    }
}
