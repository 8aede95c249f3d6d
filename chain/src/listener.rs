//! The chain listener: follows the contract's `Transfer` logs into merit's outbox.
//!
//! Flow of one [`Listener::poll_once`]:
//! 1. read the head; the *safe* head is `head - confirmations`: nothing above it is read,
//!    so a reorg shallower than the confirmation depth never produces an event;
//! 2. load the checkpoint (last block whose logs are all in the outbox, with its hash);
//!    if the chain's hash at that height differs, a reorg deeper than the confirmation
//!    depth happened: walk back (at most `max_reorg_depth` blocks) to a block whose hash
//!    still matches, move the checkpoint there and re-read (ids are deterministic, so
//!    re-read logs that did not change are no-ops in the outbox);
//! 3. read logs of at most `batch_blocks` blocks after the checkpoint, in
//!    `(block, log index)` order, and in ONE transaction insert their envelopes into the
//!    outbox and advance the checkpoint (compare-and-set); then poke the relay.
//!
//! Starting from the stored checkpoint is the backfill: a listener that was down reads
//! everything it missed, in order, before it follows the head.

use std::{
    collections::VecDeque,
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use merit_messages::Envelope;
use merit_storage::Store;

use crate::{
    api::Chain,
    error::{ChainError, ErrorClass, Result},
    events::envelope_for,
    record::{checkpoint_id, commit_batch, load_checkpoint, Checkpoint},
};

/// How the listener reads.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Blocks on top of a block before its logs are read (0: read the head itself).
    pub confirmations: u64,
    /// Most blocks read per transaction.
    pub batch_blocks: u64,
    /// Pause between polls once caught up, and after an error.
    pub poll_interval: Duration,
    /// Deepest reorg below the checkpoint the listener walks back through.
    pub max_reorg_depth: u64,
    /// First block to read when there is no checkpoint (the contract's deployment block).
    pub start_block: u64,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            confirmations: 12,
            batch_blocks: 500,
            poll_interval: Duration::from_secs(2),
            max_reorg_depth: 64,
            start_block: 0,
        }
    }
}

/// What the listener is doing, for health checks and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerStatus {
    /// Last block whose logs are all in the outbox.
    pub checkpoint: Option<u64>,
    /// Chain head at the last poll.
    pub head: Option<u64>,
    /// `head - checkpoint` (includes the confirmation depth).
    pub lag: Option<u64>,
    /// Events written to the outbox since start.
    pub events_written: u64,
    /// Reorgs below the checkpoint detected since start.
    pub reorgs: u64,
    /// The last poll's error, cleared by a successful poll.
    pub last_error: Option<String>,
    /// When the last poll finished.
    pub last_poll: Option<DateTime<Utc>>,
}

/// What one poll did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PollOutcome {
    /// Events newly inserted into the outbox.
    pub events: u64,
    /// Blocks read.
    pub blocks: u64,
    /// Whether the listener reached the safe head.
    pub caught_up: bool,
}

/// Hashes of recent checkpoints written by this process, newest last: the candidates for
/// the common ancestor after a deep reorg.
const RECENT_CHECKPOINTS: usize = 128;

/// Reads `Transfer` logs into the outbox. Cheap to share through [`Listener::status`].
#[derive(Debug)]
pub struct Listener {
    store: Store,
    chain: Arc<dyn Chain>,
    config: ListenerConfig,
    id: String,
    status: Arc<Mutex<ListenerStatus>>,
    recent: Mutex<VecDeque<Checkpoint>>,
    /// Blocks per read now: halved when reading logs fails (a node limiting results per
    /// query), doubled back towards `batch_blocks` after each success.
    batch: AtomicU64,
}

impl Listener {
    /// A listener of `chain`'s contract writing into `store`.
    pub fn new(store: Store, chain: Arc<dyn Chain>, config: ListenerConfig) -> Self {
        let id = checkpoint_id(chain.chain_id(), &chain.contract());
        Self {
            store,
            chain,
            id,
            status: Arc::default(),
            recent: Mutex::default(),
            batch: AtomicU64::new(config.batch_blocks.max(1)),
            config,
        }
    }

    /// The checkpoint row id (`<chain id>:<contract>`).
    pub fn checkpoint_id(&self) -> &str {
        &self.id
    }

    /// A snapshot of the status.
    pub fn status(&self) -> ListenerStatus {
        lock(&self.status).clone()
    }

    /// A handle that reads the status while [`Listener::run`] owns the listener.
    pub fn status_handle(&self) -> StatusHandle {
        StatusHandle(self.status.clone())
    }

