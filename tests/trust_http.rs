//! The trust boundary of the HTTP side, attacked through a real node (`merit serve` as a
//! child process on PostgreSQL with the embedded broker): a `/ready` flood, a WebSocket
//! client that never reads, one session over the per-user cap, a spoofed
//! `X-Forwarded-For`, the admin token in the dashboard feed's URL.

mod common;

use std::time::{Duration, Instant};

use common::{answer, Backend, NodeProcess, TestDb};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;

/// A node of the test's own on a fresh PostgreSQL database.
struct Node {
    base: String,
    admin: String,
    jwt: String,
    db: Option<TestDb>,
    process: Option<NodeProcess>,
    http: reqwest::Client,
}

impl Node {
    async fn start(name: &str, extra: &[(&str, &str)]) -> Self {
        common::init_crypto();
        let db = TestDb::empty(Backend::Postgres).await;
        let (admin, jwt) = common::secrets();
        let log = common::fresh_log(&format!("trust-{name}.log"));
        let mut more = vec![("MERIT_JWT_SECRET", jwt.as_str())];
        more.extend_from_slice(extra);
        let envs = common::serve_env(&db.url, None, name, &admin, &more);
        let process = NodeProcess::spawn(&envs, &log);
        let base = process.http_url(60);
        common::wait_ready(&base, 60).await;
        Self {
            base,
            admin,
            jwt,
            db: Some(db),
            process: Some(process),
            http: reqwest::Client::new(),
        }
    }

    fn user(&self, wallet: &merit_messages::Address) -> String {
        merit_api::sign(self.jwt.as_bytes(), &wallet.to_string(), 3600)
    }

