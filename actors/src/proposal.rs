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

use std::{
    collections::{BTreeSet, HashMap},
    ops::Bound::{Excluded, Unbounded},
    sync::Arc,
};

use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, FutureExt, Shared};
use merit_config::dynamic::{DynamicConfig, UNIT_BPS};
use merit_messages::{
    Address, Boost, DeadlinePhase, Envelope, Event, ProposalAccepted, ProposalCancelled,
    ProposalClosed, ProposalCreated, ProposalDeadline, ProposalExecuted, ProposalFanout,
    ProposalOutcome, ProposalResult, Tally, VoteCast, VoteChoice, VoteRecorded,
};
use merit_storage::column::to_i64;
use merit_storage::{
    cache::CacheKey,
    entities::{benefit, proposal, vote},
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

/// Reads a user's held NFTs: L1 → L2 → the `benefits` projection. A user with no row holds
/// nothing (and that is cached too: most voters hold no NFT).
pub async fn load_held(
    store: &Store,
    services: &Services,
    user: &str,
) -> merit_storage::Result<HeldNfts> {
    load_held_from(services, user, &held_reads(store, vec![user.to_string()])).await
}

/// The database reads of a turn's voters' held NFTs: one query for all of them, run
/// only if some voter misses the cache, and then at most once.
type HeldReads = Shared<BoxFuture<'static, Result<Arc<HashMap<String, HeldNfts>>, ReadFailed>>>;

/// Why the shared read failed, as each voter's read reports it (a database error is not
/// `Clone`): an outage stays an outage, so the turn waits it out instead of spending
/// attempts, as it would have on a read of its own.
#[derive(Debug, Clone)]
struct ReadFailed {
    unavailable: bool,
    reason: String,
}

impl ReadFailed {
    fn new(e: &merit_storage::StorageError) -> Self {
        let unavailable =
            matches!(e, merit_storage::StorageError::Db(db) if crate::shell::is_unavailable(db));
        Self {
            unavailable,
            reason: e.to_string(),
        }
    }

    fn error(self) -> merit_storage::StorageError {
        use merit_storage::sea_orm::{DbErr, RuntimeErr};
        merit_storage::StorageError::Db(if self.unavailable {
            DbErr::Conn(RuntimeErr::Internal(self.reason))
        } else {
            DbErr::Custom(self.reason)
        })
    }
}

fn held_reads(store: &Store, users: Vec<String>) -> HeldReads {
    let db = store.db().clone();
    async move {
        read_held_many(&db, users)
            .await
            .map(Arc::new)
            .map_err(|e| ReadFailed::new(&e))
    }
    .boxed()
    .shared()
}

/// [`load_held`] whose database tier is the turn's shared read.
async fn load_held_from(
    services: &Services,
    user: &str,
    reads: &HeldReads,
) -> merit_storage::Result<HeldNfts> {
    let key = CacheKey::Benefits(user.to_string());
    let (reads, id) = (reads.clone(), user.to_string());
    let held = services
        .cache
        .get_or_load(&key, move || async move {
            match reads.await {
                Ok(held) => Ok(Some(held.get(&id).cloned().unwrap_or_default())),
                Err(failed) => Err(failed.error()),
            }
        })
        .await?;
    Ok(held.unwrap_or_default())
}

/// The `benefits` projection's held NFTs of `users` (a user with no row is left out).
async fn read_held_many(
    db: &DatabaseConnection,
    users: Vec<String>,
) -> merit_storage::Result<HashMap<String, HeldNfts>> {
    let mut held = HashMap::with_capacity(users.len());
    for chunk in users.chunks(1_000) {
        let rows: Vec<(String, serde_json::Value)> = benefit::Entity::find()
            .select_only()
            .column(benefit::Column::User)
            .column(benefit::Column::BoostingNfts)
            .filter(benefit::Column::User.is_in(chunk.iter().cloned()))
            .into_tuple()
            .all(db)
            .await?;
        for (user, tokens) in rows {
            let tokens = serde_json::from_value(tokens).unwrap_or_default();
            held.insert(user, HeldNfts { tokens });
        }
    }
    Ok(held)
}

/// The database tier of the benefits cache: the `benefits` projection's held NFTs.
async fn read_held(
    db: DatabaseConnection,
    user: String,
) -> merit_storage::Result<Option<HeldNfts>> {
    let row = benefit::Entity::find_by_id(user).one(&db).await?;
    let tokens = row
        .and_then(|r| serde_json::from_value(r.boosting_nfts).ok())
        .unwrap_or_default();
    Ok(Some(HeldNfts { tokens }))
}

/// Loads the benefits of the `limit` most recently active users into the cache (all
/// tiers); returns how many were cached. Failures only cost a cold read later.
pub async fn warm_benefits(store: &Store, services: &Services, limit: u64) -> usize {
    use merit_storage::{entities::user, sea_orm::QueryOrder};
    let users: Vec<String> = match user::Entity::find()
        .select_only()
        .column(user::Column::Address)
        .order_by_desc(user::Column::LastActiveAt)
        .limit(limit)
        .into_tuple()
        .all(store.db())
        .await
    {
        Ok(users) => users,
        Err(e) => {
            tracing::warn!(error = %e, "cache warm-up skipped: cannot list active users");
            return 0;
        }
    };
    let keys = users.into_iter().map(CacheKey::Benefits).collect();
    let db = store.db().clone();
    let report = services
        .cache
        .warm(keys, move |key| {
            let db = db.clone();
            async move {
                match key {
                    CacheKey::Benefits(id) => read_held(db, id).await,
                    CacheKey::UserProfile(_) => Ok(None),
                }
            }
        })
        .await;
    report.cached
}

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

/// `governance.proposal.created` for a proposal not yet created: accepted within the
/// configured limits, with the sequence number `prepare` allocated.
fn on_created(
    config: &DynamicConfig,
    state: &mut ProposalState,
    event: &Envelope,
    p: &ProposalCreated,
    inputs: &ProposalInputs,
) -> Decision {
    let now = inputs.now.unwrap_or(event.occurred_at);
    if let Err((field, why)) = config
        .limits
        .check_proposal(p.starts_at, p.ends_at, p.quorum, now)
    {
        // Refused: the proposal does not exist, and nothing is emitted, so no
        // achievement can come of it (the inbox row keeps it applied once).
        tracing::info!(proposal = %p.proposal, field, reason = %why,
            "proposal creation refused by the configured limits");
        return Decision::unchanged();
    }
    let Some(seq) = inputs.seq else {
        // Limits changed between prepare and apply: refuse, as above.
        return Decision::unchanged();
    };
    state.info = Some(ProposalInfo {
        creator: p.creator.to_string(),
        title: p.title.clone(),
        description: p.description.clone(),
        starts_at: p.starts_at,
        ends_at: p.ends_at,
        quorum: p.quorum,
        threshold_bps: p.threshold_bps,
        created_at: event.occurred_at,
        seq,
    });
    state.status = ProposalStatus::Pending;
    let accepted = ProposalAccepted {
        proposal: p.proposal.clone(),
        creator: p.creator,
        proposal_seq: seq,
    };
    Decision::changed().emit(event.caused("accepted", "proposal-actor", accepted))
}

/// `governance.vote.cast`: the first vote of a voter within the voting window is counted
/// with its boosts; any other is refused (counted as refused, no effect).
fn on_vote(
    config: &DynamicConfig,
    state: &mut ProposalState,
    event: &Envelope,
    v: &VoteCast,
    inputs: &ProposalInputs,
    effects: &mut ProposalEffects,
) -> Decision {
    let voter = v.voter.to_string();
    let ballot = state
        .info
        .as_ref()
        .filter(|info| in_voting_window(config, state.status, info, event, inputs))
        .map(|info| (info.seq, info.creator == voter));
    let Some((seq, own_proposal)) = ballot.filter(|_| !state.voters.contains(&voter)) else {
        state.refused_votes += 1;
        return Decision::changed();
    };
    let (weight, multiplier, boosts) = weigh(config, &state.boosted, &inputs.held);
    count_vote(state, &voter, v.choice, weight, &boosts);
    let recorded = VoteRecorded {
        proposal: v.proposal.clone(),
        proposal_seq: seq,
        voter: v.voter,
        choice: v.choice,
        weight,
        multiplier_bps: multiplier,
        boosts: boosts.clone(),
        config_version: config.version,
        own_proposal,
    };
    effects.votes.push((
        voter,
        VoteRecord {
            choice: v.choice,
            weight,
            boosts,
            event_id: event.id.to_string(),
            cast_at: event.occurred_at,
        },
    ));
    Decision::changed().emit(event.caused("recorded", "proposal-actor", recorded))
}

/// Whether a vote falls in the voting window of an open proposal. The producer's
/// `occurred_at` must be in the window, and so must merit's own clock when the vote is
/// applied (up to the configured grace after the end, for votes queued before it): a
/// backdated `occurred_at` buys nothing.
fn in_voting_window(
    config: &DynamicConfig,
    status: ProposalStatus,
    info: &ProposalInfo,
    event: &Envelope,
    inputs: &ProposalInputs,
) -> bool {
    let now = inputs.now.unwrap_or(event.occurred_at);
    let grace =
        chrono::Duration::try_seconds(i64::try_from(config.limits.vote_grace_secs).unwrap_or(0))
            .unwrap_or_default();
    status.is_open()
        && event.occurred_at >= info.starts_at
        && event.occurred_at < info.ends_at
        && now >= info.starts_at
        && info
            .ends_at
            .checked_add_signed(grace)
            .is_none_or(|last| now < last)
}

/// The weight of a vote from the holder of `held`, its multiplier and its boosts: only
/// tokens that have not boosted a vote on this proposal yet can boost it.
fn weigh(
    config: &DynamicConfig,
    boosted: &BTreeSet<String>,
    held: &HeldNfts,
) -> (u64, u32, Vec<Boost>) {
    let candidates = held
        .tokens
        .iter()
        .filter(|(token, _)| !boosted.contains(token))
        .map(|(token, tier)| (token, tier));
    let (chosen, multiplier) = config.boost(candidates);
    let weight = BASE_WEIGHT * u64::from(multiplier) / u64::from(UNIT_BPS);
    let boosts = chosen
        .into_iter()
        .filter_map(|(token, tier, bonus_bps)| {
            Some(Boost {
                token: token.parse().ok()?,
                tier,
                bonus_bps,
            })
        })
        .collect();
    (weight, multiplier, boosts)
}

/// Adds a counted vote to the tally; its voter and boosting tokens are remembered so
/// neither counts again. The first vote opens a pending proposal.
fn count_vote(
    state: &mut ProposalState,
    voter: &str,
    choice: VoteChoice,
    weight: u64,
    boosts: &[Boost],
) {
    match choice {
        VoteChoice::For => state.tally.for_weight += weight,
        VoteChoice::Against => state.tally.against_weight += weight,
        VoteChoice::Abstain => state.tally.abstain_weight += weight,
    }
    state.tally.voters += 1;
    state.voters.insert(voter.to_string());
    state
        .boosted
        .extend(boosts.iter().map(|b| b.token.to_string()));
    if state.status == ProposalStatus::Pending {
        state.status = ProposalStatus::Active;
    }
}

/// `governance.proposal.deadline`: opens a pending proposal at its start, closes an open
/// one at its end.
fn on_deadline(state: &mut ProposalState, event: &Envelope, d: &ProposalDeadline) -> Decision {
    let Some(info) = &state.info else {
        return Decision::unchanged();
    };
    match d.phase {
        DeadlinePhase::Open
            if state.status == ProposalStatus::Pending && event.occurred_at >= info.starts_at =>
        {
            state.status = ProposalStatus::Active;
            Decision::changed()
        }
        DeadlinePhase::Close if state.status.is_open() && event.occurred_at >= info.ends_at => {
            let (outcome, _) = decide(info, &state.tally);
            let closed_at = info.ends_at;
            close(state, event, &d.proposal, outcome, closed_at)
        }
        // Early (a forged or clock-skewed deadline), or already applied.
        _ => Decision::unchanged(),
    }
}

/// `governance.proposal.cancelled`: only the creator cancels, and only an open proposal.
fn on_cancelled(state: &mut ProposalState, event: &Envelope, c: &ProposalCancelled) -> Decision {
    let Some(info) = &state.info else {
        return Decision::unchanged();
    };
    if !state.status.is_open() || c.by.to_string() != info.creator {
        return Decision::unchanged();
    }
    close(
        state,
        event,
        &c.proposal,
        ProposalOutcome::Cancelled,
        event.occurred_at,
    )
}

/// Closes a created proposal with `outcome` at `closed_at`: `governance.proposal.closed`
/// tells the creator and the first fan-out starts telling the voters.
fn close(
    state: &mut ProposalState,
    event: &Envelope,
    proposal: &merit_messages::ProposalId,
    outcome: ProposalOutcome,
    closed_at: DateTime<Utc>,
) -> Decision {
    let Some(info) = &state.info else {
        return Decision::unchanged();
    };
    let quorum_reached = decide(info, &state.tally).1;
    let closed = closed_event(
        proposal,
        info,
        outcome,
        state.tally,
        quorum_reached,
        closed_at,
    );
    state.status = match outcome {
        ProposalOutcome::Succeeded => ProposalStatus::Succeeded,
        ProposalOutcome::Defeated => ProposalStatus::Defeated,
        ProposalOutcome::Cancelled => ProposalStatus::Cancelled,
    };
    state.closed_at = Some(closed_at);
    let decision = Decision::changed().emit(event.caused("closed", "proposal-actor", closed));
    start_fanout(decision, state, event, proposal)
}

/// `governance.proposal.executed`: only the creator carries out, and only a succeeded
/// proposal.
fn on_executed(state: &mut ProposalState, e: &ProposalExecuted) -> Decision {
    let by_creator = state
        .info
        .as_ref()
        .is_some_and(|info| info.creator == e.by.to_string());
    if state.status != ProposalStatus::Succeeded || !by_creator {
        return Decision::unchanged();
    }
    state.status = ProposalStatus::Executed;
    Decision::changed()
}

/// The voters of `events` that `state` has not counted: whose tokens a vote reads.
fn new_voters<'e>(
    state: &ProposalState,
    events: impl IntoIterator<Item = &'e Envelope>,
) -> Vec<String> {
    events
        .into_iter()
        .filter_map(|e| match &e.event {
            Event::VoteCast(v) if !state.voters.contains(&v.voter.to_string()) => {
                Some(v.voter.to_string())
            }
            _ => None,
        })
        .collect()
}

