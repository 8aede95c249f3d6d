//! Write generations: how a slow read-through fill learns that a write overtook it.
//!
//! A fill takes a [`Token`] *before* it reads L2 or the database; every write to a key
//! (`put`, `invalidate`, a remote invalidation) advances that key's generation *before* it
//! changes L1; a full clear advances the epoch. The fill may insert into L1 only if its
//! token is still current, and it checks that inside moka's per-key `and_compute_with`, the
//! same per-key lock writes go through — so "still current" and "insert" are one step.
//!
//! Generations live in a fixed array of counters indexed by the key's hash, not in a map:
//! memory stays bounded however many users pass through. Two keys sharing a counter only
//! cost a spurious conflict (a fill that skips L1 and is loaded again next time), never a
//! stale value.

use std::{
    hash::{BuildHasher, Hash, RandomState},
    sync::atomic::{AtomicU64, Ordering::SeqCst},
};

use super::CacheKey;

/// Counters in the array; 4096 × 8 bytes.
const STRIPES: usize = 4096;

/// What a fill saw when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    epoch: u64,
    generation: u64,
}

#[derive(Debug)]
pub(crate) struct Generations {
    epoch: AtomicU64,
    stripes: Box<[AtomicU64]>,
    hasher: RandomState,
}

impl Generations {
    pub(crate) fn new() -> Self {
        Self {
            epoch: AtomicU64::new(0),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: RandomState::new(),
        }
    }

    fn stripe(&self, key: &CacheKey) -> &AtomicU64 {
        let mut hasher = self.hasher.build_hasher();
        key.hash(&mut hasher);
        let hash = std::hash::Hasher::finish(&hasher);
        &self.stripes[(hash % STRIPES as u64) as usize]
    }

    /// Where `key` stands now; take it before reading any tier.
    pub(crate) fn token(&self, key: &CacheKey) -> Token {
        Token {
            epoch: self.epoch.load(SeqCst),
            generation: self.stripe(key).load(SeqCst),
        }
    }

    /// Whether nothing was written to `key` (and nothing cleared) since `token` was taken.
    pub(crate) fn is_current(&self, key: &CacheKey, token: Token) -> bool {
        self.token(key) == token
    }

    /// Records a write to `key`: fills that started earlier will not reach L1.
    pub(crate) fn advance(&self, key: &CacheKey) {
        self.stripe(key).fetch_add(1, SeqCst);
    }

    /// Records a full clear: no fill that started earlier will reach L1.
    pub(crate) fn advance_epoch(&self) {
        self.epoch.fetch_add(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_outdates_tokens_of_that_key() {
        let gens = Generations::new();
        let key = CacheKey::Benefits("0x01".into());
        let token = gens.token(&key);
        assert!(gens.is_current(&key, token));
        gens.advance(&key);
        assert!(!gens.is_current(&key, token));
        assert!(gens.is_current(&key, gens.token(&key)));
    }

    #[test]
    fn a_clear_outdates_every_token() {
        let gens = Generations::new();
        let keys: Vec<CacheKey> = (0..10)
            .map(|i| CacheKey::UserProfile(format!("0x{i:02x}")))
            .collect();
        let tokens: Vec<Token> = keys.iter().map(|k| gens.token(k)).collect();
        gens.advance_epoch();
        for (key, token) in keys.iter().zip(tokens) {
            assert!(!gens.is_current(key, token));
        }
    }
}
