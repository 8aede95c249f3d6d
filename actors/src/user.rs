//! UserActor: one per wallet. Counts the user's governance behaviour and tracks the NFTs
//! the user holds (as accepted by each token's NftActor, in chain order).

use std::{collections::BTreeMap, sync::Arc};

use chrono::{DateTime, Utc};
use merit_messages::{Envelope, Event, HoldingChange, ProposalOutcome};
use merit_storage::{
    entities::user,
    sea_orm::{sea_query::OnConflict, ActiveValue::Set, DatabaseTransaction, EntityTrait},
    TxFuture,
};
use serde::{Deserialize, Serialize};

use crate::domain::{Decision, Domain};

/// A token the user holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    /// Benefit tier, when known.
    pub tier: Option<String>,
    /// Chain position of the change that gave it to the user.
    pub since: (u64, u64),
}

/// Everything merit knows about one user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    /// Proposals created.
    pub proposals_created: u64,
    /// Votes cast (accepted by the user's actor; one per proposal per the producer).
    pub votes_cast: u64,
    /// Proposals created by this user that succeeded.
    pub proposals_passed: u64,
    /// Tokens held, by token id.
    pub holdings: BTreeMap<String, Holding>,
    /// First event seen.
    pub first_seen_at: Option<DateTime<Utc>>,
    /// Latest event time seen.
    pub last_active_at: Option<DateTime<Utc>>,
}

/// The UserActor's domain.
pub struct UserDomain;

impl Domain for UserDomain {
    const KIND: merit_messages::ActorKind = merit_messages::ActorKind::User;
    type State = UserState;

    fn apply(key: &str, state: &UserState, event: &Envelope) -> Decision<UserState> {
        let mut next = state.clone();
        let me = |a: &merit_messages::Address| a.to_string() == key;
        let changed = match &event.event {
            Event::ProposalCreated(p) if me(&p.creator) => {
                next.proposals_created += 1;
                true
            }
            Event::VoteCast(v) if me(&v.voter) => {
                next.votes_cast += 1;
                true
            }
            Event::ProposalClosed(c)
                if me(&c.creator) && c.outcome == ProposalOutcome::Succeeded =>
            {
                next.proposals_passed += 1;
                true
            }
            Event::HoldingsChanged(h) if me(&h.user) => {
                let token = h.token.to_string();
                match h.change {
                    HoldingChange::Acquired => {
                        let holding = Holding {
                            tier: h.tier.as_ref().map(|t| t.to_string()),
                            since: h.position,
                        };
                        next.holdings.insert(token, holding);
                    }
                    HoldingChange::Released => {
                        next.holdings.remove(&token);
                    }
                }
                true
            }
            _ => false,
        };
        if !changed {
            return Decision::unchanged(next);
        }
        next.first_seen_at.get_or_insert(event.occurred_at);
        next.last_active_at = Some(
            next.last_active_at
                .map_or(event.occurred_at, |t| t.max(event.occurred_at)),
        );
        Decision::changed(next)
    }

    fn project(
        txn: &DatabaseTransaction,
        key: String,
        state: UserState,
        _: Arc<Envelope>,
    ) -> TxFuture<'_, ()> {
        Box::pin(async move {
            let now = Utc::now();
            let counters = serde_json::json!({
                "proposals_passed": state.proposals_passed,
                "nfts_held": state.holdings.len(),
            });
            user::Entity::insert(user::ActiveModel {
                address: Set(key),
                proposals_created: Set(to_i64(state.proposals_created)),
                votes_cast: Set(to_i64(state.votes_cast)),
                counters: Set(counters),
                first_seen_at: Set(state.first_seen_at.unwrap_or(now)),
                last_active_at: Set(state.last_active_at.unwrap_or(now)),
            })
            .on_conflict(
                OnConflict::column(user::Column::Address)
                    .update_columns([
                        user::Column::ProposalsCreated,
                        user::Column::VotesCast,
                        user::Column::Counters,
                        user::Column::LastActiveAt,
                    ])
                    .to_owned(),
            )
            .exec(txn)
            .await?;
            Ok(())
        })
    }
}

/// Stores a count as BIGINT (counts never reach 2^63).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use merit_messages::{Address, HoldingsChanged, TokenId, VoteCast, VoteChoice};

    use super::*;

    fn addr(b: u8) -> Address {
        Address([b; 20])
    }

    fn vote(voter: Address, proposal: &str) -> Envelope {
        Envelope::new(
            "t",
            VoteCast {
                proposal: proposal.parse().expect("id"),
                voter,
                choice: VoteChoice::For,
                reason: None,
            },
        )
    }

    #[test]
    fn votes_by_the_user_count_and_others_do_not() {
        let me = addr(1).to_string();
        let d = UserDomain::apply(&me, &UserState::default(), &vote(addr(1), "p"));
        assert!(d.changed);
        assert_eq!(d.state.votes_cast, 1);
        let d2 = UserDomain::apply(&me, &d.state, &vote(addr(2), "p"));
        assert!(!d2.changed);
        assert_eq!(d2.state.votes_cast, 1);
    }

    #[test]
    fn holdings_follow_acquire_and_release() {
        let me = addr(3).to_string();
        let token: TokenId = "7".parse().expect("token");
        let change = |change| {
            Envelope::new(
                "t",
                HoldingsChanged {
                    user: addr(3),
                    token: token.clone(),
                    change,
                    tier: None,
                    position: (1, 0),
                },
            )
        };
        let got =
            UserDomain::apply(&me, &UserState::default(), &change(HoldingChange::Acquired)).state;
        assert!(got.holdings.contains_key("7"));
        let gone = UserDomain::apply(&me, &got, &change(HoldingChange::Released)).state;
        assert!(gone.holdings.is_empty());
    }
}
