//! `merit reshard`: changes the number of shard queues per actor kind on a drained
//! deployment. The shard count decides which queue a key's messages go to, so it may only
//! change while nothing is in flight: the command checks that no node of this cluster is
//! registered, that the outbox has nothing left to publish and that every shard queue is
//! empty and unconsumed, then declares the queues of the new count (bound to the
//! consistent-hash exchanges) and deletes those above it (the broker deletes a queue
//! only if it is still empty and unused). Producers must be stopped first: the command
//! cannot see them.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use merit_config::Settings;
use merit_mailbox::{RabbitOptions, RabbitTransport, Topology, Transport};
use merit_messages::ActorKind;

/// `merit reshard` arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct ReshardArgs {
    /// The new number of shard queues per actor kind (1 to 256).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    to: u16,
    /// Check and print what would change, and change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Runs `merit reshard`.
pub(crate) async fn reshard(settings: &Settings, args: ReshardArgs) -> Result<()> {
    let url = settings.amqp_url.as_ref().context(
        "merit reshard changes RabbitMQ shard queues: set MERIT_AMQP_URL \
         (the in-process transport has no queues to change)",
    )?;
    let mut not_drained = database_not_drained(settings).await?;

    let options = RabbitOptions {
        connection_name: "merit-reshard".into(),
        quorum_group_size: settings.mailbox.quorum_group_size,
        op_timeout: Duration::from_secs(30),
        ..RabbitOptions::default()
    };
    let transport = RabbitTransport::connect_with(url.expose(), Topology::new(args.to), options)
        .await
        .with_context(|| format!("connect to RabbitMQ at {}", url.redacted()))?;
    let plan = shard_queues(&transport, &mut not_drained).await?;
    print_plan(&plan, args.to);
    if !not_drained.is_empty() {
        bail!(
            "not drained, nothing changed. Stop the producers and wait until these clear:\n  - {}",
            not_drained.join("\n  - ")
        );
    }
    if args.dry_run {
        println!("drained; --dry-run: nothing changed");
        return Ok(());
    }
    apply(&transport, &plan, args.to).await?;
    println!(
        "done: start the nodes with MERIT_MAILBOX_SHARDS={} (then the producers)",
        args.to
    );
    if settings.mailbox.shards != args.to {
        println!(
            "note: this configuration still says MERIT_MAILBOX_SHARDS={}",
            settings.mailbox.shards
        );
    }
    Ok(())
}

/// The shard queues of every actor kind as they are now.
type Plan = Vec<(ActorKind, Vec<merit_mailbox::ShardQueue>)>;

/// What the database says is not drained: nodes of this cluster still registered, outbox
/// rows not yet published.
async fn database_not_drained(settings: &Settings) -> Result<Vec<String>> {
    let store = crate::connect(settings).await?;
    let mut not_drained = Vec::new();
    let ttl = merit_api::ApiOptions::default().node_ttl;
    let cluster = crate::serve::cluster_of(settings);
    let live: Vec<String> = crate::serve::discovery(settings, &store)
        .await
        .live(ttl)
        .await
        .context("read the registered nodes")?
        .into_iter()
        .filter(|n| n.cluster == cluster)
        .map(|n| n.node_id)
        .collect();
    if !live.is_empty() {
        not_drained.push(format!(
            "nodes still registered (stop them; a killed node's registration expires in {}s): {}",
            ttl.as_secs(),
            live.join(", ")
        ));
    }
    let backlog = store
        .outbox_backlog()
        .await
        .context("read the outbox (run `merit migrate` first on a new database)")?;
    store.close().await?;
    if backlog > 0 {
        not_drained.push(format!(
            "{backlog} outbox rows not yet published (start a node on the old count to relay them)"
        ));
    }
    Ok(not_drained)
}

/// Reads every kind's shard queues, adding to `not_drained` those that hold messages or
/// have consumers.
async fn shard_queues(transport: &RabbitTransport, not_drained: &mut Vec<String>) -> Result<Plan> {
    let mut plan = Vec::new();
    for kind in ActorKind::ALL {
        let queues = transport.shard_queues(kind).await?;
        for q in &queues {
            if q.messages > 0 || q.consumers > 0 {
                not_drained.push(format!(
                    "{} holds {} messages and has {} consumers",
                    q.queue, q.messages, q.consumers
                ));
            }
        }
        plan.push((kind, queues));
    }
    Ok(plan)
}

/// One line per kind: its shard count now, the new one and the queues that changes.
fn print_plan(plan: &Plan, to: u16) {
    for (kind, queues) in plan {
        let from = queues.len();
        let to = usize::from(to);
        let change = match from.cmp(&to) {
            std::cmp::Ordering::Less => {
                format!("create merit.{kind}.{from} to merit.{kind}.{}", to - 1)
            }
            std::cmp::Ordering::Greater => {
                format!("delete merit.{kind}.{to} to merit.{kind}.{}", from - 1)
            }
            std::cmp::Ordering::Equal => "no change".to_string(),
        };
        println!("merit.{kind}: {from} -> {to} shard queues ({change})");
    }
}

/// Declares the queues of the new count, then deletes those above it.
async fn apply(transport: &RabbitTransport, plan: &Plan, to: u16) -> Result<()> {
    transport
        .declare()
        .await
        .context("declare the new shard queues")?;
    for (_, queues) in plan {
        for q in queues.iter().filter(|q| q.index >= to) {
            transport.delete_unused_empty_queue(&q.queue).await.with_context(|| {
                format!("{} took a message or a consumer meanwhile; stop the producers and run again", q.queue)
            })?;
            println!("deleted {}", q.queue);
        }
    }
    Ok(())
}
