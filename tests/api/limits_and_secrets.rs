//! A burst is limited with 429 and `Retry-After` (probes never are); no configured secret
//! appears in a response or the log.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    common::{self, Backend, NodeProcess, TestDb},
    harness::Api,
};

/// anvil's second dev key, as the node's minter key: a secret to look for.
const MINTER_KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// Paths anyone may read.
const PUBLIC_PATHS: [&str; 5] = [
    "/health",
    "/ready",
    "/metrics",
    "/openapi.json",
    "/dashboard",
];

/// Paths an operator reads.
const OPERATOR_PATHS: [&str; 7] = [
    "/api/v1/admin/overview",
    "/api/v1/nodes",
    "/api/v1/config",
    "/api/v1/config/versions",
    "/api/v1/sagas",
    "/api/v1/dlq",
    "/api/v1/users/0xnot",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn bursts_are_limited_and_no_secret_appears_in_responses_or_the_log() {
    common::init_crypto();
    let db = TestDb::empty(Backend::Postgres).await;
    let (admin, jwt) = common::secrets();
    // trust auth ignores the password, so it can be a secret to look for.
    let password = format!("pw{}", uuid::Uuid::new_v4().simple());
    let db_url = db
        .url
        .replacen("postgres@", &format!("postgres:{password}@"), 1);
    assert_ne!(
        db_url, db.url,
        "the test database URL has a user to add a password to"
    );
    let log = common::fresh_log("api-secrets.log");
    let extra = [
        ("MERIT_JWT_SECRET", jwt.as_str()),
        ("MERIT_MINTER_KEY", MINTER_KEY),
        ("MERIT_LOG_FILTER", "debug,sqlx=info,h2=info,hyper=info"),
    ];
    let env = common::serve_env(&db_url, None, "secret-node", &admin, &extra);
    let node = NodeProcess::spawn(&env, &log);
    let api = Api::new(node.http_url(60), &jwt);
    api.until(30, "/ready", &admin, |s, _| s == StatusCode::OK)
        .await;
    let seen = answers_to_every_kind_of_caller(&api, &admin).await;
    check_a_burst_is_limited_with_retry_after_but_probes_are_not(&api, &admin).await;

    node.stop();
    let logged = std::fs::read_to_string(&log).expect("log");
    for (name, secret) in [
        ("admin token", admin.as_str()),
        ("JWT secret", jwt.as_str()),
        ("minter key", &MINTER_KEY[2..]),
        ("database password", password.as_str()),
    ] {
        assert!(!seen.contains(secret), "the {name} appears in a response");
        assert!(!logged.contains(secret), "the {name} appears in the log");
    }
    db.cleanup().await;
}

/// Every answer to anonymous, operator, user and bad-token callers, a stream ticket and
/// the first chunk of the dashboard feed, as one text.
async fn answers_to_every_kind_of_caller(api: &Api, admin: &str) -> String {
    let user = api.user(&common::wallet(7));
    let mut calls: Vec<(&str, Option<&str>)> = PUBLIC_PATHS.iter().map(|p| (*p, None)).collect();
    calls.extend(OPERATOR_PATHS.iter().map(|p| (*p, Some(admin))));
    calls.extend([
        ("/api/v1/proposals", Some(user.as_str())),
        ("/api/v1/nodes", Some(user.as_str())),
        ("/api/v1/nodes", Some("wrong-token")),
        ("/api/v1/nodes", Some(&admin[..admin.len() - 1])),
    ]);
    let mut seen = String::new();
    for (path, token) in calls {
        let (status, body) = api.get(path, token).await;
        seen.push_str(&format!("{path} {status} {body}\n"));
    }
    let (status, ticket) = api
        .post("/api/v1/admin/stream-ticket", Some(admin), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{ticket}");
    seen.push_str(&format!("stream-ticket {status} {ticket}\n"));
    let ticket = ticket["ticket"].as_str().expect("ticket");
    let mut feed = api
        .http
        .get(format!("{}/dashboard/events?ticket={ticket}", api.base))
        .send()
        .await
        .expect("feed");
    let chunk = feed.chunk().await.expect("chunk").expect("first overview");
    seen.push_str(&String::from_utf8_lossy(&chunk));
    assert!(seen.contains("event: overview"), "the feed sends overviews");
    seen
}

/// A burst past the budget is refused with 429 and Retry-After; probes are not limited.
async fn check_a_burst_is_limited_with_retry_after_but_probes_are_not(api: &Api, admin: &str) {
    let mut limited = 0;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (http, url) = (api.http.clone(), format!("{}/api/v1/nodes", api.base));
        let admin = admin.to_string();
        tasks.push(tokio::spawn(async move {
            let mut refused = Vec::new();
            for _ in 0..120 {
                let r = http
                    .get(&url)
                    .bearer_auth(&admin)
                    .send()
                    .await
                    .expect("send");
                if r.status() == StatusCode::TOO_MANY_REQUESTS {
                    let retry = r.headers().get("retry-after").is_some();
                    refused.push((retry, r.json::<Value>().await.expect("json")));
                }
            }
            refused
        }));
    }
    for t in tasks {
        for (retry_after, body) in t.await.expect("task") {
            assert!(retry_after, "429 carries Retry-After");
            assert_eq!(body["error"]["code"], "rate_limited");
            limited += 1;
        }
    }
    assert!(limited > 0, "960 requests in a burst were limited");
    assert_eq!(
        api.get("/health", None).await.0,
        StatusCode::OK,
        "probes are never limited"
    );
}
