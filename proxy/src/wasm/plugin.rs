//! Plugins: components found as `*.wasm` in the plugins directory (named by
//! file stem) or built into the binary, compiled once (or loaded from the
//! cache) and linked against the host API, ready to instantiate.

use super::bindings::FilterIndices;
use super::bindings::body::BodyHandlerIndices;
use super::cache::{self, Origin};
use super::host::HostState;
use super::{Linked, WasmRuntime};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use wasmtime::component::InstancePre;

/// Where a plugin came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// Compiled into the `sluice` binary from `plugins/`.
    Builtin,
    /// A file in the plugins directory.
    File(PathBuf),
}

/// A compiled, linked plugin.
pub struct Plugin {
    pub name: Arc<str>,
    /// Hex SHA-256 of the component bytes.
    pub hash: String,
    pub source: PluginSource,
    pub size: usize,
    /// Compiled now, or loaded from the disk cache.
    pub cached: bool,
    /// Time to compile or deserialize and link.
    pub load_time: Duration,
    pub loaded_at: SystemTime,
    /// The generation that loaded this version.
    pub generation: u64,
    /// Memories and tables one instance needs (the most a component may
    /// have when wasmtime cannot tell).
    pub memories_each: usize,
    pub tables_each: usize,
    pub(super) pre: InstancePre<HostState>,
    pub(super) indices: FilterIndices,
    /// The optional `body-handler` export.
    pub(super) body: Option<BodyHandlerIndices>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("hash", &self.hash)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Compile (or load from cache) and link one component.
    pub fn load(
        runtime: &WasmRuntime,
        name: &str,
        source: PluginSource,
        bytes: &[u8],
        generation: u64,
    ) -> Result<Plugin, String> {
        Plugin::load_hashed(runtime, name, source, bytes, cache::content_hash(bytes), generation)
    }

    /// `load` for bytes whose hash the caller already computed.
    fn load_hashed(
        runtime: &WasmRuntime,
        name: &str,
        source: PluginSource,
        bytes: &[u8],
        hash: String,
        generation: u64,
    ) -> Result<Plugin, String> {
        let started = Instant::now();
        let (component, origin) = cache::load_component(&runtime.engine, runtime.cache_dir.as_deref(), &hash, bytes)
            .map_err(|e| format!("not a valid component: {e:#}"))?;
        let Linked { pre, indices, body } = runtime
            .prepare(&component)
            .map_err(|e| format!("does not fit the sluice:filter@0.1.x world: {e:#}"))?;
        let (memories_each, tables_each) = component
            .resources_required()
            .map_or((4, 8), |r| (r.num_memories as usize, r.num_tables as usize));
        Ok(Plugin {
            memories_each,
            tables_each,
            name: name.into(),
            hash,
            source,
            size: bytes.len(),
            cached: origin == Origin::Cached,
            load_time: started.elapsed(),
            loaded_at: SystemTime::now(),
            generation,
            pre,
            indices,
            body,
        })
    }
}

/// Why a plugin's file could not be (re)loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    pub path: PathBuf,
    pub message: String,
}

/// The plugins available to one generation.
#[derive(Debug, Default)]
pub struct PluginSet {
    pub dir: PathBuf,
    plugins: BTreeMap<String, Arc<Plugin>>,
    /// The last error per plugin name. A name may also be in `plugins`: then
    /// the previous good version keeps serving.
    pub errors: BTreeMap<String, PluginError>,
}

