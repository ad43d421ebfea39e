//! Log budgets: each plugin may write [`limits::LOG_LINES_PER_SECOND`] log
//! lines a second on average, in bursts of up to [`limits::LOG_BURST`].
//! Lines over the budget are dropped and counted
//! (`sluice_filter_log_suppressed_total{plugin}`), and at most once per
//! [`REPORT_INTERVAL`] the host writes one warning saying how many were
//! dropped since the last one. The report is due on the plugin's next log
//! call after the interval, so no timer is needed; lines dropped by a
//! flood's last burst are reported when the plugin logs again (the counter
//! has them at once).
//!
//! One [`LogBudget`] per plugin name, shared by all of that plugin's
//! instances and filter slots: a plugin with 64 instances still has one
//! budget. The bucket is lock-free (GCRA: one atomic "theoretical arrival
//! time"), and the clock is injected: callers pass `Instant::now()`, tests
//! pass synthetic instants.

use crate::limits;
use crate::metrics::Metrics;
use dashmap::DashMap;
use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Least time between two "lines suppressed" reports of one plugin.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// The budgets of all plugins, by plugin name. Entries live as long as the
/// runtime: plugin names come from the configuration, so they are bounded
/// like the metrics' labels, and a plugin keeps its budget across reloads.
#[derive(Default)]
pub struct LogBudgets {
    buckets: DashMap<Arc<str>, Arc<LogBudget>>,
}

impl LogBudgets {
    /// The budget of `plugin`, created on first use with its suppressed
    /// counter from `metrics`.
    pub fn get(&self, plugin: &Arc<str>, metrics: &Metrics) -> Arc<LogBudget> {
        if let Some(bucket) = self.buckets.get(plugin) {
            return bucket.clone();
        }
        self.buckets
            .entry(plugin.clone())
            .or_insert_with(|| {
                Arc::new(LogBudget::new(
                    limits::LOG_LINES_PER_SECOND,
                    limits::LOG_BURST,
                    Instant::now(),
                    metrics.filter_log_suppressed(plugin),
                ))
            })
            .clone()
    }
}

/// What to do with one log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admit {
    /// Write the line (it is within the budget).
    pub write: bool,
    /// When non-zero, first write a warning that this many lines were
    /// suppressed since the last such warning.
    pub report_suppressed: u64,
}

/// One plugin's token bucket, as a GCRA: `tat` is the time (nanoseconds
/// after `origin`) at which the bucket would be full again; a line is
/// admitted when that is at most `tolerance` ahead of now, and pushes it
/// one `emission` further.
#[derive(Debug)]
pub struct LogBudget {
    origin: Instant,
    /// Nanoseconds one line costs: 1 s / rate.
    emission: u64,
    /// How far ahead of now `tat` may be: (burst - 1) lines.
    tolerance: u64,
    tat: AtomicU64,
    /// Lines suppressed since the last report.
    suppressed: AtomicU64,
    /// When the last report was written (nanoseconds after `origin`).
    last_report: AtomicU64,
    /// `sluice_filter_log_suppressed_total{plugin}`.
    counter: Counter,
}

impl LogBudget {
    /// A full bucket at `origin` allowing `rate` lines a second on average
    /// and bursts of `burst` lines (both at least 1).
    pub fn new(rate: u32, burst: u32, origin: Instant, counter: Counter) -> LogBudget {
        let emission = 1_000_000_000 / u64::from(rate.max(1));
        LogBudget {
            origin,
            emission,
            tolerance: emission * u64::from(burst.max(1) - 1),
            tat: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            last_report: AtomicU64::new(0),
            counter,
        }
    }

    /// A budget with the default limits and a counter of its own, for a
    /// host state outside a runtime (fuzzing, tests).
    pub fn detached() -> Arc<LogBudget> {
        Arc::new(LogBudget::new(
            limits::LOG_LINES_PER_SECOND,
            limits::LOG_BURST,
            Instant::now(),
            Counter::default(),
        ))
    }

    /// Take one line at `now`: whether to write it, and whether a report of
    /// suppressed lines is due (at most once per [`REPORT_INTERVAL`], to
    /// one caller).
    pub fn admit(&self, now: Instant) -> Admit {
        let now = u64::try_from(now.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX);
        let write = self.take(now);
        if !write {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            self.counter.inc();
        }
        Admit {
            write,
            report_suppressed: self.due_report(now),
        }
    }

    /// Lines dropped so far (the counter's value).
    pub fn suppressed_total(&self) -> u64 {
        self.counter.get()
    }

