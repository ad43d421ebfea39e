//! Starting sluice: build the first generation, bind the listeners and the
//! admin address, and serve. Also `check`, which does everything but serve.

use crate::admin::AdminState;
use crate::config::{Config, ConfigError};
use crate::generation::Generation;
use crate::listener::intercept::Interceptor;
use crate::listener::{self, Current};
use crate::metrics::Metrics;
use crate::reload::{self, Reloader};
use crate::sidecar::relay::RelaySettings;
use crate::telemetry::Telemetry;
use crate::upstream::tcp::{Dialer, SocketOptions};
use crate::wasm::{PluginSource, WasmRuntime};
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why sluice could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("cannot start the Wasm engine: {0}")]
    Engine(String),
    #[error("cannot listen on {address} ({name}): {source}")]
    Bind {
        name: String,
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set the socket mark {mark} that `[sidecar] mark` asks for (it needs CAP_NET_ADMIN): {source}")]
    Mark {
        mark: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot use the redis shared-state backend: {0}")]
    SharedState(String),
}

/// A running sluice: its bound addresses and serving tasks.
pub struct Running {
    /// `(listener name, bound address)`, in config order.
    pub listeners: Vec<(String, SocketAddr)>,
    pub admin: Option<SocketAddr>,
    pub current: Current,
    pub reloader: Arc<Reloader>,
    pub metrics: Arc<Metrics>,
    /// Set when the drain starts; `/ready` answers 503 from then on.
    pub draining: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    listener_tasks: Vec<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Drain: turn unready, stop accepting (the listening sockets close, so
    /// new connections are refused), let in-flight requests finish, and
    /// return once they have or the grace period (of the serving
    /// generation's config) ran out. Whether every connection finished in
    /// time.
    pub async fn shutdown(mut self) -> bool {
        let grace = self.current.load().config.shutdown_grace;
        self.draining.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
        let listeners = std::mem::take(&mut self.listener_tasks);
        let all_drained = async {
            for task in listeners {
                let _ = task.await;
            }
        };
        tokio::time::timeout(grace, all_drained).await.is_ok()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in self.tasks.iter().chain(&self.listener_tasks) {
            t.abort();
        }
    }
}

/// Bind a listener. An IPv6 wildcard beside an IPv4 wildcard on the same
/// port takes IPv6 only (else the two collide); alone, it takes both.
fn bind(address: SocketAddr, all: &[crate::config::ListenerConfig]) -> std::io::Result<TcpListener> {
    let v4_twin = all
        .iter()
        .any(|l| l.address.is_ipv4() && l.address.ip().is_unspecified() && l.address.port() == address.port());
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if address.is_ipv6() {
        socket.set_only_v6(v4_twin && address.ip().is_unspecified())?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Load `config`, build the first generation and start serving.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let socket_options = SocketOptions::of(&config);
    if let (Some(mark), Err(source)) = (socket_options.mark, socket_options.check()) {
        return Err(StartError::Mark { mark, source });
    }
    let runtime =
        WasmRuntime::new(config.bootstrap.cache_dir.clone()).map_err(|e| StartError::Engine(format!("{e:#}")))?;
    if let crate::config::Backend::Redis(settings) = &config.bootstrap.shared_state_backend {
        tracing::info!(url = %settings.display_url(), prefix = %settings.key_prefix, "shared state in redis");
        runtime
            .shared_state()
            .use_redis(settings.clone())
            .map_err(StartError::SharedState)?;
    }
    runtime.shared_state().configure(&config.shared_state);
    let config = Arc::new(config);
    let generation = Generation::build(runtime.clone(), config.clone(), 1, None).await?;
    generation.upstreams.commit_mesh();
    runtime.outbound.commit(&generation.upstreams);
    let current: Current = Arc::new(ArcSwap::from_pointee(generation));
    let metrics = runtime.metrics.clone();
    metrics.tls.set_certificates(current.load().certificates());
    metrics.upstream.set_clusters(current.load().upstreams.handles());
    for warning in config.tls_warnings() {
        tracing::warn!("{warning}");
    }
    let telemetry = Arc::new(Telemetry {
        metrics: metrics.clone(),
    });
    let (stop, stopped) = watch::channel(false);
    let draining = Arc::new(AtomicBool::new(false));
    let (reloader, watching) =
        Reloader::start(runtime.clone(), config.source.clone(), current.clone(), metrics.clone());

    let mut tasks = vec![watching];
    let mut listener_tasks = Vec::new();
    let mut listeners = Vec::new();
    let mut sockets = Vec::new();
    for l in &config.bootstrap.listeners {
        let socket = bind(l.address, &config.bootstrap.listeners).map_err(|source| StartError::Bind {
            name: l.name.clone(),
            address: l.address,
            source,
        })?;
        let bound = socket.local_addr().unwrap_or(l.address);
        tracing::info!(listener = %l.name, address = %bound, "listening");
        listeners.push((l.name.clone(), bound));
        sockets.push((socket, l));
    }
    let admin_socket = match config.bootstrap.admin {
        Some(address) => Some(TcpListener::bind(address).await.map_err(|source| StartError::Bind {
            name: "admin".into(),
            address,
            source,
        })?),
        None => None,
    };
    let mut own_ports: Vec<u16> = listeners.iter().map(|(_, a)| a.port()).collect();
    own_ports.extend(
        admin_socket
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .map(|a| a.port()),
    );
    for (socket, l) in sockets {
        let intercept = match (l.intercept, &config.bootstrap.sidecar) {
            (Some(direction), Some(sidecar)) => Some(Arc::new(Interceptor {
                direction,
                sidecar: sidecar.clone(),
                own_ports: own_ports.clone(),
                relay: RelaySettings {
                    dialer: Dialer {
                        socket: socket_options,
                        mesh: current.load().upstreams.mesh_handle(),
                    },
                    connect_timeout: crate::config::DEFAULT_CONNECT_TIMEOUT,
                    idle_timeout: sidecar.tcp_idle_timeout,
                },
                metrics: metrics.clone(),
            })),
            _ => None,
        };
        listener_tasks.push(tokio::spawn(listener::serve(
            socket,
            l.name.as_str().into(),
            current.clone(),
            telemetry.clone(),
            intercept,
            stopped.clone(),
        )));
    }
    let admin = match admin_socket {
        Some(socket) => {
            let bound = socket.local_addr().map_err(|source| StartError::Bind {
                name: "admin".into(),
                address: config.bootstrap.admin.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
                source,
            })?;
            tracing::info!(address = %bound, "admin listening");
            let state = AdminState {
                current: current.clone(),
                metrics: metrics.clone(),
                draining: draining.clone(),
                shared_state: runtime.shared_state().clone(),
            };
            tasks.push(tokio::spawn(crate::admin::serve(socket, state)));
            Some(bound)
        }
        None => None,
    };
    let shared = runtime.shared_state().clone();
    let serving = current.clone();
    let catching_up = reloader.clone();
    tasks.push(tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            // Quiet filter pools give back the instances a burst left.
            let now = std::time::Instant::now();
            for route in &serving.load().routes {
                for slot in &route.chain.slots {
                    slot.trim_idle(now);
                }
            }
            catching_up.watch_when_created().await;
            // A large store takes a while to scan: not on a serving worker.
            let shared = shared.clone();
            let _ = tokio::task::spawn_blocking(move || shared.purge_expired()).await;
        }
    }));
    match reload::reload_on_sighup(reloader.clone()) {
        Ok(task) => tasks.push(task),
        Err(e) => tracing::warn!(error = %e, "cannot handle SIGHUP"),
    }
    Ok(Running {
        listeners,
        admin,
        current,
        reloader,
        metrics,
        draining,
        stop,
        listener_tasks,
        tasks,
    })
}

