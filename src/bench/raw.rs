//! The raw broker loop: a plain lapin loop, without merit's topology — publish N
//! persistent messages with confirms (a window of in-flight confirms) to one quorum queue
//! while consuming them with manual acks. Kept so that earlier figures stay comparable.

use std::sync::Arc;

use anyhow::Result;
use futures::{stream::FuturesUnordered, StreamExt};
use lapin::{
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection,
};
use merit_messages::{Address, Envelope, VoteCast, VoteChoice};
use tokio::task::JoinHandle;

/// Publish confirms awaited asynchronously at once.
const WINDOW: usize = 200;

/// Moves `n` messages through a queue of the run's own; returns messages per second, from
/// the first publish to the last ack.
pub(super) async fn measure(url: &str, run_id: &str, n: u32, prefetch: u16) -> Result<f64> {
    let conn = crate::serve::amqp_connection(url).await?;
    let queue = format!("merit.bench.raw.{run_id}");
    let pub_ch = declare(&conn, &queue).await?;
    let con_ch = Arc::new(conn.create_channel().await?);
    con_ch
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let consumer = con_ch
        .basic_consume(
            queue.as_str().into(),
            "bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let body = sample_body();
    let started = std::time::Instant::now();
    let consuming = consume(consumer, n);
    publish(&pub_ch, &queue, &body, n).await?;
    consuming.await??;
    let secs = started.elapsed().as_secs_f64();
    con_ch.close(200, "bench done".into()).await?;
    pub_ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    conn.close(200, "bench done".into()).await?;
    Ok(f64::from(n) / secs)
}

/// Declares the durable quorum `queue`; returns the publisher's channel (confirms on)
/// that declared it.
async fn declare(conn: &Connection, queue: &str) -> Result<Channel> {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    // Removed by the broker once unused for ten minutes, should the run stop (a stage's
    // time limit, a kill) before deleting it.
    args.insert("x-expires".into(), AMQPValue::LongUInt(600_000));
    let pub_ch = conn.create_channel().await?;
    pub_ch
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    pub_ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await?;
    Ok(pub_ch)
}

/// Acks `n` deliveries of `consumer`, in a task of its own so that consuming overlaps
/// publishing.
fn consume(mut consumer: lapin::Consumer, n: u32) -> JoinHandle<Result<()>> {
    tokio::spawn(async move {
        let mut got = 0u32;
        while got < n {
            match consumer.next().await {
                Some(Ok(delivery)) => {
                    delivery.ack(BasicAckOptions::default()).await?;
                    got += 1;
                }
                Some(Err(e)) => return Err(anyhow::Error::from(e)),
                None => anyhow::bail!("raw consumer ended after {got} of {n}"),
            }
        }
        Ok(())
    })
}

/// Publishes `body` `n` times to `queue`, persistent, keeping at most [`WINDOW`] confirms
/// in flight; returns once every confirm arrived.
async fn publish(pub_ch: &Channel, queue: &str, body: &[u8], n: u32) -> Result<()> {
    let mut inflight = FuturesUnordered::new();
    for _ in 0..n {
        let confirm = pub_ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into()),
            )
            .await?;
        inflight.push(confirm);
        while inflight.len() >= WINDOW {
            if let Some(c) = inflight.next().await {
                c?;
            }
        }
    }
    while let Some(c) = inflight.next().await {
        c?;
    }
    Ok(())
}

/// The body the raw loop moves: a vote's envelope, the size merit's producers send.
fn sample_body() -> Vec<u8> {
    let env = Envelope::new(
        "bench",
        VoteCast {
            proposal: "bench-p".parse().expect("valid id"),
            voter: Address([7; 20]),
            choice: VoteChoice::For,
            reason: None,
        },
    );
    env.to_json()
}
