//! Hot reload: watch the plugins directory, the config file and the TLS
//! files it names (certificate rotation is a reload), debounce
//! bursts of events, wait until files stop changing, then build the next
//! generation off the request path and swap it in atomically — only if all
//! of it (config, every plugin, every filter's config) is good. In-flight
//! requests finish on the generation they started with; an old generation
//! is freed when its last request ends. SIGHUP triggers the same reload.

use crate::config::Config;
use crate::generation::Generation;
use crate::listener::Current;
use crate::metrics::Metrics;
use crate::telemetry::log_filter;
use crate::wasm::WasmRuntime;
use notify::{EventKind, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

/// Quiet time after the last file event before reloading.
const DEBOUNCE: Duration = Duration::from_millis(75);
/// Interval between the two looks that must agree that files are stable.
const SETTLE: Duration = Duration::from_millis(40);

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new generation with this id is serving.
    Swapped(u64),
    /// Config and plugins are as they were; nothing swapped.
    Unchanged,
}

/// Builds and swaps generations, and keeps the file watcher on the
/// directories the serving configuration names.
pub struct Reloader {
    runtime: Arc<WasmRuntime>,
    config_path: PathBuf,
    current: Current,
    next_id: AtomicU64,
    /// One reload at a time.
    busy: Mutex<()>,
    metrics: Arc<Metrics>,
    /// Where watchers send file events; the debounce task reads them.
    events: mpsc::UnboundedSender<()>,
    /// The watcher for the current `plugins_dir` (none when `[reload]
    /// watch` is off); replaced when either changes.
    watcher: std::sync::Mutex<Option<notify::RecommendedWatcher>>,
    /// Whether that watcher covers the plugins directory (it may not exist
    /// yet; [`Reloader::watch_when_created`] catches up once it does).
    watching_plugins: std::sync::atomic::AtomicBool,
}

impl Reloader {
    /// A reloader for the serving generation in `current`, watching what its
    /// config asks for, with the task that turns file events into reloads
    /// (stop it by aborting the handle).
    pub fn start(
        runtime: Arc<WasmRuntime>,
        config_path: PathBuf,
        current: Current,
        metrics: Arc<Metrics>,
    ) -> (Arc<Reloader>, JoinHandle<()>) {
        let serving = current.load_full();
        metrics.generation.set(i64::try_from(serving.id).unwrap_or(i64::MAX));
        let (events, rx) = mpsc::unbounded_channel();
        let reloader = Arc::new(Reloader {
            runtime,
            config_path,
            next_id: AtomicU64::new(serving.id + 1),
            current,
            busy: Mutex::new(()),
            metrics,
            events,
            watcher: std::sync::Mutex::new(None),
            watching_plugins: std::sync::atomic::AtomicBool::new(false),
        });
        reloader.rewatch(&serving.config);
        let task = tokio::spawn(debounce(Arc::downgrade(&reloader), rx));
        (reloader, task)
    }

