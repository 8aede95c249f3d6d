//! The HTTP API against a real node (`merit serve` as a child process on RabbitMQ and
//! PostgreSQL, its own vhost and database): every endpoint's success and its bad inputs,
//! authentication and authorisation, readiness while the broker is unreachable, rate
//! limits, and that no configured secret ever appears in a response or the log.

mod common;

use std::time::Duration;

use common::{Backend, NodeProcess, Proxy, ServedNode, TestDb, Vhost};
use merit_mailbox::{Outgoing, Transport};
use merit_messages::Address;
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
        common::answer(req).await
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

/// Asserts each `(path, token, status, needle)`: a GET refused as [`assert_error`] checks.
async fn assert_gets_refused(api: &Api, cases: &[(&str, Option<&str>, StatusCode, &str)]) {
    for &(path, token, status, needle) in cases {
        assert_error(&api.get(path, token).await, status, needle);
    }
}

/// Asserts that `POST path` with `body` is refused as [`assert_error`] checks.
async fn assert_post_refused(
    api: &Api,
    (path, token): (&str, &str),
    body: Value,
    status: StatusCode,
    needle: &str,
) {
    assert_error(&api.post(path, Some(token), body).await, status, needle);
}

/// One node of the REST tests (ready), its client, and two users with their tokens.
struct Rest {
    node: ServedNode,
    api: Api,
    alice: Address,
    bob: Address,
    a: String,
    b: String,
}

impl Rest {
    async fn start(log: &str) -> Self {
        let node = ServedNode::start("api-node", log, &[]).await;
        let api = Api::new(node.base.clone(), &node.jwt);
        api.until(30, "/ready", &node.admin, |s, _| s == StatusCode::OK)
            .await;
        let (alice, bob) = (common::wallet(1), common::wallet(2));
        let (a, b) = (api.user(&alice), api.user(&bob));
        Self {
            node,
            api,
            alice,
            bob,
            a,
            b,
        }
    }

    fn adm(&self) -> &str {
        &self.node.admin
    }

