//! Maps keyed by names from the configuration — clusters, plugins, route
//! hosts — that the request path looks up on every request (the route for
//! a host, the cluster a request goes to, its metrics series, a plugin's
//! shared-state namespace).
//!
//! They hash with foldhash rather than the standard library's SipHash.
//! Every key in these maps is one the operator configured; a request (or a
//! filter, which may only pick among its entry's `clusters`) can choose
//! which key is looked up but never insert one, so collisions are among
//! configured names only and SipHash's defence against chosen keys buys
//! nothing. It cost a few hundred instructions per look-up. (foldhash is
//! built without its `std` feature, as the rest of the dependency tree uses
//! it, so its seed comes from address-space randomization alone; with no
//! chosen keys, that is enough.) Maps whose keys come from requests (the
//! shared store's entries, rate-limit buckets) keep SipHash.

use std::collections::HashMap;
use std::sync::Arc;

/// The hasher of [`NameMap`] (and of like maps of other kinds, such as a
/// `DashMap` keyed by plugin name).
pub type NameHasher = foldhash::fast::RandomState;

/// A map keyed by configured names.
pub type NameMap<V> = HashMap<Arc<str>, V, NameHasher>;
