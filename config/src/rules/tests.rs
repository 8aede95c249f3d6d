//! Property tests across the module: evaluation invariants over random activity
//! sequences, and decoder round trips.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use merit_messages::{RuleId, TierId};
use proptest::prelude::*;

use super::*;

fn tiers() -> Vec<TierId> {
    ["bronze", "silver", "gold"]
        .iter()
        .map(|t| t.parse().expect("tier"))
        .collect()
}

fn base() -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000, 0).single().expect("valid")
}

/// Rules whose conditions never turn false once true (no windows).
const MONOTONE_ONCE: &str = r#"{"rules": [
  {"id": "votes-3", "tier": "bronze", "title": "t",
   "when": {"count": {"activity": "vote_cast", "at_least": 3}}},
  {"id": "created-1", "tier": "bronze", "title": "t",
   "when": {"count": {"activity": "proposal_created", "at_least": 1}}},
  {"id": "passed-2", "tier": "silver", "title": "t",
   "when": {"count": {"activity": "proposal_passed", "at_least": 2}}},
  {"id": "streak-3", "tier": "silver", "title": "t", "when": {"streak": {"at_least": 3}}},
  {"id": "gold-2", "tier": "gold", "title": "t",
   "when": {"held_while": {"tier": "gold", "activity": "vote_cast", "at_least": 2}}},
  {"id": "combo", "tier": "gold", "title": "t", "when": {"all_of": [
     {"any_of": [{"streak": {"at_least": 4}},
                 {"held_while": {"tier": "silver", "activity": "proposal_created"}}]},
     {"count": {"activity": "vote_cast", "at_least": 2}}]}}
]}"#;

/// Windowed rules: may turn true, false and true again.
const WINDOWED_ONCE: &str = r#"{"rules": [
  {"id": "burst", "tier": "bronze", "title": "t",
   "when": {"count": {"activity": "vote_cast", "at_least": 3, "within": "1h"}}},
  {"id": "burst-or-streak", "tier": "bronze", "title": "t", "when": {"any_of": [
     {"count": {"activity": "proposal_created", "at_least": 2, "within": "90m"}},
     {"streak": {"at_least": 6}}]}}
]}"#;

/// Repeating rules: (id, n) pairs are checked against `floor(q / n)`.
const REPEATING: &str = r#"{"rules": [
  {"id": "every-3-votes", "tier": "bronze", "title": "t", "repeat": {"every": 3},
   "when": {"count": {"activity": "vote_cast", "at_least": 2}}},
  {"id": "every-2-streak", "tier": "silver", "title": "t", "repeat": {"every": 2},
   "when": {"streak": {"at_least": 2}}},
  {"id": "every-2-gold", "tier": "gold", "title": "t", "repeat": {"every": 2},
   "when": {"held_while": {"tier": "gold", "activity": "vote_cast"}}}
]}"#;

fn rules(doc: &str) -> RuleSet {
    RuleSet::parse(doc.as_bytes(), &tiers()).expect("test rules are valid")
}

fn arb_activity() -> impl Strategy<Value = (Activity, i64)> {
    (
        prop::sample::select(ActivityKind::ALL.to_vec()),
        // Mostly forward in time, sometimes a late (out-of-order) arrival.
        prop_oneof![4 => 0i64..40, 1 => -120i64..0],
        prop::option::of(0u64..24),
        prop::sample::subsequence(vec!["gold", "silver", "bronze"], 0..=3),
    )
        .prop_map(|(kind, step, seq, held)| {
            let activity = Activity {
                kind,
                at: base(), // set from the running clock below
                proposal_seq: seq,
                tiers_held: held.iter().map(|t| t.parse().expect("tier")).collect(),
            };
            (activity, step)
        })
}

