//! Compiled components on disk, keyed by the SHA-256 of the `.wasm` and the
//! engine's compatibility hash, so a restart (or a reload of unchanged
//! bytes) deserializes in well under a millisecond instead of compiling.
//! Files are written to a temporary name and renamed: a memory-mapped
//! `.cwasm` is never overwritten in place.
//!
//! A `.cwasm` is native code that is mapped and run without any
//! validation, so whoever can write to the cache directory can run code in
//! the proxy outside every sandbox. As ssh does for its keys, the cache is
//! trusted only when the directory (after following a symlink to it) is
//! owned by the proxy's effective user and not writable by group or others,
//! and each cached file is a regular file (not a symlink) with the same
//! owner and no group/other write bit. Anything else is refused with a
//! warning and the component is compiled from the `.wasm`; nothing is
//! written into an untrusted directory. A missing directory is created with
//! mode 0700 and files are written with mode 0600. A shared or
//! world-writable `cache_dir` is therefore unsafe (and, being refused, also
//! useless); so are parents of it that others can write to, which this
//! module does not check.

use sha2::{Digest, Sha256};
use std::fs::{DirBuilder, Metadata, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
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

/// What a cache path is expected to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
}

/// Whether `meta` describes a cache directory or file we may trust: of the
/// expected kind (a symlink is never a file), owned by `euid` and not
/// writable by group or others. `Err` is the reason, for the warning.
fn trust(meta: &Metadata, kind: Kind, euid: u32) -> Result<(), String> {
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Err("is a symlink".into());
    }
    match kind {
        Kind::Dir if !ft.is_dir() => return Err("is not a directory".into()),
        Kind::File if !ft.is_file() => return Err("is not a regular file".into()),
        _ => {}
    }
    if meta.uid() != euid {
        return Err(format!("owned by uid {}, not us (uid {euid})", meta.uid()));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!("writable by group or others (mode {mode:04o})"));
    }
    Ok(())
}

fn euid() -> u32 {
    // SAFETY: geteuid takes no arguments, touches no memory of ours and
    // cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid()
    }
}

/// Create the cache directory if missing (mode 0700) and check that it can
/// be trusted. A symlink to a directory is followed: the directory it
/// names is what must be ours.
fn open_dir(dir: &Path, euid: u32) -> Result<(), String> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create: {e}"))?;
    let meta = std::fs::metadata(dir).map_err(|e| format!("cannot inspect: {e}"))?;
    trust(&meta, Kind::Dir, euid)
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
    let euid = euid();
    if let Err(reason) = open_dir(dir, euid) {
        tracing::warn!(
            dir = %dir.display(),
            %reason,
            "not using the component cache: it could run planted native code; compiling from the .wasm"
        );
        return Ok((Component::new(engine, bytes)?, Origin::Compiled));
    }
    let path = cache_path(engine, dir, hash);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) => match trust(&meta, Kind::File, euid) {
            // SAFETY: the file is a regular file owned by us in a directory
            // owned by us that nobody else can write to, so it was written by
            // `store` below from a component this engine compiled; its name
            // carries the content hash and the engine's compatibility hash,
            // and it is only ever replaced by rename, never modified in place
            // while mapped.
            #[allow(unsafe_code)]
            Ok(()) => match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, Origin::Cached)),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "ignoring unusable cached component"),
            },
            Err(reason) => tracing::warn!(
                path = %path.display(),
                %reason,
                "refusing cached component; compiling from the .wasm"
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot inspect cached component"),
    }
    let component = Component::new(engine, bytes)?;
    if let Err(e) = store(&component, dir, &path) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot write compiled component to cache");
    }
    Ok((component, Origin::Compiled))
}

