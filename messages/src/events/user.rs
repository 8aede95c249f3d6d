//! Per-user derived state.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Validate;
use crate::{
    error::Result,
    ids::{TierId, TokenId},
    Address, DecodeError,
};

/// Most tokens a benefits change may list.
pub const MAX_BOOSTING_NFTS: usize = 10_000;

/// `user.benefits.changed` v1: what a user's vote is worth changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BenefitsChanged {
    /// The user.
    pub user: Address,
    /// Vote weight multiplier in basis points (10000 = 1x).
    pub multiplier_bps: u32,
    /// Tokens that contribute to the multiplier.
    pub boosting_nfts: Vec<TokenId>,
    /// Config version the benefits were computed under.
    pub config_version: u64,
}

impl Validate for BenefitsChanged {
    fn validate(&self) -> Result<()> {
        if self.boosting_nfts.len() > MAX_BOOSTING_NFTS {
            return Err(DecodeError::invalid(
                "boosting_nfts",
                format!(
                    "{} entries: at most {MAX_BOOSTING_NFTS} allowed",
                    self.boosting_nfts.len()
                ),
            ));
        }
        Ok(())
    }
}

/// Whether a user gained or lost a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HoldingChange {
    /// The user now holds the token.
    Acquired,
    /// The user no longer holds the token.
    Released,
}

/// `user.holdings.changed` v1: the NFT actor accepted a mint, transfer or burn that changes
/// what `user` holds. Emitted once per affected user, in the token's chain order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldingsChanged {
    /// The user.
    pub user: Address,
    /// The token.
    pub token: TokenId,
    /// Gained or lost.
    pub change: HoldingChange,
    /// The token's benefit tier, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<TierId>,
    /// Chain position `(block_number, log_index)` of the change.
    pub position: (u64, u64),
}

impl Validate for HoldingsChanged {
    fn validate(&self) -> Result<()> {
        Ok(())
    }
}
