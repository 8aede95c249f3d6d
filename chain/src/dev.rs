//! [`DevChain`]: an in-process chain behind the [`Chain`] port, for `merit demo` and unit
//! tests of code above the port. Every write mines a block at once (and
//! [`DevChain::spawn_miner`] adds empty blocks on a timer, so confirmations accrue);
//! failures and reorgs are injected on demand. It models the contract (owners, minter
//! role, Transfer logs), not the EVM: tests of the real adapter run against anvil.

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ethers::utils::keccak256;
use merit_messages::{Address, TokenId, TxHash};
use uuid::Uuid;

use crate::{
    api::{Chain, Receipt, TransferLog, ZERO_ADDRESS},
    error::{ChainError, ErrorClass, Result},
};

/// The kind of failure to inject.
pub type Failure = ErrorClass;

#[derive(Debug, Clone)]
struct Block {
    number: u64,
    hash: TxHash,
    logs: Vec<TransferLog>,
    txs: Vec<TxHash>,
}

#[derive(Debug)]
struct State {
    blocks: Vec<Block>,
    /// Injected failures: `(only this operation, or any; the failure)`.
    failures: VecDeque<(Option<&'static str>, Failure)>,
    minter_enabled: bool,
    /// How many more tokens, not yet seen, to refuse (each on every attempt from then on).
    refuse_new_tokens: usize,
    /// Tokens the contract refuses to mint, whoever asks and however often.
    refused: HashSet<TokenId>,
    salt: u64,
    /// Distinguishes this chain's hashes from another instance's with the same chain id.
    instance: String,
}

/// An in-process chain holding one achievement contract.
#[derive(Debug)]
pub struct DevChain {
    chain_id: u64,
    contract: Address,
    state: Mutex<State>,
}

impl DevChain {
    /// A fresh chain with only the genesis block (number 0). The same `chain_id` always
    /// gives the same contract address and hashes (tests rely on it).
    pub fn new(chain_id: u64) -> Self {
        Self::instance(chain_id, "")
    }

    /// A fresh chain whose contract address and hashes are its own: nodes (or runs) that
    /// each embed a dev chain get distinct contracts, so each has its own listener
    /// checkpoint and its own event ids instead of fighting over one chain's.
    pub fn instance(chain_id: u64, instance: &str) -> Self {
        let mut contract = [0u8; 20];
        contract
            .copy_from_slice(&keccak256(format!("merit-dev-contract:{chain_id}{instance}"))[12..]);
        let genesis = Block {
            number: 0,
            hash: TxHash(keccak256(format!("merit-dev-genesis:{chain_id}{instance}"))),
            logs: Vec::new(),
            txs: Vec::new(),
        };
        Self {
            chain_id,
            contract: Address(contract),
            state: Mutex::new(State {
                blocks: vec![genesis],
                failures: VecDeque::new(),
                minter_enabled: true,
                refuse_new_tokens: 0,
                refused: HashSet::new(),
                salt: 0,
                instance: instance.to_string(),
            }),
        }
    }

    /// Makes the next `n` calls (of any method but `chain_id`/`contract`) fail with `kind`.
    pub fn fail_next(&self, n: usize, kind: Failure) {
        self.lock()
            .failures
            .extend(std::iter::repeat_n((None, kind), n));
    }

    /// Makes the next `n` calls of method `op` (`"logs"`, `"mint"`, ...) fail with `kind`;
    /// other methods are not affected (failures queued before these still come first).
    pub fn fail_next_on(&self, op: &'static str, n: usize, kind: Failure) {
        self.lock()
            .failures
            .extend(std::iter::repeat_n((Some(op), kind), n));
    }

    /// Makes the contract refuse the next `n` distinct tokens presented to `mint`, on that
    /// attempt and every later one: a lasting refusal (a recipient the contract blocks),
    /// unlike [`DevChain::fail_next_on`], which a retry gets past.
    pub fn refuse_mints(&self, n: usize) {
        self.lock().refuse_new_tokens += n;
    }

    /// Revokes (or restores) the minter's role: mints and burns are then refused.
    pub fn set_minter_role(&self, enabled: bool) {
        self.lock().minter_enabled = enabled;
    }

    /// Forgets every block but genesis, as the in-process chain of a restarted node starts
    /// (it lives in memory); injected failures and refused tokens stay.
    pub fn reset(&self) {
        self.lock().blocks.truncate(1);
    }