/// The outcome of closing with `tally`, and whether the quorum was reached.
fn decide(info: &ProposalInfo, tally: &Tally) -> (ProposalOutcome, bool) {
    let total = tally.for_weight + tally.against_weight + tally.abstain_weight;
    let quorum_reached = total >= info.quorum;
    let decisive = u128::from(tally.for_weight + tally.against_weight);
    let passes = tally.for_weight > 0
        && u128::from(tally.for_weight) * 10_000 >= u128::from(info.threshold_bps) * decisive;
    let outcome = if quorum_reached && passes {
        ProposalOutcome::Succeeded
    } else {
        ProposalOutcome::Defeated
    };
    (outcome, quorum_reached)
}

/// Adds the first fan-out to a closing `decision`, when the proposal has voters.
fn start_fanout(
    decision: Decision,
    state: &ProposalState,
    event: &Envelope,
    proposal: &merit_messages::ProposalId,
) -> Decision {
    if state.voters.is_empty() {
        return decision;
    }
    let first = ProposalFanout {
        proposal: proposal.clone(),
        after: None,
    };
    decision.emit(event.caused("fanout", "proposal-actor", first))
}

/// One fan-out turn: a `governance.proposal.result` for each of the next
/// [`FANOUT_BATCH`] voters after `f.after`, and the fan-out for the batch after that.
/// Changes nothing: the cursor travels in the events.
fn fanout_batch(state: &ProposalState, event: &Envelope, f: &ProposalFanout) -> Decision {
    let (Some(info), Some(closed_at)) = (&state.info, state.closed_at) else {
        return Decision::unchanged();
    };
    let outcome = match state.status {
        ProposalStatus::Succeeded | ProposalStatus::Executed => ProposalOutcome::Succeeded,
        ProposalStatus::Defeated => ProposalOutcome::Defeated,
        ProposalStatus::Cancelled => ProposalOutcome::Cancelled,
        // Only a closed proposal fans out (a forged fan-out for an open one is ignored).
        ProposalStatus::Pending | ProposalStatus::Active => return Decision::unchanged(),
    };
    let quorum_reached = decide(info, &state.tally).1;
    let after = f.after.map(|a| a.to_string());
    let start = match &after {
        Some(a) => (Excluded(a.as_str()), Unbounded),
        None => (Unbounded, Unbounded),
    };
    let mut decision = Decision::unchanged();
    let mut last = None;
    for voter in state.voters.range::<str, _>(start).take(FANOUT_BATCH) {
        let Ok(address) = voter.parse::<Address>() else {
            continue;
        };
        let result = ProposalResult {
            proposal: f.proposal.clone(),
            voter: address,
            outcome,
            tally: state.tally,
            quorum_reached,
            closed_at,
        };
        decision =
            decision.emit(event.caused(&format!("result:{voter}"), "proposal-actor", result));
        last = Some((voter, address));
    }
    if let Some((voter, address)) = last {
        let more = state
            .voters
            .range::<str, _>((Excluded(voter.as_str()), Unbounded))
            .next()
            .is_some();
        if more {
            let next = ProposalFanout {
                proposal: f.proposal.clone(),
                after: Some(address),
            };
            decision = decision.emit(event.caused("fanout", "proposal-actor", next));
        }
    }
    decision
}

