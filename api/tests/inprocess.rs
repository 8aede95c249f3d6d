//! The HTTP API in process, with no service running: the fast tier of the API tests.
//!
//! Each test builds the `ApiState` the way `merit serve` does (src/serve.rs), but on the
//! in-process transport and a migrated SQLite file of its own, with a real in-process
//! [`Node`] (its actors, consumers, relay and timers) behind it, and drives the routes
//! `merit_api::configure` registers through `actix_web::test`. It proves that:
//! - `/health` and `/openapi.json` answer; an unknown path is a JSON 404 and a known path
//!   asked with another method a JSON 405 with `Allow`;
//! - `/api/v1` refuses a missing, forged or expired credential (401), a user token on an
//!   operator endpoint, the admin token where a user must act, and a user reading another
//!   user's data (403), each with a JSON body saying what is wrong;
//! - bad input is a 400 naming the field (a wallet address, a vote choice, a voting
//!   window, an unknown body field, malformed JSON), and a body over the limit a 413;
//! - a proposal created and a vote cast through the API are published on the in-process
//!   transport (read back off it: type, id, shard key, payload) and applied by the node's
//!   ProposalActor, while a refused write publishes nothing;
//! - neither the admin token nor the JWT secret appears in any response body.
//!
//! Not covered here (the real server installs them in `serve_with_metrics`, but they are
//! private to the crate, so a test cannot put them in an `App`): the rate limits and the
//! access log / request id middleware. tests/api.rs covers them against a real node.

use std::{sync::Arc, time::Duration};

use actix_web::{
    body::MessageBody,
    dev::{Service, ServiceResponse},
    http::{header, StatusCode},
    middleware, test, web, App,
};
use merit_actors::{center::ConfigCenter, RetryPolicy, Services};
use merit_api::{ApiOptions, ApiState, Credentials, Discovery, NotificationHub};
use merit_mailbox::{shard_for, Delivery, InProcessTransport, ShardId, Topology, Transport};
use merit_messages::{ActorKind, Address};
use merit_storage::{CacheConfig, Retention, TieredCache};
use merit_supervisors::{Node, NodeOptions, Residency, RestartPolicy};
use merit_testkit::{Backend, TestDb};
use serde_json::{json, Value};

/// Shard queues per actor kind: two, so a message's shard is chosen by its key.
const SHARDS: u16 = 2;

/// One node in process: its database, the API state over it and the node's transport,
/// and the secrets its credentials check.
struct Harness {
    state: ApiState,
    node: Node,
    admin: String,
    jwt_secret: String,
    _db: TestDb,
}

fn node_options(node_id: &str) -> NodeOptions {
    NodeOptions {
        node_id: node_id.to_string(),
        shards: SHARDS,
        prefetch: 64,
        retry: RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(200),
        },
        residency: Residency {
            max_resident: 10_000,
            idle: Duration::from_secs(60),
        },
        restart: RestartPolicy {
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            intensity: 50,
            period: Duration::from_secs(60),
        },
        arbiters: 1,
        // One writer suits SQLite.
        commit_workers: 1,
        commit_batch: 64,
        turn_batch: 64,
        // Quick, so a proposal whose start has passed is opened within the test.
        timer_interval: Duration::from_millis(100),
        retention: Retention {
            inbox: None,
            outbox: None,
            notifications: None,
            chunk: 1_000,
        },
        sweep_interval: Duration::from_secs(60),
        rebalance_interval: Duration::from_secs(1),
        drain_limit: Duration::from_secs(5),
    }
}

