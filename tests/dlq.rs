//! Dead letters as an operator works through them, against `merit serve` on a real
//! RabbitMQ: the recorder moves `merit.dlq` into the database, listings page by cursor,
//! and replay or discard act by id or by filter.
//!
//! - 10,000 dead letters page through exactly once each, in arrival order, while 500 more
//!   arrive;
//! - a bulk replay of one class (after a dry run that only counts) puts each back once
//!   and leaves the other class waiting;
//! - a node SIGKILLed in the middle of a bulk replay, restarted, and asked again, neither
//!   loses nor doubles one.
//!
//! The dead letters are published to `merit.dlx` by the test as merit itself publishes
//! them (message id = dead-letter id, `x-merit-*` reason headers), so thousands arrive in
//! seconds.

mod common;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use common::{Backend, NodeProcess, TestDb, Vhost};
use futures::StreamExt;
use lapin::{
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
        QueueBindOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable, LongString, ShortString},
    BasicProperties, Channel, Connection, ConnectionProperties,
};
use merit_mailbox::Outgoing;
use merit_storage::{
    sea_orm::{EntityTrait, PaginatorTrait},
    DeadLetterFilter, DeadLetterState, Store,
};
use serde_json::{json, Value};

/// One dead letter as merit publishes it to `merit.dlx`.
struct Dead {
    id: String,
    class: &'static str,
    message: Outgoing,
}

impl Dead {
    /// A dead letter of `class` holding `message`.
    fn of(class: &'static str, message: Outgoing) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            class,
            message,
        }
    }

    /// A malformed vote (a body that is not JSON), as the shard consumer refuses it.
    fn malformed(n: usize) -> Self {
        let mut m = Outgoing::new(
            "governance.vote.cast",
            format!("bad-{n}"),
            format!("{{oops {n}").into_bytes(),
        );
        m.headers.insert("merit-proposal".into(), "p-1".into());
        Self::of("malformed", m)
    }

    /// A proposal that failed to apply (as if its handler kept failing): replaying it
    /// creates the proposal.
    fn failed_proposal(n: usize) -> Self {
        let env = common::open_proposal(&format!("dl-{n}"));
        Self::of("handler_error", Outgoing::from_envelope(&env))
    }
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// A confirming channel on the node's vhost.
async fn channel(vhost: &Vhost) -> (Connection, Channel) {
    let conn = Connection::connect(&vhost.url, ConnectionProperties::default())
        .await
        .expect("connect to the vhost");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    (conn, ch)
}

/// Publishes `dead` to `merit.dlx` with confirms, as merit does.
async fn dead_letter(ch: &Channel, dead: &[Dead]) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut confirms = Vec::with_capacity(dead.len());
    for d in dead {
        let mut headers: BTreeMap<ShortString, AMQPValue> = d
            .message
            .headers
            .iter()
            .map(|(k, v)| (ShortString::from(k.clone()), text(v)))
            .collect();
        for (k, v) in [
            ("x-merit-reason-class", d.class),
            ("x-merit-reason", "failed in a test"),
            ("x-merit-attempts", "3"),
            (
                "x-merit-original-routing-key",
                d.message.routing_key.as_str(),
            ),
            ("x-merit-original-message-id", d.message.message_id.as_str()),
            ("x-merit-source-queue", "merit.proposal.0"),
            ("x-merit-dead-lettered-at", now.as_str()),
            ("x-merit-origin", "producer"),
        ] {
            headers.insert(ShortString::from(k), text(v));
        }
        let mut props = BasicProperties::default()
            .with_message_id(ShortString::from(d.id.clone()))
            .with_delivery_mode(2)
            .with_headers(FieldTable::from(headers));
        if let Some(c) = &d.message.correlation_id {
            props = props.with_correlation_id(ShortString::from(c.clone()));
        }
        confirms.push(
            ch.basic_publish(
                "merit.dlx".into(),
                d.message.routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &d.message.body,
                props,
            )
            .await
            .expect("publish a dead letter"),
        );
    }
    for c in confirms {
        assert!(c.await.expect("confirm").is_ack(), "the broker took it");
    }
}

/// The admin API of one node.
struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(120));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let (status, body) = common::answer(req).await;
        (status.as_u16(), body)
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// A bulk replay of every waiting `handler_error` dead letter (or a dry run).
    async fn replay_handler_errors(&self, dry_run: bool) -> (u16, Value) {
        let filter = json!({"class": "handler_error", "dry_run": dry_run});
        self.post("/api/v1/dlq/replay", filter).await
    }

    /// Waits until `path`'s `total` is `n`.
    async fn until_total(&self, path: &str, n: u64, secs: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let (_, v) = self.get(path).await;
            if v["total"].as_u64() == Some(n) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path}: total did not reach {n} within {secs}s (last: {v})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn spawn_node(db: &TestDb, vhost: &Vhost, admin: &str, log: &str) -> NodeProcess {
    let (_, jwt) = common::secrets();
    let extra = [("MERIT_JWT_SECRET", jwt.as_str())];
    let env = common::serve_env(&db.url, Some(&vhost.url), "dlq-node", admin, &extra);
    NodeProcess::spawn(&env, &common::artefacts().join(log))
}

