//! Hot reload: watch the plugins directory and the config file, debounce
//! bursts of events, wait until files stop changing, then build the next
//! generation off the request path and swap it in atomically — only if all
//! of it (config, every plugin, every filter's config) is good. In-flight
//! requests finish on the generation they started with; an old generation
//! is freed when its last request ends. SIGHUP triggers the same reload.

use crate::config::Config;
use crate::generation::Generation;
use crate::listener::Current;
use crate::metrics::Metrics;
use crate::wasm::WasmRuntime;
use notify::{EventKind, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Mutex, mpsc};

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

/// Builds and swaps generations.
pub struct Reloader {
    runtime: Arc<WasmRuntime>,
    config_path: PathBuf,
    current: Current,
    next_id: AtomicU64,
    /// One reload at a time.
    busy: Mutex<()>,
    metrics: Arc<Metrics>,
}

impl Reloader {
    pub fn new(
        runtime: Arc<WasmRuntime>,
        config_path: PathBuf,
        current: Current,
        metrics: Arc<Metrics>,
    ) -> Arc<Reloader> {
        let next_id = current.load().id + 1;
        metrics
            .generation
            .set(i64::try_from(current.load().id).unwrap_or(i64::MAX));
        Arc::new(Reloader {
            runtime,
            config_path,
            current,
            next_id: AtomicU64::new(next_id),
            busy: Mutex::new(()),
            metrics,
        })
    }

    /// Re-read the config file and the plugins directory; swap in a new
    /// generation if anything changed and everything is valid.
    pub async fn reload(&self, reason: &str) -> Result<Outcome, String> {
        let _one_at_a_time = self.busy.lock().await;
        let started = Instant::now();
        let previous = self.current.load_full();
        let result = async {
            let config = Config::load(&self.config_path).map_err(|e| e.to_string())?;
            if config.listeners.iter().map(|l| (&l.name, l.address)).ne(previous
                .config
                .listeners
                .iter()
                .map(|l| (&l.name, l.address)))
                || config.admin != previous.config.admin
            {
                tracing::warn!("listener and admin addresses changed in the config: they take effect on restart");
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            Generation::build(self.runtime.clone(), Arc::new(config), id, Some(previous.clone()))
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match result {
            Err(error) => {
                self.metrics.reload("failure");
                tracing::error!(%reason, %error, serving = previous.id, "reload rejected; the running generation keeps serving");
                Err(error)
            }
            Ok(next) if same_content(&previous, &next) => {
                self.metrics.reload("unchanged");
                tracing::debug!(%reason, "reload found nothing changed");
                Ok(Outcome::Unchanged)
            }
            Ok(next) => {
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
                // A plugin file that failed to load this time is a failed
                // reload for that plugin, even though the rest is applied
                // (and the previous version of that plugin keeps serving).
                let mut new_errors = 0;
                for (name, e) in &next.plugins.errors {
                    if previous.plugins.errors.get(name) != Some(e) {
                        new_errors += 1;
                        tracing::warn!(plugin = %name, path = %e.path.display(), error = %e.message, generation = next.id, "plugin not updated");
                    }
                }
                let id = next.id;
                self.current.store(Arc::new(next));
                self.metrics.reload(if new_errors == 0 { "success" } else { "failure" });
                self.metrics.generation.set(i64::try_from(id).unwrap_or(i64::MAX));
                tracing::info!(%reason, generation = id, plugin_errors = new_errors, took_ms = started.elapsed().as_secs_f64() * 1e3, "reloaded");
                Ok(Outcome::Swapped(id))
            }
        }
    }
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
fn snapshot(dirs: &[PathBuf]) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
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

/// Start watching the plugins directory and the config file's directory;
/// returns the watcher, which stops watching when dropped.
pub fn watch(reloader: Arc<Reloader>, plugins_dir: &Path) -> Result<notify::RecommendedWatcher, notify::Error> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let config_path = reloader.config_path.clone();
    let config_name = config_path.file_name().map(|n| n.to_os_string());
    let config_dir = config_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let plugins = plugins_dir.to_path_buf();
    let plugins_for_events = plugins.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(
            event.kind,
            EventKind::Access(notify::event::AccessKind::Open(_) | notify::event::AccessKind::Read)
        ) {
            return;
        }
        let relevant = event.paths.iter().any(|p| {
            let in_plugins = p.parent() == Some(plugins_for_events.as_path());
            let name = p.file_name();
            // The config file itself, or a ConfigMap's `..data` swap next to it.
            let config = name == config_name.as_deref()
                || name.and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("..data"));
            in_plugins || config
        });
        if relevant {
            let _ = tx.send(());
        }
    })?;
    if plugins.is_dir() {
        watcher.watch(&plugins, RecursiveMode::NonRecursive)?;
    } else {
        tracing::warn!(dir = %plugins.display(), "plugins directory does not exist; not watching it");
    }
    if config_dir != plugins {
        watcher.watch(&config_dir, RecursiveMode::NonRecursive)?;
    }
    let watched = vec![plugins, config_dir];
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Debounce: wait for a quiet period, then for files to stop
            // changing (a slow copy), before building anything.
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => {}
                }
                let before = snapshot(&watched);
                tokio::time::sleep(SETTLE).await;
                if snapshot(&watched) == before && rx.is_empty() {
                    break;
                }
            }
            let _ = reloader.reload("file change").await;
        }
    });
    Ok(watcher)
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