impl Harness {
    /// A migrated SQLite file, the in-process transport, a node consuming it and the API
    /// state `merit serve` would build over them (src/serve.rs: `Running::start`,
    /// `Api::start`), with fresh secrets.
    async fn start(node_id: &str) -> Self {
        let (db, store) = TestDb::migrated(Backend::Sqlite).await;
        let transport = InProcessTransport::new(Topology {
            prefix: String::new(),
            shards: SHARDS,
        });
        let shared: Arc<dyn Transport> = Arc::new(transport);
        let hub = NotificationHub::new(node_id, ApiOptions::default().ws_buffer);
        let cache = TieredCache::local(CacheConfig {
            l1_capacity: 10_000,
            ttl: Duration::from_secs(60),
            key_prefix: String::new(),
            node_id: node_id.to_string(),
        });
        let services = Services::new(merit_config::ConfigHandle::default(), cache)
            .with_notifier(Arc::new(hub.clone()));
        let node = Node::start(
            node_options(node_id),
            store.clone(),
            services,
            shared.clone(),
        )
        .await
        .expect("start the in-process node");
        let id = uuid::Uuid::new_v4().simple();
        let admin = format!("admin-{id}");
        let jwt_secret = format!("jwt-secret-{id}-0123456789abcdef");
        let state = ApiState {
            node_id: node_id.to_string(),
            version: env!("CARGO_PKG_VERSION"),
            started_at: chrono::Utc::now(),
            advertised: "127.0.0.1:0".to_string(),
            store: store.clone(),
            transport: shared,
            probe: node.probe(),
            sagas: None,
            center: ConfigCenter::new(store.clone()),
            chain: None,
            hub,
            discovery: Discovery::Store(store),
            credentials: Credentials::new(jwt_secret.as_bytes(), admin.as_bytes()),
            options: ApiOptions::default(),
            broker_is_rabbitmq: false,
            redis_configured: false,
            metrics: merit_api::install_recorder(),
            guards: Arc::default(),
        };
        Self {
            state,
            node,
            admin,
            jwt_secret,
            _db: db,
        }
    }

    /// A user token for `wallet`, valid an hour (as `merit token` makes one).
    fn user(&self, wallet: &Address) -> String {
        merit_api::sign(self.jwt_secret.as_bytes(), &wallet.to_string(), 3600)
    }

    /// The same API over a second in-process transport that nobody consumes, so what the
    /// API publishes stays there to be read: `(state, transport)`.
    fn unconsumed(&self) -> (ApiState, InProcessTransport) {
        let quiet = InProcessTransport::new(Topology {
            prefix: String::new(),
            shards: SHARDS,
        });
        let mut state = self.state.clone();
        state.transport = Arc::new(quiet.clone());
        (state, quiet)
    }

    async fn stop(self) {
        self.node.shutdown(Duration::from_secs(5)).await;
    }
}

/// The app the server builds (`serve_with_metrics`) minus its crate-private middleware:
/// the state, `NormalizePath` and every route of `merit_api::configure`.
macro_rules! app {
    ($state:expr) => {{
        let state: &ApiState = $state;
        let options = state.options.clone();
        test::init_service(
            App::new()
                .app_data(web::Data::new(state.clone()))
                .wrap(middleware::NormalizePath::trim())
                .configure(move |cfg| merit_api::configure(cfg, &options)),
        )
        .await
    }};
}

/// A response: its status, the headers the tests read, and its body as text and JSON
/// (`Value::Null` when it is not JSON).
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    allow: Option<String>,
    content_type: Option<String>,
    text: String,
    json: Value,
}

impl Answer {
    /// Asserts an error answer: `status`, a JSON body `{"error": {"code", "message"}}`
    /// with `code`, and a message that mentions `needle`.
    fn assert_error(&self, status: StatusCode, code: &str, needle: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/json"),
            "an error body is JSON: {}",
            self.text
        );
        assert_eq!(self.json["error"]["code"], code, "{}", self.text);
        let message = self.json["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "error message {message:?} should mention {needle:?}"
        );
    }
}

async fn send<S, R, B>(app: &S, req: R) -> Answer
where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let resp = test::call_service(app, req).await;
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (status, allow) = (resp.status(), header(header::ALLOW));
    let content_type = header(header::CONTENT_TYPE);
    let text = String::from_utf8_lossy(&test::read_body(resp).await).into_owned();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        allow,
        content_type,
        text,
        json,
    }
}

/// A request with `Authorization: Bearer token` when a token is given.
fn with_token(req: test::TestRequest, token: Option<&str>) -> test::TestRequest {
    match token {
        Some(t) => req.insert_header((header::AUTHORIZATION, format!("Bearer {t}"))),
        None => req,
    }
}

fn get(path: &str, token: Option<&str>) -> test::TestRequest {
    with_token(test::TestRequest::get().uri(path), token)
}

