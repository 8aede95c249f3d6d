//! The dashboard's last 15 minutes: every 5 s this node samples what it did since the
//! previous sample (events in per type, turns per second and p99 turn latency per actor
//! kind) and where things stand (outbox lag, dead letters waiting, sagas per state), and
//! keeps the last 180 samples in memory. The live feed sends the whole history when a
//! dashboard connects and each new sample as it is taken. Nothing is stored: a restarted
//! node starts a new history.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use merit_supervisors::pulse::{quantile_ms, PulseSnapshot};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::state::ApiState;

/// Time between two samples.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Samples kept: 15 minutes.
pub(crate) const KEPT: usize = 180;

/// What the node did in one interval, and where things stood at its end.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Sample {
    /// End of the interval, milliseconds since the Unix epoch.
    pub t: i64,
    /// Events taken in per second, per event type (types with none are left out).
    pub events_in: BTreeMap<&'static str, f64>,
    /// Messages applied per second, per actor kind.
    pub turns: BTreeMap<&'static str, f64>,
    /// p99 turn latency in ms per actor kind (dispatch to outcome; a bucket's upper
    /// bound); absent for a kind without turns in the interval.
    pub p99_ms: BTreeMap<&'static str, f64>,
    /// Outbox rows not yet confirmed by the broker.
    pub outbox_pending: Option<u64>,
    /// Age of the oldest of them, seconds.
    pub outbox_lag_s: Option<f64>,
    /// Dead letters waiting to be replayed or discarded.
    pub dlq_waiting: Option<u64>,
    /// Sagas per state (absent on a node without a saga executor).
    pub sagas: BTreeMap<&'static str, u64>,
}

/// The samples and the channel new ones go out on.
#[derive(Debug)]
pub(crate) struct History {
    samples: Mutex<VecDeque<Arc<Sample>>>,
    tx: broadcast::Sender<Arc<Sample>>,
}

impl Default for History {
    fn default() -> Self {
        Self {
            samples: Mutex::new(VecDeque::with_capacity(KEPT)),
            tx: broadcast::channel(16).0,
        }
    }
}

impl History {
    /// Every sample kept, oldest first.
    pub(crate) fn all(&self) -> Vec<Arc<Sample>> {
        self.lock().iter().cloned().collect()
    }

    /// New samples from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Sample>> {
        self.tx.subscribe()
    }

    fn push(&self, sample: Sample) {
        let sample = Arc::new(sample);
        {
            let mut samples = self.lock();
            if samples.len() == KEPT {
                samples.pop_front();
            }
            samples.push_back(sample.clone());
        }
        let _ = self.tx.send(sample);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Sample>>> {
        self.samples.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the counters said at the previous sample.
struct Previous {
    at: Instant,
    pulse: PulseSnapshot,
    applied: BTreeMap<&'static str, u64>,
}

/// Samples every [`SAMPLE_EVERY`] while the API state lives (the HTTP server holds it; the
/// sampler stops once the server is gone).
pub(crate) async fn run_sampler(state: Weak<ApiState>) {
    let mut previous: Option<Previous> = None;
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(state) = state.upgrade() else { return };
        let status = state.probe.status();
        let pulse = state.probe.pulse();
        let now = Instant::now();
        let applied: BTreeMap<&'static str, u64> = status
            .registries
            .iter()
            .map(|r| (r.kind, r.applied))
            .collect();
        if let Some(prev) = &previous {
            let secs = now.duration_since(prev.at).as_secs_f64().max(0.001);
            let sample = sample(&state, prev, &pulse, &applied, secs).await;
            state.guards.history.push(sample);
        }
        previous = Some(Previous {
            at: now,
            pulse,
            applied,
        });
    }
}

async fn sample(
    state: &ApiState,
    prev: &Previous,
    pulse: &PulseSnapshot,
    applied: &BTreeMap<&'static str, u64>,
    secs: f64,
) -> Sample {
    let before = |list: &[(&'static str, u64)], name: &str| {
        list.iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| *v)
    };
    let events_in = pulse
        .events_in
        .iter()
        .map(|(t, n)| (*t, n.saturating_sub(before(&prev.pulse.events_in, t))))
        .filter(|(_, n)| *n > 0)
        .map(|(t, n)| (t, n as f64 / secs))
        .collect();
    let turns = applied
        .iter()
        .map(|(k, n)| {
            let was = prev.applied.get(k).copied().unwrap_or(0);
            (*k, n.saturating_sub(was) as f64 / secs)
        })
        .collect();
    let p99_ms = pulse
        .turn_latency
        .iter()
        .filter_map(|(kind, buckets)| {
            let was = prev.pulse.turn_latency.iter().find(|(k, _)| k == kind);
            let delta: Vec<u64> = buckets
                .iter()
                .enumerate()
                .map(|(i, n)| n.saturating_sub(was.map_or(0, |(_, b)| b[i])))
                .collect();
            quantile_ms(&delta, 0.99).map(|ms| (*kind, ms))
        })
        .collect();
    let outbox = crate::metrics::outbox_lag(&state.store).await;
    let sagas = match &state.sagas {
        Some(executor) => executor
            .counts(None)
            .await
            .map(|c| c.into_iter().map(|(s, n)| (s.as_str(), n)).collect())
            .unwrap_or_default(),
        None => BTreeMap::new(),
    };
    Sample {
        t: chrono::Utc::now().timestamp_millis(),
        events_in,
        turns,
        p99_ms,
        outbox_pending: outbox.map(|(n, _)| n),
        outbox_lag_s: outbox.map(|(_, s)| s),
        dlq_waiting: crate::routes::dlq::dlq_total(state).await,
        sagas,
    }
}
