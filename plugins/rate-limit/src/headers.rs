//! The response headers of draft-ietf-httpapi-ratelimit-headers-09 and
//! `Retry-After`.
//!
//! ```text
//! RateLimit-Policy: "burst";q=10;w=1, "hourly";q=1000;w=3600
//! RateLimit: "burst";r=0;t=2
//! Retry-After: 1
//! ```

use crate::config::Limit;
use crate::gcra::ceil_secs;
use std::fmt::Write as _;

pub(crate) const RATELIMIT: &str = "ratelimit";
pub(crate) const RATELIMIT_POLICY: &str = "ratelimit-policy";
pub(crate) const RETRY_AFTER: &str = "retry-after";

/// `RateLimit-Policy`: one list member per limit, `"<name>";q=<quota>;w=<window secs>`.
pub(crate) fn policy(limits: &[Limit]) -> String {
    let mut out = String::new();
    for (i, limit) in limits.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "\"{}\";q={};w={}", limit.name, limit.quota, limit.window_secs);
    }
    out
}

/// `RateLimit` for the most restrictive limit, given every limit's TAT after
/// the decision: `"<name>";r=<remaining>;t=<secs until full, rounded up>`.
/// Most restrictive = fewest remaining; on a tie the one that takes longest to
/// refill, then the first configured.
pub(crate) fn rate_limit(limits: &[Limit], tats: &[u64], now: u64) -> String {
    let mut best: Option<(&Limit, u64, u64)> = None;
    for (limit, &tat) in limits.iter().zip(tats) {
        let remaining = limit.params().remaining(tat, now);
        let reset = ceil_secs(tat.saturating_sub(now));
        let better = match best {
            None => true,
            Some((_, r, t)) => remaining < r || (remaining == r && reset > t),
        };
        if better {
            best = Some((limit, remaining, reset));
        }
    }
    match best {
        Some((limit, remaining, reset)) => format!("\"{}\";r={remaining};t={reset}", limit.name),
        None => String::new(),
    }
}

/// `Retry-After` in whole seconds: the wait rounded up, at least 1.
pub(crate) fn retry_after(wait_nanos: u64) -> u64 {
    ceil_secs(wait_nanos).max(1)
}
