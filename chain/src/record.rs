//! What the listener and the full sync write: outbox rows and the checkpoint, together in
//! one transaction. The checkpoint moves by compare-and-set on its previous value, so two
//! listeners of one contract (two nodes) cannot both advance it from the same point; the
//! loser's batch is discarded and it re-reads from the winner's checkpoint.

use chrono::Utc;
use merit_messages::{Envelope, TxHash};
use merit_storage::{
    column::{to_i64, to_u64},
    entities::chain_checkpoint,
    insert_outbox,
    sea_orm::{
        sea_query::{Expr, OnConflict, Query},
        ConnectionTrait, DatabaseTransaction, EntityName, EntityTrait,
    },
    OutboxMessage, StorageError, Store,
};

use crate::error::Result;

/// A listener's position: the last block whose logs are all in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Block number.
    pub block: u64,
    /// Its hash when it was read (compared with the chain to detect a deep reorg).
    pub hash: TxHash,
}

/// The checkpoint row id of a contract: `<chain id>:<lowercase contract address>`.
pub fn checkpoint_id(chain_id: u64, contract: &merit_messages::Address) -> String {
    format!("{chain_id}:{contract}")
}

/// Reads the checkpoint `id`.
pub async fn load_checkpoint(store: &Store, id: &str) -> Result<Option<Checkpoint>> {
    let Some(row) = chain_checkpoint::Entity::find_by_id(id.to_string())
        .one(store.db())
        .await
        .map_err(StorageError::from)?
    else {
        return Ok(None);
    };
    let hash = row.block_hash.parse().map_err(|e| {
        let what = format!("chain checkpoint {id:?}: block_hash {:?}", row.block_hash);
        StorageError::corrupt(what, e)
    })?;
    Ok(Some(Checkpoint {
        block: to_u64(row.block_number),
        hash,
    }))
}

/// Writes `events` to the outbox and moves checkpoint `id` from `prev` to `next`, in one
/// transaction. Returns the number of outbox rows inserted (events already there are
/// skipped), or `None` when the checkpoint was not at `prev` (nothing is written then).
pub(crate) async fn commit_batch(
    store: &Store,
    id: &str,
    prev: Option<Checkpoint>,
    next: Option<Checkpoint>,
    events: &[Envelope],
) -> Result<Option<u64>> {
    let id = id.to_string();
    let rows: Vec<OutboxMessage> = events.iter().map(OutboxMessage::from_envelope).collect();
    let inserted = store
        .write(move |txn| {
            Box::pin(async move {
                if let Some(next) = next {
                    if !move_checkpoint(txn, &id, prev, next).await? {
                        return Ok(None);
                    }
                }
                Ok(Some(insert_outbox(txn, &rows, Utc::now()).await?))
            })
        })
        .await?;
    if inserted.is_some_and(|n| n > 0) {
        store.outbox_signal().notify_one();
    }
    Ok(inserted)
}

/// Writes `events` to the outbox in one transaction, with no checkpoint (the full sync's
/// repairs). Returns the number of rows inserted.
pub(crate) async fn enqueue(store: &Store, events: &[Envelope]) -> Result<u64> {
    Ok(commit_batch(store, "", None, None, events)
        .await?
        .unwrap_or_default())
}

async fn exec<S: merit_storage::sea_orm::StatementBuilder>(
    txn: &DatabaseTransaction,
    stmt: &S,
) -> merit_storage::Result<u64> {
    let backend = txn.get_database_backend();
    Ok(txn.execute(backend.build(stmt)).await?.rows_affected())
}

async fn move_checkpoint(
    txn: &DatabaseTransaction,
    id: &str,
    prev: Option<Checkpoint>,
    next: Checkpoint,
) -> merit_storage::Result<bool> {
    let now = Utc::now();
    let changed = match prev {
        None => {
            exec(
                txn,
                Query::insert()
                    .into_table(chain_checkpoint::Entity.table_ref())
                    .columns([
                        chain_checkpoint::Column::Id,
                        chain_checkpoint::Column::BlockNumber,
                        chain_checkpoint::Column::BlockHash,
                        chain_checkpoint::Column::UpdatedAt,
                    ])
                    .values_panic([
                        id.into(),
                        to_i64(next.block).into(),
                        next.hash.to_string().into(),
                        now.into(),
                    ])
                    .on_conflict(
                        OnConflict::column(chain_checkpoint::Column::Id)
                            .do_nothing()
                            .to_owned(),
                    ),
            )
            .await?
        }
        Some(prev) => {
            exec(
                txn,
                Query::update()
                    .table(chain_checkpoint::Entity.table_ref())
                    .value(chain_checkpoint::Column::BlockNumber, to_i64(next.block))
                    .value(chain_checkpoint::Column::BlockHash, next.hash.to_string())
                    .value(chain_checkpoint::Column::UpdatedAt, now)
                    .and_where(Expr::col(chain_checkpoint::Column::Id).eq(id))
                    .and_where(
                        Expr::col(chain_checkpoint::Column::BlockNumber).eq(to_i64(prev.block)),
                    )
                    .and_where(
                        Expr::col(chain_checkpoint::Column::BlockHash).eq(prev.hash.to_string()),
                    ),
            )
            .await?
        }
    };
    Ok(changed == 1)
}
