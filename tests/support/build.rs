//! Compiles the test filters under `tests/filters/` to components; the
//! library exposes their paths.

#[path = "../../proxy/build_support/components.rs"]
mod components;

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest.join("../..").canonicalize().expect("workspace root");
    components::rerun_if_changed(
        &workspace,
        &[
            "tests/filters",
            "examples/custom-filter",
            "examples/ext-authz",
            "examples/card-mask",
            "plugin-sdk",
            "wit",
        ],
    );
    // The test filters, and the example filters so their READMEs stay true.
    let mut names: Vec<String> = components::crates_in(&workspace.join("tests/filters"))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    names.push("maintenance".into());
    names.push("ext-authz".into());
    names.push("card-mask".into());
    let built = components::build(&workspace, &names);
    components::write_table(
        "test_filters.rs",
        "/// `(crate name, path to component)` of every test filter.\npub static TEST_FILTERS: &[(&str, &str)]",
        &built,
        |path| format!("{path:?}"),
    );
}
