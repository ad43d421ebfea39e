//! The per-request context every filter of a chain shares
//! (`sluice:filter/context`): string pairs set by one filter and read by
//! later ones, the access log and the request id.
//!
//! A request carries a handful of entries (the built-ins set one to three),
//! so they live in a vector searched front to back: no hasher to seed, no
//! key to hash, one allocation for the first four entries (a vector's
//! first growth). The host caps a context at `limits::MAX_CONTEXT_ENTRIES`
//! (256), which bounds a search.

/// The context of one request, in the order keys were first set.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Context {
    entries: Vec<(String, String)>,
}

impl Context {
    pub fn new() -> Context {
        Context::default()
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.entries.iter().position(|(k, _)| k == key)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).map(|i| self.entries[i].1.as_str())
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    /// Set `key`, returning the value it replaced.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        match self.position(&key) {
            Some(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            None => {
                self.entries.push((key, value));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.position(key).map(|i| self.entries.remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_replace_remove() {
        let mut c = Context::new();
        assert!(c.is_empty());
        assert_eq!(c.insert("auth.subject".into(), "alice".into()), None);
        assert_eq!(c.insert("split.cluster".into(), "canary".into()), None);
        assert_eq!(c.get("auth.subject"), Some("alice"));
        assert_eq!(c.get("auth"), None);
        assert_eq!(c.insert("auth.subject".into(), "bob".into()), Some("alice".into()));
        assert_eq!(c.len(), 2);
        assert_eq!(c.keys().collect::<Vec<_>>(), ["auth.subject", "split.cluster"]);
        assert_eq!(c.remove("auth.subject"), Some("bob".into()));
        assert_eq!(c.remove("auth.subject"), None);
        assert!(!c.contains_key("auth.subject"));
        assert_eq!(c.keys().collect::<Vec<_>>(), ["split.cluster"]);
        assert_eq!(c.get("split.cluster"), Some("canary"));
    }
}
