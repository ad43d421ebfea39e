//! A generation: one configuration with its compiled plugins, configured
//! filter chains, router and upstream clients, built off the request path
//! and then shared read-only. A request holds the generation it started
//! with until it ends.

use crate::config::{Config, ConfigError, Direction, ORIGINAL_DESTINATION, RetryPolicy};
use crate::connection::ConnectionFacts;
use crate::filter_chain::FilterChain;
use crate::metrics::CertExpiry;
use crate::metrics::RouteMetrics;
use crate::router::Router;
use crate::telemetry::access_log::AccessLog;
use crate::tls::server::ServerTls;
use crate::upstream::Upstreams;
use crate::wasm::{FilterSlot, PluginSet, WasmRuntime, capacity};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Everything a request needs from its route.
#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    pub cluster: Arc<str>,
    pub timeout: Duration,
    pub connect_timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
    pub max_stream_duration: Option<Duration>,
    /// `Upgrade` protocols proxied (lower case).
    pub upgrades: Vec<String>,
    pub chain: FilterChain,
    pub metrics: Arc<RouteMetrics>,
}

/// An immutable, complete serving state.
#[derive(Debug)]
pub struct Generation {
    pub id: u64,
    pub config: Arc<Config>,
    /// Routes in configuration order (the router indexes the same values).
    pub routes: Vec<Arc<Route>>,
    /// Routes for the ordinary listeners.
    pub router: Router<Route>,
    /// Sidecar mode: routes for the interception listeners.
    pub sidecar: Option<SidecarRoutes>,
    pub upstreams: Upstreams,
    /// The TLS settings of each TLS listener, by listener name.
    pub listener_tls: HashMap<String, Arc<ServerTls>>,
    pub plugins: PluginSet,
    /// Counters for requests no route matched.
    pub unrouted: Arc<RouteMetrics>,
    /// The access log requests on this generation write to; the previous
    /// generation's when its settings did not change.
    pub access_log: Option<Arc<AccessLog>>,
}

