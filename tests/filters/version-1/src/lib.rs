//! Hot-reload test filter, version 1: stamps `x-filter-version: 1` on
//! every response. Its twin `version-2` differs only in the value.

const VERSION: &str = "1";
include!("../../versioned.rs");
