//! Declares the topology described in [`crate::topology`] on a connection. Every step is
//! idempotent (same names, same arguments), so it runs on every (re)connect once the
//! application has declared once. Sinks are declared before the exchanges that feed them,
//! so no message can be routed into a half-built path.

use lapin::{
    options::{
        ExchangeBindOptions, ExchangeDeclareOptions, ExchangeUnbindOptions, QueueBindOptions,
        QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
    Channel, Connection, ExchangeKind,
};
use merit_messages::{ActorKind, EventType, Origin};

use super::RabbitOptions;
use crate::{
    error::{reply_code, Error, Result, PRECONDITION_FAILED},
    routing::key_header,
    topology::Topology,
};

/// Declares every exchange, queue and binding of `topology`; quorum queues with the
/// replica count of `options`.
pub(crate) async fn declare(
    connection: &Connection,
    topology: &Topology,
    options: &RabbitOptions,
) -> Result<()> {
    let quorum = Quorum(options.quorum_group_size);
    let ch = connection
        .create_channel()
        .await
        .map_err(|e| Error::amqp("open a channel to declare the topology", e))?;
    let unrouted = topology.unrouted();
    let alternate = table([("alternate-exchange", text(&unrouted))]);

    exchange(
        &ch,
        &unrouted,
        ExchangeKind::Fanout,
        false,
        FieldTable::default(),
    )
    .await?;
    let ch = quorum.queue(connection, ch, &unrouted, true).await?;
    bind_queue(&ch, &unrouted, &unrouted, "").await?;

    let dlx = topology.dead_letter_exchange();
    let dlq = topology.dead_letter_queue();
    exchange(
        &ch,
        &dlx,
        ExchangeKind::Fanout,
        false,
        FieldTable::default(),
    )
    .await?;
    let mut ch = dead_letter_queue(connection, ch, &dlq, quorum).await?;
    bind_queue(&ch, &dlq, &dlx, "").await?;

    let events = topology.events_exchange();
    exchange(&ch, &events, ExchangeKind::Topic, false, alternate.clone()).await?;
    let internal = topology.internal_exchange();
    exchange(
        &ch,
        &internal,
        ExchangeKind::Topic,
        false,
        alternate.clone(),
    )
    .await?;

    for kind in ActorKind::ALL {
        let header = key_header(kind);
        let hashed = topology.kind_exchange(kind);
        let mut hash_args = alternate.clone();
        hash_args.insert("hash-header".into(), text(header));
        let consistent_hash = ExchangeKind::Custom("x-consistent-hash".into());
        exchange(&ch, &hashed, consistent_hash, true, hash_args).await?;
        for shard in topology.shards_of(kind) {
            let queue = topology.shard_queue(shard);
            ch = shard_queue(connection, ch, &queue, &dlx, quorum).await?;
            // The binding key of a consistent-hash exchange is the queue's weight.
            bind_queue(&ch, &queue, &hashed, "1").await?;
        }

        let gate = topology.gate_exchange(kind);
        exchange(&ch, &gate, ExchangeKind::Headers, true, alternate.clone()).await?;
        // A header with no value in a headers binding matches on presence alone.
        let present = table([("x-match", text("all")), (header, AMQPValue::Void)]);
        bind_exchange(&ch, &hashed, &gate, "", present).await?;

        for event_type in EventType::ALL
            .iter()
            .filter(|t| t.handlers().contains(&kind))
        {
            // merit's door routes every type; the producers' door only theirs.
            let key = event_type.as_str();
            bind_exchange(&ch, &gate, &internal, key, FieldTable::default()).await?;
            if event_type.origin() == Origin::Producer {
                bind_exchange(&ch, &gate, &events, key, FieldTable::default()).await?;
            } else {
                // A binding from an earlier release (before the two doors) would let
                // producers in: remove it (a no-op when there is none).
                unbind_exchange(&ch, &gate, &events, key).await?;
            }
        }
    }

    if let Err(e) = ch.close(200, "declared".into()).await {
        tracing::debug!(error = %e, "closing the declare channel");
    }
    Ok(())
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

fn table<const N: usize>(entries: [(&str, AMQPValue); N]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(k.into(), v);
    }
    t
}

async fn exchange(
    ch: &Channel,
    name: &str,
    kind: ExchangeKind,
    internal: bool,
    args: FieldTable,
) -> Result<()> {
    let options = ExchangeDeclareOptions {
        durable: true,
        internal,
        ..ExchangeDeclareOptions::default()
    };
    ch.exchange_declare(name.into(), kind, options, args)
        .await
        .map_err(|e| Error::amqp(format!("declare exchange {name}"), e))
}

/// Most dead letters `merit.dlq` keeps; past it the oldest are dropped (`drop-head`), so
/// a producer flooding merit with garbage cannot exhaust the broker's memory or disk.
pub(crate) const DEAD_LETTER_MAX_LENGTH: i64 = 100_000;

/// Declares the dead-letter queue with its length bound; an older unbounded one is kept
/// (see [`declare_or_keep`]).
async fn dead_letter_queue(
    connection: &Connection,
    ch: Channel,
    dlq: &str,
    quorum: Quorum,
) -> Result<Channel> {
    let mut args = quorum.args();
    args.insert("x-overflow".into(), text("drop-head"));
    args.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(DEAD_LETTER_MAX_LENGTH),
    );
    declare_or_keep(
        connection,
        ch,
        dlq,
        args,
        "the dead-letter queue exists without a length bound; bound it with \
         `rabbitmqctl set_policy merit-dlq '^merit\\.dlq$' \
         '{\"max-length\":100000,\"overflow\":\"drop-head\"}' --apply-to queues`",
    )
    .await
}