fn admin_of(node: &NodeProcess, token: &str) -> Admin {
    Admin {
        http: reqwest::Client::new(),
        base: node.http_url(60),
        token: token.to_string(),
    }
}

/// A node on its own database and vhost, its admin API and a confirming channel.
struct Harness {
    db: TestDb,
    vhost: Vhost,
    token: String,
    node: NodeProcess,
    api: Admin,
    conn: Connection,
    ch: Channel,
}

impl Harness {
    async fn start(backend: Backend, log: &str) -> Self {
        common::init_crypto();
        let db = TestDb::empty(backend).await;
        let vhost = Vhost::create();
        let (token, _) = common::secrets();
        let node = spawn_node(&db, &vhost, &token, log);
        let api = admin_of(&node, &token);
        let (conn, ch) = channel(&vhost).await;
        Self {
            db,
            vhost,
            token,
            node,
            api,
            conn,
            ch,
        }
    }

    async fn stop(self) {
        self.node.stop();
        self.vhost.delete();
        self.db.cleanup().await;
    }
}

/// Proposals counted by all users' actors (the sum of `users.proposals_created`).
async fn proposals_created(store: &Store) -> i64 {
    let users = common::users(store).await;
    users.iter().map(|u| u.proposals_created).sum()
}

async fn proposals(store: &Store) -> u64 {
    merit_storage::entities::proposal::Entity::find()
        .count(store.db())
        .await
        .expect("count proposals")
}

