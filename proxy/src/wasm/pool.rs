//! One filter slot of one route: a plugin with its route configuration and
//! a pool of ready, configured instances reused across requests. A call
//! waits (bounded) for one of `max_instances` permits, takes an instance,
//! moves the phase's [`Message`] into its store, runs the phase under the
//! CPU deadline (see `budget`: the call yields to other tasks at every
//! tick, so a slow filter never holds a worker), and takes the message
//! back. An instance whose call failed, or whose call was abandoned (the
//! client went away while it waited), is dropped, never reused.

use super::bindings::body::{BodyAction, BodyHandler, BodyPhases};
use super::bindings::{self, Filter, Phases};
use super::budget::{self, SharedBudget, Tick, metered};
use super::host::{HostState, Io, Message};
use super::idle::IdleList;
use super::plugin::Plugin;
use super::{INIT_DEADLINE, WasmRuntime};
use crate::config::SandboxConfig;
use crate::metrics::{CallOutcome, FilterMetrics};
use crate::outbound::documents::Document;
use bytes::Bytes;
use std::collections::HashSet;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Semaphore;
use wasmtime::{Store, UpdateDeadline};

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
    /// A body phase replaced the body.
    Replace(Bytes),
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
    RequestBody,
    ResponseBody,
}

impl Phase {
    /// Index into the metrics' phase labels.
    fn index(self) -> usize {
        match self {
            Phase::RequestHeaders => 0,
            Phase::ResponseHeaders => 1,
            Phase::RequestBody => 2,
            Phase::ResponseBody => 3,
        }
    }

    /// Whether the request (not yet sent) is what the phase works on.
    pub fn is_request(self) -> bool {
        matches!(self, Phase::RequestHeaders | Phase::RequestBody)
    }
}

