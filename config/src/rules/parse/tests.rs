//! Unit tests of reading a rule document: what parses, and every refusal named by its JSON
//! path.

use serde_json::{json, Value};

use super::*;

fn tiers() -> Vec<TierId> {
    ["bronze", "silver", "gold"]
        .iter()
        .map(|t| t.parse().expect("tier"))
        .collect()
}

fn rule(when: Value) -> Value {
    json!({"id": "r", "tier": "silver", "title": "A rule", "when": when})
}

fn vote_count(n: u32) -> Value {
    json!({"count": {"activity": "vote_cast", "at_least": n}})
}

fn parse(doc: &Value) -> Result<RuleSet, RuleError> {
    RuleSet::parse(&serde_json::to_vec(doc).expect("json"), &tiers())
}

/// Parses `doc`, expecting a refusal at exactly `path` whose reason contains `reason`.
#[track_caller]
fn refused(doc: Value, path: &str, reason: &str) {
    let err = parse(&doc).expect_err("must be refused");
    assert_eq!(err.path, path, "{err}");
    assert!(
        err.reason.contains(reason),
        "reason of {err:?} lacks {reason:?}"
    );
    assert_eq!(err.to_string(), format!("{path}: {}", err.reason));
}

#[test]
fn a_valid_document_parses_with_defaults() {
    let set = parse(&json!({"rules": [
        {"id": "voted-10", "tier": "silver", "title": "Voted on 10 proposals",
         "repeat": "once", "when": vote_count(10)},
        {"id": "gold", "tier": "gold", "title": "Gold voter",
         "when": {"held_while": {"tier": "gold", "activity": "vote_cast"}}},
        {"id": "every-5", "tier": "bronze", "title": "Five more",
         "repeat": {"every": 5}, "when": {"streak": {"at_least": 5}}},
    ]}))
    .expect("valid");
    assert_eq!(set.rules.len(), 3);
    assert_eq!(set.rules[0].repeat, Repeat::Once);
    assert_eq!(
        set.rules[1].when,
        Condition::HeldWhile {
            tier: "gold".parse().expect("tier"),
            activity: ActivityKind::VoteCast,
            at_least: 1
        }
    );
    assert_eq!(set.rules[2].repeat, Repeat::Every(5));
}

