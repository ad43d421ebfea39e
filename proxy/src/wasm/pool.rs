//! One filter slot of one route: a plugin with its route configuration and
//! a pool of ready, configured instances reused across requests. A call
//! waits (bounded) for one of `max_instances` permits, takes an instance,
//! moves the phase's [`Message`] into its store, runs the phase under the
//! CPU deadline (see `budget`), and takes the message back. An instance
//! whose call failed is dropped, never reused.

use super::bindings::{self, Filter, Phases};
use super::host::{HostState, Message};
use super::idle::IdleList;
use super::plugin::Plugin;
use super::{INIT_DEADLINE, WasmRuntime};
use crate::config::SandboxConfig;
use crate::metrics::{CallOutcome, FilterMetrics};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Semaphore;
use wasmtime::Store;

/// A response a filter produced instead of the upstream's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// What a phase asked for.
#[derive(Debug)]
pub enum PhaseOutcome {
    Continue,
    Respond(LocalResponse),
}

/// Why a filter call did not produce an outcome.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot create an instance: {0}")]
    Instantiate(String),
    #[error("no instance free within {0:?}")]
    Exhausted(std::time::Duration),
    #[error("exceeded its CPU deadline")]
    Deadline,
    #[error("exceeded its memory cap")]
    MemoryCap,
    #[error("trapped: {0}")]
    Trap(String),
}

/// Which phase to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    RequestHeaders,
    ResponseHeaders,
}

struct Instance {
    store: Store<HostState>,
    filter: Filter,
    /// Memory size once configured; an instance that grew past it is not
    /// kept warm when idle.
    baseline: usize,
}

impl Instance {
    fn grown(&self) -> bool {
        self.store.data().memory.peak() > self.baseline
    }
}

/// A plugin configured for one route, with its instance pool.
pub struct FilterSlot {
    runtime: Arc<WasmRuntime>,
    pub plugin: Arc<Plugin>,
    config_json: String,
    clusters: Arc<HashSet<Arc<str>>>,
    sandbox: SandboxConfig,
    /// One permit per instance that may be busy at once.
    permits: Semaphore,
    wants_request: bool,
    wants_response: bool,
    idle: Mutex<IdleList<Instance>>,
    metrics: FilterMetrics,
}

impl Drop for FilterSlot {
    fn drop(&mut self) {
        let idle = self.idle.get_mut().map(|v| v.len()).unwrap_or(0);
        self.metrics.idle.dec_by(idle as i64);
    }
}

impl std::fmt::Debug for FilterSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterSlot")
            .field("plugin", &self.plugin.name)
            .finish_non_exhaustive()
    }
}

impl FilterSlot {
    /// Create the slot and its first instance, handing the filter its
    /// configuration. `Err` carries the filter's own rejection message or
    /// the instantiation failure.
    pub async fn new(
        runtime: Arc<WasmRuntime>,
        plugin: Arc<Plugin>,
        config_json: String,
        clusters: Arc<HashSet<Arc<str>>>,
        sandbox: SandboxConfig,
    ) -> Result<FilterSlot, String> {
        let metrics = runtime.metrics.filter(&plugin.name);
        let mut slot = FilterSlot {
            metrics,
            runtime,
            plugin,
            config_json,
            clusters,
            permits: Semaphore::new(sandbox.max_instances),
            sandbox,
            wants_request: true,
            wants_response: true,
            idle: Mutex::new(IdleList::default()),
        };
        let (instance, phases) = slot.instantiate().await.map_err(|e| match e {
            InitError::Rejected(msg) => msg,
            InitError::Call(e) => e.to_string(),
        })?;
        slot.wants_request = phases.contains(Phases::REQUEST_HEADERS);
        slot.wants_response = phases.contains(Phases::RESPONSE_HEADERS);
        slot.release(instance);
        Ok(slot)
    }

    /// Whether the filter asked for this phase.
    pub fn wants(&self, phase: Phase) -> bool {
        match phase {
            Phase::RequestHeaders => self.wants_request,
            Phase::ResponseHeaders => self.wants_response,
        }
    }

    /// The configuration handed to `init`, as JSON.
    pub fn config_json(&self) -> &str {
        &self.config_json
    }

    /// Deadline, memory cap, failure policy and pool bounds.
    pub fn sandbox(&self) -> &SandboxConfig {
        &self.sandbox
    }

    /// The cluster names `set-cluster` accepts.
    pub fn clusters(&self) -> &Arc<HashSet<Arc<str>>> {
        &self.clusters
    }

