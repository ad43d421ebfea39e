//! The process's log filter (`[log] level`), changeable while running. The
//! binary installs a hook that swaps its tracing filter; a reload asks it
//! to apply a new level. Without a hook (sluice embedded as a library, as
//! the tests do) or when `RUST_LOG` fixes the filter, the level cannot
//! change and the reload says so.
//!
//! The binary also installs a reader of its log writer's dropped-lines
//! count, which `/metrics` reports as `sluice_log_dropped_lines_total`.

use std::sync::OnceLock;

type Apply = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

static HOOK: OnceLock<Apply> = OnceLock::new();

/// Install the function that replaces the log filter with a new one (it
/// returns why it cannot). Only the first installation counts.
pub fn install(apply: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static) {
    let _ = HOOK.set(Box::new(apply));
}

/// Make `level` the process's log filter, or say why it cannot change.
pub fn apply(level: &str) -> Result<(), String> {
    match HOOK.get() {
        Some(apply) => apply(level),
        None => Err("this process's log filter is fixed at start".into()),
    }
}

type Dropped = Box<dyn Fn() -> u64 + Send + Sync>;

static DROPPED: OnceLock<Dropped> = OnceLock::new();

/// Install the function that reads how many log lines the process's
/// (non-blocking) log writer dropped. Only the first installation counts.
pub fn install_dropped_lines(read: impl Fn() -> u64 + Send + Sync + 'static) {
    let _ = DROPPED.set(Box::new(read));
}

/// Log lines the process's log writer dropped so far (0 without a hook).
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |read| read())
}
