//! Input that is not an envelope: bad JSON, too many bytes, an array or scalar where an
//! object belongs.

use merit_messages::*;
use serde_json::Value;

use crate::harness::{err_of, vote_json};

#[test]
fn bad_json_is_malformed() {
    let e = Envelope::decode(b"{\"id\": ").expect_err("truncated");
    assert_eq!(e.kind, DecodeErrorKind::Malformed);
    let e = Envelope::decode(b"[1,2,3]").expect_err("array");
    assert_ne!(e.kind, DecodeErrorKind::UnknownType);
}

#[test]
fn oversized_is_refused_before_parsing() {
    let big = vec![b' '; MAX_ENVELOPE_BYTES + 1];
    let e = Envelope::decode(&big).expect_err("too big");
    assert_eq!(e.kind, DecodeErrorKind::Oversized);
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