    /// Re-read the config file and the plugins directory; swap in a new
    /// generation if anything changed and everything is valid. The file is
    /// read and the generation built (plugins compiled, filters' `init` run)
    /// on a blocking thread, never on a worker that serves requests.
    pub async fn reload(&self, reason: &str) -> Result<Outcome, String> {
        let _one_at_a_time = self.busy.lock().await;
        let started = Instant::now();
        let previous = self.current.load_full();
        let result = self.build_next(&previous).await;
        let (next, mut waiting) = match result {
            Err(error) => {
                self.metrics.reload("failure");
                tracing::error!(%reason, %error, serving = previous.id, "reload rejected; the running generation keeps serving");
                return Err(error);
            }
            Ok(built) => built,
        };
        // A log level that cannot change is reverted first, so a reload
        // that changed only that is "unchanged".
        let next = self.apply_log_level(&previous, next, &mut waiting);
        if same_content(&previous, &next) {
            self.metrics.reload("unchanged");
            if waiting.is_empty() {
                tracing::debug!(%reason, "reload found nothing changed");
            } else {
                tracing::warn!(%reason, restart_required = %waiting.join(", "), "changed settings wait for a restart; nothing else changed");
            }
            return Ok(Outcome::Unchanged);
        }
        for p in next.plugins.iter().filter(|p| p.generation == next.id) {
            tracing::info!(
                plugin = %p.name,
                hash = %&p.hash[..16],
                cached = p.cached,
                compile_ms = p.load_time.as_secs_f64() * 1e3,
                generation = next.id,
                "plugin reloaded"
            );
        }
        // A plugin file that failed to load this time is a failed reload for
        // that plugin, even though the rest is applied (and the previous
        // version of that plugin keeps serving).
        let mut new_errors = 0;
        for (name, e) in &next.plugins.errors {
            if previous.plugins.errors.get(name) != Some(e) {
                new_errors += 1;
                tracing::warn!(plugin = %name, path = %e.path.display(), error = %e.message, generation = next.id, "plugin not updated");
            }
        }
        let id = next.id;
        let rewatch = next.config.plugins_dir != previous.config.plugins_dir
            || next.config.watch != previous.config.watch
            || tls_files(&next.config) != tls_files(&previous.config);
        let config = next.config.clone();
        self.metrics.tls.set_certificates(next.certificates());
        self.metrics.upstream.set_clusters(next.upstreams.handles());
        if next.config.listener_tls != previous.config.listener_tls || next.config.clusters != previous.config.clusters
        {
            for warning in next.config.tls_warnings() {
                tracing::warn!("{warning}");
            }
        }
        next.upstreams.commit_mesh();
        self.runtime.outbound.commit(&next.upstreams);
        self.current.store(Arc::new(next));
        if config.shared_state != previous.config.shared_state {
            self.runtime.shared_state().configure(&config.shared_state);
        }
        if rewatch {
            self.rewatch(&config);
        }
        self.metrics.reload(if new_errors == 0 { "success" } else { "failure" });
        self.metrics.generation.set(i64::try_from(id).unwrap_or(i64::MAX));
        let restart_required = waiting.join(", ");
        if waiting.is_empty() {
            tracing::info!(%reason, generation = id, plugin_errors = new_errors, took_ms = started.elapsed().as_secs_f64() * 1e3, "reloaded");
        } else {
            tracing::warn!(%reason, generation = id, plugin_errors = new_errors, took_ms = started.elapsed().as_secs_f64() * 1e3, %restart_required, "reloaded; changed settings wait for a restart");
        }
        Ok(Outcome::Swapped(id))
    }

    /// Load the config and build the next generation off the workers. The
    /// generation keeps the running bootstrap settings; the ones the file
    /// changed are returned by config key.
    async fn build_next(&self, previous: &Arc<Generation>) -> Result<(Generation, Vec<String>), String> {
        let path = self.config_path.clone();
        let mut config = tokio::task::spawn_blocking(move || Config::load(&path))
            .await
            .map_err(|e| format!("config loading failed: {e}"))?
            .map_err(|e| e.to_string())?;
        let waiting: Vec<String> = config
            .bootstrap
            .differences(&previous.config.bootstrap)
            .into_iter()
            .map(String::from)
            .collect();
        keep_tls_on_running_sockets(&mut config, &previous.config);
        config.bootstrap = previous.config.bootstrap.clone();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let build = Generation::build(self.runtime.clone(), Arc::new(config), id, Some(previous.clone()));
        let handle = tokio::runtime::Handle::current();
        let next = tokio::task::spawn_blocking(move || handle.block_on(build))
            .await
            .map_err(|e| format!("building the generation failed: {e}"))?
            .map_err(|e| e.to_string())?;
        Ok((next, waiting))
    }

    /// Apply a changed `[log] level` to the process. When it cannot change
    /// (see `log_filter`), the generation records the level in force and
    /// the setting joins `waiting`.
    fn apply_log_level(&self, previous: &Generation, mut next: Generation, waiting: &mut Vec<String>) -> Generation {
        let (old, new) = (&previous.config.log_level, &next.config.log_level);
        if old == new {
            return next;
        }
        if let Err(why) = log_filter::apply(new.as_deref().unwrap_or("info")) {
            waiting.push(format!("log.level ({why})"));
            let mut config = (*next.config).clone();
            config.log_level = old.clone();
            next.config = Arc::new(config);
        }
        next
    }

