//! The broker's share of a vote, without merit: on merit's real topology (declared by
//! [`RabbitTransport::declare`] under a prefix of the run's own — `merit.events` and
//! `merit.internal`, the headers gates, the consistent-hash exchanges, quorum shard queues
//! with a single active consumer), the same messages move as for a vote through a node:
//!
//! 1. the load generator publishes each vote — a real `governance.vote.cast` envelope, the
//!    same body and `merit-*` headers merit's producers send — to the events exchange, in
//!    batches awaiting their confirms, as the end-to-end stage's load generator does;
//! 2. a consumer per proposal shard (prefetch as configured) takes each and publishes, on
//!    one confirm channel like the node's relay, a message the size of the vote's real
//!    `governance.vote.recorded` (routing key, `merit-user` header, message and
//!    correlation ids) to the internal exchange, awaits its confirm, then acks the vote;
//! 3. a consumer per user shard acks each `vote.recorded`.
//!
//! A vote is done when its `vote.recorded` was acked. No storage, no actors, no decoding:
//! what is left is the broker's work (two persistent publishes with confirms into quorum
//! queues, two deliveries, two acks) and lapin's.

use std::{sync::Arc, time::Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use lapin::{
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection,
};
use merit_mailbox::{key_header, Outgoing, RabbitTransport, Topology, Transport};
use merit_messages::{ActorKind, Address, Envelope, VoteCast, VoteChoice, VoteRecorded};
use tokio::sync::mpsc;

use super::{cpu, voter, Shape};

/// Votes published per batch (each batch's confirms awaited together), as the
/// end-to-end stage's load generator does.
const BATCH: usize = 500;

/// Runs `n` votes of `shape` through the broker alone; returns the seconds from the first
/// publish to the last `vote.recorded` ack, and the CPU time per vote over that span (not
/// over declaring and removing the topology).
pub(super) async fn baseline(
    url: &str,
    topology: Topology,
    n: u32,
    prefetch: u16,
    shape: Shape,
) -> Result<(f64, cpu::PerVote)> {
    let transport = RabbitTransport::connect(url, topology.clone()).await?;
    transport.declare().await?;
    drop(transport);
    let conn = crate::serve::amqp_connection(url)
        .await
        .context("the broker baseline's connection")?;
    let run = moving(&conn, &topology, n, prefetch, shape).await;
    let removed = remove_topology(&conn, &topology).await;
    let _ = conn.close(200, "bench done".into()).await;
    let measured = run?;
    removed?;
    Ok(measured)
}

/// Moves `n` votes of `shape` through the declared `topology`: starts the shard consumers,
/// then publishes while counting the finished votes, on the clock.
async fn moving(
    conn: &Connection,
    topology: &Topology,
    n: u32,
    prefetch: u16,
    shape: Shape,
) -> Result<(f64, cpu::PerVote)> {
    // Everything published is built before the clock starts.
    let votes = votes(n, shape);
    let (done_tx, done) = mpsc::unbounded_channel::<Result<(), String>>();
    let tasks = start_consumers(conn, topology, prefetch, done_tx).await?;
    let producer = conn.create_channel().await?;
    producer
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let exchange = topology.events_exchange();
    let cpu_before = cpu::sample();
    let started = Instant::now();
    let outcome =
        futures::future::try_join(publish(&producer, &exchange, &votes), count(done, n)).await;
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu::per_vote(&cpu_before, &cpu::sample(), n);
    for t in &tasks {
        t.abort();
    }
    outcome?;
    Ok((secs, cpu))
}

/// The `n` votes of `shape` as merit's producers publish them: routing key, body and
/// properties.
fn votes(n: u32, shape: Shape) -> Vec<(Outgoing, BasicProperties)> {
    (0..n)
        .map(|i| {
            let (v, p) = shape.vote(i, n);
            let out = Outgoing::from_envelope(&Envelope::new(
                "bench",
                VoteCast {
                    proposal: format!("base-{p}").parse().expect("valid id"),
                    voter: voter(v),
                    choice: VoteChoice::For,
                    reason: None,
                },
            ));
            let props = properties(&out);
            (out, props)
        })
        .collect()
}

/// Starts a consumer on every proposal shard (relaying each vote as a `vote.recorded` on
/// one confirm channel, like the node's relay) and on every user shard (reporting each
/// finished vote to `done`); returns their tasks.
async fn start_consumers(
    conn: &Connection,
    topology: &Topology,
    prefetch: u16,
    done: mpsc::UnboundedSender<Result<(), String>>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let recorded = Arc::new(recorded_body());
    let relay = conn.create_channel().await?;
    relay
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut tasks = Vec::new();
    for shard in topology.shards_of(ActorKind::Proposal) {
        let ch = consumer(conn, &topology.shard_queue(shard), prefetch).await?;
        tasks.push(tokio::spawn(forward(
            ch,
            relay.clone(),
            topology.internal_exchange(),
            recorded.clone(),
            done.clone(),
        )));
    }
    for shard in topology.shards_of(ActorKind::User) {
        let ch = consumer(conn, &topology.shard_queue(shard), prefetch).await?;
        tasks.push(tokio::spawn(finish(ch, done.clone())));
    }
    Ok(tasks)
}

/// Publishes `votes` to `exchange` in batches of [`BATCH`], each batch's confirms awaited
/// together.
async fn publish(
    producer: &Channel,
    exchange: &str,
    votes: &[(Outgoing, BasicProperties)],
) -> Result<()> {
    for batch in votes.chunks(BATCH) {
        let mut confirms = Vec::with_capacity(batch.len());
        for (out, props) in batch {
            confirms.push(
                producer
                    .basic_publish(
                        exchange.into(),
                        out.routing_key.as_str().into(),
                        BasicPublishOptions::default(),
                        &out.body,
                        props.clone(),
                    )
                    .await?,
            );
        }
        for c in confirms {
            anyhow::ensure!(c.await?.is_ack(), "the broker refused a vote");
        }
    }
    Ok(())
}

/// Waits until `n` votes are reported done, or fails with the first error a consumer
/// reports (or when every consumer ended first).
async fn count(mut done: mpsc::UnboundedReceiver<Result<(), String>>, n: u32) -> Result<()> {
    let mut acked = 0u32;
    while acked < n {
        match done.recv().await {
            Some(Ok(())) => acked += 1,
            Some(Err(e)) => anyhow::bail!("after {acked} of {n} votes: {e}"),
            None => anyhow::bail!("every consumer ended after {acked} of {n} votes"),
        }
    }
    Ok(())
}

/// A channel consuming `queue` with at most `prefetch` unacked deliveries.
async fn consumer(conn: &Connection, queue: &str, prefetch: u16) -> Result<lapin::Consumer> {
    let ch = conn.create_channel().await?;
    ch.basic_qos(prefetch, BasicQosOptions::default()).await?;
    Ok(ch
        .basic_consume(
            queue.into(),
            "bench-baseline".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?)
}

/// A proposal shard's consumer: each vote becomes a `vote.recorded` on the internal
/// exchange, confirmed before the vote is acked; deliveries are handled concurrently (up
/// to the prefetch), as a shard's actors are.
async fn forward(
    mut votes: lapin::Consumer,
    relay: Channel,
    exchange: String,
    body: Arc<Vec<u8>>,
    done: mpsc::UnboundedSender<Result<(), String>>,
) {
    while let Some(delivery) = votes.next().await {
        let delivery = match delivery {
            Ok(d) => d,
            Err(e) => {
                let _ = done.send(Err(format!("a proposal shard's consumer: {e}")));
                return;
            }
        };
        let (relay, exchange, body, done) =
            (relay.clone(), exchange.clone(), body.clone(), done.clone());
        tokio::spawn(async move {
            let user = delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| {
                    h.inner()
                        .iter()
                        .find(|(k, _)| k.as_str() == key_header(ActorKind::User))
                        .map(|(_, v)| v.clone())
                })
                .unwrap_or(AMQPValue::LongString("".into()));
            let mut headers = FieldTable::default();
            headers.insert(key_header(ActorKind::User).into(), user);
            let id = uuid::Uuid::new_v4().to_string();
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(id.as_str().into())
                .with_correlation_id(id.as_str().into())
                .with_headers(headers);
            let moved = async {
                let confirm = relay
                    .basic_publish(
                        exchange.as_str().into(),
                        "governance.vote.recorded".into(),
                        BasicPublishOptions::default(),
                        &body,
                        props,
                    )
                    .await?
                    .await?;
                anyhow::ensure!(confirm.is_ack(), "the broker refused a vote.recorded");
                delivery.ack(BasicAckOptions::default()).await?;
                anyhow::Ok(())
            };
            if let Err(e) = moved.await {
                let _ = done.send(Err(format!("relaying a vote: {e:#}")));
            }
        });
    }
}

/// A user shard's consumer: acks each `vote.recorded` and reports it.
async fn finish(mut recorded: lapin::Consumer, done: mpsc::UnboundedSender<Result<(), String>>) {
    while let Some(delivery) = recorded.next().await {
        let outcome = match delivery {
            Ok(d) => d
                .ack(BasicAckOptions::default())
                .await
                .map(|_| ())
                .map_err(|e| format!("acking a vote.recorded: {e}")),
            Err(e) => Err(format!("a user shard's consumer: {e}")),
        };
        let failed = outcome.is_err();
        let _ = done.send(outcome);
        if failed {
            return;
        }
    }
}

/// The properties merit's publisher sends `out` with: persistent, JSON, ids, string
/// headers.
fn properties(out: &Outgoing) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in &out.headers {
        headers.insert(
            name.as_str().into(),
            AMQPValue::LongString(value.as_str().into()),
        );
    }
    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(out.message_id.as_str().into())
        .with_headers(headers);
    if let Some(c) = &out.correlation_id {
        props = props.with_correlation_id(c.as_str().into());
    }
    props
}