async fn in_state(store: &Store, state: DeadLetterState) -> u64 {
    store
        .count_dead_letters(&DeadLetterFilter {
            state: Some(state),
            ..DeadLetterFilter::default()
        })
        .await
        .expect("count dead letters")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn ten_thousand_dead_letters_page_through_exactly_once_in_order_while_more_arrive() {
    let h = Harness::start(Backend::Postgres, "dlq-paging.log").await;
    let (api, ch) = (&h.api, h.ch.clone());

    let first: Vec<Dead> = (0..10_000).map(Dead::malformed).collect();
    for chunk in first.chunks(1_000) {
        dead_letter(&ch, chunk).await;
    }
    api.until_total("/api/v1/dlq?page_size=1", 10_000, 120)
        .await;

    // 500 more arrive while the operator pages.
    let more: Vec<Dead> = (10_000..10_500).map(Dead::malformed).collect();
    let more_ids: HashSet<String> = more.iter().map(|d| d.id.clone()).collect();
    let arriving = tokio::spawn(async move {
        for chunk in more.chunks(100) {
            dead_letter(&ch, chunk).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let seen = page_through_the_waiting(api).await;
    arriving
        .await
        .expect("the late dead letters were published");

    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "every page in arrival order, none repeated"
    );
    let ids: HashSet<&String> = seen.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), seen.len(), "no dead letter listed twice");
    let missing = first.iter().filter(|d| !ids.contains(&d.id)).count();
    assert_eq!(missing, 0, "every one of the first 10,000 listed");
    let strangers = ids
        .iter()
        .filter(|id| !more_ids.contains(**id) && !first.iter().any(|d| &d.id == **id))
        .count();
    assert_eq!(strangers, 0, "nothing listed that was not dead-lettered");
    // What arrived after the paging passed by is found by paging on from the last cursor.
    api.until_total("/api/v1/dlq?page_size=1", 10_500, 60).await;
    let last = seen.last().expect("seen").0;
    let (_, rest) = api
        .get(&format!("/api/v1/dlq?after={last}&page_size=500"))
        .await;
    let rest = rest["items"].as_array().expect("items").len();
    assert_eq!(seen.len() + rest, 10_500, "the late ones follow the cursor");
    check_listing_filters_and_the_bulk_path_s_methods(api).await;
    h.stop().await;
}

/// Pages of 500 by cursor until the last: each dead letter's `(seq, id)`, as listed.
async fn page_through_the_waiting(api: &Admin) -> Vec<(i64, String)> {
    let mut seen: Vec<(i64, String)> = Vec::new();
    let mut after = 0;
    let mut pages = 0;
    loop {
        let (status, page) = api
            .get(&format!("/api/v1/dlq?after={after}&page_size=500"))
            .await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().expect("items").clone();
        for item in &items {
            let seq = item["seq"].as_i64().expect("seq");
            assert!(seq > after, "a page starts after the cursor");
            assert_eq!(item["state"], "waiting");
            seen.push((seq, item["id"].as_str().expect("id").to_string()));
        }
        pages += 1;
        match page["next_after"].as_i64() {
            Some(next) => after = next,
            None => return seen,
        }
        assert!(pages < 100, "paging ends");
    }
}

/// An empty filter (as a form sends it) is no filter; the bulk paths are POST only; a
/// filter on a class nobody has is empty, and a bad filter is a clear 400.
async fn check_listing_filters_and_the_bulk_path_s_methods(api: &Admin) {
    let (status, all) = api.get("/api/v1/dlq?class=&state=&page_size=1").await;
    assert_eq!((status, &all["total"]), (200, &json!(10_500)), "{all}");
    let answer = api
        .http
        .get(format!("{}/api/v1/dlq/replay", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("GET");
    assert_eq!(answer.status().as_u16(), 405, "GET on the bulk replay path");
    assert_eq!(
        answer.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST"),
        "the bulk path's own methods, not those of /dlq/{{id}}"
    );
    let (_, none) = api.get("/api/v1/dlq?class=handler_error").await;
    assert_eq!(none["total"], 0, "{none}");
    let (status, bad) = api.get("/api/v1/dlq?since=yesterday").await;
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("since"),
        "{bad}"
    );
}

/// A tap on merit.events: a consumer of every proposal creation published there.
async fn tap_proposal_creations(conn: &Connection) -> lapin::Consumer {
    let tap = conn.create_channel().await.expect("tap channel");
    let q = tap
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("tap queue");
    tap.queue_bind(
        q.name().clone(),
        "merit.events".into(),
        "governance.proposal.created".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind the tap");
    tap.basic_consume(
        q.name().clone(),
        "tap".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("consume the tap")
}

/// How often each message id passed the tap: until `n` have, then any stragglers.
async fn count_tapped(tapped: &mut lapin::Consumer, n: u32) -> HashMap<String, u32> {
    let id_of = |d: &lapin::message::Delivery| {
        d.properties
            .message_id()
            .as_ref()
            .expect("message id")
            .to_string()
    };
    let mut counts: HashMap<String, u32> = HashMap::new();
    while counts.values().sum::<u32>() < n {
        let d = tokio::time::timeout(Duration::from_secs(30), tapped.next())
            .await
            .expect("the replays reach merit.events")
            .expect("tap open")
            .expect("delivery");
        *counts.entry(id_of(&d)).or_default() += 1;
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(Some(Ok(d))) =
        tokio::time::timeout(Duration::from_millis(200), tapped.next()).await
    {
        *counts.entry(id_of(&d)).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_bulk_replay_of_one_class_puts_each_back_once_after_a_dry_run() {
    let h = Harness::start(Backend::Sqlite, "dlq-bulk.log").await;
    let (api, ch) = (&h.api, &h.ch);
    // A tap on merit.events counts every proposal a replay publishes, by message id.
    let mut tapped = tap_proposal_creations(&h.conn).await;
    let failed: Vec<Dead> = (0..200).map(Dead::failed_proposal).collect();
    let junk: Vec<Dead> = (0..50).map(Dead::malformed).collect();
    dead_letter(ch, &failed).await;
    dead_letter(ch, &junk).await;
    api.until_total("/api/v1/dlq?page_size=1", 250, 60).await;
    let store = h.db.connect().await;
    check_a_replay_request_only_counts_unless_told_otherwise(api, &store).await;

    let (status, done) = api.replay_handler_errors(false).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (&done["settled"], &done["remaining"]),
        (&json!(200), &json!(0)),
        "{done}"
    );
    let (_, again) = api.replay_handler_errors(false).await;
    assert_eq!(again["settled"], 0, "a second run finds nothing: {again}");

    // Each replayed once: 200 distinct messages on the wire, 200 proposals applied once.
    let counts = count_tapped(&mut tapped, 200).await;
    assert_eq!(counts.len(), 200, "every one replayed");
    assert!(counts.values().all(|&n| n == 1), "none replayed twice");
    common::eventually(60, "the replayed proposals are applied", || {
        let store = store.clone();
        async move { proposals(&store).await == 200 && proposals_created(&store).await == 200 }
    })
    .await;
    check_the_other_class_waits_and_a_second_action_is_a_409(api, &junk[0].id).await;
    check_one_operation_s_dead_letters_are_found_by_correlation_id(api, &failed[7]).await;
    h.stop().await;
}

/// Without `dry_run: false` a request only counts; a dry run of one class counts it.
async fn check_a_replay_request_only_counts_unless_told_otherwise(api: &Admin, store: &Store) {
    let (status, counted) = api.post("/api/v1/dlq/replay", json!({})).await;
    assert_eq!(status, 200, "{counted}");
    assert_eq!(
        (
            &counted["dry_run"],
            &counted["matched"],
            &counted["settled"]
        ),
        (&json!(true), &json!(250), &json!(0)),
        "without dry_run: false a request only counts: {counted}"
    );
    let (status, dry) = api.replay_handler_errors(true).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(
        (&dry["matched"], &dry["settled"], &dry["remaining"]),
        (&json!(200), &json!(0), &json!(200)),
        "{dry}"
    );
    assert_eq!(proposals(store).await, 0, "a dry run replays nothing");
}

/// The other class still waits; one id at a time, a second action is a 409.
async fn check_the_other_class_waits_and_a_second_action_is_a_409(api: &Admin, junk_id: &str) {
    let (_, waiting) = api.get("/api/v1/dlq?class=malformed").await;
    assert_eq!(waiting["total"], 50, "{waiting}");
    let (_, replayed) = api.get("/api/v1/dlq?state=replayed&page_size=1").await;
    assert_eq!(replayed["total"], 200, "{replayed}");
    let replayed_id = replayed["items"][0]["id"].as_str().expect("id").to_string();
    let (status, conflict) = api
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/dlq/{replayed_id}/replay"),
            None,
        )
        .await;
    assert_eq!(status, 409, "{conflict}");
    let path = format!("/api/v1/dlq/{junk_id}");
    let (status, _) = api.send(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 200);
    let (status, _) = api.send(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 409, "discarded once");
    let (_, one) = api.get(&path).await;
    assert_eq!(one["state"], "discarded", "{one}");
    let (status, _) = api.get("/api/v1/dlq/no-such-id").await;
    assert_eq!(status, 404);
}

/// One operation's dead letters, by its correlation id, whatever their state.
async fn check_one_operation_s_dead_letters_are_found_by_correlation_id(api: &Admin, dead: &Dead) {
    let correlation = dead
        .message
        .correlation_id
        .clone()
        .expect("a correlation id");
    let (_, followed) = api
        .get(&format!(
            "/api/v1/dlq?state=all&correlation_id={correlation}"
        ))
        .await;
    let items = followed["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{followed}");
    assert_eq!(items[0]["id"], dead.id.as_str());
    assert_eq!(items[0]["correlation_id"], correlation.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_node_killed_mid_bulk_replay_neither_loses_nor_doubles_one() {
    const N: usize = 6_000;
    let Harness {
        db,
        vhost,
        token,
        node,
        api,
        conn: _conn,
        ch,
    } = Harness::start(Backend::Postgres, "dlq-kill.log").await;
    let failed: Vec<Dead> = (0..N).map(Dead::failed_proposal).collect();
    for chunk in failed.chunks(1_000) {
        dead_letter(&ch, chunk).await;
    }
    api.until_total("/api/v1/dlq?class=handler_error&page_size=1", N as u64, 120)
        .await;
    let store = db.connect().await;

    // The bulk replay runs; the node dies once part of it is marked.
    let request = {
        let (http, base, token) = (api.http.clone(), api.base.clone(), token.clone());
        tokio::spawn(async move {
            http.post(format!("{base}/api/v1/dlq/replay"))
                .bearer_auth(token)
                .json(&json!({"class": "handler_error", "dry_run": false}))
                .send()
                .await
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while in_state(&store, DeadLetterState::Replayed).await < 200 {
        assert!(tokio::time::Instant::now() < deadline, "the replay began");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.kill();
    let _ = request.await;
    let replayed_at_kill = in_state(&store, DeadLetterState::Replayed).await;
    assert!(
        replayed_at_kill < N as u64,
        "killed in the middle ({replayed_at_kill} of {N} marked)"
    );

    let node = spawn_node(&db, &vhost, &token, "dlq-kill.log");
    let api = admin_of(&node, &token);
    let (_, dry) = api.replay_handler_errors(true).await;
    assert_eq!(dry["matched"], N as u64 - replayed_at_kill, "{dry}");
    let (status, done) = api.replay_handler_errors(false).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["remaining"], 0, "{done}");

    common::eventually(120, "every replayed proposal is applied", || {
        let store = store.clone();
        async move { proposals_created(&store).await >= N as i64 }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(proposals(&store).await, N as u64, "none lost");
    assert_eq!(proposals_created(&store).await, N as i64, "none doubled");
    assert_eq!(in_state(&store, DeadLetterState::Replayed).await, N as u64);
    assert_eq!(in_state(&store, DeadLetterState::Waiting).await, 0);
    let all = store
        .count_dead_letters(&DeadLetterFilter::default())
        .await
        .expect("count");
    assert_eq!(all, N as u64, "no replay became a new dead letter");
    node.stop();
    vhost.delete();
    db.cleanup().await;
}
