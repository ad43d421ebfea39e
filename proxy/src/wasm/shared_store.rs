//! The host side of the WIT `shared-state` and `shared-store` (0.1.4)
//! interfaces: one plugin's shared state, in whichever backend
//! [`crate::shared_state`] serves. Keys and values are checked here; the
//! plugin's namespace is the host's choice, never the guest's.
//!
//! A call to Redis suspends the filter, not the worker, and may wait at
//! most what is left of the phase's `wait_limit` (and the backend's
//! `command_timeout`); the wait counts as waiting, not CPU. When the
//! backend cannot answer, `shared-store` says `unavailable`, while
//! `shared-state`, which has no way to say it, traps: the entry's
//! `on_failure` policy then decides the request.

use super::bindings::HostError;
use super::bindings::sluice::filter::shared_state;
use super::bindings::sluice::filter::shared_store::{self, Bucket, RateDecision, StoreError};
use super::budget;
use super::host::HostState;
use crate::limits;
use crate::shared_state::{self as store, SharedError};
use std::future::Future;
use std::time::{Duration, Instant};

/// How long a call may wait where the store has no filter entry's
/// `wait_limit` (unit tests, fuzzing).
const UNSCOPED_WAIT: Duration = Duration::from_secs(1);

fn checked_key(key: &str) -> Result<&[u8], SharedError> {
    if key.len() > limits::MAX_SHARED_KEY_BYTES {
        return Err(SharedError::InvalidArgument);
    }
    Ok(key.as_bytes())
}

fn checked_value(value: &[u8]) -> Result<(), SharedError> {
    if value.len() > limits::MAX_SHARED_VALUE_BYTES {
        return Err(SharedError::InvalidArgument);
    }
    Ok(())
}

fn buckets(buckets: Vec<Bucket>) -> Vec<store::Bucket> {
    buckets
        .into_iter()
        .map(|b| store::Bucket {
            key: b.key,
            interval_ns: b.interval_ns,
            tolerance_ns: b.tolerance_ns,
        })
        .collect()
}

fn decision(d: store::RateDecision) -> RateDecision {
    RateDecision {
        allowed: d.allowed,
        tats: d.tats,
        now_ns: d.now_ns,
    }
}

impl HostState {
    /// Run one store operation with what is left of the call's wait limit,
    /// counting the time it waited.
    async fn stored<T, F, Fut>(&mut self, operation: F) -> Result<T, SharedError>
    where
        F: FnOnce(std::sync::Arc<store::SharedState>, std::sync::Arc<str>, Duration) -> Fut,
        Fut: Future<Output = Result<T, SharedError>>,
    {
        if !self.shared.waits() {
            // Memory answers at once: nothing to bound or count.
            return operation(self.shared.clone(), self.plugin.clone(), UNSCOPED_WAIT).await;
        }
        let waited = budget::lock(&self.budget).waited_so_far();
        let limit = self.io.as_ref().map_or(UNSCOPED_WAIT, |io| io.wait_limit);
        let remaining = limit.saturating_sub(waited);
        if remaining.is_zero() {
            return Err(SharedError::Unavailable("the filter's wait_limit is spent".into()));
        }
        let started = Instant::now();
        let result = operation(self.shared.clone(), self.plugin.clone(), remaining).await;
        budget::lock(&self.budget).waited(started.elapsed());
        result
    }
}

/// What `shared-state` (0.1.0) reports: its errors are `host-error`s, and
/// an unavailable backend, which it cannot express, is a trap.
fn legacy<T>(result: Result<T, SharedError>) -> wasmtime::Result<Result<T, HostError>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(SharedError::NotACounter | SharedError::InvalidArgument) => Ok(Err(HostError::InvalidArgument)),
        Err(SharedError::QuotaExceeded) => Ok(Err(HostError::LimitExceeded)),
        Err(SharedError::Unavailable(why)) => Err(wasmtime::Error::msg(format!("shared state unavailable: {why}"))),
    }
}

/// A size check of `shared-state`: too large is `limit-exceeded` there.
fn legacy_size<T>(checked: Result<T, SharedError>) -> Result<T, HostError> {
    checked.map_err(|_| HostError::LimitExceeded)
}