fn post(path: &str, token: Option<&str>, body: &Value) -> test::TestRequest {
    with_token(test::TestRequest::post().uri(path), token).set_json(body)
}

/// Sends `request()` every 100 ms until `check` accepts the answer or `secs` pass.
async fn until<S, R, B>(
    app: &S,
    request: impl Fn() -> R,
    secs: u64,
    check: impl Fn(&Answer) -> bool,
) -> Answer
where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let answer = send(app, request()).await;
        if check(&answer) {
            return answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs} s; last answer {} {}",
            answer.status,
            answer.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `i`-th test wallet.
fn wallet(i: u8) -> Address {
    let mut a = [0u8; 20];
    a[19] = i;
    Address(a)
}

/// A proposal body for `id`, open from a minute ago for three days (a valid window under
/// the built-in limits).
fn proposal(id: &str) -> Value {
    let starts = chrono::Utc::now() - chrono::Duration::minutes(1);
    json!({
        "proposal": id,
        "title": "Fund the docs",
        "description": "Two weeks of writing",
        "starts_at": starts,
        "ends_at": starts + chrono::Duration::days(3),
        "quorum": 1000,
    })
}

/// The first `expected` messages waiting in the proposal shards of `transport` (read, not
/// acked), within five seconds.
async fn proposal_shards(transport: &InProcessTransport, expected: usize) -> Vec<Delivery> {
    let mut receivers = Vec::new();
    for index in 0..SHARDS {
        let shard = ShardId::new(ActorKind::Proposal, index);
        receivers.push(transport.consume(shard, 16).await.expect("consume"));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.len() < expected {
        for rx in &mut receivers {
            while let Ok(delivery) = rx.try_recv() {
                got.push(delivery);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {expected} messages reached the proposal shards within 5 s",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    got
}

#[actix_web::test]
async fn health_is_200_alive_naming_the_node() {
    let h = Harness::start("health-node").await;
    let app = app!(&h.state);
    let answer = send(&app, get("/health", None).to_request()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["status"], "alive", "{}", answer.text);
    assert_eq!(answer.json["node_id"], "health-node", "{}", answer.text);
    h.stop().await;
}

#[actix_web::test]
async fn openapi_json_is_the_openapi_document_of_the_v1_routes() {
    let h = Harness::start("openapi-node").await;
    let app = app!(&h.state);
    let answer = send(&app, get("/openapi.json", None).to_request()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    let version = answer.json["openapi"].as_str().unwrap_or_default();
    assert!(
        version.starts_with('3'),
        "an OpenAPI 3 document: {version:?}"
    );
    for path in [
        "/api/v1/proposals",
        "/api/v1/proposals/{id}/votes",
        "/api/v1/users/{address}",
    ] {
        assert!(
            answer.json["paths"][path].is_object(),
            "the document lists {path}"
        );
    }
    h.stop().await;
}

#[actix_web::test]
async fn an_unknown_path_is_404_with_a_json_error_body() {
    let h = Harness::start("unknown-node").await;
    let app = app!(&h.state);
    // With the admin token too: a missing route is not an authentication matter.
    for token in [None, Some(h.admin.as_str())] {
        for path in ["/api/v1/nothing-here", "/no/such/page"] {
            send(&app, get(path, token).to_request())
                .await
                .assert_error(StatusCode::NOT_FOUND, "not_found", "no route");
        }
    }
    h.stop().await;
}

#[actix_web::test]
async fn a_known_path_asked_with_another_method_is_405_with_allow_and_a_json_body() {
    let h = Harness::start("method-node").await;
    let app = app!(&h.state);
    let req = with_token(test::TestRequest::delete().uri("/api/v1/proposals"), None);
    let answer = send(&app, req.to_request()).await;
    answer.assert_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path answers",
    );
    let allow = answer.allow.expect("a 405 carries Allow");
    assert!(
        allow.contains("GET") && allow.contains("POST"),
        "GET and POST /api/v1/proposals are routes: Allow {allow:?}"
    );
    let answer = send(&app, post("/health", None, &json!({})).to_request()).await;
    answer.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "GET");
    assert_eq!(answer.allow.as_deref(), Some("GET"));
    h.stop().await;
}

#[actix_web::test]
async fn v1_without_a_credential_is_401_missing_credential() {
    let h = Harness::start("anonymous-node").await;
    let app = app!(&h.state);
    let me = format!("/api/v1/users/{}", wallet(1));
    for path in [
        me.as_str(),
        "/api/v1/proposals",
        "/api/v1/nodes",
        "/api/v1/dlq",
    ] {
        send(&app, get(path, None).to_request()).await.assert_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing credential",
        );
    }
    send(
        &app,
        post("/api/v1/proposals", None, &proposal("p")).to_request(),
    )
    .await
    .assert_error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing credential",
    );
    // Another scheme than Bearer is no credential either.
    let basic = get(&me, None).insert_header((header::AUTHORIZATION, "Basic YWxpY2U6cHc="));
    send(&app, basic.to_request()).await.assert_error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing credential",
    );
    h.stop().await;
}

