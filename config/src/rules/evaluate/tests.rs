//! Unit tests of rule evaluation: which unlocks each kind of condition makes due, and when.

use chrono::{TimeDelta, TimeZone};

use super::*;
use crate::rules::{Activity, ActivityKind};

fn t(minute: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000, 0).single().expect("valid") + TimeDelta::minutes(minute)
}

fn set(doc: serde_json::Value) -> RuleSet {
    let tiers: Vec<TierId> = ["bronze", "silver", "gold"]
        .iter()
        .map(|t| t.parse().expect("tier"))
        .collect();
    RuleSet::parse(&serde_json::to_vec(&doc).expect("json"), &tiers).expect("valid rules")
}

fn one_rule(when: serde_json::Value) -> RuleSet {
    set(serde_json::json!({"rules": [{"id": "r", "tier": "silver", "title": "R", "when": when}]}))
}

fn act(kind: ActivityKind, minute: i64) -> Activity {
    Activity {
        kind,
        at: t(minute),
        proposal_seq: None,
        tiers_held: vec![],
    }
}

fn vote(seq: u64, minute: i64, tiers: &[&str]) -> Activity {
    Activity {
        kind: ActivityKind::VoteCast,
        at: t(minute),
        proposal_seq: Some(seq),
        tiers_held: tiers.iter().map(|s| s.parse().expect("tier")).collect(),
    }
}

/// A user: facts and ledger, recording activities and evaluating after each.
struct User {
    facts: RuleFacts,
    ledger: UnlockLedger,
    unlocked: Vec<Unlock>,
}

impl User {
    fn new() -> Self {
        Self {
            facts: RuleFacts::default(),
            ledger: UnlockLedger::default(),
            unlocked: vec![],
        }
    }

    /// Records `a` and evaluates at its time; returns the occurrences newly unlocked.
    fn does(&mut self, rules: &RuleSet, a: Activity) -> Vec<u32> {
        let now = a.at;
        self.facts.record(a);
        self.eval(rules, now)
    }

    fn eval(&mut self, rules: &RuleSet, now: DateTime<Utc>) -> Vec<u32> {
        let new = evaluate(rules, 7, &self.facts, &mut self.ledger, now);
        self.unlocked.extend(new.iter().cloned());
        new.iter().map(|u| u.occurrence).collect()
    }
}

#[test]
fn first_proposal_unlocks_once() {
    let rules =
        one_rule(serde_json::json!({"count": {"activity": "proposal_created", "at_least": 1}}));
    let mut user = User::new();
    assert!(user.does(&rules, act(ActivityKind::VoteCast, 0)).is_empty());
    assert_eq!(
        user.does(&rules, act(ActivityKind::ProposalCreated, 1)),
        [1]
    );
    assert!(user
        .does(&rules, act(ActivityKind::ProposalCreated, 2))
        .is_empty());
    assert!(
        user.eval(&rules, t(3)).is_empty(),
        "evaluating again unlocks nothing"
    );
    let u = &user.unlocked[0];
    assert_eq!(
        (
            u.rule.as_str(),
            u.tier.as_str(),
            u.occurrence,
            u.rule_version
        ),
        ("r", "silver", 1, 7)
    );
}

#[test]
fn voted_on_ten_unlocks_at_the_tenth_vote() {
    let rules = one_rule(serde_json::json!({"count": {"activity": "vote_cast", "at_least": 10}}));
    let mut user = User::new();
    for i in 0..9 {
        assert!(
            user.does(&rules, vote(i, i as i64, &[])).is_empty(),
            "vote {i}"
        );
    }
    assert_eq!(user.does(&rules, vote(9, 9, &[])), [1]);
    assert!(user.does(&rules, vote(10, 10, &[])).is_empty());
}

#[test]
fn five_streak_counts_consecutive_seqs_despite_gaps_and_order() {
    let rules = one_rule(serde_json::json!({"streak": {"at_least": 5}}));
    let mut user = User::new();
    // 1 2 _ 4 5 6 _ 8: runs of 2 and 3, no streak of 5 yet.
    for (i, seq) in [8, 1, 5, 2, 4, 6].into_iter().enumerate() {
        assert!(
            user.does(&rules, vote(seq, i as i64, &[])).is_empty(),
            "seq {seq}"
        );
    }
    assert_eq!(user.facts.longest_streak(), 3);
    // 7 joins 4-5-6 with 8: a run of 5, arriving late.
    assert_eq!(user.does(&rules, vote(7, 10, &[])), [1]);
    assert_eq!(user.facts.longest_streak(), 5);
    // 3 joins everything into 1..=8: longer, but a Once rule stays unlocked once.
    assert!(user.does(&rules, vote(3, 11, &[])).is_empty());
    assert_eq!(user.facts.longest_streak(), 8);
}

