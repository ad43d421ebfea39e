//! Shared state for filters: one concurrent map, keys namespaced by plugin
//! name on the host side, with atomic read-modify-write operations and
//! optional expiry. This is the in-process backend; a Redis backend for
//! state shared across replicas can implement the same operations.

use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|e| e > now)
    }
}

/// Why a shared-state operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedError {
    /// `increment` on a value that is not an 8-byte counter.
    NotACounter,
}

/// The store. Keys are `(plugin, key)`: a plugin cannot name another's keys.
#[derive(Debug, Default)]
pub struct SharedState {
    map: DashMap<(Arc<str>, Vec<u8>), Entry>,
}

fn expiry(now: Instant, ttl_ms: Option<u64>) -> Option<Instant> {
    ttl_ms.map(|ms| now + Duration::from_millis(ms.min(100 * 365 * 24 * 3600 * 1000)))
}

impl SharedState {
    pub fn get(&self, plugin: &Arc<str>, key: &[u8]) -> Option<Vec<u8>> {
        let now = Instant::now();
        self.map
            .get(&(plugin.clone(), key.to_vec()))
            .filter(|e| e.live(now))
            .map(|e| e.value.clone())
    }

    pub fn set(&self, plugin: &Arc<str>, key: &[u8], value: Vec<u8>, ttl_ms: Option<u64>) {
        let expires = expiry(Instant::now(), ttl_ms);
        self.map
            .insert((plugin.clone(), key.to_vec()), Entry { value, expires });
    }

    pub fn delete(&self, plugin: &Arc<str>, key: &[u8]) -> bool {
        let now = Instant::now();
        self.map
            .remove(&(plugin.clone(), key.to_vec()))
            .is_some_and(|(_, e)| e.live(now))
    }

    /// Add `delta` to the counter (absent or expired = 0); the new value.
    pub fn increment(
        &self,
        plugin: &Arc<str>,
        key: &[u8],
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> Result<i64, SharedError> {
        let now = Instant::now();
        match self.map.entry((plugin.clone(), key.to_vec())) {
            MapEntry::Occupied(mut o) if o.get().live(now) => {
                let bytes: [u8; 8] = o
                    .get()
                    .value
                    .as_slice()
                    .try_into()
                    .map_err(|_| SharedError::NotACounter)?;
                let next = i64::from_le_bytes(bytes).wrapping_add(delta);
                o.get_mut().value = next.to_le_bytes().to_vec();
                Ok(next)
            }
            MapEntry::Occupied(mut o) => {
                o.insert(Entry {
                    value: delta.to_le_bytes().to_vec(),
                    expires: expiry(now, ttl_ms),
                });
                Ok(delta)
            }
            MapEntry::Vacant(v) => {
                v.insert(Entry {
                    value: delta.to_le_bytes().to_vec(),
                    expires: expiry(now, ttl_ms),
                });
                Ok(delta)
            }
        }
    }

    /// Replace the value if it equals `expected` (`None` = absent).
    pub fn compare_and_swap(
        &self,
        plugin: &Arc<str>,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> bool {
        let now = Instant::now();
        let entry = Entry {
            value: new,
            expires: expiry(now, ttl_ms),
        };
        match self.map.entry((plugin.clone(), key.to_vec())) {
            MapEntry::Occupied(mut o) => {
                let current = o.get().live(now).then_some(o.get().value.as_slice());
                if current != expected {
                    return false;
                }
                o.insert(entry);
                true
            }
            MapEntry::Vacant(v) => {
                if expected.is_some() {
                    return false;
                }
                v.insert(entry);
                true
            }
        }
    }

    /// Drop expired entries (the server calls this every few seconds, so keys
    /// written with a TTL and never read again do not accumulate).
    pub fn purge_expired(&self) {
        let now = Instant::now();
        self.map.retain(|_, e| e.live(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_separate() {
        let s = SharedState::default();
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        s.set(&a, b"k", b"1".to_vec(), None);
        assert_eq!(s.get(&a, b"k").as_deref(), Some(&b"1"[..]));
        assert_eq!(s.get(&b, b"k"), None);
        assert!(!s.delete(&b, b"k"));
    }

    #[test]
    fn increment_and_cas_are_atomic_under_threads() {
        let s = Arc::new(SharedState::default());
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
        assert!(s.compare_and_swap(&p, b"c", None, b"x".to_vec(), None));
        assert!(!s.compare_and_swap(&p, b"c", None, b"y".to_vec(), None));
        assert!(s.compare_and_swap(&p, b"c", Some(b"x"), b"y".to_vec(), None));
        assert_eq!(s.increment(&p, b"c", 1, None), Err(SharedError::NotACounter));
    }

    #[test]
    fn expired_entries_vanish() {
        let s = SharedState::default();
        let p: Arc<str> = "p".into();
        s.set(&p, b"k", b"v".to_vec(), Some(0));
        assert_eq!(s.get(&p, b"k"), None);
        assert_eq!(s.increment(&p, b"k", 5, None), Ok(5));
    }
}
