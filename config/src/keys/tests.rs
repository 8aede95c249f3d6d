//! Unit tests of the settings key catalogue: names, paths, secrets and defaults.

use super::*;
use std::collections::BTreeSet;

#[test]
fn variable_names_follow_the_path_rule() {
    for key in ALL {
        let expected = format!("{ENV_PREFIX}{}", key.path.replace('.', "_").to_uppercase());
        assert_eq!(key.var, expected, "variable of {}", key.path);
        if let Some(file_var) = key.file_var {
            assert_eq!(
                file_var,
                format!("{expected}_FILE"),
                "file variable of {}",
                key.path
            );
        }
    }
}

#[test]
fn variable_names_and_paths_are_unique() {
    let vars: Vec<_> = known_vars().collect();
    let unique: BTreeSet<_> = vars.iter().collect();
    assert_eq!(vars.len(), unique.len(), "duplicate variable in {vars:?}");
    let paths: BTreeSet<_> = ALL.iter().map(|key| key.path).collect();
    assert_eq!(paths.len(), ALL.len());
}

#[test]
fn secrets_may_come_from_files_and_have_no_production_default() {
    for key in ALL
        .iter()
        .filter(|key| key.sensitivity == Sensitivity::Secret)
        // Optional: only with a keystore, and it has no default anywhere.
        .filter(|key| key.path != MINTER_KEYSTORE_PASSWORD.path)
    {
        assert!(
            key.file_var.is_some(),
            "{} needs a _FILE variable",
            key.path
        );
        assert_eq!(
            key.default_in(Environment::Production, None),
            None,
            "{}",
            key.path
        );
        assert!(
            key.default_in(Environment::Test, None).is_some(),
            "{}",
            key.path
        );
    }
}

#[test]
fn node_id_default_is_derived_from_the_host_name() {
    assert_eq!(crate::node_id::from_hostname(None), "node-1");
    assert_eq!(
        crate::node_id::from_hostname(Some("web-7c9f")),
        "node-web-7c9f"
    );
    assert_eq!(crate::node_id::from_hostname(Some("a b/c")), "node-a-b-c");
    assert_eq!(crate::node_id::from_hostname(Some("///")), "node-1");
    let long = "h".repeat(200);
    assert_eq!(
        crate::node_id::from_hostname(Some(&long)).len(),
        crate::node_id::NODE_ID_MAX_LEN
    );
}

#[test]
fn sections_are_recognised() {
    assert_eq!(section("mailbox"), Some("mailbox"));
    assert_eq!(section("chain"), Some("chain"));
    assert_eq!(section("chain_rpc_url"), None);
    assert_eq!(section("mail"), None);
    assert_eq!(section("mailbox.shards"), None);
    assert!(by_path("mailbox.max_attempts").is_some());
}
