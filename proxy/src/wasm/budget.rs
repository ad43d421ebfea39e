//! The CPU deadline of one filter call, and the cooperative scheduling
//! that keeps a call from holding a worker. Epoch interruption stops a call
//! at tick boundaries; at each one the call *yields* to the async runtime
//! (other requests on the worker run), unless this budget finds it has
//! used up its deadline in *CPU time*, summed over the polls it ran in, so
//! a call that was merely descheduled or suspended is not mistaken for a
//! runaway filter.
//!
//! Reading a thread's CPU clock costs a syscall (about 0.5 µs here), so a
//! call is metered only once it outlives its first tick: calls shorter than
//! that (all well-behaved ones) pay nothing. What ran before the first tick
//! counts as one tick. The ticker looks for long calls every 10 ms
//! (`epoch::WATCH`), so that first tick can come up to 20 ms into a call: a
//! runaway call may use up to about that much CPU beyond its deadline,
//! which is the price of not reading a clock per call. Counting wall time
//! there instead would charge a call for time the OS had it descheduled,
//! and fail well-behaved calls on a busy machine. From then on each poll of the call's
//! future opens a segment (the polling thread's CPU clock at its start)
//! which a tick or the end of the poll closes. A wall-clock backstop still
//! ends a call that is starved for far longer than its deadline; time spent
//! waiting on the host (an outbound call, a document refresh) is not
//! counted there, it has its own limit (`wait_limit`).
//!
//! The clocks are passed in, so the arithmetic is tested without sleeping.

use super::EPOCH_TICK;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Wall-clock backstop: this many deadlines, and at least one second.
const BACKSTOP_FACTOR: u32 = 20;

/// What a tick decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Let other tasks run, then go on.
    Yield,
    /// The deadline (or the backstop) is reached: trap.
    Interrupt,
}

#[derive(Debug)]
pub struct CallBudget {
    deadline: Duration,
    /// Set at the first tick: from then on polls are metered.
    metering: bool,
    /// CPU time used by the closed segments (the first tick counts one
    /// tick for what ran before it).
    used: Duration,
    /// The polling thread's CPU clock when the open segment began.
    segment: Option<Duration>,
    /// Wall clock at the first tick.
    since: Option<Instant>,
    /// Wall time spent waiting on the host (for the phase's `wait_limit`).
    waited: Duration,
    /// The part of it since the first tick (for the backstop).
    waited_since_tick: Duration,
}

impl CallBudget {
    pub fn new(deadline: Duration) -> Self {
        CallBudget {
            deadline,
            metering: false,
            used: Duration::ZERO,
            segment: None,
            since: None,
            waited: Duration::ZERO,
            waited_since_tick: Duration::ZERO,
        }
    }

    /// Start a call with `deadline`: the host arms the epoch deadline one
    /// tick ahead.
    pub fn start(&mut self, deadline: Duration) {
        *self = CallBudget::new(deadline);
    }

    /// Whether polls of this call are metered (it outlived a tick).
    pub fn metering(&self) -> bool {
        self.metering
    }

    /// A poll of the call began on a thread whose CPU clock reads `cpu`.
    pub fn poll_started(&mut self, cpu: Duration) {
        if self.metering {
            self.segment = Some(cpu);
        }
    }

    /// The poll ended (the call finished or is suspended).
    pub fn poll_ended(&mut self, cpu: Duration) {
        if let Some(start) = self.segment.take() {
            self.used += cpu.saturating_sub(start);
        }
    }

    /// The call waited `waited` on the host (not CPU, not starvation).
    pub fn waited(&mut self, waited: Duration) {
        self.waited += waited;
        // The backstop counts from the first tick: only later waits are
        // taken off it.
        if self.since.is_some() {
            self.waited_since_tick += waited;
        }
    }

    /// Wall time the call has waited on the host so far.
    pub fn waited_so_far(&self) -> Duration {
        self.waited
    }

    /// CPU time used so far, as of `cpu` on the polling thread.
    #[cfg(test)]
    pub fn used(&self, cpu: Duration) -> Duration {
        self.used + self.segment.map_or(Duration::ZERO, |s| cpu.saturating_sub(s))
    }

    /// The epoch reached the call's deadline tick while it ran on a thread
    /// whose CPU clock reads `cpu`: yield (closing the segment; the next
    /// poll opens another) or interrupt.
    pub fn on_tick(&mut self, cpu: Duration, wall: Instant) -> Tick {
        if !self.metering {
            self.metering = true;
            // Unmetered until now: counted as one tick (see the module doc).
            self.used = EPOCH_TICK;
            self.since = Some(wall);
        } else {
            self.poll_ended(cpu);
        }
        self.segment = None;
        let backstop = (self.deadline * BACKSTOP_FACTOR).max(Duration::from_secs(1));
        let starved = self.since.map_or(Duration::ZERO, |s| {
            wall.saturating_duration_since(s).saturating_sub(self.waited_since_tick)
        });
        if self.used >= self.deadline || starved >= backstop {
            Tick::Interrupt
        } else {
            Tick::Yield
        }
    }
}

