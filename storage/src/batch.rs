//! Group commit: turns from many actors committed together.
//!
//! Each actor still waits for its own turn's outcome, so per-key order and "ack after
//! commit" are unchanged; what changes is that turns queued at the same moment share one
//! transaction (one BEGIN, one COMMIT and one WAL flush for the lot). Batching is natural:
//! a worker takes whatever is queued (up to `max_batch`) and never waits to fill a batch,
//! so a lone turn is committed as soon as a worker is free.
//!
//! The fast path writes the turns together in one transaction, every step set-based
//! across them: one inbox insert, at most two snapshot statements, one statement per
//! projected entity (the turns' [`Rows`] merged) and one outbox insert. A duplicate
//! (inbox conflict) writes nothing and does not disturb the others. Any failure — a
//! version conflict, a projection error, a failed COMMIT — rolls the whole batch back and
//! each turn is then committed on its own, so every turn gets exactly the outcome it
//! would have had alone. Projections are data, so the fallback writes the same rows.

use std::{collections::HashSet, sync::Arc};

use chrono::Utc;
use sea_orm::{DatabaseTransaction, TransactionTrait};
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::{
    error::{Result, StorageError},
    outbox::OutboxRow,
    rows::Rows,
    store::Store,
    turn::{compare_and_set, insert_inbox, insert_outbox_rows, StateWrite, Turn, TurnOutcome},
};

struct Job {
    turn: Turn,
    rows: Rows,
    reply: oneshot::Sender<Result<TurnOutcome>>,
}

/// Handle to the group-commit workers of one store. Cheap to clone.
#[derive(Clone)]
pub struct GroupCommitter {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for GroupCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommitter").finish_non_exhaustive()
    }
}

impl GroupCommitter {
    /// Starts `workers` committers on the current tokio runtime, each taking up to
    /// `max_batch` queued turns per transaction. SQLite gains nothing from more than one
    /// worker (its writes are serialised); PostgreSQL overlaps a few.
    pub fn start(store: Store, workers: usize, max_batch: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>(max_batch.max(1) * workers.max(1) * 4);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..workers.max(1) {
            let (store, rx) = (store.clone(), rx.clone());
            tokio::spawn(async move {
                loop {
                    let batch = {
                        let mut rx = rx.lock().await;
                        let Some(first) = rx.recv().await else { return };
                        let mut batch = vec![first];
                        while batch.len() < max_batch {
                            match rx.try_recv() {
                                Ok(job) => batch.push(job),
                                Err(_) => break,
                            }
                        }
                        batch
                    };
                    commit_batch(&store, batch).await;
                }
            });
        }
        Self { tx }
    }

    /// Commits `turn` with its projection `rows` in the next batch and returns its own
    /// outcome.
    pub async fn commit(&self, turn: Turn, rows: Rows) -> Result<TurnOutcome> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { turn, rows, reply })
            .await
            .map_err(|_| StorageError::Closed("group commit"))?;
        rx.await.map_err(|_| StorageError::Closed("group commit"))?
    }
}

async fn commit_batch(store: &Store, jobs: Vec<Job>) {
    if jobs.len() > 1 {
        match try_together(store, &jobs).await {
            Ok((outcomes, fed)) => {
                store.outbox_feed().push(fed);
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, turns = jobs.len(), "batch failed; committing its turns one by one")
            }
        }
    }
    for Job { turn, rows, reply } in jobs {
        let _ = reply.send(store.commit_turn_rows(turn, rows).await);
    }
}

async fn try_together(store: &Store, jobs: &[Job]) -> Result<(Vec<TurnOutcome>, Vec<OutboxRow>)> {
    let _gate = store.lock_writes().await;
    let txn = store.db().begin().await?;
    match apply_together(&txn, jobs).await {
        Ok(outcomes) => {
            txn.commit().await?;
            Ok(outcomes)
        }
        Err(e) => {
            txn.rollback().await?;
            Err(e)
        }
    }
}

/// The batch's turns in one transaction, in the order of [`crate::turn`]'s steps, each
/// step set-based across the turns: the inbox rows, then the snapshots of the turns that
/// were new, their projection rows merged by entity, and their outbox rows.
async fn apply_together(
    txn: &DatabaseTransaction,
    jobs: &[Job],
) -> Result<(Vec<TurnOutcome>, Vec<OutboxRow>)> {
    let now = Utc::now();
    let mut fresh = insert_inbox(txn, jobs.iter().flat_map(|j| j.turn.inbox()), now).await?;
    // Each inbox row the insert made counts for one turn only: should two turns of a batch
    // carry the same event for the same consumer, the second is a duplicate, as it would
    // be committed alone. A batched turn whose events are only partly new fails the lot;
    // committed alone, it then reports which were applied before.
    let mut new = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut mine = HashSet::new();
        for (consumer, id) in job.turn.inbox() {
            let pair = (consumer.to_string(), id.to_string());
            if fresh.remove(&pair) {
                mine.insert(pair);
            }
        }
        if !mine.is_empty() {
            job.turn.check_all_fresh(&mine)?;
        }
        new.push(!mine.is_empty());
    }
    let applied = || {
        jobs.iter()
            .zip(&new)
            .filter(|(_, new)| **new)
            .map(|(job, _)| job)
    };
    compare_and_set(txn, applied().filter_map(|j| j.turn.state.as_ref()), now).await?;
    let mut rows = Rows::new();
    for job in applied() {
        rows.extend_from(&job.rows);
    }
    rows.write(txn).await?;
    let fed = insert_outbox_rows(txn, applied().flat_map(|j| &j.turn.outbox), now).await?;
    let outcomes = jobs
        .iter()
        .zip(new)
        .map(|(job, new)| match new {
            true => TurnOutcome::Applied {
                version: job.turn.state.as_ref().map(StateWrite::next_version),
            },
            false => TurnOutcome::Duplicate,
        })
        .collect();
    Ok((outcomes, fed))
}

#[cfg(test)]
mod tests {
    use merit_messages::EventId;

    use super::*;
    use crate::store::StoreOptions;

    fn job(event_id: EventId) -> Job {
        Job {
            turn: Turn {
                consumer: "user".into(),
                event_id,
                batched: Vec::new(),
                state: None,
                outbox: Vec::new(),
            },
            rows: Rows::new(),
            reply: oneshot::channel().0,
        }
    }

    #[tokio::test]
    async fn one_event_twice_in_a_batch_is_applied_once() {
        let store = Store::connect("sqlite::memory:", &StoreOptions::default())
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        let (event, other) = (EventId::new_random(), EventId::new_random());
        let txn = store.db().begin().await.expect("begin");
        let (outcomes, _) = apply_together(&txn, &[job(event), job(other), job(event)])
            .await
            .expect("batch");
        txn.commit().await.expect("commit");
        let applied = TurnOutcome::Applied { version: None };
        assert_eq!(outcomes, [applied, applied, TurnOutcome::Duplicate]);
    }
}
