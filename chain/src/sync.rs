//! The full sync: compares every token merit knows (the `nfts` table) with its owner on
//! chain and repairs drift with ordinary events through the outbox, so the repair takes
//! the same path as any chain event (relay → broker → NftActor → users' holdings).
//!
//! Owners are read at one block, `head - confirmations`, so a change still waiting for
//! its confirmations is not mistaken for drift. A repair is positioned at that block with
//! the largest log index, after every real log up to it: the NftActor applies it unless it
//! already applied something later, and ignores the real logs at or before that block
//! when the listener reaches them. Its id is derived from the token, the on-chain owner
//! and the block, so running the sync again at the same block emits nothing new.

use chrono::Utc;
use futures::{stream, StreamExt, TryStreamExt};
use merit_messages::{
    Address, ChainRef, Envelope, Event, EventId, NftBurned, NftMinted, NftTransferred, TokenId,
    TxHash, MERIT_NAMESPACE,
};
use merit_storage::{
    entities::nft,
    sea_orm::{EntityTrait, PaginatorTrait, QueryOrder},
    StorageError, Store,
};
use uuid::Uuid;

use crate::{
    api::Chain,
    error::{ChainError, Result},
    events::{source, NO_TX},
    record::enqueue,
};

/// Log index of a repair event: after every real log of its block (and storable as i64).
pub const REPAIR_LOG_INDEX: u64 = i64::MAX as u64;

/// Tokens read from the store per page.
const PAGE: u64 = 500;

/// Owner reads in flight at once.
const OWNER_READS_IN_FLIGHT: usize = 16;

/// One token whose stored owner differs from the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// The token.
    pub token: TokenId,
    /// Owner in merit's store (`None`: burned or never applied).
    pub stored: Option<Address>,
    /// Owner on chain (`None`: burned or never minted).
    pub on_chain: Option<Address>,
    /// The repairing event's id.
    pub repair: EventId,
}

/// What a full sync found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// The block owners were read at.
    pub block: u64,
    /// Tokens compared.
    pub checked: u64,
    /// Tokens whose stored owner differed from the chain.
    pub drifted: u64,
    /// Repair events newly written to the outbox (a drift whose repair was already
    /// queued by an earlier sync at the same block is not counted again).
    pub repaired: u64,
    /// The drifts, in token order.
    pub drifts: Vec<Drift>,
}

/// Compares every known token with the chain at `head - confirmations` and enqueues a
/// repairing event for each drift (see the module docs). Logs the report.
pub async fn full_sync(store: &Store, chain: &dyn Chain, confirmations: u64) -> Result<SyncReport> {
    let at = SyncPoint::read(chain, confirmations).await?;
    let mut report = SyncReport {
        block: at.block,
        ..SyncReport::default()
    };
    let mut repairs = Vec::new();
    let mut pages = nft::Entity::find()
        .order_by_asc(nft::Column::TokenId)
        .paginate(store.db(), PAGE);
    while let Some(rows) = pages.fetch_and_next().await.map_err(StorageError::from)? {
        let parsed = rows
            .into_iter()
            .map(parse_row)
            .collect::<Result<Vec<_>>>()?;
        let tokens: Vec<TokenId> = parsed.iter().map(|(_, token, _)| token.clone()).collect();
        let owners = owners_at(chain, tokens, at.block).await?;
        for ((row, token, stored), on_chain) in parsed.into_iter().zip(owners) {
            report.checked += 1;
            if stored == on_chain {
                continue;
            }
            let Some(event) = repair_event(&row, &token, stored, on_chain, at.chain_ref()) else {
                continue;
            };
            let id = at.repair_id(&token, on_chain);
            report.drifted += 1;
            report.drifts.push(Drift {
                token,
                stored,
                on_chain,
                repair: id,
            });
            repairs.push(Envelope::with_id(
                id,
                source(at.chain_id),
                Utc::now(),
                event,
            ));
        }
    }
    report.repaired = enqueue(store, &repairs).await?;
    log_report(at.chain_id, &report);
    Ok(report)
}

/// The confirmed block a sync reads owners at, and what its repairs are derived from.
struct SyncPoint {
    chain_id: u64,
    block: u64,
    block_hash: TxHash,
    /// Parent of every repair id of this chain and contract.
    sync_parent: EventId,
}

