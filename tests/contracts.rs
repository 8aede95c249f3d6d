//! The committed contract files are the ones the code generates: `docs/asyncapi.json`
//! (`merit schema --asyncapi`) and `docs/openapi.json` (`merit schema --openapi`).
//! Regenerate them with those commands after changing an event, a header, a dead-letter
//! class, a WebSocket frame or a route. (`.ci/run` also validates the AsyncAPI document
//! with the AsyncAPI project's parser.)

use std::process::Command;

fn generated(flag: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_merit"))
        .args(["schema", flag])
        .output()
        .expect("run merit schema");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn committed(file: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn assert_same(flag: &str, file: &str) {
    let (now, then) = (generated(flag), committed(file));
    let a: serde_json::Value = serde_json::from_str(&now).expect("generated JSON");
    let b: serde_json::Value = serde_json::from_str(&then).expect("committed JSON");
    assert!(
        a == b,
        "{file} drifted from the code: regenerate it with `cargo run -- schema {flag} > {file}`"
    );
}

#[test]
fn the_committed_asyncapi_document_is_the_generated_one() {
    assert_same("--asyncapi", "docs/asyncapi.json");
}

#[test]
fn the_committed_openapi_document_is_the_generated_one() {
    assert_same("--openapi", "docs/openapi.json");
}

#[test]
fn every_event_schema_the_asyncapi_document_references_is_committed() {
    let doc: serde_json::Value =
        serde_json::from_str(&committed("docs/asyncapi.json")).expect("JSON");
    let messages = doc["components"]["messages"].as_object().expect("messages");
    let mut refs = 0;
    for message in messages.values() {
        if let Some(r) = message["payload"]["schema"]["$ref"].as_str() {
            let path = format!("docs/{r}");
            assert!(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join(&path)
                    .is_file(),
                "{path} is referenced but missing"
            );
            refs += 1;
        }
    }
    assert_eq!(refs, merit_messages::EventType::ALL.len());
}
