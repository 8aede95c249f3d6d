//! Dry runs: the users a proposed document would newly unlock, counted and sampled over
//! every page of users, with nothing written.

use merit_actors::center::{CenterError, ConfigCenter, DryRunReport, RuleDryRun};
use merit_config::rules::UnlockLedger;
use merit_testkit::{Backend, TestDb};

use crate::{
    harness::{config_rows, doc},
    population::{at, facts, store_population, store_user},
};

merit_testkit::on_both_backends! {
    workers = 4;
    dry_run_counts_users_who_would_newly_unlock => dry_run_counts;
    dry_run_of_a_harder_rule_counts_fewer_users => dry_run_harder_rule;
    dry_run_refuses_an_invalid_document_and_writes_nothing => dry_run_writes_nothing;
}

async fn dry_run_counts(backend: Backend) {
    let (db, store) = TestDb::migrated(backend).await;
    let center = ConfigCenter::new(store.clone());
    let now = at(10_000);
    let population = store_population(&store, now).await;

    let report = center
        .dry_run(doc(3).as_bytes(), now)
        .await
        .expect("dry run");
    assert_eq!(report.users_scanned, 13);
    assert_eq!(report.users_unreadable, 0);
    assert_eq!(report.current_version, 0);
    let voter = rule_report(&report, "voter");
    assert_eq!(voter.would_newly_unlock, 5);
    assert_eq!(
        voter.already_unlocked, 2,
        "the ledger keeps them from counting"
    );
    assert_eq!(voter.samples, population.newly, "samples in address order");
    let first = rule_report(&report, "first-proposal");
    assert_eq!(first.would_newly_unlock, 1);
    assert_eq!(first.samples, [population.proposer]);
    let text = report.to_string();
    assert!(text.contains("13 users scanned"), "{text}");
    db.cleanup().await;
}

async fn dry_run_harder_rule(backend: Backend) {
    let (db, store) = TestDb::migrated(backend).await;
    let center = ConfigCenter::new(store.clone());
    let now = at(10_000);
    store_population(&store, now).await;

    let harder = center
        .dry_run(doc(5).as_bytes(), now)
        .await
        .expect("dry run");
    let voter = rule_report(&harder, "voter");
    assert_eq!(voter.would_newly_unlock, 2, "5 and 10 votes");
    db.cleanup().await;
}

async fn dry_run_writes_nothing(backend: Backend) {
    let (db, store) = TestDb::migrated(backend).await;
    let center = ConfigCenter::new(store.clone());
    let now = at(10_000);
    store_population(&store, now).await;

    center
        .dry_run(doc(3).as_bytes(), now)
        .await
        .expect("dry run");
    let bad = doc(3).replace(r#""at_least": 3"#, r#""at_least": 0"#);
    assert!(matches!(
        center.dry_run(bad.as_bytes(), now).await,
        Err(CenterError::Invalid(_))
    ));
    assert_eq!(config_rows(&store).await, 0, "a dry run writes no version");
    assert!(store
        .pending_outbox(0, 10)
        .await
        .expect("outbox")
        .is_empty());
    db.cleanup().await;
}

/// The report of rule `id` in a dry run's report.
fn rule_report<'r>(report: &'r DryRunReport, id: &str) -> &'r RuleDryRun {
    report
        .rules
        .iter()
        .find(|r| r.rule.to_string() == id)
        .unwrap_or_else(|| panic!("rule {id} reported"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_pages_through_more_than_one_page_of_users() {
    let (db, store) = TestDb::migrated(Backend::Sqlite).await;
    let center = ConfigCenter::new(store.clone());
    let f = facts(1, 0);
    let ledger = UnlockLedger::default();
    for n in 0..2_345u32 {
        store_user(&store, n, &f, &ledger).await;
    }
    let report = center
        .dry_run(doc(3).as_bytes(), at(10_000))
        .await
        .expect("dry run");
    assert_eq!(report.users_scanned, 2_345);
    let first = report
        .rules
        .iter()
        .find(|r| r.rule.to_string() == "first-proposal")
        .expect("rule");
    assert_eq!(first.would_newly_unlock, 2_345);
    assert_eq!(first.samples.len(), 10);
    db.cleanup().await;
}