#[actix_web::test]
async fn a_forged_malformed_or_unsigned_token_is_401_invalid_bearer_token() {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let h = Harness::start("forged-node").await;
    let app = app!(&h.state);
    let alice = wallet(1);
    let me = format!("/api/v1/users/{alice}");
    let other_secret = merit_api::sign(
        b"another secret entirely, 32 bytes!",
        &alice.to_string(),
        60,
    );
    // Alice's genuine token with its claims swapped for Bob's: the signature no longer fits.
    let genuine = h.user(&alice);
    let parts: Vec<&str> = genuine.split('.').collect();
    let bob_claims = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"sub":"{}","exp":{}}}"#,
        wallet(2),
        chrono::Utc::now().timestamp() + 3600
    ));
    let swapped = format!("{}.{bob_claims}.{}", parts[0], parts[2]);
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        parts[1]
    );
    let not_a_wallet = merit_api::sign(h.jwt_secret.as_bytes(), "alice", 60);
    let near_admin = &h.admin[..h.admin.len() - 1];
    for (token, why) in [
        (other_secret.as_str(), "bad signature"),
        (swapped.as_str(), "bad signature"),
        (unsigned.as_str(), "HS256"),
        (not_a_wallet.as_str(), "subject is not a wallet address"),
        ("not-a-token", "not a JWT"),
        (near_admin, "not a JWT"),
    ] {
        send(&app, get(&me, Some(token)).to_request())
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "unauthorized", why);
    }
    h.stop().await;
}

#[actix_web::test]
async fn an_expired_token_is_401_saying_expired() {
    let h = Harness::start("expired-node").await;
    let app = app!(&h.state);
    let alice = wallet(1);
    let expired = merit_api::sign(h.jwt_secret.as_bytes(), &alice.to_string(), -3600);
    send(
        &app,
        get(&format!("/api/v1/users/{alice}"), Some(&expired)).to_request(),
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "unauthorized", "expired");
    h.stop().await;
}