impl Generation {
    /// Load plugins, configure every route's filters (each filter validates
    /// its configuration in `init`) and build router and upstreams. Any
    /// failure rejects the whole generation with a located error. Plugins and
    /// configured filters that are unchanged from `previous` are reused.
    pub async fn build(
        runtime: Arc<WasmRuntime>,
        config: Arc<Config>,
        id: u64,
        previous: Option<Arc<Generation>>,
    ) -> Result<Generation, ConfigError> {
        let wanted: Vec<String> = config
            .routes
            .iter()
            .flat_map(|r| r.filters.iter().map(|f| f.plugin.clone()))
            .collect();
        let plugins = {
            let (runtime, dir, previous) = (runtime.clone(), config.plugins_dir.clone(), previous.clone());
            tokio::task::spawn_blocking(move || {
                let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
                PluginSet::load(&runtime, &dir, &wanted, previous.as_ref().map(|g| &g.plugins), id)
            })
            .await
            .map_err(|e| located(&config, None, String::new(), format!("plugin loading panicked: {e}")))?
        };

        let metrics = &runtime.metrics;
        let access_log = match (&config.access_log, &previous) {
            (None, _) => None,
            (Some(c), Some(p)) if p.config.access_log.as_ref() == Some(c) && p.access_log.is_some() => {
                p.access_log.clone()
            }
            (Some(c), _) => Some(Arc::new(
                AccessLog::start(c.clone(), metrics.access_log_dropped.clone())
                    .map_err(|e| located(&config, None, "access_log.path".into(), format!("cannot open: {e}")))?,
            )),
        };
        let upstreams = Upstreams::new(&config, metrics, previous.as_ref().map(|p| &p.upstreams))
            .await
            .map_err(|e| located(&config, None, "clusters".into(), e))?;
        let mut listener_tls = HashMap::new();
        for (name, tls) in &config.listener_tls {
            let server = ServerTls::build(name, tls)
                .map_err(|e| located(&config, None, format!("listeners `{name}`.tls"), e))?;
            listener_tls.insert(name.clone(), Arc::new(server));
        }
        // Clusters an `original-destination` request may end up in.
        let claimants: Vec<&str> = config
            .clusters
            .iter()
            .filter(|c| !c.claims.destinations.is_empty() || !c.claims.services.is_empty())
            .map(|c| c.name.as_str())
            .collect();
        let mut routes = Vec::new();
        for (i, rc) in config.routes.iter().enumerate() {
            let mut chain = FilterChain::default();
            for (j, fc) in rc.filters.iter().enumerate() {
                // The clusters `set-cluster` may choose: the route's own and
                // the entry's `clusters` list.
                let clusters: Arc<HashSet<Arc<str>>> = Arc::new(
                    std::iter::once(&rc.cluster)
                        .chain(&fc.clusters)
                        .map(|c| Arc::from(c.as_str()))
                        .collect(),
                );
                let key = format!("routes[{i}].filters[{j}].plugin");
                let plugin = match plugins.get(&fc.plugin) {
                    Some(p) => p.clone(),
                    None => {
                        let message = match plugins.errors.get(&fc.plugin) {
                            Some(e) => {
                                format!(
                                    "plugin `{}` ({}) failed to load: {}",
                                    fc.plugin,
                                    e.path.display(),
                                    e.message
                                )
                            }
                            None => format!(
                                "unknown plugin `{}`: no {}.wasm in {} and no built-in of that name (available: {})",
                                fc.plugin,
                                fc.plugin,
                                plugins.dir.display(),
                                plugins.available().join(", ")
                            ),
                        };
                        return Err(located(&config, Some(fc.line), key, message));
                    }
                };
                let reusable = previous
                    .as_ref()
                    .and_then(|g| g.routes.iter().find(|r| *r.name == *rc.name))
                    .and_then(|r| r.chain.slots.get(j))
                    .filter(|s| {
                        Arc::ptr_eq(&s.plugin, &plugin)
                            && s.config_json() == fc.config_json
                            && *s.sandbox() == fc.sandbox
                            && **s.clusters() == *clusters
                    });
                let slot = match reusable {
                    Some(slot) => slot.clone(),
                    None => track(
                        &runtime,
                        FilterSlot::new(
                            runtime.clone(),
                            plugin,
                            fc.config_json.clone(),
                            clusters.clone(),
                            fc.sandbox,
                        )
                        .await
                        .map_err(|e| {
                            located(
                                &config,
                                Some(fc.line),
                                format!("routes[{i}].filters[{j}].config"),
                                format!("route `{}`, plugin `{}` rejected its config: {e}", rc.name, fc.plugin),
                            )
                        })?,
                    ),
                };
                chain.slots.push(slot);
            }
            let route = Route {
                name: rc.name.as_str().into(),
                cluster: rc.cluster.as_str().into(),
                timeout: rc.timeout,
                connect_timeout: rc.connect_timeout,
                retry: rc.retry.clone(),
                max_stream_duration: rc.max_stream_duration,
                upgrades: rc.upgrades.clone(),
                chain,
                metrics: Arc::new(metrics.route(&rc.name, &reachable(rc, &claimants))),
            };
            routes.push((rc.direction, (rc.hosts.clone(), rc.path.clone(), Arc::new(route))));
        }
        let ordered: Vec<Arc<Route>> = routes.iter().map(|(_, (_, _, r))| r.clone()).collect();
        let of = |direction: Option<Direction>| {
            let routes = routes.iter().filter(move |(d, _)| *d == direction);
            Router::new(routes.map(|(_, route)| route.clone()))
        };
        let sidecar = config.bootstrap.sidecar.as_ref().map(|_| SidecarRoutes {
            inbound: of(Some(Direction::Inbound)),
            outbound: of(Some(Direction::Outbound)),
            inbound_default: Arc::new(Route::passthrough("inbound-passthrough", metrics, &[])),
            outbound_default: Arc::new(Route::passthrough("outbound-passthrough", metrics, &claimants)),
        });
        check_capacity(&config, &ordered, &runtime.live_slots(), runtime.pool())?;
        Ok(Generation {
            id,
            routes: ordered,
            router: of(None),
            sidecar,
            upstreams,
            listener_tls,
            plugins,
            unrouted: Arc::new(metrics.route("", &[])),
            access_log,
            config,
        })
    }
}

/// The routes of the interception listeners, by direction, and the route
/// for requests none of them matches: to `original-destination` (outbound,
/// a cluster that claims the request, else the original destination
/// itself), without filters (a sidecar is invisible unless configured
/// otherwise).
#[derive(Debug)]
pub struct SidecarRoutes {
    pub inbound: Router<Route>,
    pub outbound: Router<Route>,
    pub inbound_default: Arc<Route>,
    pub outbound_default: Arc<Route>,
}

