//! The trust boundary, attacked from outside: a producer that publishes merit's own event
//! types, a broker user that writes where it may not, an id chosen to pre-claim one of
//! merit's own, a NUL in a title, and creations and votes meant to farm achievements.
//! Each test performs the attack against a real node (`merit serve` on RabbitMQ and
//! PostgreSQL, its own vhost and database) and checks that it changed nothing.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::{Backend, ServedNode, TestDb, Vhost};
use merit_mailbox::{DeadLetter, Outgoing, Transport};
use merit_messages::{
    AchievementMinted, DeadlinePhase, Envelope, EventId, HoldingChange, HoldingsChanged, Origin,
    ProposalCreated, ProposalDeadline, VoteChoice, VoteRecorded,
};
use merit_storage::{
    entities::{achievement, proposal},
    sea_orm::{ColumnTrait, EntityTrait, QueryFilter},
    Store,
};
use serde_json::{json, Value};

const WAIT: u64 = 60;

struct Node {
    served: ServedNode,
    http: reqwest::Client,
    store: Store,
    producer: merit_mailbox::RabbitTransport,
}

impl Node {
    async fn start(name: &str) -> Self {
        common::init_crypto();
        let db = TestDb::empty(Backend::Postgres).await;
        let vhost = Vhost::create();
        let producer = common::declared_transport(&vhost.url, 2).await;
        let log = common::artefacts().join(format!("trust-{name}-{}.log", vhost.name));
        let extra = [("MERIT_MAILBOX_SHARDS", "2")];
        let served = ServedNode::spawn_on(db, vhost, name, log, &extra);
        println!("node log: {}", served.log.display());
        common::wait_ready(&served.base, 60).await;
        let store = served.db.connect().await;
        Self {
            served,
            http: reqwest::Client::new(),
            store,
            producer,
        }
    }

    /// Publishes `env` as an outside producer does: to `merit.events`, whatever its type.
    async fn publish_as_producer(&self, envs: &[Envelope]) {
        self.producer
            .publish(
                envs.iter()
                    .map(|e| Outgoing::from_envelope(e).through(Origin::Producer))
                    .collect(),
            )
            .await
            .expect("confirmed");
    }

    async fn get_admin(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.served.base))
            .bearer_auth(&self.served.admin)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    async fn status(&self, id: &str) -> Option<String> {
        proposal::Entity::find_by_id(id.to_string())
            .one(self.store.db())
            .await
            .expect("proposals")
            .map(|p| p.status)
    }

    async fn achievements_of(&self, user: &merit_messages::Address) -> Vec<String> {
        achievement::Entity::find()
            .filter(achievement::Column::User.eq(user.to_string()))
            .all(self.store.db())
            .await
            .expect("achievements")
            .into_iter()
            .map(|a| a.rule_id)
            .collect()
    }

    async fn dead_letters(&self, n: usize) -> Vec<DeadLetter> {
        let mut dls = Vec::new();
        for _ in 0..(WAIT * 5) {
            dls = common::all_dead_letters(&self.producer, &self.store).await;
            if dls.len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        dls
    }

    async fn finish(self) {
        let ServedNode {
            process, vhost, db, ..
        } = self.served;
        drop(process);
        vhost.delete();
        db.cleanup().await;
    }
}

