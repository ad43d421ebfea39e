//! Compiles the built-in filters under `plugins/` to components and embeds
//! them (see `src/builtin.rs`).

#[path = "build_support/components.rs"]
mod components;

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().expect("proxy/ lives in the workspace").to_path_buf();
    components::rerun_if_changed(&workspace, &["plugins", "plugin-sdk", "wit"]);
    println!("cargo:rerun-if-changed=build_support");

    let crates = components::crates_in(&workspace.join("plugins"));
    let names: Vec<String> = crates.into_iter().map(|(n, _)| n).collect();
    let built = components::build(&workspace, &names);

    components::write_table(
        "builtin_plugins.rs",
        "/// `(plugin name, component bytes)` of every built-in plugin.\npub static BUILTIN_PLUGINS: &[(&str, &[u8])]",
        &built,
        |path| format!("include_bytes!({path:?})"),
    );
}