/// Validate `path` and load every plugin it references with its config,
/// without serving. Returns a human-readable report.
pub async fn check(path: &Path) -> Result<String, StartError> {
    let config = Config::load(path)?;
    let runtime =
        WasmRuntime::new(config.bootstrap.cache_dir.clone()).map_err(|e| StartError::Engine(format!("{e:#}")))?;
    let config = Arc::new(config);
    let generation = Generation::build(runtime, config.clone(), 0, None).await?;
    let mut out = format!("{}: OK\n", path.display());
    for warning in config.tls_warnings() {
        out += &format!("warning: {warning}\n");
    }
    out += &format!("plugins directory: {}\n", config.plugins_dir.display());
    for p in generation.plugins.iter() {
        let source = match &p.source {
            PluginSource::Builtin => "built-in".to_string(),
            PluginSource::File(f) => f.display().to_string(),
        };
        out += &format!(
            "  plugin {:<20} sha256:{}  {} KiB  {}\n",
            p.name,
            &p.hash[..16],
            p.size / 1024,
            source
        );
    }
    for (name, e) in &generation.plugins.errors {
        out += &format!("  plugin {name:<20} NOT LOADED ({}): {}\n", e.path.display(), e.message);
    }
    for l in &config.bootstrap.listeners {
        match l.intercept {
            Some(direction) => {
                out += &format!(
                    "listener {} on {} (intercepts {})\n",
                    l.name,
                    l.address,
                    direction.as_str()
                )
            }
            None => out += &format!("listener {} on {}\n", l.name, l.address),
        }
    }
    for c in &config.clusters {
        out += &format!("cluster {} ({:?}): {}\n", c.name, c.protocol, c.endpoints.join(", "));
    }
    for r in &config.routes {
        let hosts = if r.hosts.is_empty() {
            "*".to_string()
        } else {
            format!("{:?}", r.hosts)
        };
        let filters: Vec<&str> = r.filters.iter().map(|f| f.plugin.as_str()).collect();
        let direction = r.direction.map(|d| format!(" ({})", d.as_str())).unwrap_or_default();
        out += &format!(
            "route {}{direction}: hosts {hosts}, {:?} → cluster {} via [{}]\n",
            r.name,
            r.path,
            r.cluster,
            filters.join(" → ")
        );
    }
    Ok(out)
}
