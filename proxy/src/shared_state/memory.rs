//! The in-process shared-state backend: one namespace per plugin (the host
//! picks it from the calling plugin's name; a filter cannot name another's
//! keys), each a concurrent map with atomic read-modify-write operations,
//! optional expiry, a quota, and rate-limit buckets (see [`MemoryStore::acquire`]).
//!
//! Quotas bound what a plugin can make the host hold: live entries, and
//! bytes of keys plus values. A write that would pass either is refused
//! (the filter sees `limit-exceeded`; nothing is evicted). The counts are
//! kept exact under concurrency: each change to a key adjusts them while
//! that key's shard lock is held. Expired entries do not count against a
//! write: when one is refused, the namespace first drops its expired
//! entries (at most once per [`RECLAIM_INTERVAL`]) and tries again.
//!
//! Namespaces are separate maps, so expiring one plugin's large store never
//! takes a lock another plugin's calls need.

use super::gcra::{self, Bucket, RateDecision};
use super::{Quota, Quotas, SharedError};
use crate::metrics::{Metrics, SharedStateMetrics};
use crate::names::NameHasher;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use smallvec::SmallVec;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How often a namespace at its quota may scan for expired entries.
pub const RECLAIM_INTERVAL: Duration = Duration::from_secs(1);

/// Longest TTL honoured (longer ones are cut to it).
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

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

fn expiry(now: Instant, ttl_ms: Option<u64>) -> Option<Instant> {
    ttl_ms.map(|ms| now + Duration::from_millis(ms).min(MAX_TTL))
}

/// One plugin's keys, with what they hold counted against its quota.
#[derive(Debug)]
struct Namespace {
    map: DashMap<Vec<u8>, Entry>,
    max_entries: AtomicUsize,
    max_bytes: AtomicUsize,
    entries: AtomicUsize,
    bytes: AtomicUsize,
    last_reclaim: Mutex<Option<Instant>>,
    /// Held (in ascending order) across one rate decision's read and write
    /// of its buckets; only rate decisions touch bucket keys, so they are
    /// atomic among themselves.
    stripes: [Mutex<()>; STRIPES],
    metrics: SharedStateMetrics,
}

/// A change to what a namespace holds, as a write would make it.
#[derive(Debug, Clone, Copy)]
struct Change {
    entries: isize,
    bytes: isize,
}

/// What an entry counts against the byte quota: its key and value (a
/// bucket's key without the byte that marks its space).
fn size(key: &[u8], value_len: usize) -> isize {
    let key_len = if is_bucket(key) { key.len() - 1 } else { key.len() };
    isize::try_from(key_len + value_len).unwrap_or(isize::MAX)
}

/// Rate-limit buckets live in the same map as other keys, under keys that
/// start with a byte no UTF-8 string (so no `get`/`set` key) starts with:
/// one for `acquire`'s buckets and one for `acquire-local`'s.
const FLEET_BUCKET: u8 = 0xFE;
const LOCAL_BUCKET: u8 = 0xFF;

fn is_bucket(key: &[u8]) -> bool {
    matches!(key.first(), Some(&(FLEET_BUCKET | LOCAL_BUCKET)))
}

/// How many locks serialize one namespace's rate decisions.
const STRIPES: usize = 16;

/// Which stripe guards the bucket under `key`.
fn stripe(key: &[u8]) -> usize {
    use std::hash::{BuildHasher, Hasher};
    let mut h = STRIPE_HASHER.build_hasher();
    h.write(key);
    (h.finish() as usize) % STRIPES
}

static STRIPE_HASHER: std::sync::LazyLock<std::collections::hash_map::RandomState> =
    std::sync::LazyLock::new(std::collections::hash_map::RandomState::new);

/// A counter's entry holding `value`.
fn fresh_counter(value: i64, now: Instant, ttl_ms: Option<u64>) -> Entry {
    Entry {
        value: value.to_le_bytes().to_vec(),
        expires: expiry(now, ttl_ms),
    }
}

impl Namespace {
    fn new(quota: Quota, metrics: SharedStateMetrics) -> Namespace {
        Namespace {
            map: DashMap::new(),
            max_entries: AtomicUsize::new(quota.max_entries),
            max_bytes: AtomicUsize::new(quota.max_bytes),
            entries: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            last_reclaim: Mutex::new(None),
            stripes: Default::default(),
            metrics,
        }
    }

