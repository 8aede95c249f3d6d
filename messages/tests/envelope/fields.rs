//! Refusals that name the field at fault: unknown type or version, missing, mistyped or
//! invalid values, unknown fields, keys that disagree, cross-field rules.

use merit_messages::*;
use serde_json::json;
use uuid::Uuid;

use crate::harness::{decode, err_of, vote_json, ALICE};

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
