//! Unit tests of the dynamic configuration: parsing, refusals named by path, and the vote
//! boost.

use super::*;

const DOC: &str = r#"{
        "tiers": { "bronze": { "title": "Bronze", "bonus_bps": 1000 },
                   "gold": { "title": "Gold", "bonus_bps": 5000 } },
        "limits": { "max_multiplier_bps": 15000, "max_boosting_nfts": 2 },
        "rules": [ { "id": "first", "tier": "bronze", "title": "First",
                     "when": { "count": { "activity": "proposal_created", "at_least": 1 } } } ]
    }"#;

#[test]
fn the_builtin_document_is_valid() {
    let c = DynamicConfig::builtin();
    assert_eq!(c.version, 0);
    assert!(c.rules.rules.len() >= 3);
}

#[test]
fn a_document_parses_and_round_trips() {
    let c = DynamicConfig::parse(DOC.as_bytes(), 3).expect("valid");
    assert_eq!(c.version, 3);
    assert_eq!(c.rules.rules.len(), 1);
    let again = serde_json::to_vec(&c.to_document()).expect("json");
    assert_eq!(DynamicConfig::parse(&again, 3).expect("round trip"), c);
}

#[test]
fn bad_documents_name_the_path() {
    let unknown_tier = DOC.replace(r#""tier": "bronze""#, r#""tier": "platinum""#);
    let e = DynamicConfig::parse(unknown_tier.as_bytes(), 1).expect_err("unknown tier");
    assert!(e.path.starts_with("rules[0]"), "{e}");
    let e = DynamicConfig::parse(
        br#"{"limits":{"max_multiplier_bps":5,"max_boosting_nfts":1}}"#,
        1,
    )
    .expect_err("limit");
    assert_eq!(e.path, "limits.max_multiplier_bps");
    let e = DynamicConfig::parse(br#"{"tierz":{}}"#, 1).expect_err("unknown field");
    assert_eq!(e.path, "tierz", "{e}");
    assert!(e.reason.contains("unknown field"), "{e}");
}

#[test]
fn a_refusal_from_serde_keeps_its_error_as_the_source() {
    use std::error::Error as _;
    for doc in [&br#"{"tierz":{}}"#[..], br#"{"tiers": 5}"#, b"{} x", b"{"] {
        let e = DynamicConfig::parse(doc, 1).expect_err("refused");
        let source = e.source().expect("kept");
        assert!(source.downcast_ref::<serde_json::Error>().is_some(), "{e}");
    }
    // A refusal of its own (no underlying error) has none, and equality ignores it.
    let e = DynamicConfig::parse(br#"{"tierz":{}}"#, 1).expect_err("refused");
    assert_eq!(e, RuleError::new(e.path.clone(), e.reason.clone()));
    let own = DynamicConfig::parse(
        br#"{"limits":{"max_multiplier_bps":5,"max_boosting_nfts":1}}"#,
        1,
    )
    .expect_err("limit");
    assert!(own.source().is_none(), "{own}");
}

#[test]
fn a_document_or_part_written_as_an_array_is_refused() {
    // serde alone reads `[]` as a document of defaults (schemathesis found the API
    // storing one); every struct of the document is an object, at every depth.
    for (doc, path) in [
        ("[]", "$"),
        (
            r#"[{}, {"max_multiplier_bps": 10000, "max_boosting_nfts": 1}]"#,
            "$",
        ),
        (r#"{"limits": [15000, 2]}"#, "limits"),
        (r#"{"tiers": {"gold": ["Gold", 5000]}}"#, "tiers.gold"),
    ] {
        let e = DynamicConfig::parse(doc.as_bytes(), 1).expect_err(doc);
        assert_eq!(e.path, path, "{doc}: {e}");
        assert!(e.reason.contains("expected struct"), "{doc}: {e}");
    }
    let rule = DOC.replace(
        r#"{ "count": { "activity": "proposal_created", "at_least": 1 } }"#,
        r#"{ "count": ["proposal_created", 1] }"#,
    );
    let e = DynamicConfig::parse(rule.as_bytes(), 1).expect_err("condition as an array");
    assert!(e.path.starts_with("rules[0].when.count"), "{e}");
}

#[test]
fn boost_takes_highest_bonuses_up_to_the_limits() {
    let c = DynamicConfig::parse(DOC.as_bytes(), 1).expect("valid");
    let gold: TierId = "gold".parse().expect("tier");
    let bronze: TierId = "bronze".parse().expect("tier");
    let none: TierId = "none".parse().expect("tier");
    let tokens = ["1".to_string(), "2".into(), "3".into(), "4".into()];
    let held = [
        (&tokens[0], &bronze),
        (&tokens[1], &gold),
        (&tokens[2], &none),
        (&tokens[3], &gold),
    ];
    let (boosts, multiplier) = c.boost(held);
    let ids: Vec<_> = boosts.iter().map(|b| b.0.as_str()).collect();
    assert_eq!(
        ids,
        ["2"],
        "one gold reaches the x1.5 cap; the rest would add nothing"
    );
    assert_eq!(multiplier, 15_000, "capped at max_multiplier_bps");
    let roomy = DynamicConfig {
        limits: Limits {
            max_multiplier_bps: 30_000,
            max_boosting_nfts: 2,
            ..Limits::default()
        },
        ..c.clone()
    };
    let (boosts, multiplier) = roomy.boost(held);
    let ids: Vec<_> = boosts.iter().map(|b| b.0.as_str()).collect();
    assert_eq!(
        ids,
        ["2", "4"],
        "two golds beat the bronze; at most two boost"
    );
    assert_eq!(multiplier, 20_000);
}