/// A sequence of activities with times: a running clock plus each step.
fn arb_history() -> impl Strategy<Value = Vec<Activity>> {
    prop::collection::vec(arb_activity(), 0..120).prop_map(|steps| {
        let mut clock = 0i64;
        steps
            .into_iter()
            .map(|(mut a, step)| {
                clock += step.max(0);
                a.at = base() + TimeDelta::minutes(clock + step.min(0));
                a
            })
            .collect()
    })
}

/// Occurrences unlocked per rule.
type Tally = BTreeMap<RuleId, Vec<u32>>;

fn tally(unlocks: &[Unlock]) -> Tally {
    let mut out = Tally::new();
    for u in unlocks {
        out.entry(u.rule.clone()).or_default().push(u.occurrence);
    }
    out
}

/// Records each activity, evaluating after each one twice; checks the second finds nothing.
fn incremental(
    set: &RuleSet,
    history: &[Activity],
) -> Result<(RuleFacts, Vec<Unlock>), TestCaseError> {
    let mut facts = RuleFacts::default();
    let mut ledger = UnlockLedger::default();
    let mut all = vec![];
    for a in history {
        let now = a.at;
        facts.record(a.clone());
        all.extend(evaluate(set, 1, &facts, &mut ledger, now));
        let again = evaluate(set, 1, &facts, &mut ledger, now);
        prop_assert!(again.is_empty(), "second evaluation unlocked {again:?}");
    }
    Ok((facts, all))
}

fn at_end(set: &RuleSet, history: &[Activity]) -> (RuleFacts, Vec<Unlock>, DateTime<Utc>) {
    let mut facts = RuleFacts::default();
    for a in history {
        facts.record(a.clone());
    }
    let now = history.iter().map(|a| a.at).max().unwrap_or_else(base);
    let mut ledger = UnlockLedger::default();
    let unlocks = evaluate(set, 1, &facts, &mut ledger, now);
    (facts, unlocks, now)
}

proptest! {
    #[test]
    fn once_rules_unlock_the_same_whenever_they_are_evaluated(history in arb_history()) {
        let set = rules(MONOTONE_ONCE);
        let (_, step_by_step) = incremental(&set, &history)?;
        let (facts, once, now) = at_end(&set, &history);
        prop_assert_eq!(tally(&step_by_step), tally(&once));
        for rule in &set.rules {
            let unlocked = tally(&once).contains_key(&rule.id);
            prop_assert_eq!(unlocked, would_unlock(rule, &facts, now));
        }
    }

    #[test]
    fn windowed_once_rules_unlock_at_most_once(history in arb_history()) {
        let set = rules(WINDOWED_ONCE);
        let (_, step_by_step) = incremental(&set, &history)?;
        let (_, once, _) = at_end(&set, &history);
        let (step, end) = (tally(&step_by_step), tally(&once));
        for occurrences in step.values().chain(end.values()) {
            prop_assert_eq!(occurrences, &vec![1]);
        }
        // Whatever holds at the end held at the last step's evaluation or earlier.
        for id in end.keys() {
            prop_assert!(step.contains_key(id), "{id} unlocked at the end only");
        }
    }

    #[test]
    fn repeating_rules_unlock_floor_q_over_n_times_in_order(history in arb_history()) {
        let set = rules(REPEATING);
        let (facts, step_by_step) = incremental(&set, &history)?;
        let (_, once, _) = at_end(&set, &history);
        let gold: TierId = "gold".parse().expect("tier");
        let expected = |id: &str| -> u64 {
            match id {
                "every-3-votes" => facts.count(ActivityKind::VoteCast) / 3,
                "every-2-streak" => facts.longest_streak() / 2,
                _ => facts.count_while_holding(&gold, ActivityKind::VoteCast) / 2,
            }
        };
        for (label, got) in [("step by step", tally(&step_by_step)), ("at the end", tally(&once))] {
            for rule in &set.rules {
                let occurrences = got.get(&rule.id).cloned().unwrap_or_default();
                let want: Vec<u32> = (1..=expected(rule.id.as_str()) as u32).collect();
                prop_assert_eq!(&occurrences, &want, "{} {}", label, rule.id);
            }
        }
    }

    #[test]
    fn facts_survive_a_json_round_trip(history in arb_history()) {
        let (facts, _, _) = at_end(&RuleSet::default(), &history);
        let json = serde_json::to_vec(&facts).expect("serialise");
        let back: RuleFacts = serde_json::from_slice(&json).expect("deserialise");
        prop_assert_eq!(back, facts);
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = RuleSet::parse(&bytes, &tiers());
    }

    #[test]
    fn parse_never_panics_on_mangled_documents(
        cut in 0usize..2000,
        insert in prop::sample::select(vec!["", "{", "}", "[", "]", ",", "0", "\"x\"", "null", "-1"]),
    ) {
        let doc = MONOTONE_ONCE;
        let cut = (0..=cut.min(doc.len())).rev().find(|&i| doc.is_char_boundary(i)).unwrap_or(0);
        let mangled = format!("{}{insert}{}", &doc[..cut], &doc[cut..]);
        if let Err(e) = RuleSet::parse(mangled.as_bytes(), &tiers()) {
            prop_assert!(!e.reason.is_empty());
        }
    }

    #[test]
    fn valid_rule_sets_round_trip_through_json(set in arb_rule_set()) {
        prop_assert!(set.validate(&tiers()).is_ok(), "{:?}", set.validate(&tiers()));
        let json = set.to_json();
        let back = RuleSet::parse(&json, &tiers());
        prop_assert_eq!(back, Ok(set));
    }

    #[test]
    fn windows_round_trip_through_their_text(minutes in 1u32..=MAX_WINDOW_MINUTES) {
        let w = Window::from_minutes(minutes).expect("in range");
        prop_assert_eq!(w.to_string().parse::<Window>(), Ok(w));
    }
}

