//! A small bounded map whose entries expire, for verified credentials.
//!
//! Keys are digests, never the credentials themselves. When full, expired
//! entries go first and then everything: a cache miss only costs a
//! verification, so dropping entries is always safe.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

/// A bounded map whose entries expire; when full, it drops expired
/// entries, and everything if none has expired.
pub struct ExpiringCache<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
    capacity: usize,
}

impl<K: Eq + Hash, V: Clone> ExpiringCache<K, V> {
    /// An empty cache for up to `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        ExpiringCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The value for `key`, if it has not expired by `now`.
    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some((until, value)) if *until > now => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `value` for `key` until `until` (nothing if that is not after `now`).
    pub fn insert(&self, key: K, value: V, until: Instant, now: Instant) {
        if until <= now || self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, (u, _)| *u > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (until, value));
    }

    /// Forgets `key`'s entry, if there is one.
    pub fn remove(&self, key: &K) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(key);
    }

    /// Entries held, expired ones included.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_expire_and_capacity_holds() {
        let cache = ExpiringCache::new(2);
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        cache.insert(1, "a", later, now);
        assert_eq!(cache.get(&1, now), Some("a"));
        assert_eq!(cache.get(&1, later), None, "expired at its deadline");
        cache.insert(1, "a", later, now);
        cache.insert(2, "b", now + Duration::from_secs(1), now);
        // Full: the expired entry (2) goes, the live one stays.
        let at = now + Duration::from_secs(2);
        cache.insert(3, "c", later, at);
        assert_eq!(cache.get(&1, at), Some("a"));
        assert_eq!(cache.get(&2, at), None);
        assert_eq!(cache.len(), 2);
        // Already expired values are never stored.
        cache.insert(4, "d", now, now);
        assert_eq!(cache.get(&4, now), None);
        cache.remove(&1);
        assert_eq!(cache.get(&1, at), None, "removed before its deadline");
    }
}
