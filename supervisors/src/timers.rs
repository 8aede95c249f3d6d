//! Three periodic services every node runs:
//!
//! - the **deadline timer**: proposals' open and close times are persisted with the
//!   proposal; every `interval` the timer asks the store which are due and emits
//!   `governance.proposal.deadline` through the outbox, with an id derived from
//!   (proposal, phase). Every node runs it, so deadlines fire whichever nodes are alive
//!   and after any restart; the timer's own inbox row (consumer `deadline-timer`) makes
//!   each deadline one outbox row, and the ProposalActor's inbox applies it once.
//! - the **config watcher**: polls the config center's latest version every `interval`
//!   and activates a newer one on this node (all actors see it from their next turn).
//!   `config.changed` on the bus tells other consumers; polling the store is what makes a
//!   node that missed the broadcast (down, disconnected, started later) converge anyway.
//! - the **retention sweeper**: every `interval` deletes inbox rows, published outbox rows
//!   and notifications older than their retention ([`Store::sweep`]). Every node runs it;
//!   a row is deleted once whichever node gets to it.

use std::time::Duration;

use chrono::Utc;
use merit_actors::center::ConfigCenter;
use merit_config::ConfigHandle;
use merit_messages::{DeadlinePhase, Envelope, EventId, ProposalDeadline};
use merit_storage::{mark_deadline_fired, OutboxMessage, Retention, Store, Turn, TurnOutcome};
use tokio::sync::watch;

use crate::error::Result;

/// Most due proposals handled per tick.
const DUE_BATCH: u64 = 500;

/// The consumer name of the timer's inbox rows.
pub const DEADLINE_CONSUMER: &str = "deadline-timer";

/// The deterministic envelope of one deadline.
pub fn deadline_envelope(
    proposal: &str,
    phase: DeadlinePhase,
    due_at: chrono::DateTime<Utc>,
) -> Option<Envelope> {
    let label = match phase {
        DeadlinePhase::Open => "open",
        DeadlinePhase::Close => "close",
    };
    let id = EventId::named(&format!("deadline:{proposal}:{label}"));
    let proposal = proposal.parse().ok()?;
    // Stamped now (never before it is due): the actor refuses an early deadline.
    let at = Utc::now().max(due_at);
    Some(Envelope::with_id(
        id,
        DEADLINE_CONSUMER,
        at,
        ProposalDeadline {
            proposal,
            phase,
            due_at,
        },
    ))
}

/// Emits the deadlines due now; returns how many were newly emitted.
pub async fn fire_due_deadlines(store: &Store) -> Result<usize> {
    let now = Utc::now();
    let due = store.due_proposals(now, DUE_BATCH).await?;
    let mut fired = 0;
    for p in due {
        let mut phases = Vec::new();
        if p.status == "pending" && p.starts_at <= now && p.fired < 1 {
            phases.push((DeadlinePhase::Open, p.starts_at, 1));
        }
        if p.ends_at <= now && p.fired < 2 {
            phases.push((DeadlinePhase::Close, p.ends_at, 2));
        }
        for (phase, due_at, level) in phases {
            let Some(envelope) = deadline_envelope(&p.id, phase, due_at) else {
                tracing::warn!(proposal = %p.id, "proposal id in the store does not parse; skipping its deadline");
                continue;
            };
            let turn = Turn {
                consumer: DEADLINE_CONSUMER.to_string(),
                event_id: envelope.id,
                batched: Vec::new(),
                state: None,
                outbox: vec![OutboxMessage::from_envelope(&envelope)],
            };
            // The proposal remembers the emitted deadline in the same transaction, so the
            // next scan passes over it even if its actor never applies it.
            match store
                .commit_turn(turn, mark_fired(p.id.clone(), level))
                .await?
            {
                TurnOutcome::Applied { .. } => {
                    fired += 1;
                    tracing::info!(proposal = %p.id, ?phase, "deadline due: emitted");
                }
                // Emitted before (by this node or another): make sure it is marked.
                TurnOutcome::Duplicate => mark_deadline_fired(store.db(), &p.id, level).await?,
            }
        }
    }
    Ok(fired)
}

/// The projection of a timer turn: the proposal's `deadlines_fired` raised to `level`.
fn mark_fired(
    id: String,
    level: i16,
) -> impl for<'c> FnOnce(
    &'c merit_storage::sea_orm::DatabaseTransaction,
) -> merit_storage::TxFuture<'c, ()>
       + Send {
    move |txn| Box::pin(async move { mark_deadline_fired(txn, &id, level).await })
}

/// The deadline timer service: [`fire_due_deadlines`] every `interval` until `stop`.
pub async fn run_deadline_timer(
    store: Store,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    loop {
        fire_due_deadlines(&store).await?;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
}

/// Activates the latest stored config version if it is newer than the active one;
/// returns the version activated.
pub async fn refresh_config(center: &ConfigCenter, handle: &ConfigHandle) -> Result<Option<u64>> {
    let latest = center.latest_version().await?;
    if latest == 0 || latest <= handle.version() {
        return Ok(None);
    }
    let config = center.current().await?;
    let version = config.version;
    if handle.update(config) {
        tracing::info!(version, "dynamic config activated");
        return Ok(Some(version));
    }
    Ok(None)
}

/// The retention sweeper service: [`Store::sweep`] every `interval` until `stop`. The
/// first sweep comes one interval after the start, so a node does not sweep while it
/// recovers.
pub(crate) async fn run_retention_sweeper(
    store: Store,
    retention: Retention,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
        let swept = store.sweep(&retention, Utc::now()).await?;
        for (table, n) in [
            ("inbox", swept.inbox),
            ("outbox", swept.outbox),
            ("notifications", swept.notifications),
        ] {
            metrics::counter!("merit_retention_deleted_total", "table" => table).increment(n);
        }
        if swept.total() > 0 {
            tracing::info!(
                inbox = swept.inbox,
                outbox = swept.outbox,
                notifications = swept.notifications,
                "retention sweep deleted expired rows"
            );
        }
    }
}

/// The config watcher service: [`refresh_config`] every `interval` until `stop`.
pub async fn run_config_watcher(
    center: ConfigCenter,
    handle: ConfigHandle,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    loop {
        refresh_config(&center, &handle).await?;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
}