impl SyncPoint {
    async fn read(chain: &dyn Chain, confirmations: u64) -> Result<Self> {
        let head = chain.head_block().await?;
        let block = head.saturating_sub(confirmations);
        let block_hash = chain.block_hash(block).await?.ok_or_else(|| {
            ChainError::transient("full_sync", format!("block {block} is past the head"))
        })?;
        let chain_id = chain.chain_id();
        let sync_parent = EventId(Uuid::new_v5(
            &MERIT_NAMESPACE,
            format!("sync:{chain_id}:{}", chain.contract()).as_bytes(),
        ));
        Ok(Self {
            chain_id,
            block,
            block_hash,
            sync_parent,
        })
    }

    /// A repair's position: this block, after every real log of it.
    fn chain_ref(&self) -> ChainRef {
        ChainRef {
            chain_id: self.chain_id,
            block_number: self.block,
            block_hash: self.block_hash,
            tx_hash: NO_TX,
            log_index: REPAIR_LOG_INDEX,
        }
    }

    /// Derived from the token, its on-chain owner and the block: a sync run again at the
    /// same block emits nothing new.
    fn repair_id(&self, token: &TokenId, on_chain: Option<Address>) -> EventId {
        let owner = on_chain.map_or_else(|| "none".to_string(), |a| a.to_string());
        let name = format!("repair:{token}:{owner}:{}", self.block);
        EventId::derived(self.sync_parent, &name)
    }
}

/// A stored token row with its token id and its owner (`None` if burned) parsed.
fn parse_row(row: nft::Model) -> Result<(nft::Model, TokenId, Option<Address>)> {
    let token: TokenId = row
        .token_id
        .parse()
        .map_err(|e| StorageError::corrupt(format!("nfts.token_id {:?}", row.token_id), e))?;
    let stored: Option<Address> =
        match row.owner.as_deref().filter(|_| !row.burned) {
            Some(s) => Some(s.parse().map_err(|e| {
                StorageError::corrupt(format!("nfts.owner {s:?} of token {token}"), e)
            })?),
            None => None,
        };
    Ok((row, token, stored))
}

/// The chain's owner of each token at `block`, in order, a few reads in flight at once.
async fn owners_at(
    chain: &dyn Chain,
    tokens: Vec<TokenId>,
    block: u64,
) -> Result<Vec<Option<Address>>> {
    // Owned tokens and `async move`: the future borrows nothing from the closure's
    // argument, so the whole sync stays `Send` for a spawned task.
    stream::iter(tokens)
        .map(|token| async move { chain.owner_of(&token, Some(block)).await })
        .buffered(OWNER_READS_IN_FLIGHT)
        .try_collect()
        .await
}

/// The event that moves the stored owner to the chain's: a transfer, a burn or a mint;
/// `None` if there is nothing to move.
fn repair_event(
    row: &nft::Model,
    token: &TokenId,
    stored: Option<Address>,
    on_chain: Option<Address>,
    chain: ChainRef,
) -> Option<Event> {
    Some(match (stored, on_chain) {
        (Some(from), Some(to)) => NftTransferred {
            token: token.clone(),
            from,
            to,
            chain,
        }
        .into(),
        (Some(from), None) => NftBurned {
            token: token.clone(),
            from,
            chain,
        }
        .into(),
        (None, Some(to)) => NftMinted {
            token: token.clone(),
            to,
            achievement_id: row.achievement_id.as_deref().and_then(|a| a.parse().ok()),
            tier: row.tier.as_deref().and_then(|t| t.parse().ok()),
            chain,
        }
        .into(),
        (None, None) => return None,
    })
}

fn log_report(chain_id: u64, report: &SyncReport) {
    tracing::info!(
        chain_id,
        block = report.block,
        checked = report.checked,
        drifted = report.drifted,
        repaired = report.repaired,
        "full sync finished"
    );
    for d in &report.drifts {
        tracing::warn!(token = %d.token, stored = ?d.stored, on_chain = ?d.on_chain, repair = %d.repair, "ownership drift repaired");
    }
}
