//! The epoch ticker: advances wasmtime's epoch, which is what lets a
//! running filter call be measured against its CPU deadline, made to yield
//! and interrupted. It ticks only for *long* calls: while calls run (and
//! for [`LINGER`] after the last one ended) it wakes every [`WATCH`] to
//! look for a call that has been running since before its previous
//! wake-up, and once it finds one it ticks every [`EPOCH_TICK`] until none
//! is left. Well-behaved calls last microseconds and are never ticked, so
//! a steady stream of them costs a wake-up every [`WATCH`], not every
//! [`EPOCH_TICK`] (on these VMs a timed wake-up of a thread costs about
//! 20 µs of CPU: 21 ms per second at 1000 wake-ups). With no calls at all
//! it waits without waking: a sidecar or gateway with no traffic, or with
//! routes that run no filter, spends no CPU on it. A call that starts
//! while it waits wakes it. A runaway call gets its first tick within two
//! [`WATCH`] periods of starting; the budget counts the time before it as
//! one tick (see `budget`).

use super::EPOCH_TICK;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};
use wasmtime::Engine;

/// How long the ticker keeps going after the last call ended.
pub const LINGER: Duration = Duration::from_millis(50);

/// How often the ticker looks for a long call while it has seen none.
pub const WATCH: Duration = Duration::from_millis(10);

/// Starts and stops with the runtime.
pub struct Ticker {
    shared: Arc<Shared>,
}

struct Shared {
    /// Calls running now, by the half they started in: `running[phase]`.
    running: [AtomicUsize; 2],
    /// The half new calls count in; flipped at each of the ticker's
    /// wake-ups, so a call in the other half has run since before it.
    phase: AtomicUsize,
    /// Calls ended so far: the ticker notes when it last changed (a count,
    /// so ending a call reads no clock).
    ended: AtomicU64,
    /// Set by the ticker while it waits for a call.
    parked: AtomicBool,
    stop: AtomicBool,
    wake: SyncSender<()>,
}

impl Shared {
    fn new(wake: SyncSender<()>) -> Arc<Shared> {
        Arc::new(Shared {
            running: [AtomicUsize::new(0), AtomicUsize::new(0)],
            phase: AtomicUsize::new(0),
            ended: AtomicU64::new(0),
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

    /// Calls running now.
    fn active(&self) -> usize {
        self.running[0].load(Ordering::SeqCst) + self.running[1].load(Ordering::SeqCst)
    }

    /// At a wake-up: whether a call has been running since before the
    /// previous one (or, when that one found a long call, whether any call
    /// still runs: a long call's half is only looked at every other
    /// wake-up). Starts the next half.
    fn long_call(&self, was_long: bool) -> bool {
        let current = self.phase.load(Ordering::SeqCst) & 1;
        let older = self.running[current ^ 1].load(Ordering::SeqCst) > 0;
        self.phase.store(current ^ 1, Ordering::SeqCst);
        older || (was_long && self.active() > 0)
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
        let half = shared.phase.load(Ordering::SeqCst) & 1;
        shared.running[half].fetch_add(1, Ordering::SeqCst);
        if shared.parked.load(Ordering::SeqCst) {
            shared.wake();
        }
        Active {
            shared: shared.clone(),
            half,
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
    }
}

/// One running call.
pub struct Active {
    shared: Arc<Shared>,
    half: usize,
}

impl Drop for Active {
    fn drop(&mut self) {
        self.shared.ended.fetch_add(1, Ordering::Relaxed);
        self.shared.running[self.half].fetch_sub(1, Ordering::SeqCst);
    }
}

/// The ticker thread: while calls run, look for a long one every
/// [`WATCH`] and tick every [`EPOCH_TICK`] while there is one; wait while
/// idle; until stopped.
fn run(shared: &Shared, woken: &Receiver<()>, mut tick: impl FnMut()) {
    let mut long = false;
    // The ended count as last seen, and when it was last seen to change.
    let (mut ended, mut quiet_since) = (0, Instant::now());
    while !shared.stop.load(Ordering::SeqCst) {
        let now_ended = shared.ended.load(Ordering::Relaxed);
        if now_ended != ended {
            (ended, quiet_since) = (now_ended, Instant::now());
        }
        let busy = shared.active() > 0 || quiet_since.elapsed() < LINGER;
        if busy {
            let period = if long { EPOCH_TICK } else { WATCH };
            if let Err(RecvTimeoutError::Disconnected) = woken.recv_timeout(period) {
                return;
            }
            long = shared.long_call(long);
            if long {
                tick();
            }
            continue;
        }
        long = false;
        // Announce the wait, then look again: a call that started in
        // between either sees `parked` and wakes us, or is seen here.
        shared.parked.store(true, Ordering::SeqCst);
        if shared.active() == 0 && woken.recv().is_err() {
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
            ticker.shared.parked.load(Ordering::SeqCst) && ticker.shared.active() == 0
        });
        let parked_at = ticks.load(Ordering::SeqCst);
        std::thread::sleep(LINGER * 2);
        assert_eq!(ticks.load(Ordering::SeqCst), parked_at, "ticked after parking");
    }

    #[test]
    fn short_calls_are_not_ticked() {
        let (ticker, ticks) = counting();
        let before = ticks.load(Ordering::SeqCst);
        // 300 ms of back-to-back short calls: the ticker is busy all along
        // (it would have ticked about 300 times at one tick per ms) but
        // never finds a call that outlived one of its periods.
        let until = Instant::now() + Duration::from_millis(300);
        let mut calls = 0u64;
        while Instant::now() < until {
            drop(ticker.enter());
            calls += 1;
        }
        let ticked = ticks.load(Ordering::SeqCst) - before;
        // A call whose thread is descheduled between enter and drop for a
        // whole period may be ticked; a few such on a loaded machine.
        assert!(ticked <= 5, "{ticked} ticks during {calls} short calls");
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