    /// Watch `config`'s plugins directory and the config file's directory
    /// (or nothing when `[reload] watch` is off), replacing any watcher.
    fn rewatch(&self, config: &Config) {
        let covers_plugins = config.watch && config.plugins_dir.is_dir();
        self.watching_plugins.store(covers_plugins, Ordering::Relaxed);
        let watcher = if config.watch {
            match watch(
                self.events.clone(),
                &self.config_path,
                &config.plugins_dir,
                &tls_files(config),
            ) {
                Ok(w) => {
                    tracing::debug!(plugins_dir = %config.plugins_dir.display(), "watching for changes");
                    Some(w)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch for changes; reload with SIGHUP");
                    None
                }
            }
        } else {
            None
        };
        *self.watcher.lock().unwrap_or_else(|e| e.into_inner()) = watcher;
    }

    /// Start watching the plugins directory if it was missing when the
    /// watcher was made and exists now; then reload, since its plugins
    /// were never seen. The maintenance tick calls this.
    pub async fn watch_when_created(&self) {
        let config = self.current.load().config.clone();
        if !config.watch || self.watching_plugins.load(Ordering::Relaxed) || !config.plugins_dir.is_dir() {
            return;
        }
        tracing::info!(dir = %config.plugins_dir.display(), "plugins directory appeared; watching it");
        self.rewatch(&config);
        let _ = self.reload("plugins directory appeared").await;
    }

    /// The directories whose files a reload reads.
    fn watched_dirs(&self) -> Vec<PathBuf> {
        let config = self.current.load().config.clone();
        let mut dirs = vec![config.plugins_dir.clone(), config_dir(&self.config_path)];
        dirs.extend(tls_files(&config).iter().map(|f| file_dir(f)));
        dirs.sort();
        dirs.dedup();
        dirs
    }
}

/// The running sockets keep their listeners' names and addresses until a
/// restart, so a listener's TLS settings follow only a listener of the same
/// name *and* address in the new file; any other running listener keeps the
/// settings it has (a renamed or moved listener must not hand its TLS, or
/// its lack of TLS, to another socket).
fn keep_tls_on_running_sockets(config: &mut Config, running: &Config) {
    if config.bootstrap.listeners == running.bootstrap.listeners {
        return;
    }
    let mut tls = std::collections::BTreeMap::new();
    for socket in &running.bootstrap.listeners {
        let same = config
            .bootstrap
            .listeners
            .iter()
            .any(|l| l.name == socket.name && l.address == socket.address);
        let from = if same {
            &config.listener_tls
        } else {
            &running.listener_tls
        };
        if let Some(t) = from.get(&socket.name) {
            tls.insert(socket.name.clone(), t.clone());
        }
    }
    config.listener_tls = tls;
}

/// Every TLS file the config reads (certificates, keys, trust bundles):
/// a change to one reloads, which is how certificates rotate.
fn tls_files(config: &Config) -> Vec<PathBuf> {
    let pairs = config
        .key_pairs()
        .flat_map(|(_, p)| [p.cert_path.clone(), p.key_path.clone()]);
    let bundles = config.trust_bundles().map(|b| b.path.clone());
    let mut files: Vec<PathBuf> = pairs.chain(bundles).collect();
    files.sort();
    files.dedup();
    files
}

fn file_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn config_dir(config_path: &Path) -> PathBuf {
    file_dir(config_path)
}

/// Whether two generations would serve the same way: equal configs and the
/// same plugin versions and errors.
fn same_content(a: &Generation, b: &Generation) -> bool {
    let plugins = |g: &Generation| {
        g.plugins
            .iter()
            .map(|p| (p.name.clone(), p.hash.clone()))
            .collect::<Vec<_>>()
    };
    a.config == b.config && plugins(a) == plugins(b) && a.plugins.errors == b.plugins.errors
}