impl Route {
    /// A route with no filters to the original destination.
    fn passthrough(name: &str, metrics: &crate::metrics::Metrics, claimants: &[&str]) -> Route {
        let clusters: Vec<&str> = std::iter::once(ORIGINAL_DESTINATION)
            .chain(claimants.iter().copied())
            .collect();
        Route {
            name: name.into(),
            cluster: ORIGINAL_DESTINATION.into(),
            timeout: crate::config::DEFAULT_ROUTE_TIMEOUT,
            connect_timeout: None,
            retry: None,
            max_stream_duration: None,
            // Transparent: the application's WebSockets pass too.
            upgrades: vec!["websocket".into()],
            chain: FilterChain::default(),
            metrics: Arc::new(metrics.route(name, &clusters)),
        }
    }
}

impl Generation {
    /// The route for a request on `connection` to `host` and `path`: the
    /// ordinary routes, or on an interception listener that direction's
    /// routes and then its passthrough route.
    pub fn route(&self, connection: &ConnectionFacts, host: &str, path: &str) -> Option<&Arc<Route>> {
        match (connection.interception, &self.sidecar) {
            (Some(i), Some(sidecar)) => Some(match i.direction {
                Direction::Inbound => sidecar.inbound.route(host, path).unwrap_or(&sidecar.inbound_default),
                Direction::Outbound => sidecar.outbound.route(host, path).unwrap_or(&sidecar.outbound_default),
            }),
            _ => self.router.route(host, path),
        }
    }

    /// Every certificate this generation serves or presents, for the
    /// expiry gauge.
    pub fn certificates(&self) -> Vec<CertExpiry> {
        self.config
            .key_pairs()
            .map(|(owner, pair)| CertExpiry {
                owner,
                cert: pair.cert_path.display().to_string(),
                not_after: pair.not_after,
            })
            .collect()
    }
}

/// The clusters a route's requests may go to: its own, its filters'
/// choices, and for an outbound `original-destination` route the clusters
/// that claim destinations.
fn reachable<'a>(rc: &'a crate::config::RouteConfig, claimants: &[&'a str]) -> Vec<&'a str> {
    let mut clusters = rc.reachable_clusters();
    if rc.direction == Some(Direction::Outbound) && clusters.contains(&ORIGINAL_DESTINATION) {
        let extra: Vec<&str> = claimants.iter().copied().filter(|c| !clusters.contains(c)).collect();
        clusters.extend(extra);
    }
    clusters
}

/// A new slot, tracked by the runtime.
fn track(runtime: &WasmRuntime, slot: FilterSlot) -> Arc<FilterSlot> {
    let slot = Arc::new(slot);
    runtime.track(&slot);
    slot
}

/// The filters' worst case against the engine's pool and the memory
/// budget, counting the slots every draining generation keeps alive (those
/// this generation reuses count once).
fn check_capacity(
    config: &Config,
    routes: &[Arc<Route>],
    live: &[Arc<FilterSlot>],
    pool: capacity::Pool,
) -> Result<(), ConfigError> {
    let demand = |label: String, slot: &FilterSlot| capacity::Demand {
        label,
        instances: slot.sandbox().max_instances,
        memories_each: slot.plugin.memories_each,
        tables_each: slot.plugin.tables_each,
        memory_limit: slot.sandbox().memory_limit,
    };
    let mut lines = Vec::new();
    let mut demands = Vec::new();
    for (i, (route, rc)) in routes.iter().zip(&config.routes).enumerate() {
        for (j, (slot, fc)) in route.chain.slots.iter().zip(&rc.filters).enumerate() {
            demands.push(demand(format!("routes[{i}].filters[{j}] ({})", fc.plugin), slot));
            lines.push((fc.line, format!("routes[{i}].filters[{j}].max_instances")));
        }
    }
    let ours = |slot: &Arc<FilterSlot>| {
        routes
            .iter()
            .any(|r| r.chain.slots.iter().any(|s| Arc::ptr_eq(s, slot)))
    };
    for slot in live.iter().filter(|s| !ours(s)) {
        let label = format!("a draining generation's {}", slot.plugin.name);
        demands.push(demand(label, slot));
    }
    let budget = match config.memory_budget {
        Some(bytes) => capacity::Budget {
            bytes,
            source: "[sandbox] memory_budget".into(),
        },
        None => capacity::detect_budget(),
    };
    capacity::check(&demands, pool, &budget).map_err(|e| {
        let (line, key) = lines.get(e.worst).cloned().unzip();
        located(config, line, key.unwrap_or_default(), e.message)
    })
}

fn located(config: &Config, line: Option<usize>, key: String, message: String) -> ConfigError {
    ConfigError {
        file: config.source.clone(),
        line,
        key,
        message,
    }
}
