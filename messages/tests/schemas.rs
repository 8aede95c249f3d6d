//! The committed JSON Schemas under `docs/schemas` are the ones the types generate.
//! Regenerate with `cargo run -- schema --out docs/schemas`.

use std::path::Path;

#[test]
fn committed_schemas_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schemas");
    for (name, schema) in merit_messages::all_schemas() {
        let path = dir.join(&name);
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `cargo run -- schema --out docs/schemas`",
                path.display()
            )
        });
        let committed: serde_json::Value = serde_json::from_str(&committed).expect("valid JSON");
        assert_eq!(
            committed, schema,
            "{name} is stale: run `cargo run -- schema --out docs/schemas`"
        );
    }
}
