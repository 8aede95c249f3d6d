//! Storage errors.

use merit_messages::ActorKind;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database URL names no backend merit supports.
    #[error("unsupported database URL scheme {scheme:?}: expected sqlite: or postgres://")]
    UnsupportedBackend {
        /// The scheme found.
        scheme: String,
    },
    /// Another writer applied a turn to this actor since it was loaded; reload and retry.
    #[error("version conflict on {kind} {key:?}: expected version {expected}, found {found:?}")]
    VersionConflict {
        /// Actor kind.
        kind: ActorKind,
        /// Actor key.
        key: String,
        /// The version the writer loaded.
        expected: i64,
        /// The version in the store (`None`: no such actor).
        found: Option<i64>,
    },
    /// Some of the events of a batched turn were applied before (a redelivery): the turn
    /// wrote nothing. The actor answers those as duplicates and applies the rest again.
    #[error("{} of the turn's events were applied before", .applied.len())]
    PartlyApplied {
        /// The `(consumer, event id)` pairs already in the inbox.
        applied: Vec<(String, merit_messages::EventId)>,
    },
    /// A stored value could not be read back as the type it should have.
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// What was being read.
        what: String,
        /// Why it could not be read.
        reason: String,
    },
    /// A store component was shut down while a request was pending.
    #[error("{0} is shut down")]
    Closed(&'static str),
    /// The database refused or failed an operation.
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
}

/// Result alias for storage.
pub type Result<T> = std::result::Result<T, StorageError>;

impl StorageError {
    /// Whether the database refused a write for breaking a unique constraint (a lost race
    /// that a retry resolves).
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            Self::Db(e) if matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
        )
    }
}