    /// Apply `change` if it keeps the namespace within its quota (shrinking
    /// always does). Called with the key's shard lock held.
    fn reserve(&self, change: Change) -> bool {
        if !add_within(&self.bytes, change.bytes, self.max_bytes.load(Ordering::Relaxed)) {
            return false;
        }
        if !add_within(&self.entries, change.entries, self.max_entries.load(Ordering::Relaxed)) {
            add_within(&self.bytes, -change.bytes, usize::MAX);
            return false;
        }
        self.publish();
        true
    }

    fn release(&self, key: &[u8], entry: &Entry) {
        self.reserve(Change {
            entries: -1,
            bytes: -size(key, entry.value.len()),
        });
    }

    fn publish(&self) {
        let gauge = |n: &AtomicUsize| i64::try_from(n.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        self.metrics.entries.set(gauge(&self.entries));
        self.metrics.bytes.set(gauge(&self.bytes));
    }

    /// Drop expired entries.
    fn purge(&self, now: Instant) {
        self.map.retain(|key, entry| {
            let live = entry.live(now);
            if !live {
                self.release(key, entry);
            }
            live
        });
    }

    /// After a refused write: purge expired entries unless that was done
    /// within [`RECLAIM_INTERVAL`]; whether it purged. This scan runs in the
    /// refused call, on its worker: it is bounded by the quota's
    /// `max_entries` and happens at most once per interval per plugin, and
    /// only for a plugin at its quota.
    fn reclaim(&self, now: Instant) -> bool {
        {
            let mut last = self.last_reclaim.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| now.saturating_duration_since(t) < RECLAIM_INTERVAL) {
                return false;
            }
            *last = Some(now);
        }
        self.purge(now);
        true
    }

    /// Run `write` (which reserves what it adds, and reports a refusal as
    /// `QuotaExceeded`); if the quota refused it, reclaim expired entries
    /// and run it once more. A final refusal is counted.
    fn write<T>(&self, now: Instant, mut write: impl FnMut() -> Result<T, SharedError>) -> Result<T, SharedError> {
        match write() {
            Err(SharedError::QuotaExceeded) if self.reclaim(now) => {}
            other => return self.counted(other),
        }
        let retried = write();
        self.counted(retried)
    }

    fn counted<T>(&self, result: Result<T, SharedError>) -> Result<T, SharedError> {
        if let Err(SharedError::QuotaExceeded) = result {
            self.metrics.refused.inc();
        }
        result
    }

    /// Reserve what storing a value of `value_len` bytes under `key`, in
    /// place of `old`, adds. Called with the key's shard lock held.
    fn make_room(&self, key: &[u8], old: Option<&Entry>, value_len: usize) -> Result<(), SharedError> {
        let change = Change {
            entries: if old.is_some() { 0 } else { 1 },
            bytes: size(key, value_len) - old.map_or(0, |o| size(key, o.value.len())),
        };
        if self.reserve(change) {
            Ok(())
        } else {
            Err(SharedError::QuotaExceeded)
        }
    }

    /// Store `entry` under `key` (replacing whatever is there), within quota.
    fn put(&self, key: &[u8], entry: Entry, now: Instant) -> Result<(), SharedError> {
        // Moved into the map by the attempt that succeeds.
        let mut pending = Some(entry);
        self.write(now, || self.put_once(key, &mut pending).map(drop))
    }

    /// One attempt of [`Namespace::put`], moving the entry out of `pending`
    /// if it fits: the previous entry, if any.
    fn put_once(&self, key: &[u8], pending: &mut Option<Entry>) -> Result<Option<Entry>, SharedError> {
        let Some(entry) = pending.take() else {
            return Ok(None);
        };
        // Most writes replace a live entry: found by the borrowed key, with
        // no copy of it made.
        if let Some(mut held) = self.map.get_mut(key) {
            if let Err(e) = self.make_room(key, Some(&*held), entry.value.len()) {
                *pending = Some(entry);
                return Err(e);
            }
            return Ok(Some(std::mem::replace(&mut *held, entry)));
        }
        let slot = self.map.entry(key.to_vec());
        if let Err(e) = self.make_room(key, occupant(&slot), entry.value.len()) {
            *pending = Some(entry);
            return Err(e);
        }
        Ok(match slot {
            MapEntry::Occupied(mut o) => Some(o.insert(entry)),
            MapEntry::Vacant(v) => {
                v.insert(entry);
                None
            }
        })
    }

