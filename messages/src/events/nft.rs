//! NFT lifecycle events, derived from the contract's `Transfer` logs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Validate;
use crate::{
    error::Result,
    ids::{TierId, TokenId, TxHash},
    Address,
};

/// Where on chain a log was found; `(block_number, log_index)` orders NFT changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChainRef {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Block number of the log.
    pub block_number: u64,
    /// Hash of that block (to detect reorgs).
    pub block_hash: TxHash,
    /// Transaction hash.
    pub tx_hash: TxHash,
    /// Index of the log within the block.
    pub log_index: u64,
}

impl ChainRef {
    /// The ordering position of this log on its chain.
    pub fn position(&self) -> (u64, u64) {
        (self.block_number, self.log_index)
    }
}

/// `nft.minted` v1: a token came into existence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NftMinted {
    /// The token.
    pub token: TokenId,
    /// First owner.
    pub to: Address,
    /// The achievement it was minted for, when merit minted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub achievement_id: Option<Uuid>,
    /// The benefit tier, when the producer knows it (merit's own mints look it up from the
    /// achievement instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<TierId>,
    /// Where the mint happened.
    pub chain: ChainRef,
}

/// `nft.transferred` v1: a token changed owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NftTransferred {
    /// The token.
    pub token: TokenId,
    /// Previous owner.
    pub from: Address,
    /// New owner.
    pub to: Address,
    /// Where the transfer happened.
    pub chain: ChainRef,
}

/// `nft.burned` v1: a token was destroyed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NftBurned {
    /// The token.
    pub token: TokenId,
    /// Its last owner.
    pub from: Address,
    /// Where the burn happened.
    pub chain: ChainRef,
}

impl Validate for NftMinted {
    fn validate(&self) -> Result<()> {
        Ok(())
    }
}

impl Validate for NftTransferred {
    fn validate(&self) -> Result<()> {
        Ok(())
    }
}

impl Validate for NftBurned {
    fn validate(&self) -> Result<()> {
        Ok(())
    }
}