#[test]
fn three_passed_proposals() {
    let rules =
        one_rule(serde_json::json!({"count": {"activity": "proposal_passed", "at_least": 3}}));
    let mut user = User::new();
    for i in 0..5 {
        assert!(user
            .does(&rules, act(ActivityKind::ProposalCreated, i))
            .is_empty());
    }
    assert!(user
        .does(&rules, act(ActivityKind::ProposalPassed, 6))
        .is_empty());
    assert!(user
        .does(&rules, act(ActivityKind::ProposalPassed, 7))
        .is_empty());
    assert_eq!(user.does(&rules, act(ActivityKind::ProposalPassed, 8)), [1]);
}

#[test]
fn held_gold_while_voting() {
    let rules = one_rule(serde_json::json!(
        {"held_while": {"tier": "gold", "activity": "vote_cast", "at_least": 2}}));
    let mut user = User::new();
    assert!(user.does(&rules, vote(1, 0, &["silver"])).is_empty());
    assert!(user.does(&rules, vote(2, 1, &["gold"])).is_empty());
    assert!(
        user.does(&rules, act(ActivityKind::ProposalCreated, 2))
            .is_empty(),
        "not a vote"
    );
    assert!(
        user.does(&rules, vote(3, 3, &[])).is_empty(),
        "gold sold meanwhile"
    );
    assert_eq!(user.does(&rules, vote(4, 4, &["silver", "gold"])), [1]);
}

#[test]
fn windowed_count_ages_out_and_never_re_unlocks_a_once_rule() {
    let rules = one_rule(serde_json::json!(
        {"count": {"activity": "vote_cast", "at_least": 3, "within": "1h"}}));
    let mut user = User::new();
    assert!(user.does(&rules, vote(1, 0, &[])).is_empty());
    assert!(user.does(&rules, vote(2, 30, &[])).is_empty());
    // The vote at 0 has aged out by minute 60: (0, 60] holds two votes.
    assert!(user.does(&rules, vote(3, 60, &[])).is_empty());
    let now = t(70);
    assert!(!would_unlock(&rules.rules[0], &user.facts, now));
    assert_eq!(user.does(&rules, vote(4, 70, &[])), [1], "30, 60 and 70");
    // The window empties, then fills again: still unlocked once.
    assert!(user.eval(&rules, t(500)).is_empty());
    assert!(!would_unlock(&rules.rules[0], &user.facts, t(500)));
    for (i, m) in [501, 502, 503].into_iter().enumerate() {
        assert!(user.does(&rules, vote(10 + i as u64, m, &[])).is_empty());
    }
    assert!(would_unlock(&rules.rules[0], &user.facts, t(503)));
    assert_eq!(user.unlocked.len(), 1);
}

#[test]
fn all_of_needs_every_part_and_any_of_one() {
    let rules = set(serde_json::json!({"rules": [
        {"id": "both", "tier": "gold", "title": "Both", "when": {"all_of": [
            {"count": {"activity": "proposal_created", "at_least": 1}},
            {"count": {"activity": "vote_cast", "at_least": 2}}]}},
        {"id": "either", "tier": "bronze", "title": "Either", "when": {"any_of": [
            {"count": {"activity": "proposal_passed", "at_least": 1}},
            {"streak": {"at_least": 2}}]}},
        {"id": "nested", "tier": "silver", "title": "Nested", "when": {"all_of": [
            {"any_of": [{"streak": {"at_least": 9}},
                        {"held_while": {"tier": "gold", "activity": "vote_cast"}}]},
            {"count": {"activity": "proposal_passed", "at_least": 1}}]}},
    ]}));
    let mut user = User::new();
    let ids =
        |user: &User| -> Vec<String> { user.unlocked.iter().map(|u| u.rule.to_string()).collect() };
    user.does(&rules, vote(1, 0, &["gold"]));
    user.does(&rules, vote(3, 1, &[]));
    assert!(
        ids(&user).is_empty(),
        "two votes but no proposal; no streak of 2"
    );
    user.does(&rules, act(ActivityKind::ProposalCreated, 2));
    assert_eq!(ids(&user), ["both"]);
    user.does(&rules, vote(2, 3, &[]));
    assert_eq!(ids(&user), ["both", "either"], "1-2-3 is a streak");
    user.does(&rules, act(ActivityKind::ProposalPassed, 4));
    assert_eq!(
        ids(&user),
        ["both", "either", "nested"],
        "gold vote and a pass"
    );
}