fn closed_event(
    proposal: &merit_messages::ProposalId,
    info: &ProposalInfo,
    outcome: ProposalOutcome,
    tally: Tally,
    quorum_reached: bool,
    closed_at: DateTime<Utc>,
) -> ProposalClosed {
    ProposalClosed {
        proposal: proposal.clone(),
        creator: info.creator.parse().unwrap_or(Address([0; 20])),
        outcome,
        tally,
        quorum_reached,
        closed_at,
    }
}

fn choice_str(choice: VoteChoice) -> &'static str {
    match choice {
        VoteChoice::For => "for",
        VoteChoice::Against => "against",
        VoteChoice::Abstain => "abstain",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{apply_to_copy, Applied};

    #[test]
    fn a_failed_shared_read_keeps_an_outage_an_outage() {
        use merit_storage::{
            sea_orm::{DbErr, RuntimeErr},
            StorageError,
        };
        let unavailable = |e: StorageError| match e {
            StorageError::Db(db) => crate::shell::is_unavailable(&db),
            _ => false,
        };
        let outage = StorageError::Db(DbErr::Conn(RuntimeErr::Internal("refused".into())));
        assert!(unavailable(ReadFailed::new(&outage).error()));
        let refused = StorageError::Db(DbErr::Custom("no such column".into()));
        let again = ReadFailed::new(&refused).error();
        assert!(again.to_string().contains("no such column"), "{again}");
        assert!(!unavailable(again));
    }

    fn created(quorum: u64) -> Envelope {
        let now = Utc::now();
        Envelope::new(
            "t",
            ProposalCreated {
                proposal: "p".parse().expect("id"),
                creator: Address([9; 20]),
                title: "t".into(),
                description: String::new(),
                starts_at: now - chrono::Duration::minutes(1),
                ends_at: now + chrono::Duration::hours(1),
                quorum,
                threshold_bps: 5000,
            },
        )
    }

    fn vote(b: u8, choice: VoteChoice) -> Envelope {
        Envelope::new(
            "t",
            VoteCast {
                proposal: "p".parse().expect("id"),
                voter: Address([b; 20]),
                choice,
                reason: None,
            },
        )
    }

    fn apply(
        state: &ProposalState,
        event: &Envelope,
        held: &[(&str, &str)],
    ) -> Applied<ProposalState> {
        let inputs = ProposalInputs {
            seq: Some(7),
            held: HeldNfts {
                tokens: held
                    .iter()
                    .map(|(t, tier)| (t.to_string(), tier.parse().expect("tier")))
                    .collect(),
            },
            now: Some(Utc::now()),
        };
        apply_to_copy::<ProposalDomain>(&DynamicConfig::builtin(), "p", state, event, &inputs)
    }

    #[test]
    fn first_vote_is_final_and_tally_is_the_sum_of_counted_weights() {
        let mut s = apply(&ProposalState::default(), &created(1), &[]).state;
        assert_eq!(s.info.as_ref().map(|i| i.seq), Some(7));
        for (b, c) in [
            (1, VoteChoice::For),
            (2, VoteChoice::Against),
            (1, VoteChoice::Against),
            (3, VoteChoice::Abstain),
        ] {
            s = apply(&s, &vote(b, c), &[]).state;
        }
        assert_eq!(s.tally.voters, 3);
        assert_eq!(s.refused_votes, 1);
        assert_eq!(s.tally.for_weight, BASE_WEIGHT);
        assert_eq!(
            3 * BASE_WEIGHT,
            s.tally.for_weight + s.tally.against_weight + s.tally.abstain_weight,
            "the tally is the sum of the counted weights"
        );
    }

    fn apply_at(
        state: &ProposalState,
        event: &Envelope,
        now: DateTime<Utc>,
    ) -> Applied<ProposalState> {
        let inputs = ProposalInputs {
            now: Some(now),
            ..ProposalInputs::default()
        };
        apply_to_copy::<ProposalDomain>(&DynamicConfig::builtin(), "p", state, event, &inputs)
    }

    #[test]
    fn a_backdated_vote_counts_only_within_the_grace_by_merit_s_clock() {
        let s = apply(&ProposalState::default(), &created(1), &[]).state;
        let ends_at = s.info.as_ref().map(|i| i.ends_at).expect("info");
        let grace = chrono::Duration::seconds(
            i64::try_from(DynamicConfig::builtin().limits.vote_grace_secs).expect("grace"),
        );
        // Stamped inside the window by the producer; applied past ends_at + grace.
        let late = apply_at(&s, &vote(1, VoteChoice::For), ends_at + grace);
        assert_eq!((late.state.tally.voters, late.state.refused_votes), (0, 1));
        assert!(late.emit.is_empty());
        // Applied within the grace (queued before the end): counted.
        let queued = apply_at(&s, &vote(1, VoteChoice::For), ends_at + grace / 2);
        assert_eq!(queued.state.tally.voters, 1);
        // Applied before the window opened, whatever it claims: refused.
        let starts_at = s.info.as_ref().map(|i| i.starts_at).expect("info");
        let early = apply_at(
            &s,
            &vote(2, VoteChoice::For),
            starts_at - chrono::Duration::seconds(1),
        );
        assert_eq!(early.state.refused_votes, 1);
    }

    #[test]
    fn own_votes_are_marked_and_a_refused_creation_emits_nothing() {
        let s = apply(&ProposalState::default(), &created(1), &[]);
        assert_eq!(s.emit.len(), 1, "governance.proposal.accepted");
        assert_eq!(
            s.emit[0].event_type().as_str(),
            "governance.proposal.accepted"
        );
        let own = apply(&s.state, &vote(9, VoteChoice::For), &[]);
        match &own.emit[0].event {
            Event::VoteRecorded(r) => assert!(r.own_proposal),
            other => panic!("{other:?}"),
        }
        let zero = apply(&ProposalState::default(), &created(0), &[]);
        assert!(
            zero.state.info.is_none() && zero.emit.is_empty(),
            "quorum 0 refused"
        );
    }

    #[test]
    fn a_vote_before_creation_is_refused() {
        let s = apply(&ProposalState::default(), &vote(1, VoteChoice::For), &[]).state;
        assert_eq!((s.tally.voters, s.refused_votes), (0, 1));
    }

    #[test]
    fn one_nft_boosts_one_vote_per_proposal_whoever_holds_it() {
        let s = apply(&ProposalState::default(), &created(1), &[]).state;
        let first = apply(&s, &vote(1, VoteChoice::For), &[("42", "gold")]);
        assert_eq!(first.state.tally.for_weight, 1_500, "gold gives +50%");
        assert_eq!(first.emit.len(), 1);
        // The token moved to voter 2, who votes next: no second boost.
        let second = apply(&first.state, &vote(2, VoteChoice::For), &[("42", "gold")]);
        assert_eq!(second.state.tally.for_weight, 2_500);
    }

    /// The deadline timer's close of proposal `p`, due at its end.
    fn close_deadline(s: &ProposalState) -> Envelope {
        let ends_at = s.info.as_ref().map(|i| i.ends_at).expect("info");
        Envelope::with_id(
            merit_messages::EventId::named("p:close"),
            "timer",
            ends_at,
            ProposalDeadline {
                proposal: "p".parse().expect("id"),
                phase: DeadlinePhase::Close,
                due_at: ends_at,
            },
        )
    }

    #[test]
    fn closing_decides_by_quorum_and_threshold() {
        let s = apply(&ProposalState::default(), &created(2_000), &[]).state;
        let s = apply(&s, &vote(1, VoteChoice::For), &[]).state;
        let close = close_deadline(&s);
        let closed = apply(&s, &close, &[]);
        assert_eq!(
            closed.state.status,
            ProposalStatus::Defeated,
            "1000 < quorum 2000"
        );
        let types: Vec<&str> = closed
            .emit
            .iter()
            .map(|e| e.event_type().as_str())
            .collect();
        assert_eq!(
            types,
            ["governance.proposal.closed", "governance.proposal.fanout"],
            "the creator is told, and the voters' fan-out starts"
        );
        let late = apply(&closed.state, &vote(2, VoteChoice::For), &[]);
        assert_eq!(late.state.tally.voters, 1, "no votes after close");
        let again = apply(&closed.state, &close, &[]);
        assert!(!again.changed, "a closed proposal closes once");
    }

    fn voter(i: u32) -> Address {
        let mut a = [0u8; 20];
        a[..4].copy_from_slice(&i.to_be_bytes());
        a[19] = 1;
        Address(a)
    }

    #[test]
    fn every_voter_is_told_the_outcome_once_in_batches() {
        const VOTERS: u32 = 2_500;
        let mut s = apply(&ProposalState::default(), &created(1), &[]).state;
        for i in 0..VOTERS {
            let cast = Envelope::new(
                "t",
                VoteCast {
                    proposal: "p".parse().expect("id"),
                    voter: voter(i),
                    choice: VoteChoice::For,
                    reason: None,
                },
            );
            s = apply(&s, &cast, &[]).state;
        }
        assert_eq!(s.tally.voters, u64::from(VOTERS));
        // A fan-out for an open proposal is ignored (only closing starts one).
        let early = ProposalFanout {
            proposal: "p".parse().expect("id"),
            after: None,
        };
        assert!(apply(&s, &Envelope::new("t", early), &[]).emit.is_empty());

        let close = close_deadline(&s);
        let closed = apply(&s, &close, &[]);
        let mut next = closed
            .emit
            .into_iter()
            .find(|e| e.event_type() == merit_messages::EventType::ProposalFanout);
        let (mut told, mut turns, mut ids) = (Vec::new(), 0, BTreeSet::new());
        while let Some(fanout) = next.take() {
            turns += 1;
            let batch = apply(&closed.state, &fanout, &[]);
            assert!(!batch.changed, "a fan-out turn changes nothing");
            // The same fan-out delivered again emits the same ids.
            let again = apply(&closed.state, &fanout, &[]);
            assert_eq!(
                batch.emit.iter().map(|e| e.id).collect::<Vec<_>>(),
                again.emit.iter().map(|e| e.id).collect::<Vec<_>>()
            );
            for e in batch.emit {
                assert!(ids.insert(e.id), "ids are unique");
                match e.event {
                    Event::ProposalResult(r) => {
                        assert_eq!(r.outcome, ProposalOutcome::Succeeded);
                        assert_eq!(r.tally.voters, u64::from(VOTERS));
                        assert_eq!(e.keys.user, Some(r.voter), "addressed to the voter");
                        told.push(r.voter.to_string());
                    }
                    Event::ProposalFanout(_) => next = Some(e),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert_eq!(turns, 3, "2,500 voters in batches of {FANOUT_BATCH}");
        let expected: Vec<String> = closed.state.voters.iter().cloned().collect();
        assert_eq!(told, expected, "each voter once, in address order");
    }
}
