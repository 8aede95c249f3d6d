//! Writes: a proposal created and a vote cast through the API are published on the
//! in-process transport and applied by the node's ProposalActor; a refused write
//! publishes nothing.

use crate::common::*;

#[actix_web::test]
async fn a_proposal_and_a_vote_posted_through_the_api_are_applied_by_the_in_process_node() {
    let h = Harness::start("governance-node").await;
    let app = app!(&h.state);
    let (alice, bob) = (wallet(1), wallet(2));
    let (a, b) = (h.user(&alice), h.user(&bob));
    let answer = send(
        &app,
        post("/api/v1/proposals", Some(&a), &proposal("ip-1")).to_request(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    assert_eq!(answer.json["type"], "governance.proposal.created");
    // The ProposalActor took it off the transport and projected it; the deadline timer
    // opens it, its start having passed.
    let p = until(
        &app,
        || get("/api/v1/proposals/ip-1", Some(&b)).to_request(),
        30,
        |r| r.status == StatusCode::OK && r.json["status"] == "active",
    )
    .await;
    assert_eq!(p.json["creator"], alice.to_string(), "{}", p.text);
    send(
        &app,
        post("/api/v1/proposals", Some(&a), &proposal("ip-1")).to_request(),
    )
    .await
    .assert_error(StatusCode::CONFLICT, "conflict", "exists already");
    let vote = json!({"choice": "for"});
    let answer = send(
        &app,
        post("/api/v1/proposals/ip-1/votes", Some(&b), &vote).to_request(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    assert_eq!(answer.json["type"], "governance.vote.cast");
    let votes = until(
        &app,
        || get("/api/v1/proposals/ip-1/votes", Some(&a)).to_request(),
        30,
        |r| r.status == StatusCode::OK && r.json["total"] == 1,
    )
    .await;
    assert_eq!(
        votes.json["items"][0]["voter"],
        bob.to_string(),
        "{}",
        votes.text
    );
    assert_eq!(votes.json["items"][0]["choice"], "for", "{}", votes.text);
    assert_eq!(
        votes.json["items"][0]["event_id"], answer.json["event_id"],
        "the counted vote is the event the API published"
    );
    send(
        &app,
        post("/api/v1/proposals/ip-1/votes", Some(&b), &vote).to_request(),
    )
    .await
    .assert_error(StatusCode::CONFLICT, "conflict", "first vote is final");
    send(
        &app,
        post("/api/v1/proposals/nope/votes", Some(&b), &vote).to_request(),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found", "no such proposal");
    h.stop().await;
}

/// Asserts `delivery` is the API's `event_type` event `event_id` for `proposal`, on the
/// shard that proposal's key hashes to, and returns its payload.
fn published(delivery: &Delivery, event_type: &str, event_id: &Value, proposal: &str) -> Value {
    assert_eq!(delivery.routing_key, event_type);
    assert_eq!(delivery.message_id.as_deref(), event_id.as_str());
    assert_eq!(
        delivery.headers.get("merit-proposal").map(String::as_str),
        Some(proposal),
        "keyed by the proposal, so its ProposalActor gets it"
    );
    assert_eq!(
        delivery.shard,
        ShardId::new(ActorKind::Proposal, shard_for(proposal, SHARDS))
    );
    let envelope: Value = serde_json::from_slice(&delivery.body).expect("an envelope");
    assert_eq!(envelope["id"], *event_id);
    assert_eq!(envelope["type"], event_type);
    assert_eq!(envelope["source"], "api");
    envelope["payload"].clone()
}

#[actix_web::test]
async fn a_created_proposal_and_a_cast_vote_are_published_on_the_in_process_transport() {
    let h = Harness::start("publish-node").await;
    let (alice, bob) = (wallet(1), wallet(2));
    let (a, b) = (h.user(&alice), h.user(&bob));
    // The node applies the first proposal, so a vote on it is accepted ...
    let app = app!(&h.state);
    let created = send(
        &app,
        post("/api/v1/proposals", Some(&a), &proposal("tp-1")).to_request(),
    )
    .await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.text);
    until(
        &app,
        || get("/api/v1/proposals/tp-1", Some(&a)).to_request(),
        30,
        |r| r.status == StatusCode::OK,
    )
    .await;
    // ... and the API over a transport nobody consumes leaves what it publishes there.
    let (state, quiet) = h.unconsumed();
    let app = app!(&state);
    let key = uuid::Uuid::new_v4().to_string();
    let vote = || {
        post(
            "/api/v1/proposals/tp-1/votes",
            Some(&b),
            &json!({"choice": "against"}),
        )
        .insert_header(("Idempotency-Key", key.as_str()))
        .to_request()
    };
    let first = send(&app, vote()).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    let retry = send(&app, vote()).await;
    assert_eq!(retry.status, StatusCode::ACCEPTED, "{}", retry.text);
    assert_eq!(
        retry.json["event_id"], first.json["event_id"],
        "a retry with the same Idempotency-Key publishes the same event"
    );
    let second = send(
        &app,
        post("/api/v1/proposals", Some(&a), &proposal("tp-2")).to_request(),
    )
    .await;
    assert_eq!(second.status, StatusCode::ACCEPTED, "{}", second.text);

    // The vote twice (the inboxes absorb the retry, not the transport), the proposal once.
    let got = proposal_shards(&quiet, 3).await;
    let (votes, created): (Vec<&Delivery>, Vec<&Delivery>) = got
        .iter()
        .partition(|d| d.routing_key == "governance.vote.cast");
    assert_eq!((votes.len(), created.len()), (2, 1));
    for d in votes {
        let payload = published(d, "governance.vote.cast", &first.json["event_id"], "tp-1");
        assert_eq!(payload["voter"], bob.to_string(), "{payload}");
        assert_eq!(payload["choice"], "against", "{payload}");
    }
    let payload = published(
        created[0],
        "governance.proposal.created",
        &second.json["event_id"],
        "tp-2",
    );
    assert_eq!(
        payload["creator"],
        alice.to_string(),
        "the creator is the token's subject"
    );
    assert_eq!(payload["title"], "Fund the docs", "{payload}");
    h.stop().await;
}

#[actix_web::test]
async fn a_refused_write_publishes_nothing_on_the_transport() {
    let h = Harness::start("refused-node").await;
    let (state, quiet) = h.unconsumed();
    let app = app!(&state);
    let alice = h.user(&wallet(1));
    let mut late = proposal("r-1");
    late["ends_at"] = json!(chrono::Utc::now() - chrono::Duration::hours(1));
    let mut huge = proposal("r-2");
    huge["description"] = json!("x".repeat(state.options.max_body_bytes + 1));
    let admin = Some(h.admin.as_str());
    for (path, token, body, status) in [
        (
            "/api/v1/proposals",
            None,
            proposal("r-0"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/api/v1/proposals",
            admin,
            proposal("r-0"),
            StatusCode::FORBIDDEN,
        ),
        (
            "/api/v1/proposals",
            Some(alice.as_str()),
            late,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/proposals",
            Some(alice.as_str()),
            huge,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "/api/v1/proposals/r-9/votes",
            Some(alice.as_str()),
            json!({"choice": "no"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/proposals/r-9/votes",
            Some(alice.as_str()),
            json!({"choice": "for"}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let answer = send(&app, post(path, token, &body).to_request()).await;
        assert_eq!(answer.status, status, "POST {path}: {}", answer.text);
    }
    let depths = quiet.queue_depths().await.expect("queue depths");
    assert!(
        depths.iter().all(|(_, n)| *n == 0),
        "a refused write published: {depths:?}"
    );
    let dead = quiet.dead_letters(10).await.expect("dead letters");
    assert!(
        dead.is_empty(),
        "a refused write was dead-lettered: {} letters",
        dead.len()
    );
    // The same API publishes a valid one, so the empty transport above means something.
    let ok = send(
        &app,
        post("/api/v1/proposals", Some(&alice), &proposal("r-3")).to_request(),
    )
    .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.text);
    let depths = quiet.queue_depths().await.expect("queue depths");
    assert_eq!(depths.iter().map(|(_, n)| n).sum::<u64>(), 1, "{depths:?}");
    h.stop().await;
}