impl PluginSet {
    /// Load every `*.wasm` in `dir`, plus the built-ins named in `wanted`
    /// that no file shadows. Content already loaded in `previous` (same name
    /// and hash) is reused, not recompiled. A file that fails to load, or
    /// that was deleted, keeps `previous`'s version serving and is recorded
    /// in `errors`. A missing directory is empty, not an error.
    /// This compiles: call it off the async runtime's worker threads.
    pub fn load(
        runtime: &WasmRuntime,
        dir: &Path,
        wanted: &[&str],
        previous: Option<&PluginSet>,
        generation: u64,
    ) -> PluginSet {
        let mut set = PluginSet {
            dir: dir.to_path_buf(),
            ..Default::default()
        };
        let old = |name: &str| previous.and_then(|p| p.plugins.get(name));
        for (name, path) in wasm_files(dir) {
            let loaded = std::fs::read(&path)
                .map_err(|e| format!("cannot read: {e}"))
                .and_then(|bytes| {
                    let hash = cache::content_hash(&bytes);
                    match old(&name) {
                        Some(p) if p.hash == hash && matches!(&p.source, PluginSource::File(f) if *f == path) => {
                            Ok(p.clone())
                        }
                        _ => Plugin::load_hashed(
                            runtime,
                            &name,
                            PluginSource::File(path.clone()),
                            &bytes,
                            hash,
                            generation,
                        )
                        .map(Arc::new),
                    }
                });
            match loaded {
                Ok(p) => {
                    if p.generation == generation {
                        tracing::info!(plugin = %name, hash = %&p.hash[..12], cached = p.cached, load_ms = p.load_time.as_secs_f64() * 1e3, generation, "plugin loaded");
                    }
                    set.plugins.insert(name, p);
                }
                Err(message) => {
                    match old(&name) {
                        Some(p) => {
                            tracing::warn!(plugin = %name, path = %path.display(), error = %message, serving = %&p.hash[..12], "plugin failed to load; the previous version keeps serving");
                            set.plugins.insert(name.clone(), p.clone());
                        }
                        None => {
                            tracing::warn!(plugin = %name, path = %path.display(), error = %message, "plugin failed to load")
                        }
                    }
                    set.errors.insert(name, PluginError { path, message });
                }
            }
        }
        // Files that disappeared keep their last good version.
        if let Some(prev) = previous {
            for (name, p) in &prev.plugins {
                if let PluginSource::File(path) = &p.source
                    && !set.plugins.contains_key(name)
                {
                    tracing::warn!(plugin = %name, path = %path.display(), "plugin file removed; the last good version keeps serving");
                    set.plugins.insert(name.clone(), p.clone());
                    let message = "file removed; serving the last good version".to_string();
                    set.errors.insert(
                        name.clone(),
                        PluginError {
                            path: path.clone(),
                            message,
                        },
                    );
                }
            }
        }
        for name in wanted {
            if set.plugins.contains_key(*name) || set.errors.contains_key(*name) {
                continue;
            }
            if let Some(p) = old(name).filter(|p| p.source == PluginSource::Builtin) {
                set.plugins.insert(name.to_string(), p.clone());
            } else if let Some(bytes) = crate::builtin::get(name) {
                match Plugin::load(runtime, name, PluginSource::Builtin, bytes, generation) {
                    Ok(p) => {
                        set.plugins.insert(name.to_string(), Arc::new(p));
                    }
                    Err(message) => {
                        set.errors.insert(
                            name.to_string(),
                            PluginError {
                                path: PathBuf::from("<built-in>"),
                                message,
                            },
                        );
                    }
                }
            }
        }
        set
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.plugins.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.plugins.values()
    }

    /// Names a route may use: loaded files and every built-in.
    pub fn available(&self) -> Vec<String> {
        let mut names: Vec<String> = self.plugins.keys().cloned().collect();
        names.extend(crate::builtin::names().map(str::to_string));
        names.sort();
        names.dedup();
        names
    }
}

/// `(stem, path)` of every `*.wasm` file (or symlink to one) in `dir`,
/// sorted by name. Hidden files are skipped.
fn wasm_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
        .filter_map(|p| {
            let stem = p.file_stem()?.to_str()?.to_string();
            (!stem.starts_with('.')).then_some((stem, p))
        })
        .collect();
    files.sort();
    files
}
