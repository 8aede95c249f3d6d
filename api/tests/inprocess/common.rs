//! What every test shares: one in-process node and the API over it ([`Harness`]), the
//! app the server builds ([`app!`]), and requests and answers.

use std::{sync::Arc, time::Duration};

use actix_web::{
    body::MessageBody,
    dev::{Service, ServiceResponse},
};
pub(crate) use actix_web::{
    http::{header, StatusCode},
    test,
};
use merit_actors::{center::ConfigCenter, RetryPolicy, Services};
use merit_api::{ApiOptions, ApiState, Credentials, Discovery, NotificationHub};
pub(crate) use merit_mailbox::{shard_for, Delivery, ShardId, Transport};
use merit_mailbox::{InProcessTransport, Topology};
pub(crate) use merit_messages::ActorKind;
use merit_messages::Address;
use merit_storage::{CacheConfig, Retention, TieredCache};
use merit_supervisors::{Node, NodeOptions, Residency, RestartPolicy};
use merit_testkit::{Backend, TestDb};
pub(crate) use serde_json::{json, Value};

/// Shard queues per actor kind: two, so a message's shard is chosen by its key.
pub(crate) const SHARDS: u16 = 2;

/// One node in process: its database, the API state over it and the node's transport,
/// and the secrets its credentials check.
pub(crate) struct Harness {
    pub(crate) state: ApiState,
    node: Node,
    pub(crate) admin: String,
    pub(crate) jwt_secret: String,
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
    pub(crate) async fn start(node_id: &str) -> Self {
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
    pub(crate) fn user(&self, wallet: &Address) -> String {
        merit_api::sign(self.jwt_secret.as_bytes(), &wallet.to_string(), 3600)
    }

    /// The same API over a second in-process transport that nobody consumes, so what the
    /// API publishes stays there to be read: `(state, transport)`.
    pub(crate) fn unconsumed(&self) -> (ApiState, InProcessTransport) {
        let quiet = InProcessTransport::new(Topology {
            prefix: String::new(),
            shards: SHARDS,
        });
        let mut state = self.state.clone();
        state.transport = Arc::new(quiet.clone());
        (state, quiet)
    }

    pub(crate) async fn stop(self) {
        self.node.shutdown(Duration::from_secs(5)).await;
    }
}

/// The app the server builds (`serve_with_metrics`) minus its crate-private middleware:
/// the state, `NormalizePath` and every route of `merit_api::configure`.
macro_rules! app {
    ($state:expr) => {{
        let state: &merit_api::ApiState = $state;
        let options = state.options.clone();
        actix_web::test::init_service(
            actix_web::App::new()
                .app_data(actix_web::web::Data::new(state.clone()))
                .wrap(actix_web::middleware::NormalizePath::trim())
                .configure(move |cfg| merit_api::configure(cfg, &options)),
        )
        .await
    }};
}
pub(crate) use app;

/// A response: its status, the headers the tests read, and its body as text and JSON
/// (`Value::Null` when it is not JSON).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) allow: Option<String>,
    pub(crate) content_type: Option<String>,
    pub(crate) text: String,
    pub(crate) json: Value,
}

impl Answer {
    /// Asserts an error answer: `status`, a JSON body `{"error": {"code", "message"}}`
    /// with `code`, and a message that mentions `needle`.
    pub(crate) fn assert_error(&self, status: StatusCode, code: &str, needle: &str) {
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

pub(crate) async fn send<S, R, B>(app: &S, req: R) -> Answer
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
pub(crate) fn with_token(req: test::TestRequest, token: Option<&str>) -> test::TestRequest {
    match token {
        Some(t) => req.insert_header((header::AUTHORIZATION, format!("Bearer {t}"))),
        None => req,
    }
}

pub(crate) fn get(path: &str, token: Option<&str>) -> test::TestRequest {
    with_token(test::TestRequest::get().uri(path), token)
}

pub(crate) fn post(path: &str, token: Option<&str>, body: &Value) -> test::TestRequest {
    with_token(test::TestRequest::post().uri(path), token).set_json(body)
}

/// Sends `request()` every 100 ms until `check` accepts the answer or `secs` pass.
pub(crate) async fn until<S, R, B>(
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
pub(crate) fn wallet(i: u8) -> Address {
    let mut a = [0u8; 20];
    a[19] = i;
    Address(a)
}

/// A proposal body for `id`, open from a minute ago for three days (a valid window under
/// the built-in limits).
pub(crate) fn proposal(id: &str) -> Value {
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
pub(crate) async fn proposal_shards(
    transport: &InProcessTransport,
    expected: usize,
) -> Vec<Delivery> {
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
