//! Decoding and validation errors. Every error names the field (a JSON path such as
//! `payload.voter`) and says what was expected, so a dead-letter reason or an API
//! response can be acted on without reading merit's source.

use std::fmt;

/// The class of a decoding failure; stable strings used in dead-letter headers and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecodeErrorKind {
    /// The message is larger than [`crate::MAX_ENVELOPE_BYTES`].
    Oversized,
    /// The bytes are not JSON, or not the expected JSON shape.
    Malformed,
    /// The `type` is not one merit knows.
    UnknownType,
    /// The `version` is not supported for this `type`.
    UnknownVersion,
    /// A field is present and well-formed JSON but its value is not acceptable.
    InvalidField,
    /// A field the envelope or payload needs is missing.
    MissingField,
    /// `keys` was given and disagrees with the keys derived from the payload.
    KeyMismatch,
}

impl DecodeErrorKind {
    /// The stable, lowercase name of this class (`oversized`, `unknown_type`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oversized => "oversized",
            Self::Malformed => "malformed",
            Self::UnknownType => "unknown_type",
            Self::UnknownVersion => "unknown_version",
            Self::InvalidField => "invalid_field",
            Self::MissingField => "missing_field",
            Self::KeyMismatch => "key_mismatch",
        }
    }
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message merit refuses, with the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {field}: {reason}")]
pub struct DecodeError {
    /// The class of failure.
    pub kind: DecodeErrorKind,
    /// JSON path of the offending field (`payload.voter`), or `$` for the whole message.
    pub field: String,
    /// What was wrong and what was expected.
    pub reason: String,
}

impl DecodeError {
    /// Builds an error of `kind` at `field`.
    pub fn new(kind: DecodeErrorKind, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            kind,
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// An [`DecodeErrorKind::InvalidField`] error.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::new(DecodeErrorKind::InvalidField, field, reason)
    }

    /// Prefixes the field path, used when a payload error surfaces through the envelope.
    pub(crate) fn within(mut self, parent: &str) -> Self {
        self.field = if self.field == "$" || self.field.is_empty() {
            parent.to_string()
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}

/// Result alias for decoding.
pub type Result<T> = std::result::Result<T, DecodeError>;

/// Describes a serde_json failure at its JSON path, for every strict decoder in merit
/// (envelopes, rule documents): a missing field is named in the path (`payload.voter`), an
/// unknown field says what was expected, and serde_json's " at line L column C" is kept
/// only for syntax errors (it means nothing to someone who sent a document, not a file).
pub fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> DecodeError {
    let path = match e.path().to_string() {
        p if p == "." => "$".to_string(),
        p => p,
    };
    let inner = e.into_inner();
    let message = inner.to_string();
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let field = if path == "$" {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        return DecodeError::new(
            DecodeErrorKind::MissingField,
            field,
            "required field is missing",
        );
    }
    let located = message.split(" at line ").next().unwrap_or(&message);
    if let Some(rest) = located.strip_prefix("unknown field `") {
        // The path already ends in the unknown field's name.
        let reason = match rest.split("expected ").nth(1) {
            Some(expected) => format!("unknown field; expected {expected}"),
            None => "unknown field".to_string(),
        };
        return DecodeError::new(DecodeErrorKind::InvalidField, path, reason);
    }
    match inner.classify() {
        serde_json::error::Category::Data => {
            DecodeError::new(DecodeErrorKind::InvalidField, path, located)
        }
        _ => DecodeError::new(DecodeErrorKind::Malformed, path, message),
    }
}

/// The text of a caught panic's payload (`panic!("…")` gives a `&str` or a `String`), for
/// the error that reports it.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}
