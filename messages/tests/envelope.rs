//! Envelope decoding: round trips (property tests) and one test per bad-input class.

use chrono::{DateTime, TimeZone, Utc};
use merit_messages::*;
use proptest::prelude::*;
use serde_json::{json, Value};
use uuid::Uuid;

const ALICE: &str = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed";

fn vote_json() -> Value {
    json!({
        "id": "6f1c2b1e-8a4f-4c7e-9f0a-2b3c4d5e6f70",
        "type": "governance.vote.cast",
        "version": 1,
        "source": "test",
        "occurred_at": "2026-11-24T10:00:00Z",
        "payload": {"proposal": "p-1", "voter": ALICE, "choice": "for"}
    })
}

fn decode(v: &Value) -> Result<Envelope> {
    Envelope::decode(&serde_json::to_vec(v).expect("json"))
}

fn err_of(v: &Value) -> DecodeError {
    decode(v).expect_err("must be refused")
}

#[test]
fn minimal_vote_decodes_with_derived_keys_and_correlation() {
    let env = decode(&vote_json()).expect("valid");
    assert_eq!(env.event_type(), EventType::VoteCast);
    assert_eq!(env.keys.user.map(|a| a.to_string()).as_deref(), Some(ALICE));
    assert_eq!(env.keys.proposal.as_ref().map(|p| p.as_str()), Some("p-1"));
    assert_eq!(env.correlation_id, env.id.0);
}

#[test]
fn checksummed_address_is_normalised_to_lowercase() {
    let mut v = vote_json();
    v["payload"]["voter"] = json!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
    let env = decode(&v).expect("valid EIP-55");
    let Event::VoteCast(vote) = &env.event else {
        panic!("wrong event")
    };
    assert_eq!(vote.voter.to_string(), ALICE);
}

#[test]
fn bad_json_is_malformed() {
    let e = Envelope::decode(b"{\"id\": ").expect_err("truncated");
    assert_eq!(e.kind, DecodeErrorKind::Malformed);
    let e = Envelope::decode(b"[1,2,3]").expect_err("array");
    assert_ne!(e.kind, DecodeErrorKind::UnknownType);
}

#[test]
fn a_payload_field_of_the_wrong_type_is_an_invalid_field_at_its_path() {
    // The payload is read straight from the text; a value of the wrong type must still be
    // reported as the field's error, not as malformed JSON.
    for choice in [json!(42), json!(["for"]), json!({"for": true}), json!(null)] {
        let mut v = vote_json();
        v["payload"]["choice"] = choice.clone();
        let e = err_of(&v);
        assert_eq!(e.kind, DecodeErrorKind::InvalidField, "{choice}: {e}");
        assert!(e.field.starts_with("payload.choice"), "{choice}: {e}");
    }
}

#[test]
fn oversized_is_refused_before_parsing() {
    let big = vec![b' '; MAX_ENVELOPE_BYTES + 1];
    let e = Envelope::decode(&big).expect_err("too big");
    assert_eq!(e.kind, DecodeErrorKind::Oversized);
}

#[test]
fn unknown_type_names_the_type_field() {
    let mut v = vote_json();
    v["type"] = json!("governance.vote.exploded");
    let e = err_of(&v);
    assert_eq!(e.kind, DecodeErrorKind::UnknownType);
    assert_eq!(e.field, "type");
    assert!(e.reason.contains("governance.vote.exploded"), "{e}");
}

#[test]
fn unknown_version_names_the_version_field() {
    let mut v = vote_json();
    v["version"] = json!(7);
    let e = err_of(&v);
    assert_eq!(e.kind, DecodeErrorKind::UnknownVersion);
    assert_eq!(e.field, "version");
}

#[test]
fn missing_field_is_named_with_its_path() {
    let mut v = vote_json();
    v["payload"]
        .as_object_mut()
        .expect("object")
        .remove("voter");
    let e = err_of(&v);
    assert_eq!(e.kind, DecodeErrorKind::MissingField);
    assert_eq!(e.field, "payload.voter");

    let mut v = vote_json();
    v.as_object_mut().expect("object").remove("id");
    let e = err_of(&v);
    assert_eq!(e.kind, DecodeErrorKind::MissingField);
    assert_eq!(e.field, "id");
}

