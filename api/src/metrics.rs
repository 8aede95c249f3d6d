//! `/metrics` in Prometheus text format.
//!
//! Two sources: counters and histograms recorded where things happen through the
//! `metrics` facade (events in and out per type, turn latency per kind, dead letters per
//! class, service restarts, saga transitions, …), rendered by the Prometheus recorder; and
//! gauges read from the node at scrape time (resident actors, mailbox depths, saga states,
//! outbox lag, cache tiers, chain checkpoint lag), written straight into the text so that
//! several nodes in one process (tests) never share a gauge.

use std::{fmt::Write, sync::OnceLock};

use merit_storage::{
    entities::outbox,
    sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder},
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::ApiState;

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets, seconds: 0.5 ms to 10 s.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the process-wide Prometheus recorder (once; later calls return the same
/// handle). `None` if another recorder was installed first.
pub fn install_recorder() -> Option<PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

/// Outbox rows not yet confirmed by the broker, and the age of the oldest in seconds.
pub(crate) async fn outbox_lag(store: &merit_storage::Store) -> Option<(u64, f64)> {
    let db = store.db();
    let pending = outbox::Entity::find()
        .filter(outbox::Column::PublishedAt.is_null())
        .count(db)
        .await
        .ok()?;
    let oldest = outbox::Entity::find()
        .filter(outbox::Column::PublishedAt.is_null())
        .order_by_asc(outbox::Column::Id)
        .one(db)
        .await
        .ok()
        .flatten();
    let lag = oldest.map_or(0.0, |row| {
        (chrono::Utc::now() - row.created_at)
            .num_milliseconds()
            .max(0) as f64
            / 1000.0
    });
    Some((pending, lag))
}

/// A sample's value: counts print as integers, ratios and seconds as floats.
#[derive(Debug, Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Self::Int(v)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Self::Int(v as u64)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Int(u64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Int(v) => v.fmt(f),
            Self::Float(v) => v.fmt(f),
        }
    }
}

/// One line of a series: its labels, in exposition order, and its value.
struct Sample {
    labels: Vec<(&'static str, String)>,
    value: Value,
}

impl Sample {
    fn new(labels: Vec<(&'static str, String)>, value: impl Into<Value>) -> Self {
        Self {
            labels,
            value: value.into(),
        }
    }
}

/// What one scrape reads from the node, before anything is written: the series below
/// only format it.
struct Scrape {
    node: String,
    status: merit_supervisors::NodeStatus,
    /// `None` when the transport did not answer (the series is then empty).
    depths: Option<Vec<(String, u64)>>,
    /// The states whose count the store answered.
    dead_letters: Vec<(&'static str, u64)>,
    /// `None` without a saga executor; `Some(None)` when it did not answer.
    sagas: Option<Option<std::collections::BTreeMap<merit_sagas::SagaState, u64>>>,
    outbox: Option<(u64, f64)>,
    /// The chain listener's status, when the node runs one.
    chain: Option<merit_chain::ListenerStatus>,
    ws_sessions: usize,
}

impl Scrape {
    async fn read(state: &ApiState) -> Self {
        let status = state.probe.status();
        let depths = state.transport.queue_depths().await.ok();
        let mut dead_letters = Vec::new();
        for s in merit_storage::DeadLetterState::ALL {
            let filter = merit_storage::DeadLetterFilter {
                state: Some(s),
                ..merit_storage::DeadLetterFilter::default()
            };
            if let Ok(n) = state.store.count_dead_letters(&filter).await {
                dead_letters.push((s.as_str(), n));
            }
        }
        let sagas = match &state.sagas {
            Some(executor) => Some(executor.counts(None).await.ok()),
            None => None,
        };
        let outbox = outbox_lag(&state.store).await;
        let chain = state
            .chain
            .as_ref()
            .and_then(|c| c.listener.as_ref())
            .map(merit_chain::StatusHandle::get);
        Self {
            node: state.node_id.clone(),
            status,
            depths,
            dead_letters,
            sagas,
            outbox,
            chain,
            ws_sessions: state.hub.sessions(),
        }
    }

    /// One sample labelled with the node only.
    fn per_node(&self, value: impl Into<Value>) -> Option<Vec<Sample>> {
        Some(vec![Sample::new(vec![("node", self.node.clone())], value)])
    }

    /// One sample per actor kind.
    fn per_kind<V: Into<Value>>(
        &self,
        get: fn(&merit_supervisors::RegistryStatus) -> V,
    ) -> Option<Vec<Sample>> {
        let samples = self.status.registries.iter().map(|r| {
            let labels = vec![("node", self.node.clone()), ("kind", r.kind.to_string())];
            Sample::new(labels, get(r))
        });
        Some(samples.collect())
    }

