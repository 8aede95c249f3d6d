//! ProposalActor: one per proposal. Holds the proposal, its lifecycle, its votes and the
//! running tally.
//!
//! # Lifecycle
//! `pending` (created, before `starts_at`) → `active` (the open deadline) → at `ends_at`
//! (the close deadline) `succeeded` or `defeated` → `executed` (a succeeded proposal
//! carried out); `cancelled` by its creator any time before it closes. Deadlines are the
//! proposal's own persisted times: the deadline timer of every node scans the proposals
//! projection and emits `governance.proposal.deadline` with an id derived from (proposal,
//! phase), so a deadline fires after a restart too and is applied once.
//!
//! Closing decides: the quorum is reached when for + against + abstain weight is at least
//! `quorum`; the proposal succeeds when the quorum is reached and for weight is at least
//! `threshold_bps` of for + against weight (and above zero). `governance.proposal.closed`
//! carries the tally and outcome.
//!
//! # Votes
//! - One vote per user per proposal, and **the first vote is final**: a later vote from
//!   the same wallet is refused (recorded as applied, no effect). So is a vote for a
//!   proposal merit has not seen created, a vote whose `occurred_at` is outside
//!   `[starts_at, ends_at)`, and a vote after the proposal closed or was cancelled.
//! - Weight = 1000 × multiplier, the multiplier coming from the voter's NFTs at vote time
//!   (read through the benefits cache) and the active tiers and limits
//!   ([`DynamicConfig::boost`]).
//! - **One NFT boosts at most one vote per proposal**: the proposal remembers every token
//!   that boosted one of its votes and never counts it again, whoever holds it — buying,
//!   transferring or lending an NFT between votes cannot multiply its weight.
//! - A counted vote emits `governance.vote.recorded` (weight, boosts, the proposal's
//!   sequence number), which the voter's UserActor counts for achievement rules.
//! - **Every voter hears the outcome.** Closing (or cancelling) emits, besides
//!   `governance.proposal.closed` for the creator, a `governance.proposal.fanout` to the
//!   proposal itself; each fan-out turn emits one `governance.proposal.result` per voter
//!   for the next [`FANOUT_BATCH`] voters in address order, and the fan-out for the batch
//!   after. Ids derive from the fan-out event, so a redelivered batch emits the same ids and
//!   each voter's UserActor logs its result once; a proposal with 100,000 voters takes 100
//!   short turns instead of one that would hold the actor and its transaction.

use std::{collections::BTreeSet, sync::Arc};

use chrono::{DateTime, Utc};
use merit_config::dynamic::DynamicConfig;
use merit_messages::{Boost, Envelope, Event, Tally, VoteChoice};
use merit_storage::column::to_i64;
use merit_storage::{
    entities::{proposal, vote},
    sea_orm::{
        sea_query::OnConflict, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait,
        QueryFilter, QuerySelect,
    },
    Rows, Store, TxFuture,
};
use serde::{Deserialize, Serialize};

use crate::{
    domain::{Decision, Domain, Services},
    user::HeldNfts,
};

mod handlers;
mod held;

use handlers::{
    choice_str, fanout_batch, new_voters, on_cancelled, on_created, on_deadline, on_executed,
    on_vote,
};
use held::{held_reads, load_held_from, HeldReads};
pub use held::{load_held, warm_benefits};

/// Voters told per fan-out turn.
pub(crate) const FANOUT_BATCH: usize = 1_000;

/// The weight of a plain vote, in weight units (1 vote = 1000 units, so benefit
/// multipliers in basis points stay exact integers).
pub const BASE_WEIGHT: u64 = 1_000;

/// Where a proposal is in its lifecycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalStatus {
    /// Created; voting has not opened.
    #[default]
    Pending,
    /// Voting is open.
    Active,
    /// Closed with the quorum and threshold met.
    Succeeded,
    /// Closed without them.
    Defeated,
    /// A succeeded proposal, carried out.
    Executed,
    /// Withdrawn by its creator before it closed.
    Cancelled,
}

impl ProposalStatus {
    /// The projection's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Succeeded => "succeeded",
            Self::Defeated => "defeated",
            Self::Executed => "executed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Still taking votes (subject to the time window).
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Active)
    }

    /// Every status, in lifecycle order.
    pub const ALL: [Self; 6] = [
        Self::Pending,
        Self::Active,
        Self::Succeeded,
        Self::Defeated,
        Self::Executed,
        Self::Cancelled,
    ];
}