#[test]
fn wrong_types_and_bad_values_name_the_field() {
    let mut v = vote_json();
    v["payload"]["voter"] = json!("0x1234");
    let e = err_of(&v);
    assert_eq!(e.kind, DecodeErrorKind::InvalidField);
    assert_eq!(e.field, "payload.voter");
    assert!(e.reason.contains("40 hex digits"), "{e}");

    let mut v = vote_json();
    v["payload"]["choice"] = json!("maybe");
    assert_eq!(err_of(&v).field, "payload.choice");

    let mut v = vote_json();
    v["version"] = json!("one");
    let e = err_of(&v);
    assert_eq!(e.kind, DecodeErrorKind::InvalidField);
    assert_eq!(e.field, "version");

    let mut v = vote_json();
    v["occurred_at"] = json!("yesterday");
    assert_eq!(err_of(&v).field, "occurred_at");

    let mut v = vote_json();
    v["payload"]["reason"] = json!("x".repeat(1001));
    let e = err_of(&v);
    assert_eq!(e.field, "payload.reason");
    assert!(e.reason.contains("1001 characters"), "{e}");
}

#[test]
fn bad_checksum_is_refused() {
    let mut v = vote_json();
    v["payload"]["voter"] = json!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD");
    let e = err_of(&v);
    assert_eq!(e.field, "payload.voter");
    assert!(e.reason.contains("EIP-55"), "{e}");
}

#[test]
fn unknown_fields_are_refused() {
    let mut v = vote_json();
    v["payload"]["weight"] = json!(1000);
    let e = err_of(&v);
    assert_eq!(e.kind, DecodeErrorKind::InvalidField);
    assert_eq!(e.field, "payload.weight");
}

#[test]
fn keys_that_disagree_with_the_payload_are_refused() {
    let mut v = vote_json();
    v["keys"] = json!({"user": "0x0000000000000000000000000000000000000001", "proposal": "p-1"});
    let e = err_of(&v);
    assert_eq!(e.kind, DecodeErrorKind::KeyMismatch);
    assert_eq!(e.field, "keys");

    let mut v = vote_json();
    v["keys"] = json!({"user": ALICE, "proposal": "p-1"});
    assert!(decode(&v).is_ok());
}

#[test]
fn cross_field_rules_are_checked() {
    let v = json!({
        "id": Uuid::new_v4(), "type": "governance.proposal.created", "version": 1,
        "source": "test", "occurred_at": "2026-11-24T10:00:00Z",
        "payload": {"proposal": "p-2", "creator": ALICE, "title": "t",
                    "starts_at": "2026-11-25T10:00:00Z", "ends_at": "2026-11-24T10:00:00Z", "quorum": 1}
    });
    let e = err_of(&v);
    assert_eq!(e.field, "payload.ends_at");
    let mut v2 = v.clone();
    v2["payload"]["ends_at"] = json!("2026-11-26T10:00:00Z");
    v2["payload"]["threshold_bps"] = json!(10_001);
    assert_eq!(err_of(&v2).field, "payload.threshold_bps");
}

#[test]
fn token_ids_must_be_decimal_strings_within_uint256() {
    let v = json!({
        "id": Uuid::new_v4(), "type": "nft.burned", "version": 1, "source": "chain:1",
        "occurred_at": "2026-11-24T10:00:00Z",
        "payload": {"token": 5, "from": ALICE, "chain": {
            "chain_id": 1, "block_number": 1, "log_index": 0,
            "block_hash": format!("0x{}", "11".repeat(32)), "tx_hash": format!("0x{}", "22".repeat(32))}}
    });
    let e = err_of(&v);
    assert_eq!(e.field, "payload.token");
    let mut ok = v.clone();
    ok["payload"]["token"] = json!("5");
    assert!(decode(&ok).is_ok());
}

#[test]
fn a_schema_exists_for_every_event_type_and_names_the_type() {
    let schemas = all_schemas();
    assert_eq!(schemas.len(), EventType::ALL.len());
    for (name, schema) in &schemas {
        let t = name.trim_end_matches(".v1.json");
        assert_eq!(schema["properties"]["type"]["const"], json!(t));
        assert!(schema["required"]
            .as_array()
            .expect("required")
            .contains(&json!("payload")));
    }
}

// ---- property tests -------------------------------------------------------------------

fn arb_address() -> impl Strategy<Value = Address> {
    any::<[u8; 20]>().prop_map(Address)
}

fn arb_hash() -> impl Strategy<Value = TxHash> {
    any::<[u8; 32]>().prop_map(TxHash)
}

fn arb_time() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..4_000_000_000).prop_map(|s| Utc.timestamp_opt(s, 0).single().expect("in range"))
}

fn arb_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:-]{1,64}"
}

fn arb_token() -> impl Strategy<Value = TokenId> {
    any::<u128>().prop_map(TokenId::from)
}

