//! UserActor: one per wallet. Counts the user's governance behaviour, evaluates the active
//! achievement rules on it, and tracks the NFTs the user holds (as accepted by each
//! token's NftActor, in chain order) — which are the user's vote benefits.
//!
//! - `governance.proposal.created` (as creator), `governance.vote.recorded` (a vote the
//!   ProposalActor counted, with the proposal's sequence number for streaks) and
//!   `governance.proposal.closed` (a proposal of the user's succeeded) are activities:
//!   each is recorded in the rule facts, then the rules are evaluated and every newly met
//!   rule emits `achievement.unlocked`, with an id and token derived from (user, rule,
//!   occurrence) — a redelivery never unlocks twice (the inbox), and a re-evaluation
//!   never either (the unlock ledger).
//! - `user.holdings.changed` updates the held NFTs, writes the benefits projection,
//!   emits `user.benefits.changed` and, after the commit, writes the benefits through the
//!   cache (every node's L1 drops its copy).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use merit_config::{
    rules::{achievement_id, evaluate, Activity, ActivityKind, RuleFacts, UnlockLedger},
    DynamicConfig,
};
use merit_messages::{
    AchievementUnlocked, Address, BenefitsChanged, Envelope, Event, HoldingChange, ProposalOutcome,
    TierId, TokenId,
};
use merit_storage::{
    cache::CacheKey,
    entities::{achievement, benefit, notification, user},
    sea_orm::{sea_query::OnConflict, ActiveValue::Set},
    Rows,
};
use serde::{Deserialize, Serialize};

use crate::{
    domain::{Decision, Detached, Domain, Services},
    notify::UserNotification,
};

/// A token the user holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    /// Benefit tier, when known.
    pub tier: Option<String>,
    /// Chain position of the change that gave it to the user.
    pub since: (u64, u64),
}

/// The NFTs a user holds, as cached and as the ProposalActor reads them at vote time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldNfts {
    /// `(token id, tier)` pairs, in token order; tokens without a known tier are left out
    /// (they boost nothing).
    pub tokens: Vec<(String, TierId)>,
}

/// Everything merit knows about one user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    /// Proposals created.
    pub proposals_created: u64,
    /// Votes counted by ProposalActors.
    pub votes_cast: u64,
    /// Proposals created by this user that succeeded.
    pub proposals_passed: u64,
    /// Tokens held, by token id.
    pub holdings: BTreeMap<String, Holding>,
    /// What the achievement rules know of the user.
    #[serde(default)]
    pub facts: RuleFacts,
    /// Which rules unlocked, how many times.
    #[serde(default)]
    pub ledger: UnlockLedger,
    /// First event seen.
    pub first_seen_at: Option<DateTime<Utc>>,
    /// Latest event time seen.
    pub last_active_at: Option<DateTime<Utc>>,
    /// The last `seq` of the user's notification log.
    #[serde(default)]
    pub notify_seq: u64,
}

/// What a user's turn leaves for its projections and for live delivery.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserEffects {
    /// The achievements unlocked, with when and the correlation id of the event that
    /// unlocked them (the unlock saga is started under it).
    pub unlocks: Vec<(AchievementUnlocked, DateTime<Utc>, uuid::Uuid)>,
    /// When the holdings changed: the last new multiplier (basis points) and the config
    /// version it was computed under.
    pub benefits_changed: Option<(u32, u64)>,
    /// The notifications added to the user's log, in `seq` order.
    pub notifications: Vec<UserNotification>,
}

impl UserState {
    /// Appends `event` to the user's notification log.
    fn notify(&mut self, effects: &mut UserEffects, user: &str, event: &Envelope) {
        self.notify_seq += 1;
        effects.notifications.push(UserNotification {
            user: user.to_string(),
            seq: self.notify_seq,
            event_id: event.id.0,
            kind: event.event_type().as_str().to_string(),
            payload: serde_json::to_value(&event.event).unwrap_or(serde_json::Value::Null),
            at: event.occurred_at,
        });
    }

    /// The held NFTs that have a tier.
    pub fn held_nfts(&self) -> HeldNfts {
        HeldNfts {
            tokens: self
                .holdings
                .iter()
                .filter_map(|(token, h)| {
                    let tier = h.tier.as_ref()?.parse().ok()?;
                    Some((token.clone(), tier))
                })
                .collect(),
        }
    }
}

/// The UserActor's domain.
pub struct UserDomain;