/// The body of a real `governance.vote.recorded` for a plain vote (what a ProposalActor
/// emits for one): its size is what the broker moves.
fn recorded_body() -> Vec<u8> {
    let vote = Envelope::new(
        "bench",
        VoteCast {
            proposal: "base-0".parse().expect("valid id"),
            voter: Address([7; 20]),
            choice: VoteChoice::For,
            reason: None,
        },
    );
    let mut env = Envelope::new(
        "merit",
        VoteRecorded {
            proposal: "base-0".parse().expect("valid id"),
            proposal_seq: 1,
            voter: Address([7; 20]),
            choice: VoteChoice::For,
            weight: 1_000,
            multiplier_bps: 10_000,
            boosts: Vec::new(),
            config_version: 1,
            own_proposal: false,
        },
    );
    env.id = merit_messages::EventId::derived(vote.id, "recorded");
    env.correlation_id = vote.correlation_id;
    env.causation_id = Some(vote.id);
    env.to_json()
}

/// Deletes every queue and exchange of `topology` (best effort per object; the first
/// failure is returned after trying them all).
pub(super) async fn remove_topology(conn: &Connection, topology: &Topology) -> Result<()> {
    let mut first = None;
    for queue in topology.all_queues() {
        // A failed delete closes its channel: each object gets a fresh one.
        let ch = conn.create_channel().await?;
        if let Err(e) = ch
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
        {
            first.get_or_insert(anyhow::Error::from(e).context(format!("delete queue {queue}")));
        }
        let _ = ch.close(200, "bench done".into()).await;
    }
    let mut exchanges = vec![
        topology.events_exchange(),
        topology.internal_exchange(),
        topology.dead_letter_exchange(),
        topology.unrouted(),
    ];
    for kind in ActorKind::ALL {
        exchanges.push(topology.gate_exchange(kind));
        exchanges.push(topology.kind_exchange(kind));
    }
    for exchange in exchanges {
        let ch = conn.create_channel().await?;
        if let Err(e) = ch
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await
        {
            first.get_or_insert(
                anyhow::Error::from(e).context(format!("delete exchange {exchange}")),
            );
        }
        let _ = ch.close(200, "bench done".into()).await;
    }
    first.map_or(Ok(()), Err)
}
