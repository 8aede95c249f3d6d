//! The achievement trigger system's events.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{check_len, Validate};
use crate::{
    error::Result,
    ids::{RuleId, TierId, TokenId, TxHash},
    Address,
};

/// `achievement.unlocked` v1: a user met an achievement rule; the unlock saga mints its NFT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AchievementUnlocked {
    /// The user.
    pub user: Address,
    /// Deterministic id of this unlock (uuid5 of user, rule and occurrence).
    pub achievement_id: Uuid,
    /// The rule that was met.
    pub rule: RuleId,
    /// Config version the rule was evaluated under.
    pub rule_version: u64,
    /// Tier of the NFT the rule mints.
    pub tier: TierId,
    /// The token id reserved for the NFT, derived from `achievement_id`.
    pub token: TokenId,
}

impl Validate for AchievementUnlocked {
    fn validate(&self) -> Result<()> {
        Ok(())
    }
}

/// `achievement.revoked` v1: an unlock was taken back (failed mint, operator action).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AchievementRevoked {
    /// The user.
    pub user: Address,
    /// The unlock revoked.
    pub achievement_id: Uuid,
    /// The rule it was unlocked by.
    pub rule: RuleId,
    /// Why, at most 500 characters.
    pub reason: String,
}

impl Validate for AchievementRevoked {
    fn validate(&self) -> Result<()> {
        check_len("reason", &self.reason, 1, 500)
    }
}

/// `achievement.minted` v1 (emitted by the AchievementUnlock saga): the achievement's NFT
/// is on chain with enough confirmations and registered; the unlock is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AchievementMinted {
    /// The user.
    pub user: Address,
    /// The achievement.
    pub achievement_id: Uuid,
    /// The rule it was unlocked by.
    pub rule: RuleId,
    /// The token minted.
    pub token: TokenId,
    /// The mint transaction, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<TxHash>,
}

impl Validate for AchievementMinted {
    fn validate(&self) -> Result<()> {
        Ok(())
    }
}

/// `achievement.failed` v1 (emitted by the AchievementUnlock saga): the mint failed for
/// good and was compensated; the achievement is marked failed and an operator may retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AchievementFailed {
    /// The user.
    pub user: Address,
    /// The achievement.
    pub achievement_id: Uuid,
    /// The rule it was unlocked by.
    pub rule: RuleId,
    /// Why.
    pub reason: String,
}

impl Validate for AchievementFailed {
    fn validate(&self) -> Result<()> {
        check_len("reason", &self.reason, 1, 2_000)
    }
}
