//! The CPU deadline of one filter call. Epoch interruption stops a call at
//! tick boundaries; at each one, this budget decides whether the call has
//! used up its deadline in *CPU time of the calling thread*, so a thread that
//! was merely descheduled on a busy machine is not mistaken for a runaway
//! filter. Reading the thread's CPU clock costs a syscall, so it is read
//! only when a call outlives its first tick: calls shorter than a tick (all
//! well-behaved ones) pay nothing. A wall-clock backstop still ends a call
//! that is starved for far longer than its deadline.

use super::EPOCH_TICK;
use cpu_time::ThreadTime;
use std::time::{Duration, Instant};
use wasmtime::UpdateDeadline;

/// Wall-clock backstop: this many deadlines, and at least one second.
const BACKSTOP_FACTOR: u32 = 20;

#[derive(Debug)]
pub struct CallBudget {
    deadline: Duration,
    /// The thread's CPU clock and the wall clock when the call crossed its
    /// first tick. (A call runs in one poll on one thread: host functions
    /// never yield.)
    first_tick: Option<(Duration, Instant)>,
}

impl CallBudget {
    pub fn new(deadline: Duration) -> Self {
        CallBudget {
            deadline,
            first_tick: None,
        }
    }

    /// Start a call with `deadline`: the host arms the epoch deadline one
    /// tick ahead.
    pub fn start(&mut self, deadline: Duration) {
        self.deadline = deadline;
        self.first_tick = None;
    }

    /// Called by the epoch callback at each tick the call is still running:
    /// keep going one more tick, or interrupt.
    pub fn on_tick(&mut self) -> wasmtime::Result<UpdateDeadline> {
        match self.first_tick {
            None => {
                self.first_tick = Some((ThreadTime::now().as_duration(), Instant::now()));
                Ok(UpdateDeadline::Continue(1))
            }
            Some((cpu, wall)) => {
                // Up to one tick ran before the first reading.
                let used = ThreadTime::now().as_duration().saturating_sub(cpu) + EPOCH_TICK;
                let backstop = (self.deadline * BACKSTOP_FACTOR).max(Duration::from_secs(1));
                if used >= self.deadline || wall.elapsed() >= backstop {
                    Err(wasmtime::Trap::Interrupt.into())
                } else {
                    Ok(UpdateDeadline::Continue(1))
                }
            }
        }
    }
}