fn arb_chain() -> impl Strategy<Value = ChainRef> {
    (
        any::<u64>(),
        any::<u64>(),
        arb_hash(),
        arb_hash(),
        any::<u64>(),
    )
        .prop_map(
            |(chain_id, block_number, block_hash, tx_hash, log_index)| ChainRef {
                chain_id,
                block_number,
                block_hash,
                tx_hash,
                log_index,
            },
        )
}

fn arb_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        arb_proposal_created(),
        arb_vote_cast(),
        arb_proposal_closed(),
        arb_achievement_unlocked(),
        arb_achievement_revoked(),
        arb_nft_minted(),
        arb_nft_transferred(),
        arb_nft_burned(),
        arb_benefits_changed(),
        arb_holdings_changed(),
        arb_config_changed(),
    ]
}

fn arb_proposal_created() -> impl Strategy<Value = Event> {
    (
        arb_id(),
        arb_address(),
        "\\PC{1,200}",
        "\\PC{0,300}",
        arb_time(),
        1i64..1_000_000,
        any::<u64>(),
        1u16..=10_000,
    )
        .prop_map(
            |(p, creator, title, description, starts_at, len, quorum, threshold_bps)| {
                Event::from(ProposalCreated {
                    proposal: p.parse().expect("valid id"),
                    creator,
                    title,
                    description,
                    starts_at,
                    ends_at: starts_at + chrono::Duration::seconds(len),
                    quorum,
                    threshold_bps,
                })
            },
        )
}

fn arb_vote_cast() -> impl Strategy<Value = Event> {
    let choice = prop_oneof![
        Just(VoteChoice::For),
        Just(VoteChoice::Against),
        Just(VoteChoice::Abstain)
    ];
    (
        arb_id(),
        arb_address(),
        choice,
        proptest::option::of("\\PC{0,100}"),
    )
        .prop_map(|(p, voter, choice, reason)| {
            Event::from(VoteCast {
                proposal: p.parse().expect("valid id"),
                voter,
                choice,
                reason,
            })
        })
}

fn arb_proposal_closed() -> impl Strategy<Value = Event> {
    (
        arb_id(),
        arb_address(),
        any::<[u64; 4]>(),
        any::<bool>(),
        arb_time(),
    )
        .prop_map(|(p, creator, t, q, closed_at)| {
            Event::from(ProposalClosed {
                proposal: p.parse().expect("valid id"),
                creator,
                outcome: if q {
                    ProposalOutcome::Succeeded
                } else {
                    ProposalOutcome::Defeated
                },
                tally: Tally {
                    for_weight: t[0],
                    against_weight: t[1],
                    abstain_weight: t[2],
                    voters: t[3],
                },
                quorum_reached: q,
                closed_at,
            })
        })
}

fn arb_achievement_unlocked() -> impl Strategy<Value = Event> {
    (
        arb_address(),
        any::<u128>(),
        arb_id(),
        any::<u64>(),
        arb_id(),
        arb_token(),
    )
        .prop_map(|(user, a, rule, rule_version, tier, token)| {
            Event::from(AchievementUnlocked {
                user,
                achievement_id: Uuid::from_u128(a),
                rule: rule.parse().expect("valid id"),
                rule_version,
                tier: tier.parse().expect("valid id"),
                token,
            })
        })
}

fn arb_achievement_revoked() -> impl Strategy<Value = Event> {
    (arb_address(), any::<u128>(), arb_id(), "\\PC{1,100}").prop_map(|(user, a, rule, reason)| {
        Event::from(AchievementRevoked {
            user,
            achievement_id: Uuid::from_u128(a),
            rule: rule.parse().expect("valid id"),
            reason,
        })
    })
}

fn arb_nft_minted() -> impl Strategy<Value = Event> {
    (
        arb_token(),
        arb_address(),
        proptest::option::of(any::<u128>()),
        arb_chain(),
    )
        .prop_map(|(token, to, a, chain)| {
            Event::from(NftMinted {
                token,
                to,
                achievement_id: a.map(Uuid::from_u128),
                tier: None,
                chain,
            })
        })
}

fn arb_nft_transferred() -> impl Strategy<Value = Event> {
    (arb_token(), arb_address(), arb_address(), arb_chain()).prop_map(|(token, from, to, chain)| {
        Event::from(NftTransferred {
            token,
            from,
            to,
            chain,
        })
    })
}

fn arb_nft_burned() -> impl Strategy<Value = Event> {
    (arb_token(), arb_address(), arb_chain())
        .prop_map(|(token, from, chain)| Event::from(NftBurned { token, from, chain }))
}

