//! Errors of the actor layer.

/// Why an actor could not apply a message.
#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] merit_storage::StorageError),
    /// The stored snapshot could not be decoded as this actor's state.
    #[error("snapshot of {kind} {key:?} is unreadable: {source}")]
    CorruptSnapshot {
        /// Actor kind.
        kind: merit_messages::ActorKind,
        /// Actor key.
        key: String,
        /// The decoder's error (also named in the message).
        #[source]
        source: serde_json::Error,
    },
    /// The domain core panicked.
    #[error("handler panicked: {0}")]
    Panicked(String),
}

/// Result alias for the actor layer.
pub type Result<T> = std::result::Result<T, ActorError>;

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn an_unreadable_snapshot_keeps_the_decoder_error_as_its_source() {
        let cause = serde_json::from_str::<u32>("\"x\"").expect_err("not a number");
        let shown = cause.to_string();
        let err = ActorError::CorruptSnapshot {
            kind: merit_messages::ActorKind::User,
            key: "u1".into(),
            source: cause,
        };
        assert!(
            err.to_string()
                .ends_with(&format!("is unreadable: {shown}")),
            "{err}"
        );
        let source = err.source().expect("kept");
        assert!(
            source.downcast_ref::<serde_json::Error>().is_some(),
            "{source:?}"
        );
    }
}
