//! The filter's configuration: the TOML shape, duration parsing, validation,
//! and the compiled limits the request path works with.

use crate::gcra::Params;
use crate::key::{self, KeyPart};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use sluice_sdk::Config;
use sluice_sdk::limits::MAX_STORE_BUCKETS;
use std::collections::HashSet;
use std::fmt;

pub(crate) const NANOS_PER_SEC: u64 = 1_000_000_000;
/// The longest `per` (and the longest tolerance `burst × per / requests`).
const MAX_WINDOW_NANOS: u64 = 365 * 24 * 3600 * NANOS_PER_SEC;
/// The longest limit name, in bytes.
const MAX_NAME_BYTES: usize = 64;

/// The configuration as written in the route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default = "default_key")]
    key: Vec<String>,
    #[serde(default)]
    headers_on_allowed: bool,
    #[serde(default)]
    on_store_full: StoreFull,
    #[serde(default)]
    on_store_unavailable: StoreUnavailable,
    #[serde(default)]
    limits: Vec<RawLimit>,
    local_limits: Option<Vec<RawLimit>>,
}

/// What happens to a request when the host refuses to store its buckets
/// because the plugin's shared-state quota is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StoreFull {
    /// Let the request through unlimited (the default: a full store must
    /// not take the service down).
    #[default]
    Allow,
    /// Answer 429, as if the limits were exhausted.
    Deny,
}

/// What happens to a request when the shared store cannot answer (the
/// Redis backend down or too slow).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StoreUnavailable {
    /// Let the request through unlimited (the default, as Envoy's
    /// `failure_mode_deny = false`).
    #[default]
    Allow,
    /// Answer 503.
    Deny,
    /// Decide against this process's own buckets with `local_limits`: each
    /// replica enforces them alone until the store is back.
    Local,
}

fn default_key() -> Vec<String> {
    vec!["client_ip".to_string()]
}

/// One `[[limits]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    name: Option<String>,
    requests: u64,
    per: Per,
    burst: Option<u64>,
}

/// A duration in nanoseconds: `"250ms"`, `"1s"`, `"10m"`, `"1h"`, `"1d"`, or
/// a whole number of seconds (a TOML integer or a string of digits).
#[derive(Debug, Clone, Copy)]
struct Per(u64);

impl<'de> Deserialize<'de> for Per {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PerVisitor;

        impl Visitor<'_> for PerVisitor {
            type Value = Per;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a duration such as "250ms", "1s", "10m", "1h", "1d", or a whole number of seconds"#)
            }

            fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Per, E> {
                secs.checked_mul(NANOS_PER_SEC)
                    .map(Per)
                    .ok_or_else(|| E::custom(format!("{secs} seconds is too long")))
            }

            fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Per, E> {
                match u64::try_from(secs) {
                    Ok(secs) => self.visit_u64(secs),
                    Err(_) => Err(E::custom(format!("duration {secs} is negative"))),
                }
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Per, E> {
                parse_duration(text).map(Per).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(PerVisitor)
    }
}

/// Parse `<digits><unit>` with unit `ms`, `s`, `m`, `h` or `d`; digits alone
/// mean seconds. Returns nanoseconds.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let unit_nanos = match unit {
        "" | "s" => NANOS_PER_SEC,
        "ms" => 1_000_000,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3600 * NANOS_PER_SEC,
        "d" => 86_400 * NANOS_PER_SEC,
        _ => {
            return Err(format!(
                "invalid duration `{text}`: expected a whole number followed by ms, s, m, h or d (for example \"250ms\", \"1s\", \"1h\")"
            ));
        }
    };
    if digits.is_empty() {
        return Err(format!(
            "invalid duration `{text}`: missing the number (for example \"1{unit}\")"
        ));
    }
    let count: u64 = digits
        .parse()
        .map_err(|_| format!("invalid duration `{text}`: number too large"))?;
    count
        .checked_mul(unit_nanos)
        .ok_or_else(|| format!("invalid duration `{text}`: too long"))
}

/// One limit, ready for the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Limit {
    /// The name in the headers and in the bucket key.
    pub name: String,
    /// Emission interval T = per / requests, in nanoseconds (≥ 1).
    pub interval: u64,
    /// Tolerance τ = burst × T, in nanoseconds.
    pub tolerance: u64,
    /// `q` of the `RateLimit-Policy` item.
    pub quota: u64,
    /// `w` of the `RateLimit-Policy` item, in whole seconds (≥ 1).
    pub window_secs: u64,
    /// The start of every bucket key of this limit; see [`key::limit_prefix`].
    pub key_prefix: String,
}

