//! Compiled components on disk, keyed by the SHA-256 of the `.wasm` and the
//! engine's compatibility hash, so a restart (or a reload of unchanged
//! bytes) deserializes in well under a millisecond instead of compiling.
//! Files are written to a temporary name and renamed: a memory-mapped
//! `.cwasm` is never overwritten in place.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Compiled,
    Cached,
}

/// Hex SHA-256 of the component bytes.
pub fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn cache_path(engine: &Engine, dir: &Path, hash: &str) -> PathBuf {
    let mut h = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    dir.join(format!("{hash}-{:016x}.cwasm", h.finish()))
}

/// Load from the cache or compile (and store in the cache).
pub fn load_component(
    engine: &Engine,
    cache_dir: Option<&Path>,
    hash: &str,
    bytes: &[u8],
) -> wasmtime::Result<(Component, Origin)> {
    let Some(dir) = cache_dir else {
        return Ok((Component::new(engine, bytes)?, Origin::Compiled));
    };
    let path = cache_path(engine, dir, hash);
    if path.is_file() {
        // SAFETY: the file was written by `store` below from a component this
        // engine compiled; its name carries the content hash and the engine's
        // compatibility hash, and it is only ever replaced by rename, never
        // modified in place while mapped.
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => return Ok((component, Origin::Cached)),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "ignoring unusable cached component"),
        }
    }
    let component = Component::new(engine, bytes)?;
    if let Err(e) = store(&component, dir, &path) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot write compiled component to cache");
    }
    Ok((component, Origin::Compiled))
}

fn store(component: &Component, dir: &Path, path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
    let tmp = dir.join(format!(".{}.{}.tmp", std::process::id(), rand::random::<u64>()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    Ok(())
}
