//! This node's own running counts for the dashboard's charts: events taken in per type and
//! turn latency per actor kind (in fixed buckets). The Prometheus recorder is process-wide,
//! so several nodes in one process (tests, `merit simulate`) would share it; these are
//! per node, and cost one relaxed atomic add per event.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use merit_messages::{ActorKind, EventType};
use serde::Serialize;

/// Upper bounds of the turn-latency buckets, milliseconds; a last bucket takes the rest.
pub const LATENCY_BOUNDS_MS: [f64; 14] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0,
];

const BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// The counters; shared by the node's shard consumers.
#[derive(Debug)]
pub struct Pulse {
    events_in: Vec<AtomicU64>,
    latency: [[AtomicU64; BUCKETS]; 3],
}

impl Default for Pulse {
    fn default() -> Self {
        Self {
            events_in: EventType::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            latency: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

/// The counts so far (they only grow).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PulseSnapshot {
    /// Events taken in (decoded from a shard), per event type.
    pub events_in: Vec<(&'static str, u64)>,
    /// Turns per actor kind and latency bucket ([`LATENCY_BOUNDS_MS`], then the rest).
    pub turn_latency: Vec<(&'static str, Vec<u64>)>,
}

fn kind_index(kind: ActorKind) -> usize {
    ActorKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

impl Pulse {
    /// Counts one event of `event_type` taken in.
    pub(crate) fn event_in(&self, event_type: EventType) {
        if let Some(i) = EventType::ALL.iter().position(|t| *t == event_type) {
            self.events_in[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one turn of `kind` that took `elapsed` from dispatch to outcome.
    pub(crate) fn turn(&self, kind: ActorKind, elapsed: Duration) {
        let ms = elapsed.as_secs_f64() * 1_000.0;
        let bucket = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(BUCKETS - 1);
        self.latency[kind_index(kind)][bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> PulseSnapshot {
        PulseSnapshot {
            events_in: EventType::ALL
                .iter()
                .zip(&self.events_in)
                .map(|(t, n)| (t.as_str(), n.load(Ordering::Relaxed)))
                .collect(),
            turn_latency: ActorKind::ALL
                .iter()
                .zip(&self.latency)
                .map(|(k, b)| {
                    (
                        k.as_str(),
                        b.iter().map(|n| n.load(Ordering::Relaxed)).collect(),
                    )
                })
                .collect(),
        }
    }
}

/// The `q` quantile (0-1) of turns counted in `buckets` (the difference of two snapshots'
/// buckets), in milliseconds: the upper bound of the bucket it falls in (the last bound
/// for the overflow bucket). `None` when there were no turns.
pub fn quantile_ms(buckets: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(LATENCY_BOUNDS_MS[i.min(LATENCY_BOUNDS_MS.len() - 1)]);
        }
    }
    LATENCY_BOUNDS_MS.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_events_and_reads_a_p99_from_latency_buckets() {
        let pulse = Pulse::default();
        pulse.event_in(EventType::VoteCast);
        pulse.event_in(EventType::VoteCast);
        let snap = pulse.snapshot();
        let votes = snap
            .events_in
            .iter()
            .find(|(t, _)| *t == EventType::VoteCast.as_str())
            .map(|(_, n)| *n);
        assert_eq!(votes, Some(2));
        for _ in 0..98 {
            pulse.turn(ActorKind::Proposal, Duration::from_millis(3));
        }
        pulse.turn(ActorKind::Proposal, Duration::from_millis(40));
        pulse.turn(ActorKind::Proposal, Duration::from_secs(60));
        let snap = pulse.snapshot();
        let proposal = &snap.turn_latency[1].1;
        assert_eq!(proposal.iter().sum::<u64>(), 100);
        assert_eq!(quantile_ms(proposal, 0.5), Some(5.0));
        assert_eq!(quantile_ms(proposal, 0.99), Some(50.0));
        assert_eq!(
            quantile_ms(proposal, 1.0),
            Some(10_000.0),
            "the overflow bucket"
        );
        assert_eq!(
            quantile_ms(&snap.turn_latency[0].1, 0.99),
            None,
            "no user turns"
        );
    }
}
