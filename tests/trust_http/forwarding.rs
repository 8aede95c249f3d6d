//! Rate limits and forwarding headers: a spoofed `X-Forwarded-For` from an untrusted peer,
//! the client a trusted proxy names, IPv6 clients of one /64, and a per-user budget.

use reqwest::StatusCode;
use serde_json::Value;

use crate::{common, harness::Node};

/// Requests to `/api/v1/nodes` as admin with `X-Forwarded-For: xff` until one is refused;
/// how many passed.
async fn until_limited(node: &Node, xff: Option<&str>, token: &str) -> usize {
    for passed in 0..200 {
        let mut r = node
            .http
            .get(format!("{}/api/v1/nodes", node.base))
            .bearer_auth(token);
        if let Some(xff) = xff {
            r = r.header("X-Forwarded-For", xff);
        }
        let status = r.send().await.expect("send").status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return passed;
        }
    }
    panic!("200 requests at 1/s with a burst of 5 were never limited");
}

async fn status_with(node: &Node, xff: &str, token: &str) -> StatusCode {
    node.http
        .get(format!("{}/api/v1/nodes", node.base))
        .bearer_auth(token)
        .header("X-Forwarded-For", xff)
        .send()
        .await
        .expect("send")
        .status()
}

/// Of 5 requests in a row with `X-Forwarded-For: xff`, how many passed: a fresh bucket
/// passes all 5, an empty one at most the token refilled meanwhile (1/s).
async fn passed_of_five(node: &Node, xff: &str, token: &str) -> usize {
    let mut passed = 0;
    for _ in 0..5 {
        if status_with(node, xff, token).await == StatusCode::OK {
            passed += 1;
        }
    }
    passed
}

/// One request per second, bursts of 5.
const LIMITS: [(&str, &str); 2] = [
    ("MERIT_HTTP_RATE_PER_SEC", "1"),
    ("MERIT_HTTP_RATE_BURST", "5"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_gets_no_fresh_bucket() {
    // No trusted proxy: the header is the client's word and is ignored.
    let direct = Node::start("trust-xff-direct", &LIMITS).await;
    let admin = direct.admin.clone();
    let passed = until_limited(&direct, None, &admin).await;
    assert!(passed <= 5, "{passed} passed a burst of 5");
    assert!(
        passed_of_five(&direct, "198.51.100.9", &admin).await <= 1,
        "a spoofed X-Forwarded-For from an untrusted peer got a fresh bucket"
    );
    direct.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn behind_a_trusted_proxy_the_client_it_names_counts_and_nothing_the_client_wrote() {
    // Behind a trusted proxy (the test is the proxy): the client the proxy names counts.
    let mut proxied_env = LIMITS.to_vec();
    proxied_env.push(("MERIT_HTTP_TRUSTED_PROXIES", "127.0.0.1/32, ::1"));
    proxied_env.push(("MERIT_HTTP_USER_RATE_PER_SEC", "1"));
    proxied_env.push(("MERIT_HTTP_USER_RATE_BURST", "3"));
    let proxied = Node::start("trust-xff-proxied", &proxied_env).await;
    let admin = proxied.admin.clone();
    let passed = until_limited(&proxied, Some("203.0.113.1"), &admin).await;
    assert!(passed <= 5, "{passed} passed a burst of 5");
    assert_eq!(
        status_with(&proxied, "203.0.113.2", &admin).await,
        StatusCode::OK,
        "another client behind the trusted proxy has its own bucket"
    );
    // A client prepending a forged address is still keyed by what the proxy appended.
    assert!(
        passed_of_five(&proxied, "192.0.2.77, 203.0.113.1", &admin).await <= 1,
        "a forged left-most X-Forwarded-For entry was believed"
    );
    check_a_passed_through_forwarded_header_is_not_believed(&proxied, &admin).await;
    check_ipv6_clients_of_one_64_share_a_bucket(&proxied, &admin).await;
    check_a_user_token_is_limited_by_its_subject(&proxied).await;
    proxied.stop().await;
}

/// A Forwarded header the proxy passed through untouched (it writes X-Forwarded-For) is
/// the client's word too.
async fn check_a_passed_through_forwarded_header_is_not_believed(proxied: &Node, admin: &str) {
    let mut spoofed = 0;
    for _ in 0..5 {
        let status = proxied
            .http
            .get(format!("{}/api/v1/nodes", proxied.base))
            .bearer_auth(admin)
            .header("X-Forwarded-For", "203.0.113.1")
            .header("Forwarded", "for=192.0.2.99")
            .send()
            .await
            .expect("send")
            .status();
        if status == StatusCode::OK {
            spoofed += 1;
        }
    }
    assert!(
        spoofed <= 1,
        "a client-written Forwarded header was believed"
    );
}

/// IPv6 clients of one /64 share a bucket.
async fn check_ipv6_clients_of_one_64_share_a_bucket(proxied: &Node, admin: &str) {
    let passed = until_limited(proxied, Some("2001:db8:1:2::1"), admin).await;
    assert!(passed <= 5);
    assert!(
        passed_of_five(proxied, "2001:db8:1:2:ffff::9", admin).await <= 1,
        "another address of the same /64 got a fresh bucket"
    );
    assert_eq!(
        status_with(proxied, "2001:db8:1:3::1", admin).await,
        StatusCode::OK,
        "another /64 has its own bucket"
    );
}

/// A user token is limited by its subject, whichever client address it comes from.
async fn check_a_user_token_is_limited_by_its_subject(proxied: &Node) {
    let user = proxied.user(&common::wallet(34));
    let mut refused = false;
    for i in 0..10 {
        let status = proxied
            .http
            .get(format!("{}/api/v1/proposals", proxied.base))
            .bearer_auth(&user)
            .header("X-Forwarded-For", format!("198.51.100.{}", 10 + i))
            .send()
            .await
            .expect("send");
        if status.status() == StatusCode::TOO_MANY_REQUESTS {
            let body: Value = status.json().await.expect("json");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("user"),
                "{body}"
            );
            refused = true;
            break;
        }
    }
    assert!(
        refused,
        "10 requests of one user from 10 addresses passed a per-user burst of 3"
    );
}