impl std::str::FromStr for ProposalStatus {
    type Err = merit_messages::UnknownVariant;

    /// The projection's spelling read back: the one way from a stored status to the enum.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or(merit_messages::UnknownVariant)
    }
}

/// What the proposal is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalInfo {
    /// Creator's address.
    pub creator: String,
    /// Title.
    pub title: String,
    /// Body.
    pub description: String,
    /// Voting opens.
    pub starts_at: DateTime<Utc>,
    /// Voting closes.
    pub ends_at: DateTime<Utc>,
    /// Quorum in weight units.
    pub quorum: u64,
    /// Pass threshold in basis points.
    pub threshold_bps: u16,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Sequence number in creation order (from 1), for streaks.
    #[serde(default)]
    pub seq: u64,
}

/// One counted vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteRecord {
    /// The choice.
    pub choice: VoteChoice,
    /// Weight counted.
    pub weight: u64,
    /// Tokens that boosted it.
    pub boosts: Vec<Boost>,
    /// The event that cast it.
    pub event_id: String,
    /// When.
    pub cast_at: DateTime<Utc>,
}

/// A proposal's state. The snapshot holds the proposal, its status and its tally; the
/// voters and the tokens that boosted votes live in the `votes` table (written in the same
/// transaction as each vote) and are loaded on activation, so a vote costs one row, not a
/// rewrite of every earlier vote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalState {
    /// `None` until `governance.proposal.created` arrives.
    pub info: Option<ProposalInfo>,
    /// Lifecycle status.
    #[serde(default)]
    pub status: ProposalStatus,
    /// Sum of the counted votes.
    pub tally: Tally,
    /// Votes refused (already voted, unknown proposal, outside the voting window).
    pub refused_votes: u64,
    /// When it closed (or was cancelled).
    #[serde(default)]
    pub closed_at: Option<DateTime<Utc>>,
    /// Who has voted (from the `votes` table; not in the snapshot).
    #[serde(skip)]
    pub voters: BTreeSet<String>,
    /// Tokens that boosted a vote here (from the `votes` table; not in the snapshot).
    #[serde(skip)]
    pub boosted: BTreeSet<String>,
}

/// What a proposal's turn leaves for its projection: the votes it counted, by voter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProposalEffects {
    /// `(voter, vote)` in the order they were counted.
    pub votes: Vec<(String, VoteRecord)>,
}

/// What a proposal's turn reads from outside: its sequence number (on creation) and the
/// voter's NFTs (on a vote).
#[derive(Debug, Clone, Default)]
pub struct ProposalInputs {
    /// The proposal's sequence number, allocated on creation.
    pub seq: Option<u64>,
    /// The voter's NFTs at vote time.
    pub held: HeldNfts,
    /// The node's clock when a creation is applied (the limits on a proposal's schedule
    /// are checked against merit's time, not the producer's `occurred_at`).
    pub now: Option<DateTime<Utc>>,
}

/// The ProposalActor's domain.
pub struct ProposalDomain;

impl Domain for ProposalDomain {
    const KIND: merit_messages::ActorKind = merit_messages::ActorKind::Proposal;
    type State = ProposalState;
    type Inputs = ProposalInputs;
    type Effects = ProposalEffects;

