//! Bulk replay: a dry run counts, one class is put back once; a node killed mid-replay
//! neither loses nor doubles one.

use std::time::Duration;

use merit_storage::{DeadLetterFilter, DeadLetterState, Store};
use serde_json::json;

use crate::{
    common::{self, Backend},
    harness::{
        admin_of, dead_letter, in_state, proposals, proposals_created, spawn_node, strangers,
        Admin, Dead, Harness,
    },
    paging::{count_tapped, tap_proposal_creations},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_bulk_replay_of_one_class_puts_each_back_once_after_a_dry_run() {
    let h = Harness::start(Backend::Sqlite, "dlq-bulk.log").await;
    let (api, ch) = (&h.api, &h.ch);
    // A tap on merit.events counts every proposal a replay publishes, by message id.
    let mut tapped = tap_proposal_creations(&h.conn).await;
    let failed: Vec<Dead> = (0..200).map(Dead::failed_proposal).collect();
    let junk: Vec<Dead> = (0..50).map(Dead::malformed).collect();
    dead_letter(ch, &failed).await;
    dead_letter(ch, &junk).await;
    api.until_total("/api/v1/dlq?page_size=1", 250, 60).await;
    let store = h.db.connect().await;
    check_a_replay_request_only_counts_unless_told_otherwise(api, &store).await;

    let (status, done) = api.replay_handler_errors(false).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (&done["settled"], &done["remaining"]),
        (&json!(200), &json!(0)),
        "{done}"
    );
    let (_, again) = api.replay_handler_errors(false).await;
    assert_eq!(again["settled"], 0, "a second run finds nothing: {again}");

    // Each replayed once: 200 distinct messages on the wire, 200 proposals applied once.
    let counts = count_tapped(&mut tapped, 200).await;
    assert_eq!(counts.len(), 200, "every one replayed");
    assert!(counts.values().all(|&n| n == 1), "none replayed twice");
    common::eventually(60, "the replayed proposals are applied", || {
        let store = store.clone();
        async move { proposals(&store).await == 200 && proposals_created(&store).await == 200 }
    })
    .await;
    check_the_other_class_waits_and_a_second_action_is_a_409(api, &junk[0].id).await;
    check_one_operation_s_dead_letters_are_found_by_correlation_id(api, &failed[7]).await;
    h.stop().await;
}

/// Without `dry_run: false` a request only counts; a dry run of one class counts it.
async fn check_a_replay_request_only_counts_unless_told_otherwise(api: &Admin, store: &Store) {
    let (status, counted) = api.post("/api/v1/dlq/replay", json!({})).await;
    assert_eq!(status, 200, "{counted}");
    assert_eq!(
        (
            &counted["dry_run"],
            &counted["matched"],
            &counted["settled"]
        ),
        (&json!(true), &json!(250), &json!(0)),
        "without dry_run: false a request only counts: {counted}"
    );
    let (status, dry) = api.replay_handler_errors(true).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(
        (&dry["matched"], &dry["settled"], &dry["remaining"]),
        (&json!(200), &json!(0), &json!(200)),
        "{dry}"
    );
    assert_eq!(proposals(store).await, 0, "a dry run replays nothing");
}

/// The other class still waits; one id at a time, a second action is a 409.
async fn check_the_other_class_waits_and_a_second_action_is_a_409(api: &Admin, junk_id: &str) {
    let (_, waiting) = api.get("/api/v1/dlq?class=malformed").await;
    assert_eq!(waiting["total"], 50, "{waiting}");
    let (_, replayed) = api.get("/api/v1/dlq?state=replayed&page_size=1").await;
    assert_eq!(replayed["total"], 200, "{replayed}");
    let replayed_id = replayed["items"][0]["id"].as_str().expect("id").to_string();
    let (status, conflict) = api
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/dlq/{replayed_id}/replay"),
            None,
        )
        .await;
    assert_eq!(status, 409, "{conflict}");
    let path = format!("/api/v1/dlq/{junk_id}");
    let (status, _) = api.send(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 200);
    let (status, _) = api.send(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 409, "discarded once");
    let (_, one) = api.get(&path).await;
    assert_eq!(one["state"], "discarded", "{one}");
    let (status, _) = api.get("/api/v1/dlq/no-such-id").await;
    assert_eq!(status, 404);
}

/// One operation's dead letters, by its correlation id, whatever their state.
async fn check_one_operation_s_dead_letters_are_found_by_correlation_id(api: &Admin, dead: &Dead) {
    let correlation = dead
        .message
        .correlation_id
        .clone()
        .expect("a correlation id");
    let (_, followed) = api
        .get(&format!(
            "/api/v1/dlq?state=all&correlation_id={correlation}"
        ))
        .await;
    let items = followed["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{followed}");
    assert_eq!(items[0]["id"], dead.id.as_str());
    assert_eq!(items[0]["correlation_id"], correlation.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_node_killed_mid_bulk_replay_neither_loses_nor_doubles_one() {
    const N: usize = 6_000;
    let Harness {
        db,
        vhost,
        token,
        node,
        api,
        conn: _conn,
        ch,
    } = Harness::start(Backend::Postgres, "dlq-kill.log").await;
    let failed: Vec<Dead> = (0..N).map(Dead::failed_proposal).collect();
    for chunk in failed.chunks(1_000) {
        dead_letter(&ch, chunk).await;
    }
    api.until_total("/api/v1/dlq?class=handler_error&page_size=1", N as u64, 120)
        .await;
    let store = db.connect().await;

    // The bulk replay runs; the node dies once part of it is marked.
    let request = {
        let (http, base, token) = (api.http.clone(), api.base.clone(), token.clone());
        tokio::spawn(async move {
            http.post(format!("{base}/api/v1/dlq/replay"))
                .bearer_auth(token)
                .json(&json!({"class": "handler_error", "dry_run": false}))
                .send()
                .await
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while in_state(&store, DeadLetterState::Replayed).await < 200 {
        assert!(tokio::time::Instant::now() < deadline, "the replay began");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.kill();
    let _ = request.await;
    let replayed_at_kill = in_state(&store, DeadLetterState::Replayed).await;
    assert!(
        replayed_at_kill < N as u64,
        "killed in the middle ({replayed_at_kill} of {N} marked)"
    );

    let node = spawn_node(&db, &vhost, &token, "dlq-kill.log");
    let api = admin_of(&node, &token);
    let (_, dry) = api.replay_handler_errors(true).await;
    assert_eq!(dry["matched"], N as u64 - replayed_at_kill, "{dry}");
    let (status, done) = api.replay_handler_errors(false).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["remaining"], 0, "{done}");

    common::eventually(120, "every replayed proposal is applied", || {
        let store = store.clone();
        async move { proposals_created(&store).await >= N as i64 }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids: Vec<String> = failed.iter().map(|d| d.id.clone()).collect();
    let made = strangers(&store, &ids).await;
    assert!(
        made.is_empty(),
        "a replay became a new dead letter: {made:#?}"
    );
    assert_eq!(proposals(&store).await, N as u64, "none lost");
    assert_eq!(proposals_created(&store).await, N as i64, "none doubled");
    assert_eq!(in_state(&store, DeadLetterState::Replayed).await, N as u64);
    assert_eq!(in_state(&store, DeadLetterState::Waiting).await, 0);
    let all = store
        .count_dead_letters(&DeadLetterFilter::default())
        .await
        .expect("count");
    assert_eq!(all, N as u64, "no replay became a new dead letter");
    node.stop();
    vhost.delete();
    db.cleanup().await;
}
