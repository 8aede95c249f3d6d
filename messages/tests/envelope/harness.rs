//! Harness: a valid vote envelope as JSON, and decoding one (or its refusal) from a value.

use merit_messages::*;
use serde_json::{json, Value};

pub(crate) const ALICE: &str = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed";

pub(crate) fn vote_json() -> Value {
    json!({
        "id": "6f1c2b1e-8a4f-4c7e-9f0a-2b3c4d5e6f70",
        "type": "governance.vote.cast",
        "version": 1,
        "source": "test",
        "occurred_at": "2026-11-24T10:00:00Z",
        "payload": {"proposal": "p-1", "voter": ALICE, "choice": "for"}
    })
}

pub(crate) fn decode(v: &Value) -> Result<Envelope> {
    Envelope::decode(&serde_json::to_vec(v).expect("json"))
}

pub(crate) fn err_of(v: &Value) -> DecodeError {
    decode(v).expect_err("must be refused")
}
