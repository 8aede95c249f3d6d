//! Why a rule document was refused: the JSON path of the offending value and what was
//! expected, so an operator can fix the document without reading merit's source.

use std::fmt;

use merit_messages::SharedCause;

/// A rule document merit refuses.
///
/// `path` uses the document's own names: `rules[3].when.all_of[1].count.at_least`; `$` is
/// the whole document. When the refusal comes from another error (serde_json's), that
/// error is its [`std::error::Error::source`] (its text is in `reason` too); two rule errors
/// with the same path and reason are equal whatever their sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// JSON path of the offending value.
    pub path: String,
    /// What was wrong and what was expected.
    pub reason: String,
    /// The underlying error, if any (not compared).
    source: SharedCause,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

impl std::error::Error for RuleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.get()
    }
}

impl RuleError {
    /// A refusal of the value at `path` (`$` for the whole document), saying what was
    /// expected. Public so that a layer checking a document before parsing it (the config
    /// center's size check) reports in the same shape.
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
            source: SharedCause::default(),
        }
    }

    /// This refusal, keeping `source` (the error it was built from) as its source.
    #[must_use]
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = SharedCause::new(source);
        self
    }

    /// This refusal, with the source another error kept.
    pub(crate) fn with_cause(mut self, cause: SharedCause) -> Self {
        self.source = cause;
        self
    }
}

/// Quotes untrusted text for an error (shared with the envelope decoder).
pub(crate) use merit_messages::quote_untrusted as quote;
