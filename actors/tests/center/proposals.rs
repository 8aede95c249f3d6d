//! Proposals: a proposal becomes current and heads the history, a malformed rule is
//! refused with its path and nothing written, concurrent proposers get distinct versions.

use merit_actors::center::{CenterError, ConfigCenter};
use merit_config::DynamicConfig;
use merit_testkit::{Backend, TestDb};

use crate::harness::{config_rows, doc};

merit_testkit::on_both_backends! {
    workers = 4;
    a_proposal_becomes_current_and_heads_the_history => propose_current_history;
    a_malformed_rule_is_refused_with_its_path_and_writes_nothing => malformed_refused;
    concurrent_proposals_get_distinct_versions => concurrent_distinct;
}

async fn propose_current_history(backend: Backend) {
    let (db, store) = TestDb::migrated(backend).await;
    let center = ConfigCenter::new(store.clone());
    assert_eq!(center.latest_version().await.expect("latest"), 0);
    let builtin = center.current().await.expect("current");
    assert_eq!(
        builtin,
        DynamicConfig::builtin(),
        "no version stored: the built-in one"
    );
    assert!(center.get(1).await.expect("get").is_none());

    let v1 = center
        .propose(doc(3).as_bytes(), "alice", "first rules")
        .await
        .expect("propose");
    assert_eq!(v1.version, 1);
    assert_eq!(v1.rollback_of, None);
    let v2 = center
        .propose(doc(5).as_bytes(), "bob", "harder voter")
        .await
        .expect("propose");
    assert_eq!(v2.version, 2);
    assert_eq!(center.latest_version().await.expect("latest"), 2);

    let current = center.current().await.expect("current");
    assert_eq!(current.version, 2);
    let expected = DynamicConfig::parse(doc(5).as_bytes(), 2).expect("valid");
    assert_eq!(current, expected);

    let page = center.history(0, 10).await.expect("history");
    assert_eq!(page.total, 2);
    let listed: Vec<(u64, &str, &str)> = page
        .versions
        .iter()
        .map(|v| (v.version, v.author.as_str(), v.reason.as_str()))
        .collect();
    assert_eq!(
        listed,
        [(2, "bob", "harder voter"), (1, "alice", "first rules")],
        "newest first, with who and why"
    );
    assert!(page.versions[0].created_at >= page.versions[1].created_at);
    let second_page = center.history(1, 10).await.expect("history");
    assert_eq!(second_page.total, 2);
    assert_eq!(second_page.versions.len(), 1);
    assert_eq!(second_page.versions[0].version, 1);

    let (info, config) = center.get(1).await.expect("get").expect("version 1 exists");
    assert_eq!(info, v1);
    assert_eq!(
        config,
        DynamicConfig::parse(doc(3).as_bytes(), 1).expect("valid")
    );

    let e = center
        .propose(doc(3).as_bytes(), "", "no author")
        .await
        .expect_err("empty author");
    assert!(
        matches!(e, CenterError::BadInput(ref m) if m.contains("author")),
        "{e}"
    );
    let e = center
        .propose(doc(3).as_bytes(), "carol", &"r".repeat(501))
        .await
        .expect_err("long reason");
    assert!(
        matches!(e, CenterError::BadInput(ref m) if m.contains("reason")),
        "{e}"
    );
    assert_eq!(config_rows(&store).await, 2, "refused inputs write nothing");
    db.cleanup().await;
}

async fn malformed_refused(backend: Backend) {
    let (db, store) = TestDb::migrated(backend).await;
    let center = ConfigCenter::new(store.clone());
    center
        .propose(doc(3).as_bytes(), "alice", "first rules")
        .await
        .expect("propose");
    let before = center.current().await.expect("current");

    let bad = doc(3).replace(r#""at_least": 3"#, r#""at_least": 0"#);
    let e = center
        .propose(bad.as_bytes(), "mallory", "zero votes")
        .await
        .expect_err("at_least 0 is refused");
    let CenterError::Invalid(rule_error) = e else {
        panic!("expected Invalid, got {e}");
    };
    assert_eq!(
        rule_error.path, "rules[1].when.count.at_least",
        "{rule_error}"
    );
    assert!(!rule_error.reason.is_empty());

    let unknown_tier = doc(3).replace(r#""tier": "gold""#, r#""tier": "platinum""#);
    let e = center
        .propose(unknown_tier.as_bytes(), "mallory", "unknown tier")
        .await
        .expect_err("unknown tier is refused");
    assert!(
        matches!(&e, CenterError::Invalid(r) if r.path.starts_with("rules[1]")),
        "{e}"
    );
    let e = center
        .propose(b"{ not json", "mallory", "garbage")
        .await
        .expect_err("garbage is refused");
    assert!(matches!(e, CenterError::Invalid(_)), "{e}");

    assert_eq!(config_rows(&store).await, 1, "no row written");
    assert_eq!(center.latest_version().await.expect("latest"), 1);
    assert_eq!(
        center.current().await.expect("current"),
        before,
        "current unchanged"
    );
    assert_eq!(
        store.pending_outbox(0, 100).await.expect("outbox").len(),
        1,
        "no config.changed for a refused document"
    );
    db.cleanup().await;
}

async fn concurrent_distinct(backend: Backend) {
    let (db, store) = TestDb::migrated(backend).await;
    // Two stores (two pools, as two processes would have) with several proposers each.
    let other = db.connect().await;
    let mut tasks = Vec::new();
    for i in 0..8u32 {
        let center = ConfigCenter::new(if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        });
        tasks.push(tokio::spawn(async move {
            center
                .propose(doc(i + 1).as_bytes(), &format!("writer-{i}"), "race")
                .await
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok(info) => versions.push(info.version),
            Err(CenterError::Conflict) => {}
            Err(e) => panic!("a concurrent proposal failed: {e}"),
        }
    }
    versions.sort_unstable();
    let stored = config_rows(&store).await;
    assert_eq!(
        stored,
        versions.len() as u64,
        "every success is stored, no more"
    );
    assert_eq!(
        versions,
        (1..=stored).collect::<Vec<_>>(),
        "distinct, gap-free versions"
    );
    assert!(
        versions.len() >= 7,
        "retries let (nearly) every proposer win: {versions:?}"
    );
    db.cleanup().await;
}
