//! The config center against real databases: every test runs on a fresh SQLite file and
//! on a fresh PostgreSQL database (`MERIT_TEST_PG_URL`, an admin connection; default
//! `postgres://postgres@127.0.0.1:5432/postgres`), so they run in parallel.

#![allow(missing_docs)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use merit_actors::center::{CenterError, ConfigCenter, DryRunReport, RuleDryRun};
use merit_config::{
    rules::{evaluate, Activity, ActivityKind, RuleFacts, UnlockLedger},
    DynamicConfig,
};
use merit_messages::{ActorKind, Envelope, Event, EventId};
use merit_storage::{
    entities::config_version,
    no_projection,
    sea_orm::{EntityTrait, PaginatorTrait},
    StateWrite, Store, Turn,
};

use merit_testkit::{Backend, TestDb};

merit_testkit::on_both_backends! {
    workers = 4;
    a_proposal_becomes_current_and_heads_the_history => propose_current_history;
    a_malformed_rule_is_refused_with_its_path_and_writes_nothing => malformed_refused;
    a_rollback_is_a_new_version_equal_to_the_old_one => rollback_new_equal_version;
    diff_lists_exactly_the_changed_rule => diff_changed_rule;
    concurrent_proposals_get_distinct_versions => concurrent_distinct;
    each_version_has_one_config_changed_in_the_outbox => outbox_one_per_version;
    dry_run_counts_users_who_would_newly_unlock => dry_run_counts;
    dry_run_of_a_harder_rule_counts_fewer_users => dry_run_harder_rule;
    dry_run_refuses_an_invalid_document_and_writes_nothing => dry_run_writes_nothing;
}

const TIERS: &str = r#""tiers": { "bronze": { "title": "Bronze", "bonus_bps": 1000 },
                                   "gold": { "title": "Gold", "bonus_bps": 5000 } },
    "limits": { "max_multiplier_bps": 20000, "max_boosting_nfts": 3 }"#;

/// A document with rules `first-proposal` (1 proposal) and `voter` (`votes` votes).
fn doc(votes: u32) -> String {
    format!(
        r#"{{ {TIERS}, "rules": [
        {{ "id": "first-proposal", "tier": "bronze", "title": "First proposal",
           "when": {{ "count": {{ "activity": "proposal_created", "at_least": 1 }} }} }},
        {{ "id": "voter", "tier": "gold", "title": "Voter",
           "when": {{ "count": {{ "activity": "vote_cast", "at_least": {votes} }} }} }} ] }}"#
    )
}

async fn config_rows(store: &Store) -> u64 {
    config_version::Entity::find()
        .count(store.db())
        .await
        .expect("count")
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

fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid time")
        + Duration::minutes(minutes)
}

fn facts(proposals: u32, votes: u32) -> RuleFacts {
    let mut facts = RuleFacts::default();
    let mut minute = 0;
    for _ in 0..proposals {
        minute += 1;
        facts.record(Activity {
            kind: ActivityKind::ProposalCreated,
            at: at(minute),
            proposal_seq: None,
            tiers_held: vec![],
        });
    }
    for seq in 0..votes {
        minute += 1;
        facts.record(Activity {
            kind: ActivityKind::VoteCast,
            at: at(minute),
            proposal_seq: Some(u64::from(seq)),
            tiers_held: vec![],
        });
    }
    facts
}

async fn store_user(store: &Store, n: u32, facts: &RuleFacts, ledger: &UnlockLedger) -> String {
    let key = format!("0x{n:040x}");
    let state = serde_json::json!({
        "proposals_created": 0,
        "votes_cast": 0,
        "facts": facts,
        "ledger": ledger,
    });
    store_actor(store, "user", ActorKind::User, &key, state).await;
    key
}

/// Stores `state` as the snapshot of the `kind` actor `key`, as `consumer`'s turn.
async fn store_actor(
    store: &Store,
    consumer: &str,
    kind: ActorKind,
    key: &str,
    state: serde_json::Value,
) {
    store
        .commit_turn(
            Turn {
                consumer: consumer.to_string(),
                event_id: EventId::new_random(),
                batched: Vec::new(),
                state: Some(StateWrite {
                    kind,
                    key: key.to_string(),
                    expected_version: 0,
                    state,
                }),
                outbox: vec![],
            },
            no_projection,
        )
        .await
        .unwrap_or_else(|e| panic!("store {kind} {key}: {e}"));
}

/// The users a dry run of `doc(3)` at `now` judges, by what it should find.
struct Population {
    /// Voters with 3+ votes who never unlocked `voter`, in address order.
    newly: Vec<String>,
    /// The one user who created a proposal.
    proposer: String,
}

/// Stores 13 users: 5 voters with 3+ votes who never unlocked `voter`; 2 with 3+ votes
/// who did; 4 with too few votes; 1 proposer; 1 snapshot without facts (an old user
/// state). And a proposal whose state has facts, which a dry run must not scan.
async fn store_population(store: &Store, now: DateTime<Utc>) -> Population {
    let proposed = DynamicConfig::parse(doc(3).as_bytes(), 0).expect("valid");
    let mut newly = Vec::new();
    let mut n = 0;
    for votes in [3, 4, 5, 10, 3] {
        n += 1;
        newly.push(store_user(store, n, &facts(0, votes), &UnlockLedger::default()).await);
    }
    for votes in [3, 8] {
        n += 1;
        let f = facts(0, votes);
        let mut ledger = UnlockLedger::default();
        let unlocked = evaluate(&proposed.rules, 1, &f, &mut ledger, now);
        assert_eq!(unlocked.len(), 1, "the ledger now holds `voter`");
        store_user(store, n, &f, &ledger).await;
    }
    for votes in [0, 1, 2, 2] {
        n += 1;
        store_user(store, n, &facts(0, votes), &UnlockLedger::default()).await;
    }
    n += 1;
    let proposer = store_user(store, n, &facts(1, 0), &UnlockLedger::default()).await;
    n += 1;
    let old = serde_json::json!({ "proposals_created": 0 });
    store_actor(store, "user", ActorKind::User, &format!("0x{n:040x}"), old).await;
    let proposal = serde_json::json!({ "facts": facts(0, 9) });
    store_actor(store, "proposal", ActorKind::Proposal, "p-1", proposal).await;
    Population { newly, proposer }
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

/// A migrated database whose config center holds two versions by alice: `doc(first)` as
/// version 1 and `doc(second)` as version 2.
async fn two_versions(backend: Backend, first: u32, second: u32) -> (TestDb, Store, ConfigCenter) {
    let (db, store) = TestDb::migrated(backend).await;
    let center = ConfigCenter::new(store.clone());
    center
        .propose(doc(first).as_bytes(), "alice", "v1")
        .await
        .expect("v1");
    center
        .propose(doc(second).as_bytes(), "alice", "v2")
        .await
        .expect("v2");
    (db, store, center)
}
