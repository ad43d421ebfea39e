//! Hot-reload test filter, version 2: stamps `x-filter-version: 2` on
//! every response. Its twin `version-1` differs only in the value.

const VERSION: &str = "2";
include!("../../versioned.rs");
