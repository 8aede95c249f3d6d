//! Versions after the first: a rollback is a new version equal to the old one, a diff
//! lists exactly the changed rule, and each version has one `config.changed` in the outbox.

use merit_actors::center::CenterError;
use merit_config::DynamicConfig;
use merit_messages::{Envelope, Event};
use merit_testkit::Backend;

use crate::harness::two_versions;

merit_testkit::on_both_backends! {
    workers = 4;
    a_rollback_is_a_new_version_equal_to_the_old_one => rollback_new_equal_version;
    diff_lists_exactly_the_changed_rule => diff_changed_rule;
    each_version_has_one_config_changed_in_the_outbox => outbox_one_per_version;
}

async fn rollback_new_equal_version(backend: Backend) {
    let (db, _, center) = two_versions(backend, 3, 7).await;
    let back = center
        .rollback(1, "bob", "v2 was too strict")
        .await
        .expect("rollback");
    assert_eq!(back.version, 3);
    assert_eq!(back.rollback_of, Some(1));
    assert_eq!(back.author, "bob");

    let (_, v1) = center.get(1).await.expect("get").expect("v1");
    let (info3, v3) = center.get(3).await.expect("get").expect("v3");
    assert_eq!(info3.rollback_of, Some(1));
    assert_eq!(
        v3.to_document(),
        v1.to_document(),
        "same document as version 1"
    );
    assert_eq!(center.current().await.expect("current").version, 3);
    assert!(center.diff(1, 3).await.expect("diff").is_empty());
    assert_eq!(center.history(0, 10).await.expect("history").total, 3);

    let e = center
        .rollback(42, "bob", "no such version")
        .await
        .expect_err("unknown version");
    assert!(matches!(e, CenterError::NotFound(42)), "{e}");
    assert_eq!(center.latest_version().await.expect("latest"), 3);

    let to_builtin = center
        .rollback(0, "bob", "back to the defaults")
        .await
        .expect("rollback to the built-in document");
    assert_eq!(to_builtin.rollback_of, Some(0));
    assert_eq!(
        center.current().await.expect("current").to_document(),
        DynamicConfig::builtin().to_document()
    );
    db.cleanup().await;
}

async fn diff_changed_rule(backend: Backend) {
    let (db, _, center) = two_versions(backend, 3, 10).await;
    let diff = center.diff(1, 2).await.expect("diff");
    assert_eq!((diff.from, diff.to), (1, 2));
    let changed: Vec<String> = diff
        .rules
        .changed
        .iter()
        .map(|c| c.id.to_string())
        .collect();
    assert_eq!(changed, ["voter"]);
    assert!(diff.rules.added.is_empty() && diff.rules.removed.is_empty());
    assert!(diff.tiers.is_empty() && diff.limits.is_empty() && !diff.rules_reordered);
    assert_eq!(diff.rules.changed[0].before["when"]["count"]["at_least"], 3);
    assert_eq!(diff.rules.changed[0].after["when"]["count"]["at_least"], 10);
    let text = diff.to_string();
    assert!(text.contains("~ rule voter"), "{text}");
    assert!(!text.contains("first-proposal"), "{text}");

    let e = center.diff(1, 9).await.expect_err("unknown version");
    assert!(matches!(e, CenterError::NotFound(9)), "{e}");
    db.cleanup().await;
}

async fn outbox_one_per_version(backend: Backend) {
    let (db, store, center) = two_versions(backend, 3, 4).await;
    center.rollback(1, "bob", "undo").await.expect("v3");
    let rows = store.pending_outbox(0, 100).await.expect("outbox");
    assert_eq!(rows.len(), 3);
    let mut seen = Vec::new();
    for row in rows {
        assert_eq!(row.routing_key, "config.changed");
        let env = Envelope::decode(row.payload.as_bytes()).expect("a valid envelope");
        assert_eq!(env.source, "config-center");
        let Event::ConfigChanged(changed) = env.event else {
            panic!("not a config.changed: {:?}", env.event);
        };
        seen.push((changed.version, changed.previous, changed.rollback_of));
    }
    assert_eq!(
        seen,
        [(1, None, None), (2, Some(1), None), (3, Some(2), Some(1))]
    );
    db.cleanup().await;
}
