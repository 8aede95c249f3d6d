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
    rules::{achievement_id, evaluate, Activity, ActivityKind, RuleFacts, Unlock, UnlockLedger},
    DynamicConfig,
};
use merit_messages::{
    AchievementUnlocked, Address, BenefitsChanged, Envelope, Event, HoldingChange, HoldingsChanged,
    ProposalClosed, ProposalOutcome, TierId, TokenId, VoteRecorded,
};
use merit_storage::{cache::CacheKey, Rows};
use serde::{Deserialize, Serialize};

use crate::{
    domain::{Decision, Detached, Domain, Services},
    notify::UserNotification,
};

mod projection;

use projection::{project_benefits, project_notifications, project_unlocks, project_user};

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

    /// Advances the user's activity times to an event at `at`.
    fn touch(&mut self, at: DateTime<Utc>) {
        self.first_seen_at.get_or_insert(at);
        self.last_active_at = Some(self.last_active_at.map_or(at, |t| t.max(at)));
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

    /// One handler per event; the rules run on the activity a handler reports, and only
    /// an active turn advances the user's activity times.
    fn apply(
        config: &DynamicConfig,
        key: &str,
        next: &mut UserState,
        event: &Envelope,
        _: &(),
        effects: &mut UserEffects,
    ) -> Decision {
        let me = |a: &Address| a.to_string() == key;
        let mut turn = UserTurn {
            key,
            event,
            state: next,
            effects,
        };
        let handled = match &event.event {
            Event::ProposalAccepted(p) if me(&p.creator) => turn.on_proposal_accepted(),
            Event::VoteRecorded(v) if me(&v.voter) => turn.on_vote_recorded(v),
            Event::ProposalClosed(c) if me(&c.creator) => turn.on_proposal_closed(c),
            // How a proposal the user voted on ended: the vote itself was counted when it
            // was recorded.
            Event::ProposalResult(r) if me(&r.voter) => turn.report(),
            // The unlock saga's outcome.
            Event::AchievementMinted(m) if me(&m.user) => turn.report(),
            Event::AchievementFailed(f) if me(&f.user) => turn.report(),
            Event::HoldingsChanged(h) if me(&h.user) => turn.on_holdings_changed(config, h),
            _ => return Decision::unchanged(),
        };
        let Handled::Active { activity, mut emit } = handled else {
            return Decision::changed();
        };
        if let Some((kind, proposal_seq)) = activity {
            emit.extend(turn.record(config, kind, proposal_seq));
        }
        turn.state.touch(event.occurred_at);
        Decision {
            changed: true,
            emit,
        }
    }

    fn project(key: &str, state: &UserState, effects: &UserEffects, rows: &mut Rows) {
        let now = Utc::now();
        project_user(key, state, now, rows);
        project_unlocks(key, effects, now, rows);
        project_notifications(key, effects, rows);
        if let Some(benefits) = effects.benefits_changed {
            project_benefits(key, state, benefits, now, rows);
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

/// What handling one event leaves for the rest of the turn.
enum Handled {
    /// Reported to the user only: neither an activity of theirs nor activity time.
    Reported,
    /// The user was active: their activity times advance, and `activity` (a kind and the
    /// proposal's sequence number, if any) is recorded and evaluated by the rules. `emit`
    /// holds what the handler emitted.
    Active {
        activity: Option<(ActivityKind, Option<u64>)>,
        emit: Vec<Envelope>,
    },
}

impl Handled {
    fn activity(kind: ActivityKind, proposal_seq: Option<u64>) -> Self {
        Self::Active {
            activity: Some((kind, proposal_seq)),
            emit: Vec::new(),
        }
    }
}

/// One event being applied to one user: what every handler reads and writes.
struct UserTurn<'a> {
    key: &'a str,
    event: &'a Envelope,
    state: &'a mut UserState,
    effects: &'a mut UserEffects,
}

impl UserTurn<'_> {
    /// Appends `event` to the user's notification log.
    fn notify(&mut self, event: &Envelope) {
        self.state.notify(self.effects, self.key, event);
    }

    /// An event that is only reported to the user.
    fn report(&mut self) -> Handled {
        self.notify(self.event);
        Handled::Reported
    }

    /// `governance.proposal.accepted` of the user's proposal. Counted once the
    /// ProposalActor accepted the creation (never the producer's `proposal.created`
    /// itself): a refused or duplicate creation unlocks nothing.
    fn on_proposal_accepted(&mut self) -> Handled {
        self.state.proposals_created += 1;
        Handled::activity(ActivityKind::ProposalCreated, None)
    }

    /// `governance.vote.recorded` of the user's vote.
    fn on_vote_recorded(&mut self, v: &VoteRecorded) -> Handled {
        self.notify(self.event);
        if v.own_proposal {
            // Counted in the tally, never toward achievements: voting on your own
            // proposals must not farm them.
            return Handled::Reported;
        }
        self.state.votes_cast += 1;
        Handled::activity(ActivityKind::VoteCast, Some(v.proposal_seq))
    }

    /// `governance.proposal.closed` of the user's proposal: an activity when it passed.
    fn on_proposal_closed(&mut self, c: &ProposalClosed) -> Handled {
        self.notify(self.event);
        if c.outcome != ProposalOutcome::Succeeded {
            return Handled::Active {
                activity: None,
                emit: Vec::new(),
            };
        }
        self.state.proposals_passed += 1;
        Handled::activity(ActivityKind::ProposalPassed, None)
    }

    /// `user.holdings.changed`: the held NFTs change, and with them the user's benefits
    /// (`user.benefits.changed`).
    fn on_holdings_changed(&mut self, config: &DynamicConfig, h: &HoldingsChanged) -> Handled {
        let token = h.token.to_string();
        match h.change {
            HoldingChange::Acquired => {
                let holding = Holding {
                    tier: h.tier.as_ref().map(|t| t.to_string()),
                    since: h.position,
                };
                self.state.holdings.insert(token, holding);
            }
            HoldingChange::Released => {
                self.state.holdings.remove(&token);
            }
        }
        let held = self.state.held_nfts();
        let (boosts, multiplier) = config.boost(held.tokens.iter().map(|(t, r)| (t, r)));
        self.effects.benefits_changed = Some((multiplier, config.version));
        let changed = self.event.caused(
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
        self.notify(&changed);
        Handled::Active {
            activity: None,
            emit: vec![changed],
        }
    }

    /// Records an activity in the rule facts and evaluates the rules: every newly met
    /// rule unlocks an achievement, emitted as `achievement.unlocked`.
    fn record(
        &mut self,
        config: &DynamicConfig,
        kind: ActivityKind,
        proposal_seq: Option<u64>,
    ) -> Vec<Envelope> {
        let at = self.event.occurred_at;
        let tiers_held = self
            .state
            .holdings
            .values()
            .filter_map(|h| h.tier.as_ref()?.parse().ok())
            .collect();
        self.state.facts.record(Activity {
            kind,
            at,
            proposal_seq,
            tiers_held,
        });
        let unlocks = evaluate(
            &config.rules,
            config.version,
            &self.state.facts,
            &mut self.state.ledger,
            at,
        );
        let Ok(user) = self.key.parse::<Address>() else {
            return Vec::new();
        };
        unlocks
            .iter()
            .map(|unlock| self.unlocked(user, unlock))
            .collect()
    }

    /// The `achievement.unlocked` of `unlock`, with an id and token derived from (user,
    /// rule, occurrence), so a redelivery or re-evaluation never unlocks twice.
    fn unlocked(&mut self, user: Address, unlock: &Unlock) -> Envelope {
        let id = achievement_id(&user, &unlock.rule, unlock.occurrence);
        let unlocked = AchievementUnlocked {
            user,
            achievement_id: id,
            rule: unlock.rule.clone(),
            rule_version: unlock.rule_version,
            tier: unlock.tier.clone(),
            token: achievement_token(id),
        };
        let label = format!("unlock:{}:{}", unlock.rule, unlock.occurrence);
        let emitted = self.event.caused(&label, "user-actor", unlocked.clone());
        self.notify(&emitted);
        self.effects
            .unlocks
            .push((unlocked, self.event.occurred_at, self.event.correlation_id));
        emitted
    }
}

#[cfg(test)]
mod tests;
