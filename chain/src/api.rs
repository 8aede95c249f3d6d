//! The port every chain backend implements ([`Chain`]) and the plain types it speaks.
//! Only merit's own types cross it, so the rest of merit never sees ethers (and a move to
//! another client library touches this crate alone).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use merit_messages::{Address, TokenId, TxHash};
use uuid::Uuid;

use crate::error::Result;

/// One ERC-721 `Transfer` log of the achievement contract, in chain coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferLog {
    /// Block number.
    pub block: u64,
    /// Hash of that block.
    pub block_hash: TxHash,
    /// That block's timestamp: the event's `occurred_at`, so a replayed log yields the
    /// same envelope byte for byte.
    pub block_time: DateTime<Utc>,
    /// Index of the log within the block.
    pub log_index: u64,
    /// Transaction that emitted it.
    pub tx_hash: TxHash,
    /// Previous owner; the zero address for a mint.
    pub from: Address,
    /// New owner; the zero address for a burn.
    pub to: Address,
    /// The token.
    pub token_id: TokenId,
    /// For a mint by merit: the achievement named by the contract's `AchievementMinted`
    /// log in the same transaction.
    pub achievement_id: Option<Uuid>,
}

impl TransferLog {
    /// The ordering position `(block, log index)`.
    pub fn position(&self) -> (u64, u64) {
        (self.block, self.log_index)
    }
}

/// The zero address: `from` of a mint, `to` of a burn.
pub const ZERO_ADDRESS: Address = Address([0; 20]);

/// A mined transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The transaction.
    pub tx_hash: TxHash,
    /// Block it was mined in.
    pub block: u64,
    /// Hash of that block.
    pub block_hash: TxHash,
    /// Whether it succeeded (a mined transaction can still have reverted).
    pub success: bool,
}

/// Where a transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    /// Not mined in the canonical chain: still pending, dropped, or reorged out.
    NotMined,
    /// Mined in the canonical chain, with `confirmations` blocks on top of it plus one
    /// (a transaction in the head block has 1).
    Mined {
        /// The receipt.
        receipt: Receipt,
        /// `head - block + 1`.
        confirmations: u64,
    },
}

impl TxStatus {
    /// Whether it is mined with at least `n` confirmations.
    pub fn is_confirmed(&self, n: u64) -> bool {
        matches!(self, Self::Mined { confirmations, .. } if *confirmations >= n)
    }
}

/// The achievement NFT contract on some chain.
///
/// Writes (`mint`, `burn`) return when the node accepted the transaction, not when it is
/// mined: follow it with [`Chain::confirmations`]. Every method reports failures with an
/// [`crate::ErrorClass`].
#[async_trait]
pub trait Chain: Send + Sync + std::fmt::Debug {
    /// EIP-155 chain id.
    fn chain_id(&self) -> u64;

    /// The contract's address.
    fn contract(&self) -> Address;

    /// Mints `token` to `to` for `achievement`. Refused (permanent) if the token exists or
    /// the minter lacks `MINTER_ROLE`.
    async fn mint(&self, to: Address, token: &TokenId, achievement: Uuid) -> Result<TxHash>;

    /// Burns `token` if `expected_owner` still holds it: the check and the burn are one
    /// transaction (the contract's `burnFrom`), so a transfer mined after the caller last
    /// read the owner can never make this burn someone else's token. Refused with
    /// [`crate::ChainError::OwnerChanged`] (permanent; see
    /// [`crate::ChainError::owner_changed`]) when another address holds it; refused
    /// (permanent) if it does not exist or the role is missing. A transfer still pending
    /// when this is sent and mined first makes the burn transaction revert on chain
    /// (its receipt shows failure) and the token stays with its new holder.
    async fn burn(&self, token: &TokenId, expected_owner: Address) -> Result<TxHash>;

    /// The receipt of `tx`, if it is mined in the canonical chain.
    async fn receipt(&self, tx: &TxHash) -> Result<Option<Receipt>>;

    /// The owner of `token` at block `at` (`None`: latest), or `None` if it does not exist
    /// there (never minted, or burned).
    async fn owner_of(&self, token: &TokenId, at: Option<u64>) -> Result<Option<Address>>;

    /// The latest block number.
    async fn head_block(&self) -> Result<u64>;

    /// The hash of canonical block `n`, or `None` past the head.
    async fn block_hash(&self, n: u64) -> Result<Option<TxHash>>;

    /// The contract's `Transfer` logs in blocks `from..=to`, in `(block, log index)` order.
    async fn logs(&self, from: u64, to: u64) -> Result<Vec<TransferLog>>;

    /// Whether `tx` is mined, how deep, and whether its block is still canonical (a
    /// receipt whose block hash no longer matches the chain reads as not mined).
    async fn confirmations(&self, tx: &TxHash) -> Result<TxStatus> {
        let Some(receipt) = self.receipt(tx).await? else {
            return Ok(TxStatus::NotMined);
        };
        let head = self.head_block().await?;
        if self.block_hash(receipt.block).await? != Some(receipt.block_hash) {
            return Ok(TxStatus::NotMined);
        }
        Ok(TxStatus::Mined {
            receipt,
            confirmations: head.saturating_sub(receipt.block) + 1,
        })
    }
}

/// The contract's `bytes32` form of an achievement id: the UUID's 16 bytes, then zeros
/// (as Solidity's `bytes32(bytes16(x))`).
pub fn achievement_to_bytes32(id: Uuid) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(id.as_bytes());
    out
}

/// The inverse of [`achievement_to_bytes32`]; `None` for a value merit did not write.
pub fn achievement_from_bytes32(raw: [u8; 32]) -> Option<Uuid> {
    if raw[16..].iter().any(|b| *b != 0) || raw[..16].iter().all(|b| *b == 0) {
        return None;
    }
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&raw[..16]);
    Some(Uuid::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn achievement_ids_round_trip_through_bytes32() {
        let id = Uuid::new_v4();
        assert_eq!(
            achievement_from_bytes32(achievement_to_bytes32(id)),
            Some(id)
        );
        let mut foreign = achievement_to_bytes32(id);
        foreign[31] = 1;
        assert_eq!(achievement_from_bytes32(foreign), None);
        assert_eq!(achievement_from_bytes32([0; 32]), None);
    }
}