impl shared_state::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        if checked_key(&key).is_err() {
            return Ok(None);
        }
        let result = self
            .stored(|s, plugin, wait| async move { s.get(&plugin, key.as_bytes(), wait).await })
            .await;
        legacy(result).map(|r| r.ok().flatten())
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<(), HostError>> {
        if let Err(e) = legacy_size(checked_key(&key).and(checked_value(&value))) {
            return Ok(Err(e));
        }
        let result = self
            .stored(|s, plugin, wait| async move { s.set(&plugin, key.as_bytes(), value, ttl_ms, wait).await })
            .await;
        legacy(result)
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<bool> {
        if checked_key(&key).is_err() {
            return Ok(false);
        }
        let result = self
            .stored(|s, plugin, wait| async move { s.delete(&plugin, key.as_bytes(), wait).await })
            .await;
        legacy(result).map(|r| r.unwrap_or(false))
    }

    async fn increment(
        &mut self,
        key: String,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<i64, HostError>> {
        if let Err(e) = legacy_size(checked_key(&key)) {
            return Ok(Err(e));
        }
        let result = self
            .stored(|s, plugin, wait| async move { s.increment(&plugin, key.as_bytes(), delta, ttl_ms, wait).await })
            .await;
        legacy(result)
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<bool, HostError>> {
        if let Err(e) = legacy_size(checked_key(&key).and(checked_value(&new))) {
            return Ok(Err(e));
        }
        let result = self
            .stored(|s, plugin, wait| async move {
                s.compare_and_swap(&plugin, key.as_bytes(), expected.as_deref(), new, ttl_ms, wait)
                    .await
            })
            .await;
        legacy(result)
    }
}

/// What `shared-store` reports.
fn store_error(e: SharedError) -> StoreError {
    match e {
        SharedError::NotACounter | SharedError::InvalidArgument => StoreError::InvalidArgument,
        SharedError::QuotaExceeded => StoreError::LimitExceeded,
        SharedError::Unavailable(why) => StoreError::Unavailable(why),
    }
}

impl shared_store::Host for HostState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, StoreError> {
        checked_key(&key).map_err(store_error)?;
        self.stored(|s, plugin, wait| async move { s.get(&plugin, key.as_bytes(), wait).await })
            .await
            .map_err(store_error)
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<(), StoreError> {
        checked_key(&key).and(checked_value(&value)).map_err(store_error)?;
        self.stored(|s, plugin, wait| async move { s.set(&plugin, key.as_bytes(), value, ttl_ms, wait).await })
            .await
            .map_err(store_error)
    }

    async fn delete(&mut self, key: String) -> Result<bool, StoreError> {
        checked_key(&key).map_err(store_error)?;
        self.stored(|s, plugin, wait| async move { s.delete(&plugin, key.as_bytes(), wait).await })
            .await
            .map_err(store_error)
    }

    async fn increment(&mut self, key: String, delta: i64, ttl_ms: Option<u64>) -> Result<i64, StoreError> {
        checked_key(&key).map_err(store_error)?;
        self.stored(|s, plugin, wait| async move { s.increment(&plugin, key.as_bytes(), delta, ttl_ms, wait).await })
            .await
            .map_err(store_error)
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<bool, StoreError> {
        checked_key(&key).and(checked_value(&new)).map_err(store_error)?;
        self.stored(|s, plugin, wait| async move {
            s.compare_and_swap(&plugin, key.as_bytes(), expected.as_deref(), new, ttl_ms, wait)
                .await
        })
        .await
        .map_err(store_error)
    }

    async fn acquire(&mut self, list: Vec<Bucket>, cost: u32) -> Result<RateDecision, StoreError> {
        let list = buckets(list);
        self.stored(|s, plugin, wait| async move { s.acquire(&plugin, &list, cost, wait).await })
            .await
            .map(decision)
            .map_err(store_error)
    }

    fn acquire_local(&mut self, list: Vec<Bucket>, cost: u32) -> Result<RateDecision, StoreError> {
        self.shared
            .acquire_local(&self.plugin, &buckets(list), cost)
            .map(decision)
            .map_err(store_error)
    }
}
