//! Counters for every tier, kept as plain atomics until a metrics crate joins the workspace.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of a [`TieredCache`](super::TieredCache)'s counters since it was built.
///
/// Each read that reaches a tier counts once in that tier: a read served by L2 counts one
/// `l1_misses` and one `l2_hits`; a read served by the database counts `l1_misses`,
/// `l2_misses` (or `l2_errors`) and `loads`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Reads answered from this node's memory.
    pub l1_hits: u64,
    /// Reads not in this node's memory.
    pub l1_misses: u64,
    /// Reads answered by Redis.
    pub l2_hits: u64,
    /// Reads Redis answered with "not cached".
    pub l2_misses: u64,
    /// Calls of the caller's loader (the database).
    pub loads: u64,
    /// Redis operations (reads, fills, writes, invalidations) that did not take effect:
    /// failed, timed out, or were not attempted because Redis is marked down. Each one fell
    /// back to the next tier or was queued for replay; none reached the caller.
    pub l2_errors: u64,
    /// Invalidation messages this node published: one per `put`, one per 500 keys of an
    /// `invalidate` or of a replay of writes made while Redis was down.
    pub invalidations_sent: u64,
    /// Invalidation messages from other nodes this node applied to its memory.
    pub invalidations_received: u64,
    /// Times this node dropped its whole memory tier because it (re)subscribed to the
    /// invalidation channel and may have missed messages.
    pub l1_clears: u64,
    /// Whether the invalidation subscription is live and Redis answers: L2 is in use.
    pub redis_up: bool,
    /// Whether this node has Redis at all (`MERIT_REDIS_URL`); without it `redis_up` is
    /// false by design, not an outage.
    pub redis_configured: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) l1_hits: AtomicU64,
    pub(crate) l1_misses: AtomicU64,
    pub(crate) l2_hits: AtomicU64,
    pub(crate) l2_misses: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) l2_errors: AtomicU64,
    pub(crate) invalidations_sent: AtomicU64,
    pub(crate) invalidations_received: AtomicU64,
    pub(crate) l1_clears: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self, redis_configured: bool, redis_up: bool) -> CacheStats {
        CacheStats {
            l1_hits: self.l1_hits.load(Relaxed),
            l1_misses: self.l1_misses.load(Relaxed),
            l2_hits: self.l2_hits.load(Relaxed),
            l2_misses: self.l2_misses.load(Relaxed),
            loads: self.loads.load(Relaxed),
            l2_errors: self.l2_errors.load(Relaxed),
            invalidations_sent: self.invalidations_sent.load(Relaxed),
            invalidations_received: self.invalidations_received.load(Relaxed),
            l1_clears: self.l1_clears.load(Relaxed),
            redis_up,
            redis_configured,
        }
    }
}