    /// Mines `n` empty blocks; returns the new head.
    pub fn mine(&self, n: u64) -> u64 {
        let mut s = self.lock();
        for _ in 0..n {
            s.push_block(Vec::new(), Vec::new());
        }
        s.head()
    }

    /// A holder's transfer of `token` from `from` to `to` (not through merit's minter):
    /// refused unless `from` owns it. Mines one block.
    pub fn transfer(&self, from: Address, to: Address, token: &TokenId) -> Result<TxHash> {
        let mut s = self.lock();
        s.take_failure("transfer")?;
        if s.owner(token, None) != Some(from) {
            return Err(ChainError::permanent(
                "transfer",
                format!("{from} does not own token {token}"),
            ));
        }
        if to == ZERO_ADDRESS {
            return Err(ChainError::permanent(
                "transfer",
                "transfer to the zero address",
            ));
        }
        Ok(s.transact(from, to, token, None))
    }

    /// Drops the last `k` blocks (never the genesis) with their transactions and mines `k`
    /// empty blocks with new hashes in their place, as a reorg that lost those blocks.
    pub fn reorg(&self, k: u64) {
        let mut s = self.lock();
        let keep = s
            .blocks
            .len()
            .saturating_sub(usize::try_from(k).unwrap_or(usize::MAX))
            .max(1);
        let dropped = s.blocks.len() - keep;
        s.blocks.truncate(keep);
        for _ in 0..dropped {
            s.push_block(Vec::new(), Vec::new());
        }
    }

    /// Mines an empty block every `every` until the returned task is aborted.
    pub fn spawn_miner(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let chain = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match chain.upgrade() {
                    Some(chain) => {
                        chain.mine(1);
                    }
                    None => return,
                }
            }
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    fn head(&self) -> u64 {
        self.blocks.last().map_or(0, |b| b.number)
    }

    fn take_failure(&mut self, op: &'static str) -> Result<()> {
        match self.failures.front() {
            Some((only, _)) if only.is_none_or(|o| o == op) => {}
            _ => return Ok(()),
        }
        match self.failures.pop_front().map(|(_, kind)| kind) {
            None => Ok(()),
            Some(ErrorClass::Transient) => {
                Err(ChainError::transient(op, "injected transient failure"))
            }
            Some(ErrorClass::Permanent) => {
                Err(ChainError::permanent(op, "injected permanent failure"))
            }
            Some(ErrorClass::Unavailable) => Err(ChainError::unavailable(op, "injected outage")),
        }
    }

    fn push_block(&mut self, logs: Vec<TransferLog>, txs: Vec<TxHash>) -> TxHash {
        self.salt += 1;
        let parent = self.blocks.last().map_or([0; 32], |b| b.hash.0);
        let number = self.head() + 1;
        let mut seed = parent.to_vec();
        seed.extend_from_slice(&number.to_be_bytes());
        seed.extend_from_slice(&self.salt.to_be_bytes());
        let hash = TxHash(keccak256(seed));
        let time = Utc::now();
        let logs = logs
            .into_iter()
            .map(|l| TransferLog {
                block: number,
                block_hash: hash,
                block_time: time,
                ..l
            })
            .collect();
        self.blocks.push(Block {
            number,
            hash,
            logs,
            txs,
        });
        hash
    }

    /// Mines a block with one transaction emitting one Transfer log.
    fn transact(
        &mut self,
        from: Address,
        to: Address,
        token: &TokenId,
        achievement: Option<Uuid>,
    ) -> TxHash {
        let tx = TxHash(keccak256(format!(
            "merit-dev-tx:{}{}:{}",
            self.instance, self.salt, token
        )));
        let log = TransferLog {
            block: 0,
            block_hash: TxHash([0; 32]),
            block_time: DateTime::UNIX_EPOCH,
            log_index: 0,
            tx_hash: tx,
            from,
            to,
            token_id: token.clone(),
            achievement_id: achievement,
        };
        self.push_block(vec![log], vec![tx]);
        tx
    }

    /// The owner after replaying canonical logs up to block `at` (latest when `None`).
    fn owner(&self, token: &TokenId, at: Option<u64>) -> Option<Address> {
        let at = at.unwrap_or(u64::MAX);
        let mut owner = None;
        for block in self.blocks.iter().take_while(|b| b.number <= at) {
            for log in block.logs.iter().filter(|l| &l.token_id == token) {
                owner = (log.to != ZERO_ADDRESS).then_some(log.to);
            }
        }
        owner
    }

