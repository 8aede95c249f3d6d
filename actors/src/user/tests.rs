//! Unit tests of the user domain: what each event counts, reports and unlocks, and the held
//! NFTs as benefits.

use merit_messages::{
    AchievementFailed, AchievementMinted, ProposalAccepted, ProposalResult, Tally, VoteChoice,
};

use super::*;

const USER: Address = Address([7; 20]);
const OTHER: Address = Address([8; 20]);

/// What applying one event to a copy of a user leaves.
struct Applied {
    state: UserState,
    decision: Decision,
    effects: UserEffects,
}

fn apply(state: &UserState, event: &Envelope) -> Applied {
    let mut state = state.clone();
    let mut effects = UserEffects::default();
    let decision = UserDomain::apply(
        &DynamicConfig::builtin(),
        &USER.to_string(),
        &mut state,
        event,
        &(),
        &mut effects,
    );
    Applied {
        state,
        decision,
        effects,
    }
}

fn types(events: &[Envelope]) -> Vec<&'static str> {
    events.iter().map(|e| e.event_type().as_str()).collect()
}

fn kinds(effects: &UserEffects) -> Vec<&str> {
    effects
        .notifications
        .iter()
        .map(|n| n.kind.as_str())
        .collect()
}

fn accepted(creator: Address) -> Envelope {
    Envelope::new(
        "t",
        ProposalAccepted {
            proposal: "p".parse().expect("id"),
            creator,
            proposal_seq: 1,
        },
    )
}

fn recorded(own_proposal: bool) -> Envelope {
    Envelope::new(
        "t",
        VoteRecorded {
            proposal: "p".parse().expect("id"),
            proposal_seq: 3,
            voter: USER,
            choice: VoteChoice::For,
            weight: 1_000,
            multiplier_bps: 10_000,
            boosts: Vec::new(),
            config_version: 0,
            own_proposal,
        },
    )
}

fn closed(outcome: ProposalOutcome) -> Envelope {
    Envelope::new(
        "t",
        ProposalClosed {
            proposal: "p".parse().expect("id"),
            creator: USER,
            outcome,
            tally: Tally::default(),
            quorum_reached: true,
            closed_at: Utc::now(),
        },
    )
}

fn holdings(change: HoldingChange, tier: &str) -> Envelope {
    Envelope::new(
        "t",
        HoldingsChanged {
            user: USER,
            token: TokenId::from(42u128),
            change,
            tier: Some(tier.parse().expect("tier")),
            position: (10, 0),
        },
    )
}

/// The user's activity times are the event's: it counted as activity.
fn assert_active_at(state: &UserState, event: &Envelope) {
    assert_eq!(state.first_seen_at, Some(event.occurred_at));
    assert_eq!(state.last_active_at, Some(event.occurred_at));
}

#[test]
fn an_accepted_proposal_counts_and_unlocks_the_first_proposal_achievement() {
    let event = accepted(USER);
    let a = apply(&UserState::default(), &event);
    assert!(a.decision.changed);
    assert_eq!(a.state.proposals_created, 1);
    assert_eq!(types(&a.decision.emit), ["achievement.unlocked"]);
    let (unlocked, at, correlation) = &a.effects.unlocks[0];
    assert_eq!(unlocked.rule.to_string(), "first-proposal");
    assert_eq!(unlocked.token, achievement_token(unlocked.achievement_id));
    assert_eq!(
        (*at, *correlation),
        (event.occurred_at, event.correlation_id)
    );
    assert_eq!(a.state.ledger.occurrences(&unlocked.rule), 1);
    assert_eq!(kinds(&a.effects), ["achievement.unlocked"]);
    assert_active_at(&a.state, &event);
    let again = apply(&a.state, &accepted(USER));
    assert!(again.decision.emit.is_empty(), "the ledger unlocks it once");
}

#[test]
fn a_recorded_vote_is_reported_and_counts_toward_achievements() {
    let event = recorded(false);
    let a = apply(&UserState::default(), &event);
    assert!(a.decision.changed);
    assert_eq!(a.state.votes_cast, 1);
    assert!(a.decision.emit.is_empty(), "one vote unlocks nothing");
    assert_eq!(kinds(&a.effects), ["governance.vote.recorded"]);
    assert_eq!(a.effects.notifications[0].seq, 1);
    assert_eq!(a.state.notify_seq, 1);
    assert_active_at(&a.state, &event);
}

#[test]
fn a_vote_on_the_user_s_own_proposal_is_reported_but_never_counted() {
    let a = apply(&UserState::default(), &recorded(true));
    assert!(a.decision.changed);
    assert_eq!(a.state.votes_cast, 0);
    assert_eq!(a.state.facts, RuleFacts::default(), "no activity recorded");
    assert_eq!(kinds(&a.effects), ["governance.vote.recorded"]);
    assert_eq!(a.state.last_active_at, None);
}

