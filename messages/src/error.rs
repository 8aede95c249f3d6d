//! Decoding and validation errors. Every error names the field (a JSON path such as
//! `payload.voter`) and says what was expected, so a dead-letter reason or an API
//! response can be acted on without reading merit's source.

use std::{fmt, sync::Arc};

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

/// The error another error was built from, kept as its [`std::error::Error::source`] by
/// errors that are values (`Clone`, `PartialEq`): shared, so that the holder stays `Clone`,
/// and left out of equality, since the holder's own fields (whose reason names the cause)
/// already say what went wrong. Empty when there was no underlying error.
#[derive(Clone, Default)]
pub struct SharedCause(Option<Arc<dyn std::error::Error + Send + Sync + 'static>>);

impl SharedCause {
    /// Keeps `source`.
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self(Some(Arc::from(source.into())))
    }

    /// The kept error, for an [`std::error::Error::source`] implementation.
    pub fn get(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl fmt::Debug for SharedCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(e) => fmt::Debug::fmt(e, f),
            None => f.write_str("None"),
        }
    }
}

impl PartialEq for SharedCause {
    /// Always equal: a cause does not tell two errors apart (see the type's documentation).
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for SharedCause {}

/// A message merit refuses, with the field at fault and why. When it was built from
/// another error (serde_json's, a hex decoder's), that error is its
/// [`std::error::Error::source`]; its text is in `reason` too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The class of failure.
    pub kind: DecodeErrorKind,
    /// JSON path of the offending field (`payload.voter`), or `$` for the whole message.
    pub field: String,
    /// What was wrong and what was expected.
    pub reason: String,
    /// The underlying error, if any (not compared).
    source: SharedCause,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.kind, self.field, self.reason)
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.get()
    }
}

impl DecodeError {
    /// Builds an error of `kind` at `field`.
    pub fn new(kind: DecodeErrorKind, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            kind,
            field: field.into(),
            reason: reason.into(),
            source: SharedCause::default(),
        }
    }

    /// This error, keeping `source` (the error it was built from) as its source.
    #[must_use]
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = SharedCause::new(source);
        self
    }

    /// An [`DecodeErrorKind::InvalidField`] error.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::new(DecodeErrorKind::InvalidField, field, reason)
    }

    /// The error this one was built from, shared (for an error that wraps this one's
    /// reason and keeps its source).
    pub fn cause(&self) -> &SharedCause {
        &self.source
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
/// serde_json's error is kept as the result's source.
pub fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> DecodeError {
    let path = match e.path().to_string() {
        p if p == "." => "$".to_string(),
        p => p,
    };
    let inner = e.into_inner();
    let message = inner.to_string();
    json_error_text(&path, &inner, &message).with_source(inner)
}

/// The error [`json_error`] reports for serde_json's `inner` (whose text is `message`) at
/// `path`, before the source is attached.
fn json_error_text(path: &str, inner: &serde_json::Error, message: &str) -> DecodeError {
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
    let located = message.split(" at line ").next().unwrap_or(message);
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

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    fn serde_failure(json: &str) -> DecodeError {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Doc {
            n: u32,
        }
        let mut de = serde_json::Deserializer::from_str(json);
        let e = serde_path_to_error::deserialize::<_, Doc>(&mut de).expect_err("refused");
        json_error(e)
    }

    #[test]
    fn a_json_error_keeps_serde_json_as_its_source() {
        for json in [r#"{"n": "x"}"#, "{}", "{", r#"{"n": 1, "m": 2}"#] {
            let err = serde_failure(json);
            let source = err.source().expect("kept");
            assert!(
                source.downcast_ref::<serde_json::Error>().is_some(),
                "{json}: {err}"
            );
        }
        let err = serde_failure(r#"{"n": "x"}"#);
        assert_eq!(err.kind, DecodeErrorKind::InvalidField);
        assert_eq!(err.to_string(), format!("invalid_field: n: {}", err.reason));
    }

    #[test]
    fn the_source_does_not_tell_two_errors_apart() {
        let plain = DecodeError::invalid("$", "bad");
        let caused = DecodeError::invalid("$", "bad").with_source(std::fmt::Error);
        assert!(plain.source().is_none());
        assert!(caused.source().is_some());
        assert_eq!(plain, caused.clone());
        assert_eq!(caused.to_string(), "invalid_field: $: bad");
        assert!(format!("{caused:?}").contains("Error"), "{caused:?}");
        let moved = caused.within("payload");
        assert_eq!(moved.field, "payload");
        assert!(moved.source().is_some(), "kept through within");
    }
}
