//! The verified-token cache: the signature of a token is checked once per
//! filter instance, and later requests with the same token reuse the outcome
//! until the token expires. Entries are keyed by the token's SHA-256, so the
//! cache holds no bearer token.

use crate::Identity;
use crate::challenge::Denial;
use std::collections::HashMap;

/// What a verified token decided: the identity to admit, or a 403 (a valid
/// token that lacks a required scope or claim). Invalid tokens are never
/// cached, so a flood of forged tokens cannot evict good entries.
pub(crate) type Outcome = Result<Identity, Denial>;

pub(crate) struct Entry {
    pub exp: u64,
    pub nbf: Option<u64>,
    pub outcome: Outcome,
}

pub(crate) struct TokenCache {
    capacity: usize,
    entries: HashMap<[u8; 32], Entry>,
}

impl TokenCache {
    /// A cache of at most `capacity` entries; 0 turns caching off.
    pub(crate) fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            entries: HashMap::new(),
        }
    }

    pub(crate) fn get(&self, digest: &[u8; 32]) -> Option<&Entry> {
        self.entries.get(digest)
    }

    pub(crate) fn remove(&mut self, digest: &[u8; 32]) {
        self.entries.remove(digest);
    }

    /// Store an entry. When full, drop the entries expired at `now` (with
    /// `leeway`); if that frees nothing, start over with an empty cache.
    pub(crate) fn insert(&mut self, digest: [u8; 32], entry: Entry, now: u64, leeway: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&digest) {
            self.entries.retain(|_, e| now < e.exp.saturating_add(leeway));
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        self.entries.insert(digest, entry);
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
        cache.insert([1; 32], entry(100), 0, 0);
        cache.insert([2; 32], entry(1000), 0, 0);
        assert_eq!(cache.len(), 2);
        // At 200 the first entry has expired: it makes room.
        cache.insert([3; 32], entry(1000), 200, 0);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&[1; 32]).is_none());
        assert!(cache.get(&[2; 32]).is_some());
        // Nothing expired: the cache starts over.
        cache.insert([4; 32], entry(1000), 200, 0);
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&[4; 32]).is_some());
        // Replacing an entry never evicts.
        cache.insert([5; 32], entry(1000), 200, 0);
        cache.insert([5; 32], entry(2000), 200, 0);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn leeway_keeps_recently_expired_entries() {
        // Without leeway, an entry past exp is expired and makes room.
        let mut cache = TokenCache::new(2);
        cache.insert([1; 32], entry(100), 0, 0);
        cache.insert([2; 32], entry(1000), 0, 0);
        cache.insert([3; 32], entry(1000), 130, 0);
        assert!(cache.get(&[1; 32]).is_none() && cache.get(&[2; 32]).is_some());
        // With 60 s of leeway it is still usable at 130, so nothing is
        // expired and the full cache starts over instead.
        let mut cache = TokenCache::new(2);
        cache.insert([1; 32], entry(100), 0, 0);
        cache.insert([2; 32], entry(1000), 0, 0);
        cache.insert([3; 32], entry(1000), 130, 60);
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&[3; 32]).is_some());
    }

    #[test]
    fn zero_capacity_disables() {
        let mut cache = TokenCache::new(0);
        cache.insert([1; 32], entry(100), 0, 0);
        assert_eq!(cache.len(), 0);
    }
}
