//! Saga engine errors.

use merit_storage::StorageError;

/// What went wrong in the saga engine.
#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    /// `start` or `retry` named a saga kind no definition is registered for.
    #[error("unknown saga kind {kind:?}: registered kinds are {registered:?}")]
    UnknownKind {
        /// The kind asked for.
        kind: String,
        /// The kinds this executor knows.
        registered: Vec<String>,
    },
    /// A saga definition is unusable (no steps, duplicate names, a kind registered twice).
    #[error("invalid saga definition {kind:?}: {reason}")]
    InvalidDefinition {
        /// The kind being defined.
        kind: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No saga has this id.
    #[error("no saga with id {id}")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// The operation does not apply to a saga in this state.
    #[error("saga {id} is {state}: {reason}")]
    InvalidState {
        /// The saga.
        id: String,
        /// Its state.
        state: String,
        /// Why the operation is refused.
        reason: &'static str,
    },
    /// A saga's data could not be serialised.
    #[error("saga data for kind {kind:?} is not JSON-serialisable: {source}")]
    Data {
        /// The kind being started.
        kind: String,
        /// The serializer's complaint (also named in the message).
        #[source]
        source: serde_json::Error,
    },
    /// A stored state name is not one this version knows.
    #[error("unknown {what} {value:?}")]
    UnknownState {
        /// Which enum (`SagaState`, `StepState`).
        what: &'static str,
        /// The stored text.
        value: String,
    },
    /// `wait` gave up before the saga settled.
    #[error("saga {id} still {state} after {waited_ms} ms")]
    Timeout {
        /// The saga.
        id: String,
        /// Its state when the wait gave up.
        state: String,
        /// How long was waited.
        waited_ms: u128,
    },
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<merit_storage::sea_orm::DbErr> for SagaError {
    fn from(e: merit_storage::sea_orm::DbErr) -> Self {
        SagaError::Storage(StorageError::Db(e))
    }
}

/// Result alias for the saga engine.
pub type Result<T> = std::result::Result<T, SagaError>;