    async fn metric(&self, url: &str, name: &str) -> Option<f64> {
        let text = self.http.get(url).send().await.ok()?.text().await.ok()?;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// `GET path` with `token`: status and JSON body.
    async fn get_as(&self, path: &str, token: &str) -> (StatusCode, Value) {
        answer(
            self.http
                .get(format!("{}{path}", self.base))
                .bearer_auth(token),
        )
        .await
    }

    async fn stop(mut self) {
        if let Some(p) = self.process.take() {
            p.stop();
        }
        if let Some(db) = self.db.take() {
            db.cleanup().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_ready_flood_probes_at_most_once_a_second_and_metrics_can_live_elsewhere() {
    let metrics_addr = format!("127.0.0.1:{}", common::free_port());
    let node = Node::start(
        "trust-ready",
        &[("MERIT_METRICS_ADDR", metrics_addr.as_str())],
    )
    .await;
    let metrics_url = format!("http://{metrics_addr}/metrics");
    let before = node
        .metric(&metrics_url, "merit_ready_probes_total")
        .await
        .expect("merit_ready_probes_total on the metrics listener");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (http, url) = (node.http.clone(), format!("{}/ready", node.base));
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..50 {
                if http
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == StatusCode::OK)
                {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.expect("task");
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(ok, 400, "every /ready of the flood answered 200");
    // Let the metrics snapshot (itself cached for a second) catch up.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = node
        .metric(&metrics_url, "merit_ready_probes_total")
        .await
        .expect("counter");
    let probes = after - before;
    assert!(
        probes <= elapsed.ceil() + 2.0,
        "400 /ready calls in {elapsed:.1}s ran {probes} probes: at most one a second expected"
    );
    // The public listener no longer serves /metrics once a metrics listener is set.
    let (status, body) = answer(node.http.get(format!("{}/metrics", node.base))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    node.stop().await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws(base: &str, token: &str, after: Option<u64>) -> Socket {
    let ws = base.replacen("http://", "ws://", 1);
    let mut url = format!("{ws}/ws?token={token}");
    if let Some(after) = after {
        url.push_str(&format!("&after={after}"));
    }
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket connects");
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_client_that_never_reads_is_dropped_and_the_node_stays_healthy() {
    let node = Node::start(
        "trust-ws-slow",
        &[("MERIT_HTTP_WS_SEND_TIMEOUT_MS", "1000")],
    )
    .await;
    let wallet = common::wallet(31);
    let user = wallet.to_string();
    // A log of 8,000 notifications of 8 KiB each: 64 MiB, more than socket buffers hold
    // (loopback receive buffers may grow to 32 MiB here).
    let store = node.db.as_ref().expect("db").connect().await;
    use merit_storage::sea_orm::ConnectionTrait;
    store
        .db()
        .execute_unprepared(&format!(
            "INSERT INTO notifications (\"user\", seq, event_id, kind, payload, created_at) \
             SELECT '{user}', g, 'filler-' || g, 'test.filler', \
             ('{{\"pad\":\"' || repeat('x', 8192) || '\"}}')::jsonb, now() \
             FROM generate_series(1, 8000) g"
        ))
        .await
        .expect("fill the log");
    store.close().await.expect("close");
    let token = node.user(&wallet);
    let metrics = format!("{}/metrics", node.base);
    // Catch up from the start and never read a frame.
    let stuck = ws(&node.base, &token, Some(0)).await;
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut sessions;
    loop {
        sessions = node.metric(&metrics, "merit_ws_sessions").await;
        if sessions == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session of a client that never reads is still open after 40 s ({sessions:?})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The node is fine: ready, and a reading client of the same user gets its hello.
    let (status, body) = answer(node.http.get(format!("{}/ready", node.base))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut fresh = ws(&node.base, &token, None).await;
    let hello = tokio::time::timeout(Duration::from_secs(10), fresh.next())
        .await
        .expect("hello in time")
        .expect("a frame")
        .expect("not an error");
    assert!(hello.to_string().contains("\"hello\""), "{hello}");
    drop(stuck);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn one_session_over_the_per_user_cap_is_refused_with_429() {
    let node = Node::start("trust-ws-cap", &[]).await;
    let token = node.user(&common::wallet(32));
    let mut open = Vec::new();
    for _ in 0..8 {
        open.push(ws(&node.base, &token, None).await);
    }
    let over = tokio_tungstenite::connect_async(format!(
        "{}/ws?token={token}",
        node.base.replacen("http://", "ws://", 1)
    ))
    .await;
    match over {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default())
                    .expect("JSON error body");
            assert_eq!(body["error"]["code"], "rate_limited", "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("sessions"),
                "{body}"
            );
        }
        Ok((_, response)) => panic!(
            "the ninth session of one user was not refused: {}",
            response.status()
        ),
        Err(e) => panic!("the ninth session failed otherwise: {e}"),
    }
    // Another user is not affected, and closing one session frees a place.
    let _other = ws(&node.base, &node.user(&common::wallet(33)), None).await;
    let mut first = open.remove(0);
    first.close(None).await.expect("close");
    drop(first);
    common::eventually(10, "a freed place is taken", || {
        let (base, token) = (node.base.clone(), token.clone());
        async move {
            tokio_tungstenite::connect_async(format!(
                "{}/ws?token={token}",
                base.replacen("http://", "ws://", 1)
            ))
            .await
            .is_ok()
        }
    })
    .await;
    node.stop().await;
}

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

/// anvil's second dev key: the wallet that signs in.
const WALLET_KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
/// anvil's third dev key: someone else.
const OTHER_KEY: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9e8eb35f6b6cf";
const DOMAIN: &str = "merit.test";

struct Siwe {
    domain: String,
    address: String,
    chain_id: u64,
    nonce: String,
    issued_at: chrono::DateTime<chrono::Utc>,
    expiration: Option<chrono::DateTime<chrono::Utc>>,
}

impl Siwe {
    fn text(&self) -> String {
        let mut text = format!(
            "{} wants you to sign in with your Ethereum account:\n{}\n\nSign in to merit.\n\n\
             URI: https://{DOMAIN}/login\nVersion: 1\nChain ID: {}\nNonce: {}\nIssued At: {}",
            self.domain,
            self.address,
            self.chain_id,
            self.nonce,
            self.issued_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        if let Some(exp) = self.expiration {
            text.push_str(&format!(
                "\nExpiration Time: {}",
                exp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        text
    }
}

async fn fresh_nonce(node: &Node) -> String {
    let (status, body) = answer(node.http.post(format!("{}/api/v1/auth/nonce", node.base))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let nonce = body["nonce"].as_str().expect("nonce").to_string();
    assert!(nonce.len() >= 8 && nonce.chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(body["expires_at"].is_string(), "{body}");
    nonce
}

async fn login(
    node: &Node,
    message: &str,
    signer: &ethers::signers::LocalWallet,
) -> (StatusCode, Value) {
    use ethers::signers::Signer;
    let signature = signer.sign_message(message).await.expect("sign");
    answer(
        node.http
            .post(format!("{}/api/v1/auth/login", node.base))
            .json(&serde_json::json!({"message": message, "signature": format!("0x{signature}")})),
    )
    .await
}

fn refused(answer: &(StatusCode, Value), needle: &str) {
    assert_eq!(answer.0, StatusCode::UNAUTHORIZED, "{}", answer.1);
    assert_eq!(answer.1["error"]["code"], "unauthorized", "{}", answer.1);
    let message = answer.1["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(needle),
        "{message:?} should name {needle:?}"
    );
}

/// The wallets of the sign-in test and the message it signs, as of `now`.
struct SignIn {
    wallet: ethers::signers::LocalWallet,
    other: ethers::signers::LocalWallet,
    address: String,
    now: chrono::DateTime<chrono::Utc>,
}

impl SignIn {
    fn new() -> Self {
        use ethers::signers::Signer;
        let wallet: ethers::signers::LocalWallet = WALLET_KEY.parse().expect("key");
        let address = ethers::utils::to_checksum(&wallet.address(), None);
        Self {
            wallet,
            other: OTHER_KEY.parse().expect("key"),
            address,
            now: chrono::Utc::now(),
        }
    }

    /// The wallet's sign-in message with `nonce`, valid for ten minutes.
    fn message(&self, nonce: String) -> Siwe {
        Siwe {
            domain: DOMAIN.to_string(),
            address: self.address.clone(),
            chain_id: 31337,
            nonce,
            issued_at: self.now,
            expiration: Some(self.now + chrono::Duration::minutes(10)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_wallet_signs_in_with_ethereum_once_per_nonce() {
    let node = Node::start("trust-siwe", &[("MERIT_HTTP_SIWE_DOMAIN", DOMAIN)]).await;
    let sign_in = SignIn::new();
    let (token, signed_in) = check_a_signed_in_token_reads_only_its_own_data(&node, &sign_in).await;
    // The same signed message again: its nonce is spent.
    refused(&login(&node, &signed_in, &sign_in.wallet).await, "Nonce");
    check_stale_phished_foreign_or_forged_sign_ins_are_refused(&node, &sign_in).await;
    check_sign_in_has_its_own_budget_per_client(&node, &token).await;
    node.stop().await;
}

/// The happy path: the token it returns reads the wallet's own data, not another's.
/// Returns the token and the message signed.
async fn check_a_signed_in_token_reads_only_its_own_data(
    node: &Node,
    sign_in: &SignIn,
) -> (String, String) {
    let lower = sign_in.address.to_lowercase();
    let signed_in = sign_in.message(fresh_nonce(node).await).text();
    let (status, body) = login(node, &signed_in, &sign_in.wallet).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["address"], lower.as_str());
    let token = body["token"].as_str().expect("token").to_string();
    let (status, body) = node.get_as(&format!("/api/v1/users/{lower}"), &token).await;
    assert!(
        status == StatusCode::OK || body["error"]["code"] == "not_found",
        "the token reads its own subject: {status} {body}"
    );
    let other = format!("/api/v1/users/{}", common::wallet(40));
    let (status, body) = node.get_as(&other, &token).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    (token, signed_in)
}

/// Expired, another domain or chain, another signer, a nonce never issued: refused naming
/// what is wrong; not an EIP-4361 message at all: 400.
async fn check_stale_phished_foreign_or_forged_sign_ins_are_refused(node: &Node, sign_in: &SignIn) {
    let (wallet, now) = (&sign_in.wallet, sign_in.now);
    // Expired.
    let mut expired = sign_in.message(fresh_nonce(node).await);
    expired.issued_at = now - chrono::Duration::minutes(20);
    expired.expiration = Some(now - chrono::Duration::minutes(10));
    refused(&login(node, &expired.text(), wallet).await, "expired");
    // Another domain (a phishing site relaying the user's signature).
    let mut phished = sign_in.message(fresh_nonce(node).await);
    phished.domain = "evil.test".to_string();
    refused(&login(node, &phished.text(), wallet).await, "domain");
    // Another chain.
    let mut other_chain = sign_in.message(fresh_nonce(node).await);
    other_chain.chain_id = 1;
    refused(&login(node, &other_chain.text(), wallet).await, "Chain ID");
    // Signed by another key than the address the message names.
    let forged = sign_in.message(fresh_nonce(node).await).text();
    refused(&login(node, &forged, &sign_in.other).await, "signature");
    // A nonce merit never issued.
    let never = sign_in.message("NeverIssued12345".to_string()).text();
    refused(&login(node, &never, wallet).await, "Nonce");
    // Not an EIP-4361 message: 400 naming what is wrong.
    let (status, body) = answer(
        node.http
            .post(format!("{}/api/v1/auth/login", node.base))
            .json(&serde_json::json!({"message": "hello", "signature": "0x00"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("message"));
}

/// Sign-in has its own budget per client (2/s, bursts of 20), far below the API's.
async fn check_sign_in_has_its_own_budget_per_client(node: &Node, token: &str) {
    let mut limited = None;
    for _ in 0..40 {
        let r = node
            .http
            .post(format!("{}/api/v1/auth/nonce", node.base))
            .send()
            .await
            .expect("send");
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r.json::<Value>().await.expect("json"));
            break;
        }
    }
    let limited = limited.expect("40 nonce requests in a row were never limited");
    assert!(
        limited["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("sign-in"),
        "{limited}"
    );
    let (status, body) = node.get_as("/api/v1/proposals", token).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the rest of the API is not limited by it: {body}"
    );
}
