//! Facts about RabbitMQ that merit's topology relies on, checked against the real broker
//! with plain lapin (no merit code), so a broker upgrade that changes them fails here.

mod common;

use lapin::{
    options::{
        BasicPublishOptions, ConfirmSelectOptions, ExchangeBindOptions, ExchangeDeclareOptions,
        QueueBindOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind,
};

fn args(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

async fn exchange(ch: &Channel, name: &str, kind: ExchangeKind, a: FieldTable) {
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    ch.exchange_declare(name.into(), kind, options, a)
        .await
        .expect("exchange declared");
}

async fn queue(ch: &Channel, name: &str, exchange: &str, key: &str) {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .expect("queue declared");
    ch.queue_bind(
        name.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue bound");
}

async fn depth(ch: &Channel, name: &str) -> u32 {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions::durable().passive(),
        FieldTable::default(),
    )
    .await
    .expect("queue exists")
    .message_count()
}

async fn publish(ch: &Channel, exchange: &str, key: &str, headers: FieldTable) {
    let confirm = ch
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            b"{}",
            BasicProperties::default().with_headers(headers),
        )
        .await
        .expect("published")
        .await
        .expect("confirmed");
    assert!(confirm.is_ack());
}

/// RabbitMQ 3.10's consistent-hash exchange does not treat a missing hash header as
/// unroutable: it hashes the absent value, so every such message goes to one fixed queue
/// and its alternate exchange never sees them. A headers exchange with a presence-only
/// binding (a header with no value) in front does divert them to its alternate exchange.
/// That is why merit puts a gate in front of each consistent-hash exchange.
#[tokio::test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn consistent_hash_routes_headerless_messages_to_one_queue_and_a_presence_gate_diverts_them()
{
    let vhost = common::Vhost::create();
    let conn = Connection::connect(&vhost.url(), ConnectionProperties::default())
        .await
        .expect("connected");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");

    exchange(&ch, "ae", ExchangeKind::Fanout, FieldTable::default()).await;
    queue(&ch, "unrouted", "ae", "").await;
    let alternate = ("alternate-exchange", text("ae"));
    let ch_args = args(&[alternate.clone(), ("hash-header", text("k"))]);
    exchange(
        &ch,
        "hash",
        ExchangeKind::Custom("x-consistent-hash".into()),
        ch_args,
    )
    .await;
    let shards = ["s0", "s1", "s2", "s3"];
    for s in shards {
        queue(&ch, s, "hash", "1").await;
    }
    exchange(&ch, "gate", ExchangeKind::Headers, args(&[alternate])).await;
    let presence = args(&[("x-match", text("all")), ("k", AMQPValue::Void)]);
    ch.exchange_bind(
        "hash".into(),
        "gate".into(),
        "".into(),
        ExchangeBindOptions::default(),
        presence,
    )
    .await
    .expect("gate bound");

    for _ in 0..20 {
        publish(&ch, "hash", "", FieldTable::default()).await;
    }
    let mut depths = Vec::new();
    for s in shards {
        depths.push(depth(&ch, s).await);
    }
    assert_eq!(
        depth(&ch, "unrouted").await,
        0,
        "the CH exchange used its AE"
    );
    assert_eq!(
        depths.iter().filter(|&&d| d > 0).count(),
        1,
        "headerless messages spread over several shards: {depths:?}"
    );
    assert_eq!(depths.iter().sum::<u32>(), 20);

    for _ in 0..5 {
        publish(&ch, "gate", "", FieldTable::default()).await;
    }
    assert_eq!(
        depth(&ch, "unrouted").await,
        5,
        "the gate let headerless messages through"
    );
    for i in 0..40 {
        publish(&ch, "gate", "", args(&[("k", text(&format!("key-{i}")))])).await;
    }
    let mut total = 0;
    for s in shards {
        total += depth(&ch, s).await;
    }
    assert_eq!(total, 20 + 40, "keyed messages did not all pass the gate");
    assert_eq!(depth(&ch, "unrouted").await, 5);
    conn.close(200, "done".into()).await.expect("closed");
}
