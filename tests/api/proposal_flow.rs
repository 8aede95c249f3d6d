//! One proposal through the REST API: created (bad ones refused), voted on once, its
//! creator's achievement minted, her notification log gap-free and hers alone; then the
//! operators' views of it (in `operator_views`).

use reqwest::StatusCode;
use serde_json::json;

use crate::{
    harness::{assert_gets_refused, assert_post_refused, Rest},
    operator_views::{
        check_a_dead_letter_is_listed_inspected_and_replayed,
        check_metrics_name_every_series_and_count_per_route, check_nodes_overview_and_chain_sync,
        check_the_mint_saga_is_listed_and_not_retried,
    },
};

/// One node through the life of a proposal: created, voted on, its creator's achievement
/// minted, its saga completed; then a dead letter worked through, and the operators' views
/// of all of it. Each step needs the ones before, so they share the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_proposal_its_votes_achievement_saga_and_a_dead_letter_flow_through_the_rest_api() {
    let ctx = Rest::start("api-rest.log").await;
    check_proposal_is_created_and_bad_ones_are_refused(&ctx).await;
    check_a_vote_is_counted_with_its_weight_once(&ctx).await;
    check_the_first_proposal_mints_an_achievement(&ctx).await;
    check_the_notification_log_and_that_users_read_only_their_own(&ctx).await;
    check_the_mint_saga_is_listed_and_not_retried(&ctx).await;
    check_a_dead_letter_is_listed_inspected_and_replayed(&ctx).await;
    check_nodes_overview_and_chain_sync(&ctx).await;
    check_metrics_name_every_series_and_count_per_route(&ctx).await;
    ctx.node.finish().await;
}

