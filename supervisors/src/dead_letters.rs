//! Dead letters for operators. The recorder moves every dead letter from the dead-letter
//! queue into the database (idempotent by id, acked only after the commit), where
//! listing, filtering and paging are indexed and stable. Replay and discard then act on
//! rows, by id or by filter, without scanning the queue.
//!
//! A replay publishes the dead letter again (with a confirm, through the door it came in
//! by) and then marks its row `replayed`. A crash between the two leaves the row
//! `waiting`, so the next replay publishes it again: at least once, like the outbox. The
//! duplicate is harmless: receivers' inboxes drop an event id they applied, and if the
//! replay fails again, both copies make the same dead letter (its id derives from the
//! message and the dead letter it replays), recorded once.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use merit_mailbox::{DeadLetter, Transport};
use merit_messages::Origin;
use merit_storage::{
    sea_orm::ActiveValue::{NotSet, Set},
    DeadLetterFilter, DeadLetterRow, DeadLetterState, NewDeadLetter, Store,
};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::error::{Result, SupervisorError};

/// Most dead letters the table keeps; past it the oldest settled ones go first, then the
/// oldest waiting ones (the dead-letter queue had the same bound).
pub const MAX_DEAD_LETTERS: u64 = 100_000;

/// Dead letters the recorder takes (and commits) at once.
const RECORD_BATCH: u16 = 256;

/// How often the recorder enforces [`MAX_DEAD_LETTERS`].
const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Dead letters one replay or discard statement covers.
const CHUNK: u64 = 200;

/// Records dead letters from the transport until `shutdown`. Each batch is committed
/// before any of it is acked, so a crash loses none; one recorded twice stays one row.
pub(crate) async fn run_recorder(
    store: Store,
    transport: Arc<dyn Transport>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let mut rx = transport.consume_dead_letters(RECORD_BATCH).await?;
    let mut trimmed: Option<Instant> = None;
    loop {
        if trimmed.is_none_or(|t| t.elapsed() >= TRIM_EVERY) {
            trim(&store).await?;
            trimmed = Some(Instant::now());
        }
        let first = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
            _ = tokio::time::sleep(TRIM_EVERY) => continue,
            next = rx.recv() => next.ok_or_else(|| SupervisorError::ConsumerEnded("dead letters".into()))?,
        };
        let mut batch = vec![first];
        while batch.len() < usize::from(RECORD_BATCH) {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let rows = batch.iter().map(|d| new_row(&d.dead_letter)).collect();
        // On error the batch is dropped unacked and comes again after the restart.
        let new = store.record_dead_letters(rows).await?;
        let taken = batch.len();
        for delivery in batch {
            delivery.ack().await?;
        }
        metrics::counter!("merit_dead_letters_recorded_total").increment(new);
        tracing::debug!(taken, new, "dead letters recorded");
    }
}

async fn trim(store: &Store) -> Result<()> {
    let dropped = store.trim_dead_letters(MAX_DEAD_LETTERS).await?;
    if dropped > 0 {
        metrics::counter!("merit_dead_letters_dropped_total").increment(dropped);
        warn!(
            dropped,
            cap = MAX_DEAD_LETTERS,
            "the dead-letter table is full: the oldest waiting dead letters were dropped"
        );
    }
    Ok(())
}

/// The row that records `dl`, waiting.
fn new_row(dl: &DeadLetter) -> NewDeadLetter {
    let now = Utc::now();
    NewDeadLetter {
        seq: NotSet,
        id: Set(dl.id.clone()),
        routing_key: Set(dl.routing_key.clone()),
        reason_class: Set(dl.reason_class.clone()),
        reason: Set(dl.reason.clone()),
        attempts: Set(i32::try_from(dl.attempts).unwrap_or(i32::MAX)),
        body: Set(dl.body.to_vec()),
        truncated_from: Set(dl
            .truncated_from
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX))),
        origin: Set(dl.origin.as_str().to_string()),
        source_queue: Set(dl.source_queue.clone()),
        message_id: Set(dl.message_id.clone()),
        correlation_id: Set(dl.correlation_id.clone()),
        headers: Set(serde_json::to_value(&dl.headers).unwrap_or_default()),
        // A dead letter the broker made carries no stamp of merit's: it is dated when
        // recorded.
        dead_lettered_at: Set(DateTime::parse_from_rfc3339(&dl.dead_lettered_at)
            .map_or(now, |t| t.with_timezone(&Utc))),
        recorded_at: Set(now),
        state: Set(DeadLetterState::Waiting.as_str().to_string()),
        settled_at: Set(None),
    }
}

