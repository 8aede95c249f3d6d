//! What the cache stores: one key per cached per-user record.

use std::{fmt, str::FromStr};

use merit_messages::UserId;

/// A cached record. Its [`Display`](fmt::Display) form (`benefits:0xab…`,
/// `profile:0xab…`) is the key's name everywhere outside the process: in Redis
/// (`{prefix}{display}`) and in invalidation messages.
///
/// The address must be the lowercase `0x` form (what [`UserId`]'s `Display` prints); the
/// [`CacheKey::benefits`] and [`CacheKey::user_profile`] constructors guarantee it. Two
/// spellings of one address would be two keys, and invalidating one would leave the other.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CacheKey {
    /// A user's current benefits (held NFTs, vote weight multipliers).
    Benefits(String),
    /// A user's profile.
    UserProfile(String),
}

impl CacheKey {
    /// The benefits key of `user`.
    pub fn benefits(user: UserId) -> Self {
        Self::Benefits(user.to_string())
    }

    /// The profile key of `user`.
    pub fn user_profile(user: UserId) -> Self {
        Self::UserProfile(user.to_string())
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Benefits(addr) => write!(f, "benefits:{addr}"),
            Self::UserProfile(addr) => write!(f, "profile:{addr}"),
        }
    }
}

/// A key name that names no [`CacheKey`] this build knows (e.g. sent by a newer node).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a cache key: expected benefits:<address> or profile:<address>")]
pub struct UnknownCacheKey(pub String);

impl FromStr for CacheKey {
    type Err = UnknownCacheKey;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("benefits", addr)) if !addr.is_empty() => Ok(Self::Benefits(addr.to_string())),
            Some(("profile", addr)) if !addr.is_empty() => Ok(Self::UserProfile(addr.to_string())),
            _ => Err(UnknownCacheKey(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_use_the_lowercase_address() {
        let user: UserId = "0xAbCdEf0123456789aBcDeF0123456789ABCDEF01"
            .to_lowercase()
            .parse()
            .expect("valid address");
        assert_eq!(
            CacheKey::benefits(user).to_string(),
            "benefits:0xabcdef0123456789abcdef0123456789abcdef01"
        );
        assert_eq!(
            CacheKey::user_profile(user).to_string(),
            "profile:0xabcdef0123456789abcdef0123456789abcdef01"
        );
    }

    #[test]
    fn display_parses_back_to_the_same_key() {
        for key in [
            CacheKey::Benefits("0x01".into()),
            CacheKey::UserProfile("0x02".into()),
        ] {
            assert_eq!(key.to_string().parse::<CacheKey>(), Ok(key));
        }
    }

    #[test]
    fn unknown_kinds_are_refused() {
        assert!("votes:0x01".parse::<CacheKey>().is_err());
        assert!("benefits:".parse::<CacheKey>().is_err());
        assert!("benefits".parse::<CacheKey>().is_err());
    }
}
