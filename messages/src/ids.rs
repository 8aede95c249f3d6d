//! Identifier newtypes. Each validates on construction and on deserialisation, so a value
//! of these types is always well-formed: an [`Address`] is 20 bytes, a [`TokenId`] fits in
//! a uint256, a [`ProposalId`] is a short, safe string.

use std::{borrow::Cow, fmt, str::FromStr};

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use sha3::{Digest, Keccak256};
use uuid::Uuid;

use crate::error::DecodeError;

/// Namespace for UUIDv5 ids that merit derives (chain events, achievements, sagas).
/// Producers in other languages derive the same ids with `uuid5(MERIT_NAMESPACE, name)`.
pub const MERIT_NAMESPACE: Uuid = Uuid::from_u128(0x6d65_7269_742d_4e53_8000_0000_0000_0001);

/// Unique, stable id of one event; the idempotency key of every effect it causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub Uuid);

impl EventId {
    /// A fresh random id, for events that do not derive from anything else.
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The deterministic id of a chain log: the same block replayed yields the same id.
    ///
    /// `uuid5(MERIT_NAMESPACE, "chain:{chain_id}:{tx_hash lowercase 0x-hex}:{log_index}")`.
    pub fn from_chain_log(chain_id: u64, tx_hash: &TxHash, log_index: u64) -> Self {
        let name = format!("chain:{chain_id}:{tx_hash}:{log_index}");
        Self(Uuid::new_v5(&MERIT_NAMESPACE, name.as_bytes()))
    }

    /// A deterministic id for an event merit originates from persisted state rather than
    /// from another event (a proposal's deadline): `uuid5(MERIT_NAMESPACE, "named:{name}")`,
    /// so every node that originates it originates the same id.
    pub fn named(name: &str) -> Self {
        Self(Uuid::new_v5(
            &MERIT_NAMESPACE,
            format!("named:{name}").as_bytes(),
        ))
    }

    /// A deterministic id derived from a parent event and a label, for events an actor
    /// emits while handling `parent`: redelivery of `parent` emits the same ids.
    pub fn derived(parent: EventId, label: &str) -> Self {
        let name = format!("derived:{}:{label}", parent.0);
        Self(Uuid::new_v5(&MERIT_NAMESPACE, name.as_bytes()))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl JsonSchema for EventId {
    fn schema_name() -> Cow<'static, str> {
        "EventId".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "format": "uuid", "description": "RFC 4122 UUID, lowercase hyphenated"})
    }
}

/// An Ethereum account address (20 bytes). Accepts lowercase, uppercase or valid EIP-55
/// mixed-case hex with a `0x` prefix; a mixed-case address with a wrong checksum is refused
/// (it is most likely a typo). Always serialised lowercase, which is also its key form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(pub [u8; 20]);

impl Address {
    /// The EIP-55 checksummed form, for display to people.
    pub fn to_checksum(&self) -> String {
        let lower = hex::encode(self.0);
        let hash = Keccak256::digest(lower.as_bytes());
        let mut out = String::with_capacity(42);
        out.push_str("0x");
        for (i, c) in lower.chars().enumerate() {
            let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f;
            out.push(if c.is_ascii_alphabetic() && nibble >= 8 {
                c.to_ascii_uppercase()
            } else {
                c
            });
        }
        out
    }
}

impl FromStr for Address {
    type Err = DecodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .ok_or_else(|| {
                DecodeError::invalid(
                    "$",
                    format!("{s:?} is not an address: expected 0x followed by 40 hex digits"),
                )
            })?;
        if hex_part.len() != 40 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DecodeError::invalid(
                "$",
                format!(
                    "{} is not an address: expected 0x followed by 40 hex digits",
                    short(s)
                ),
            ));
        }
        let mut bytes = [0u8; 20];
        hex::decode_to_slice(hex_part, &mut bytes).map_err(|e| {
            DecodeError::invalid("$", format!("{s:?} is not an address: {e}")).with_source(e)
        })?;
        let addr = Address(bytes);
        let has_lower = hex_part.bytes().any(|b| b.is_ascii_lowercase());
        let has_upper = hex_part.bytes().any(|b| b.is_ascii_uppercase());
        if has_lower && has_upper && addr.to_checksum()[2..] != *hex_part {
            return Err(DecodeError::invalid(
                "$",
                format!(
                    "{s} fails its EIP-55 checksum: expected {}",
                    addr.to_checksum()
                ),
            ));
        }
        Ok(addr)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        s.parse()
            .map_err(|e: DecodeError| de::Error::custom(e.reason))
    }
}

impl JsonSchema for Address {
    fn schema_name() -> Cow<'static, str> {
        "Address".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^0[xX][0-9a-fA-F]{40}$",
            "description": "Ethereum address, 0x + 40 hex digits; mixed case must be valid EIP-55. merit emits lowercase."
        })
    }
}

/// A user, identified by their wallet address.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct UserId(pub Address);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for UserId {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(UserId)
    }
}

