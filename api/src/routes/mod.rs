//! The REST handlers under `/api/v1`, one file per resource.

pub(crate) mod admin;
pub(crate) mod config;
pub(crate) mod dlq;
pub(crate) mod nfts;
pub(crate) mod proposals;
pub(crate) mod sagas;
pub(crate) mod users;

use merit_messages::{Address, TokenId};

use crate::error::{ApiError, Result};

/// Parses a wallet address path segment.
pub(crate) fn address(raw: &str) -> Result<Address> {
    raw.parse().map_err(|e| {
        ApiError::bad_request(format!(
            "address: {} is not a wallet address ({e}); expected 0x and 40 hex digits",
            merit_messages::quote_untrusted(raw)
        ))
    })
}

/// Parses a token id path segment.
pub(crate) fn token(raw: &str) -> Result<TokenId> {
    raw.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "token: {} is not a token id; expected a uint256 decimal string",
            merit_messages::quote_untrusted(raw)
        ))
    })
}

/// A count or id stored as BIGINT, as the API's unsigned number.
pub(crate) fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