#[test]
fn repeat_every_n_unlocks_at_each_multiple() {
    let rules = set(serde_json::json!({"rules": [
        {"id": "every-3", "tier": "bronze", "title": "3 more votes", "repeat": {"every": 3},
         "when": {"count": {"activity": "vote_cast", "at_least": 3}}},
        {"id": "first-then-every-4", "tier": "bronze", "title": "Votes", "repeat": {"every": 4},
         "when": {"count": {"activity": "vote_cast", "at_least": 1}}},
    ]}));
    let mut user = User::new();
    let mut log = vec![];
    for i in 1..=12 {
        let new = user.does(&rules, vote(i, i as i64, &[]));
        if !new.is_empty() {
            log.push((i, new));
        }
    }
    assert_eq!(
        log,
        [
            (3, vec![1]),
            (4, vec![1]),
            (6, vec![2]),
            (8, vec![2]),
            (9, vec![3]),
            (12, vec![4, 3])
        ]
    );
    assert_eq!(user.ledger.occurrences(&"every-3".parse().expect("id")), 4);
    assert_eq!(
        user.ledger
            .occurrences(&"first-then-every-4".parse().expect("id")),
        3
    );
}

#[test]
fn a_late_rule_catches_up_every_occurrence_at_once() {
    let rules = set(serde_json::json!({"rules": [
        {"id": "streaky", "tier": "bronze", "title": "Streaks", "repeat": {"every": 2},
         "when": {"streak": {"at_least": 2}}}]}));
    let mut facts = RuleFacts::default();
    for seq in 0..7 {
        facts.record(vote(seq, 0, &[]));
    }
    let mut ledger = UnlockLedger::default();
    let got: Vec<u32> = evaluate(&rules, 1, &facts, &mut ledger, t(0))
        .iter()
        .map(|u| u.occurrence)
        .collect();
    assert_eq!(got, [1, 2, 3], "streak 7 => floor(7 / 2)");
    assert!(evaluate(&rules, 1, &facts, &mut ledger, t(0)).is_empty());
}

#[test]
fn a_rule_removed_and_added_back_does_not_unlock_again() {
    let rules = one_rule(serde_json::json!({"count": {"activity": "vote_cast", "at_least": 1}}));
    let mut user = User::new();
    assert_eq!(user.does(&rules, vote(1, 0, &[])), [1]);
    let without = RuleSet::default();
    assert!(user.does(&without, vote(2, 1, &[])).is_empty());
    assert!(user.does(&rules, vote(3, 2, &[])).is_empty());
    assert_eq!(user.unlocked.len(), 1);
}

#[test]
fn a_released_unlock_is_due_again_with_the_same_occurrence() {
    let rules = one_rule(serde_json::json!({"count": {"activity": "vote_cast", "at_least": 1}}));
    let mut user = User::new();
    assert_eq!(user.does(&rules, vote(1, 0, &[])), [1]);
    let id: RuleId = "r".parse().expect("id");
    assert!(!user.ledger.release(&id, 2), "only the latest occurrence");
    assert!(user.ledger.release(&id, 1));
    assert_eq!(user.ledger.occurrences(&id), 0);
    assert!(!user.ledger.release(&id, 1), "already released");
    assert_eq!(user.eval(&rules, t(1)), [1]);
}

#[test]
fn achievement_ids_are_deterministic_uuid5() {
    let user = Address([0xab; 20]);
    let rule: RuleId = "voted-10".parse().expect("id");
    let id = achievement_id(&user, &rule, 1);
    assert_eq!(id, achievement_id(&user, &rule, 1));
    assert_eq!(id.get_version_num(), 5);
    assert_ne!(id, achievement_id(&user, &rule, 2));
    assert_ne!(id, achievement_id(&Address([0xac; 20]), &rule, 1));
    let name = format!("achievement:0x{}:voted-10:1", "ab".repeat(20));
    assert_eq!(id, Uuid::new_v5(&MERIT_NAMESPACE, name.as_bytes()));
}

#[test]
fn ledger_round_trips_through_json() {
    let rules = one_rule(serde_json::json!({"count": {"activity": "vote_cast", "at_least": 1}}));
    let mut user = User::new();
    user.does(&rules, vote(1, 0, &[]));
    let json = serde_json::to_string(&user.ledger).expect("serialise");
    assert_eq!(json, r#"{"unlocked":{"r":1}}"#);
    let back: UnlockLedger = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(back, user.ledger);
}
