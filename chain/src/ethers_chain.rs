//! [`EthersChain`]: the [`Chain`] port over a JSON-RPC node (ethers-rs, HTTP).
//!
//! Writes are signed by the [`Minter`] (a key in this process, or an external signer)
//! and sent raw. The adapter keeps its own
//! nonce: it reads the pending nonce once, counts up locally, and reads it again after
//! any failed send or any outage (the node may have restarted and forgotten its pool).
//! Sends are serialised by the nonce lock, so nonces go out in order. Gas is estimated
//! per transaction (+20%); an estimate that reverts is the cheapest way to learn that the
//! chain will refuse the call, so it is reported as permanent before anything is signed.
//!
//! Every RPC call has a timeout; transient failures are retried a bounded number of times
//! with exponential backoff (each retry logged); an unreachable node is reported as
//! [`ErrorClass::Unavailable`](crate::ErrorClass::Unavailable) at once, for the caller to
//! wait out.
//!
//! The key lives only in the [`Minter`]; `Debug` shows the minter's address, never the key or
//! the RPC URL (which may carry credentials).

use std::{sync::atomic::AtomicBool, time::Duration};

use async_trait::async_trait;
use chrono::DateTime;
use ethers::{
    abi::{AbiDecode, AbiEncode},
    contract::EthEvent,
    providers::{Http, Middleware, Provider},
    types::{
        transaction::eip2718::TypedTransaction, BlockId, BlockNumber, Bytes,
        Eip1559TransactionRequest, Filter, H160, H256, U256,
    },
};
use merit_config::Secret;
use merit_messages::{Address, Backoff, TokenId, TxHash};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::{
    api::{achievement_to_bytes32, Chain, Receipt, TransferLog},
    error::{ChainError, Result},
    minter::Minter,
};

#[allow(missing_docs, unreachable_pub, clippy::all)]
mod binding {
    ethers::contract::abigen!(MeritAchievement, "abi/MeritAchievement.json");
}

use binding::{
    AchievementMintedFilter, BurnFromCall, MintCall, OwnerOfCall, TransferFilter,
    MERITACHIEVEMENT_BYTECODE,
};

mod calls;
mod decode;

use decode::{classify, decode_logs};

/// Timeouts and retries of the RPC client.
#[derive(Debug, Clone)]
pub struct EthersOptions {
    /// Longest wait for one RPC call.
    pub rpc_timeout: Duration,
    /// Attempts for a call failing transiently (1: no retry).
    pub attempts: u32,
    /// First backoff; doubled each retry (up to 30 s), the upper half jittered.
    pub backoff: Duration,
    /// How long [`EthersChain::deploy`] waits for the deployment to be mined.
    pub deploy_timeout: Duration,
}

impl Default for EthersOptions {
    fn default() -> Self {
        Self {
            rpc_timeout: Duration::from_secs(10),
            attempts: 4,
            backoff: Duration::from_millis(200),
            deploy_timeout: Duration::from_secs(60),
        }
    }
}

/// The achievement contract on a JSON-RPC node.
pub struct EthersChain {
    provider: Provider<Http>,
    minter: Minter,
    chain_id: u64,
    contract: H160,
    options: EthersOptions,
    /// The next nonce to use; `None`: read the pending nonce before the next send.
    nonce: Mutex<Option<U256>>,
    /// Set when a call found the node unreachable: the nonce must be read again.
    stale_nonce: AtomicBool,
}

impl std::fmt::Debug for EthersChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EthersChain")
            .field("chain_id", &self.chain_id)
            .field("contract", &from_h160(self.contract))
            .field("minter", &self.minter)
            .finish_non_exhaustive()
    }
}

impl EthersChain {
    /// The wait after failed attempt `attempt` (1-based).
    fn retry_pause(&self, attempt: u32) -> Duration {
        Backoff::exponential(self.options.backoff, Duration::from_secs(30))
            .delay(attempt.saturating_sub(1))
    }

    /// Connects to the node at `rpc_url` (http) for the contract at `contract`, signing
    /// with `minter_key` (32-byte hex). Reads the chain id, so the node must be reachable.
    pub async fn connect(
        rpc_url: &str,
        contract: Address,
        minter_key: &Secret,
        options: EthersOptions,
    ) -> Result<Self> {
        Self::connect_with(rpc_url, contract, Minter::from_key(minter_key)?, options).await
    }

