//! Build-script helper shared by `proxy/build.rs` (built-in plugins) and
//! `tests/build.rs` (test filters): compile filter crates of this workspace
//! to `wasm32-wasip2` components with a nested cargo, in its own target
//! directory so it never waits on the outer build's lock.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `(package name, directory)` of every crate directly under `dir`.
pub fn crates_in(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let name = text.lines().skip_while(|l| l.trim() != "[package]").find_map(|l| {
            l.trim()
                .strip_prefix("name = ")
                .map(|v| v.trim_matches('"').to_string())
        });
        if let Some(name) = name {
            found.push((name, entry.path()));
        }
    }
    found.sort();
    found
}

/// Build `packages` for wasm32-wasip2 with the `plugin` profile and return
/// `(package name, path to its .wasm)`.
pub fn build(workspace: &Path, packages: &[String]) -> Vec<(String, PathBuf)> {
    if packages.is_empty() {
        return Vec::new();
    }
    ensure_target();
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("wasm-components"),
        None => workspace.join("target").join("wasm-components"),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "plugin",
            "--target-dir",
        ])
        .arg(&target_dir);
    for p in packages {
        cmd.args(["-p", p]);
    }
    // The outer cargo's settings describe the host build, not this one.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let keep = [
            "CARGO_HOME",
            "CARGO_NET",
            "CARGO_HTTP",
            "CARGO_REGISTR",
            "CARGO_MAKEFLAGS",
            "CARGO_TERM",
        ]
        .iter()
        .any(|p| key.starts_with(p));
        let drop = (key.starts_with("CARGO_") && !keep)
            || [
                "RUSTC",
                "RUSTC_WRAPPER",
                "RUSTC_WORKSPACE_WRAPPER",
                "RUSTFLAGS",
                "RUSTDOC",
                "TARGET",
                "HOST",
                "OUT_DIR",
                "PROFILE",
                "OPT_LEVEL",
                "DEBUG",
                "NUM_JOBS",
            ]
            .contains(&key);
        if drop {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo for wasm components: {e}"));
    if !out.status.success() {
        panic!(
            "building wasm components {packages:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    packages
        .iter()
        .map(|p| {
            let file = target_dir
                .join("wasm32-wasip2")
                .join("plugin")
                .join(format!("{}.wasm", p.replace('-', "_")));
            assert!(file.is_file(), "{} was not produced", file.display());
            (p.clone(), file)
        })
        .collect()
}

/// Install the wasm32-wasip2 standard library through rustup if it is
/// missing, so a fresh machine needs no manual step.
fn ensure_target() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc).args(["--print", "sysroot"]).output().ok();
    let installed = sysroot
        .map(|o| {
            PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
                .join("lib/rustlib/wasm32-wasip2")
                .is_dir()
        })
        .unwrap_or(false);
    if !installed {
        let status = Command::new("rustup").args(["target", "add", "wasm32-wasip2"]).status();
        if !matches!(status, Ok(s) if s.success()) {
            panic!("the wasm32-wasip2 target is missing and `rustup target add wasm32-wasip2` failed");
        }
    }
}

/// Tell cargo to rerun when any input of the components changes.
pub fn rerun_if_changed(workspace: &Path, dirs: &[&str]) {
    for d in dirs {
        println!("cargo:rerun-if-changed={}", workspace.join(d).display());
    }
    println!("cargo:rerun-if-changed={}", workspace.join("Cargo.lock").display());
    println!("cargo:rerun-if-changed={}", workspace.join("Cargo.toml").display());
}

/// Write `OUT_DIR/<file>`: `<declaration> = &[(name, <value(path)>), …];`
/// for the components `build` produced.
pub fn write_table(file: &str, declaration: &str, built: &[(String, PathBuf)], value: impl Fn(&str) -> String) {
    let mut src = format!("{declaration} = &[\n");
    for (name, path) in built {
        src += &format!("    ({name:?}, {}),\n", value(&path.display().to_string()));
    }
    src.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join(file), src).unwrap_or_else(|e| panic!("write {file}: {e}"));
}