/// The token id an achievement mints: its UUID as a 128-bit number, so the same unlock
/// always mints the same token (a retried mint can never create a second one).
pub fn achievement_token(achievement: uuid::Uuid) -> TokenId {
    TokenId::from(achievement.as_u128())
}

impl Domain for UserDomain {
    const KIND: merit_messages::ActorKind = merit_messages::ActorKind::User;
    type State = UserState;
    type Inputs = ();
    type Effects = UserEffects;

    fn apply(
        config: &DynamicConfig,
        key: &str,
        next: &mut UserState,
        event: &Envelope,
        _: &(),
        effects: &mut UserEffects,
    ) -> Decision {
        let me = |a: &Address| a.to_string() == key;
        let mut activity = None;
        let mut emit = Vec::new();
        match &event.event {
            // Counted once the ProposalActor accepted the creation (never the producer's
            // `proposal.created` itself): a refused or duplicate creation unlocks nothing.
            Event::ProposalAccepted(p) if me(&p.creator) => {
                next.proposals_created += 1;
                activity = Some((ActivityKind::ProposalCreated, None));
            }
            Event::VoteRecorded(v) if me(&v.voter) => {
                next.notify(effects, key, event);
                if v.own_proposal {
                    // Counted in the tally, never toward achievements: voting on your own
                    // proposals must not farm them.
                    return Decision::changed();
                }
                next.votes_cast += 1;
                activity = Some((ActivityKind::VoteCast, Some(v.proposal_seq)));
            }
            Event::ProposalClosed(c) if me(&c.creator) => {
                next.notify(effects, key, event);
                if c.outcome == ProposalOutcome::Succeeded {
                    next.proposals_passed += 1;
                    activity = Some((ActivityKind::ProposalPassed, None));
                }
            }
            // How a proposal the user voted on ended: reported, no activity of theirs (the
            // vote itself was counted when it was recorded).
            Event::ProposalResult(r) if me(&r.voter) => {
                next.notify(effects, key, event);
                return Decision::changed();
            }
            // The unlock saga's outcome: reported to the user, no activity of theirs.
            Event::AchievementMinted(m) if me(&m.user) => {
                next.notify(effects, key, event);
                return Decision::changed();
            }
            Event::AchievementFailed(f) if me(&f.user) => {
                next.notify(effects, key, event);
                return Decision::changed();
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
                let held = next.held_nfts();
                let (boosts, multiplier) = config.boost(held.tokens.iter().map(|(t, r)| (t, r)));
                effects.benefits_changed = Some((multiplier, config.version));
                let changed = event.caused(
                    "benefits",
                    "user-actor",
                    BenefitsChanged {
                        user: h.user,
                        multiplier_bps: multiplier,
                        boosting_nfts: boosts
                            .into_iter()
                            .filter_map(|(token, _, _)| token.parse().ok())
                            .collect(),
                        config_version: config.version,
                    },
                );
                next.notify(effects, key, &changed);
                emit.push(changed);
            }
            _ => return Decision::unchanged(),
        }
        if let Some((kind, proposal_seq)) = activity {
            let tiers_held = next
                .holdings
                .values()
                .filter_map(|h| h.tier.as_ref()?.parse().ok())
                .collect();
            next.facts.record(Activity {
                kind,
                at: event.occurred_at,
                proposal_seq,
                tiers_held,
            });
            let unlocks = evaluate(
                &config.rules,
                config.version,
                &next.facts,
                &mut next.ledger,
                event.occurred_at,
            );
            if let Ok(user) = key.parse::<Address>() {
                for unlock in unlocks {
                    let id = achievement_id(&user, &unlock.rule, unlock.occurrence);
                    let unlocked = AchievementUnlocked {
                        user,
                        achievement_id: id,
                        rule: unlock.rule.clone(),
                        rule_version: unlock.rule_version,
                        tier: unlock.tier,
                        token: achievement_token(id),
                    };
                    let label = format!("unlock:{}:{}", unlock.rule, unlock.occurrence);
                    let emitted = event.caused(&label, "user-actor", unlocked.clone());
                    next.notify(effects, key, &emitted);
                    emit.push(emitted);
                    effects
                        .unlocks
                        .push((unlocked, event.occurred_at, event.correlation_id));
                }
            }
        }
        next.first_seen_at.get_or_insert(event.occurred_at);
        next.last_active_at = Some(
            next.last_active_at
                .map_or(event.occurred_at, |t| t.max(event.occurred_at)),
        );
        Decision {
            changed: true,
            emit,
        }
    }