fn store(component: &Component, dir: &Path, path: &Path) -> anyhow::Result<()> {
    let bytes = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
    let tmp = dir.join(format!(".{}.{}.tmp", std::process::id(), rand::random::<u64>()));
    // 0600 whatever the umask: a group-writable file would be refused.
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&bytes));
    written.and_then(|()| std::fs::rename(&tmp, path)).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::{Arc, Mutex};

    fn component() -> &'static [u8] {
        crate::builtin::get("header-rewrite").expect("built-in header-rewrite")
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// `load_component` with the warnings it logged.
    fn load(engine: &Engine, dir: &Path) -> (Origin, String) {
        let bytes = component();
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let (_, origin) = tracing::subscriber::with_default(subscriber, || {
            load_component(engine, Some(dir), &content_hash(bytes), bytes).unwrap()
        });
        let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        (origin, logs)
    }

    /// A trusted cache holding a valid `.cwasm`: returns its path.
    fn warm(engine: &Engine, dir: &Path) -> PathBuf {
        assert_eq!(load(engine, dir).0, Origin::Compiled);
        assert_eq!(load(engine, dir).0, Origin::Cached, "the cache works");
        cache_path(engine, dir, &content_hash(component()))
    }

    #[test]
    fn creates_the_directory_0700_and_files_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/cache");
        let engine = Engine::default();
        let path = warm(&engine, &dir);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn refuses_a_group_or_world_writable_file() {
        let tmp = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let path = warm(&engine, tmp.path());
        chmod(&path, 0o666);
        let (origin, logs) = load(&engine, tmp.path());
        assert_eq!(origin, Origin::Compiled);
        assert!(logs.contains("writable by group or others (mode 0666)"), "{logs}");
        // The directory is ours: the refused file was replaced by a good one.
        assert_eq!(mode(&path), 0o600);
        assert_eq!(load(&engine, tmp.path()).0, Origin::Cached);
    }

    #[test]
    fn refuses_a_world_writable_directory_and_does_not_write_to_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        let engine = Engine::default();
        let path = warm(&engine, &dir);
        chmod(&dir, 0o777);
        let (origin, logs) = load(&engine, &dir);
        assert_eq!(origin, Origin::Compiled);
        assert!(logs.contains("writable by group or others (mode 0777)"), "{logs}");
        chmod(&dir, 0o770);
        assert_eq!(load(&engine, &dir).0, Origin::Compiled);

        std::fs::remove_file(&path).unwrap();
        assert_eq!(load(&engine, &dir).0, Origin::Compiled);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "nothing stored in an untrusted directory"
        );
    }

    #[test]
    fn refuses_a_symlinked_cache_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        let engine = Engine::default();
        let path = warm(&engine, &dir);
        // A valid, trusted-looking file elsewhere, linked into the cache.
        let elsewhere = tmp.path().join("planted.cwasm");
        std::fs::rename(&path, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        let (origin, logs) = load(&engine, &dir);
        assert_eq!(origin, Origin::Compiled);
        assert!(logs.contains("is a symlink"), "{logs}");
    }

    #[test]
    fn trust_rules() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let dir = tmp.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        let link = tmp.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let meta = |p: &Path| std::fs::symlink_metadata(p).unwrap();
        let me = meta(&file).uid();

        chmod(&file, 0o644);
        assert_eq!(trust(&meta(&file), Kind::File, me), Ok(()));
        let other = trust(&meta(&file), Kind::File, me.wrapping_add(1)).unwrap_err();
        assert!(other.contains(&format!("owned by uid {me}, not us")), "{other}");
        chmod(&file, 0o664);
        assert!(trust(&meta(&file), Kind::File, me).unwrap_err().contains("mode 0664"));
        chmod(&file, 0o646);
        assert!(trust(&meta(&file), Kind::File, me).is_err());
        chmod(&file, 0o600);
        assert_eq!(trust(&meta(&link), Kind::File, me), Err("is a symlink".into()));
        assert!(trust(&meta(&dir), Kind::File, me).is_err());

        chmod(&dir, 0o700);
        assert_eq!(trust(&meta(&dir), Kind::Dir, me), Ok(()));
        chmod(&dir, 0o755);
        assert_eq!(trust(&meta(&dir), Kind::Dir, me), Ok(()));
        chmod(&dir, 0o770);
        assert!(trust(&meta(&dir), Kind::Dir, me).unwrap_err().contains("mode 0770"));
        chmod(&dir, 0o700);
        assert!(trust(&meta(&dir), Kind::Dir, me.wrapping_add(1)).is_err());
        assert!(trust(&meta(&file), Kind::Dir, me).is_err());
    }
}
