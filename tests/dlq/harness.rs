//! Harness: dead letters published as merit publishes them, the admin API, and the node.

use std::{collections::BTreeMap, time::Duration};

use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
    BasicProperties, Channel, Connection, ConnectionProperties,
};
use merit_mailbox::Outgoing;
use merit_storage::{
    sea_orm::{EntityTrait, PaginatorTrait},
    DeadLetterFilter, DeadLetterState, Store,
};
use serde_json::{json, Value};

use crate::common::{self, Backend, NodeProcess, TestDb, Vhost};

/// One dead letter as merit publishes it to `merit.dlx`.
pub(crate) struct Dead {
    pub(crate) id: String,
    pub(crate) class: &'static str,
    pub(crate) message: Outgoing,
}

impl Dead {
    /// A dead letter of `class` holding `message`.
    pub(crate) fn of(class: &'static str, message: Outgoing) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            class,
            message,
        }
    }

    /// A malformed vote (a body that is not JSON), as the shard consumer refuses it.
    pub(crate) fn malformed(n: usize) -> Self {
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
    pub(crate) fn failed_proposal(n: usize) -> Self {
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
pub(crate) async fn dead_letter(ch: &Channel, dead: &[Dead]) {
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
pub(crate) struct Admin {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) token: String,
}

impl Admin {
    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
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

    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// A bulk replay of every waiting `handler_error` dead letter (or a dry run).
    pub(crate) async fn replay_handler_errors(&self, dry_run: bool) -> (u16, Value) {
        let filter = json!({"class": "handler_error", "dry_run": dry_run});
        self.post("/api/v1/dlq/replay", filter).await
    }

    /// Waits until `path`'s `total` is `n`.
    pub(crate) async fn until_total(&self, path: &str, n: u64, secs: u64) {
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

pub(crate) fn spawn_node(db: &TestDb, vhost: &Vhost, admin: &str, log: &str) -> NodeProcess {
    let (_, jwt) = common::secrets();
    let extra = [("MERIT_JWT_SECRET", jwt.as_str())];
    let env = common::serve_env(&db.url, Some(&vhost.url), "dlq-node", admin, &extra);
    NodeProcess::spawn(&env, &common::artefacts().join(log))
}

pub(crate) fn admin_of(node: &NodeProcess, token: &str) -> Admin {
    Admin {
        http: reqwest::Client::new(),
        base: node.http_url(60),
        token: token.to_string(),
    }
}

/// A node on its own database and vhost, its admin API and a confirming channel.
pub(crate) struct Harness {
    pub(crate) db: TestDb,
    pub(crate) vhost: Vhost,
    pub(crate) token: String,
    pub(crate) node: NodeProcess,
    pub(crate) api: Admin,
    pub(crate) conn: Connection,
    pub(crate) ch: Channel,
}

impl Harness {
    pub(crate) async fn start(backend: Backend, log: &str) -> Self {
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

    pub(crate) async fn stop(self) {
        self.node.stop();
        self.vhost.delete();
        self.db.cleanup().await;
    }
}

/// Proposals counted by all users' actors (the sum of `users.proposals_created`).
pub(crate) async fn proposals_created(store: &Store) -> i64 {
    let users = common::users(store).await;
    users.iter().map(|u| u.proposals_created).sum()
}

pub(crate) async fn proposals(store: &Store) -> u64 {
    merit_storage::entities::proposal::Entity::find()
        .count(store.db())
        .await
        .expect("count proposals")
}

pub(crate) async fn in_state(store: &Store, state: DeadLetterState) -> u64 {
    store
        .count_dead_letters(&DeadLetterFilter {
            state: Some(state),
            ..DeadLetterFilter::default()
        })
        .await
        .expect("count dead letters")
}

/// Every dead letter whose id is not one of `ids`, described (class, reason, attempts,
/// queue, routing key, headers, state): what a replay should never have made.
pub(crate) async fn strangers(store: &Store, ids: &[String]) -> Vec<String> {
    use merit_storage::entities::dead_letter;
    let known: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
    dead_letter::Entity::find()
        .all(store.db())
        .await
        .expect("read dead letters")
        .into_iter()
        .filter(|row| !known.contains(row.id.as_str()))
        .map(|row| {
            format!(
                "{} [{}] {}: {} (attempts {}, queue {}, key {}, headers {})",
                row.id,
                row.state,
                row.reason_class,
                row.reason,
                row.attempts,
                row.source_queue,
                row.routing_key,
                row.headers
            )
        })
        .collect()
}