    /// As [`EthersChain::connect`], with transactions signed by `minter` (a plaintext
    /// key, a decrypted keystore or an external signer).
    pub async fn connect_with(
        rpc_url: &str,
        contract: Address,
        minter: Minter,
        options: EthersOptions,
    ) -> Result<Self> {
        let provider = Provider::<Http>::try_from(rpc_url).map_err(|_| {
            ChainError::permanent("connect", "the RPC URL is not a valid http(s) URL")
        })?;
        let mut chain = Self {
            provider,
            minter,
            chain_id: 0,
            contract: to_h160(contract),
            options,
            nonce: Mutex::new(None),
            stale_nonce: AtomicBool::new(false),
        };
        let id = chain
            .rpc("connect", |p| async move { p.get_chainid().await })
            .await?;
        chain.chain_id = id.low_u64();
        chain.minter = chain.minter.clone().with_chain_id(chain.chain_id);
        Ok(chain)
    }

    /// Deploys a new contract from the committed bytecode, signed by `key` (which becomes
    /// its admin and first minter), waits until it is mined, and connects to it. For
    /// tests and the demo; production deployments are an operator's job.
    pub async fn deploy(rpc_url: &str, key: &Secret, options: EthersOptions) -> Result<Self> {
        Self::deploy_with(rpc_url, Minter::from_key(key)?, options).await
    }

    /// As [`EthersChain::deploy`], signed by `minter`.
    pub async fn deploy_with(
        rpc_url: &str,
        minter: Minter,
        options: EthersOptions,
    ) -> Result<Self> {
        Self::connect_with(rpc_url, Address([0; 20]), minter, options)
            .await?
            .deploy_contract()
            .await
    }

