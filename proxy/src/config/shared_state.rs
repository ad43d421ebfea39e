//! `[shared_state]`: the backend (`memory` or `redis`, with
//! `[shared_state.redis]`), the per-plugin quota every plugin gets, and
//! overrides by plugin name (`[shared_state.plugins.rate-limit]`).

use super::ConfigError;
use super::raw::{RawQuota, RawRedis, RawSharedState};
use super::validate::{Locator, parse_bytes};
use crate::shared_state::{Backend, Quota, Quotas, RedisSettings};
use std::time::Duration;

/// Most connections in the Redis pool.
const MAX_POOL_SIZE: u64 = 64;
/// Longest `command_timeout` (a filter call waits at most its `wait_limit` anyway).
const MAX_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_KEY_PREFIX_BYTES: usize = 64;

pub(super) fn backend(loc: &Locator<'_>, raw: Option<&RawSharedState>) -> Result<Backend, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Backend::Memory);
    };
    let redis = raw.redis.as_ref();
    match raw.backend.as_ref().map(|b| (b, b.get_ref().as_str())) {
        None | Some((_, "memory")) => Ok(Backend::Memory),
        Some((at, "redis")) => match redis {
            Some(r) => redis_settings(loc, r.get_ref()).map(Backend::Redis),
            None => loc.at(
                at,
                "shared_state.redis".into(),
                "backend = \"redis\" needs a `[shared_state.redis]` table with `url`",
            ),
        },
        Some((at, other)) => loc.at(
            at,
            "shared_state.backend".into(),
            format!("`{other}` is not a backend: use \"memory\" or \"redis\""),
        ),
    }
}

fn redis_settings(loc: &Locator<'_>, raw: &RawRedis) -> Result<RedisSettings, ConfigError> {
    let Some(url) = &raw.url else {
        return loc.err(
            None,
            "shared_state.redis.url".into(),
            "is required with backend = \"redis\"",
        );
    };
    let text = url.get_ref();
    if !(text.starts_with("redis://") || text.starts_with("unix://") || text.starts_with("redis+unix://")) {
        return loc.at(
            url,
            "shared_state.redis.url".into(),
            format!("`{text}` is not a URL like `redis://127.0.0.1:6379` (rediss:// is not supported)"),
        );
    }
    if let Err(e) = redis::Client::open(text.as_str()) {
        return loc.at(
            url,
            "shared_state.redis.url".into(),
            format!("is not a valid Redis URL: {e}"),
        );
    }
    let pool_size = match &raw.pool_size {
        None => RedisSettings::DEFAULT_POOL_SIZE,
        Some(n) if (1..=MAX_POOL_SIZE).contains(n.get_ref()) => *n.get_ref() as usize,
        Some(n) => {
            return loc.at(
                n,
                "shared_state.redis.pool_size".into(),
                format!("must be 1 to {MAX_POOL_SIZE}"),
            );
        }
    };
    let timeout = |value: &Option<toml::Spanned<String>>, key: &str, default: Duration, max: Duration| match value {
        None => Ok(default),
        Some(v) => {
            let key = format!("shared_state.redis.{key}");
            let d = loc.duration(v, key.clone())?;
            if d > max {
                return loc.at(v, key, format!("must be at most {}", humantime::format_duration(max)));
            }
            Ok(d)
        }
    };
    let connect_timeout = timeout(
        &raw.connect_timeout,
        "connect_timeout",
        RedisSettings::DEFAULT_CONNECT_TIMEOUT,
        MAX_CONNECT_TIMEOUT,
    )?;
    let command_timeout = timeout(
        &raw.command_timeout,
        "command_timeout",
        RedisSettings::DEFAULT_COMMAND_TIMEOUT,
        MAX_COMMAND_TIMEOUT,
    )?;
    let key_prefix = match &raw.key_prefix {
        None => RedisSettings::DEFAULT_KEY_PREFIX.to_string(),
        Some(p) if p.get_ref().len() <= MAX_KEY_PREFIX_BYTES => p.get_ref().clone(),
        Some(p) => {
            return loc.at(
                p,
                "shared_state.redis.key_prefix".into(),
                format!("must be at most {MAX_KEY_PREFIX_BYTES} bytes"),
            );
        }
    };
    Ok(RedisSettings {
        url: text.clone(),
        pool_size,
        connect_timeout,
        command_timeout,
        key_prefix,
    })
}

pub(super) fn quotas(loc: &Locator<'_>, raw: Option<&RawSharedState>) -> Result<Quotas, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Quotas::default());
    };
    let default = quota(loc, &raw.quota, Quota::default(), "shared_state")?;
    let mut plugins = std::collections::BTreeMap::new();
    for (name, q) in &raw.plugins {
        plugins.insert(
            name.clone(),
            quota(loc, q, default, &format!("shared_state.plugins.{name}"))?,
        );
    }
    Ok(Quotas { default, plugins })
}

fn quota(loc: &Locator<'_>, raw: &RawQuota, base: Quota, at: &str) -> Result<Quota, ConfigError> {
    let mut q = base;
    if let Some(n) = &raw.max_entries {
        q.max_entries = match usize::try_from(*n.get_ref()) {
            Ok(n) if n > 0 => n,
            _ => return loc.at(n, format!("{at}.max_entries"), "must be at least 1"),
        };
    }
    if let Some(b) = &raw.max_bytes {
        q.max_bytes = match parse_bytes(b.get_ref()) {
            Some(n) if n > 0 => n,
            _ => {
                return loc.at(
                    b,
                    format!("{at}.max_bytes"),
                    format!("`{}` is not a size like `16MiB`", b.get_ref()),
                );
            }
        };
    }
    Ok(q)
}
