//! `merit config current|history|get|set|diff|rollback|dry-run` as an operator uses them,
//! on a fresh database per test (the binary migrates it first).

mod common;

use std::{
    path::Path,
    process::{Command, Output},
};

use common::{Backend, TestDb};
use merit_config::rules::{Activity, ActivityKind, RuleFacts};
use merit_messages::{ActorKind, EventId};
use merit_storage::{no_projection, StateWrite, Turn};
use serde_json::Value;

fn merit(args: &[&str], db: &TestDb) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_merit"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    // Only what the test sets: no MERIT_* from the outer environment.
    for (k, _) in std::env::vars() {
        if k.starts_with("MERIT_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("MERIT_ENV", "test")
        .env("MERIT_DATABASE_URL", &db.url)
        .env("MERIT_LOG_FILTER", "warn");
    cmd.output().expect("run merit")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn text(o: &Output) -> String {
    format!("{}{}", stdout(o), String::from_utf8_lossy(&o.stderr))
}

/// Runs `merit` and expects success.
fn ok(args: &[&str], db: &TestDb) -> String {
    let out = merit(args, db);
    assert!(
        out.status.success(),
        "merit {} failed:\n{}",
        args.join(" "),
        text(&out)
    );
    stdout(&out)
}

fn json(args: &[&str], db: &TestDb) -> Value {
    let out = ok(args, db);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("merit {}: {e}\n{out}", args.join(" ")))
}

/// A document with rules `first-proposal` and `voter` (`votes` votes).
fn doc(votes: u32) -> String {
    format!(
        r#"{{ "tiers": {{ "bronze": {{ "title": "Bronze", "bonus_bps": 1000 }},
                     "gold": {{ "title": "Gold", "bonus_bps": 5000 }} }},
      "limits": {{ "max_multiplier_bps": 20000, "max_boosting_nfts": 3 }},
      "rules": [
        {{ "id": "first-proposal", "tier": "bronze", "title": "First proposal",
           "when": {{ "count": {{ "activity": "proposal_created", "at_least": 1 }} }} }},
        {{ "id": "voter", "tier": "gold", "title": "Voter",
           "when": {{ "count": {{ "activity": "vote_cast", "at_least": {votes} }} }} }} ] }}"#
    )
}

fn write(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write document");
    path.to_str().expect("utf-8 path").to_string()
}

fn history_total(db: &TestDb) -> u64 {
    json(&["config", "history", "--json"], db)["total"]
        .as_u64()
        .expect("total")
}

async fn store_voter(db: &TestDb, n: u32, votes: u64) {
    let mut facts = RuleFacts::default();
    for seq in 0..votes {
        facts.record(Activity {
            kind: ActivityKind::VoteCast,
            at: chrono::Utc::now(),
            proposal_seq: Some(seq),
            tiers_held: vec![],
        });
    }
    let store = db.connect().await;
    store
        .commit_turn(
            Turn {
                consumer: "user".to_string(),
                event_id: EventId::new_random(),
                batched: Vec::new(),
                state: Some(StateWrite {
                    kind: ActorKind::User,
                    key: format!("0x{n:040x}"),
                    expected_version: 0,
                    state: serde_json::json!({ "facts": facts, "ledger": {} }),
                }),
                outbox: vec![],
            },
            no_projection,
        )
        .await
        .expect("store user");
    store.close().await.expect("close");
}

/// `merit config set --file FILE --author AUTHOR --reason REASON`, expected to succeed.
fn set(file: &str, author: &str, reason: &str, db: &TestDb) -> String {
    ok(
        &[
            "config", "set", "--file", file, "--author", author, "--reason", reason,
        ],
        db,
    )
}

/// A fresh database: migrated by the command, the built-in document active.
fn check_a_fresh_database_runs_the_built_in_document(db: &TestDb) {
    let current = json(&["config", "current", "--json"], db);
    assert_eq!(current["version"], 0);
    assert!(ok(&["config", "current"], db).contains("built-in"));
}

/// `set` stores version 1 with its author, and it is current.
fn check_set_stores_a_version_that_becomes_current(db: &TestDb, v1: &str) {
    let out = set(v1, "alice", "first rules", db);
    assert!(out.contains("stored config version 1"), "{out}");
    let current = json(&["config", "current", "--json"], db);
    assert_eq!(current["version"], 1);
    assert_eq!(current["author"], "alice");
    assert_eq!(
        current["document"]["rules"][1]["when"]["count"]["at_least"],
        3
    );
}

