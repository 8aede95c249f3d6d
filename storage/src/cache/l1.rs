//! L1: this node's memory (moka), guarded by write generations.

use std::{
    any::Any,
    sync::{Arc, OnceLock},
    time::Duration,
};

use moka::{future::Cache, ops::compute::Op};
use serde::de::DeserializeOwned;

use super::{
    generation::{Generations, Token},
    CacheKey,
};

/// One cached record: its JSON (what L2 and other nodes see) and, once some reader asked
/// for it as a concrete type, that decoded value, so later hits only clone.
pub(crate) struct CachedValue {
    json: Arc<str>,
    typed: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl CachedValue {
    pub(crate) fn from_json(json: impl Into<Arc<str>>) -> Self {
        Self {
            json: json.into(),
            typed: OnceLock::new(),
        }
    }

    pub(crate) fn with_typed<T: Any + Send + Sync>(json: impl Into<Arc<str>>, value: T) -> Self {
        let cached = Self::from_json(json);
        let _ = cached.typed.set(Box::new(value));
        cached
    }

    /// The value as `T`. Fails only if the stored JSON is not a `T` (two callers reading one
    /// key as different types, or a record written by an incompatible build).
    pub(crate) fn decode<T>(&self) -> Result<T, serde_json::Error>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        if let Some(value) = self.typed.get().and_then(|b| b.downcast_ref::<T>()) {
            return Ok(value.clone());
        }
        let value: T = serde_json::from_str(&self.json)?;
        // Another type may already sit in the slot; then this reader just decodes each time.
        let _ = self.typed.set(Box::new(value.clone()));
        Ok(value)
    }
}

/// The in-process tier. Every mutation of one key goes through moka's per-key
/// `and_compute_with`, so a fill's "is my token still current?" check and its insert are
/// atomic with respect to writes of the same key (see [`super::generation`]).
pub(crate) struct L1 {
    cache: Cache<CacheKey, Arc<CachedValue>>,
    generations: Generations,
}

impl L1 {
    /// At most `capacity` entries, each living at most `ttl` after it was written: the bound
    /// on staleness whenever invalidations cannot reach this node.
    pub(crate) fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            generations: Generations::new(),
        }
    }

    pub(crate) async fn get(&self, key: &CacheKey) -> Option<Arc<CachedValue>> {
        self.cache.get(key).await
    }

    /// Where `key` stands now: take it before reading L2 or the database.
    pub(crate) fn token(&self, key: &CacheKey) -> Token {
        self.generations.token(key)
    }

    /// Inserts a value read from a lower tier, unless a write or clear happened since
    /// `token` was taken. Returns whether it was inserted.
    pub(crate) async fn fill(&self, key: &CacheKey, token: Token, value: CachedValue) -> bool {
        let value = Arc::new(value);
        let result = self
            .cache
            .entry_by_ref(key)
            .and_compute_with(|_| {
                let op = if self.generations.is_current(key, token) {
                    Op::Put(value)
                } else {
                    Op::Nop
                };
                std::future::ready(op)
            })
            .await;
        !matches!(
            result,
            moka::ops::compute::CompResult::StillNone(_)
                | moka::ops::compute::CompResult::Unchanged(_)
        )
    }

    /// Stores a newly written value, outdating every fill of `key` in flight.
    pub(crate) async fn set(&self, key: &CacheKey, value: CachedValue) {
        self.generations.advance(key);
        let value = Arc::new(value);
        self.cache
            .entry_by_ref(key)
            .and_compute_with(|_| std::future::ready(Op::Put(value)))
            .await;
    }

    /// Drops `key`, outdating every fill of it in flight.
    pub(crate) async fn remove(&self, key: &CacheKey) {
        self.generations.advance(key);
        self.cache
            .entry_by_ref(key)
            .and_compute_with(|_| std::future::ready(Op::Remove))
            .await;
    }

    /// Drops everything, outdating every fill in flight.
    pub(crate) fn clear(&self) {
        self.generations.advance_epoch();
        self.cache.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey::Benefits("0x01".into())
    }

    #[tokio::test]
    async fn a_fill_started_before_a_write_does_not_land() {
        let l1 = L1::new(100, Duration::from_secs(60));
        let token = l1.token(&key());
        l1.set(&key(), CachedValue::from_json("2")).await;
        assert!(!l1.fill(&key(), token, CachedValue::from_json("1")).await);
        let cached = l1.get(&key()).await.expect("the write is cached");
        assert_eq!(cached.decode::<i64>().expect("decodes"), 2);
    }

    #[tokio::test]
    async fn a_fill_started_before_a_remove_does_not_land() {
        let l1 = L1::new(100, Duration::from_secs(60));
        let token = l1.token(&key());
        l1.remove(&key()).await;
        assert!(!l1.fill(&key(), token, CachedValue::from_json("1")).await);
        assert!(l1.get(&key()).await.is_none());
    }

    #[tokio::test]
    async fn a_fill_started_before_a_clear_does_not_land() {
        let l1 = L1::new(100, Duration::from_secs(60));
        let token = l1.token(&key());
        l1.clear();
        assert!(!l1.fill(&key(), token, CachedValue::from_json("1")).await);
        assert!(l1.get(&key()).await.is_none());
    }

    #[tokio::test]
    async fn a_current_fill_lands() {
        let l1 = L1::new(100, Duration::from_secs(60));
        let token = l1.token(&key());
        assert!(l1.fill(&key(), token, CachedValue::from_json("1")).await);
        let cached = l1.get(&key()).await.expect("cached");
        assert_eq!(cached.decode::<i64>().expect("decodes"), 1);
    }

    #[test]
    fn a_typed_value_decodes_without_json_and_other_types_fall_back_to_json() {
        let cached = CachedValue::with_typed("7", 7_i64);
        assert_eq!(cached.decode::<i64>().expect("typed"), 7);
        assert_eq!(cached.decode::<u8>().expect("from json"), 7);
        assert!(cached.decode::<String>().is_err());
    }
}
