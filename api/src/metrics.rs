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

fn line(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
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

/// The whole exposition.
pub(crate) async fn render(state: &ApiState) -> String {
    let mut out = state
        .metrics
        .as_ref()
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    let status = state.probe.status();
    let node = state.node_id.as_str();

    header(
        &mut out,
        "merit_up",
        "gauge",
        "1 while the node's supervision tree is healthy",
    );
    line(
        &mut out,
        "merit_up",
        &[("node", node)],
        u8::from(status.healthy),
    );
    header(
        &mut out,
        "merit_config_version",
        "gauge",
        "Active dynamic config version",
    );
    line(
        &mut out,
        "merit_config_version",
        &[("node", node)],
        status.config_version,
    );

    header(
        &mut out,
        "merit_resident_actors",
        "gauge",
        "Actors in memory per kind",
    );
    for r in &status.registries {
        line(
            &mut out,
            "merit_resident_actors",
            &[("node", node), ("kind", r.kind)],
            r.resident,
        );
    }
    for (name, help, get) in [
        (
            "merit_actor_turns_total",
            "Messages applied per actor kind",
            (|r| r.applied) as fn(&merit_supervisors::RegistryStatus) -> u64,
        ),
        (
            "merit_actor_commits_total",
            "Turns committed per actor kind (each applies one or more queued messages of one actor)",
            |r| r.turns,
        ),
        (
            "merit_actor_duplicates_total",
            "Redeliveries absorbed by the inbox",
            |r| r.duplicates,
        ),
        ("merit_actor_retries_total", "Turn retries", |r| r.retries),
        (
            "merit_actor_restarts_total",
            "Actor restarts after a panic",
            |r| r.restarts,
        ),
        (
            "merit_actor_conflicts_total",
            "Version conflicts (another writer)",
            |r| r.conflicts,
        ),
        (
            "merit_actor_dead_letters_total",
            "Messages dead-lettered by handlers",
            |r| r.dead_letters,
        ),
        (
            "merit_actor_activations_total",
            "Actors activated from storage",
            |r| r.activations,
        ),
        ("merit_actor_passivations_total", "Actors passivated", |r| {
            r.passivations
        }),
    ] {
        header(&mut out, name, "counter", help);
        for r in &status.registries {
            line(&mut out, name, &[("node", node), ("kind", r.kind)], get(r));
        }
    }

    header(
        &mut out,
        "merit_service_restarts_total",
        "counter",
        "Supervised service restarts",
    );
    for s in &status.services {
        line(
            &mut out,
            "merit_service_restarts_total",
            &[("node", node), ("service", &s.name)],
            s.restarts,
        );
    }
    header(
        &mut out,
        "merit_service_running",
        "gauge",
        "1 while a supervised service runs",
    );
    for s in &status.services {
        let running = matches!(s.state, merit_supervisors::ServiceState::Running);
        line(
            &mut out,
            "merit_service_running",
            &[("node", node), ("service", &s.name)],
            u8::from(running),
        );
    }
    header(
        &mut out,
        "merit_dependency_up",
        "gauge",
        "1 while a dependency answers",
    );
    for (name, up) in &status.dependencies {
        line(
            &mut out,
            "merit_dependency_up",
            &[("node", node), ("dependency", name)],
            u8::from(*up),
        );
    }

    header(
        &mut out,
        "merit_mailbox_depth",
        "gauge",
        "Messages ready in a queue",
    );
    if let Ok(depths) = state.transport.queue_depths().await {
        for (queue, ready) in depths {
            line(&mut out, "merit_mailbox_depth", &[("queue", &queue)], ready);
        }
    }

    header(
        &mut out,
        "merit_dead_letters_stored",
        "gauge",
        "Dead letters in the dead-letter table per state (waiting: not yet replayed or discarded)",
    );
    for s in merit_storage::DeadLetterState::ALL {
        let filter = merit_storage::DeadLetterFilter {
            state: Some(s),
            ..merit_storage::DeadLetterFilter::default()
        };
        if let Ok(n) = state.store.count_dead_letters(&filter).await {
            line(
                &mut out,
                "merit_dead_letters_stored",
                &[("state", s.as_str())],
                n,
            );
        }
    }

    if let Some(executor) = &state.sagas {
        header(&mut out, "merit_sagas", "gauge", "Sagas per state");
        if let Ok(counts) = executor.counts(None).await {
            for s in merit_sagas::SagaState::ALL {
                let n = counts.get(s).copied().unwrap_or(0);
                line(&mut out, "merit_sagas", &[("state", s.as_str())], n);
            }
        }
    }

    if let Some((pending, lag)) = outbox_lag(&state.store).await {
        header(
            &mut out,
            "merit_outbox_pending",
            "gauge",
            "Outbox rows not yet confirmed by the broker",
        );
        line(&mut out, "merit_outbox_pending", &[], pending);
        header(
            &mut out,
            "merit_outbox_lag_seconds_current",
            "gauge",
            "Age of the oldest unpublished outbox row",
        );
        line(&mut out, "merit_outbox_lag_seconds_current", &[], lag);
    }

    let c = &status.cache;
    header(
        &mut out,
        "merit_cache_hits_total",
        "counter",
        "Cache reads answered, per tier",
    );
    line(
        &mut out,
        "merit_cache_hits_total",
        &[("node", node), ("tier", "l1")],
        c.l1_hits,
    );
    line(
        &mut out,
        "merit_cache_hits_total",
        &[("node", node), ("tier", "l2")],
        c.l2_hits,
    );
    header(
        &mut out,
        "merit_cache_misses_total",
        "counter",
        "Cache reads not answered, per tier",
    );
    line(
        &mut out,
        "merit_cache_misses_total",
        &[("node", node), ("tier", "l1")],
        c.l1_misses,
    );
    line(
        &mut out,
        "merit_cache_misses_total",
        &[("node", node), ("tier", "l2")],
        c.l2_misses,
    );
    header(
        &mut out,
        "merit_cache_hit_ratio",
        "gauge",
        "Hits / (hits + misses) per tier since start",
    );
    for (tier, hits, misses) in [
        ("l1", c.l1_hits, c.l1_misses),
        ("l2", c.l2_hits, c.l2_misses),
    ] {
        let total = hits + misses;
        let ratio = if total == 0 {
            0.0
        } else {
            hits as f64 / total as f64
        };
        line(
            &mut out,
            "merit_cache_hit_ratio",
            &[("node", node), ("tier", tier)],
            ratio,
        );
    }
    // Only where Redis is configured: a node without it has no Redis to be down.
    if c.redis_configured {
        header(
            &mut out,
            "merit_cache_redis_up",
            "gauge",
            "1 while Redis (L2) is in use",
        );
        line(
            &mut out,
            "merit_cache_redis_up",
            &[("node", node)],
            u8::from(c.redis_up),
        );
    }

    if let Some(listener) = state.chain.as_ref().and_then(|c| c.listener.as_ref()) {
        let s = listener.get();
        header(
            &mut out,
            "merit_chain_checkpoint_lag_blocks",
            "gauge",
            "Chain head minus the listener's checkpoint (includes the confirmation depth)",
        );
        line(
            &mut out,
            "merit_chain_checkpoint_lag_blocks",
            &[("node", node)],
            s.lag.unwrap_or(0),
        );
        header(
            &mut out,
            "merit_chain_listener_ok",
            "gauge",
            "1 while the listener's last poll succeeded",
        );
        line(
            &mut out,
            "merit_chain_listener_ok",
            &[("node", node)],
            u8::from(s.last_error.is_none()),
        );
        header(
            &mut out,
            "merit_chain_reorgs_total",
            "counter",
            "Reorgs below the checkpoint detected",
        );
        line(
            &mut out,
            "merit_chain_reorgs_total",
            &[("node", node)],
            s.reorgs,
        );
    }

    header(
        &mut out,
        "merit_ws_sessions",
        "gauge",
        "WebSocket sessions on this node",
    );
    line(
        &mut out,
        "merit_ws_sessions",
        &[("node", node)],
        state.hub.sessions(),
    );
    out
}
