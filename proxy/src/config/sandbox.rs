//! A filter entry's sandbox settings (`deadline`, `memory_limit`,
//! `on_failure`, `max_instances`, `pool_wait`, and for filters that wait or
//! see bodies `wait_limit`, `max_response_bytes`, `max_body_bytes`),
//! checked once into a [`SandboxConfig`].

use super::raw::RawFilter;
use super::validate::Locator;
use super::validate::parse_bytes;
use super::{ConfigError, FailurePolicy, MAX_MEMORY_LIMIT, SandboxConfig};
use std::time::Duration;
use toml::Spanned;

/// Longest `wait_limit`.
const MAX_WAIT_LIMIT: Duration = Duration::from_secs(60);
/// Largest `max_response_bytes` and `max_body_bytes`.
const MAX_BUFFER: usize = 64 << 20;

pub(super) fn sandbox(loc: &Locator<'_>, f: &RawFilter, at: &str) -> Result<SandboxConfig, ConfigError> {
    let mut s = SandboxConfig::default();
    if let Some(d) = &f.deadline {
        s.deadline = loc.duration(d, format!("{at}.deadline"))?;
    }
    if let Some(m) = &f.memory_limit {
        let key = format!("{at}.memory_limit");
        s.memory_limit = match parse_bytes(m.get_ref()) {
            Some(b) if (1 << 20..=MAX_MEMORY_LIMIT).contains(&b) => b,
            Some(_) => return loc.at(m, key, "must be between 1MiB and 64MiB"),
            None => return loc.at(m, key, format!("`{}` is not a size like `16MiB`", m.get_ref())),
        };
    }
    if let Some(p) = &f.on_failure {
        s.on_failure = match p.get_ref().as_str() {
            "fail_closed" => FailurePolicy::FailClosed,
            "fail_open" => FailurePolicy::FailOpen,
            other => {
                return loc.at(
                    p,
                    format!("{at}.on_failure"),
                    format!("`{other}`: use `fail_closed` or `fail_open`"),
                );
            }
        };
    }
    if let Some(n) = &f.max_instances {
        if *n.get_ref() == 0 || *n.get_ref() > 1000 {
            return loc.at(n, format!("{at}.max_instances"), "must be between 1 and 1000");
        }
        s.max_instances = *n.get_ref() as usize;
    }
    if let Some(w) = &f.pool_wait {
        s.pool_wait = loc.duration(w, format!("{at}.pool_wait"))?;
    }
    if let Some(w) = &f.wait_limit {
        s.wait_limit = loc.duration(w, format!("{at}.wait_limit"))?;
        if s.wait_limit > MAX_WAIT_LIMIT {
            return loc.at(w, format!("{at}.wait_limit"), "must be at most 60s");
        }
    }
    if let Some(m) = &f.max_response_bytes {
        s.max_response_bytes = size(loc, m, format!("{at}.max_response_bytes"))?;
    }
    if let Some(m) = &f.max_body_bytes {
        s.max_body_bytes = size(loc, m, format!("{at}.max_body_bytes"))?;
    }
    Ok(s)
}

/// A size from 1 byte to 64 MiB.
fn size(loc: &Locator<'_>, m: &Spanned<String>, key: String) -> Result<usize, ConfigError> {
    match parse_bytes(m.get_ref()) {
        Some(b) if (1..=MAX_BUFFER).contains(&b) => Ok(b),
        Some(_) => loc.at(m, key, "must be between 1B and 64MiB"),
        None => loc.at(m, key, format!("`{}` is not a size like `1MiB`", m.get_ref())),
    }
}
