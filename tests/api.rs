//! The HTTP API against a real node (`merit serve` as a child process on RabbitMQ and
//! PostgreSQL, its own vhost and database): every endpoint's success and its bad inputs,
//! authentication and authorisation, readiness while the broker is unreachable, rate
//! limits, and that no configured secret ever appears in a response or the log.

mod common;

use std::time::Duration;

use common::{Backend, NodeProcess, Proxy, TestDb, Vhost};
use merit_mailbox::{Outgoing, RabbitTransport, Transport};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A client of one node.
struct Api {
    base: String,
    http: reqwest::Client,
    jwt_secret: String,
}

impl Api {
    fn new(base: String, jwt_secret: &str) -> Self {
        Self {
            base,
            http: reqwest::Client::new(),
            jwt_secret: jwt_secret.to_string(),
        }
    }

    fn user(&self, wallet: &merit_messages::Address) -> String {
        merit_api::sign(self.jwt_secret.as_bytes(), &wallet.to_string(), 3600)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// Polls `path` until `check` accepts the answer.
    async fn until(
        &self,
        secs: u64,
        path: &str,
        token: &str,
        check: impl Fn(StatusCode, &Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let (status, body) = self.get(path, Some(token)).await;
            if check(status, &body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out on GET {path}: last answer {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Asserts an error answer: the status and a JSON body whose message mentions `needle`.
fn assert_error(answer: &(StatusCode, Value), status: StatusCode, needle: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    let message = answer.1["error"]["message"].as_str().unwrap_or_default();
    assert!(
        answer.1["error"]["code"].is_string(),
        "error code in {}",
        answer.1
    );
    assert!(
        message.contains(needle),
        "error message {message:?} should mention {needle:?}"
    );
}

async fn publisher(vhost: &Vhost) -> RabbitTransport {
    common::producer(vhost, 2).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn rest_endpoints_succeed_and_refuse_bad_input() {
    common::init_crypto();
    let db = TestDb::empty(Backend::Postgres).await;
    let vhost = Vhost::create();
    let (admin, jwt) = common::secrets();
    let log = common::artefacts().join("api-rest.log");
    let _ = std::fs::remove_file(&log);
    let node = NodeProcess::spawn(
        &[
            ("MERIT_DATABASE_URL", db.url.as_str()),
            ("MERIT_AMQP_URL", vhost.url.as_str()),
            ("MERIT_NODE_ID", "api-node"),
            ("MERIT_ADMIN_TOKEN", admin.as_str()),
            ("MERIT_JWT_SECRET", jwt.as_str()),
        ],
        &log,
    );
    let api = Api::new(node.http_url(60), &jwt);
    let alice = common::wallet(1);
    let bob = common::wallet(2);
    let (a, b) = (api.user(&alice), api.user(&bob));
    let adm = admin.as_str();

    // Health, readiness, the OpenAPI document.
    let (status, health) = api.get("/health", None).await;
    assert_eq!(
        (status, health["status"].as_str()),
        (StatusCode::OK, Some("alive"))
    );
    api.until(30, "/ready", adm, |s, _| s == StatusCode::OK)
        .await;
    let (status, doc) = api.get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/api/v1/users/{address}",
        "/api/v1/proposals/{id}/votes",
        "/api/v1/dlq/{id}/replay",
        "/ws",
    ] {
        assert!(doc["paths"][path].is_object(), "OpenAPI documents {path}");
    }

    // Authentication.
    let me = format!("/api/v1/users/{alice}");
    assert_error(
        &api.get(&me, None).await,
        StatusCode::UNAUTHORIZED,
        "missing credential",
    );
    assert_error(
        &api.get(&me, Some("not-a-token")).await,
        StatusCode::UNAUTHORIZED,
        "invalid bearer token",
    );
    let forged = merit_api::sign(
        b"another secret entirely, 32 bytes!",
        &alice.to_string(),
        60,
    );
    assert_error(
        &api.get(&me, Some(&forged)).await,
        StatusCode::UNAUTHORIZED,
        "signature",
    );
    let expired = merit_api::sign(jwt.as_bytes(), &alice.to_string(), -3600);
    assert_error(
        &api.get(&me, Some(&expired)).await,
        StatusCode::UNAUTHORIZED,
        "expired",
    );
    assert_error(
        &api.get("/api/v1/nodes", Some(&a)).await,
        StatusCode::FORBIDDEN,
        "operators only",
    );
    assert_error(
        &api.get("/api/v1/users/0x123", Some(adm)).await,
        StatusCode::BAD_REQUEST,
        "address",
    );
    assert_error(
        &api.get(&me, Some(adm)).await,
        StatusCode::NOT_FOUND,
        "no event",
    );

    // Alice creates a proposal through the API; it is published and applied.
    let starts = chrono::Utc::now() - chrono::Duration::minutes(1);
    let proposal = json!({
        "proposal": "api-p1", "title": "Fund the docs", "description": "Two weeks of writing",
        "starts_at": starts, "ends_at": starts + chrono::Duration::days(3), "quorum": 1000,
    });
    let (status, accepted) = api
        .post("/api/v1/proposals", Some(&a), proposal.clone())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["type"], "governance.proposal.created");
    assert_error(
        &api.post("/api/v1/proposals", Some(adm), proposal.clone())
            .await,
        StatusCode::FORBIDDEN,
        "user token",
    );
    let mut bad = proposal.clone();
    bad["proposal"] = json!("api-p2");
    bad["ends_at"] = json!(starts - chrono::Duration::days(1));
    assert_error(
        &api.post("/api/v1/proposals", Some(&a), bad).await,
        StatusCode::BAD_REQUEST,
        "ends_at",
    );
    let mut unknown = proposal.clone();
    unknown["colour"] = json!("red");
    assert_error(
        &api.post("/api/v1/proposals", Some(&a), unknown).await,
        StatusCode::BAD_REQUEST,
        "colour",
    );
    let mut huge = proposal.clone();
    huge["description"] = json!("x".repeat(70 * 1024));
    assert_error(
        &api.post("/api/v1/proposals", Some(&a), huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "larger than",
    );
    // Pending until the deadline timer opens it (its `starts_at` has passed).
    let p = api
        .until(30, "/api/v1/proposals/api-p1", &a, |s, v| {
            s == StatusCode::OK && v["status"] == "active"
        })
        .await;
    assert_eq!(p["creator"], alice.to_string());
    assert_error(
        &api.post("/api/v1/proposals", Some(&a), proposal).await,
        StatusCode::CONFLICT,
        "exists",
    );
    assert_error(
        &api.get("/api/v1/proposals/nope", Some(&a)).await,
        StatusCode::NOT_FOUND,
        "no such proposal",
    );
    let (status, list) = api.get("/api/v1/proposals?status=active", Some(&b)).await;
    assert_eq!(
        (status, list["total"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{list}"
    );

    // Bob votes; the vote is counted with its weight; a second vote is refused.
    let (status, _) = api
        .post(
            "/api/v1/proposals/api-p1/votes",
            Some(&b),
            json!({"choice": "for"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_error(
        &api.post(
            "/api/v1/proposals/api-p1/votes",
            Some(&b),
            json!({"choice": "maybe"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "choice",
    );
    assert_error(
        &api.post(
            "/api/v1/proposals/nope/votes",
            Some(&b),
            json!({"choice": "for"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "no such proposal",
    );
    let votes = api
        .until(30, "/api/v1/proposals/api-p1/votes", &b, |s, v| {
            s == StatusCode::OK && v["total"] == 1
        })
        .await;
    assert_eq!(votes["items"][0]["voter"], bob.to_string());
    assert_eq!(votes["items"][0]["weight"], 1000);
    assert_error(
        &api.post(
            "/api/v1/proposals/api-p1/votes",
            Some(&b),
            json!({"choice": "against"}),
        )
        .await,
        StatusCode::CONFLICT,
        "first vote is final",
    );

    // Alice's first proposal unlocks an achievement, minted on the dev chain.
    let achievements = api
        .until(60, &format!("{me}/achievements"), &a, |s, v| {
            s == StatusCode::OK && v["items"][0]["state"] == "minted"
        })
        .await;
    assert_eq!(achievements["items"][0]["rule"], "first-proposal");
    let token = achievements["items"][0]["token"]
        .as_str()
        .expect("token")
        .to_string();
    let nfts = api
        .until(30, &format!("{me}/nfts"), &a, |s, v| {
            s == StatusCode::OK && v["total"] == 1
        })
        .await;
    assert_eq!(nfts["items"][0]["token"], token.as_str());
    let (status, nft) = api.get(&format!("/api/v1/nfts/{token}"), Some(&b)).await;
    assert_eq!(
        (status, nft["owner"].as_str()),
        (StatusCode::OK, Some(alice.to_string().as_str()))
    );
    assert_error(
        &api.get("/api/v1/nfts/abc", Some(&b)).await,
        StatusCode::BAD_REQUEST,
        "token id",
    );
    assert_error(
        &api.get("/api/v1/nfts/12345", Some(&b)).await,
        StatusCode::NOT_FOUND,
        "no such token",
    );
    let user = api
        .until(30, &me, &a, |s, v| {
            s == StatusCode::OK && v["benefits"]["multiplier_bps"] == 11000
        })
        .await;
    assert_eq!(user["proposals_created"], 1);
    // Her notification log: unlocked, minted, benefits changed, in order without gaps.
    let log_page = api
        .until(30, &format!("{me}/notifications"), &a, |_, v| {
            v["items"].as_array().is_some_and(|i| i.len() >= 3)
        })
        .await;
    let kinds: Vec<&str> = log_page["items"]
        .as_array()
        .expect("items")
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
    let seqs: Vec<u64> = log_page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|n| n["seq"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    // A user reads only their own data.
    assert_error(&api.get(&me, Some(&b)).await, StatusCode::FORBIDDEN, "own");
    assert_error(
        &api.get(&format!("{me}/notifications"), Some(&b)).await,
        StatusCode::FORBIDDEN,
        "own",
    );
    assert_error(
        &api.get(&format!("{me}/achievements"), Some(&b)).await,
        StatusCode::FORBIDDEN,
        "own",
    );

    // Pagination bounds.
    assert_error(
        &api.get("/api/v1/proposals?page=0", Some(&a)).await,
        StatusCode::BAD_REQUEST,
        "page",
    );
    assert_error(
        &api.get("/api/v1/proposals?page_size=501", Some(&a)).await,
        StatusCode::BAD_REQUEST,
        "page_size",
    );
    assert_error(
        &api.get("/api/v1/proposals?page=x", Some(&a)).await,
        StatusCode::BAD_REQUEST,
        "query",
    );

    // Sagas.
    let (status, sagas) = api.get("/api/v1/sagas?state=completed", Some(adm)).await;
    assert_eq!(status, StatusCode::OK, "{sagas}");
    assert_eq!(sagas["total"], 1);
    let saga_id = sagas["items"][0]["id"]
        .as_str()
        .expect("saga id")
        .to_string();
    let (status, saga) = api
        .get(&format!("/api/v1/sagas/{saga_id}"), Some(adm))
        .await;
    assert_eq!(status, StatusCode::OK);
    let steps: Vec<&str> = saga["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(steps, ["reserve", "mint", "register", "confirm"]);
    assert_error(
        &api.post(
            &format!("/api/v1/sagas/{saga_id}/retry"),
            Some(adm),
            json!({}),
        )
        .await,
        StatusCode::CONFLICT,
        "failed or stuck",
    );
    assert_error(
        &api.get("/api/v1/sagas/not-a-uuid", Some(adm)).await,
        StatusCode::BAD_REQUEST,
        "saga id",
    );
    assert_error(
        &api.get(
            &format!("/api/v1/sagas/{}", uuid::Uuid::new_v4()),
            Some(adm),
        )
        .await,
        StatusCode::NOT_FOUND,
        "no such saga",
    );
    assert_error(
        &api.get("/api/v1/sagas?state=sleeping", Some(adm)).await,
        StatusCode::BAD_REQUEST,
        "state",
    );

    // Dead letters: a malformed message, listed, inspected, replayed (it fails again and
    // comes back under a new id), discarded.
    let producer = publisher(&vhost).await;
    let mut malformed = Outgoing::new("governance.vote.cast", "bad-1", &b"{not json"[..]);
    malformed
        .headers
        .insert("merit-proposal".to_string(), "api-p1".to_string());
    producer.publish(vec![malformed]).await.expect("publish");
    let dlq = api
        .until(30, "/api/v1/dlq", adm, |s, v| {
            s == StatusCode::OK && v["total"] == 1 && v["items"][0]["id"].is_string()
        })
        .await;
    let id = dlq["items"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{dlq}"))
        .to_string();
    assert_eq!(dlq["items"][0]["reason_class"], "malformed");
    let (status, one) = api.get(&format!("/api/v1/dlq/{id}"), Some(adm)).await;
    assert_eq!(
        (status, one["body"].as_str()),
        (StatusCode::OK, Some("{not json"))
    );
    let (status, _) = api
        .post(&format!("/api/v1/dlq/{id}/replay"), Some(adm), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let again = api
        .until(30, "/api/v1/dlq", adm, |_, v| {
            v["total"] == 1 && v["items"][0]["id"].is_string() && v["items"][0]["id"] != id.as_str()
        })
        .await;
    let id2 = again["items"][0]["id"].as_str().expect("id").to_string();
    assert_error(
        &api.call(
            Method::DELETE,
            &format!("/api/v1/dlq/{id}"),
            Some(adm),
            None,
        )
        .await,
        StatusCode::CONFLICT,
        "already replayed",
    );
    assert_error(
        &api.call(Method::DELETE, "/api/v1/dlq/no-such-id", Some(adm), None)
            .await,
        StatusCode::NOT_FOUND,
        "no such dead letter",
    );
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/api/v1/dlq/{id2}"),
            Some(adm),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    api.until(30, "/api/v1/dlq", adm, |_, v| v["total"] == 0)
        .await;
    assert_error(
        &api.get("/api/v1/dlq", Some(&a)).await,
        StatusCode::FORBIDDEN,
        "operators only",
    );

    // Config: current, a refused document, a change, history, diff, rollback.
    let (status, current) = api.get("/api/v1/config", Some(adm)).await;
    assert_eq!(
        (status, current["version"].as_u64()),
        (StatusCode::OK, Some(0))
    );
    let mut doc = current["document"].clone();
    doc["limits"]["max_boosting_nfts"] = json!(3);
    let change = json!({"document": doc, "author": "ops", "reason": "fewer boosts"});
    let mut broken = change.clone();
    broken["document"]["rules"][0]["when"] =
        json!({"count": {"activity": "dancing", "at_least": 1}});
    assert_error(
        &api.post("/api/v1/config", Some(adm), broken).await,
        StatusCode::BAD_REQUEST,
        "rules[0]",
    );
    // A document, or a whole body, written as a JSON array: serde alone would read `[]` as
    // a document of defaults and store it (schemathesis found this).
    let mut as_array = change.clone();
    as_array["document"] = json!([]);
    assert_error(
        &api.post("/api/v1/config", Some(adm), as_array).await,
        StatusCode::BAD_REQUEST,
        "expected struct",
    );
    assert_error(
        &api.post(
            "/api/v1/config/rollback",
            Some(adm),
            json!([0, "ops", "positional"]),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "expected struct",
    );
    let (status, v1) = api.post("/api/v1/config", Some(adm), change).await;
    assert_eq!(
        (status, v1["version"].as_u64()),
        (StatusCode::CREATED, Some(1)),
        "{v1}"
    );
    let (status, history) = api.get("/api/v1/config/versions", Some(adm)).await;
    assert_eq!(
        (status, history["total"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    let (status, diff) = api.get("/api/v1/config/diff?from=0&to=1", Some(adm)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(diff.to_string().contains("max_boosting_nfts"), "{diff}");
    assert_error(
        &api.get("/api/v1/config/diff?from=0", Some(adm)).await,
        StatusCode::BAD_REQUEST,
        "to",
    );
    assert_error(
        &api.get("/api/v1/config/versions/99", Some(adm)).await,
        StatusCode::NOT_FOUND,
        "99",
    );
    let (status, v2) = api
        .post(
            "/api/v1/config/rollback",
            Some(adm),
            json!({"version": 0, "author": "ops", "reason": "undo"}),
        )
        .await;
    assert_eq!(
        (status, v2["rollback_of"].as_u64()),
        (StatusCode::CREATED, Some(0))
    );
    assert_error(
        &api.post(
            "/api/v1/config/rollback",
            Some(adm),
            json!({"version": 42, "author": "ops", "reason": "?"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "42",
    );

    // Nodes, overview, metrics, the on-demand full sync, unknown routes.
    let (status, nodes) = api.get("/api/v1/nodes", Some(adm)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(nodes["items"][0]["node_id"], "api-node");
    let (status, overview) = api.get("/api/v1/admin/overview", Some(adm)).await;
    assert_eq!(
        (status, overview["node_id"].as_str()),
        (StatusCode::OK, Some("api-node"))
    );
    let (status, report) = api.post("/api/v1/chain/sync", Some(adm), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert!(report["checked"].as_u64() >= Some(1), "{report}");
    assert_eq!(report["drifted"], 0);
    let metrics = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "merit_resident_actors",
        "merit_mailbox_depth",
        "merit_dead_letters_stored{state=\"waiting\"}",
        "merit_sagas",
        "merit_outbox_pending",
        "merit_cache_hit_ratio",
        "merit_chain_checkpoint_lag_blocks",
        "merit_actor_turns_total",
        "merit_http_request_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "/metrics has {name}");
    }
    // Requests are counted per route template, never per raw path.
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("merit_http_requests_total")
                && l.contains("route=\"/api/v1/proposals/{id}\"")
                && l.contains("status=\"200\"")),
        "per-route request counts:\n{metrics}"
    );
    // A request id: the caller's (a plain token) is echoed, anything else is replaced.
    for (sent, echoed) in [("trace-me-42", true), ("no spaces allowed", false)] {
        let answer = api
            .http
            .get(format!("{}/health", api.base))
            .header("X-Request-Id", sent)
            .send()
            .await
            .expect("health");
        let id = answer
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .expect("every answer has a request id")
            .to_string();
        assert_eq!(id == sent, echoed, "{sent:?} -> {id:?}");
        let logged = std::fs::read_to_string(&log).expect("node log");
        assert!(logged.contains(&id), "the access log names request {id}");
    }
    assert_error(
        &api.get("/api/v1/nothing-here", Some(adm)).await,
        StatusCode::NOT_FOUND,
        "no route",
    );

    node.stop();
    vhost.delete();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn ready_turns_503_naming_rabbitmq_while_the_broker_is_unreachable() {
    common::init_crypto();
    let db = TestDb::empty(Backend::Postgres).await;
    let vhost = Vhost::create();
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let url = vhost.url.replace(":5672/", &format!(":{}/", proxy.port));
    let (admin, jwt) = common::secrets();
    let log = common::artefacts().join("api-ready.log");
    let _ = std::fs::remove_file(&log);
    let node = NodeProcess::spawn(
        &[
            ("MERIT_DATABASE_URL", db.url.as_str()),
            ("MERIT_AMQP_URL", url.as_str()),
            ("MERIT_NODE_ID", "ready-node"),
            ("MERIT_ADMIN_TOKEN", admin.as_str()),
            ("MERIT_JWT_SECRET", jwt.as_str()),
            // A Redis nobody answers on: the node absorbs it (cache from memory and the
            // database, registration in the database), so it is degraded, not unready.
            ("MERIT_REDIS_URL", "redis://127.0.0.1:1/"),
        ],
        &log,
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn bursts_are_limited_and_no_secret_appears_in_responses_or_the_log() {
    common::init_crypto();
    let db = TestDb::empty(Backend::Postgres).await;
    let (admin, jwt) = common::secrets();
    let minter = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    // trust auth ignores the password, so it can be a secret to look for.
    let password = format!("pw{}", uuid::Uuid::new_v4().simple());
    let db_url = db
        .url
        .replacen("postgres@", &format!("postgres:{password}@"), 1);
    assert_ne!(
        db_url, db.url,
        "the test database URL has a user to add a password to"
    );
    let log = common::artefacts().join("api-secrets.log");
    let _ = std::fs::remove_file(&log);
    let node = NodeProcess::spawn(
        &[
            ("MERIT_DATABASE_URL", db_url.as_str()),
            ("MERIT_NODE_ID", "secret-node"),
            ("MERIT_ADMIN_TOKEN", admin.as_str()),
            ("MERIT_JWT_SECRET", jwt.as_str()),
            ("MERIT_MINTER_KEY", minter),
            ("MERIT_LOG_FILTER", "debug,sqlx=info,h2=info,hyper=info"),
        ],
        &log,
    );
    let api = Api::new(node.http_url(60), &jwt);
    api.until(30, "/ready", &admin, |s, _| s == StatusCode::OK)
        .await;
    let user = api.user(&common::wallet(7));
    let mut seen = String::new();
    for (path, token) in [
        ("/health", None),
        ("/ready", None),
        ("/metrics", None),
        ("/openapi.json", None),
        ("/dashboard", None),
        ("/api/v1/admin/overview", Some(admin.as_str())),
        ("/api/v1/nodes", Some(admin.as_str())),
        ("/api/v1/config", Some(admin.as_str())),
        ("/api/v1/config/versions", Some(admin.as_str())),
        ("/api/v1/sagas", Some(admin.as_str())),
        ("/api/v1/dlq", Some(admin.as_str())),
        ("/api/v1/proposals", Some(user.as_str())),
        ("/api/v1/nodes", Some(user.as_str())),
        ("/api/v1/nodes", Some("wrong-token")),
        ("/api/v1/nodes", Some(&admin[..admin.len() - 1])),
        ("/api/v1/users/0xnot", Some(admin.as_str())),
    ] {
        let (status, body) = api.get(path, token).await;
        seen.push_str(&format!("{path} {status} {body}\n"));
    }
    let (status, ticket) = api
        .post("/api/v1/admin/stream-ticket", Some(&admin), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{ticket}");
    seen.push_str(&format!("stream-ticket {status} {ticket}\n"));
    let ticket = ticket["ticket"].as_str().expect("ticket");
    let feed = api
        .http
        .get(format!("{}/dashboard/events?ticket={ticket}", api.base))
        .send()
        .await
        .expect("feed");
    let mut feed = feed;
    let chunk = feed.chunk().await.expect("chunk").expect("first overview");
    seen.push_str(&String::from_utf8_lossy(&chunk));
    assert!(seen.contains("event: overview"), "the feed sends overviews");

    // A burst past the budget is refused with 429 and Retry-After; probes are not limited.
    let mut limited = 0;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (http, url) = (api.http.clone(), format!("{}/api/v1/nodes", api.base));
        let admin = admin.clone();
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

    node.stop();
    let logged = std::fs::read_to_string(&log).expect("log");
    for (name, secret) in [
        ("admin token", admin.as_str()),
        ("JWT secret", jwt.as_str()),
        ("minter key", &minter[2..]),
        ("database password", password.as_str()),
    ] {
        assert!(!seen.contains(secret), "the {name} appears in a response");
        assert!(!logged.contains(secret), "the {name} appears in the log");
    }
    db.cleanup().await;
}
