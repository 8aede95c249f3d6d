//! `/ready` while the broker is unreachable: 503 naming RabbitMQ, liveness unaffected, 200
//! again once it is back.

use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    common::{self, Backend, NodeProcess, Proxy, TestDb, Vhost},
    harness::Api,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn ready_turns_503_naming_rabbitmq_while_the_broker_is_unreachable() {
    common::init_crypto();
    let db = TestDb::empty(Backend::Postgres).await;
    let vhost = Vhost::create();
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let url = vhost.url.replace(":5672/", &format!(":{}/", proxy.port));
    let (admin, jwt) = common::secrets();
    let log = common::fresh_log("api-ready.log");
    let extra = [
        ("MERIT_JWT_SECRET", jwt.as_str()),
        // A Redis nobody answers on: the node absorbs it (cache from memory and the
        // database, registration in the database), so it is degraded, not unready.
        ("MERIT_REDIS_URL", "redis://127.0.0.1:1/"),
    ];
    let env = common::serve_env(&db.url, Some(&url), "ready-node", &admin, &extra);
    let node = NodeProcess::spawn(&env, &log);
    let api = Api::new(node.http_url(60), &jwt);
    let up = api
        .until(30, "/ready", &admin, |s, b| {
            s == StatusCode::OK && b["degraded"] == serde_json::json!(["redis"])
        })
        .await;
    assert_eq!(up["failing"], serde_json::json!([]), "{up}");
    proxy.down();
    let down = api
        .until(30, "/ready", &admin, |s, _| {
            s == StatusCode::SERVICE_UNAVAILABLE
        })
        .await;
    let failing: Vec<&str> = down["failing"]
        .as_array()
        .expect("failing")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(failing.contains(&"rabbitmq"), "names RabbitMQ: {down}");
    assert!(
        !failing.contains(&"database"),
        "the database is fine: {down}"
    );
    // Liveness is not readiness.
    assert_eq!(api.get("/health", None).await.0, StatusCode::OK);
    proxy.up();
    api.until(60, "/ready", &admin, |s, _| s == StatusCode::OK)
        .await;
    node.stop();
    vhost.delete();
    db.cleanup().await;
}
