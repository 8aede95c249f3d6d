//! ProposalActor: one per proposal. Holds the proposal, its votes and the running tally.
//!
//! Vote policy: one vote per user per proposal, and **the first vote is final** — a later
//! vote from the same wallet is refused (recorded as applied, no effect). A vote for a
//! proposal merit has not seen created is refused the same way.

use std::{collections::BTreeSet, sync::Arc};

use chrono::{DateTime, Utc};
use merit_messages::{Envelope, Event, Tally, VoteChoice};
use merit_storage::{
    entities::{proposal, vote},
    sea_orm::{
        sea_query::OnConflict, ActiveValue::Set, ColumnTrait, DatabaseConnection,
        DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
    },
    TxFuture,
};
use serde::{Deserialize, Serialize};

use crate::{
    domain::{Decision, Domain},
    user::to_i64,
};

/// The weight of a plain vote, in weight units (1 vote = 1000 units, so benefit
/// multipliers in basis points stay exact integers).
pub const BASE_WEIGHT: u64 = 1_000;

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
}

/// One counted vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteRecord {
    /// The choice.
    pub choice: VoteChoice,
    /// Weight counted.
    pub weight: u64,
    /// The event that cast it.
    pub event_id: String,
    /// When.
    pub cast_at: DateTime<Utc>,
}

/// A proposal's state. The snapshot holds the proposal and its tally; the voters live in
/// the `votes` table (written in the same transaction as each vote) and are loaded on
/// activation, so a vote costs one row, not a rewrite of every earlier vote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalState {
    /// `None` until `governance.proposal.created` arrives.
    pub info: Option<ProposalInfo>,
    /// Sum of the counted votes.
    pub tally: Tally,
    /// Votes refused (already voted, unknown proposal).
    pub refused_votes: u64,
    /// Who has voted (from the `votes` table; not in the snapshot).
    #[serde(skip)]
    pub voters: BTreeSet<String>,
    /// The vote the last applied event counted, for the projection (not in the snapshot).
    #[serde(skip)]
    pub last_vote: Option<(String, VoteRecord)>,
}

/// The ProposalActor's domain.
pub struct ProposalDomain;

impl Domain for ProposalDomain {
    const KIND: merit_messages::ActorKind = merit_messages::ActorKind::Proposal;
    type State = ProposalState;

    fn hydrate<'a>(
        db: &'a DatabaseConnection,
        key: &'a str,
        state: &'a mut ProposalState,
    ) -> TxFuture<'a, ()> {
        Box::pin(async move {
            let voters: Vec<String> = vote::Entity::find()
                .select_only()
                .column(vote::Column::Voter)
                .filter(vote::Column::ProposalId.eq(key))
                .into_tuple()
                .all(db)
                .await?;
            state.voters = voters.into_iter().collect();
            Ok(())
        })
    }

    fn apply(_key: &str, state: &ProposalState, event: &Envelope) -> Decision<ProposalState> {
        let mut next = state.clone();
        next.last_vote = None;
        match &event.event {
            Event::ProposalCreated(p) if state.info.is_none() => {
                next.info = Some(ProposalInfo {
                    creator: p.creator.to_string(),
                    title: p.title.clone(),
                    description: p.description.clone(),
                    starts_at: p.starts_at,
                    ends_at: p.ends_at,
                    quorum: p.quorum,
                    threshold_bps: p.threshold_bps,
                    created_at: event.occurred_at,
                });
                Decision::changed(next)
            }
            Event::VoteCast(v) => {
                let voter = v.voter.to_string();
                if state.info.is_none() || state.voters.contains(&voter) {
                    next.refused_votes += 1;
                    return Decision::changed(next);
                }
                let weight = BASE_WEIGHT;
                match v.choice {
                    VoteChoice::For => next.tally.for_weight += weight,
                    VoteChoice::Against => next.tally.against_weight += weight,
                    VoteChoice::Abstain => next.tally.abstain_weight += weight,
                }
                next.tally.voters += 1;
                next.voters.insert(voter.clone());
                next.last_vote = Some((
                    voter,
                    VoteRecord {
                        choice: v.choice,
                        weight,
                        event_id: event.id.to_string(),
                        cast_at: event.occurred_at,
                    },
                ));
                Decision::changed(next)
            }
            _ => Decision::unchanged(next),
        }
    }

    fn project(
        txn: &DatabaseTransaction,
        key: String,
        state: ProposalState,
        _event: Arc<Envelope>,
    ) -> TxFuture<'_, ()> {
        Box::pin(async move {
            let Some(info) = &state.info else {
                return Ok(());
            };
            let now = Utc::now();
            proposal::Entity::insert(proposal::ActiveModel {
                id: Set(key.clone()),
                creator: Set(info.creator.clone()),
                title: Set(info.title.clone()),
                description: Set(info.description.clone()),
                starts_at: Set(info.starts_at),
                ends_at: Set(info.ends_at),
                quorum: Set(to_i64(info.quorum)),
                threshold_bps: Set(i32::from(info.threshold_bps)),
                status: Set("active".to_string()),
                tally: Set(serde_json::to_value(state.tally).expect("tally serialises")),
                created_at: Set(info.created_at),
                updated_at: Set(now),
            })
            .on_conflict(
                OnConflict::column(proposal::Column::Id)
                    .update_columns([
                        proposal::Column::Status,
                        proposal::Column::Tally,
                        proposal::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec(txn)
            .await?;
            if let Some((voter, record)) = &state.last_vote {
                vote::Entity::insert(vote::ActiveModel {
                    proposal_id: Set(key),
                    voter: Set(voter.clone()),
                    choice: Set(choice_str(record.choice).to_string()),
                    weight: Set(to_i64(record.weight)),
                    boosts: Set(serde_json::json!([])),
                    event_id: Set(record.event_id.clone()),
                    cast_at: Set(record.cast_at),
                })
                .exec(txn)
                .await?;
            }
            Ok(())
        })
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
    use merit_messages::{Address, ProposalCreated, VoteCast};

    use super::*;

    fn created() -> Envelope {
        let now = Utc::now();
        Envelope::new(
            "t",
            ProposalCreated {
                proposal: "p".parse().expect("id"),
                creator: Address([9; 20]),
                title: "t".into(),
                description: String::new(),
                starts_at: now,
                ends_at: now + chrono::Duration::hours(1),
                quorum: 1,
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

    #[test]
    fn first_vote_is_final_and_tally_is_the_sum_of_counted_weights() {
        let mut s = ProposalDomain::apply("p", &ProposalState::default(), &created()).state;
        for (b, c) in [
            (1, VoteChoice::For),
            (2, VoteChoice::Against),
            (1, VoteChoice::Against),
            (3, VoteChoice::Abstain),
        ] {
            s = ProposalDomain::apply("p", &s, &vote(b, c)).state;
        }
        assert_eq!(s.tally.voters, 3);
        assert_eq!(s.refused_votes, 1);
        assert_eq!(s.tally.for_weight, BASE_WEIGHT);
        assert_eq!(s.voters.len() as u64, s.tally.voters);
        assert_eq!(
            3 * BASE_WEIGHT,
            s.tally.for_weight + s.tally.against_weight + s.tally.abstain_weight,
            "the tally is the sum of the counted weights"
        );
    }

    #[test]
    fn a_vote_before_creation_is_refused() {
        let s =
            ProposalDomain::apply("p", &ProposalState::default(), &vote(1, VoteChoice::For)).state;
        assert_eq!((s.tally.voters, s.refused_votes), (0, 1));
    }
}