/// The budget of one instance's calls, shared by its store (the epoch
/// callback and the host functions that wait) and the future polling it.
pub type SharedBudget = Arc<Mutex<CallBudget>>;

/// Locks a shared budget (a poisoned lock still holds a usable budget).
pub fn lock(budget: &SharedBudget) -> std::sync::MutexGuard<'_, CallBudget> {
    budget.lock().unwrap_or_else(|e| e.into_inner())
}

/// The polling thread's CPU clock.
pub fn thread_cpu() -> Duration {
    cpu_time::ThreadTime::now().as_duration()
}

/// A filter call's future, with each of its polls metered into `budget`
/// once the call is being metered.
pub struct Metered<'a, F> {
    pub call: Pin<&'a mut F>,
    pub budget: &'a SharedBudget,
}

/// Run `call` metered into `budget`. The caller pins the call where it
/// is (`pin!`), so the call's future, a few hundred bytes, is not moved
/// again to get here.
pub fn metered<'a, F: Future>(budget: &'a SharedBudget, call: Pin<&'a mut F>) -> Metered<'a, F> {
    Metered { call, budget }
}

impl<F: Future> Future for Metered<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        {
            let mut budget = lock(self.budget);
            if budget.metering() {
                budget.poll_started(thread_cpu());
            }
        }
        let polled = self.call.as_mut().poll(cx);
        let mut budget = lock(self.budget);
        if budget.metering() {
            budget.poll_ended(thread_cpu());
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn short_calls_are_never_metered() {
        let mut b = CallBudget::new(10 * MS);
        b.poll_started(Duration::from_secs(5));
        b.poll_ended(Duration::from_secs(6));
        assert!(!b.metering());
        assert_eq!(b.used(Duration::from_secs(7)), Duration::ZERO);
    }

    #[test]
    fn cpu_is_summed_across_polls_and_threads() {
        let wall = Instant::now();
        let mut b = CallBudget::new(10 * MS);
        // First tick: metering starts, one tick counted, yield.
        assert_eq!(b.on_tick(Duration::from_secs(100), wall), Tick::Yield);
        // Resumed on another thread (another CPU clock): 3 ms there.
        b.poll_started(Duration::from_secs(7));
        assert_eq!(b.on_tick(Duration::from_secs(7) + 3 * MS, wall + 4 * MS), Tick::Yield);
        assert_eq!(b.used(Duration::ZERO), 4 * MS);
        // A poll that ends by suspending (waiting on the host) counts too.
        b.poll_started(Duration::from_secs(50));
        b.poll_ended(Duration::from_secs(50) + 2 * MS);
        assert_eq!(b.used(Duration::ZERO), 6 * MS);
        // Time between polls is not CPU: 4 ms more reaches the deadline.
        b.poll_started(Duration::from_secs(9));
        assert_eq!(b.on_tick(Duration::from_secs(9) + 3 * MS, wall + 40 * MS), Tick::Yield);
        b.poll_started(Duration::from_secs(9));
        assert_eq!(b.on_tick(Duration::from_secs(9) + MS, wall + 41 * MS), Tick::Interrupt);
    }

    #[test]
    fn starvation_backstop_ignores_host_waits() {
        let wall = Instant::now();
        let mut b = CallBudget::new(10 * MS);
        let cpu = Duration::from_secs(1);
        assert_eq!(b.on_tick(cpu, wall), Tick::Yield);
        // 5 s of waiting on an outbound call is not starvation...
        b.waited(Duration::from_secs(5));
        b.poll_started(cpu);
        assert_eq!(b.on_tick(cpu, wall + Duration::from_millis(5_500)), Tick::Yield);
        // ...but a second more without CPU progress is (backstop 1 s).
        b.poll_started(cpu);
        assert_eq!(b.on_tick(cpu, wall + Duration::from_millis(6_100)), Tick::Interrupt);
    }

    #[test]
    fn waits_before_the_first_tick_do_not_stretch_the_backstop() {
        let wall = Instant::now();
        let mut b = CallBudget::new(10 * MS);
        // 5 s waiting before any tick, then starved compute.
        b.waited(Duration::from_secs(5));
        let cpu = Duration::from_secs(1);
        assert_eq!(b.on_tick(cpu, wall), Tick::Yield);
        b.poll_started(cpu);
        assert_eq!(b.on_tick(cpu, wall + Duration::from_millis(1_100)), Tick::Interrupt);
        assert_eq!(
            b.waited_so_far(),
            Duration::from_secs(5),
            "still counted for wait_limit"
        );
    }

    #[test]
    fn start_resets_everything() {
        let mut b = CallBudget::new(MS);
        b.on_tick(Duration::ZERO, Instant::now());
        b.waited(MS);
        b.start(5 * MS);
        assert!(!b.metering());
        assert_eq!(b.used(Duration::from_secs(1)), Duration::ZERO);
    }
}