impl Limit {
    /// T and τ for the GCRA.
    pub fn params(&self) -> Params {
        Params {
            interval: self.interval,
            tolerance: self.tolerance,
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// How a request's bucket key is built, in order.
    pub key: Vec<KeyPart>,
    /// Also send `RateLimit` / `RateLimit-Policy` on allowed responses.
    pub headers_on_allowed: bool,
    /// What a request gets when its buckets cannot be stored.
    pub on_store_full: StoreFull,
    /// What a request gets when the shared store is unavailable.
    pub on_store_unavailable: StoreUnavailable,
    /// Every limit; a request must pass all of them.
    pub limits: Vec<Limit>,
    /// The limits each replica enforces alone while the shared store is
    /// unavailable (`on_store_unavailable = "local"`); `limits` unless set.
    pub local_limits: Vec<Limit>,
}

impl Settings {
    /// Parse and validate; errors name the offending key.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let raw: RawSettings = config.parse()?;
        let key = raw
            .key
            .iter()
            .enumerate()
            .map(|(i, part)| KeyPart::parse(part).map_err(|e| format!("key[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let limits = compile_limits("limits", &raw.limits)?;
        let local_limits = match &raw.local_limits {
            None => limits.clone(),
            Some(_) if raw.on_store_unavailable != StoreUnavailable::Local => {
                return Err(r#"local_limits: only used with on_store_unavailable = "local""#.into());
            }
            Some(raw_limits) => compile_limits("local_limits", raw_limits)?,
        };
        Ok(Settings {
            key,
            headers_on_allowed: raw.headers_on_allowed,
            on_store_full: raw.on_store_full,
            on_store_unavailable: raw.on_store_unavailable,
            limits,
            local_limits,
        })
    }
}

/// Validate the list of limits under `field`: 1 to [`MAX_STORE_BUCKETS`]
/// (one request takes a token from each in one store call), with unique
/// names. Errors start with `field`.
fn compile_limits(field: &str, raw: &[RawLimit]) -> Result<Vec<Limit>, String> {
    if raw.is_empty() {
        return Err(format!("{field}: at least one `[[{field}]]` table is required"));
    }
    if raw.len() > MAX_STORE_BUCKETS {
        return Err(format!("{field}: at most {MAX_STORE_BUCKETS} limits"));
    }
    let mut names = HashSet::new();
    let mut limits = Vec::with_capacity(raw.len());
    for (i, raw_limit) in raw.iter().enumerate() {
        let limit = compile_limit(i, raw_limit).map_err(|e| format!("{field}[{i}].{e}"))?;
        if !names.insert(limit.name.clone()) {
            return Err(format!("{field}[{i}].name: duplicate limit name `{}`", limit.name));
        }
        limits.push(limit);
    }
    Ok(limits)
}

/// Validate one limit; the error starts with the field name.
fn compile_limit(index: usize, raw: &RawLimit) -> Result<Limit, String> {
    let name = match &raw.name {
        Some(name) => {
            validate_name(name).map_err(|e| format!("name: {e}"))?;
            name.clone()
        }
        None => format!("limit-{index}"),
    };
    if raw.requests == 0 {
        return Err("requests: must be greater than 0".into());
    }
    let per = raw.per.0;
    if per == 0 {
        return Err("per: must be greater than 0".into());
    }
    if per > MAX_WINDOW_NANOS {
        return Err("per: must be at most 365d".into());
    }
    let burst = raw.burst.unwrap_or(raw.requests);
    if burst == 0 {
        return Err("burst: must be at least 1".into());
    }
    let interval = per / raw.requests;
    if interval == 0 {
        return Err("requests: more than one request per nanosecond is not supported".into());
    }
    let tolerance = burst
        .checked_mul(interval)
        .filter(|t| *t <= MAX_WINDOW_NANOS)
        .ok_or("burst: burst × per / requests must be at most 365d")?;
    let (quota, window_secs) = policy_window(raw.requests, per);
    let key_prefix = key::limit_prefix(&name, interval, tolerance);
    Ok(Limit {
        name,
        interval,
        tolerance,
        quota,
        window_secs,
        key_prefix,
    })
}

/// `q` and `w` for the policy header. `w` is whole seconds, so a `per` that is
/// not a whole number of seconds is advertised over the window rounded up to
/// whole seconds, with the quota scaled down to fit in it (5 per 250ms → q=20, w=1).
fn policy_window(requests: u64, per: u64) -> (u64, u64) {
    if per.is_multiple_of(NANOS_PER_SEC) {
        return (requests, per / NANOS_PER_SEC);
    }
    let window_secs = per.div_ceil(NANOS_PER_SEC);
    let scaled = u128::from(requests) * u128::from(window_secs) * u128::from(NANOS_PER_SEC) / u128::from(per);
    (u64::try_from(scaled).unwrap_or(u64::MAX), window_secs)
}

/// A name goes out as a Structured Field string (`"name"`), so it must need no
/// escaping: printable ASCII without `"` or `\`.
fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(format!("`{name}` must be 1 to {MAX_NAME_BYTES} characters long"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !matches!(c, ' '..='~') || matches!(c, '"' | '\\'))
    {
        return Err(format!(
            "`{name}` contains {bad:?}: use printable ASCII without `\"` or `\\`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(250 * MS));
        assert_eq!(parse_duration("1s"), Ok(NANOS_PER_SEC));
        assert_eq!(parse_duration("10m"), Ok(600 * NANOS_PER_SEC));
        assert_eq!(parse_duration("1h"), Ok(3600 * NANOS_PER_SEC));
        assert_eq!(parse_duration("1d"), Ok(86_400 * NANOS_PER_SEC));
        assert_eq!(parse_duration("30"), Ok(30 * NANOS_PER_SEC));
        assert_eq!(parse_duration("0s"), Ok(0));
        for bad in [
            "",
            "s",
            "1.5s",
            "1 s",
            "1w",
            "-1s",
            "1sec",
            "99999999999999999999s",
            "999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn policy_windows() {
        assert_eq!(policy_window(10, NANOS_PER_SEC), (10, 1));
        assert_eq!(policy_window(1000, 3600 * NANOS_PER_SEC), (1000, 3600));
        assert_eq!(policy_window(5, 250 * MS), (20, 1));
        assert_eq!(policy_window(3, 1500 * MS), (4, 2));
    }

    #[test]
    fn names() {
        assert!(validate_name("burst").is_ok());
        assert!(validate_name("per-user/hour 1").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a\"b").is_err());
        assert!(validate_name("a\\b").is_err());
        assert!(validate_name("café").is_err());
        assert!(validate_name(&"x".repeat(65)).is_err());
    }
}