    fn owners(&self) -> BTreeMap<TokenId, Address> {
        let mut owners = BTreeMap::new();
        for log in self.blocks.iter().flat_map(|b| &b.logs) {
            if log.to == ZERO_ADDRESS {
                owners.remove(&log.token_id);
            } else {
                owners.insert(log.token_id.clone(), log.to);
            }
        }
        owners
    }
}

/// The dev minter's address (the `from` of nothing; recorded for completeness).
const DEV_MINTER: Address = Address([0x4d; 20]);

#[async_trait]
impl Chain for DevChain {
    fn chain_id(&self) -> u64 {
        self.chain_id
    }

    fn contract(&self) -> Address {
        self.contract
    }

    async fn mint(&self, to: Address, token: &TokenId, achievement: Uuid) -> Result<TxHash> {
        let mut s = self.lock();
        s.take_failure("mint")?;
        if !s.minter_enabled {
            return Err(ChainError::permanent(
                "mint",
                format!("minter {DEV_MINTER} lacks MINTER_ROLE"),
            ));
        }
        if to == ZERO_ADDRESS {
            return Err(ChainError::permanent("mint", "mint to the zero address"));
        }
        if !s.refused.contains(token) && s.refuse_new_tokens > 0 && !s.owners().contains_key(token)
        {
            s.refuse_new_tokens -= 1;
            s.refused.insert(token.clone());
        }
        if s.refused.contains(token) {
            return Err(ChainError::permanent(
                "mint",
                format!("the contract refuses to mint token {token}"),
            ));
        }
        if s.owners().contains_key(token) {
            return Err(ChainError::permanent(
                "mint",
                format!("token {token} already exists"),
            ));
        }
        Ok(s.transact(ZERO_ADDRESS, to, token, Some(achievement)))
    }

    async fn burn(&self, token: &TokenId, expected_owner: Address) -> Result<TxHash> {
        let mut s = self.lock();
        s.take_failure("burn")?;
        if !s.minter_enabled {
            return Err(ChainError::permanent(
                "burn",
                format!("minter {DEV_MINTER} lacks MINTER_ROLE"),
            ));
        }
        let Some(owner) = s.owner(token, None) else {
            return Err(ChainError::permanent(
                "burn",
                format!("token {token} does not exist"),
            ));
        };
        // As the contract's `burnFrom`: only from the holder the caller expects.
        if owner != expected_owner {
            return Err(ChainError::OwnerChanged {
                op: "burn",
                token: token.clone(),
                expected: expected_owner,
                holder: Some(owner),
            });
        }
        Ok(s.transact(owner, ZERO_ADDRESS, token, None))
    }

    async fn receipt(&self, tx: &TxHash) -> Result<Option<Receipt>> {
        let mut s = self.lock();
        s.take_failure("receipt")?;
        Ok(s.blocks
            .iter()
            .find(|b| b.txs.contains(tx))
            .map(|b| Receipt {
                tx_hash: *tx,
                block: b.number,
                block_hash: b.hash,
                success: true,
            }))
    }

    async fn owner_of(&self, token: &TokenId, at: Option<u64>) -> Result<Option<Address>> {
        let mut s = self.lock();
        s.take_failure("owner_of")?;
        Ok(s.owner(token, at))
    }

    async fn head_block(&self) -> Result<u64> {
        let mut s = self.lock();
        s.take_failure("head_block")?;
        Ok(s.head())
    }

    async fn block_hash(&self, n: u64) -> Result<Option<TxHash>> {
        let mut s = self.lock();
        s.take_failure("block_hash")?;
        Ok(usize::try_from(n)
            .ok()
            .and_then(|i| s.blocks.get(i))
            .map(|b| b.hash))
    }

    async fn logs(&self, from: u64, to: u64) -> Result<Vec<TransferLog>> {
        let mut s = self.lock();
        s.take_failure("logs")?;
        Ok(s.blocks
            .iter()
            .filter(|b| b.number >= from && b.number <= to)
            .flat_map(|b| b.logs.iter().cloned())
            .collect())
    }
}

#[cfg(test)]
mod tests;