    async fn instantiate(&self) -> Result<(Instance, Phases), InitError> {
        self.metrics.created.inc();
        let state = HostState::new(
            self.plugin.name.clone(),
            self.runtime.shared.clone(),
            self.clusters.clone(),
            self.sandbox.memory_limit,
            self.runtime.log_budget(&self.plugin.name),
        );
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|s| &mut s.memory);
        store.epoch_deadline_callback(|mut ctx| ctx.data_mut().budget.on_tick());
        // The epoch ticks while instantiation and `init` run.
        let _active = self.runtime.ticker.enter();
        store.data_mut().budget.start(INIT_DEADLINE);
        store.set_epoch_deadline(1);
        let filter = self
            .plugin
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| InitError::Call(CallError::Instantiate(format!("{e:#}"))))?;
        store.data_mut().budget.start(INIT_DEADLINE);
        store.set_epoch_deadline(1);
        let phases = filter
            .sluice_filter_handler()
            .call_init(&mut store, &self.config_json)
            .await
            .map_err(|e| InitError::Call(classify(e)))?
            .map_err(InitError::Rejected)?;
        let baseline = store.data().memory.peak();
        Ok((
            Instance {
                store,
                filter,
                baseline,
            },
            phases,
        ))
    }

    /// Return an instance to the pool. (Trimming what idled too long is the
    /// maintenance task's, off the request path.)
    fn release(&self, instance: Instance) {
        let grown = instance.grown();
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(instance, Instant::now(), grown);
        self.metrics.idle.inc();
    }

    /// Drop instances idle for longer than `idle::IDLE_TIMEOUT` (keeping one
    /// warm); the maintenance task calls this every few seconds.
    pub fn trim_idle(&self, now: Instant) {
        let dropped = self.idle.lock().unwrap_or_else(|e| e.into_inner()).trim(now);
        // Dropped outside the lock: freeing an instance returns its slot to
        // the engine's pool.
        self.metrics.idle.dec_by(dropped.len() as i64);
    }

    /// Run the phase of `message` on a pooled instance, counting the call
    /// and its outcome.
    pub async fn call<M: Message>(&self, message: &mut M) -> Result<PhaseOutcome, CallError> {
        let started = Instant::now();
        let result = self.call_uncounted(message).await;
        let outcome = match &result {
            Ok(PhaseOutcome::Continue) => CallOutcome::Continue,
            Ok(PhaseOutcome::Respond(_)) => CallOutcome::LocalResponse,
            Err(CallError::Deadline) => CallOutcome::Deadline,
            Err(CallError::MemoryCap) => CallOutcome::MemoryCap,
            Err(CallError::Trap(_)) => CallOutcome::Trap,
            Err(CallError::Instantiate(_) | CallError::Exhausted(_)) => CallOutcome::Unavailable,
        };
        let index = match M::PHASE {
            Phase::RequestHeaders => 0,
            Phase::ResponseHeaders => 1,
        };
        self.metrics.call(index, outcome, started.elapsed());
        result
    }

    async fn call_uncounted<M: Message>(&self, message: &mut M) -> Result<PhaseOutcome, CallError> {
        let wait = self.sandbox.pool_wait;
        let _permit = match self.permits.try_acquire() {
            Ok(p) => p,
            Err(_) => match tokio::time::timeout(wait, self.permits.acquire()).await {
                Ok(Ok(p)) => p,
                _ => return Err(CallError::Exhausted(wait)),
            },
        };
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if pooled.is_some() {
            self.metrics.idle.dec();
        }
        let mut instance = match pooled {
            Some(i) => i,
            None => match self.instantiate().await {
                Ok((i, _)) => i,
                Err(InitError::Call(e)) => return Err(e),
                Err(InitError::Rejected(msg)) => return Err(CallError::Instantiate(format!("config rejected: {msg}"))),
            },
        };
        let Instance { store, filter, .. } = &mut instance;
        store.data_mut().enter(message);
        let active = self.runtime.ticker.enter();
        store.data_mut().budget.start(self.sandbox.deadline);
        store.set_epoch_deadline(1);
        let handler = filter.sluice_filter_handler();
        let result = match M::PHASE {
            Phase::RequestHeaders => handler.call_on_request_headers(&mut *store).await,
            Phase::ResponseHeaders => handler.call_on_response_headers(&mut *store).await,
        };
        drop(active);
        store.data_mut().leave(message);
        match result {
            Ok(action) => {
                self.release(instance);
                Ok(outcome(action))
            }
            Err(e) => Err(classify(e)),
        }
    }
}

enum InitError {
    Call(CallError),
    Rejected(String),
}

fn outcome(action: bindings::Action) -> PhaseOutcome {
    match action {
        bindings::Action::Continue => PhaseOutcome::Continue,
        bindings::Action::Respond(r) => PhaseOutcome::Respond(LocalResponse {
            status: r.status,
            headers: r.headers.into_iter().map(|h| (h.name, h.value)).collect(),
            body: r.body,
        }),
    }
}

fn classify(e: wasmtime::Error) -> CallError {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => CallError::Deadline,
        // The store limiter's refusal (trap_on_grow_failure); wasmtime's
        // message for it is stable.
        _ if e
            .chain()
            .any(|c| c.to_string().contains("forcing trap when growing memory")) =>
        {
            CallError::MemoryCap
        }
        _ => CallError::Trap(format!("{e:#}")),
    }
}
