//! The idle instances of one filter slot. A pool grows on demand up to the
//! slot's `max_instances` (its permits bound how many exist) and gives back
//! what a burst left behind: instances idle for [`IDLE_TIMEOUT`] are dropped,
//! keeping one warm instance so the next request need not instantiate — and
//! not even that one if its memory grew past what it had when configured
//! (Wasm memory never shrinks, so a grown instance would pin its peak).
//! Time is passed in, so the policy is tested without waiting.

use std::time::{Duration, Instant};

/// How long an instance may sit idle before it is dropped.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

struct Idle<T> {
    item: T,
    since: Instant,
    grown: bool,
}

/// Idle items, most recently used last.
pub struct IdleList<T> {
    items: Vec<Idle<T>>,
}

impl<T> Default for IdleList<T> {
    fn default() -> Self {
        IdleList { items: Vec::new() }
    }
}

impl<T> IdleList<T> {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The most recently used item (its memory is the warmest).
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop().map(|i| i.item)
    }

    /// Put back an item that finished its work at `now`; `grown` says its
    /// memory is larger than when it was configured.
    pub fn push(&mut self, item: T, now: Instant, grown: bool) {
        self.items.push(Idle {
            item,
            since: now,
            grown,
        });
    }

    /// Drop items idle since before `now - IDLE_TIMEOUT`, keeping the most
    /// recent one unless it grew; returns what was dropped.
    pub fn trim(&mut self, now: Instant) -> Vec<T> {
        let stale = |i: &Idle<T>| now.saturating_duration_since(i.since) >= IDLE_TIMEOUT;
        let Some(last) = self.items.last() else {
            return Vec::new();
        };
        if !self.items.iter().any(stale) {
            return Vec::new();
        }
        // Everything stale goes, except a lone warm survivor that did not grow.
        let keep_warm = !last.grown && self.items.iter().all(stale);
        let mut dropped = Vec::new();
        let mut kept = Vec::with_capacity(self.items.len());
        let count = self.items.len();
        for (i, idle) in self.items.drain(..).enumerate() {
            let warm = keep_warm && i + 1 == count;
            if stale(&idle) && !warm {
                dropped.push(idle.item);
            } else {
                kept.push(idle);
            }
        }
        self.items = kept;
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_given_back_but_one_warm_instance_stays() {
        let t0 = Instant::now();
        let mut list = IdleList::default();
        for n in 0..8 {
            list.push(n, t0, false);
        }
        assert!(list.trim(t0 + IDLE_TIMEOUT / 2).is_empty(), "nothing is stale yet");
        let dropped = list.trim(t0 + IDLE_TIMEOUT);
        assert_eq!(dropped.len(), 7);
        assert_eq!(list.len(), 1);
        assert_eq!(list.pop(), Some(7), "the most recently used one stays");
    }

    #[test]
    fn recently_used_instances_stay() {
        let t0 = Instant::now();
        let mut list = IdleList::default();
        list.push(1, t0, false);
        list.push(2, t0 + IDLE_TIMEOUT, false);
        let dropped = list.trim(t0 + IDLE_TIMEOUT + Duration::from_secs(1));
        assert_eq!(dropped, [1]);
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn an_idle_instance_that_grew_is_not_kept_warm() {
        let t0 = Instant::now();
        let mut list = IdleList::default();
        list.push(1, t0, true);
        assert_eq!(list.trim(t0 + IDLE_TIMEOUT), [1]);
        assert_eq!(list.len(), 0);
    }
}
