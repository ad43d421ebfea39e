//! Shared state under a neighbour's expiry scan: `cargo bench -p sluice
//! --bench shared_state`. One plugin ("big") holds 200,000 entries; another
//! ("small") does a `get` per iteration. Groups:
//!
//! - `shared_state/get/quiet`: nothing else running.
//! - `shared_state/get/while-another-plugin-purges`: a thread scans "big"
//!   for expired entries in a loop (`purge_expired`). Namespaces are
//!   separate maps, so this should match `quiet`.
//! - `shared_state/get/while-the-same-plugin-purges`: "small" also holds
//!   200,000 entries and is scanned in a loop — the contrast: a plugin's own
//!   scan does take the shard locks its calls need.

mod sampling;

use criterion::Criterion;
use sluice::metrics::Metrics;
use sluice::shared_state::MemoryStore as SharedState;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const ENTRIES: usize = 200_000;

fn fill(store: &SharedState, plugin: &Arc<str>) {
    for i in 0..ENTRIES {
        let _ = store.set(plugin, format!("key-{i}").as_bytes(), vec![0u8; 16], None);
    }
}

/// Run `bench` while a thread purges `store` in a loop (if `purging`).
fn with_purger(store: &Arc<SharedState>, purging: bool, bench: impl FnOnce()) {
    let stop = Arc::new(AtomicBool::new(false));
    let purger = purging.then(|| {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                store.purge_expired();
            }
        })
    });
    bench();
    stop.store(true, Ordering::Relaxed);
    if let Some(p) = purger {
        let _ = p.join();
    }
}

fn shared_state(c: &mut Criterion) {
    let mut quotas = sluice::shared_state::Quotas::default();
    quotas.default.max_entries = 2 * ENTRIES;
    let big: Arc<str> = "big".into();
    let small: Arc<str> = "small".into();
    let mut group = c.benchmark_group("shared_state/get");
    for (name, small_is_big, purging) in [
        ("quiet", false, false),
        ("while-another-plugin-purges", false, true),
        ("while-the-same-plugin-purges", true, true),
    ] {
        let store = Arc::new(SharedState::new(Arc::new(Metrics::default())));
        store.configure(&quotas);
        fill(&store, &big);
        if small_is_big {
            fill(&store, &small);
        }
        let _ = store.set(&small, b"hot", b"v".to_vec(), None);
        // The purger scans every namespace; "small" holds one entry in the
        // first two cases, so only "big"'s scan is long.
        with_purger(&store, purging, || {
            group.bench_function(name, |b| b.iter(|| store.get(&small, b"hot")));
        });
    }
    group.finish();
}

criterion::criterion_group! {
    name = benches;
    config = sampling::config();
    targets = shared_state
}
criterion::criterion_main!(benches);