    fn prepare<'a>(
        store: &'a Store,
        services: &'a Services,
        key: &'a str,
        state: &'a ProposalState,
        event: &'a Envelope,
    ) -> TxFuture<'a, ProposalInputs> {
        let reads = held_reads(store, new_voters(state, [event]));
        Box::pin(async move { prepare_one(store, services, key, state, event, &reads).await })
    }

    /// The turn's voters not yet counted have their tokens read from the database in one
    /// query (for those the cache misses), not one per vote.
    fn prepare_turn<'a>(
        store: &'a Store,
        services: &'a Services,
        key: &'a str,
        state: &'a ProposalState,
        events: &'a [&'a Arc<Envelope>],
    ) -> TxFuture<'a, Vec<ProposalInputs>> {
        let reads = held_reads(store, new_voters(state, events.iter().map(|e| e.as_ref())));
        Box::pin(async move {
            futures::future::try_join_all(
                events
                    .iter()
                    .map(|event| prepare_one(store, services, key, state, event, &reads)),
            )
            .await
        })
    }

    fn hydrate<'a>(
        db: &'a DatabaseConnection,
        key: &'a str,
        state: &'a mut ProposalState,
    ) -> TxFuture<'a, ()> {
        Box::pin(async move {
            let rows: Vec<(String, serde_json::Value)> = vote::Entity::find()
                .select_only()
                .column(vote::Column::Voter)
                .column(vote::Column::Boosts)
                .filter(vote::Column::ProposalId.eq(key))
                .into_tuple()
                .all(db)
                .await?;
            for (voter, boosts) in rows {
                state.voters.insert(voter);
                let boosts: Vec<Boost> = serde_json::from_value(boosts).unwrap_or_default();
                state
                    .boosted
                    .extend(boosts.into_iter().map(|b| b.token.to_string()));
            }
            Ok(())
        })
    }

    /// One handler per event; an event a handler does not accept changes nothing.
    fn apply(
        config: &DynamicConfig,
        _key: &str,
        state: &mut ProposalState,
        event: &Envelope,
        inputs: &ProposalInputs,
        effects: &mut ProposalEffects,
    ) -> Decision {
        match &event.event {
            Event::ProposalCreated(p) if state.info.is_none() => {
                on_created(config, state, event, p, inputs)
            }
            Event::VoteCast(v) => on_vote(config, state, event, v, inputs, effects),
            Event::ProposalDeadline(d) => on_deadline(state, event, d),
            Event::ProposalCancelled(c) => on_cancelled(state, event, c),
            Event::ProposalFanout(f) => fanout_batch(state, event, f),
            Event::ProposalExecuted(e) => on_executed(state, e),
            _ => Decision::unchanged(),
        }
    }

    fn project(key: &str, state: &ProposalState, effects: &ProposalEffects, rows: &mut Rows) {
        let Some(info) = &state.info else {
            return;
        };
        let now = Utc::now();
        rows.insert(
            proposal::ActiveModel {
                id: Set(key.to_string()),
                creator: Set(info.creator.clone()),
                title: Set(info.title.clone()),
                description: Set(info.description.clone()),
                starts_at: Set(info.starts_at),
                ends_at: Set(info.ends_at),
                quorum: Set(to_i64(info.quorum)),
                threshold_bps: Set(i32::from(info.threshold_bps)),
                status: Set(state.status.as_str().to_string()),
                tally: Set(serde_json::to_value(state.tally).expect("tally serialises")),
                created_at: Set(info.created_at),
                updated_at: Set(now),
                deadlines_fired: merit_storage::sea_orm::ActiveValue::NotSet,
            },
            Some(
                OnConflict::column(proposal::Column::Id)
                    .update_columns([
                        proposal::Column::Status,
                        proposal::Column::Tally,
                        proposal::Column::UpdatedAt,
                    ])
                    .to_owned(),
            ),
        );
        rows.insert_many(
            effects
                .votes
                .iter()
                .map(|(voter, record)| vote::ActiveModel {
                    proposal_id: Set(key.to_string()),
                    voter: Set(voter.clone()),
                    choice: Set(choice_str(record.choice).to_string()),
                    weight: Set(to_i64(record.weight)),
                    boosts: Set(serde_json::to_value(&record.boosts).expect("boosts serialise")),
                    event_id: Set(record.event_id.clone()),
                    cast_at: Set(record.cast_at),
                }),
            None,
        );
    }
}

/// What applying one event of a turn reads: a creation's sequence number, a new voter's
/// tokens (through the cache, whose database tier is the turn's shared read).
async fn prepare_one(
    store: &Store,
    services: &Services,
    key: &str,
    state: &ProposalState,
    event: &Envelope,
    reads: &HeldReads,
) -> merit_storage::Result<ProposalInputs> {
    let mut inputs = ProposalInputs::default();
    match &event.event {
        Event::ProposalCreated(p) if state.info.is_none() => {
            let now = Utc::now();
            inputs.now = Some(now);
            // A refused creation takes no sequence number.
            if services
                .config
                .get()
                .limits
                .check_proposal(p.starts_at, p.ends_at, p.quorum, now)
                .is_ok()
            {
                inputs.seq = Some(store.proposal_seq(key).await?);
            }
        }
        // Not conditional on the proposal existing yet: its creation may be an
        // earlier event of the same turn.
        Event::VoteCast(v) if !state.voters.contains(&v.voter.to_string()) => {
            inputs.now = Some(Utc::now());
            inputs.held = load_held_from(services, &v.voter.to_string(), reads).await?;
        }
        _ => {}
    }
    Ok(inputs)
}

#[cfg(test)]
mod tests;
