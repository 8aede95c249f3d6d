//! Dynamic configuration versions.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{check_len, Validate};
use crate::error::Result;

/// `config.changed` v1: a new version of the dynamic config (rules, tiers, limits) is active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigChanged {
    /// The version now active.
    pub version: u64,
    /// The version it replaced, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<u64>,
    /// When this is a rollback, the version it restores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<u64>,
    /// Who made the change, 1-100 characters.
    pub author: String,
    /// Why, at most 500 characters.
    pub reason: String,
}

impl Validate for ConfigChanged {
    fn validate(&self) -> Result<()> {
        check_len("author", &self.author, 1, 100)?;
        check_len("reason", &self.reason, 0, 500)
    }
}
