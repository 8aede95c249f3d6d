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
    /// As [`StorageError::Corrupt`], built from the error that said why the value could
    /// not be read: it is kept as the [`std::error::Error::source`] (and its text is the
    /// reason, as for `Corrupt`). Build it with [`StorageError::corrupt`].
    #[error("corrupt {what}: {source}")]
    CorruptFrom {
        /// What was being read.
        what: String,
        /// Why it could not be read.
        #[source]
        source: Cause,
    },
    /// A store component was shut down while a request was pending.
    #[error("{0} is shut down")]
    Closed(&'static str),
    /// The database refused or failed an operation.
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
}

/// The underlying error of a [`StorageError::CorruptFrom`].
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias for storage.
pub type Result<T> = std::result::Result<T, StorageError>;

impl StorageError {
    /// A [`StorageError::CorruptFrom`]: `what` could not be read back, for the reason
    /// `source` gives (kept as the error's source).
    pub fn corrupt(what: impl Into<String>, source: impl Into<Cause>) -> Self {
        Self::CorruptFrom {
            what: what.into(),
            source: source.into(),
        }
    }

    /// Whether a stored value could not be read back ([`StorageError::Corrupt`] or
    /// [`StorageError::CorruptFrom`]).
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Self::Corrupt { .. } | Self::CorruptFrom { .. })
    }

    /// Whether the database refused a write for breaking a unique constraint (a lost race
    /// that a retry resolves).
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            Self::Db(e) if matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
        )
    }
}

/// Whether a database error means "the database is unreachable or going away" (wait it
/// out, retry without counting it against the work) rather than "this statement failed":
/// no connection, a broken one, an exhausted or closed pool, and the errors PostgreSQL
/// sends a session while it restarts or shuts down: class 57 "operator intervention"
/// (`57P01` "terminating connection due to administrator command", `57P02` crash
/// shutdown, `57P03` "the database system is starting up") and class 08 "connection
/// exception", but for `08P01` (the server refused a message merit sent: a failed
/// statement, which waiting would repeat for ever). `57014` (a cancelled query) is a
/// failure too.
pub fn is_unavailable(err: &sea_orm::DbErr) -> bool {
    use sea_orm::{sqlx::Error as Sqlx, DbErr, RuntimeErr};
    match err {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => match e {
            Sqlx::Io(_)
            | Sqlx::PoolTimedOut
            | Sqlx::PoolClosed
            | Sqlx::WorkerCrashed
            | Sqlx::Protocol(_) => true,
            Sqlx::Database(db) => db.code().is_some_and(|code| {
                code.starts_with("57P") || (code.starts_with("08") && code != "08P01")
            }),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_corrupt_value_keeps_its_cause_and_reads_as_before() {
        let cause = "x".parse::<i64>().expect_err("not a number");
        let err = StorageError::corrupt("row 7", cause.clone());
        let old = StorageError::Corrupt {
            what: "row 7".into(),
            reason: cause.to_string(),
        };
        assert_eq!(err.to_string(), old.to_string());
        assert!(err.is_corrupt() && old.is_corrupt());
        let source = err.source().expect("kept");
        assert_eq!(
            source.downcast_ref::<std::num::ParseIntError>(),
            Some(&cause)
        );
    }
}