/// Size and modification time of every entry in `dir` (following symlinks),
/// to tell when a writer has finished.
fn snapshot(dirs: &[PathBuf]) -> Snapshot {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            let meta = std::fs::metadata(&path).ok();
            out.push((
                path,
                meta.as_ref().map(|m| m.len()).unwrap_or(0),
                meta.and_then(|m| m.modified().ok()),
            ));
        }
    }
    out.sort();
    out
}

/// A watcher on `plugins_dir`, the config file's directory and the
/// directories of the TLS files that sends `events` for changes to plugins,
/// the config file, a TLS file, or a ConfigMap's or Secret's `..data` swap;
/// it stops watching when dropped.
fn watch(
    events: mpsc::UnboundedSender<()>,
    config_path: &Path,
    plugins_dir: &Path,
    tls_files: &[PathBuf],
) -> Result<notify::RecommendedWatcher, notify::Error> {
    let config_name = config_path.file_name().map(|n| n.to_os_string());
    let config_dir = config_dir(config_path);
    let plugins = plugins_dir.to_path_buf();
    let tls_names: Vec<std::ffi::OsString> = tls_files
        .iter()
        .filter_map(|f| f.file_name())
        .map(|n| n.to_os_string())
        .collect();
    let mut tls_dirs: Vec<PathBuf> = tls_files.iter().map(|f| file_dir(f)).collect();
    tls_dirs.sort();
    tls_dirs.dedup();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(
            event.kind,
            EventKind::Access(notify::event::AccessKind::Open(_) | notify::event::AccessKind::Read)
        ) {
            return;
        }
        let relevant = event.paths.iter().any(|p| {
            let in_plugins = p.parent() == Some(plugins.as_path());
            let name = p.file_name();
            // The config file itself, a TLS file, or a ConfigMap's or
            // Secret's `..data` swap next to one.
            let config = name == config_name.as_deref()
                || name.is_some_and(|n| tls_names.iter().any(|t| t == n))
                || name.and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("..data"));
            in_plugins || config
        });
        if relevant {
            let _ = events.send(());
        }
    })?;
    if plugins_dir.is_dir() {
        watcher.watch(plugins_dir, RecursiveMode::NonRecursive)?;
    } else {
        tracing::warn!(dir = %plugins_dir.display(), "plugins directory does not exist; not watching it");
    }
    if config_dir != plugins_dir {
        watcher.watch(&config_dir, RecursiveMode::NonRecursive)?;
    }
    for dir in tls_dirs.iter().filter(|d| **d != config_dir && *d != plugins_dir) {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch a TLS directory; rotate with SIGHUP");
        }
    }
    Ok(watcher)
}

/// Turn bursts of file events into one reload each: wait for a quiet
/// period, then for files to stop changing (a slow copy), then reload.
async fn debounce(reloader: Weak<Reloader>, mut rx: mpsc::UnboundedReceiver<()>) {
    while rx.recv().await.is_some() {
        loop {
            match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_) => {}
            }
            let Some(dirs) = reloader.upgrade().map(|r| r.watched_dirs()) else {
                return;
            };
            let before = snapshot_off_worker(dirs.clone()).await;
            tokio::time::sleep(SETTLE).await;
            let after = snapshot_off_worker(dirs).await;
            if after == before && rx.is_empty() {
                break;
            }
        }
        let Some(reloader) = reloader.upgrade() else { return };
        let _ = reloader.reload("file change").await;
    }
}

type Snapshot = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// [`snapshot`] on a blocking thread (it reads directories).
async fn snapshot_off_worker(dirs: Vec<PathBuf>) -> Snapshot {
    tokio::task::spawn_blocking(move || snapshot(&dirs))
        .await
        .unwrap_or_default()
}

/// Reload on every SIGHUP.
#[cfg(unix)]
pub fn reload_on_sighup(reloader: Arc<Reloader>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading");
            let _ = reloader.reload("SIGHUP").await;
        }
    }))
}