    /// Deploys a new contract on the connected chain (as [`EthersChain::deploy_with`]) and
    /// points this handle at it.
    pub async fn deploy_contract(self) -> Result<Self> {
        let mut chain = self;
        let tx = chain
            .send("deploy", None, MERITACHIEVEMENT_BYTECODE.clone())
            .await?;
        let deadline = tokio::time::Instant::now() + chain.options.deploy_timeout;
        let hash = H256(tx.0);
        loop {
            let receipt = chain
                .rpc("deploy", |p| async move {
                    p.get_transaction_receipt(hash).await
                })
                .await?;
            if let Some(r) = receipt {
                if r.status != Some(1u64.into()) {
                    return Err(ChainError::permanent(
                        "deploy",
                        format!("deployment {tx} reverted"),
                    ));
                }
                chain.contract = r.contract_address.ok_or_else(|| {
                    ChainError::permanent("deploy", format!("receipt of {tx} names no contract"))
                })?;
                tracing::info!(contract = %from_h160(chain.contract), %tx, "achievement contract deployed");
                return Ok(chain);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ChainError::transient(
                    "deploy",
                    format!("deployment {tx} not mined in time"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The minter's address.
    pub fn minter(&self) -> Address {
        self.minter.address()
    }

    /// Grants (`true`) or revokes `MINTER_ROLE` of `account`; the key must hold the
    /// admin role (the deployer does). For key rotation, tests and the demo.
    pub async fn set_minter(&self, account: Address, enabled: bool) -> Result<TxHash> {
        let role = ethers::utils::keccak256("MINTER_ROLE");
        let data = if enabled {
            binding::GrantRoleCall {
                role,
                account: to_h160(account),
            }
            .encode()
        } else {
            binding::RevokeRoleCall {
                role,
                account: to_h160(account),
            }
            .encode()
        };
        self.send("set_minter", Some(self.contract), data.into())
            .await
    }

    /// Sets each log's block time from its block (fetched once per block, concurrently),
    /// and checks that the block is still the one the log came from.
    async fn stamp(&self, logs: &mut [TransferLog]) -> Result<()> {
        let mut blocks: Vec<(u64, TxHash)> = logs.iter().map(|l| (l.block, l.block_hash)).collect();
        blocks.dedup();
        let headers = futures::future::try_join_all(
            blocks
                .iter()
                .map(|&(n, _)| self.rpc("logs", move |p| async move { p.get_block(n).await })),
        )
        .await?;
        let mut times = std::collections::HashMap::new();
        for ((n, hash), header) in blocks.into_iter().zip(headers) {
            let header = header.ok_or_else(|| {
                ChainError::transient("logs", format!("block {n} vanished while reading"))
            })?;
            if header.hash.map(|h| TxHash(h.0)) != Some(hash) {
                return Err(ChainError::transient(
                    "logs",
                    format!("block {n} changed while reading"),
                ));
            }
            let secs = i64::try_from(header.timestamp.low_u64()).unwrap_or(i64::MAX);
            times.insert(
                n,
                DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::UNIX_EPOCH),
            );
        }
        for log in logs {
            log.block_time = times[&log.block];
        }
        Ok(())
    }

    /// Forgets the local nonce: the next send reads the pending nonce from the node. Call
    /// it when one of this adapter's transactions was dropped (a reorg, a node that lost
    /// its pool) so later ones do not wait behind the gap. Failed sends and outages do
    /// this by themselves.
    pub async fn resync_nonce(&self) {
        *self.nonce.lock().await = None;
    }
}

#[async_trait]
impl Chain for EthersChain {
    fn chain_id(&self) -> u64 {
        self.chain_id
    }

    fn contract(&self) -> Address {
        from_h160(self.contract)
    }

    async fn mint(&self, to: Address, token: &TokenId, achievement: Uuid) -> Result<TxHash> {
        let call = MintCall {
            to: to_h160(to),
            token_id: to_u256(token)?,
            achievement_id: achievement_to_bytes32(achievement),
        };
        self.send("mint", Some(self.contract), call.encode().into())
            .await
    }

    async fn burn(&self, token: &TokenId, expected_owner: Address) -> Result<TxHash> {
        // `burnFrom` checks the owner in the same transaction; a refusal already at the
        // gas estimate comes back as `OwnerChanged` (decoded in `classify`).
        let call = BurnFromCall {
            token_id: to_u256(token)?,
            expected_owner: to_h160(expected_owner),
        };
        self.send("burn", Some(self.contract), call.encode().into())
            .await
    }

    async fn receipt(&self, tx: &TxHash) -> Result<Option<Receipt>> {
        let hash = H256(tx.0);
        let receipt = self
            .rpc("receipt", |p| async move {
                p.get_transaction_receipt(hash).await
            })
            .await?;
        Ok(receipt.and_then(|r| {
            Some(Receipt {
                tx_hash: *tx,
                block: r.block_number?.as_u64(),
                block_hash: TxHash(r.block_hash?.0),
                success: r.status == Some(1u64.into()),
            })
        }))
    }

    async fn owner_of(&self, token: &TokenId, at: Option<u64>) -> Result<Option<Address>> {
        let data: Bytes = OwnerOfCall {
            token_id: to_u256(token)?,
        }
        .encode()
        .into();
        let tx: TypedTransaction = Eip1559TransactionRequest::new()
            .to(self.contract)
            .data(data)
            .into();
        let block = at.map(|n| BlockId::Number(BlockNumber::Number(n.into())));
        let result = self
            .rpc("owner_of", |p| {
                let tx = tx.clone();
                async move { p.call(&tx, block).await }
            })
            .await;
        match result {
            // No code at that block (asked about a block before the contract was
            // deployed): no token existed then.
            Ok(bytes) if bytes.is_empty() && at.is_some() => Ok(None),
            Ok(bytes) => {
                let owner = H160::decode(&bytes).map_err(|e| {
                    ChainError::permanent_with(
                        "owner_of",
                        format!("ownerOf returned {bytes}: {e}"),
                        e,
                    )
                })?;
                Ok(Some(from_h160(owner)))
            }
            Err(ChainError::Permanent { reason, .. })
                if reason.starts_with(&format!("reverted: {NONEXISTENT}")) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn head_block(&self) -> Result<u64> {
        let n = self
            .rpc("head_block", |p| async move { p.get_block_number().await })
            .await?;
        Ok(n.as_u64())
    }

    async fn block_hash(&self, n: u64) -> Result<Option<TxHash>> {
        let block = self
            .rpc("block_hash", |p| async move { p.get_block(n).await })
            .await?;
        Ok(block.and_then(|b| b.hash).map(|h| TxHash(h.0)))
    }

    async fn logs(&self, from: u64, to: u64) -> Result<Vec<TransferLog>> {
        let filter = Filter::new()
            .address(self.contract)
            .from_block(from)
            .to_block(to)
            .topic0(vec![
                TransferFilter::signature(),
                AchievementMintedFilter::signature(),
            ]);
        let raw = self
            .rpc("logs", |p| {
                let filter = filter.clone();
                async move { p.get_logs(&filter).await }
            })
            .await?;
        let mut logs = decode_logs(&raw)?;
        self.stamp(&mut logs).await?;
        Ok(logs)
    }
}

/// Prefix of the reason for a revert with `ERC721NonexistentToken`.
const NONEXISTENT: &str = "ERC721NonexistentToken";

fn to_h160(a: Address) -> H160 {
    H160(a.0)
}

fn from_h160(a: H160) -> Address {
    Address(a.0)
}

fn to_u256(t: &TokenId) -> Result<U256> {
    U256::from_dec_str(t.as_str())
        .map_err(|e| ChainError::permanent_with("encode", format!("token id {t}: {e}"), e))
}

fn from_u256(v: U256) -> TokenId {
    v.to_string()
        .parse()
        .expect("a uint256 in decimal is always a valid token id")
}

#[cfg(test)]
mod tests;