    fn project(key: &str, state: &UserState, effects: &UserEffects, rows: &mut Rows) {
        let now = Utc::now();
        let counters = serde_json::json!({
            "proposals_passed": state.proposals_passed,
            "nfts_held": state.holdings.len(),
            "longest_streak": state.facts.longest_streak(),
        });
        rows.insert(
            user::ActiveModel {
                address: Set(key.to_string()),
                proposals_created: Set(to_i64(state.proposals_created)),
                votes_cast: Set(to_i64(state.votes_cast)),
                counters: Set(counters),
                first_seen_at: Set(state.first_seen_at.unwrap_or(now)),
                last_active_at: Set(state.last_active_at.unwrap_or(now)),
            },
            Some(
                OnConflict::column(user::Column::Address)
                    .update_columns([
                        user::Column::ProposalsCreated,
                        user::Column::VotesCast,
                        user::Column::Counters,
                        user::Column::LastActiveAt,
                    ])
                    .to_owned(),
            ),
        );
        rows.insert_many(
            effects
                .unlocks
                .iter()
                .map(|(u, at, correlation)| achievement::ActiveModel {
                    id: Set(u.achievement_id.to_string()),
                    correlation_id: Set(Some(correlation.to_string())),
                    user: Set(key.to_string()),
                    rule_id: Set(u.rule.to_string()),
                    rule_version: Set(to_i64(u.rule_version)),
                    tier: Set(u.tier.to_string()),
                    token_id: Set(Some(u.token.to_string())),
                    state: Set("unlocked".to_string()),
                    saga_id: Set(None),
                    reason: Set(None),
                    created_at: Set(*at),
                    updated_at: Set(now),
                }),
            Some(
                OnConflict::column(achievement::Column::Id)
                    .do_nothing()
                    .to_owned(),
            ),
        );
        // The version check makes `seq` this turn's alone; a conflict here can only be a
        // replay of this very turn.
        rows.insert_many(
            effects
                .notifications
                .iter()
                .map(|n| notification::ActiveModel {
                    user: Set(key.to_string()),
                    seq: Set(to_i64(n.seq)),
                    event_id: Set(n.event_id.to_string()),
                    kind: Set(n.kind.clone()),
                    payload: Set(n.payload.clone()),
                    created_at: Set(n.at),
                }),
            Some(
                OnConflict::columns([notification::Column::User, notification::Column::Seq])
                    .do_nothing()
                    .to_owned(),
            ),
        );
        if let Some((multiplier, config_version)) = effects.benefits_changed {
            rows.insert(
                benefit::ActiveModel {
                    user: Set(key.to_string()),
                    multiplier_bps: Set(i64::from(multiplier)),
                    boosting_nfts: Set(serde_json::to_value(state.held_nfts().tokens)
                        .unwrap_or(serde_json::Value::Null)),
                    config_version: Set(to_i64(config_version)),
                    updated_at: Set(now),
                },
                Some(
                    OnConflict::column(benefit::Column::User)
                        .update_columns([
                            benefit::Column::MultiplierBps,
                            benefit::Column::ConfigVersion,
                            benefit::Column::BoostingNfts,
                            benefit::Column::UpdatedAt,
                        ])
                        .to_owned(),
                ),
            );
        }
    }

    /// A redelivered event may repeat a commit whose write-through never ran: drop the
    /// cached benefits everywhere so the next read loads the committed row.
    fn resync<'a>(services: &'a Services, key: &'a str) -> Detached<'a> {
        Box::pin(async move {
            let cache_key = CacheKey::Benefits(key.to_string());
            services
                .cache
                .invalidate(std::slice::from_ref(&cache_key))
                .await;
        })
    }

    fn committed<'a>(
        services: &'a Services,
        key: &'a str,
        state: &'a UserState,
        effects: &'a UserEffects,
    ) -> Detached<'a> {
        Box::pin(async move {
            if !effects.notifications.is_empty() {
                services.notifier.notify(&effects.notifications);
            }
            if effects.benefits_changed.is_some() {
                let cache_key = CacheKey::Benefits(key.to_string());
                services.cache.put(&cache_key, &state.held_nfts()).await;
            }
        })
    }
}

/// Stores a count as BIGINT (counts never reach 2^63).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