    /// Polls until `shutdown` resolves: reads whatever is confirmed, then waits
    /// `poll_interval` (at once again while a backlog remains). Errors are recorded in the
    /// status, logged with their class, and retried after the interval; they never stop
    /// the loop.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let pause = match self.poll_once().await {
                Ok(outcome) if !outcome.caught_up => Duration::ZERO,
                Ok(_) => self.config.poll_interval,
                Err(e) => {
                    tracing::warn!(checkpoint_id = %self.id, class = e.class().as_str(), error = %e, "chain listener poll failed; retrying");
                    self.config.poll_interval
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Reads at most one batch of confirmed blocks into the outbox (see the module docs).
    pub async fn poll_once(&self) -> Result<PollOutcome> {
        let result = self.poll_inner().await;
        let mut status = lock(&self.status);
        status.last_poll = Some(Utc::now());
        match &result {
            Ok(outcome) => {
                status.last_error = None;
                status.events_written += outcome.events;
            }
            Err(e) => status.last_error = Some(e.to_string()),
        }
        result
    }

    async fn poll_inner(&self) -> Result<PollOutcome> {
        let head = self.chain.head_block().await?;
        let mut checkpoint = load_checkpoint(&self.store, &self.id).await?;
        self.set_position(head, checkpoint);
        let Some(safe) = head.checked_sub(self.config.confirmations) else {
            return Ok(PollOutcome {
                caught_up: true,
                ..PollOutcome::default()
            });
        };

        if let Some(cp) = checkpoint {
            if self.chain.block_hash(cp.block).await? != Some(cp.hash) {
                checkpoint = self.rewind(cp).await?;
                self.set_position(head, checkpoint);
            }
        }

        let from = checkpoint.map_or(self.config.start_block, |cp| cp.block + 1);
        if from > safe {
            return Ok(PollOutcome {
                caught_up: true,
                ..PollOutcome::default()
            });
        }
        let batch = self.batch.load(Ordering::Relaxed).max(1);
        let to = safe.min(from.saturating_add(batch - 1));
        let mut logs = match self.chain.logs(from, to).await {
            Ok(logs) => {
                let grown = batch.saturating_mul(2).min(self.config.batch_blocks.max(1));
                self.batch.store(grown, Ordering::Relaxed);
                logs
            }
            Err(e) => {
                if e.class() == ErrorClass::Transient && batch > 1 {
                    self.batch.store(batch / 2, Ordering::Relaxed);
                    tracing::info!(checkpoint_id = %self.id, blocks = batch / 2, "reading fewer blocks per batch after a failed read");
                }
                return Err(e);
            }
        };
        logs.sort_by_key(|l| l.position());
        let to_hash = self.chain.block_hash(to).await?.ok_or_else(|| {
            ChainError::transient("logs", format!("block {to} vanished while reading"))
        })?;
        // A log whose block is no longer canonical means the chain moved under us: read again.
        for log in &logs {
            if log.block == to && log.block_hash != to_hash {
                return Err(ChainError::transient(
                    "logs",
                    format!("block {to} changed while reading"),
                ));
            }
        }
        let chain_id = self.chain.chain_id();
        let events: Vec<Envelope> = logs
            .iter()
            .filter_map(|l| envelope_for(chain_id, l))
            .collect();
        let next = Checkpoint {
            block: to,
            hash: to_hash,
        };
        let Some(inserted) =
            commit_batch(&self.store, &self.id, checkpoint, Some(next), &events).await?
        else {
            tracing::info!(checkpoint_id = %self.id, "checkpoint moved by another listener; re-reading from it");
            return Ok(PollOutcome::default());
        };
        self.remember(next);
        self.set_position(head, Some(next));
        tracing::debug!(checkpoint_id = %self.id, from, to, logs = logs.len(), inserted, "chain logs recorded");
        Ok(PollOutcome {
            events: inserted,
            blocks: to - from + 1,
            caught_up: to == safe,
        })
    }

    /// The checkpoint block is no longer canonical: find the newest earlier checkpoint this
    /// process wrote whose hash still matches, else fall back `max_reorg_depth` blocks,
    /// and move the stored checkpoint there.
    async fn rewind(&self, stale: Checkpoint) -> Result<Option<Checkpoint>> {
        let floor = stale.block.saturating_sub(self.config.max_reorg_depth);
        let candidates: Vec<Checkpoint> = lock(&self.recent)
            .iter()
            .rev()
            .filter(|c| c.block < stale.block && c.block >= floor)
            .copied()
            .collect();
        let mut ancestor = None;
        for c in candidates {
            if self.chain.block_hash(c.block).await? == Some(c.hash) {
                ancestor = Some(c);
                break;
            }
        }
        let ancestor = match ancestor {
            Some(a) => a,
            None => {
                let hash = self.chain.block_hash(floor).await?.ok_or_else(|| {
                    ChainError::transient("reorg", format!("block {floor} is past the head"))
                })?;
                Checkpoint { block: floor, hash }
            }
        };
        lock(&self.status).reorgs += 1;
        tracing::warn!(
            checkpoint_id = %self.id,
            stale_block = stale.block,
            stale_hash = %stale.hash,
            ancestor = ancestor.block,
            "reorg below the checkpoint: re-reading from the common ancestor"
        );
        if commit_batch(&self.store, &self.id, Some(stale), Some(ancestor), &[])
            .await?
            .is_none()
        {
            return load_checkpoint(&self.store, &self.id).await;
        }
        lock(&self.recent).retain(|c| c.block <= ancestor.block);
        Ok(Some(ancestor))
    }

    fn remember(&self, cp: Checkpoint) {
        let mut recent = lock(&self.recent);
        recent.push_back(cp);
        while recent.len() > RECENT_CHECKPOINTS {
            recent.pop_front();
        }
    }

    fn set_position(&self, head: u64, checkpoint: Option<Checkpoint>) {
        let mut status = lock(&self.status);
        status.head = Some(head);
        status.checkpoint = checkpoint.map(|c| c.block);
        status.lag = Some(head.saturating_sub(
            checkpoint.map_or(self.config.start_block.saturating_sub(1), |c| c.block),
        ));
    }
}

/// Reads a running listener's status.
#[derive(Debug, Clone)]
pub struct StatusHandle(Arc<Mutex<ListenerStatus>>);

impl StatusHandle {
    /// A snapshot of the status.
    pub fn get(&self) -> ListenerStatus {
        lock(&self.0).clone()
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (plain values).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
