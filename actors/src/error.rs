//! Errors of the actor layer.

/// Why an actor could not apply a message.
#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] merit_storage::StorageError),
    /// The stored snapshot could not be decoded as this actor's state.
    #[error("snapshot of {kind} {key:?} is unreadable: {reason}")]
    CorruptSnapshot {
        /// Actor kind.
        kind: merit_messages::ActorKind,
        /// Actor key.
        key: String,
        /// Decoder message.
        reason: String,
    },
    /// The domain core panicked.
    #[error("handler panicked: {0}")]
    Panicked(String),
}

/// Result alias for the actor layer.
pub type Result<T> = std::result::Result<T, ActorError>;
