//! Why a rule document was refused: the JSON path of the offending value and what was
//! expected, so an operator can fix the document without reading merit's source.

/// A rule document merit refuses.
///
/// `path` uses the document's own names: `rules[3].when.all_of[1].count.at_least`; `$` is
/// the whole document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct RuleError {
    /// JSON path of the offending value.
    pub path: String,
    /// What was wrong and what was expected.
    pub reason: String,
}

impl RuleError {
    /// A refusal of the value at `path` (`$` for the whole document), saying what was
    /// expected. Public so that a layer checking a document before parsing it (the config
    /// center's size check) reports in the same shape.
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Quotes untrusted text for an error (shared with the envelope decoder).
pub(crate) use merit_messages::quote_untrusted as quote;