    /// One sample per supervised service.
    fn per_service<V: Into<Value>>(
        &self,
        get: fn(&merit_supervisors::ServiceStatus) -> V,
    ) -> Option<Vec<Sample>> {
        let samples = self.status.services.iter().map(|s| {
            let labels = vec![("node", self.node.clone()), ("service", s.name.clone())];
            Sample::new(labels, get(s))
        });
        Some(samples.collect())
    }

    /// One sample per cache tier, of `get(hits, misses)`.
    fn per_tier(&self, get: fn(u64, u64) -> Value) -> Option<Vec<Sample>> {
        let c = &self.status.cache;
        let tiers = [
            ("l1", c.l1_hits, c.l1_misses),
            ("l2", c.l2_hits, c.l2_misses),
        ];
        let samples = tiers.into_iter().map(|(tier, hits, misses)| {
            let labels = vec![("node", self.node.clone()), ("tier", tier.to_string())];
            Sample::new(labels, get(hits, misses))
        });
        Some(samples.collect())
    }

    /// One sample per value of `label`, without the node (the value names a shared thing).
    fn per_label<'a, V: Into<Value> + 'a>(
        label: &'static str,
        values: impl IntoIterator<Item = (&'a str, V)>,
    ) -> Vec<Sample> {
        values
            .into_iter()
            .map(|(v, n)| Sample::new(vec![(label, v.to_string())], n))
            .collect()
    }
}

/// The share of reads answered, 0 before any read.
fn hit_ratio(hits: u64, misses: u64) -> Value {
    let total = hits + misses;
    Value::Float(if total == 0 {
        0.0
    } else {
        hits as f64 / total as f64
    })
}

/// One series of the exposition. `read` gives its samples, or `None` when the node has
/// no such thing (then not even its header is written).
struct Series {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    read: fn(&Scrape) -> Option<Vec<Sample>>,
}

const GAUGE: &str = "gauge";
const COUNTER: &str = "counter";

/// The series read from the node at scrape time, in exposition order.
const SERIES: &[Series] = &[
    Series {
        name: "merit_up",
        kind: GAUGE,
        help: "1 while the node's supervision tree is healthy",
        read: |s| s.per_node(s.status.healthy),
    },
    Series {
        name: "merit_config_version",
        kind: GAUGE,
        help: "Active dynamic config version",
        read: |s| s.per_node(s.status.config_version),
    },
    Series {
        name: "merit_resident_actors",
        kind: GAUGE,
        help: "Actors in memory per kind",
        read: |s| s.per_kind(|r| r.resident),
    },
    Series {
        name: "merit_actor_turns_total",
        kind: COUNTER,
        help: "Messages applied per actor kind",
        read: |s| s.per_kind(|r| r.applied),
    },
    Series {
        name: "merit_actor_commits_total",
        kind: COUNTER,
        help: "Turns committed per actor kind (each applies one or more queued messages of one actor)",
        read: |s| s.per_kind(|r| r.turns),
    },
    Series {
        name: "merit_actor_duplicates_total",
        kind: COUNTER,
        help: "Redeliveries absorbed by the inbox",
        read: |s| s.per_kind(|r| r.duplicates),
    },
    Series {
        name: "merit_actor_retries_total",
        kind: COUNTER,
        help: "Turn retries",
        read: |s| s.per_kind(|r| r.retries),
    },
    Series {
        name: "merit_actor_restarts_total",
        kind: COUNTER,
        help: "Actor restarts after a panic",
        read: |s| s.per_kind(|r| r.restarts),
    },
    Series {
        name: "merit_actor_conflicts_total",
        kind: COUNTER,
        help: "Version conflicts (another writer)",
        read: |s| s.per_kind(|r| r.conflicts),
    },
    Series {
        name: "merit_actor_dead_letters_total",
        kind: COUNTER,
        help: "Messages dead-lettered by handlers",
        read: |s| s.per_kind(|r| r.dead_letters),
    },
    Series {
        name: "merit_actor_activations_total",
        kind: COUNTER,
        help: "Actors activated from storage",
        read: |s| s.per_kind(|r| r.activations),
    },
    Series {
        name: "merit_actor_passivations_total",
        kind: COUNTER,
        help: "Actors passivated",
        read: |s| s.per_kind(|r| r.passivations),
    },
    Series {
        name: "merit_service_restarts_total",
        kind: COUNTER,
        help: "Supervised service restarts",
        read: |s| s.per_service(|svc| svc.restarts),
    },
    Series {
        name: "merit_service_running",
        kind: GAUGE,
        help: "1 while a supervised service runs",
        read: |s| {
            s.per_service(|svc| matches!(svc.state, merit_supervisors::ServiceState::Running))
        },
    },
    Series {
        name: "merit_dependency_up",
        kind: GAUGE,
        help: "1 while a dependency answers",
        read: |s| {
            let samples = s.status.dependencies.iter().map(|(name, up)| {
                let labels = vec![("node", s.node.clone()), ("dependency", name.clone())];
                Sample::new(labels, *up)
            });
            Some(samples.collect())
        },
    },
    Series {
        name: "merit_mailbox_depth",
        kind: GAUGE,
        help: "Messages ready in a queue",
        read: |s| {
            let depths = s.depths.iter().flatten();
            Some(Scrape::per_label("queue", depths.map(|(q, n)| (q.as_str(), *n))))
        },
    },
    Series {
        name: "merit_dead_letters_stored",
        kind: GAUGE,
        help: "Dead letters in the dead-letter table per state (waiting: not yet replayed or discarded)",
        read: |s| Some(Scrape::per_label("state", s.dead_letters.iter().copied())),
    },
    Series {
        name: "merit_sagas",
        kind: GAUGE,
        help: "Sagas per state",
        read: |s| {
            let counts = s.sagas.as_ref()?;
            // Every state, counted or not, so that a state's series never disappears.
            let all = counts.iter().flat_map(|counts| {
                merit_sagas::SagaState::ALL
                    .iter()
                    .map(|st| (st.as_str(), counts.get(st).copied().unwrap_or(0)))
            });
            Some(Scrape::per_label("state", all))
        },
    },
    Series {
        name: "merit_outbox_pending",
        kind: GAUGE,
        help: "Outbox rows not yet confirmed by the broker",
        read: |s| s.outbox.map(|(pending, _)| vec![Sample::new(vec![], pending)]),
    },
    Series {
        name: "merit_outbox_lag_seconds_current",
        kind: GAUGE,
        help: "Age of the oldest unpublished outbox row",
        read: |s| s.outbox.map(|(_, lag)| vec![Sample::new(vec![], lag)]),
    },
    Series {
        name: "merit_cache_hits_total",
        kind: COUNTER,
        help: "Cache reads answered, per tier",
        read: |s| s.per_tier(|hits, _| Value::Int(hits)),
    },
    Series {
        name: "merit_cache_misses_total",
        kind: COUNTER,
        help: "Cache reads not answered, per tier",
        read: |s| s.per_tier(|_, misses| Value::Int(misses)),
    },
    Series {
        name: "merit_cache_hit_ratio",
        kind: GAUGE,
        help: "Hits / (hits + misses) per tier since start",
        read: |s| s.per_tier(hit_ratio),
    },
    // Only where Redis is configured: a node without it has no Redis to be down.
    Series {
        name: "merit_cache_redis_up",
        kind: GAUGE,
        help: "1 while Redis (L2) is in use",
        read: |s| {
            let c = &s.status.cache;
            c.redis_configured.then(|| s.per_node(c.redis_up)).flatten()
        },
    },
    Series {
        name: "merit_chain_checkpoint_lag_blocks",
        kind: GAUGE,
        help: "Chain head minus the listener's checkpoint (includes the confirmation depth)",
        read: |s| s.per_node(s.chain.as_ref()?.lag.unwrap_or(0)),
    },
    Series {
        name: "merit_chain_listener_ok",
        kind: GAUGE,
        help: "1 while the listener's last poll succeeded",
        read: |s| s.per_node(s.chain.as_ref()?.last_error.is_none()),
    },
    Series {
        name: "merit_chain_reorgs_total",
        kind: COUNTER,
        help: "Reorgs below the checkpoint detected",
        read: |s| s.per_node(s.chain.as_ref()?.reorgs),
    },
    Series {
        name: "merit_ws_sessions",
        kind: GAUGE,
        help: "WebSocket sessions on this node",
        read: |s| s.per_node(s.ws_sessions),
    },
];

fn line(out: &mut String, name: &str, labels: &[(&str, String)], value: Value) {
    let _ = write!(out, "{name}");
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let escaped = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = write!(out, "{k}=\"{escaped}\"");
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The whole exposition: the recorder's series, then [`SERIES`] read from the node.
pub(crate) async fn render(state: &ApiState) -> String {
    let mut out = state
        .metrics
        .as_ref()
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    let scrape = Scrape::read(state).await;
    for series in SERIES {
        let Some(samples) = (series.read)(&scrape) else {
            continue;
        };
        header(&mut out, series.name, series.kind, series.help);
        for sample in samples {
            line(&mut out, series.name, &sample.labels, sample.value);
        }
    }
    out
}