/// Alice creates a proposal through the API; it is published and applied.
async fn check_proposal_is_created_and_bad_ones_are_refused(ctx: &Rest) {
    let (api, a) = (&ctx.api, ctx.a.as_str());
    let starts = chrono::Utc::now() - chrono::Duration::minutes(1);
    let proposal = json!({
        "proposal": "api-p1", "title": "Fund the docs", "description": "Two weeks of writing",
        "starts_at": starts, "ends_at": starts + chrono::Duration::days(3), "quorum": 1000,
    });
    let path = "/api/v1/proposals";
    let (status, accepted) = api.post(path, Some(a), proposal.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["type"], "governance.proposal.created");
    let (as_admin, as_alice) = ((path, ctx.adm()), (path, a));
    let forbidden = StatusCode::FORBIDDEN;
    assert_post_refused(api, as_admin, proposal.clone(), forbidden, "user token").await;
    let mut bad = proposal.clone();
    bad["proposal"] = json!("api-p2");
    bad["ends_at"] = json!(starts - chrono::Duration::days(1));
    assert_post_refused(api, as_alice, bad, StatusCode::BAD_REQUEST, "ends_at").await;
    let mut unknown = proposal.clone();
    unknown["colour"] = json!("red");
    assert_post_refused(api, as_alice, unknown, StatusCode::BAD_REQUEST, "colour").await;
    let mut huge = proposal.clone();
    huge["description"] = json!("x".repeat(70 * 1024));
    let too_large = StatusCode::PAYLOAD_TOO_LARGE;
    assert_post_refused(api, as_alice, huge, too_large, "larger than").await;
    // Pending until the deadline timer opens it (its `starts_at` has passed).
    let p = api
        .until(30, "/api/v1/proposals/api-p1", a, |s, v| {
            s == StatusCode::OK && v["status"] == "active"
        })
        .await;
    assert_eq!(p["creator"], ctx.alice.to_string());
    assert_post_refused(api, as_alice, proposal, StatusCode::CONFLICT, "exists").await;
    let nope = ("/api/v1/proposals/nope", Some(a));
    assert_gets_refused(
        api,
        &[(nope.0, nope.1, StatusCode::NOT_FOUND, "no such proposal")],
    )
    .await;
    let (status, list) = api
        .get("/api/v1/proposals?status=active", Some(&ctx.b))
        .await;
    assert_eq!(
        (status, list["total"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{list}"
    );
}

/// Bob votes; the vote is counted with its weight; a second vote is refused.
async fn check_a_vote_is_counted_with_its_weight_once(ctx: &Rest) {
    let (api, b) = (&ctx.api, ctx.b.as_str());
    let votes = ("/api/v1/proposals/api-p1/votes", b);
    let (status, _) = api.post(votes.0, Some(b), json!({"choice": "for"})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let bad = StatusCode::BAD_REQUEST;
    assert_post_refused(api, votes, json!({"choice": "maybe"}), bad, "choice").await;
    let nope = ("/api/v1/proposals/nope/votes", b);
    let (for_, not_found) = (json!({"choice": "for"}), StatusCode::NOT_FOUND);
    assert_post_refused(api, nope, for_, not_found, "no such proposal").await;
    let counted = api
        .until(30, votes.0, b, |s, v| {
            s == StatusCode::OK && v["total"] == 1
        })
        .await;
    assert_eq!(counted["items"][0]["voter"], ctx.bob.to_string());
    assert_eq!(counted["items"][0]["weight"], 1000);
    let against = json!({"choice": "against"});
    let conflict = StatusCode::CONFLICT;
    assert_post_refused(api, votes, against, conflict, "first vote is final").await;
}

/// Alice's first proposal unlocks an achievement, minted on the dev chain.
async fn check_the_first_proposal_mints_an_achievement(ctx: &Rest) {
    let (api, a, b, me) = (&ctx.api, ctx.a.as_str(), ctx.b.as_str(), ctx.me());
    let achievements = api
        .until(60, &format!("{me}/achievements"), a, |s, v| {
            s == StatusCode::OK && v["items"][0]["state"] == "minted"
        })
        .await;
    assert_eq!(achievements["items"][0]["rule"], "first-proposal");
    let token = achievements["items"][0]["token"]
        .as_str()
        .expect("token")
        .to_string();
    let nfts = api
        .until(30, &format!("{me}/nfts"), a, |s, v| {
            s == StatusCode::OK && v["total"] == 1
        })
        .await;
    assert_eq!(nfts["items"][0]["token"], token.as_str());
    let (status, nft) = api.get(&format!("/api/v1/nfts/{token}"), Some(b)).await;
    assert_eq!(
        (status, nft["owner"].as_str()),
        (StatusCode::OK, Some(ctx.alice.to_string().as_str()))
    );
    assert_gets_refused(
        api,
        &[
            (
                "/api/v1/nfts/abc",
                Some(b),
                StatusCode::BAD_REQUEST,
                "token id",
            ),
            (
                "/api/v1/nfts/12345",
                Some(b),
                StatusCode::NOT_FOUND,
                "no such token",
            ),
        ],
    )
    .await;
    let user = api
        .until(30, &me, a, |s, v| {
            s == StatusCode::OK && v["benefits"]["multiplier_bps"] == 11000
        })
        .await;
    assert_eq!(user["proposals_created"], 1);
}

/// Her notification log: unlocked, minted, benefits changed, in order without gaps; and a
/// user reads only their own data.
async fn check_the_notification_log_and_that_users_read_only_their_own(ctx: &Rest) {
    let (api, me) = (&ctx.api, ctx.me());
    let log_page = api
        .until(30, &format!("{me}/notifications"), &ctx.a, |_, v| {
            v["items"].as_array().is_some_and(|i| i.len() >= 3)
        })
        .await;
    let items = log_page["items"].as_array().expect("items");
    let kinds: Vec<&str> = items
        .iter()
        .map(|n| n["kind"].as_str().unwrap_or_default())
        .collect();
    for kind in [
        "achievement.unlocked",
        "achievement.minted",
        "user.benefits.changed",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let seqs: Vec<u64> = items
        .iter()
        .map(|n| n["seq"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let b = Some(ctx.b.as_str());
    let (notifications, achievements) =
        (format!("{me}/notifications"), format!("{me}/achievements"));
    assert_gets_refused(
        api,
        &[
            (&me, b, StatusCode::FORBIDDEN, "own"),
            (&notifications, b, StatusCode::FORBIDDEN, "own"),
            (&achievements, b, StatusCode::FORBIDDEN, "own"),
        ],
    )
    .await;
}
