//! Valid envelopes: a minimal vote decodes with derived keys, a checksummed address is
//! normalised, and every event type has a schema.

use merit_messages::*;
use serde_json::json;

use crate::harness::{decode, vote_json, ALICE};

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
