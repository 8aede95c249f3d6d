//! merit's chain adapter: the achievement NFT contract and the flow of its logs into merit.
//!
//! Owns: the [`Chain`] port (burns only from the holder the caller expects) (mint, burn, receipts and confirmations, owners, heads, block
//! hashes, `Transfer` logs) with two backends — [`EthersChain`] over a JSON-RPC node and
//! [`DevChain`] in process — the [`Listener`] that turns confirmed logs into `nft.*`
//! events in the outbox with a checkpoint, and [`full_sync`], which repairs drift between
//! the store and the chain with ordinary events.
//!
//! Guarantees: only logs with `confirmations` blocks on top are read, in `(block, log
//! index)` order; the events of a batch and the checkpoint move in one transaction, and
//! event ids derive from `(chain id, tx hash, log index)`, so a replay emits nothing new;
//! errors are classified transient / permanent / unavailable (a burn refused because the
//! token changed hands is [`ChainError::OwnerChanged`]); the [`Minter`] signs with a
//! plaintext key, a decrypted keystore or an external signer, and neither the key, the
//! keystore password nor a signer URL appears in `Debug`, errors or logs.
//!
//! Must not know: actors, brokers or the domain. Every ethers type stays inside this
//! crate: the public API speaks `merit-messages` types only.

mod api;
mod dev;
mod error;
mod ethers_chain;
mod events;
mod listener;
mod minter;
mod record;
mod sync;

pub use api::{
    achievement_from_bytes32, achievement_to_bytes32, Chain, Receipt, TransferLog, TxStatus,
    ZERO_ADDRESS,
};
pub use dev::{DevChain, Failure};
pub use error::{Cause, ChainError, ErrorClass, Result};
pub use ethers_chain::{EthersChain, EthersOptions};
pub use events::{envelope_for, source, NO_TX};
pub use listener::{Listener, ListenerConfig, ListenerStatus, PollOutcome, StatusHandle};
pub use minter::Minter;
pub use record::{checkpoint_id, load_checkpoint, Checkpoint};
pub use sync::{full_sync, Drift, SyncReport, REPAIR_LOG_INDEX};