/// The dead letter a row records, as the transport replays it.
pub fn dead_letter_of(row: &DeadLetterRow) -> DeadLetter {
    DeadLetter {
        id: row.id.clone(),
        routing_key: row.routing_key.clone(),
        reason_class: row.reason_class.clone(),
        reason: row.reason.clone(),
        attempts: u32::try_from(row.attempts).unwrap_or(0),
        body: Bytes::from(row.body.clone()),
        truncated_from: row.truncated_from.and_then(|n| usize::try_from(n).ok()),
        origin: if row.origin == Origin::Merit.as_str() {
            Origin::Merit
        } else {
            Origin::Producer
        },
        dead_lettered_at: row.dead_lettered_at.to_rfc3339(),
        source_queue: row.source_queue.clone(),
        message_id: row.message_id.clone(),
        correlation_id: row.correlation_id.clone(),
        headers: serde_json::from_value::<BTreeMap<String, String>>(row.headers.clone())
            .unwrap_or_default(),
    }
}

/// What acting on one dead letter by id found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Replayed or discarded now.
    Done,
    /// No dead letter has this id.
    NotFound,
    /// It was already replayed or discarded (the state it is in).
    Already(DeadLetterState),
}

/// What an operator does with dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterAction {
    /// Publish again, then mark `replayed`.
    Replay,
    /// Mark `discarded`.
    Discard,
}

impl DeadLetterAction {
    fn state(self) -> DeadLetterState {
        match self {
            Self::Replay => DeadLetterState::Replayed,
            Self::Discard => DeadLetterState::Discarded,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Replay => "replayed",
            Self::Discard => "discarded",
        }
    }
}

/// Replays or discards dead letter `id`.
pub async fn settle_dead_letter(
    store: &Store,
    transport: &dyn Transport,
    id: &str,
    action: DeadLetterAction,
) -> Result<Settled> {
    let Some(row) = store.dead_letter(id).await? else {
        return Ok(Settled::NotFound);
    };
    if row.state != DeadLetterState::Waiting.as_str() {
        let state = DeadLetterState::parse(&row.state).unwrap_or(DeadLetterState::Replayed);
        return Ok(Settled::Already(state));
    }
    let done = apply(store, transport, vec![row], action).await?;
    if done == 0 {
        // Another operator settled it between the read and the mark.
        let state = store
            .dead_letter(id)
            .await?
            .and_then(|r| DeadLetterState::parse(&r.state))
            .unwrap_or(DeadLetterState::Replayed);
        return Ok(Settled::Already(state));
    }
    Ok(Settled::Done)
}

/// Replays or discards up to `limit` waiting dead letters matching `filter`, oldest
/// first, [`CHUNK`] at a time (each chunk published and marked before the next). Returns
/// how many it settled.
pub async fn settle_dead_letters(
    store: &Store,
    transport: &dyn Transport,
    filter: &DeadLetterFilter,
    limit: u64,
    action: DeadLetterAction,
) -> Result<u64> {
    let filter = DeadLetterFilter {
        state: Some(DeadLetterState::Waiting),
        ..filter.clone()
    };
    let (mut after, mut done) = (0, 0);
    while done < limit {
        let rows = store
            .dead_letters(&filter, after, CHUNK.min(limit - done))
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        done += apply(store, transport, rows, action).await?;
    }
    Ok(done)
}

/// Publishes (for a replay) and marks `rows`; returns how many were marked.
async fn apply(
    store: &Store,
    transport: &dyn Transport,
    rows: Vec<DeadLetterRow>,
    action: DeadLetterAction,
) -> Result<u64> {
    if action == DeadLetterAction::Replay {
        let messages = rows
            .iter()
            .map(|r| dead_letter_of(r).replay_message())
            .collect();
        transport.publish(messages).await?;
    }
    let ids: Vec<String> = rows.into_iter().map(|r| r.id).collect();
    let first = ids.first().cloned().unwrap_or_default();
    let n = ids.len();
    let marked = store.settle_dead_letters(ids, action.state()).await?;
    metrics::counter!("merit_dead_letters_settled_total", "action" => action.name())
        .increment(marked);
    info!(
        action = action.name(),
        dead_letters = n,
        marked,
        first = %first,
        "dead letters settled by an operator"
    );
    Ok(marked)
}
