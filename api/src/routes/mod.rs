//! The REST handlers under `/api/v1`, one file per resource.

pub(crate) mod admin;
pub(crate) mod auth;
pub(crate) mod config;
pub(crate) mod dlq;
pub(crate) mod nfts;
pub(crate) mod proposals;
pub(crate) mod sagas;
pub(crate) mod users;

use merit_messages::{Address, TokenId};
use serde::{de::Error as _, Deserialize, Deserializer};

use crate::error::{ApiError, Result};

/// Largest integer a float spells exactly (2^53).
const EXACT_FLOAT_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Largest integer the API takes: its document says `int64`, and the store keeps BIGINT.
pub(crate) const MAX_INT: u64 = i64::MAX as u64;

/// A JSON integer from 0 to [`MAX_INT`], also spelled as a whole float (`5.0` is the
/// integer 5 to JSON and JSON Schema); a fraction, a negative or a float past 2^53 (no
/// longer exact) is refused.
fn whole(n: &serde_json::Number) -> Option<u64> {
    let v = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=EXACT_FLOAT_LIMIT).contains(f))
            .map(|f| f as u64)
    });
    v.filter(|v| *v <= MAX_INT)
}

/// Deserialises a `u64` body field with [`whole`] (0 to [`MAX_INT`]).
pub(crate) fn whole_u64<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    whole(&n)
        .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number from 0 to {MAX_INT}")))
}

/// Deserialises an optional `u16` body field with [`whole`].
pub(crate) fn whole_opt_u16<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<u16>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    whole(&n)
        .and_then(|v| u16::try_from(v).ok())
        .map(Some)
        .ok_or_else(|| {
            D::Error::custom(format!("{n} is not a whole number from 0 to {}", u16::MAX))
        })
}

/// Deserialises an optional `u64` body field with [`whole`] (0 to [`MAX_INT`]).
pub(crate) fn whole_opt_u64<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<u64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    whole(&n)
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number from 0 to {MAX_INT}")))
}

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

/// Checks a `u64` query value against [`MAX_INT`].
pub(crate) fn int64(field: &str, v: u64) -> Result<u64> {
    if v > MAX_INT {
        return Err(ApiError::bad_request(format!(
            "{field}: {v} is out of range (0-{MAX_INT})"
        )));
    }
    Ok(v)
}
