//! The verified-token cache: the signature of a token is checked once per
//! filter instance, and later requests with the same token reuse the outcome
//! until the token expires. Entries are keyed by a 128-bit SipHash-2-4 of the
//! token under a random key drawn per instance, so the cache holds no bearer
//! token, and without the key nobody can choose a token whose fingerprint
//! matches a cached one. (SipHash replaced SHA-256 here: software SHA-256 in
//! Wasm was the largest single cost of a request through the four built-in
//! filters, ~3 µs; SipHash of a token is a few hundred instructions.)

use crate::Identity;
use crate::challenge::Denial;
use siphasher::sip128::{Hasher128, SipHasher24};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// A token's fingerprint under one cache's key.
pub(crate) type Fingerprint = u128;

/// What a verified token decided: the identity to admit, or a 403 (a valid
/// token that lacks a required scope or claim). Invalid tokens are never
/// cached, so a flood of forged tokens cannot evict good entries.
/// The identity is shared: a cache hit hands out a pointer to the cached
/// one, not a copy of its strings.
pub(crate) type Outcome = Result<Arc<Identity>, Denial>;

pub(crate) struct Entry {
    pub exp: u64,
    pub nbf: Option<u64>,
    pub outcome: Outcome,
}

pub(crate) struct TokenCache {
    capacity: usize,
    /// The SipHash key, from the host's random source.
    key: (u64, u64),
    entries: HashMap<Fingerprint, Entry, BuildHasherDefault<FingerprintHasher>>,
}

/// The map's hasher: a fingerprint is already a keyed 128-bit hash, so its
/// low 64 bits are the map's hash as they are (hashing them again with the
/// map's default SipHash cost as much as the lookup).
#[derive(Default)]
pub(crate) struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached for `u128` keys (`write_u128`); kept correct anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, fingerprint: u128) {
        self.0 = fingerprint as u64;
    }
}

impl TokenCache {
    /// A cache of at most `capacity` entries; 0 turns caching off.
    pub(crate) fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            key: (sluice_sdk::random::next_u64(), sluice_sdk::random::next_u64()),
            entries: HashMap::default(),
        }
    }

    /// The key under which `token` is cached.
    pub(crate) fn fingerprint(&self, token: &str) -> Fingerprint {
        let mut hasher = SipHasher24::new_with_keys(self.key.0, self.key.1);
        hasher.write(token.as_bytes());
        hasher.finish128().as_u128()
    }

    pub(crate) fn get(&self, fingerprint: &Fingerprint) -> Option<&Entry> {
        self.entries.get(fingerprint)
    }

    pub(crate) fn remove(&mut self, fingerprint: &Fingerprint) {
        self.entries.remove(fingerprint);
    }

    /// Store an entry. When full, drop the entries expired at `now` (with
    /// `leeway`); if that frees nothing, start over with an empty cache.
    pub(crate) fn insert(&mut self, fingerprint: Fingerprint, entry: Entry, now: u64, leeway: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&fingerprint) {
            self.entries.retain(|_, e| now < e.exp.saturating_add(leeway));
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        self.entries.insert(fingerprint, entry);
    }

    /// Forget every entry: the keys that verified them may be gone.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(exp: u64) -> Entry {
        Entry {
            exp,
            nbf: None,
            outcome: Err(Denial::Forbidden("x".into())),
        }
    }

    #[test]
    fn bounded_evicts_expired_then_clears() {
        let mut cache = TokenCache::new(2);
        cache.insert(1, entry(100), 0, 0);
        cache.insert(2, entry(1000), 0, 0);
        assert_eq!(cache.len(), 2);
        // At 200 the first entry has expired: it makes room.
        cache.insert(3, entry(1000), 200, 0);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&1).is_none());
        assert!(cache.get(&2).is_some());
        // Nothing expired: the cache starts over.
        cache.insert(4, entry(1000), 200, 0);
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&4).is_some());
        // Replacing an entry never evicts.
        cache.insert(5, entry(1000), 200, 0);
        cache.insert(5, entry(2000), 200, 0);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn leeway_keeps_recently_expired_entries() {
        // Without leeway, an entry past exp is expired and makes room.
        let mut cache = TokenCache::new(2);
        cache.insert(1, entry(100), 0, 0);
        cache.insert(2, entry(1000), 0, 0);
        cache.insert(3, entry(1000), 130, 0);
        assert!(cache.get(&1).is_none() && cache.get(&2).is_some());
        // With 60 s of leeway it is still usable at 130, so nothing is
        // expired and the full cache starts over instead.
        let mut cache = TokenCache::new(2);
        cache.insert(1, entry(100), 0, 0);
        cache.insert(2, entry(1000), 0, 0);
        cache.insert(3, entry(1000), 130, 60);
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&3).is_some());
    }

    #[test]
    fn fingerprints_depend_on_the_token_and_the_instance_key() {
        let (a, b) = (TokenCache::new(1), TokenCache::new(1));
        assert_eq!(a.fingerprint("token-1"), a.fingerprint("token-1"));
        assert_ne!(a.fingerprint("token-1"), a.fingerprint("token-2"));
        assert_ne!(a.fingerprint("token-1"), b.fingerprint("token-1"));
    }

    #[test]
    fn zero_capacity_disables() {
        let mut cache = TokenCache::new(0);
        cache.insert(1, entry(100), 0, 0);
        assert_eq!(cache.len(), 0);
    }
}
