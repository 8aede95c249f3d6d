//! The dashboard feed takes a single-use stream ticket, never the admin token.

use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    common::{self, answer},
    harness::Node,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn the_dashboard_feed_takes_a_single_use_ticket_never_the_admin_token() {
    let node = Node::start("trust-ticket", &[]).await;
    let events = format!("{}/dashboard/events", node.base);
    // Only the status first: an accepted feed would stream for ever.
    let with_token = node
        .http
        .get(format!("{events}?token={}", node.admin))
        .send()
        .await
        .expect("request");
    assert_eq!(
        with_token.status(),
        StatusCode::UNAUTHORIZED,
        "the admin token in the URL was accepted"
    );
    let body: Value = with_token.json().await.expect("JSON error");
    assert_eq!(body["error"]["code"], "unauthorized");
    let with_bearer = node
        .http
        .get(&events)
        .bearer_auth(&node.admin)
        .send()
        .await
        .expect("request");
    assert_eq!(
        with_bearer.status(),
        StatusCode::UNAUTHORIZED,
        "the feed takes a ticket, not a credential"
    );
    drop(with_bearer);

    let ticket_url = format!("{}/api/v1/admin/stream-ticket", node.base);
    let (status, body) = answer(node.http.post(&ticket_url)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let user = node.user(&common::wallet(35));
    let (status, body) = answer(node.http.post(&ticket_url).bearer_auth(&user)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = answer(node.http.post(&ticket_url).bearer_auth(&node.admin)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ticket = body["ticket"].as_str().expect("ticket").to_string();
    assert!(body["expires_at"].is_string(), "{body}");

    let mut feed = node
        .http
        .get(format!("{events}?ticket={ticket}"))
        .send()
        .await
        .expect("feed");
    assert_eq!(feed.status(), StatusCode::OK);
    let chunk = feed.chunk().await.expect("chunk").expect("first overview");
    assert!(String::from_utf8_lossy(&chunk).contains("event: overview"));
    drop(feed);

    let (status, body) = answer(node.http.get(format!("{events}?ticket={ticket}"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a reused ticket: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("ticket"),
        "{body}"
    );
    let (status, body) = answer(node.http.get(format!("{events}?ticket=made-up"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    node.stop().await;
}
