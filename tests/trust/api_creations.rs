//! Creations through the API: bad fields refused naming them, a limit per user and day.

use chrono::Utc;
use serde_json::{json, Value};

use crate::{
    common,
    harness::{Node, WAIT},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn api_creations_refuse_bad_fields_naming_them_and_are_limited_per_user_and_day() {
    let node = Node::start("trust-api").await;
    check_api_creations_with_a_nul_a_blink_or_no_quorum_are_400(&node).await;
    check_api_creations_are_limited_per_user_and_day(&node).await;
    node.finish().await;
}

/// A `POST /api/v1/proposals` as the user of `token`.
fn create_via_api(node: &Node, token: &str, body: &Value) -> reqwest::RequestBuilder {
    node.http
        .post(format!("{}/api/v1/proposals", node.served.base))
        .bearer_auth(token)
        .json(body)
}

/// Through the API: a NUL is a 400 that names the field, a refused window too.
async fn check_api_creations_with_a_nul_a_blink_or_no_quorum_are_400(node: &Node) {
    let token = merit_api::sign(
        node.served.jwt.as_bytes(),
        &common::wallet(8).to_string(),
        600,
    );
    let now = Utc::now();
    for (body, needle) in [
        (
            json!({"proposal": "api-nul", "title": "a\u{0}b", "starts_at": now,
                   "ends_at": now + chrono::Duration::days(1), "quorum": 1000}),
            "control character",
        ),
        (
            json!({"proposal": "api-blink", "title": "t", "starts_at": now,
                   "ends_at": now + chrono::Duration::seconds(1), "quorum": 1000}),
            "ends_at",
        ),
        (
            json!({"proposal": "api-zero", "title": "t", "starts_at": now,
                   "ends_at": now + chrono::Duration::days(1), "quorum": 0}),
            "quorum",
        ),
    ] {
        let resp = create_via_api(node, &token, &body)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let answer: Value = resp.json().await.expect("json");
        println!("{status} {answer}");
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{message}");
    }
}

/// Creations through the API are limited per user and day (20 by default): the limit's
/// worth is accepted, the next one is 429 naming it.
async fn check_api_creations_are_limited_per_user_and_day(node: &Node) {
    let limit = 20;
    let farmer = merit_api::sign(
        node.served.jwt.as_bytes(),
        &common::wallet(10).to_string(),
        600,
    );
    let create = |i: u32| {
        let now = Utc::now();
        create_via_api(
            node,
            &farmer,
            &json!({"proposal": format!("daily-{i}"), "title": "t", "starts_at": now,
                    "ends_at": now + chrono::Duration::days(1), "quorum": 1000}),
        )
        .send()
    };
    for i in 0..limit {
        let resp = create(i).await.expect("request");
        assert_eq!(resp.status(), reqwest::StatusCode::ACCEPTED, "creation {i}");
    }
    common::eventually(WAIT, "the day's creations exist", || async {
        let mut all = true;
        for i in 0..limit {
            all &= node.status(&format!("daily-{i}")).await.is_some();
        }
        all
    })
    .await;
    let resp = create(limit).await.expect("request");
    let status = resp.status();
    let answer: Value = resp.json().await.expect("json");
    assert_eq!(status, reqwest::StatusCode::TOO_MANY_REQUESTS, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("at most 20"), "{message}");
}
