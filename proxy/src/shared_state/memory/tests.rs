//! Shared-state semantics, quotas and exact accounting.

use super::*;
use std::collections::BTreeMap;

fn store() -> MemoryStore {
    MemoryStore::new(Arc::new(Metrics::default()))
}

fn quota(max_entries: usize, max_bytes: usize) -> Quotas {
    Quotas {
        default: Quota { max_entries, max_bytes },
        plugins: BTreeMap::new(),
    }
}

/// `(entries, bytes)` a plugin holds, as counted.
fn usage(s: &MemoryStore, plugin: &str) -> (usize, usize) {
    s.namespaces.get(plugin).map_or((0, 0), |ns| {
        (ns.entries.load(Ordering::Relaxed), ns.bytes.load(Ordering::Relaxed))
    })
}

/// What a namespace actually holds, recomputed from its map.
fn recount(s: &MemoryStore, plugin: &str) -> (usize, usize) {
    s.namespaces.get(plugin).map_or((0, 0), |ns| {
        ns.map.iter().fold((0, 0), |(n, b), e| {
            (n + 1, b + size(e.key(), e.value().value.len()) as usize)
        })
    })
}

#[test]
fn namespaces_are_separate() {
    let s = store();
    let a: Arc<str> = "a".into();
    let b: Arc<str> = "b".into();
    s.set(&a, b"k", b"1".to_vec(), None).unwrap();
    assert_eq!(s.get(&a, b"k").as_deref(), Some(&b"1"[..]));
    assert_eq!(s.get(&b, b"k"), None);
    assert!(!s.delete(&b, b"k"));
}

#[test]
fn increment_and_cas_are_atomic_under_threads() {
    let s = Arc::new(store());
    let p: Arc<str> = "p".into();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (s, p) = (s.clone(), p.clone());
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    s.increment(&p, b"n", 1, None).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(s.increment(&p, b"n", 0, None), Ok(8000));
    assert_eq!(s.compare_and_swap(&p, b"c", None, b"x".to_vec(), None), Ok(true));
    assert_eq!(s.compare_and_swap(&p, b"c", None, b"y".to_vec(), None), Ok(false));
    assert_eq!(s.compare_and_swap(&p, b"c", Some(b"x"), b"y".to_vec(), None), Ok(true));
    assert_eq!(s.increment(&p, b"c", 1, None), Err(SharedError::NotACounter));
}

#[test]
fn expired_entries_vanish() {
    let s = store();
    let p: Arc<str> = "p".into();
    s.set(&p, b"k", b"v".to_vec(), Some(0)).unwrap();
    assert_eq!(s.get(&p, b"k"), None);
    assert_eq!(s.increment(&p, b"k", 5, None), Ok(5));
}

