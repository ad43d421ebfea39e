//! Compiles the built-in filters under `plugins/` to components and embeds
//! them (see `src/builtin.rs`).

#[path = "build_support/components.rs"]
mod components;

use std::fmt::Write;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().expect("proxy/ lives in the workspace").to_path_buf();
    components::rerun_if_changed(&workspace, &["plugins", "plugin-sdk", "wit"]);
    println!("cargo:rerun-if-changed=build_support");

    let crates = components::crates_in(&workspace.join("plugins"));
    let names: Vec<String> = crates.into_iter().map(|(n, _)| n).collect();
    let built = components::build(&workspace, &names);

    let mut src = String::from(
        "/// `(plugin name, component bytes)` of every built-in plugin.\npub static BUILTIN_PLUGINS: &[(&str, &[u8])] = &[\n",
    );
    for (name, path) in built {
        writeln!(src, "    ({name:?}, include_bytes!({:?})),", path.display().to_string()).expect("write to String");
    }
    src.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("builtin_plugins.rs"), src).expect("write builtin_plugins.rs");
}
