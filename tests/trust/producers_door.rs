//! Attacks through the producers' door: merit's own event types, a broker user writing
//! where it may not, a NUL in a title, refused creations and own votes.

use std::time::Duration;

use chrono::Utc;
use merit_mailbox::{Outgoing, Transport};
use merit_messages::{
    AchievementMinted, DeadlinePhase, Envelope, HoldingChange, HoldingsChanged, ProposalDeadline,
    VoteChoice, VoteRecorded,
};
use merit_storage::{entities::proposal, sea_orm::EntityTrait};
use serde_json::{json, Value};

use crate::{
    common::{self, Vhost},
    harness::{created, Node, WAIT},
};

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
