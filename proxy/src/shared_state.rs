//! Shared state for filters: the store behind the WIT `shared-state` and
//! `shared-store` interfaces. One namespace per plugin (the host picks it
//! from the calling plugin's name), quotas per plugin, and atomic
//! rate-limit decisions ([`gcra`]).
//!
//! The backend is chosen at start (`[shared_state] backend`): the process's
//! memory ([`memory`], the default) or Redis ([`redis`], shared by every
//! replica using the same Redis and key prefix). Calls take the longest
//! they may wait; the memory backend never waits, the Redis one is cut to
//! that and to its `command_timeout`, and reports a backend that cannot
//! answer as [`SharedError::Unavailable`]. `acquire_local` always uses the
//! memory backend: it is the fallback while Redis is away.

pub mod gcra;
mod memory;
pub mod redis;

pub use gcra::{Bucket, RateDecision};
pub use memory::{MemoryStore, RECLAIM_INTERVAL};
pub use redis::RedisSettings;

use crate::metrics::Metrics;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Longest TTL honoured, in milliseconds (longer ones are cut to it).
pub const MAX_TTL_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

/// What one plugin's shared state may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub max_entries: usize,
    /// Bytes of keys plus values.
    pub max_bytes: usize,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            max_entries: crate::limits::DEFAULT_SHARED_MAX_ENTRIES,
            max_bytes: crate::limits::DEFAULT_SHARED_MAX_BYTES,
        }
    }
}

/// `[shared_state]` quotas: the default and per-plugin overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quotas {
    pub default: Quota,
    pub plugins: BTreeMap<String, Quota>,
}

impl Quotas {
    pub fn of(&self, plugin: &str) -> Quota {
        self.plugins.get(plugin).copied().unwrap_or(self.default)
    }
}

/// `[shared_state] backend`: where the state lives (a restart setting).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Backend {
    #[default]
    Memory,
    Redis(RedisSettings),
}

/// Why a shared-state operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedError {
    /// `increment` on a value that is not an 8-byte counter.
    NotACounter,
    /// The write would take the plugin past its quota.
    QuotaExceeded,
    /// Arguments no operation can take (see [`gcra::validate`]).
    InvalidArgument,
    /// The backend did not answer; why.
    Unavailable(String),
}

/// The store: memory always (for `acquire_local`, and as the backend by
/// default), Redis once [`SharedState::use_redis`] chose it.
pub struct SharedState {
    memory: MemoryStore,
    redis: OnceLock<Arc<redis::RedisStore>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState")
            .field("memory", &self.memory)
            .field("redis", &self.redis().map(|r| r.settings().display_url()))
            .finish_non_exhaustive()
    }
}

impl SharedState {
    pub fn new(metrics: Arc<Metrics>) -> SharedState {
        SharedState {
            memory: MemoryStore::new(metrics.clone()),
            redis: OnceLock::new(),
            metrics,
        }
    }

    /// Serve from Redis from now on (once, at start), opening its
    /// connections in the background: a Redis that is down does not stop
    /// sluice from starting or being ready; calls report it.
    pub fn use_redis(&self, settings: RedisSettings) -> Result<(), String> {
        let store = Arc::new(redis::RedisStore::new(settings, self.metrics.shared_backend.clone())?);
        self.redis
            .set(store.clone())
            .map_err(|_| "the shared-state backend is already chosen".to_string())?;
        tokio::spawn(async move { store.warm().await });
        Ok(())
    }

    /// Whether calls may wait (the backend is remote).
    pub fn waits(&self) -> bool {
        self.redis.get().is_some()
    }

    fn redis(&self) -> Option<&redis::RedisStore> {
        self.redis.get().map(|r| &**r)
    }

    /// The backend's name and state, for the admin listener.
    pub fn status(&self) -> serde_json::Value {
        match self.redis() {
            Some(redis) => redis.status(),
            None => serde_json::json!({ "backend": "memory", "state": "up" }),
        }
    }

    /// Apply `quotas` to every namespace, present and future. A lowered
    /// quota keeps what is stored and refuses growth.
    pub fn configure(&self, quotas: &Quotas) {
        self.memory.configure(quotas);
        if let Some(redis) = self.redis() {
            redis.configure(quotas);
        }
    }

    /// `result`, with a quota refusal in Redis counted as the memory
    /// backend counts its own (`sluice_shared_state_refused_total`).
    fn counted<T>(&self, plugin: &str, result: Result<T, SharedError>) -> Result<T, SharedError> {
        if let Err(SharedError::QuotaExceeded) = &result {
            self.metrics.shared_state(plugin).refused.inc();
        }
        result
    }

    /// The memory backend, for what only it does (tests, fuzzing).
    pub fn memory(&self) -> &MemoryStore {
        &self.memory
    }

    pub async fn get(&self, plugin: &Arc<str>, key: &[u8], wait: Duration) -> Result<Option<Vec<u8>>, SharedError> {
        match self.redis() {
            Some(redis) => redis.get(plugin, key, wait).await,
            None => Ok(self.memory.get(plugin, key)),
        }
    }

    pub async fn set(
        &self,
        plugin: &Arc<str>,
        key: &[u8],
        value: Vec<u8>,
        ttl_ms: Option<u64>,
        wait: Duration,
    ) -> Result<(), SharedError> {
        match self.redis() {
            Some(redis) => self.counted(plugin, redis.set(plugin, key, &value, ttl_ms, wait).await),
            None => self.memory.set(plugin, key, value, ttl_ms),
        }
    }

    pub async fn delete(&self, plugin: &Arc<str>, key: &[u8], wait: Duration) -> Result<bool, SharedError> {
        match self.redis() {
            Some(redis) => redis.delete(plugin, key, wait).await,
            None => Ok(self.memory.delete(plugin, key)),
        }
    }

    pub async fn increment(
        &self,
        plugin: &Arc<str>,
        key: &[u8],
        delta: i64,
        ttl_ms: Option<u64>,
        wait: Duration,
    ) -> Result<i64, SharedError> {
        match self.redis() {
            Some(redis) => self.counted(plugin, redis.increment(plugin, key, delta, ttl_ms, wait).await),
            None => self.memory.increment(plugin, key, delta, ttl_ms),
        }
    }

    pub async fn compare_and_swap(
        &self,
        plugin: &Arc<str>,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Vec<u8>,
        ttl_ms: Option<u64>,
        wait: Duration,
    ) -> Result<bool, SharedError> {
        match self.redis() {
            Some(redis) => self.counted(
                plugin,
                redis.compare_and_swap(plugin, key, expected, &new, ttl_ms, wait).await,
            ),
            None => self.memory.compare_and_swap(plugin, key, expected, new, ttl_ms),
        }
    }

    /// A rate decision where the state lives (see [`gcra::decide`]).
    pub async fn acquire(
        &self,
        plugin: &Arc<str>,
        buckets: &[Bucket],
        cost: u32,
        wait: Duration,
    ) -> Result<RateDecision, SharedError> {
        match self.redis() {
            Some(redis) => self.counted(plugin, redis.acquire(plugin, buckets, cost, wait).await),
            None => self.memory.acquire(plugin, buckets, cost, false),
        }
    }

    /// A rate decision in this process's memory, whatever the backend.
    pub fn acquire_local(&self, plugin: &Arc<str>, buckets: &[Bucket], cost: u32) -> Result<RateDecision, SharedError> {
        self.memory.acquire(plugin, buckets, cost, true)
    }

    /// Drop expired entries of the memory backend (the server calls this
    /// every few seconds on a blocking thread; Redis expires its own).
    pub fn purge_expired(&self) {
        self.memory.purge_expired();
    }
}
