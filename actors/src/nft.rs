//! NftActor: one per token. Applies mints, transfers and burns in chain order — a change
//! at or below the last applied `(block, log index)` is ignored — and tells each affected
//! user what they gained or lost (`user.holdings.changed`).

use chrono::Utc;
use merit_config::DynamicConfig;
use merit_messages::{Address, Envelope, Event, HoldingChange, HoldingsChanged, TokenId};
use merit_storage::column::to_i64;
use merit_storage::{
    entities::{achievement, nft},
    sea_orm::{sea_query::OnConflict, ActiveValue::Set, EntityTrait},
    Rows, Store, TxFuture,
};
use serde::{Deserialize, Serialize};

use crate::domain::{Decision, Domain, Services};

/// A token's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftState {
    /// Current owner (lowercase address); `None` before the mint and after a burn.
    pub owner: Option<String>,
    /// Benefit tier, when known.
    pub tier: Option<String>,
    /// The achievement it was minted for.
    pub achievement_id: Option<String>,
    /// Burned.
    pub burned: bool,
    /// `(block, log index)` of the last applied change.
    pub last_position: Option<(u64, u64)>,
}

/// The NftActor's domain.
pub struct NftDomain;

fn holding(
    cause: &Envelope,
    label: &str,
    user: Address,
    token: &TokenId,
    change: HoldingChange,
    tier: &Option<String>,
    position: (u64, u64),
) -> Envelope {
    cause.caused(
        label,
        "nft-actor",
        HoldingsChanged {
            user,
            token: token.clone(),
            change,
            tier: tier.as_ref().and_then(|t| t.parse().ok()),
            position,
        },
    )
}

impl Domain for NftDomain {
    const KIND: merit_messages::ActorKind = merit_messages::ActorKind::Nft;
    type State = NftState;
    /// The tier of a minted token's achievement, when the mint event does not carry one.
    type Inputs = Option<String>;
    type Effects = ();

    fn prepare<'a>(
        store: &'a Store,
        _: &'a Services,
        _key: &'a str,
        state: &'a NftState,
        event: &'a Envelope,
    ) -> TxFuture<'a, Option<String>> {
        Box::pin(async move {
            match &event.event {
                Event::NftMinted(m) if m.tier.is_none() && state.tier.is_none() => {
                    let Some(id) = m.achievement_id else {
                        return Ok(None);
                    };
                    let row = achievement::Entity::find_by_id(id.to_string())
                        .one(store.db())
                        .await?;
                    Ok(row.map(|a| a.tier))
                }
                _ => Ok(None),
            }
        })
    }

    fn apply(
        _: &DynamicConfig,
        _key: &str,
        state: &mut NftState,
        event: &Envelope,
        achievement_tier: &Option<String>,
        _: &mut (),
    ) -> Decision {
        let (token, position) = match &event.event {
            Event::NftMinted(m) => (&m.token, m.chain.position()),
            Event::NftTransferred(t) => (&t.token, t.chain.position()),
            Event::NftBurned(b) => (&b.token, b.chain.position()),
            _ => return Decision::unchanged(),
        };
        if state.last_position.is_some_and(|last| position <= last) {
            // Older than what we applied (or the same log again): chain order wins.
            return Decision::unchanged();
        }
        state.last_position = Some(position);
        if let Event::NftMinted(m) = &event.event {
            // A token's tier is set once, by its mint: the event's, else its achievement's.
            let tier = m.tier.as_ref().map(|t| t.to_string());
            state.tier = state
                .tier
                .take()
                .or(tier)
                .or_else(|| achievement_tier.clone());
        }
        // Every emitted holding change carries the tier.
        let tier = state.tier.clone();
        let change = |label: &str, user: Address, change: HoldingChange| {
            holding(event, label, user, token, change, &tier, position)
        };
        match &event.event {
            Event::NftMinted(m) => {
                state.owner = Some(m.to.to_string());
                state.achievement_id = m.achievement_id.map(|a| a.to_string());
                Decision::changed().emit(change("acquired", m.to, HoldingChange::Acquired))
            }
            Event::NftTransferred(t) => {
                state.owner = Some(t.to.to_string());
                Decision::changed()
                    .emit(change("released", t.from, HoldingChange::Released))
                    .emit(change("acquired", t.to, HoldingChange::Acquired))
            }
            Event::NftBurned(b) => {
                state.owner = None;
                state.burned = true;
                Decision::changed().emit(change("released", b.from, HoldingChange::Released))
            }
            _ => unreachable!("matched above"),
        }
    }

    fn project(key: &str, state: &NftState, _: &(), rows: &mut Rows) {
        let (block, log) = state.last_position.unwrap_or_default();
        rows.insert(
            nft::ActiveModel {
                token_id: Set(key.to_string()),
                owner: Set(state.owner.clone()),
                tier: Set(state.tier.clone()),
                achievement_id: Set(state.achievement_id.clone()),
                burned: Set(state.burned),
                last_block: Set(to_i64(block)),
                last_log_index: Set(to_i64(log)),
                updated_at: Set(Utc::now()),
            },
            Some(
                OnConflict::column(nft::Column::TokenId)
                    .update_columns([
                        nft::Column::Owner,
                        nft::Column::Tier,
                        nft::Column::AchievementId,
                        nft::Column::Burned,
                        nft::Column::LastBlock,
                        nft::Column::LastLogIndex,
                        nft::Column::UpdatedAt,
                    ])
                    .to_owned(),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use merit_messages::{ChainRef, NftMinted, NftTransferred, TxHash};

    use super::*;
    use crate::domain::{apply_to_copy, Applied};

    fn chain(block: u64, log: u64) -> ChainRef {
        ChainRef {
            chain_id: 1,
            block_number: block,
            block_hash: TxHash([1; 32]),
            tx_hash: TxHash([2; 32]),
            log_index: log,
        }
    }

    fn transfer(from: u8, to: u8, block: u64, log: u64) -> Envelope {
        Envelope::new(
            "t",
            NftTransferred {
                token: "5".parse().expect("t"),
                from: Address([from; 20]),
                to: Address([to; 20]),
                chain: chain(block, log),
            },
        )
    }

    fn apply(state: &NftState, event: &Envelope) -> Applied<NftState> {
        apply_to_copy::<NftDomain>(&DynamicConfig::default(), "5", state, event, &None)
    }

    #[test]
    fn changes_apply_in_chain_order_and_older_ones_are_ignored() {
        let mint = Envelope::new(
            "t",
            NftMinted {
                token: "5".parse().expect("t"),
                to: Address([1; 20]),
                achievement_id: None,
                tier: None,
                chain: chain(10, 0),
            },
        );
        let s = apply(&NftState::default(), &mint);
        assert_eq!(s.emit.len(), 1);
        let s2 = apply(&s.state, &transfer(1, 2, 12, 3));
        assert_eq!(s2.state.owner, Some(Address([2; 20]).to_string()));
        assert_eq!(s2.emit.len(), 2);
        let stale = apply(&s2.state, &transfer(1, 3, 11, 9));
        assert!(!stale.changed, "an older transfer must not apply");
        assert!(stale.emit.is_empty());
        let same = apply(&s2.state, &transfer(1, 2, 12, 3));
        assert!(!same.changed);
    }
}