/// Declares queue `name` with `args`. A queue an earlier release declared with other
/// arguments cannot be redeclared with these (the broker refuses changed arguments and
/// closes the channel): it is then kept as it is, with a warning `hint` naming the policy
/// that gives it the new ones, and declared passively on a fresh channel, which is
/// returned for the rest of the topology.
async fn declare_or_keep(
    connection: &Connection,
    ch: Channel,
    name: &str,
    args: FieldTable,
    hint: &str,
) -> Result<Channel> {
    match ch
        .queue_declare(name.into(), QueueDeclareOptions::durable(), args)
        .await
    {
        Ok(_) => Ok(ch),
        Err(e) if is_precondition_failed(&e) => {
            tracing::warn!(queue = name, error = %e, "{hint}");
            let ch = connection
                .create_channel()
                .await
                .map_err(|e| Error::amqp("open a channel to declare the topology", e))?;
            ch.queue_declare(
                name.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| Error::amqp(format!("declare queue {name}"), e))?;
            Ok(ch)
        }
        Err(e) => Err(Error::amqp(format!("declare queue {name}"), e)),
    }
}

/// Deliveries of one message a shard queue allows before the broker dead-letters it to
/// `merit.dlx` (class `delivery_limit`). merit dead-letters a message whose turn keeps
/// failing itself, with its reason, after `MERIT_MAILBOX_MAX_ATTEMPTS`; this limit is for
/// a message that never gets that far because it stops the node that takes it. RabbitMQ
/// 4.x sets a limit of 20 on every quorum queue and, with no dead-letter target, drops
/// the message: declared explicitly, 3.10 and 4.x both keep it in `merit.dlq`.
pub(crate) const SHARD_DELIVERY_LIMIT: i64 = 20;

/// Declares a shard queue: quorum, single active consumer, the delivery limit and the
/// dead-letter exchange; an older one without the last two is kept (see
/// [`declare_or_keep`]).
async fn shard_queue(
    connection: &Connection,
    ch: Channel,
    name: &str,
    dlx: &str,
    quorum: Quorum,
) -> Result<Channel> {
    let mut args = quorum.args();
    args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    args.insert("x-dead-letter-exchange".into(), text(dlx));
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(SHARD_DELIVERY_LIMIT),
    );
    let hint = format!(
        "the shard queue exists with other arguments and is kept as it is. If it lacks a \
         delivery limit and dead-letter target, set them with `rabbitmqctl set_policy merit-shards '^merit\\.(user|proposal|nft)\\.[0-9]+$' \
         '{{\"delivery-limit\":{SHARD_DELIVERY_LIMIT},\"dead-letter-exchange\":\"{dlx}\"}}' \
         --apply-to quorum_queues`; a replica count set since applies to new queues only \
         (`rabbitmq-queues grow` adds replicas to existing ones)"
    );
    declare_or_keep(connection, ch, name, args, &hint).await
}

/// Whether the broker refused a declare because the object exists with other arguments
/// (reply code 406 PRECONDITION_FAILED).
fn is_precondition_failed(e: &lapin::Error) -> bool {
    reply_code(e) == Some(PRECONDITION_FAILED)
}

/// How merit's quorum queues are replicated: over `Some(n)` broker nodes, or the broker's
/// default.
#[derive(Clone, Copy)]
struct Quorum(Option<u16>);

impl Quorum {
    /// The arguments every quorum queue merit declares starts from.
    fn args(self) -> FieldTable {
        let mut args = table([("x-queue-type", text("quorum"))]);
        if let Some(size) = self.0 {
            args.insert(
                "x-quorum-initial-group-size".into(),
                AMQPValue::LongLongInt(i64::from(size)),
            );
        }
        args
    }

    /// A durable quorum queue; `single_active` makes one consumer active at a time.
    async fn queue(
        self,
        connection: &Connection,
        ch: Channel,
        name: &str,
        single_active: bool,
    ) -> Result<Channel> {
        let mut args = self.args();
        if single_active {
            args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        }
        declare_or_keep(connection, ch, name, args, KEEP_HINT).await
    }
}

/// What an operator does about a queue kept with the arguments an earlier setting gave it.
const KEEP_HINT: &str = "the queue exists with other arguments and is kept as it is; a \
    replica count set since applies to new queues only (`rabbitmq-queues grow` adds replicas \
    to existing ones)";

async fn bind_queue(ch: &Channel, queue: &str, exchange: &str, key: &str) -> Result<()> {
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| Error::amqp(format!("bind queue {queue} to {exchange} with {key:?}"), e))
}

async fn bind_exchange(
    ch: &Channel,
    destination: &str,
    source: &str,
    key: &str,
    args: FieldTable,
) -> Result<()> {
    ch.exchange_bind(
        destination.into(),
        source.into(),
        key.into(),
        ExchangeBindOptions::default(),
        args,
    )
    .await
    .map_err(|e| {
        Error::amqp(
            format!("bind exchange {destination} to {source} with {key:?}"),
            e,
        )
    })
}

async fn unbind_exchange(ch: &Channel, destination: &str, source: &str, key: &str) -> Result<()> {
    ch.exchange_unbind(
        destination.into(),
        source.into(),
        key.into(),
        ExchangeUnbindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| {
        Error::amqp(
            format!("unbind exchange {destination} from {source} with {key:?}"),
            e,
        )
    })
}
