//! Values that must never be printed: [`Secret`] for tokens and keys,
//! [`SecretUrl`] for connection strings that may carry a password.
//!
//! Both print (`Debug`, `Display`) and serialize redacted, and the real value
//! is reachable only through an explicit accessor, so every place that uses it
//! is a visible `expose_secret()` / `expose()` call. Neither implements
//! `Deserialize`: secrets enter through [`crate::Settings::load`] (or `new`),
//! never by deserializing some struct that happens to contain one. The raw
//! value is held in a [`secrecy::SecretString`], which zeroes it on drop.

use std::{fmt, hint::black_box};

use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, Serializer};

/// What a redacted secret prints as.
pub(crate) const REDACTED: &str = "***redacted***";

/// What a redacted URL password (or password-like query value) prints as.
const REDACTED_PART: &str = "***";

/// Query parameters whose values are treated as passwords in URLs.
const SECRET_QUERY_PARAMS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "pwd",
    "sslpassword",
    "secret",
    "token",
    "apikey",
    "api_key",
];

/// A secret string: a token, a signing secret, a private key.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The secret itself. Call it only where the value is used (signing,
    /// comparing, connecting), never to log or display it.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// Compares the secret with `candidate` in time that depends only on the
    /// candidate's length, so a caller checking a presented token learns
    /// nothing from timing about how much of it matched. A length mismatch
    /// returns `false` after the same full walk over `candidate`.
    pub fn constant_time_eq(&self, candidate: &[u8]) -> bool {
        let secret = self.expose_secret().as_bytes();
        let mut diff = secret.len() ^ candidate.len();
        for (i, &byte) in candidate.iter().enumerate() {
            // Walks the secret cyclically so unequal lengths do the same work
            // as equal ones; the empty secret compares against zeros.
            let expected = if secret.is_empty() {
                0
            } else {
                secret[i % secret.len()]
            };
            diff |= usize::from(black_box(expected ^ byte));
        }
        black_box(diff) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// A connection URL that may carry a password (a database DSN, an AMQP or
/// Redis URL). It prints and serializes with the password replaced by `***`
/// (`postgres://merit:***@db/merit`); [`SecretUrl::expose`] gives the real URL
/// for connecting.
#[derive(Clone)]
pub struct SecretUrl {
    raw: SecretString,
    redacted: String,
}

impl SecretUrl {
    /// Wraps a URL. No validation happens here; [`crate::Settings::load`]
    /// checks the scheme of each configured URL.
    pub fn new(url: impl Into<String>) -> Self {
        let url = url.into();
        let redacted = redact_url(&url);
        Self {
            raw: SecretString::from(url),
            redacted,
        }
    }

    /// The real URL, password included: for connecting only.
    pub fn expose(&self) -> &str {
        self.raw.expose_secret()
    }

    /// The URL with its password redacted: what `Display` prints.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted, f)
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted)
    }
}

/// Replaces the password of `url` (and of password-like query parameters)
/// with `***`.
///
/// Errs on the side of hiding: the user-info ends at the *last* `@`, so a
/// password containing an unescaped `/`, `?` or `@` is still hidden, at the
/// cost of over-redacting a URL whose path contains `@`. A string without a
/// scheme but with an `@` loses everything before the `@`.
pub(crate) fn redact_url(url: &str) -> String {
    let parts = merit_messages::split_url_list(url);
    if parts.len() > 1 {
        // A list of broker addresses: each redacted on its own.
        return parts
            .into_iter()
            .map(redact_one_url)
            .collect::<Vec<_>>()
            .join(",");
    }
    redact_one_url(url)
}

fn redact_one_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(at) => url.split_at(at + "://".len()),
        None => ("", url),
    };
    let (userinfo, host_onwards) = match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let shown = if scheme.is_empty() {
                REDACTED_PART.to_owned()
            } else {
                match userinfo.split_once(':') {
                    Some((user, _password)) => format!("{user}:{REDACTED_PART}"),
                    None => userinfo.to_owned(),
                }
            };
            (format!("{shown}@"), &rest[at + 1..])
        }
        None => (String::new(), rest),
    };
    format!("{scheme}{userinfo}{}", redact_query(host_onwards))
}

/// Redacts the values of password-like parameters in the query of `tail`.
fn redact_query(tail: &str) -> String {
    let Some((before, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, _value))
                if SECRET_QUERY_PARAMS
                    .iter()
                    .any(|secret| name.eq_ignore_ascii_case(secret)) =>
            {
                format!("{name}={REDACTED_PART}")
            }
            _ => param.to_owned(),
        })
        .collect();
    format!("{before}?{}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUE: &str = "S3CRET-VALUE-xyz";

    #[test]
    fn secret_never_prints_or_serializes_its_value() {
        let secret = Secret::new(VALUE);
        for shown in [
            format!("{secret:?}"),
            format!("{secret}"),
            format!("{secret:#?}"),
            serde_json::to_string(&secret).expect("a string serializes"),
        ] {
            assert!(!shown.contains(VALUE), "leaked in {shown}");
            assert!(shown.contains(REDACTED), "{shown}");
        }
        assert_eq!(secret.expose_secret(), VALUE);
    }

    #[test]
    fn constant_time_eq_matches_only_the_exact_value() {
        let secret = Secret::new("token-123");
        assert!(secret.constant_time_eq(b"token-123"));
        assert!(!secret.constant_time_eq(b"token-124"));
        assert!(!secret.constant_time_eq(b"token-12"));
        assert!(!secret.constant_time_eq(b"token-1234"));
        // A candidate that repeats the secret cyclically must not match.
        assert!(!secret.constant_time_eq(b"token-123token-123"));
        assert!(!secret.constant_time_eq(b""));
        let empty = Secret::new("");
        assert!(empty.constant_time_eq(b""));
        assert!(!empty.constant_time_eq(b"\0"));
    }

    #[test]
    fn url_password_is_redacted_and_the_rest_kept() {
        let cases = [
            (
                "postgres://merit:pw@db:5432/merit",
                "postgres://merit:***@db:5432/merit",
            ),
            (
                "amqp://guest:guest@localhost:5672/%2f",
                "amqp://guest:***@localhost:5672/%2f",
            ),
            ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
            ("redis://cache:6379", "redis://cache:6379"),
            ("postgres://merit@db/merit", "postgres://merit@db/merit"),
            ("sqlite://merit.db?mode=rwc", "sqlite://merit.db?mode=rwc"),
            ("sqlite::memory:", "sqlite::memory:"),
            ("postgres://u:p@ss/w?rd@db/x", "postgres://u:***@db/x"),
            (
                "postgres://db/x?user=u&password=pw&sslmode=require",
                "postgres://db/x?user=u&password=***&sslmode=require",
            ),
            ("u:pw@host", "***@host"),
        ];
        for (url, expected) in cases {
            assert_eq!(redact_url(url), expected, "redacting {url}");
        }
    }

    #[test]
    fn secret_url_prints_redacted_and_exposes_the_real_url() {
        let url = SecretUrl::new(format!("postgres://merit:{VALUE}@db/merit"));
        for shown in [
            format!("{url:?}"),
            format!("{url}"),
            serde_json::to_string(&url).expect("a string serializes"),
        ] {
            assert!(!shown.contains(VALUE), "leaked in {shown}");
            assert!(shown.contains("postgres://merit:***@db/merit"), "{shown}");
        }
        assert_eq!(url.expose(), format!("postgres://merit:{VALUE}@db/merit"));
    }
}
