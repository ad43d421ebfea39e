//! The Redis shared-state backend: every WIT shared-state operation is one
//! round trip, a plain `GET` or one Lua script (`redis/*.lua`) that does
//! the whole read-modify-write, the quota and the accounting atomically on
//! the server. Replicas that share a Redis and a key prefix share state.
//!
//! Key layout, for plugin `p` under prefix `sluice:` (the braces are a hash
//! tag, so one plugin's keys would share a Redis Cluster slot; the backend
//! itself talks to one standalone Redis):
//!
//! ```text
//! sluice:{p}:d:<key>   a value (with the TTL as its Redis expiry)
//! sluice:{p}:r:<key>   a rate-limit bucket's TAT, "<seconds> <nanoseconds>"
//! sluice:{p}:i         sorted set of the members above, by expiry (ms)
//! sluice:{p}:s         hash: each member's size (key + value bytes)
//! sluice:{p}:b         the sum of those sizes
//! ```
//!
//! Plugin names are letters, digits, `-`, `_` and `.`, so no name can reach
//! into another's keys.

mod pool;

pub use pool::{BACKOFF_MAX, BACKOFF_MIN, State};

use super::gcra::{Bucket, RateDecision};
use super::{Quotas, SharedError};
use crate::metrics::SharedStateBackendMetrics;
use arc_swap::ArcSwap;
use pool::{Lent, Pool, PoolSettings};
use redis::{Client, RedisError, Script, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `[shared_state.redis]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    /// The longest one operation may take (a filter's call is also cut to
    /// what is left of its `wait_limit`).
    pub command_timeout: Duration,
    pub key_prefix: String,
}

impl RedisSettings {
    pub const DEFAULT_POOL_SIZE: usize = 2;
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(100);
    pub const DEFAULT_KEY_PREFIX: &str = "sluice:";

    /// The URL without its password, for logs and the admin listener.
    pub fn display_url(&self) -> String {
        // A unix socket's URL carries the password in its query.
        let url = match self.url.split_once('?') {
            Some((path, _)) => format!("{path}?REDACTED"),
            None => self.url.clone(),
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return url;
        };
        match rest.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:REDACTED@{host}"),
                None => format!("{scheme}://REDACTED@{host}"),
            },
            None => url.clone(),
        }
    }
}

/// The scripts, each `common.lua` followed by the operation.
struct Scripts {
    set: Script,
    delete: Script,
    increment: Script,
    compare_and_swap: Script,
    acquire: Script,
}

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(include_str!("redis/common.lua"), include_str!($file)))
    };
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            set: script!("redis/set.lua"),
            delete: script!("redis/delete.lua"),
            increment: script!("redis/increment.lua"),
            compare_and_swap: script!("redis/compare_and_swap.lua"),
            acquire: script!("redis/acquire.lua"),
        }
    }
}

pub struct RedisStore {
    settings: RedisSettings,
    pool: Pool,
    scripts: Scripts,
    quotas: ArcSwap<Quotas>,
    metrics: SharedStateBackendMetrics,
}

/// One plugin's keys, as the scripts take them.
struct Namespace {
    /// `<prefix>{<plugin>}:`: the members' value keys start with it.
    base: String,
    index: String,
    sizes: String,
    total: String,
    max_entries: usize,
    max_bytes: usize,
}

impl Namespace {
    fn invocation<'a>(&self, script: &'a Script) -> redis::ScriptInvocation<'a> {
        let mut call = script.prepare_invoke();
        call.key(&self.index)
            .key(&self.sizes)
            .key(&self.total)
            .arg(self.max_entries)
            .arg(self.max_bytes)
            .arg(&self.base);
        call
    }

    fn value_key(&self, key: &[u8]) -> Vec<u8> {
        [self.base.as_bytes(), b"d:", key].concat()
    }
}

/// A value's member (`d:<key>`); a bucket's is `r:<key>`.
fn member(kind: &[u8; 2], key: &[u8]) -> Vec<u8> {
    [kind.as_slice(), key].concat()
}

/// The script argument for a TTL: milliseconds, or empty for none.
fn ttl_arg(ttl_ms: Option<u64>) -> String {
    ttl_ms.map_or_else(String::new, |ms| ms.min(super::MAX_TTL_MS).to_string())
}

/// A time or duration in nanoseconds as the scripts take it: (seconds, nanoseconds).
fn split(nanos: u64) -> (u64, u64) {
    (nanos / 1_000_000_000, nanos % 1_000_000_000)
}

fn join(seconds: i64, nanos: i64) -> u64 {
    let (s, n) = (u64::try_from(seconds).unwrap_or(0), u64::try_from(nanos).unwrap_or(0));
    s.checked_mul(1_000_000_000)
        .and_then(|t| t.checked_add(n))
        .unwrap_or(u64::MAX)
}

/// Whether an error means the connection is gone (reopen it) rather than
/// one command failing.
/// So is a server that became a replica (after a failover): its writes
/// fail until a new connection finds the primary.
fn broken(e: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        )
}

fn unexpected(what: &str, reply: &Value) -> SharedError {
    SharedError::Unavailable(format!("redis: unexpected reply to {what}: {reply:?}"))
}

fn int(reply: &Value) -> Option<i64> {
    match reply {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

impl RedisStore {
    pub fn new(settings: RedisSettings, metrics: SharedStateBackendMetrics) -> Result<RedisStore, String> {
        let client = Client::open(settings.url.as_str()).map_err(|e| format!("shared_state.redis.url: {e}"))?;
        metrics.set_up(false);
        let pool = Pool::new(
            client,
            PoolSettings {
                size: settings.pool_size,
                connect_timeout: settings.connect_timeout,
            },
        );
        Ok(RedisStore {
            settings,
            pool,
            scripts: Scripts::new(),
            quotas: ArcSwap::from_pointee(Quotas::default()),
            metrics,
        })
    }

    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    pub fn configure(&self, quotas: &Quotas) {
        self.quotas.store(Arc::new(quotas.clone()));
    }

    /// Open the pool's connections now.
    pub async fn warm(&self) {
        self.pool.warm().await;
        self.metrics.set_up(self.pool.health().state == State::Up);
    }

    /// The backend's state for the admin listener.
    pub fn status(&self) -> serde_json::Value {
        let health = self.pool.health();
        let now = Instant::now();
        serde_json::json!({
            "backend": "redis",
            "url": self.settings.display_url(),
            "key_prefix": self.settings.key_prefix,
            "state": health.state.as_str(),
            "for_seconds": now.saturating_duration_since(health.since).as_secs(),
            "connections": { "open": self.pool.open(), "pool_size": self.pool.size() },
            "failed_connects": health.failed_connects,
            "reconnect_in_ms": health.retry_at.map(|at| at.saturating_duration_since(now).as_millis()),
            "last_error": health.last_error,
            "command_timeout_ms": self.settings.command_timeout.as_millis(),
        })
    }

    fn namespace(&self, plugin: &str) -> Namespace {
        let quota = self.quotas.load().of(plugin);
        let base = format!("{}{{{plugin}}}:", self.settings.key_prefix);
        Namespace {
            index: format!("{base}i"),
            sizes: format!("{base}s"),
            total: format!("{base}b"),
            base,
            max_entries: quota.max_entries,
            max_bytes: quota.max_bytes,
        }
    }

    /// Run one round trip within `wait` (and the command timeout), with
    /// its metrics; a broken connection is dropped for reopening.
    async fn run<T, F, Fut>(&self, operation: &'static str, wait: Duration, command: F) -> Result<T, SharedError>
    where
        F: FnOnce(redis::aio::MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let started = Instant::now();
        let limit = wait.min(self.settings.command_timeout);
        let lent: Lent = match self.pool.get(limit).await {
            Ok(lent) => lent,
            Err((e, reason)) => {
                self.metrics.error(operation, reason);
                self.metrics.set_up(false);
                return Err(e);
            }
        };
        let remaining = limit.saturating_sub(started.elapsed());
        let outcome = tokio::time::timeout(remaining, command(lent.conn.clone())).await;
        self.metrics.observe(operation, started.elapsed());
        match outcome {
            Ok(Ok(value)) => {
                self.pool.worked(&lent);
                self.metrics.set_up(true);
                Ok(value)
            }
            Ok(Err(e)) => {
                let broken = broken(&e);
                let reason = if broken { "connection" } else { "command" };
                self.metrics.error(operation, reason);
                let error = format!("redis {operation}: {e}");
                self.pool.failed(&lent, &error, broken, false);
                self.metrics.set_up(false);
                Err(SharedError::Unavailable(error))
            }
            Err(_) => {
                self.metrics.error(operation, "timeout");
                let error = format!("redis {operation}: no answer within {} ms", limit.as_millis());
                self.pool.failed(&lent, &error, false, true);
                self.metrics.set_up(false);
                Err(SharedError::Unavailable(error))
            }
        }
    }

    pub async fn get(&self, plugin: &str, key: &[u8], wait: Duration) -> Result<Option<Vec<u8>>, SharedError> {
        let value_key = self.namespace(plugin).value_key(key);
        self.run("get", wait, |mut conn| async move {
            redis::cmd("GET").arg(value_key).query_async(&mut conn).await
        })
        .await
    }

    pub async fn set(
        &self,
        plugin: &str,
        key: &[u8],
        value: &[u8],
        ttl_ms: Option<u64>,
        wait: Duration,
    ) -> Result<(), SharedError> {
        let ns = self.namespace(plugin);
        let mut call = ns.invocation(&self.scripts.set);
        call.arg(member(b"d:", key)).arg(value).arg(ttl_arg(ttl_ms));
        let stored: i64 = self
            .run(
                "set",
                wait,
                |mut conn| async move { call.invoke_async(&mut conn).await },
            )
            .await?;
        if stored == 1 {
            Ok(())
        } else {
            Err(SharedError::QuotaExceeded)
        }
    }

    pub async fn delete(&self, plugin: &str, key: &[u8], wait: Duration) -> Result<bool, SharedError> {
        let ns = self.namespace(plugin);
        let mut call = ns.invocation(&self.scripts.delete);
        call.arg(member(b"d:", key));
        let removed: i64 = self
            .run(
                "delete",
                wait,
                |mut conn| async move { call.invoke_async(&mut conn).await },
            )
            .await?;
        Ok(removed == 1)
    }

    pub async fn increment(
        &self,
        plugin: &str,
        key: &[u8],
        delta: i64,
        ttl_ms: Option<u64>,
        wait: Duration,
    ) -> Result<i64, SharedError> {
        let ns = self.namespace(plugin);
        let bits = delta as u64;
        let mut call = ns.invocation(&self.scripts.increment);
        call.arg(member(b"d:", key))
            .arg(bits & 0xFFFF_FFFF)
            .arg(bits >> 32)
            .arg(ttl_arg(ttl_ms));
        let reply: Vec<Value> = self
            .run("increment", wait, |mut conn| async move {
                call.invoke_async(&mut conn).await
            })
            .await?;
        match reply.as_slice() {
            [Value::Int(1), Value::BulkString(bytes)] => match <[u8; 8]>::try_from(bytes.as_slice()) {
                Ok(bytes) => Ok(i64::from_le_bytes(bytes)),
                Err(_) => Err(unexpected("increment", &reply[1])),
            },
            [Value::Int(0)] => Err(SharedError::QuotaExceeded),
            [Value::Int(-1)] => Err(SharedError::NotACounter),
            _ => Err(unexpected("increment", &Value::Array(reply))),
        }
    }

    pub async fn compare_and_swap(
        &self,
        plugin: &str,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
        ttl_ms: Option<u64>,
        wait: Duration,
    ) -> Result<bool, SharedError> {
        let ns = self.namespace(plugin);
        let mut call = ns.invocation(&self.scripts.compare_and_swap);
        call.arg(member(b"d:", key))
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(new)
            .arg(ttl_arg(ttl_ms));
        let swapped: i64 = self
            .run("compare_and_swap", wait, |mut conn| async move {
                call.invoke_async(&mut conn).await
            })
            .await?;
        match swapped {
            1 => Ok(true),
            0 => Ok(false),
            _ => Err(SharedError::QuotaExceeded),
        }
    }

    /// The decision of [`super::gcra::decide`], made in Redis by its clock.
    pub async fn acquire(
        &self,
        plugin: &str,
        buckets: &[Bucket],
        cost: u32,
        wait: Duration,
    ) -> Result<RateDecision, SharedError> {
        super::gcra::validate(buckets)?;
        let ns = self.namespace(plugin);
        let mut call = ns.invocation(&self.scripts.acquire);
        call.arg(if cost > 0 { "1" } else { "0" });
        for b in buckets {
            let (inc_s, inc_n) = split(b.interval_ns.saturating_mul(u64::from(cost)));
            let (tol_s, tol_n) = split(b.tolerance_ns);
            call.arg(member(b"r:", b.key.as_bytes()))
                .arg(inc_s)
                .arg(inc_n)
                .arg(tol_s)
                .arg(tol_n)
                .arg(b.key.len() + 8);
        }
        let reply: Vec<Value> = self
            .run(
                "acquire",
                wait,
                |mut conn| async move { call.invoke_async(&mut conn).await },
            )
            .await?;
        let numbers: Option<Vec<i64>> = reply.iter().map(int).collect();
        match numbers.as_deref() {
            Some([-1]) => Err(SharedError::QuotaExceeded),
            Some([allowed, now_s, now_n, tats @ ..]) if tats.len() == 2 * buckets.len() => Ok(RateDecision {
                allowed: *allowed == 1,
                tats: tats.chunks_exact(2).map(|t| join(t[0], t[1])).collect(),
                now_ns: join(*now_s, *now_n),
            }),
            _ => Err(unexpected("acquire", &Value::Array(reply))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_split_and_join_exactly() {
        let t = 1_767_225_600_123_456_789u64;
        let (s, n) = split(t);
        assert_eq!((s, n), (1_767_225_600, 123_456_789));
        assert_eq!(join(s as i64, n as i64), t);
        assert_eq!(join(i64::MAX, 0), u64::MAX, "saturates");
        assert_eq!(join(-1, 5), 5, "never negative");
    }

    #[test]
    fn urls_are_shown_without_password() {
        let mut s = RedisSettings {
            url: "redis://user:secret@cache:6379/2".into(),
            pool_size: 1,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_millis(100),
            key_prefix: "sluice:".into(),
        };
        assert_eq!(s.display_url(), "redis://user:REDACTED@cache:6379/2");
        s.url = "redis://127.0.0.1:6379".into();
        assert_eq!(s.display_url(), "redis://127.0.0.1:6379");
        s.url = "unix:///run/redis.sock?db=1&pass=secret".into();
        assert_eq!(s.display_url(), "unix:///run/redis.sock?REDACTED");
    }

    #[test]
    fn members_and_ttl_arguments() {
        assert_eq!(member(b"d:", b"k"), b"d:k");
        assert_eq!(ttl_arg(None), "");
        assert_eq!(ttl_arg(Some(1500)), "1500");
    }
}