struct Instance {
    store: Store<HostState>,
    filter: Filter,
    /// The optional `body-handler` export.
    body: Option<BodyHandler>,
    /// Shared with the store's epoch callback and host functions.
    budget: SharedBudget,
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
    /// The phases the filter asked for (its first instance's answer).
    wants: [bool; 4],
    /// The documents the filter subscribed to in `init`, kept fresh while
    /// this slot lives.
    documents: Vec<Arc<Document>>,
    /// Boxed: taking one out and putting it back moves a pointer, twice
    /// per call, rather than the instance's bindings.
    idle: Mutex<IdleList<Box<Instance>>>,
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
            wants: [true; 4],
            documents: Vec::new(),
            idle: Mutex::new(IdleList::default()),
        };
        let (instance, (phases, body)) = slot.instantiate().await.map_err(|e| match e {
            InitError::Rejected(msg) => msg,
            InitError::Call(e) => e.to_string(),
        })?;
        slot.wants = [
            phases.contains(Phases::REQUEST_HEADERS),
            phases.contains(Phases::RESPONSE_HEADERS),
            body.contains(BodyPhases::REQUEST_BODY),
            body.contains(BodyPhases::RESPONSE_BODY),
        ];
        slot.documents = instance.store.data().documents().to_vec();
        slot.release(instance, Instant::now());
        Ok(slot)
    }

    /// Whether the filter asked for this phase.
    pub fn wants(&self, phase: Phase) -> bool {
        self.wants[phase.index()]
    }

    /// The remote documents the filter subscribed to.
    pub fn documents(&self) -> &[Arc<Document>] {
        &self.documents
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

    async fn instantiate(&self) -> Result<(Box<Instance>, (Phases, BodyPhases)), InitError> {
        self.metrics.created.inc();
        let runtime = &self.runtime;
        let state = HostState::new(
            self.plugin.name.clone(),
            runtime.shared.clone(),
            self.clusters.clone(),
            self.sandbox.memory_limit,
            runtime.log_budget(&self.plugin.name),
        )
        .with_io(Io::new(
            runtime.outbound.clone(),
            runtime.documents.clone(),
            &self.sandbox,
        ));
        let budget = state.budget.clone();
        let mut store = Store::new(&runtime.engine, state);
        store.limiter(|s| &mut s.memory);
        store.epoch_deadline_callback(|ctx| {
            match budget::lock(&ctx.data().budget).on_tick(budget::thread_cpu(), Instant::now()) {
                // tokio's own yield: other ready tasks run before this
                // one is polled again (a plain self-wake may not let them).
                Tick::Yield => Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))),
                Tick::Interrupt => Err(wasmtime::Trap::Interrupt.into()),
            }
        });
        // The epoch ticks while instantiation and `init` run.
        let _active = runtime.ticker.enter();
        let failed = |e: wasmtime::Error| InitError::Call(CallError::Instantiate(format!("{e:#}")));
        budget::lock(&budget).start(INIT_DEADLINE);
        store.set_epoch_deadline(1);
        let instance = metered(&budget, pin!(self.plugin.pre.instantiate_async(&mut store)))
            .await
            .map_err(failed)?;
        let filter = self.plugin.indices.load(&mut store, &instance).map_err(failed)?;
        let body = match &self.plugin.body {
            Some(indices) => Some(indices.load(&mut store, &instance).map_err(failed)?),
            None => None,
        };
        budget::lock(&budget).start(INIT_DEADLINE);
        store.set_epoch_deadline(1);
        let phases = metered(
            &budget,
            pin!(filter.sluice_filter_handler().call_init(&mut store, &self.config_json)),
        )
        .await
        .map_err(|e| InitError::Call(classify(e)))?
        .map_err(InitError::Rejected)?;
        let body_phases = match &body {
            Some(b) => metered(&budget, pin!(b.call_requested_phases(&mut store)))
                .await
                .map_err(|e| InitError::Call(classify(e)))?,
            None => BodyPhases::empty(),
        };
        let baseline = store.data().memory.peak();
        Ok((
            Box::new(Instance {
                store,
                filter,
                body,
                budget,
                baseline,
            }),
            (phases, body_phases),
        ))
    }

    /// Return an instance to the pool, idle since about `now` (the start
    /// of its last call will do: the idle timeout is 30 s). (Trimming what
    /// idled too long is the maintenance task's, off the request path.)
    fn release(&self, instance: Box<Instance>, now: Instant) {
        let grown = instance.grown();
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(instance, now, grown);
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

    /// Run `phase` on `message` on a pooled instance, counting the call
    /// and its outcome. Body phases get `body`.
    pub async fn call<M: Message>(
        &self,
        phase: Phase,
        message: &mut M,
        body: Option<&Bytes>,
    ) -> Result<PhaseOutcome, CallError> {
        let started = Instant::now();
        let result = self.call_uncounted(phase, message, body, started).await;
        let outcome = match &result {
            Ok(PhaseOutcome::Continue | PhaseOutcome::Replace(_)) => CallOutcome::Continue,
            Ok(PhaseOutcome::Respond(_)) => CallOutcome::LocalResponse,
            Err(CallError::Deadline) => CallOutcome::Deadline,
            Err(CallError::MemoryCap) => CallOutcome::MemoryCap,
            Err(CallError::Trap(_)) => CallOutcome::Trap,
            Err(CallError::Instantiate(_) | CallError::Exhausted(_)) => CallOutcome::Unavailable,
        };
        self.metrics.call(phase.index(), outcome, started.elapsed());
        result
    }

    async fn call_uncounted<M: Message>(
        &self,
        phase: Phase,
        message: &mut M,
        body: Option<&Bytes>,
        started: Instant,
    ) -> Result<PhaseOutcome, CallError> {
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
        let Instance {
            store,
            filter,
            body: body_handler,
            budget,
            ..
        } = &mut *instance;
        store.data_mut().enter(message, phase);
        let active = self.runtime.ticker.enter();
        budget::lock(budget).start(self.sandbox.deadline);
        store.set_epoch_deadline(1);
        let handler = filter.sluice_filter_handler();
        let data: &[u8] = body.map_or(&[], |b| b);
        // If this future is dropped mid-call (the client went away), the
        // instance goes with it: never back to the pool.
        let result = match (phase, body_handler.as_ref()) {
            (Phase::RequestHeaders, _) => metered(budget, pin!(handler.call_on_request_headers(&mut *store)))
                .await
                .map(outcome),
            (Phase::ResponseHeaders, _) => metered(budget, pin!(handler.call_on_response_headers(&mut *store)))
                .await
                .map(outcome),
            (Phase::RequestBody, Some(b)) => metered(budget, pin!(b.call_on_request_body(&mut *store, data)))
                .await
                .map(body_outcome),
            (Phase::ResponseBody, Some(b)) => metered(budget, pin!(b.call_on_response_body(&mut *store, data)))
                .await
                .map(body_outcome),
            // Not reached: a slot without the export never wants a body phase.
            (Phase::RequestBody | Phase::ResponseBody, None) => Ok(PhaseOutcome::Continue),
        };
        drop(active);
        store.data_mut().leave(message);
        match result {
            Ok(outcome) => {
                self.release(instance, started);
                Ok(outcome)
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
        bindings::Action::Respond(r) => PhaseOutcome::Respond(local(r)),
    }
}

fn body_outcome(action: BodyAction) -> PhaseOutcome {
    match action {
        BodyAction::Continue => PhaseOutcome::Continue,
        BodyAction::Replace(body) => PhaseOutcome::Replace(Bytes::from(body)),
        BodyAction::Respond(r) => PhaseOutcome::Respond(local(r)),
    }
}

fn local(r: bindings::sluice::filter::types::LocalResponse) -> LocalResponse {
    LocalResponse {
        status: r.status,
        headers: r.headers.into_iter().map(|h| (h.name, h.value)).collect(),
        body: r.body,
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
