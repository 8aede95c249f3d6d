//! Supervisor errors.

/// What stopped a supervised service or the node.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The transport failed.
    #[error("mailbox: {0}")]
    Mailbox(#[from] merit_mailbox::Error),
    /// The store failed.
    #[error("storage: {0}")]
    Storage(#[from] merit_storage::StorageError),
    /// The config center failed.
    #[error("config center: {0}")]
    Config(#[from] merit_actors::center::CenterError),
    /// A consumer's delivery stream ended (connection lost or consumer cancelled).
    #[error("consumer for shard {0} stopped receiving")]
    ConsumerEnded(String),
}

/// Result alias for supervisors.
pub type Result<T> = std::result::Result<T, SupervisorError>;