fn arb_leaf() -> impl Strategy<Value = Condition> {
    let kind = prop::sample::select(ActivityKind::ALL.to_vec());
    let tier = prop::sample::select(tiers());
    prop_oneof![
        (
            kind.clone(),
            1u32..100,
            prop::option::of(
                (1u32..=MAX_WINDOW_MINUTES)
                    .prop_map(|m| Window::from_minutes(m).expect("in range"))
            )
        )
            .prop_map(|(activity, at_least, within)| Condition::Count {
                activity,
                at_least,
                within
            }),
        (1u32..100).prop_map(|at_least| Condition::Streak { at_least }),
        (tier, kind, 1u32..100).prop_map(|(tier, activity, at_least)| Condition::HeldWhile {
            tier,
            activity,
            at_least
        }),
    ]
}

fn arb_condition() -> impl Strategy<Value = Condition> {
    // Depth <= 4 and at most 4 children keep every tree within MAX_DEPTH and MAX_NODES.
    arb_leaf().prop_recursive(3, 40, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(Condition::AllOf),
            prop::collection::vec(inner, 1..4).prop_map(Condition::AnyOf),
        ]
    })
}

fn arb_rule_set() -> impl Strategy<Value = RuleSet> {
    prop::collection::vec(
        (
            prop::sample::select(tiers()),
            "[A-Za-z][A-Za-z0-9 ]{0,30}",
            arb_condition(),
            prop::option::of(1u32..200),
        ),
        0..6,
    )
    .prop_map(|rules| RuleSet {
        rules: rules
            .into_iter()
            .enumerate()
            .map(|(i, (tier, title, when, every))| {
                let repeat = match (&when, every) {
                    (
                        Condition::Streak { at_least }
                        | Condition::HeldWhile { at_least, .. }
                        | Condition::Count {
                            at_least,
                            within: None,
                            ..
                        },
                        Some(n),
                    ) => Repeat::Every(n.max(*at_least)),
                    _ => Repeat::Once,
                };
                Rule {
                    id: format!("rule-{i}").parse().expect("id"),
                    tier,
                    title,
                    repeat,
                    when,
                }
            })
            .collect(),
    })
}