#[actix_web::test]
async fn a_user_token_on_an_operator_endpoint_is_403_operators_only() {
    let h = Harness::start("operator-node").await;
    let app = app!(&h.state);
    let alice = h.user(&wallet(1));
    for path in [
        "/api/v1/nodes",
        "/api/v1/dlq",
        "/api/v1/config",
        "/api/v1/sagas",
        "/api/v1/admin/overview",
    ] {
        send(&app, get(path, Some(&alice)).to_request())
            .await
            .assert_error(StatusCode::FORBIDDEN, "forbidden", "operators only");
    }
    // The same endpoint answers the admin token: the 403 is about who asks.
    let answer = send(&app, get("/api/v1/nodes", Some(&h.admin)).to_request()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert!(answer.json["items"].is_array(), "{}", answer.text);
    h.stop().await;
}

#[actix_web::test]
async fn a_user_reading_another_users_data_is_403_and_their_own_is_not() {
    let h = Harness::start("own-data-node").await;
    let app = app!(&h.state);
    let (alice, bob) = (wallet(1), wallet(2));
    let token = h.user(&alice);
    for tail in ["", "/achievements", "/nfts", "/notifications"] {
        send(
            &app,
            get(&format!("/api/v1/users/{bob}{tail}"), Some(&token)).to_request(),
        )
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden", "own subject's data");
    }
    // Her own log: empty, but hers to read.
    let answer = send(
        &app,
        get(
            &format!("/api/v1/users/{alice}/notifications"),
            Some(&token),
        )
        .to_request(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["last_seq"], 0, "{}", answer.text);
    // Herself, unseen by merit: 404, not 403.
    send(
        &app,
        get(&format!("/api/v1/users/{alice}"), Some(&token)).to_request(),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found", "no event");
    h.stop().await;
}

#[actix_web::test]
async fn the_admin_token_where_a_user_must_act_is_403() {
    let h = Harness::start("acting-node").await;
    let app = app!(&h.state);
    let admin = Some(h.admin.as_str());
    send(
        &app,
        post("/api/v1/proposals", admin, &proposal("p")).to_request(),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden", "user token");
    let vote = json!({"choice": "for"});
    send(
        &app,
        post("/api/v1/proposals/p/votes", admin, &vote).to_request(),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden", "user token");
    h.stop().await;
}

#[actix_web::test]
async fn a_malformed_wallet_address_is_400_naming_the_address() {
    let h = Harness::start("address-node").await;
    let app = app!(&h.state);
    let alice = h.user(&wallet(1));
    for (path, token) in [
        ("/api/v1/users/0x123", h.admin.as_str()),
        ("/api/v1/users/not-a-wallet/nfts", alice.as_str()),
        ("/api/v1/proposals?creator=0xzz", alice.as_str()),
    ] {
        send(&app, get(path, Some(token)).to_request())
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad_request", "address");
    }
    h.stop().await;
}

#[actix_web::test]
async fn a_vote_choice_outside_for_against_abstain_is_400_naming_choice() {
    let h = Harness::start("choice-node").await;
    let app = app!(&h.state);
    let bob = h.user(&wallet(2));
    let answer = send(
        &app,
        post(
            "/api/v1/proposals/p/votes",
            Some(&bob),
            &json!({"choice": "maybe"}),
        )
        .to_request(),
    )
    .await;
    answer.assert_error(StatusCode::BAD_REQUEST, "bad_request", "choice");
    assert!(
        answer.text.contains("maybe"),
        "names the value: {}",
        answer.text
    );
    send(
        &app,
        post("/api/v1/proposals/p/votes", Some(&bob), &json!({})).to_request(),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "bad_request", "choice");
    h.stop().await;
}

#[actix_web::test]
async fn a_body_over_the_size_limit_is_413() {
    let h = Harness::start("large-node").await;
    let app = app!(&h.state);
    let alice = h.user(&wallet(1));
    let limit = h.state.options.max_body_bytes;
    let mut huge = proposal("p-huge");
    huge["description"] = json!("x".repeat(limit + 1024));
    send(
        &app,
        post("/api/v1/proposals", Some(&alice), &huge).to_request(),
    )
    .await
    .assert_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        &format!("larger than {limit} bytes"),
    );
    let reason = json!({"choice": "for", "reason": "y".repeat(limit)});
    send(
        &app,
        post("/api/v1/proposals/p/votes", Some(&alice), &reason).to_request(),
    )
    .await
    .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "body");
    h.stop().await;
}

#[actix_web::test]
async fn malformed_json_or_another_content_type_is_400_naming_the_body() {
    let h = Harness::start("json-node").await;
    let app = app!(&h.state);
    let alice = h.user(&wallet(1));
    let truncated = with_token(
        test::TestRequest::post().uri("/api/v1/proposals"),
        Some(&alice),
    )
    .insert_header((header::CONTENT_TYPE, "application/json"))
    .set_payload(r#"{"proposal": "p-1", "title": "#);
    send(&app, truncated.to_request()).await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "body:",
    );
    let text = with_token(
        test::TestRequest::post().uri("/api/v1/proposals"),
        Some(&alice),
    )
    .insert_header((header::CONTENT_TYPE, "text/plain"))
    .set_payload(proposal("p-1").to_string());
    send(&app, text.to_request()).await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "Content-Type: application/json",
    );
    // A struct written as an array is refused as its schema refuses it.
    send(
        &app,
        post("/api/v1/proposals", Some(&alice), &json!([])).to_request(),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "bad_request", "expected struct");
    h.stop().await;
}

#[actix_web::test]
async fn an_invalid_proposal_field_is_400_naming_the_field() {
    let h = Harness::start("fields-node").await;
    let app = app!(&h.state);
    let alice = h.user(&wallet(1));
    let mut unknown = proposal("p-1");
    unknown["colour"] = json!("red");
    let mut backwards = proposal("p-1");
    backwards["ends_at"] = json!(chrono::Utc::now() - chrono::Duration::days(1));
    for (body, field) in [(unknown, "colour"), (backwards, "ends_at")] {
        send(
            &app,
            post("/api/v1/proposals", Some(&alice), &body).to_request(),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_request", field);
    }
    let key = post("/api/v1/proposals", Some(&alice), &proposal("p-1"))
        .insert_header(("Idempotency-Key", "not-a-uuid"));
    send(&app, key.to_request()).await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "Idempotency-Key",
    );
    send(
        &app,
        get("/api/v1/proposals?page=0", Some(&alice)).to_request(),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "bad_request", "page");
    h.stop().await;
}

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

#[actix_web::test]
async fn ready_is_200_in_process_naming_the_broker_not_rabbitmq() {
    let h = Harness::start("ready-node").await;
    let app = app!(&h.state);
    // The consumers start as the node does; the snapshot is at most a second old.
    let ready = until(
        &app,
        || get("/ready", None).to_request(),
        20,
        |r| r.status == StatusCode::OK,
    )
    .await;
    let names: Vec<&str> = ready.json["components"]
        .as_array()
        .expect("components")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(names.contains(&"broker"), "{}", ready.text);
    assert!(names.contains(&"database"), "{}", ready.text);
    assert!(!names.contains(&"rabbitmq"), "{}", ready.text);
    assert_eq!(ready.json["failing"], json!([]), "{}", ready.text);
    h.stop().await;
}

#[actix_web::test]
async fn no_response_body_contains_the_admin_token_or_the_jwt_secret() {
    let h = Harness::start("secret-node").await;
    let app = app!(&h.state);
    let user = h.user(&wallet(7));
    let admin = h.admin.as_str();
    let near_admin = format!("{admin}x");
    let mut seen = Vec::new();
    for (path, token) in [
        ("/health", None),
        ("/ready", None),
        ("/metrics", None),
        ("/openapi.json", None),
        ("/dashboard", None),
        ("/api/v1/admin/overview", Some(admin)),
        ("/api/v1/nodes", Some(admin)),
        ("/api/v1/config", Some(admin)),
        ("/api/v1/config/versions", Some(admin)),
        ("/api/v1/sagas", Some(admin)),
        ("/api/v1/dlq", Some(admin)),
        ("/api/v1/proposals", Some(user.as_str())),
        ("/api/v1/nodes", Some(user.as_str())),
        ("/api/v1/nodes", Some(near_admin.as_str())),
        ("/api/v1/nodes", Some(&admin[..admin.len() - 1])),
        // The secret itself presented as a token is not echoed back.
        ("/api/v1/nodes", Some(h.jwt_secret.as_str())),
        ("/api/v1/users/0xnot", Some(admin)),
    ] {
        let answer = send(&app, get(path, token).to_request()).await;
        // Every request was answered, and the operator ones with real data (so a secret
        // in that data would be seen).
        assert!(!answer.text.is_empty(), "GET {path}: an empty body");
        if token == Some(admin) && path.ends_with("overview") {
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
            assert_eq!(answer.json["node_id"], "secret-node", "{}", answer.text);
        }
        seen.push(format!("GET {path} {} {}", answer.status, answer.text));
    }
    let ticket = send(
        &app,
        post("/api/v1/admin/stream-ticket", Some(admin), &json!({})).to_request(),
    )
    .await;
    assert_eq!(ticket.status, StatusCode::OK, "{}", ticket.text);
    assert!(ticket.json["ticket"].is_string(), "{}", ticket.text);
    seen.push(ticket.text);
    for (name, secret) in [
        ("admin token", admin),
        ("JWT secret", h.jwt_secret.as_str()),
    ] {
        for body in &seen {
            assert!(
                !body.contains(secret),
                "the {name} appears in a response: {body}"
            );
        }
    }
    h.stop().await;
}
