//! merit's storage: sea-orm entities and migrations, and the single write path actors use.
//!
//! Owns: the schema (actor snapshots, the users / achievements / proposals / votes / NFTs /
//! benefits projections, the inbox, the outbox, the saga log, dynamic config versions and
//! chain checkpoints), connecting to SQLite (embedded default, WAL) or PostgreSQL, and
//! [`Store::commit_turn`]: state + inbox + outbox in one transaction.
//! Guarantees: a turn is atomic; the same event id applied twice by one consumer has one
//! effect; a writer holding a stale version is refused; SQLite writers never deadlock.
//! Must not know: brokers, actors or the domain rules — it stores what it is given.

mod batch;
pub mod cache;
pub mod column;
mod dead_letters;
pub mod entities;
mod error;
mod feed;
mod governance;
mod migration;
mod outbox;
mod retention;
mod rows;
mod shape;
mod snapshots;
mod store;
mod turn;

pub use batch::GroupCommitter;
pub use cache::{CacheConfig, CacheKey, CacheStats, TieredCache};
pub use dead_letters::{DeadLetterFilter, DeadLetterRow, DeadLetterState, NewDeadLetter};
pub use error::{is_unavailable, Cause, Result, StorageError};
pub use feed::{Fed, OutboxFeed, OUTBOX_FEED_CAPACITY};
pub use governance::{mark_deadline_fired, DueProposal};
pub use migration::Migrator;
pub use outbox::OutboxRow;
pub use retention::{Retention, Swept};
pub use rows::Rows;
pub use sea_orm;
pub use store::{Store, StoreOptions, TxFuture};
pub use turn::{
    insert_outbox, no_projection, OutboxMessage, StateWrite, Turn, TurnOutcome, OUTBOX_CORRELATION,
};
