//! The chain adapter's errors, classified so that callers know what to do: retry soon
//! ([`ErrorClass::Transient`]), give up and compensate ([`ErrorClass::Permanent`]), or
//! wait the outage out without spending attempts ([`ErrorClass::Unavailable`]).
//!
//! No variant ever carries the minter key: errors from the signer are reduced to a fixed
//! text, and RPC URLs are never included (they may hold credentials).
//!
//! An error built from another one keeps it as its [`std::error::Error::source`] (and names
//! it in its message too, as it always did) when that error is safe to carry: decoding
//! failures (ABI, JSON, numbers) and store errors. Transport and signer errors never are:
//! ethers' `ProviderError::HTTPError` (a `reqwest::Error`) names the RPC URL in its
//! `Display` and `Debug`, and a signer's errors may carry key material, so those are reduced
//! to a fixed text with no source. `ChainError` derives `Debug`, which prints a source's
//! `Debug`: that is why only such safe sources are ever boxed here.

use merit_messages::{Address, TokenId};
use merit_storage::StorageError;

/// The underlying error of a [`ChainError`], kept as its source. Only ever a decoding or
/// store error: never a transport or signer error (see the module documentation).
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How a caller should treat an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// A hiccup (timeout, nonce race, rate limit): retrying the same call may succeed.
    Transient,
    /// The chain refused the request (revert: missing role, token exists; insufficient
    /// funds; a bad key): retrying will fail the same way.
    Permanent,
    /// The RPC endpoint cannot be reached: retry once it is back.
    Unavailable,
}

impl ErrorClass {
    /// Lowercase name, for logs, metrics and dead-letter reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
            Self::Unavailable => "unavailable",
        }
    }
}

/// What went wrong talking to the chain or recording what was read from it.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// A failure worth retrying.
    #[error("{op}: transient chain error: {reason}")]
    Transient {
        /// The operation (`mint`, `logs`, ...).
        op: &'static str,
        /// What the node or transport said.
        reason: String,
        /// The error this one was built from, when it is safe to keep (its text is also in
        /// `reason`).
        #[source]
        source: Option<Cause>,
    },
    /// The chain refused the request; retrying will not help.
    #[error("{op}: refused by the chain: {reason}")]
    Permanent {
        /// The operation.
        op: &'static str,
        /// Why (a decoded revert reason when there is one).
        reason: String,
        /// The error this one was built from, when it is safe to keep (its text is also in
        /// `reason`).
        #[source]
        source: Option<Cause>,
    },
    /// The RPC endpoint is down or unreachable.
    #[error("{op}: chain RPC unavailable: {reason}")]
    Unavailable {
        /// The operation.
        op: &'static str,
        /// What the transport said.
        reason: String,
        /// The error this one was built from, when it is safe to keep (its text is also in
        /// `reason`).
        #[source]
        source: Option<Cause>,
    },
    /// A burn was refused because the token is no longer held by the owner it was meant
    /// to be taken from: it changed hands after the caller last looked, and belongs to
    /// someone else now. Permanent (the chain will refuse it again), and distinguishable so
    /// that a compensation can complete without burning.
    #[error("{op}: refused by the chain: token {token} is held by {}, not {expected}", holder.map_or_else(|| "nobody".to_string(), |h| h.to_string()))]
    OwnerChanged {
        /// The operation (`burn`).
        op: &'static str,
        /// The token.
        token: TokenId,
        /// The owner the burn expected.
        expected: Address,
        /// Who holds it instead (`None`: nobody, it no longer exists).
        holder: Option<Address>,
    },
    /// The store failed while recording events or checkpoints.
    #[error("chain listener store: {0}")]
    Store(#[from] StorageError),
}

impl ChainError {
    /// How to treat this error. A store error is transient: the listener retries it.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Transient { .. } | Self::Store(_) => ErrorClass::Transient,
            Self::Permanent { .. } | Self::OwnerChanged { .. } => ErrorClass::Permanent,
            Self::Unavailable { .. } => ErrorClass::Unavailable,
        }
    }

    /// Who holds the token instead, if this is a burn refused because the token changed
    /// hands ([`ChainError::OwnerChanged`]); `None` for every other error.
    pub fn owner_changed(&self) -> Option<Option<Address>> {
        match self {
            Self::OwnerChanged { holder, .. } => Some(*holder),
            _ => None,
        }
    }

    pub(crate) fn transient(op: &'static str, reason: impl Into<String>) -> Self {
        Self::Transient {
            op,
            reason: reason.into(),
            source: None,
        }
    }

    /// As [`ChainError::transient`], keeping `source` (a decoding or store error, never a
    /// transport or signer one) as the error's source.
    pub(crate) fn transient_with(
        op: &'static str,
        reason: impl Into<String>,
        source: impl Into<Cause>,
    ) -> Self {
        Self::Transient {
            op,
            reason: reason.into(),
            source: Some(source.into()),
        }
    }

    pub(crate) fn permanent(op: &'static str, reason: impl Into<String>) -> Self {
        Self::Permanent {
            op,
            reason: reason.into(),
            source: None,
        }
    }

    /// As [`ChainError::permanent`], keeping `source` (a decoding or store error, never a
    /// transport or signer one) as the error's source.
    pub(crate) fn permanent_with(
        op: &'static str,
        reason: impl Into<String>,
        source: impl Into<Cause>,
    ) -> Self {
        Self::Permanent {
            op,
            reason: reason.into(),
            source: Some(source.into()),
        }
    }

    pub(crate) fn unavailable(op: &'static str, reason: impl Into<String>) -> Self {
        Self::Unavailable {
            op,
            reason: reason.into(),
            source: None,
        }
    }
}

/// Result alias for the chain adapter.
pub type Result<T> = std::result::Result<T, ChainError>;