#[test]
fn module_doc_example_parses() {
    let doc = include_str!("../mod.rs")
        .split("```json")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the module docs hold an example")
        .lines()
        .map(|l| l.trim_start().trim_start_matches("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let set = RuleSet::parse(doc.as_bytes(), &tiers()).expect("the documented example");
    assert_eq!(set.rules.len(), 4);
}

#[test]
fn unknown_field_is_named() {
    refused(
        json!({"rules": [rule(json!({"count": {"activity": "vote_cast", "at_least": 1, "since": "x"}}))]}),
        "rules[0].when.count.since",
        "unknown field; expected one of `activity`, `at_least`, `within`",
    );
    refused(
        json!({"rules": [], "version": 2}),
        "version",
        "unknown field",
    );
    refused(
        json!({"rules": [rule(json!({"votes": {}}))]}),
        "rules[0].when.votes",
        "unknown field; expected one of `count`, `streak`",
    );
}

#[test]
fn missing_field_is_named() {
    refused(
        json!({"rules": [{"id": "r", "tier": "silver", "when": vote_count(1)}]}),
        "rules[0].title",
        "required field is missing",
    );
    refused(
        json!({"rules": [rule(json!({"count": {"activity": "vote_cast"}}))]}),
        "rules[0].when.count.at_least",
        "required field is missing",
    );
    refused(json!({}), "rules", "required field is missing");
}

#[test]
fn wrong_type_is_named() {
    refused(
        json!({"rules": [rule(json!({"count": {"activity": "vote_cast", "at_least": "10"}}))]}),
        "rules[0].when.count.at_least",
        "invalid type: string \"10\", expected u32",
    );
    refused(
        json!({"rules": [rule(json!({"count": {"activity": "vote", "at_least": 1}}))]}),
        "rules[0].when.count.activity",
        "unknown variant `vote`",
    );
    refused(
        json!({"rules": [rule(json!({"count": null}))]}),
        "rules[0].when.count",
        "invalid type: null",
    );
    refused(
        json!({"rules": [rule(json!({"count": {"activity": "vote_cast", "at_least": -1}}))]}),
        "rules[0].when.count.at_least",
        "invalid value: integer `-1`, expected u32",
    );
    refused(
        json!({"rules": {}}),
        "rules",
        "invalid type: map, expected a sequence",
    );
    let mut r = rule(vote_count(1));
    r["repeat"] = json!("twice");
    refused(
        json!({"rules": [r]}),
        "rules[0].repeat",
        "unknown variant `twice`",
    );
}

#[test]
fn zero_thresholds_are_refused() {
    let nested = json!({"all_of": [vote_count(1), {"any_of": [vote_count(2), vote_count(0)]}]});
    refused(
        json!({"rules": [rule(vote_count(1)), rule(nested)]}),
        // The duplicate id would be found first, so give the second rule its own id.
        "rules[1].id",
        "duplicate rule id \"r\": rules[0] already uses it",
    );
    let mut second =
        rule(json!({"all_of": [vote_count(1), {"any_of": [vote_count(2), vote_count(0)]}]}));
    second["id"] = json!("r2");
    refused(
        json!({"rules": [rule(vote_count(1)), second]}),
        "rules[1].when.all_of[1].any_of[1].count.at_least",
        "must be at least 1",
    );
    refused(
        json!({"rules": [rule(json!({"streak": {"at_least": 0}}))]}),
        "rules[0].when.streak.at_least",
        "must be at least 1",
    );
    refused(
        json!({"rules": [rule(json!({"held_while": {"tier": "gold", "activity": "vote_cast", "at_least": 0}}))]}),
        "rules[0].when.held_while.at_least",
        "must be at least 1",
    );
    let mut r = rule(vote_count(1));
    r["repeat"] = json!({"every": 0});
    refused(
        json!({"rules": [r]}),
        "rules[0].repeat.every",
        "must be at least 1",
    );
}

#[test]
fn empty_lists_and_ambiguous_conditions_are_refused() {
    refused(
        json!({"rules": [rule(json!({"all_of": []}))]}),
        "rules[0].when.all_of",
        "must list at least one condition",
    );
    refused(
        json!({"rules": [rule(json!({"any_of": [{"any_of": []}]}))]}),
        "rules[0].when.any_of[0].any_of",
        "must list at least one condition",
    );
    refused(
        json!({"rules": [rule(json!({}))]}),
        "rules[0].when",
        "exactly one of count, streak, held_while, all_of, any_of; found none",
    );
    refused(
        json!({"rules": [rule(json!({"count": {"activity": "vote_cast", "at_least": 1}, "streak": {"at_least": 2}}))]}),
        "rules[0].when",
        "found count and streak",
    );
}

fn nested(depth: usize) -> Value {
    (1..depth).fold(vote_count(1), |inner, _| json!({"all_of": [inner]}))
}

#[test]
fn nesting_is_bounded() {
    assert!(parse(&json!({"rules": [rule(nested(MAX_DEPTH))]})).is_ok());
    let path = format!("rules[0].when{}", ".all_of[0]".repeat(MAX_DEPTH));
    refused(
        json!({"rules": [rule(nested(MAX_DEPTH + 1))]}),
        &path,
        "conditions nest at most 8 levels deep; this one is at level 9",
    );
    // Far deeper than serde_json's own recursion limit: still a located refusal.
    let err = parse(&json!({"rules": [rule(nested(200))]})).expect_err("too deep");
    assert!(err.path.starts_with("rules[0].when.all_of[0]"), "{err}");
    assert!(err.reason.contains("nest"), "{err}");
}

#[test]
fn condition_count_is_bounded() {
    let wide: Vec<Value> = (0..MAX_NODES - 1).map(|_| vote_count(1)).collect();
    assert!(parse(&json!({"rules": [rule(json!({"any_of": wide}))]})).is_ok());
    let wider: Vec<Value> = (0..MAX_NODES).map(|_| vote_count(1)).collect();
    refused(
        json!({"rules": [rule(json!({"any_of": wider}))]}),
        &format!("rules[0].when.any_of[{}]", MAX_NODES - 1),
        "a rule has at most 64 conditions; this is condition 65",
    );
}

#[test]
fn duplicate_rule_ids_are_refused() {
    let mut other = rule(vote_count(2));
    other["id"] = json!("other");
    refused(
        json!({"rules": [rule(vote_count(1)), other, rule(vote_count(3))]}),
        "rules[2].id",
        "duplicate rule id \"r\": rules[0] already uses it",
    );
}

#[test]
fn unknown_tiers_are_refused() {
    let mut r = rule(vote_count(1));
    r["tier"] = json!("platinum");
    refused(
        json!({"rules": [r]}),
        "rules[0].tier",
        "unknown tier \"platinum\": the config defines bronze, silver, gold",
    );
    refused(
        json!({"rules": [rule(json!({"any_of": [vote_count(1), {"held_while": {"tier": "diamond", "activity": "vote_cast"}}]}))]}),
        "rules[0].when.any_of[1].held_while.tier",
        "unknown tier \"diamond\"",
    );
    let err = RuleSet::parse(
        &serde_json::to_vec(&json!({"rules": [rule(vote_count(1))]})).expect("json"),
        &[],
    )
    .expect_err("no tiers");
    assert_eq!(
        err.reason,
        "unknown tier \"silver\": the config defines no tiers"
    );
}

#[test]
fn bad_durations_are_refused() {
    let windowed = |w: &str| json!({"rules": [rule(json!({"count": {"activity": "vote_cast", "at_least": 1, "within": w}}))]});
    refused(
        windowed("30x"),
        "rules[0].when.count.within",
        "\"30x\" is not a duration",
    );
    refused(
        windowed("1.5h"),
        "rules[0].when.count.within",
        "is not a duration",
    );
    refused(windowed("0d"), "rules[0].when.count.within", "out of range");
    refused(
        windowed("400d"),
        "rules[0].when.count.within",
        "out of range",
    );
    refused(
        json!({"rules": [rule(json!({"count": {"activity": "vote_cast", "at_least": 1, "within": 30}}))]}),
        "rules[0].when.count.within",
        "invalid type: integer `30`, expected a string",
    );
}

#[test]
fn bad_ids_and_titles_are_refused() {
    let mut r = rule(vote_count(1));
    r["id"] = json!("has space");
    refused(
        json!({"rules": [r]}),
        "rules[0].id",
        "is not a valid rule id",
    );
    let mut r = rule(vote_count(1));
    r["id"] = json!("x".repeat(65));
    refused(
        json!({"rules": [r]}),
        "rules[0].id",
        "expected 1-64 characters",
    );
    let mut r = rule(vote_count(1));
    r["tier"] = json!("");
    refused(
        json!({"rules": [r]}),
        "rules[0].tier",
        "is not a valid tier id",
    );
    let mut r = rule(vote_count(1));
    r["title"] = json!("  ");
    refused(
        json!({"rules": [r]}),
        "rules[0].title",
        "expected 1-200 characters",
    );
    let mut r = rule(vote_count(1));
    r["title"] = json!("é".repeat(201));
    refused(
        json!({"rules": [r]}),
        "rules[0].title",
        "has 201 characters",
    );
    let mut r = rule(vote_count(1));
    r["title"] = json!("é".repeat(200));
    assert!(
        parse(&json!({"rules": [r]})).is_ok(),
        "200 characters, 400 bytes"
    );
    let mut r = rule(vote_count(1));
    r["title"] = json!("a\u{7}b");
    refused(
        json!({"rules": [r]}),
        "rules[0].title",
        "control characters",
    );
}

#[test]
fn set_size_and_document_shape_are_bounded() {
    let many: Vec<Value> = (0..=MAX_RULES)
        .map(|i| {
            let mut r = rule(vote_count(1));
            r["id"] = json!(format!("r{i}"));
            r
        })
        .collect();
    refused(
        json!({"rules": many}),
        "rules",
        "501 rules: a set holds at most 500",
    );
    let err = RuleSet::parse(b"{\"rules\": []} []", &tiers()).expect_err("trailing");
    assert_eq!(err.path, "$");
    assert!(err.reason.contains("trailing"), "{err}");
    let err = RuleSet::parse(b"{\"rules\": [", &tiers()).expect_err("truncated");
    assert!(err.reason.contains("EOF"), "{err}");
    let huge = vec![b' '; MAX_DOCUMENT_BYTES + 1];
    let err = RuleSet::parse(&huge, &tiers()).expect_err("huge");
    assert_eq!(err.path, "$");
    assert!(parse(&json!({"rules": []}))
        .expect("empty set")
        .rules
        .is_empty());
}

#[test]
fn repeat_every_needs_one_monotone_quantity() {
    let repeating = |when: Value, every: u32| {
        let mut r = rule(when);
        r["repeat"] = json!({"every": every});
        json!({"rules": [r]})
    };
    refused(
        repeating(json!({"all_of": [vote_count(1)]}), 5),
        "rules[0].repeat.every",
        "not all_of/any_of",
    );
    refused(
        repeating(
            json!({"count": {"activity": "vote_cast", "at_least": 5, "within": "7d"}}),
            5,
        ),
        "rules[0].repeat.every",
        "a windowed count rises and falls",
    );
    refused(
        repeating(vote_count(10), 5),
        "rules[0].repeat.every",
        "every 5 is below the condition's at_least (10)",
    );
    assert!(parse(&repeating(vote_count(3), 5)).is_ok());
}

#[test]
fn windowed_counts_are_capped_at_the_kept_history() {
    let windowed = |n: usize| json!({"rules": [rule(json!({"count": {"activity": "vote_cast", "at_least": n, "within": "30d"}}))]});
    assert!(parse(&windowed(MAX_RECENT_PER_KIND)).is_ok());
    refused(
        windowed(MAX_RECENT_PER_KIND + 1),
        "rules[0].when.count.at_least",
        "too many for a windowed count",
    );
}

#[test]
fn a_parsed_set_round_trips_through_its_canonical_json() {
    let set = parse(&json!({"rules": [
        rule(json!({"all_of": [
            {"count": {"activity": "proposal_passed", "at_least": 3, "within": "14d"}},
            {"any_of": [{"streak": {"at_least": 5}},
                        {"held_while": {"tier": "gold", "activity": "vote_cast"}}]}]}))
    ]}))
    .expect("valid");
    let json = set.to_json();
    let text = String::from_utf8(json.clone()).expect("utf-8");
    assert!(text.contains("\"within\":\"2w\""), "{text}");
    assert!(text.contains("\"repeat\":\"once\""), "{text}");
    assert_eq!(RuleSet::parse(&json, &tiers()).expect("reparse"), set);
}