/// A refused document: exit code 2, the path on stderr, nothing written; likewise a dry
/// run of it and a set without an author.
fn check_refused_documents_store_nothing(db: &TestDb, bad: &str, v2: &str) {
    let refused = merit(
        &[
            "config", "set", "--file", bad, "--author", "mallory", "--reason", "zero",
        ],
        db,
    );
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("error: rules[1].when.count.at_least:"),
        "{stderr}"
    );
    assert_eq!(history_total(db), 1, "history unchanged");
    let refused = merit(&["config", "set", "--file", bad, "--dry-run"], db);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let refused = merit(
        &[
            "config", "set", "--file", v2, "--author", "", "--reason", "x",
        ],
        db,
    );
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("author"), "{}", text(&refused));
    assert_eq!(history_total(db), 1, "history unchanged");
}

/// Version 2 changes rule `voter`: `diff 1 2` shows that change alone, as text and JSON.
fn check_diff_shows_the_changed_rule(db: &TestDb, v2: &str) {
    let out = set(v2, "bob", "harder voter", db);
    assert!(out.contains("stored config version 2"), "{out}");
    let diff = ok(&["config", "diff", "1", "2"], db);
    assert!(diff.contains("~ rule voter"), "{diff}");
    assert!(!diff.contains("first-proposal"), "{diff}");
    let diff = json(&["config", "diff", "1", "2", "--json"], db);
    assert_eq!(diff["rules"]["changed"].as_array().map(Vec::len), Some(1));
    assert_eq!(diff["rules"]["changed"][0]["id"], "voter");
}

/// `rollback 1` stores version 3 with version 1's document; an unknown version fails.
fn check_rollback_stores_the_old_document_again(db: &TestDb) {
    let out = ok(
        &[
            "config",
            "rollback",
            "1",
            "--author",
            "carol",
            "--reason",
            "too strict",
        ],
        db,
    );
    assert!(out.contains("stored config version 3"), "{out}");
    let v3 = json(&["config", "get", "3", "--json"], db);
    let v1_stored = json(&["config", "get", "1", "--json"], db);
    assert_eq!(v3["rollback_of"], 1);
    assert_eq!(v3["document"], v1_stored["document"]);
    let unknown = merit(
        &[
            "config", "rollback", "99", "--author", "carol", "--reason", "x",
        ],
        db,
    );
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown).contains("99"), "{}", text(&unknown));
}

/// `history --limit 2` lists the two newest versions of three.
fn check_history_lists_the_newest_versions(db: &TestDb) {
    let history = ok(&["config", "history", "--limit", "2"], db);
    assert!(
        history.contains("carol") && history.contains("too strict"),
        "{history}"
    );
    assert!(history.contains("2 of 3 versions"), "{history}");
    assert!(
        !history.contains("alice"),
        "limited to the 2 newest:\n{history}"
    );
}

/// Dry runs: two users with 5+ votes, one with 1; a dry run reports who would unlock what,
/// and stores nothing.
async fn check_dry_runs_report_and_store_nothing(db: &TestDb, v1: &str, v2: &str) {
    store_voter(db, 1, 5).await;
    store_voter(db, 2, 7).await;
    store_voter(db, 3, 1).await;
    let report = json(&["config", "dry-run", "--file", v2, "--json"], db);
    assert_eq!(report["users_scanned"], 3);
    assert_eq!(report["current_version"], 3);
    let voter = report["rules"]
        .as_array()
        .and_then(|rules| rules.iter().find(|r| r["rule"] == "voter"))
        .expect("voter reported");
    assert_eq!(voter["would_newly_unlock"], 2);
    assert_eq!(
        voter["samples"],
        serde_json::json!([format!("0x{:040x}", 1), format!("0x{:040x}", 2)])
    );
    let out = ok(&["config", "dry-run", "--file", v1], db);
    assert!(out.contains("3 users scanned"), "{out}");
    assert!(out.contains("voter"), "{out}");

    let out = ok(&["config", "set", "--file", v2, "--dry-run"], db);
    assert!(out.contains("~ rule voter"), "{out}");
    assert!(out.contains("nothing was stored"), "{out}");
    assert_eq!(history_total(db), 3, "a dry run stores nothing");
}

async fn set_diff_rollback_and_dry_run(backend: Backend) {
    let db = TestDb::empty(backend).await;
    let dir = tempfile::tempdir().expect("tmp");
    let v1 = write(dir.path(), "v1.json", &doc(3));
    let v2 = write(dir.path(), "v2.json", &doc(5));
    let bad = write(
        dir.path(),
        "bad.json",
        &doc(3).replace(r#""at_least": 3"#, r#""at_least": 0"#),
    );
    check_a_fresh_database_runs_the_built_in_document(&db);
    check_set_stores_a_version_that_becomes_current(&db, &v1);
    check_refused_documents_store_nothing(&db, &bad, &v2);
    check_diff_shows_the_changed_rule(&db, &v2);
    check_rollback_stores_the_old_document_again(&db);
    check_history_lists_the_newest_versions(&db);
    check_dry_runs_report_and_store_nothing(&db, &v1, &v2).await;
    db.cleanup().await;
}

on_both_backends! {
    config_set_diff_rollback_and_dry_run_from_the_command_line => set_diff_rollback_and_dry_run;
}