    /// Alice's user path.
    fn me(&self) -> String {
        format!("/api/v1/users/{}", self.alice)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn probes_the_openapi_document_request_ids_and_unknown_routes_answer() {
    let ctx = Rest::start("api-probes.log").await;
    check_probes_and_openapi(&ctx).await;
    check_request_ids_are_echoed_or_replaced_and_logged(&ctx).await;
    assert_error(
        &ctx.api.get("/api/v1/nothing-here", Some(ctx.adm())).await,
        StatusCode::NOT_FOUND,
        "no route",
    );
    ctx.node.finish().await;
}

async fn check_probes_and_openapi(ctx: &Rest) {
    let api = &ctx.api;
    let (status, health) = api.get("/health", None).await;
    assert_eq!(
        (status, health["status"].as_str()),
        (StatusCode::OK, Some("alive"))
    );
    api.until(30, "/ready", ctx.adm(), |s, _| s == StatusCode::OK)
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
}

/// A request id: the caller's (a plain token) is echoed, anything else is replaced.
async fn check_request_ids_are_echoed_or_replaced_and_logged(ctx: &Rest) {
    let api = &ctx.api;
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
        let logged = std::fs::read_to_string(&ctx.node.log).expect("node log");
        assert!(logged.contains(&id), "the access log names request {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn bad_credentials_and_out_of_range_pages_are_refused_naming_what_is_wrong() {
    let ctx = Rest::start("api-auth.log").await;
    let (api, a, adm) = (&ctx.api, ctx.a.as_str(), ctx.adm());
    let me = ctx.me();
    let alice = ctx.alice.to_string();
    let forged = merit_api::sign(b"another secret entirely, 32 bytes!", &alice, 60);
    let expired = merit_api::sign(ctx.node.jwt.as_bytes(), &alice, -3600);
    assert_gets_refused(
        api,
        &[
            (&me, None, StatusCode::UNAUTHORIZED, "missing credential"),
            (
                &me,
                Some("not-a-token"),
                StatusCode::UNAUTHORIZED,
                "invalid bearer token",
            ),
            (&me, Some(&forged), StatusCode::UNAUTHORIZED, "signature"),
            (&me, Some(&expired), StatusCode::UNAUTHORIZED, "expired"),
            (
                "/api/v1/nodes",
                Some(a),
                StatusCode::FORBIDDEN,
                "operators only",
            ),
            (
                "/api/v1/users/0x123",
                Some(adm),
                StatusCode::BAD_REQUEST,
                "address",
            ),
            (&me, Some(adm), StatusCode::NOT_FOUND, "no event"),
        ],
    )
    .await;
    assert_gets_refused(
        api,
        &[
            (
                "/api/v1/proposals?page=0",
                Some(a),
                StatusCode::BAD_REQUEST,
                "page",
            ),
            (
                "/api/v1/proposals?page_size=501",
                Some(a),
                StatusCode::BAD_REQUEST,
                "page_size",
            ),
            (
                "/api/v1/proposals?page=x",
                Some(a),
                StatusCode::BAD_REQUEST,
                "query",
            ),
        ],
    )
    .await;
    ctx.node.finish().await;
}

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

/// The achievement's mint saga: completed, its steps, not retried, bad ids refused.
async fn check_the_mint_saga_is_listed_and_not_retried(ctx: &Rest) {
    let (api, adm) = (&ctx.api, ctx.adm());
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
    let retry = format!("/api/v1/sagas/{saga_id}/retry");
    let conflict = StatusCode::CONFLICT;
    assert_post_refused(api, (&retry, adm), json!({}), conflict, "failed or stuck").await;
    let unknown = format!("/api/v1/sagas/{}", uuid::Uuid::new_v4());
    assert_gets_refused(
        api,
        &[
            (
                "/api/v1/sagas/not-a-uuid",
                Some(adm),
                StatusCode::BAD_REQUEST,
                "saga id",
            ),
            (&unknown, Some(adm), StatusCode::NOT_FOUND, "no such saga"),
            (
                "/api/v1/sagas?state=sleeping",
                Some(adm),
                StatusCode::BAD_REQUEST,
                "state",
            ),
        ],
    )
    .await;
}

/// Dead letters: a malformed message, listed, inspected, replayed (it fails again and
/// comes back under a new id), discarded.
async fn check_a_dead_letter_is_listed_inspected_and_replayed(ctx: &Rest) {
    let (api, adm) = (&ctx.api, ctx.adm());
    let producer = common::producer(&ctx.node.vhost, 2).await;
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
    check_dead_letters_are_discarded_once(ctx, &id, &id2).await;
}

/// `replayed` cannot be discarded, nor an unknown id; `waiting` can; users see none.
async fn check_dead_letters_are_discarded_once(ctx: &Rest, replayed: &str, waiting: &str) {
    let (api, adm) = (&ctx.api, Some(ctx.adm()));
    let delete = |id: String| async move {
        let path = format!("/api/v1/dlq/{id}");
        api.call(Method::DELETE, &path, adm, None).await
    };
    let conflict = StatusCode::CONFLICT;
    assert_error(&delete(replayed.into()).await, conflict, "already replayed");
    let missing = delete("no-such-id".into()).await;
    assert_error(&missing, StatusCode::NOT_FOUND, "no such dead letter");
    assert_eq!(delete(waiting.into()).await.0, StatusCode::OK);
    api.until(30, "/api/v1/dlq", ctx.adm(), |_, v| v["total"] == 0)
        .await;
    let a = Some(ctx.a.as_str());
    assert_gets_refused(
        api,
        &[("/api/v1/dlq", a, StatusCode::FORBIDDEN, "operators only")],
    )
    .await;
}

/// Nodes, overview, the on-demand full sync.
async fn check_nodes_overview_and_chain_sync(ctx: &Rest) {
    let (api, adm) = (&ctx.api, Some(ctx.adm()));
    let (status, nodes) = api.get("/api/v1/nodes", adm).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(nodes["items"][0]["node_id"], "api-node");
    let (status, overview) = api.get("/api/v1/admin/overview", adm).await;
    assert_eq!(
        (status, overview["node_id"].as_str()),
        (StatusCode::OK, Some("api-node"))
    );
    let (status, report) = api.post("/api/v1/chain/sync", adm, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert!(report["checked"].as_u64() >= Some(1), "{report}");
    assert_eq!(report["drifted"], 0);
}

async fn check_metrics_name_every_series_and_count_per_route(ctx: &Rest) {
    let api = &ctx.api;
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn config_endpoints_change_diff_and_roll_back_and_refuse_bad_documents() {
    let ctx = Rest::start("api-config.log").await;
    let change = check_bad_config_documents_are_refused(&ctx).await;
    check_a_config_change_is_versioned_diffed_and_rolled_back(&ctx, change).await;
    ctx.node.finish().await;
}

/// Config: current, refused documents; returns a good change (fewer boosts).
async fn check_bad_config_documents_are_refused(ctx: &Rest) -> Value {
    let (api, adm) = (&ctx.api, ctx.adm());
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
    let (config, bad) = (("/api/v1/config", adm), StatusCode::BAD_REQUEST);
    assert_post_refused(api, config, broken, bad, "rules[0]").await;
    // A document, or a whole body, written as a JSON array: serde alone would read `[]` as
    // a document of defaults and store it (schemathesis found this).
    let mut as_array = change.clone();
    as_array["document"] = json!([]);
    assert_post_refused(api, config, as_array, bad, "expected struct").await;
    let positional = json!([0, "ops", "positional"]);
    let rollback = ("/api/v1/config/rollback", adm);
    assert_post_refused(api, rollback, positional, bad, "expected struct").await;
    change
}

/// A change, history, diff, rollback.
async fn check_a_config_change_is_versioned_diffed_and_rolled_back(ctx: &Rest, change: Value) {
    let (api, adm) = (&ctx.api, ctx.adm());
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
    assert_gets_refused(
        api,
        &[
            (
                "/api/v1/config/diff?from=0",
                Some(adm),
                StatusCode::BAD_REQUEST,
                "to",
            ),
            (
                "/api/v1/config/versions/99",
                Some(adm),
                StatusCode::NOT_FOUND,
                "99",
            ),
        ],
    )
    .await;
    let rollback = "/api/v1/config/rollback";
    let (status, v2) = api
        .post(
            rollback,
            Some(adm),
            json!({"version": 0, "author": "ops", "reason": "undo"}),
        )
        .await;
    assert_eq!(
        (status, v2["rollback_of"].as_u64()),
        (StatusCode::CREATED, Some(0))
    );
    let unknown = json!({"version": 42, "author": "ops", "reason": "?"});
    assert_post_refused(api, (rollback, adm), unknown, StatusCode::NOT_FOUND, "42").await;
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