fn created(id: &str, creator: u32, window_secs: i64) -> ProposalCreated {
    let now = Utc::now();
    ProposalCreated {
        proposal: id.parse().expect("proposal id"),
        creator: common::wallet(creator),
        title: format!("Proposal {id}"),
        description: String::new(),
        starts_at: now - chrono::Duration::seconds(1),
        ends_at: now + chrono::Duration::seconds(window_secs),
        quorum: 1,
        threshold_bps: 5_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn merit_types_through_the_producers_door_are_dead_lettered_and_change_nothing() {
    let node = Node::start("trust-door").await;
    let victim = common::wallet(1);
    node.publish_as_producer(&[Envelope::new("p", created("held-open", 2, 3_600))])
        .await;
    common::eventually(WAIT, "the proposal exists", || async {
        node.status("held-open").await.as_deref() == Some("pending")
            || node.status("held-open").await.as_deref() == Some("active")
    })
    .await;

    // Forgeries of four of merit's own types, each with every header it needs.
    let forged = vec![
        Envelope::new(
            "forger",
            HoldingsChanged {
                user: victim,
                token: 77u128.into(),
                change: HoldingChange::Acquired,
                tier: Some("gold".parse().expect("tier")),
                position: (u64::MAX, 0),
            },
        ),
        Envelope::new(
            "forger",
            VoteRecorded {
                proposal: "held-open".parse().expect("id"),
                proposal_seq: 1,
                voter: victim,
                choice: VoteChoice::For,
                weight: 1_000,
                multiplier_bps: 10_000,
                boosts: vec![],
                config_version: 0,
                own_proposal: false,
            },
        ),
        Envelope::new(
            "forger",
            ProposalDeadline {
                proposal: "held-open".parse().expect("id"),
                phase: DeadlinePhase::Close,
                due_at: Utc::now(),
            },
        ),
        Envelope::new(
            "forger",
            AchievementMinted {
                user: victim,
                achievement_id: uuid::Uuid::new_v4(),
                rule: "first-proposal".parse().expect("rule"),
                token: 78u128.into(),
                tx_hash: None,
            },
        ),
    ];
    node.publish_as_producer(&forged).await;

    let dls = node.dead_letters(forged.len()).await;
    let refused: Vec<&str> = dls
        .iter()
        .filter(|d| d.reason_class == "forbidden_type")
        .map(|d| d.routing_key.as_str())
        .collect();
    assert_eq!(refused.len(), forged.len(), "dead letters: {dls:#?}");
    for env in &forged {
        assert!(refused.contains(&env.event_type().as_str()), "{refused:?}");
    }

    // Nothing changed: no boost, no counted vote, no notification (merit never heard of
    // the victim at all), and the proposal is still open.
    let user = node.get_admin(&format!("/api/v1/users/{victim}")).await;
    println!("victim: {user}");
    assert_eq!(user["error"]["code"], json!("not_found"), "{user}");
    assert!(matches!(
        node.status("held-open").await.as_deref(),
        Some("pending" | "active")
    ));
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_producer_broker_user_may_write_the_producers_exchange_only() {
    use lapin::{
        options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions},
        types::FieldTable,
        BasicProperties, Connection, ConnectionProperties, ExchangeKind,
    };
    let vhost = Vhost::create();
    let merit = common::producer(&vhost, 1).await;
    merit.declare().await.expect("declare");
    // The notification fan-out exchange, as a node declares it.
    let admin = Connection::connect(&vhost.url, ConnectionProperties::default())
        .await
        .expect("connect as merit");
    admin
        .create_channel()
        .await
        .expect("channel")
        .exchange_declare(
            "merit.notify".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare merit.notify");

    let (user, url) = vhost.producer_user();
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("the producer user connects");
    let body = Outgoing::from_envelope(&Envelope::new("p", created("door-p", 1, 3_600))).body;
    let mut outcomes = Vec::new();
    for exchange in ["merit.events", "merit.internal", "merit.notify"] {
        let ch = conn.create_channel().await.expect("channel");
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        let confirmed = match ch
            .basic_publish(
                exchange.into(),
                "governance.proposal.created".into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default().with_headers({
                    let mut h = FieldTable::default();
                    h.insert(
                        "merit-proposal".into(),
                        lapin::types::AMQPValue::LongString("door-p".into()),
                    );
                    h
                }),
            )
            .await
        {
            Ok(confirm) => confirm.await.map(|c| c.is_ack()).unwrap_or(false),
            Err(_) => false,
        };
        // A refused publish closes the channel with ACCESS_REFUSED.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let open = ch.status().connected();
        println!("{exchange}: confirmed={confirmed} channel_open={open}");
        outcomes.push((exchange, confirmed && open));
    }
    assert_eq!(
        outcomes,
        vec![
            ("merit.events", true),
            ("merit.internal", false),
            ("merit.notify", false)
        ]
    );
    // And what it published through its door reached the proposal shard.
    let depths = merit.queue_depths().await.expect("depths");
    let proposals: u64 = depths
        .iter()
        .filter(|(q, _)| q.starts_with("merit.proposal."))
        .map(|(_, d)| d)
        .sum();
    assert_eq!(proposals, 1, "{depths:?}");
    drop(conn);
    vhost.delete_user(&user);
    vhost.delete();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn an_id_chosen_to_pre_claim_a_proposal_s_deadline_cannot_veto_it() {
    let node = Node::start("trust-ids").await;
    // A decoy creation whose id is the victim's close deadline, then the victim with a
    // short window. The deadline must still close it.
    let deadline = EventId::named("deadline:victim-1:close");
    let decoy = Envelope::with_id(
        deadline,
        "attacker",
        Utc::now(),
        created("decoy-1", 3, 3_600),
    );
    node.publish_as_producer(&[decoy]).await;
    common::eventually(WAIT, "the decoy exists", || async {
        node.status("decoy-1").await.is_some()
    })
    .await;
    node.publish_as_producer(&[Envelope::new("victim", created("victim-1", 4, 11))])
        .await;
    common::eventually(WAIT, "victim-1 closes at its deadline", || async {
        node.status("victim-1").await.as_deref() == Some("defeated")
    })
    .await;
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_nul_title_refused_creations_and_own_votes_through_the_producers_door_earn_nothing() {
    let node = Node::start("trust-farm").await;
    check_a_nul_title_is_dead_lettered_naming_the_field(&node).await;
    check_refused_creations_and_own_votes_earn_nothing(&node).await;
    node.finish().await;
}

/// A NUL in a title: refused by the decoder (a named reason), applied by nobody.
async fn check_a_nul_title_is_dead_lettered_naming_the_field(node: &Node) {
    let mut nul = serde_json::from_slice::<Value>(
        &Envelope::new("p", created("nul-title", 5, 3_600)).to_json(),
    )
    .expect("json");
    nul["payload"]["title"] = json!("a\u{0}b");
    let mut out = Outgoing::new(
        "governance.proposal.created",
        nul["id"].as_str().expect("id"),
        serde_json::to_vec(&nul).expect("json"),
    );
    out.headers
        .insert("merit-proposal".into(), "nul-title".into());
    out.headers
        .insert("merit-user".into(), common::wallet(5).to_string());
    node.producer.publish(vec![out]).await.expect("confirmed");
    let dls = node.dead_letters(1).await;
    let nul_dl = dls
        .iter()
        .find(|d| d.headers.get("merit-proposal").map(String::as_str) == Some("nul-title"))
        .expect("the NUL title is dead-lettered");
    assert_eq!(nul_dl.reason_class, "invalid_field");
    assert!(
        nul_dl.reason.contains("payload.title") && nul_dl.reason.contains("U+0000"),
        "{}",
        nul_dl.reason
    );
}

/// Creations the limits refuse (a window already over, a zero quorum, a window of one
/// second), and a vote on one's own proposal: none counts, none unlocks anything.
async fn check_refused_creations_and_own_votes_earn_nothing(node: &Node) {
    let mut over = created("over-1", 6, 60);
    over.starts_at = Utc::now() - chrono::Duration::hours(2);
    over.ends_at = Utc::now() - chrono::Duration::hours(1);
    let mut no_quorum = created("noquorum-1", 6, 3_600);
    no_quorum.quorum = 0;
    let blink = created("blink-1", 6, 1);
    node.publish_as_producer(&[
        Envelope::new("farmer", over),
        Envelope::new("farmer", no_quorum),
        Envelope::new("farmer", blink),
        Envelope::new("farmer", created("own-1", 7, 3_600)),
    ])
    .await;
    common::eventually(WAIT, "own-1 exists", || async {
        node.status("own-1").await.is_some()
    })
    .await;
    let own_vote = common::vote_cast("farmer", "own-1", common::wallet(7), VoteChoice::For);
    node.publish_as_producer(&[own_vote]).await;
    // The accepted creator's first-proposal unlock is the marker that the user side ran.
    common::eventually(WAIT, "user 7's first proposal is unlocked", || async {
        node.achievements_of(&common::wallet(7))
            .await
            .contains(&"first-proposal".to_string())
    })
    .await;
    common::eventually(WAIT, "the own vote is in the tally", || async {
        let p = proposal::Entity::find_by_id("own-1".to_string())
            .one(node.store.db())
            .await
            .expect("proposals");
        p.is_some_and(|p| p.tally["voters"] == json!(1))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for refused in ["over-1", "noquorum-1", "blink-1", "nul-title"] {
        assert_eq!(node.status(refused).await, None, "{refused} must not exist");
    }
    assert!(
        node.achievements_of(&common::wallet(6)).await.is_empty(),
        "refused creations unlock nothing"
    );
    assert!(
        node.achievements_of(&common::wallet(5)).await.is_empty(),
        "a dead-lettered creation unlocks nothing"
    );
    let user7 = node
        .get_admin(&format!("/api/v1/users/{}", common::wallet(7)))
        .await;
    println!("user 7: {user7}");
    assert_eq!(
        user7["votes_cast"],
        json!(0),
        "own votes earn nothing: {user7}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn api_creations_refuse_bad_fields_naming_them_and_are_limited_per_user_and_day() {
    let node = Node::start("trust-api").await;
    check_api_creations_with_a_nul_a_blink_or_no_quorum_are_400(&node).await;
    check_api_creations_are_limited_per_user_and_day(&node).await;
    node.finish().await;
}

/// A `POST /api/v1/proposals` as the user of `token`.
fn create_via_api(node: &Node, token: &str, body: &Value) -> reqwest::RequestBuilder {
    node.http
        .post(format!("{}/api/v1/proposals", node.served.base))
        .bearer_auth(token)
        .json(body)
}

/// Through the API: a NUL is a 400 that names the field, a refused window too.
async fn check_api_creations_with_a_nul_a_blink_or_no_quorum_are_400(node: &Node) {
    let token = merit_api::sign(
        node.served.jwt.as_bytes(),
        &common::wallet(8).to_string(),
        600,
    );
    let now = Utc::now();
    for (body, needle) in [
        (
            json!({"proposal": "api-nul", "title": "a\u{0}b", "starts_at": now,
                   "ends_at": now + chrono::Duration::days(1), "quorum": 1000}),
            "control character",
        ),
        (
            json!({"proposal": "api-blink", "title": "t", "starts_at": now,
                   "ends_at": now + chrono::Duration::seconds(1), "quorum": 1000}),
            "ends_at",
        ),
        (
            json!({"proposal": "api-zero", "title": "t", "starts_at": now,
                   "ends_at": now + chrono::Duration::days(1), "quorum": 0}),
            "quorum",
        ),
    ] {
        let resp = create_via_api(node, &token, &body)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let answer: Value = resp.json().await.expect("json");
        println!("{status} {answer}");
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{message}");
    }
}

/// Creations through the API are limited per user and day (20 by default): the limit's
/// worth is accepted, the next one is 429 naming it.
async fn check_api_creations_are_limited_per_user_and_day(node: &Node) {
    let limit = 20;
    let farmer = merit_api::sign(
        node.served.jwt.as_bytes(),
        &common::wallet(10).to_string(),
        600,
    );
    let create = |i: u32| {
        let now = Utc::now();
        create_via_api(
            node,
            &farmer,
            &json!({"proposal": format!("daily-{i}"), "title": "t", "starts_at": now,
                    "ends_at": now + chrono::Duration::days(1), "quorum": 1000}),
        )
        .send()
    };
    for i in 0..limit {
        let resp = create(i).await.expect("request");
        assert_eq!(resp.status(), reqwest::StatusCode::ACCEPTED, "creation {i}");
    }
    common::eventually(WAIT, "the day's creations exist", || async {
        let mut all = true;
        for i in 0..limit {
            all &= node.status(&format!("daily-{i}")).await.is_some();
        }
        all
    })
    .await;
    let resp = create(limit).await.expect("request");
    let status = resp.status();
    let answer: Value = resp.json().await.expect("json");
    assert_eq!(status, reqwest::StatusCode::TOO_MANY_REQUESTS, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("at most 20"), "{message}");
}

/// A deadline its actor never applies (refused, dead-lettered, or pre-claimed as before
/// the inbox namespaces) must not keep its proposal in the timer's scan: once emitted it
/// is marked, so 500 stuck proposals cannot starve every other proposal's deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emitted_deadline_leaves_the_timer_s_scan_whether_or_not_it_is_applied() {
    use merit_storage::sea_orm::{ActiveValue::Set, EntityTrait};
    let (db, store) = TestDb::migrated(Backend::Sqlite).await;
    let now = Utc::now();
    let row = |id: &str, ends_secs_ago: i64| proposal::ActiveModel {
        id: Set(id.to_string()),
        creator: Set(common::wallet(1).to_string()),
        title: Set(id.to_string()),
        description: Set(String::new()),
        starts_at: Set(now - chrono::Duration::hours(1)),
        ends_at: Set(now - chrono::Duration::seconds(ends_secs_ago)),
        quorum: Set(1),
        threshold_bps: Set(5_000),
        status: Set("active".into()),
        tally: Set(json!({})),
        created_at: Set(now - chrono::Duration::hours(1)),
        updated_at: Set(now),
        deadlines_fired: merit_storage::sea_orm::ActiveValue::NotSet,
    };
    proposal::Entity::insert_many([row("stuck-1", 60), row("stuck-2", 50)])
        .exec(store.db())
        .await
        .expect("proposals");
    // No actor runs here: the projection stays `active`, as with a deadline its actor
    // never applied.
    assert_eq!(
        merit_supervisors::fire_due_deadlines(&store)
            .await
            .expect("tick"),
        2
    );
    assert_eq!(
        merit_supervisors::fire_due_deadlines(&store)
            .await
            .expect("tick"),
        0
    );
    assert!(
        store
            .due_proposals(Utc::now(), 500)
            .await
            .expect("due")
            .is_empty(),
        "emitted deadlines are no longer due"
    );
    // A later proposal's deadline is still found and fired.
    proposal::Entity::insert(row("fresh-1", 1))
        .exec(store.db())
        .await
        .expect("proposal");
    let due = store.due_proposals(Utc::now(), 1).await.expect("due");
    assert_eq!(
        due.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        ["fresh-1"]
    );
    assert_eq!(
        merit_supervisors::fire_due_deadlines(&store)
            .await
            .expect("tick"),
        1
    );
    // Each emitted once, in the outbox.
    let outbox = merit_storage::entities::outbox::Entity::find()
        .all(store.db())
        .await
        .expect("outbox");
    assert_eq!(outbox.len(), 3);
    db.cleanup().await;
}
