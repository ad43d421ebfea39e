//! What sluice's end-to-end tests need besides the proxy itself: the test
//! filter components, a real upstream server that reports exactly what
//! it received, and a controllable one that fails on a fixed pattern.

pub mod flaky;
pub mod upstream;

include!(concat!(env!("OUT_DIR"), "/test_filters.rs"));

/// Path of a test filter component by crate name (e.g. `probe-filter`).
pub fn test_filter(name: &str) -> std::path::PathBuf {
    match TEST_FILTERS.iter().find(|(n, _)| *n == name) {
        Some((_, path)) => path.into(),
        None => panic!("no test filter named {name}; have {TEST_FILTERS:?}"),
    }
}