fn arb_benefits_changed() -> impl Strategy<Value = Event> {
    (
        arb_address(),
        any::<u32>(),
        proptest::collection::vec(arb_token(), 0..5),
        any::<u64>(),
    )
        .prop_map(|(user, multiplier_bps, boosting_nfts, config_version)| {
            Event::from(BenefitsChanged {
                user,
                multiplier_bps,
                boosting_nfts,
                config_version,
            })
        })
}

fn arb_holdings_changed() -> impl Strategy<Value = Event> {
    (
        arb_address(),
        arb_token(),
        any::<bool>(),
        proptest::option::of(arb_id()),
        any::<(u64, u64)>(),
    )
        .prop_map(|(user, token, acquired, tier, position)| {
            Event::from(HoldingsChanged {
                user,
                token,
                change: if acquired {
                    HoldingChange::Acquired
                } else {
                    HoldingChange::Released
                },
                tier: tier.map(|t| t.parse().expect("valid id")),
                position,
            })
        })
}

fn arb_config_changed() -> impl Strategy<Value = Event> {
    (
        any::<u64>(),
        proptest::option::of(any::<u64>()),
        "\\PC{1,100}",
        "\\PC{0,200}",
    )
        .prop_map(|(version, previous, author, reason)| {
            Event::from(ConfigChanged {
                version,
                previous,
                rollback_of: None,
                author,
                reason,
            })
        })
}

fn arb_envelope() -> impl Strategy<Value = Envelope> {
    (
        arb_event(),
        any::<u128>(),
        "[a-z0-9:-]{1,128}",
        arb_time(),
        any::<u128>(),
        proptest::option::of(any::<u128>()),
    )
        .prop_map(|(event, id, source, at, corr, cause)| {
            let mut env = Envelope::with_id(EventId(Uuid::from_u128(id)), source, at, event);
            env.correlation_id = Uuid::from_u128(corr);
            env.causation_id = cause.map(|c| EventId(Uuid::from_u128(c)));
            env
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn envelope_round_trips(env in arb_envelope()) {
        let bytes = env.to_json();
        let back = Envelope::decode(&bytes).expect("what merit encodes, it decodes");
        prop_assert_eq!(&back, &env);
        prop_assert_eq!(back.to_json(), bytes);
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Envelope::decode(&bytes);
    }

    #[test]
    fn decoder_never_panics_on_mutated_envelopes(env in arb_envelope(), cut in any::<usize>(), flip in any::<(usize, u8)>()) {
        let mut bytes = env.to_json();
        let i = flip.0 % bytes.len();
        bytes[i] ^= flip.1;
        let _ = Envelope::decode(&bytes);
        bytes.truncate(cut % (bytes.len() + 1));
        let _ = Envelope::decode(&bytes);
    }

    #[test]
    fn derived_ids_are_stable(env in arb_envelope(), label in "[a-z]{1,10}") {
        let a = env.caused(&label, "x", env.event.clone());
        let b = env.caused(&label, "y", env.event.clone());
        prop_assert_eq!(a.id, b.id);
        prop_assert_eq!(a.correlation_id, env.correlation_id);
        prop_assert_eq!(a.causation_id, Some(env.id));
    }
}

#[test]
fn an_envelope_or_payload_that_is_not_an_object_is_malformed() {
    // serde would read a struct from a positional array; the wire format is an object.
    let v = vote_json();
    let positional: Vec<Value> = ["id", "type", "version", "source", "occurred_at"]
        .iter()
        .map(|k| v[*k].clone())
        .chain([Value::Null, Value::Null, Value::Null])
        .chain([serde_json::json!(["p-1", v["payload"]["voter"], "for"])])
        .collect();
    let bytes = serde_json::to_vec(&positional).expect("json");
    let e = Envelope::decode(&bytes).expect_err("an array is not an envelope");
    assert_eq!(e.kind, DecodeErrorKind::Malformed, "{e}");
    for body in ["null", "[1,2,3]", "  \"text\""] {
        let e = Envelope::decode(body.as_bytes()).expect_err("not an object");
        assert_eq!(e.kind, DecodeErrorKind::Malformed, "{body}: {e}");
    }
    let mut array_payload = vote_json();
    array_payload["payload"] = serde_json::json!(["p-1", v["payload"]["voter"], "for"]);
    let e = err_of(&array_payload);
    assert_eq!(e.kind, DecodeErrorKind::Malformed, "{e}");
    assert!(e.to_string().contains("payload"), "{e}");
}