#[test]
fn a_proposal_of_the_user_that_passed_counts_as_passed() {
    let event = closed(ProposalOutcome::Succeeded);
    let a = apply(&UserState::default(), &event);
    assert!(a.decision.changed);
    assert_eq!(a.state.proposals_passed, 1);
    assert_ne!(a.state.facts, RuleFacts::default(), "an activity");
    assert_eq!(kinds(&a.effects), ["governance.proposal.closed"]);
    assert_active_at(&a.state, &event);
}

#[test]
fn a_proposal_of_the_user_that_failed_is_reported_and_counts_nothing() {
    let event = closed(ProposalOutcome::Defeated);
    let a = apply(&UserState::default(), &event);
    assert!(a.decision.changed);
    assert_eq!(a.state.proposals_passed, 0);
    assert_eq!(a.state.facts, RuleFacts::default());
    assert_eq!(kinds(&a.effects), ["governance.proposal.closed"]);
    assert_active_at(&a.state, &event);
}

#[test]
fn a_proposal_result_is_only_reported() {
    let event = Envelope::new(
        "t",
        ProposalResult {
            proposal: "p".parse().expect("id"),
            voter: USER,
            outcome: ProposalOutcome::Succeeded,
            tally: Tally::default(),
            quorum_reached: true,
            closed_at: Utc::now(),
        },
    );
    let a = apply(&UserState::default(), &event);
    assert!(a.decision.changed && a.decision.emit.is_empty());
    assert_eq!(kinds(&a.effects), ["governance.proposal.result"]);
    assert_eq!(a.effects.notifications[0].event_id, event.id.0);
    assert_eq!(a.state.last_active_at, None, "not an activity of the user");
}

#[test]
fn a_minted_achievement_is_only_reported() {
    let event = Envelope::new(
        "t",
        AchievementMinted {
            user: USER,
            achievement_id: uuid::Uuid::from_u128(1),
            rule: "first-proposal".parse().expect("rule"),
            token: TokenId::from(1u128),
            tx_hash: None,
        },
    );
    let a = apply(&UserState::default(), &event);
    assert!(a.decision.changed && a.decision.emit.is_empty());
    assert_eq!(kinds(&a.effects), ["achievement.minted"]);
    assert_eq!(a.state.last_active_at, None);
}

#[test]
fn a_failed_achievement_is_only_reported() {
    let event = Envelope::new(
        "t",
        AchievementFailed {
            user: USER,
            achievement_id: uuid::Uuid::from_u128(1),
            rule: "first-proposal".parse().expect("rule"),
            reason: "chain down".into(),
        },
    );
    let a = apply(&UserState::default(), &event);
    assert!(a.decision.changed && a.decision.emit.is_empty());
    assert_eq!(kinds(&a.effects), ["achievement.failed"]);
    assert_eq!(a.state.last_active_at, None);
}

#[test]
fn an_acquired_nft_becomes_a_benefit() {
    let event = holdings(HoldingChange::Acquired, "gold");
    let a = apply(&UserState::default(), &event);
    assert!(a.decision.changed);
    assert_eq!(
        a.state.held_nfts().tokens,
        [("42".to_string(), "gold".parse().expect("tier"))]
    );
    assert_eq!(
        a.effects.benefits_changed,
        Some((15_000, 0)),
        "gold gives +50%"
    );
    match &a.decision.emit[..] {
        [e] => match &e.event {
            Event::BenefitsChanged(b) => {
                assert_eq!(b.multiplier_bps, 15_000);
                assert_eq!(b.boosting_nfts, [TokenId::from(42u128)]);
            }
            other => panic!("{other:?}"),
        },
        other => panic!("one user.benefits.changed, not {other:?}"),
    }
    assert_eq!(kinds(&a.effects), ["user.benefits.changed"]);
    assert_active_at(&a.state, &event);
}

#[test]
fn a_released_nft_is_no_longer_a_benefit() {
    let held = apply(
        &UserState::default(),
        &holdings(HoldingChange::Acquired, "gold"),
    )
    .state;
    let a = apply(&held, &holdings(HoldingChange::Released, "gold"));
    assert!(a.state.holdings.is_empty());
    assert_eq!(
        a.effects.benefits_changed,
        Some((merit_config::dynamic::UNIT_BPS, 0)),
        "back to a plain vote"
    );
    assert_eq!(types(&a.decision.emit), ["user.benefits.changed"]);
    assert_eq!(a.state.notify_seq, 2);
}

#[test]
fn another_user_s_events_change_nothing() {
    let a = apply(&UserState::default(), &accepted(OTHER));
    assert!(!a.decision.changed && a.decision.emit.is_empty());
    assert_eq!(a.state, UserState::default());
    assert_eq!(a.effects, UserEffects::default());
}
