//! Storage the governance process needs beyond actor turns: proposal sequence numbers and
//! the proposals whose deadlines are due.

use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Expr, OnConflict, Query},
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement,
};

use crate::{
    entities::{proposal, proposal_seq},
    error::{Result, StorageError},
    store::PROPOSAL_SEQ_LOCK,
    Store,
};

/// How many times allocating a sequence number retries after losing a race.
const SEQ_ATTEMPTS: u32 = 20;

/// A proposal with a deadline due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueProposal {
    /// The proposal id.
    pub id: String,
    /// Its status in the projection (`pending` or `active`).
    pub status: String,
    /// The deadlines the timer already emitted: 0 none, 1 open, 2 close.
    pub fired: i16,
    /// Voting opens.
    pub starts_at: DateTime<Utc>,
    /// Voting closes.
    pub ends_at: DateTime<Utc>,
}

/// Records in `txn` that the timer emitted `proposal`'s deadline up to `level` (1 open,
/// 2 close); never lowers it.
pub async fn mark_deadline_fired<C: ConnectionTrait>(
    db: &C,
    proposal: &str,
    level: i16,
) -> Result<()> {
    proposal::Entity::update_many()
        .col_expr(proposal::Column::DeadlinesFired, Expr::value(level))
        .filter(proposal::Column::Id.eq(proposal))
        .filter(proposal::Column::DeadlinesFired.lt(level))
        .exec(db)
        .await?;
    Ok(())
}

impl Store {
    /// The sequence number of `proposal`: allocated on first call (the next after the
    /// highest, so numbers run from 1 with no gap), the same on every later call.
    ///
    /// Allocations queue rather than race: on PostgreSQL each holds a transaction-scoped
    /// advisory lock ([`PROPOSAL_SEQ_LOCK`]) across the cluster while it reads the highest
    /// number and inserts the next; SQLite's writes are one at a time already. (Racing on
    /// the unique `seq` instead made a burst of creations fail: with 64 allocators one wins
    /// each round, and a loser could lose 20 rounds running.) A number already allocated
    /// is read without the lock. Should an allocation still meet a unique violation (a
    /// database shared with a merit without the lock), it retries.
    pub async fn proposal_seq(&self, proposal: &str) -> Result<u64> {
        if let Some(row) = proposal_seq::Entity::find_by_id(proposal.to_string())
            .one(self.db())
            .await?
        {
            return Ok(crate::column::to_u64(row.seq));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let id = proposal.to_string();
            // Insert the next number unless the proposal has one; then read what it has.
            let insert = Query::insert()
                .into_table(proposal_seq::Entity)
                .columns([proposal_seq::Column::ProposalId, proposal_seq::Column::Seq])
                .select_from(
                    Query::select()
                        .expr(Expr::val(id.clone()))
                        .expr(Expr::cust("COALESCE(MAX(seq), 0) + 1"))
                        .from(proposal_seq::Entity)
                        // SQLite reads `SELECT … FROM t ON CONFLICT` as a join constraint
                        // unless a WHERE clause ends the SELECT.
                        .and_where(Expr::cust("TRUE"))
                        .to_owned(),
                )
                .map_err(|e| StorageError::corrupt("proposal seq statement", e))?
                .on_conflict(
                    OnConflict::column(proposal_seq::Column::ProposalId)
                        .do_nothing()
                        .to_owned(),
                )
                .to_owned();
            let backend = self.backend();
            let result = self
                .write(move |txn| {
                    Box::pin(async move {
                        // SQLite's rule for write transactions (a write first) holds: the
                        // lock is PostgreSQL's only.
                        if backend == DbBackend::Postgres {
                            txn.execute(Statement::from_string(
                                DbBackend::Postgres,
                                format!("SELECT pg_advisory_xact_lock({PROPOSAL_SEQ_LOCK})"),
                            ))
                            .await?;
                        }
                        txn.execute(backend.build(&insert)).await?;
                        let row = proposal_seq::Entity::find_by_id(id).one(txn).await?;
                        row.map(|r| r.seq).ok_or_else(|| StorageError::Corrupt {
                            what: "proposal seq".into(),
                            reason: "no row after insert".into(),
                        })
                    })
                })
                .await;
            match result {
                Ok(seq) => return Ok(crate::column::to_u64(seq)),
                Err(e) if attempt < SEQ_ATTEMPTS && e.is_unique_violation() => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Proposals whose open or close deadline is at or before `now` and not yet applied
    /// (by the projection's status), oldest deadline first.
    pub async fn due_proposals(&self, now: DateTime<Utc>, limit: u64) -> Result<Vec<DueProposal>> {
        let rows = proposal::Entity::find()
            .filter(
                Condition::any()
                    .add(
                        Condition::all()
                            .add(proposal::Column::Status.eq("pending"))
                            .add(proposal::Column::StartsAt.lte(now))
                            .add(proposal::Column::DeadlinesFired.lt(1)),
                    )
                    .add(
                        Condition::all()
                            .add(proposal::Column::Status.is_in(["pending", "active"]))
                            .add(proposal::Column::EndsAt.lte(now))
                            .add(proposal::Column::DeadlinesFired.lt(2)),
                    ),
            )
            .order_by_asc(Expr::col(proposal::Column::EndsAt))
            .limit(limit)
            .all(self.db())
            .await?;
        Ok(rows
            .into_iter()
            .map(|p| DueProposal {
                id: p.id,
                status: p.status,
                fired: p.deadlines_fired,
                starts_at: p.starts_at,
                ends_at: p.ends_at,
            })
            .collect())
    }
}