/// Longest accepted [`ProposalId`] or [`RuleId`].
pub const MAX_ID_LEN: usize = 64;

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = DecodeError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
                if s.is_empty() || s.len() > MAX_ID_LEN || !s.chars().all(ok_char) {
                    return Err(DecodeError::invalid(
                        "$",
                        format!(
                            "{} is not a valid {}: expected 1-{MAX_ID_LEN} characters of [A-Za-z0-9_.:-]",
                            short(s),
                            $what
                        ),
                    ));
                }
                Ok(Self(s.to_string()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = Cow::<'de, str>::deserialize(d)?;
                s.parse().map_err(|e: DecodeError| de::Error::custom(e.reason))
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"})
            }
        }
    };
}

string_id!(
    /// A proposal, named by whoever created it (1-64 characters of `[A-Za-z0-9_.:-]`).
    ProposalId,
    "proposal id"
);
string_id!(
    /// An achievement rule, named by the operator who wrote it.
    RuleId,
    "rule id"
);
string_id!(
    /// An NFT benefit tier (`bronze`, `gold`, ...), defined in the dynamic config.
    TierId,
    "tier id"
);

/// An ERC-721 token id: a uint256, carried as a decimal string without leading zeros
/// (JSON numbers cannot hold 256 bits in most languages).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TokenId(String);

/// 2^256 - 1 in decimal.
const U256_MAX: &str =
    "115792089237316195423570985008687907853269984665640564039457584007913129639935";

impl TokenId {
    /// The decimal form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<u128> for TokenId {
    fn from(v: u128) -> Self {
        Self(v.to_string())
    }
}

impl FromStr for TokenId {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            DecodeError::invalid(
                "$",
                format!(
                    "{} is not a token id: expected a decimal uint256 string",
                    short(s)
                ),
            )
        };
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let trimmed = s.trim_start_matches('0');
        let canonical = if trimmed.is_empty() { "0" } else { trimmed };
        if canonical.len() > U256_MAX.len()
            || (canonical.len() == U256_MAX.len() && canonical > U256_MAX)
        {
            return Err(bad());
        }
        Ok(Self(canonical.to_string()))
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TokenId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        s.parse()
            .map_err(|e: DecodeError| de::Error::custom(e.reason))
    }
}

impl JsonSchema for TokenId {
    fn schema_name() -> Cow<'static, str> {
        "TokenId".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "pattern": "^[0-9]{1,78}$", "description": "uint256 as a decimal string"})
    }
}

/// A 32-byte transaction hash, lowercase `0x`-hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxHash(pub [u8; 32]);

impl FromStr for TxHash {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        let hex_part = s.strip_prefix("0x").unwrap_or("");
        if hex_part.len() != 64 || hex::decode_to_slice(hex_part, &mut bytes).is_err() {
            return Err(DecodeError::invalid(
                "$",
                format!(
                    "{} is not a transaction hash: expected 0x followed by 64 hex digits",
                    short(s)
                ),
            ));
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for TxHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for TxHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TxHash({self})")
    }
}

impl Serialize for TxHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TxHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        s.parse()
            .map_err(|e: DecodeError| de::Error::custom(e.reason))
    }
}

impl JsonSchema for TxHash {
    fn schema_name() -> Cow<'static, str> {
        "TxHash".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "pattern": "^0x[0-9a-fA-F]{64}$"})
    }
}

/// Quotes untrusted input for an error message, shortened to 80 characters (an error
/// must stay readable even when the input is a megabyte of garbage).
pub fn short(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head:?}… ({} bytes)", s.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_normalises_to_lowercase_and_checks_eip55() {
        let checksummed = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        let a: Address = checksummed.parse().expect("valid EIP-55");
        assert_eq!(a.to_string(), checksummed.to_lowercase());
        assert_eq!(a.to_checksum(), checksummed);
        assert!("0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED"
            .parse::<Address>()
            .is_ok());
        let bad = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD";
        let err = bad.parse::<Address>().expect_err("bad checksum");
        assert!(err.reason.contains("EIP-55"), "{err}");
        assert!("0x123".parse::<Address>().is_err());
        assert!("5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
            .parse::<Address>()
            .is_err());
    }

    #[test]
    fn token_id_is_canonical_and_bounded() {
        assert_eq!("007".parse::<TokenId>().expect("digits").as_str(), "7");
        assert_eq!("0".parse::<TokenId>().expect("zero").as_str(), "0");
        assert!(U256_MAX.parse::<TokenId>().is_ok());
        let too_big =
            "115792089237316195423570985008687907853269984665640564039457584007913129639936";
        assert!(too_big.parse::<TokenId>().is_err());
        assert!("-1".parse::<TokenId>().is_err());
        assert!("".parse::<TokenId>().is_err());
    }

    #[test]
    fn chain_event_ids_are_deterministic() {
        let tx: TxHash = format!("0x{}", "ab".repeat(32)).parse().expect("hash");
        let a = EventId::from_chain_log(31337, &tx, 3);
        assert_eq!(a, EventId::from_chain_log(31337, &tx, 3));
        assert_ne!(a, EventId::from_chain_log(31337, &tx, 4));
        assert_ne!(a, EventId::from_chain_log(1, &tx, 3));
        assert_eq!(a.0.get_version_num(), 5);
    }

    #[test]
    fn proposal_ids_refuse_unsafe_characters() {
        assert!("prop-42".parse::<ProposalId>().is_ok());
        assert!("a b".parse::<ProposalId>().is_err());
        assert!("x".repeat(65).parse::<ProposalId>().is_err());
        assert!("".parse::<ProposalId>().is_err());
    }
}