    fn take(&self, now: u64) -> bool {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now);
            if start - now > self.tolerance {
                return false;
            }
            match self.tat.compare_exchange_weak(
                tat,
                start.saturating_add(self.emission),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(current) => tat = current,
            }
        }
    }

    fn due_report(&self, now: u64) -> u64 {
        let last = self.last_report.load(Ordering::Relaxed);
        let interval = REPORT_INTERVAL.as_nanos() as u64;
        if now.saturating_sub(last) < interval || self.suppressed.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        // One caller wins the interval and takes the count.
        match self
            .last_report
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => self.suppressed.swap(0, Ordering::Relaxed),
            Err(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = limits::LOG_LINES_PER_SECOND;
    const BURST: u32 = limits::LOG_BURST;

    fn budget(t0: Instant) -> LogBudget {
        LogBudget::new(RATE, BURST, t0, Counter::default())
    }

    /// Lines admitted out of `n` calls at `at`.
    fn admitted(b: &LogBudget, at: Instant, n: u32) -> u32 {
        (0..n).map(|_| u32::from(b.admit(at).write)).sum()
    }

    /// `n` calls at `at`: lines admitted, and the suppressed lines reported.
    fn flood(b: &LogBudget, at: Instant, n: u32) -> (u32, u64) {
        (0..n).fold((0, 0), |(written, reported), _| {
            let a = b.admit(at);
            (written + u32::from(a.write), reported + a.report_suppressed)
        })
    }

    #[test]
    fn log_budget_admits_a_burst_then_refuses() {
        let t0 = Instant::now();
        let b = budget(t0);
        assert_eq!(admitted(&b, t0, BURST), BURST);
        let next = b.admit(t0);
        assert!(!next.write);
        assert_eq!(admitted(&b, t0, 1000), 0);
        assert_eq!(b.suppressed_total(), 1001);
    }

    #[test]
    fn log_budget_refills_at_the_rate_up_to_the_burst() {
        let t0 = Instant::now();
        let b = budget(t0);
        assert_eq!(admitted(&b, t0, BURST), BURST);
        let line = Duration::from_secs(1) / RATE;
        // Just short of one line's worth: still nothing.
        assert!(!b.admit(t0 + line - Duration::from_nanos(1)).write);
        // One line's worth: exactly one.
        assert_eq!(admitted(&b, t0 + line, 10), 1);
        // A second later: a second's worth more.
        assert_eq!(admitted(&b, t0 + line + Duration::from_secs(1), 1000), RATE);
        // After a long silence the bucket holds a burst, not more.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(admitted(&b, later, 10 * BURST), BURST);
        // Steady logging at the rate is never refused.
        let mut at = later;
        for _ in 0..1000 {
            at += line;
            assert!(b.admit(at).write);
        }
    }

    #[test]
    fn log_budget_reports_suppressed_lines_once_per_interval_and_resets() {
        let t0 = Instant::now();
        let b = budget(t0);
        // Lines suppressed within the first interval: no report yet.
        assert_eq!(flood(&b, t0, BURST + 50), (BURST, 0));
        assert_eq!(flood(&b, t0 + Duration::from_secs(1), RATE + 10), (RATE, 0));
        // The first call once the interval is over reports them; this one
        // is itself admitted (the bucket has refilled).
        let due = t0 + REPORT_INTERVAL;
        assert_eq!(
            b.admit(due),
            Admit {
                write: true,
                report_suppressed: 60
            }
        );
        // Reported once: the count restarts and so does the interval.
        assert_eq!(flood(&b, due, 10 * BURST), (BURST - 1, 0));
        let refused_at_due = u64::from(10 * BURST - (BURST - 1));
        // Just before the next interval ends, empty the bucket again.
        let almost = due + REPORT_INTERVAL - Duration::from_millis(5);
        assert_eq!(flood(&b, almost, BURST + 1), (BURST, 0));
        // A refused call can carry the report: every line refused since the
        // last one, itself included.
        let next = due + REPORT_INTERVAL;
        assert_eq!(
            b.admit(next),
            Admit {
                write: false,
                report_suppressed: refused_at_due + 2
            }
        );
        assert_eq!(
            b.admit(next + Duration::from_secs(9)),
            Admit {
                write: true,
                report_suppressed: 0
            }
        );
        // The counter has every suppressed line, reported or not.
        assert_eq!(b.suppressed_total(), 60 + refused_at_due + 2);
        // Nothing suppressed: nothing to report, however long it has been.
        let quiet = budget(t0);
        assert_eq!(
            quiet.admit(t0 + Duration::from_secs(60)),
            Admit {
                write: true,
                report_suppressed: 0
            }
        );
    }

    #[test]
    fn log_budgets_are_per_plugin_and_shared_by_its_instances() {
        let metrics = Metrics::default();
        let budgets = LogBudgets::default();
        let noisy: Arc<str> = "noisy".into();
        let quiet: Arc<str> = "quiet".into();
        // Two instances of one plugin take from one budget.
        let a = budgets.get(&noisy, &metrics);
        let b = budgets.get(&noisy, &metrics);
        assert!(Arc::ptr_eq(&a, &b));
        let now = Instant::now();
        assert_eq!(admitted(&a, now, BURST / 2) + admitted(&b, now, BURST), BURST);
        // Another plugin is untouched by the first one's flood.
        let c = budgets.get(&quiet, &metrics);
        assert_eq!(admitted(&c, now, BURST), BURST);
        let text = metrics.encode();
        for line in [
            format!(r#"sluice_filter_log_suppressed_total{{plugin="noisy"}} {}"#, BURST / 2),
            r#"sluice_filter_log_suppressed_total{plugin="quiet"} 0"#.to_string(),
        ] {
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
    }
}