#[test]
fn quota_refuses_growth_and_keeps_what_is_stored() {
    let s = store();
    s.configure(&quota(3, 1000));
    let p: Arc<str> = "p".into();
    for k in [b"a", b"b", b"c"] {
        s.set(&p, k, b"v".to_vec(), None).unwrap();
    }
    // A fourth key: refused by entries; every kind of write.
    assert_eq!(s.set(&p, b"d", b"v".to_vec(), None), Err(SharedError::QuotaExceeded));
    assert_eq!(s.increment(&p, b"d", 1, None), Err(SharedError::QuotaExceeded));
    assert_eq!(
        s.compare_and_swap(&p, b"d", None, b"v".to_vec(), None),
        Err(SharedError::QuotaExceeded)
    );
    // Existing keys stay and can still change within the byte quota.
    assert_eq!(s.get(&p, b"a").as_deref(), Some(&b"v"[..]));
    s.set(&p, b"a", vec![b'x'; 100], None).unwrap();
    assert_eq!(s.set(&p, b"b", vec![b'x'; 1000], None), Err(SharedError::QuotaExceeded));
    // A delete makes room.
    assert!(s.delete(&p, b"c"));
    s.set(&p, b"d", b"v".to_vec(), None).unwrap();
    assert_eq!(usage(&s, "p"), recount(&s, "p"));
    // Another plugin is not affected.
    let q: Arc<str> = "q".into();
    s.set(&q, b"a", b"v".to_vec(), None).unwrap();
    let metrics = s.metrics.encode();
    assert!(
        metrics.contains(r#"sluice_shared_state_refused_total{plugin="p"} 4"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sluice_shared_state_entries{plugin="p"} 3"#),
        "{metrics}"
    );
}

#[test]
fn expired_entries_are_reclaimed_when_a_write_nears_the_quota() {
    let s = store();
    s.configure(&quota(2, 1000));
    let p: Arc<str> = "p".into();
    s.set(&p, b"old1", b"v".to_vec(), Some(0)).unwrap();
    s.set(&p, b"old2", b"v".to_vec(), Some(0)).unwrap();
    // Both expired: the write reclaims them instead of being refused.
    s.set(&p, b"new", b"v".to_vec(), None).unwrap();
    assert_eq!(usage(&s, "p"), (1, 4));
    assert_eq!(usage(&s, "p"), recount(&s, "p"));
}

#[test]
fn reclaiming_is_rate_limited() {
    let ns = Namespace::new(Quota::default(), Metrics::default().shared_state("p"));
    let t0 = Instant::now();
    assert!(ns.reclaim(t0));
    assert!(!ns.reclaim(t0 + RECLAIM_INTERVAL / 2));
    assert!(ns.reclaim(t0 + RECLAIM_INTERVAL));
}

#[test]
fn accounting_is_exact_under_concurrent_writes_expiry_and_deletes() {
    let s = Arc::new(store());
    s.configure(&quota(500, 20_000));
    let p: Arc<str> = "p".into();
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let (s, p) = (s.clone(), p.clone());
            std::thread::spawn(move || {
                let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for _ in 0..5000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = format!("k{}", x % 700);
                    let ttl = (x % 3 == 0).then_some(x % 2);
                    let _ = match x % 6 {
                        0 => s.set(&p, key.as_bytes(), vec![b'v'; (x % 64) as usize], ttl),
                        1 => s.increment(&p, key.as_bytes(), 1, ttl).map(drop),
                        2 => s
                            .compare_and_swap(&p, key.as_bytes(), None, vec![b'c'; (x % 32) as usize], ttl)
                            .map(drop),
                        3 => {
                            s.delete(&p, key.as_bytes());
                            Ok(())
                        }
                        4 => s
                            .acquire(&p, &[bucket(&key, 1, 1000), bucket("shared", 1, 1000)], 1, false)
                            .map(drop),
                        _ => {
                            s.purge_expired();
                            Ok(())
                        }
                    };
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (entries, bytes) = usage(&s, "p");
    assert_eq!((entries, bytes), recount(&s, "p"));
    assert!(entries <= 500 && bytes <= 20_000, "{entries} entries, {bytes} bytes");
    s.purge_expired();
    assert_eq!(usage(&s, "p"), recount(&s, "p"));
}

fn bucket(key: &str, interval_ns: u64, burst: u64) -> Bucket {
    Bucket {
        key: key.into(),
        interval_ns,
        tolerance_ns: interval_ns * burst,
    }
}

#[test]
fn rate_decisions_are_exact_under_threads() {
    let s = Arc::new(store());
    let p: Arc<str> = "p".into();
    // 25 tokens that do not come back within the test (one per hour).
    let limit = [bucket("fleet", 3_600_000_000_000, 25), bucket("other", 1, 1_000_000)];
    let allowed: usize = (0..8)
        .map(|_| {
            let (s, p, limit) = (s.clone(), p.clone(), limit.clone());
            std::thread::spawn(move || {
                (0..200)
                    .filter(|_| s.acquire(&p, &limit, 1, false).is_ok_and(|d| d.allowed))
                    .count()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .sum();
    assert_eq!(allowed, 25);
    assert_eq!(usage(&s, "p"), recount(&s, "p"));
}

#[test]
fn buckets_are_apart_from_values_and_from_local_buckets() {
    let s = store();
    let p: Arc<str> = "p".into();
    let one = [bucket("k", 3_600_000_000_000, 1)];
    assert!(s.acquire(&p, &one, 1, false).unwrap().allowed);
    assert!(!s.acquire(&p, &one, 1, false).unwrap().allowed);
    assert!(
        s.acquire(&p, &one, 1, true).unwrap().allowed,
        "the local bucket is another"
    );
    assert_eq!(s.get(&p, b"k"), None, "a bucket is not a value");
    s.set(&p, b"k", b"v".to_vec(), None).unwrap();
    assert!(!s.acquire(&p, &one, 1, false).unwrap().allowed, "nor a value a bucket");
    // Two buckets and one value, each its key plus 8 bytes (the value 1).
    assert_eq!(usage(&s, "p"), (3, 2 * (1 + 8) + 2));
    assert_eq!(usage(&s, "p"), recount(&s, "p"));
    assert!(s.acquire(&"q".into(), &one, 1, false).unwrap().allowed, "per plugin");
}

#[test]
fn a_refused_rate_decision_takes_nothing() {
    let s = store();
    s.configure(&quota(2, 1 << 20));
    let p: Arc<str> = "p".into();
    const HOUR: u64 = 3_600_000_000_000;
    let two = [bucket("a", HOUR, 10), bucket("b", HOUR, 10)];
    assert!(s.acquire(&p, &two[..1], 1, false).unwrap().allowed);
    s.set(&p, b"x", vec![1], None).unwrap();
    // "a" is there, "b" would be a third entry.
    assert_eq!(s.acquire(&p, &two, 1, false), Err(SharedError::QuotaExceeded));
    assert_eq!(usage(&s, "p"), (2, 1 + 8 + 2));
    assert_eq!(usage(&s, "p"), recount(&s, "p"));
    // "a" kept the one token it had given: nine are left.
    let read = s.acquire(&p, &two[..1], 0, false).unwrap();
    let left = (10 * HOUR - (read.tats[0] - read.now_ns)) / HOUR;
    assert_eq!(left, 9);
}