    /// Put back what `key` held before a write that is being undone.
    fn restore(&self, key: &[u8], previous: Option<Entry>) {
        match previous {
            // The same size as the entry it replaces (8 bytes), so it fits.
            Some(entry) => {
                let _ = self.put_once(key, &mut Some(entry));
            }
            None => {
                if let MapEntry::Occupied(o) = self.map.entry(key.to_vec()) {
                    self.release(o.key(), o.get());
                    o.remove();
                }
            }
        }
    }

    /// A bucket's stored TAT, if live.
    fn tat(&self, key: &[u8], now: Instant) -> Option<u64> {
        let entry = self.map.get(key)?;
        let bytes: [u8; 8] = entry.value.as_slice().try_into().ok()?;
        entry.live(now).then(|| u64::from_le_bytes(bytes))
    }

    /// Store every bucket's new TAT, or none of them (the quota refused one).
    fn store_tats(&self, keys: &[Vec<u8>], tats: &[u64], now_ns: u64, now: Instant) -> Result<(), SharedError> {
        let mut done: SmallVec<[_; 4]> = SmallVec::new();
        for (key, &tat) in keys.iter().zip(tats) {
            let entry = Entry {
                value: tat.to_le_bytes().to_vec(),
                expires: Some(now + gcra::time_to_full(tat, now_ns)),
            };
            match self.put_once(key, &mut Some(entry)) {
                Ok(previous) => done.push((key, previous)),
                Err(e) => {
                    for (key, previous) in done.into_iter().rev() {
                        self.restore(key, previous);
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

/// The entry a map slot holds, if any.
fn occupant<'a>(slot: &'a MapEntry<'_, Vec<u8>, Entry>) -> Option<&'a Entry> {
    match slot {
        MapEntry::Occupied(o) => Some(o.get()),
        MapEntry::Vacant(_) => None,
    }
}

/// `*counter + delta` if it stays ≤ `max` (a decrease always applies).
fn add_within(counter: &AtomicUsize, delta: isize, max: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            let next = n.checked_add_signed(delta).unwrap_or(0);
            (delta <= 0 || next <= max).then_some(next)
        })
        .is_ok()
}

/// The store: a namespace per plugin.
pub struct MemoryStore {
    namespaces: DashMap<Arc<str>, Arc<Namespace>, NameHasher>,
    quotas: RwLock<Quotas>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("namespaces", &self.namespaces.len())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    pub fn new(metrics: Arc<Metrics>) -> MemoryStore {
        MemoryStore {
            namespaces: DashMap::default(),
            quotas: RwLock::new(Quotas::default()),
            metrics,
        }
    }

    /// Apply `quotas` to every namespace, present and future. A lowered
    /// quota keeps what is stored and refuses growth.
    pub fn configure(&self, quotas: &Quotas) {
        *self.quotas.write().unwrap_or_else(|e| e.into_inner()) = quotas.clone();
        for ns in self.namespaces.iter() {
            let quota = quotas.of(ns.key());
            ns.max_entries.store(quota.max_entries, Ordering::Relaxed);
            ns.max_bytes.store(quota.max_bytes, Ordering::Relaxed);
        }
    }

    fn namespace(&self, plugin: &Arc<str>) -> Arc<Namespace> {
        if let Some(ns) = self.namespaces.get(plugin) {
            return ns.clone();
        }
        // The quota is read under the map's lock, so a `configure` running
        // meanwhile either sees this namespace or is seen by it.
        self.namespaces
            .entry(plugin.clone())
            .or_insert_with(|| {
                let quota = self.quotas.read().unwrap_or_else(|e| e.into_inner()).of(plugin);
                Arc::new(Namespace::new(quota, self.metrics.shared_state(plugin)))
            })
            .clone()
    }

    pub fn get(&self, plugin: &Arc<str>, key: &[u8]) -> Option<Vec<u8>> {
        let now = Instant::now();
        let ns = self.namespaces.get(plugin)?.clone();
        ns.map.get(key).filter(|e| e.live(now)).map(|e| e.value.clone())
    }

    pub fn set(&self, plugin: &Arc<str>, key: &[u8], value: Vec<u8>, ttl_ms: Option<u64>) -> Result<(), SharedError> {
        let now = Instant::now();
        let entry = Entry {
            value,
            expires: expiry(now, ttl_ms),
        };
        self.namespace(plugin).put(key, entry, now)
    }

    pub fn delete(&self, plugin: &Arc<str>, key: &[u8]) -> bool {
        let now = Instant::now();
        let Some(ns) = self.namespaces.get(plugin).map(|n| n.clone()) else {
            return false;
        };
        // Released while the key's lock is held, like every other change.
        match ns.map.entry(key.to_vec()) {
            MapEntry::Occupied(o) => {
                ns.release(o.key(), o.get());
                let (_, entry) = o.remove_entry();
                entry.live(now)
            }
            MapEntry::Vacant(_) => false,
        }
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
        let ns = self.namespace(plugin);
        ns.write(now, || {
            let slot = ns.map.entry(key.to_vec());
            if let MapEntry::Occupied(mut o) = slot {
                if o.get().live(now) {
                    let bytes: [u8; 8] = o
                        .get()
                        .value
                        .as_slice()
                        .try_into()
                        .map_err(|_| SharedError::NotACounter)?;
                    let next = i64::from_le_bytes(bytes).wrapping_add(delta);
                    o.get_mut().value = next.to_le_bytes().to_vec();
                    return Ok(next);
                }
                // Expired: starts again from zero, as if absent.
                ns.make_room(key, Some(o.get()), 8)?;
                o.insert(fresh_counter(delta, now, ttl_ms));
                return Ok(delta);
            }
            ns.make_room(key, None, 8)?;
            slot.insert(fresh_counter(delta, now, ttl_ms));
            Ok(delta)
        })
    }

    /// Replace the value if it equals `expected` (`None` = absent); whether
    /// it did.
    pub fn compare_and_swap(
        &self,
        plugin: &Arc<str>,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<bool, SharedError> {
        let now = Instant::now();
        let ns = self.namespace(plugin);
        let value_len = new.len();
        let expires = expiry(now, ttl_ms);
        // Moved into the map by the attempt that succeeds.
        let mut pending = Some(new);
        ns.write(now, || {
            let slot = ns.map.entry(key.to_vec());
            let old = occupant(&slot);
            let current = old.filter(|o| o.live(now)).map(|o| o.value.as_slice());
            if current != expected {
                return Ok(false);
            }
            ns.make_room(key, old, value_len)?;
            if let Some(value) = pending.take() {
                slot.insert(Entry { value, expires });
            }
            Ok(true)
        })
    }

    /// Take `cost` tokens from every bucket or from none (see
    /// [`gcra::decide`]), atomically with respect to every other rate
    /// decision on these buckets. `local` picks `acquire-local`'s space.
    pub fn acquire(
        &self,
        plugin: &Arc<str>,
        buckets: &[Bucket],
        cost: u32,
        local: bool,
    ) -> Result<RateDecision, SharedError> {
        gcra::validate(buckets)?;
        let now = Instant::now();
        let now_ns = gcra::unix_nanos();
        let ns = self.namespace(plugin);
        let space = if local { LOCAL_BUCKET } else { FLEET_BUCKET };
        // A rate decision carries one to a few buckets: the working lists
        // stay on the stack.
        let keys: SmallVec<[Vec<u8>; 4]> = buckets
            .iter()
            .map(|b| {
                let mut key = Vec::with_capacity(b.key.len() + 1);
                key.push(space);
                key.extend_from_slice(b.key.as_bytes());
                key
            })
            .collect();
        let mut stripes: SmallVec<[usize; 4]> = keys.iter().map(|k| stripe(k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let _held: SmallVec<[_; 4]> = stripes
            .iter()
            .map(|&i| ns.stripes[i].lock().unwrap_or_else(|e| e.into_inner()))
            .collect();
        let stored: SmallVec<[Option<u64>; 4]> = keys.iter().map(|k| ns.tat(k, now)).collect();
        let decision = gcra::decide(buckets, &stored, now_ns, cost);
        if decision.allowed && cost > 0 {
            ns.write(now, || ns.store_tats(&keys, &decision.tats, now_ns, now))?;
        }
        Ok(decision)
    }

    /// Drop expired entries, one namespace at a time (the server calls this
    /// every few seconds on a blocking thread, so keys written with a TTL
    /// and never read again do not accumulate).
    pub fn purge_expired(&self) {
        let now = Instant::now();
        let namespaces: Vec<Arc<Namespace>> = self.namespaces.iter().map(|n| n.clone()).collect();
        for ns in namespaces {
            ns.purge(now);
        }
    }
}

#[cfg(test)]
mod tests;
