//! The Wasm host: one wasmtime engine with the pooling allocator and
//! copy-on-write memory images, an epoch ticker that enforces per-call
//! deadlines (calls yield at each tick, so none holds a worker), the
//! on-disk cache of compiled components, the linker that offers filters the
//! WIT host API (plus an empty WASI, which Rust's std imports even when
//! unused), and the network capabilities filters may use (outbound calls,
//! remote documents).

mod bindings;
mod budget;
mod cache;
pub mod capacity;
mod connection;
mod context;
mod epoch;
#[doc(hidden)]
pub mod fuzzing;
mod host;
mod idle;
mod interception;
pub mod log_budget;
mod memory;
mod outbound_http;
mod plugin;
mod pool;
mod remote_document;
mod shared_store;

pub use host::{Context, Message, RequestExchange, RequestHead, ResponseExchange, ResponseHead};
pub use plugin::{Plugin, PluginError, PluginSet, PluginSource};
pub use pool::{CallError, FilterSlot, LocalResponse, Phase, PhaseOutcome};

use crate::metrics::Metrics;
use crate::outbound::Outbound;
use crate::outbound::documents::Documents;
use crate::shared_state::SharedState;
use bindings::FilterIndices;
use bindings::body::BodyHandlerIndices;
use host::HostState;
use log_budget::{LogBudget, LogBudgets};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances while a long call runs (see `epoch`).
pub const EPOCH_TICK: Duration = Duration::from_millis(1);
/// CPU budget for creating an instance and running its `init` (parsing the
/// configuration, checking keys), which is heavier than a request phase.
pub const INIT_DEADLINE: Duration = Duration::from_secs(1);
/// Largest memory any instance may have.
const MAX_MEMORY: u64 = 64 << 20;
/// Address space reserved per memory slot: the whole 32-bit index space, so
/// the compiled filters need no bounds check on their loads and stores (an
/// out-of-bounds access lands in the unmapped rest and traps). Measured with
/// `bench/callgrind.py`: 18 % fewer instructions in the four built-ins'
/// own code (29.8k → 24.4k per request), for about 4 TiB of *virtual*
/// address space reserved at start (1000 slots); resident memory is
/// unchanged. A reservation of `MAX_MEMORY` would need a check per access.
const MEMORY_RESERVATION: u64 = 4 << 30;
/// Instances alive at once, across all plugins.
const MAX_INSTANCES: u32 = 1000;
/// Overrides [`MAX_INSTANCES`]: for running sluice under valgrind, whose
/// address space cannot hold the default pool's reservation (4 TiB:
/// a memory and its guard per instance). See bench/README.md, "Counting
/// instructions".
const POOL_INSTANCES_ENV: &str = "SLUICE_WASM_POOL_INSTANCES";

/// [`MAX_INSTANCES`], or a smaller count from [`POOL_INSTANCES_ENV`].
fn pool_instances() -> u32 {
    let Ok(value) = std::env::var(POOL_INSTANCES_ENV) else {
        return MAX_INSTANCES;
    };
    match value.parse::<u32>() {
        Ok(n) if (1..=MAX_INSTANCES).contains(&n) => n,
        _ => {
            tracing::warn!(%value, "{POOL_INSTANCES_ENV} is not a count from 1 to {MAX_INSTANCES}; using {MAX_INSTANCES}");
            MAX_INSTANCES
        }
    }
}

/// The engine and everything shared by all plugins and generations.
pub struct WasmRuntime {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: Option<PathBuf>,
    shared: Arc<SharedState>,
    /// The process's metrics; filter slots and clusters take their handles here.
    pub metrics: Arc<Metrics>,
    /// Each plugin's log budget, shared by its instances.
    log_budgets: LogBudgets,
    /// Every filter slot created, so a new generation's capacity check sees
    /// the slots every draining generation still holds.
    slots: std::sync::Mutex<Vec<std::sync::Weak<FilterSlot>>>,
    /// Advances the epoch while calls run; stops when dropped.
    ticker: epoch::Ticker,
    /// Filters' outbound calls, through the serving generation's clusters.
    pub outbound: Arc<Outbound>,
    /// The remote documents filters subscribed to.
    documents: Arc<Documents>,
    /// The engine's pool, as generations check their filters against it.
    pool: capacity::Pool,
}

/// A component linked against the host API, with its exports found.
pub(crate) struct Linked {
    pub pre: InstancePre<HostState>,
    pub indices: FilterIndices,
    /// The optional `body-handler` export, if the component has it.
    pub body: Option<BodyHandlerIndices>,
}

impl WasmRuntime {
    /// Build the engine. `cache_dir` holds compiled `.cwasm` files; `None`
    /// compiles every plugin on load.
    pub fn new(cache_dir: Option<PathBuf>) -> wasmtime::Result<Arc<WasmRuntime>> {
        let instances = pool_instances();
        let tables = instances * 2;
        // What generations check their filters against: the same counts.
        let slots = capacity::Pool {
            instances: instances as usize,
            memories: instances as usize,
            tables: tables as usize,
        };
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances)
            .total_memories(instances)
            .total_tables(tables)
            .total_core_instances(instances * 8)
            .total_stacks(instances)
            .max_memory_size(MAX_MEMORY as usize)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .max_core_instances_per_component(16);
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .memory_reservation(MEMORY_RESERVATION)
            .memory_guard_size(32 << 20)
            .memory_init_cow(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // For profiling filters with `perf`: name the compiled Wasm
        // functions in /tmp/perf-<pid>.map (see bench/README.md).
        if std::env::var_os("SLUICE_WASM_PERF_MAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::Filter::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;

        let ticker = epoch::Ticker::start(engine.clone())
            .map_err(|e| wasmtime::Error::msg(format!("cannot start epoch thread: {e}")))?;

        let metrics = Arc::new(Metrics::default());
        let outbound = Arc::new(Outbound::new(metrics.filter_io.clone()));
        Ok(Arc::new(WasmRuntime {
            outbound,
            documents: Arc::default(),
            engine,
            linker,
            cache_dir,
            shared: Arc::new(SharedState::new(metrics.clone())),
            metrics,
            log_budgets: LogBudgets::default(),
            slots: std::sync::Mutex::new(Vec::new()),
            ticker,
            pool: slots,
        }))
    }

    /// Remember `slot` for [`WasmRuntime::live_slots`].
    pub fn track(&self, slot: &Arc<FilterSlot>) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.retain(|s| s.strong_count() > 0);
        slots.push(Arc::downgrade(slot));
    }

    /// The filter slots still alive, in any generation.
    pub fn live_slots(&self) -> Vec<Arc<FilterSlot>> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.iter().filter_map(std::sync::Weak::upgrade).collect()
    }

    /// The engine's pool of instance, memory and table slots.
    pub fn pool(&self) -> capacity::Pool {
        self.pool
    }

    /// The shared-state store filters use.
    pub fn shared_state(&self) -> &Arc<SharedState> {
        &self.shared
    }

    /// The log budget of `plugin`, shared by all its instances.
    pub fn log_budget(&self, plugin: &Arc<str>) -> Arc<LogBudget> {
        self.log_budgets.get(plugin, &self.metrics)
    }

    /// Link a compiled component against the host API and find its exports.
    fn prepare(&self, component: &Component) -> wasmtime::Result<Linked> {
        let pre = self.linker.instantiate_pre(component)?;
        let indices = FilterIndices::new(&pre)?;
        let body = BodyHandlerIndices::new(&pre).ok();
        Ok(Linked { pre, indices, body })
    }
}
