//! The filters under `plugins/`, compiled to components by the build script
//! and embedded in the binary, so a route can name them without a file.
//! A `.wasm` of the same name in the plugins directory takes precedence.

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// The component bytes of a built-in plugin.
pub fn get(name: &str) -> Option<&'static [u8]> {
    BUILTIN_PLUGINS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// Names of the built-in plugins.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTIN_PLUGINS.iter().map(|(n, _)| *n)
}
