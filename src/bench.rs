//! `merit bench`: measures, in one run and with the same durability settings (durable
//! quorum queues, persistent messages, publisher confirms, manual acks, committed
//! transactions), stage by stage:
//!
//! - **raw**: a plain lapin loop — publish N persistent messages with confirms (a window
//!   of in-flight confirms) to one quorum queue while consuming them with manual acks (see
//!   [`raw`]) — kept so that earlier figures stay comparable;
//! - **broker only**: the broker's work of N votes without merit, on merit's real topology
//!   (see [`broker`]): each vote published to `merit.events`, consumed from its proposal
//!   shard, a `vote.recorded`-sized message published to `merit.internal` and consumed
//!   from the voter's user shard, with confirms and acks — the bound the broker sets for
//!   what merit does, and the yardstick of the end-to-end figure;
//! - **end-to-end**: N votes through merit — publish → proposal shard → ProposalActor
//!   commit (vote, weight, `governance.vote.recorded` in the outbox) → relay → user shard
//!   → UserActor commit (counters, rules) → acks — published by a load generator on a
//!   connection of its own, as a producer would;
//! - **latency**: at a fixed offered load, p50/p99/p999 from a vote's publish to the
//!   UserActor's commit of its `vote.recorded`, to the notification reaching the node's
//!   hub, and to it reaching the voter's WebSocket client: the node serves its real HTTP
//!   API (as `merit serve` does, on a loopback port, with a JWT secret made for the run,
//!   without joining other nodes) and one client per voter listens on `/ws` (see
//!   [`listen`]); notifications that never arrive are counted;
//! - **activation**: a fresh node activating every user actor from storage (snapshot
//!   read + hydrate + one inbox commit each), per second, and the resident memory each
//!   actor adds.
//!
//! The votes fall on actors by a [`Shape`]: spread over them, each voter's back to back
//! (a hot UserActor), or all on one proposal (a hot ProposalActor). The broker-only and
//! end-to-end stages report the CPU time each process spent per vote (merit, RabbitMQ,
//! PostgreSQL; see [`cpu`]). After each voting stage the run's database is checked: every
//! vote counted exactly once (see [`verify`]), or the bench fails. Every stage has a time
//! limit (`--stage-timeout`) and fails naming itself rather than hang on a wedged broker.
//!
//! It uses its own queue names (a unique prefix) and its own database (a temporary
//! PostgreSQL database, or a temporary SQLite file), and removes them afterwards.

mod broker;
mod cpu;
mod listen;
mod raw;
mod verify;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use futures::{stream::FuturesUnordered, StreamExt};
use merit_api::{ApiOptions, Credentials};
use merit_config::Settings;
use merit_mailbox::{Outgoing, RabbitOptions, RabbitTransport, Topology, Transport};
use merit_messages::{Address, Envelope, ProposalCreated, VoteCast, VoteChoice};
use merit_storage::{
    entities::inbox,
    sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter},
    Store, StoreOptions,
};
use merit_supervisors::Node;
use serde::Serialize;

/// How a run's votes fall on actors. No voter votes twice on one proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Shape {
    /// Every voter votes once on each of the 50 proposals (the last voter on fewer), and
    /// consecutive votes come from different voters on different proposals: each actor
    /// takes a small share of the rate, as when a community votes.
    Spread,
    /// Every voter votes once on each of the 50 proposals, its 50 votes back to back: one
    /// UserActor takes the whole rate at a time. An actor's turns are sequential (each
    /// waits for its commit), so this measures a hot UserActor.
    PerVoter,
    /// Every vote on one proposal, each from a distinct voter: one ProposalActor takes the
    /// whole rate (and one proposal shard queue all the votes), as when a single proposal
    /// draws the community's attention.
    HotProposal,
}

impl Shape {
    /// Vote `i` of `n`: (voter, proposal) indexes. No pair repeats.
    fn vote(self, i: u32, n: u32) -> (u32, u32) {
        match self {
            Self::PerVoter => (i / PROPOSALS, i % PROPOSALS),
            Self::Spread => {
                let voters = n.div_ceil(PROPOSALS);
                let (v, round) = (i % voters, i / voters);
                (v, (round + v) % PROPOSALS)
            }
            Self::HotProposal => (i, 0),
        }
    }

    /// How many voters `n` votes come from (indexes `0..voters`).
    fn voters(self, n: u32) -> u32 {
        match self {
            Self::PerVoter | Self::Spread => n.div_ceil(PROPOSALS),
            Self::HotProposal => n,
        }
    }

    /// How many of `n` votes voter `v` casts.
    fn votes_of(self, v: u32, n: u32) -> u32 {
        match self {
            Self::PerVoter => n.saturating_sub(v * PROPOSALS).min(PROPOSALS),
            Self::Spread => {
                let voters = n.div_ceil(PROPOSALS);
                if v >= voters {
                    0
                } else {
                    (n - v).div_ceil(voters).min(PROPOSALS)
                }
            }
            Self::HotProposal => u32::from(v < n),
        }
    }

    /// Its name on the command line.
    fn name(self) -> &'static str {
        match self {
            Self::Spread => "spread",
            Self::PerVoter => "per-voter",
            Self::HotProposal => "hot-proposal",
        }
    }
}

/// What to measure.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BenchArgs {
    /// Messages in the raw broker loop and votes in the end-to-end run.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) events: u32,
    /// Offered load for the latency run, events per second.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) rate: u32,
    /// Duration of the latency run, seconds.
    #[arg(long, default_value_t = 10)]
    pub(crate) seconds: u32,
    /// How the votes fall on actors: `spread` (consecutive votes from different voters
    /// on different proposals), `per-voter` (each voter's 50 votes back to back, so one
    /// UserActor takes the whole offered rate at a time) or `hot-proposal` (every vote on
    /// one proposal, each from a distinct voter, so one ProposalActor takes it all).
    #[arg(long, value_enum, default_value_t = Shape::Spread)]
    pub(crate) shape: Shape,
    /// Time limit of each stage, seconds (the latency stage gets `--seconds` on top): a
    /// stage that does not finish in time fails the run with its name.
    #[arg(long, default_value_t = 300)]
    pub(crate) stage_timeout: u64,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench.json")]
    pub(crate) out: std::path::PathBuf,
}

impl BenchArgs {
    /// Each stage's time limit.
    fn limit(&self) -> Duration {
        Duration::from_secs(self.stage_timeout)
    }
}

#[derive(Debug, Serialize)]
struct Figures {
    database: String,
    shards: u16,
    prefetch: u16,
    shape: Shape,
    /// The clock tick the CPU figures were read with (`getconf CLK_TCK`; 100 if unreadable).
    clock_ticks_per_sec: f64,
    raw_messages: u32,
    raw_msgs_per_sec: f64,
    /// The broker-only stage: a vote's messages on merit's topology, without merit.
    baseline_votes: u32,
    baseline_votes_per_sec: f64,
    baseline_msgs_per_sec: f64,
    baseline_cpu_ms_per_vote: cpu::PerVote,
    e2e_events: u32,
    e2e_events_per_sec: f64,
    e2e_deliveries_per_sec: f64,
    e2e_cpu_ms_per_vote: cpu::PerVote,
    /// End-to-end votes/s ÷ broker-only votes/s.
    ratio_events_to_baseline: f64,
    /// End-to-end votes/s ÷ raw loop messages/s (the earlier yardstick).
    ratio_events_to_raw: f64,
    e2e_checked: verify::Counted,
    latency_offered_per_sec: u32,
    latency_events: usize,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    latency_p999_ms: f64,
    latency_checked: verify::Counted,
    /// Publish → the node's hub.
    hub: listen::Heard,
    /// Publish → a WebSocket client on `/ws`.
    websocket: listen::Heard,
    activated: usize,
    activations_per_sec: f64,
    rss_per_actor_bytes: f64,
}

pub(crate) async fn bench(settings: Settings, args: BenchArgs) -> Result<()> {
    let amqp = settings
        .amqp_url
        .as_ref()
        .context("merit bench measures RabbitMQ: set MERIT_AMQP_URL (e.g. amqp://guest:guest@127.0.0.1:5672/%2f)")?;
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let limit = args.limit();

    eprintln!(
        "raw broker loop: {} persistent messages, confirms + manual acks ...",
        args.events
    );
    let raw = stage(
        "raw loop",
        limit,
        raw::measure(
            amqp.expose(),
            &run_id,
            args.events,
            settings.mailbox.prefetch,
        ),
    )
    .await?;

    eprintln!(
        "broker baseline: {} votes' messages on merit's topology, without merit ...",
        args.events
    );
    let (baseline_secs, baseline_cpu) = stage(
        "broker baseline",
        limit,
        broker::baseline(
            amqp.expose(),
            Topology {
                prefix: format!("bench-{run_id}.base."),
                shards: settings.mailbox.shards,
            },
            args.events,
            settings.mailbox.prefetch,
            args.shape,
        ),
    )
    .await?;
    let baseline = Baseline {
        votes_per_sec: f64::from(args.events) / baseline_secs,
        msgs_per_sec: 2.0 * f64::from(args.events) / baseline_secs,
        cpu_per_vote: baseline_cpu,
    };

    let (store, db_name, db_url, cleanup) =
        stage("database", limit, temp_database(&settings, &run_id)).await?;
    let measured = measure(
        &settings,
        &args,
        &run_id,
        Measured {
            store: store.clone(),
            db_name,
            db_url,
            raw,
            baseline,
        },
    )
    .await;
    let cleaned = stage("cleanup", limit, cleanup(store)).await;
    let figures = measured?;
    cleaned?;
    print_table(&figures);
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&figures)? + "\n")?;
    println!("written to {}", args.out.display());
    Ok(())
}

/// The broker-only stage's figures.
#[derive(Debug, Clone, Copy, Serialize)]
struct Baseline {
    /// Votes (publish → relay → ack chains) per second.
    votes_per_sec: f64,
    /// Messages published (and consumed) per second: two per vote.
    msgs_per_sec: f64,
    /// CPU milliseconds per vote, by process.
    cpu_per_vote: cpu::PerVote,
}

/// What the stages before the node's measured.
struct Measured {
    store: Store,
    db_name: String,
    db_url: String,
    raw: f64,
    baseline: Baseline,
}

/// Runs the node's stages (end-to-end, latency, activation) on the run's database, each
/// checked and bounded; removes the node's broker objects afterwards.
async fn measure(
    settings: &Settings,
    args: &BenchArgs,
    run_id: &str,
    before: Measured,
) -> Result<Figures> {
    let amqp = settings
        .amqp_url
        .as_ref()
        .context("merit bench measures RabbitMQ: set MERIT_AMQP_URL")?;
    let limit = args.limit();
    let store = before.store.clone();
    stage("migrate", limit, async {
        anyhow::Ok(store.migrate().await?)
    })
    .await?;
    let topology = Topology {
        prefix: format!("bench-{run_id}."),
        shards: settings.mailbox.shards,
    };
    let node = stage(
        "node start",
        limit,
        UnderTest::start(settings, store, amqp.expose(), &topology),
    )
    .await?;
    // Votes each voter should have counted so far, by voter index, over both stages.
    let mut votes_cast = HashMap::new();
    let e2e = end_to_end(&node, args, &before.db_name, &mut votes_cast).await?;
    let (lat, api) = latency(settings, &node, args, &mut votes_cast).await?;
    let UnderTest {
        transport,
        load,
        node,
        ..
    } = node;
    stage("stop the node", limit, async {
        api.stop().await;
        node.shutdown(Duration::from_secs(10)).await;
        anyhow::Ok(())
    })
    .await?;
    drop(load);

    eprintln!("activation: every user actor of a fresh node from storage ...");
    let activated = stage(
        "activation",
        limit,
        activation(settings, &before.db_url, transport.clone()),
    )
    .await?;
    drop(transport);
    if let Err(e) = stage("remove the node's topology", limit, async {
        let conn = crate::serve::amqp_connection(amqp.expose()).await?;
        let removed = broker::remove_topology(&conn, &topology).await;
        let _ = conn.close(200, "bench done".into()).await;
        removed
    })
    .await
    {
        eprintln!("warning: {e:#}");
    }
    Ok(Figures::new(settings, args, before, &e2e, lat, activated))
}

/// The node the voting stages measure, with what feeds and watches it.
struct UnderTest {
    /// The run's database.
    store: Store,
    /// The node's broker connection (the activation stage's node reuses it).
    transport: Arc<RabbitTransport>,
    /// The load generator's connection.
    load: RabbitTransport,
    node: Node,
    /// Where the node hands its notifications.
    hub: merit_api::NotificationHub,
}

impl UnderTest {
    /// Declares `topology` and starts a node on it and on `store`, as `merit serve` does,
    /// with a load generator's connection beside it.
    async fn start(
        settings: &Settings,
        store: Store,
        amqp: &str,
        topology: &Topology,
    ) -> Result<Self> {
        let transport = Arc::new(RabbitTransport::connect(amqp, topology.clone()).await?);
        transport.declare().await?;
        // The load generator publishes as a producer would: on a connection of its own,
        // not through the node's publisher channel.
        let load = RabbitTransport::connect_with(
            amqp,
            topology.clone(),
            RabbitOptions {
                connection_name: "merit-bench-load".to_string(),
                ..RabbitOptions::default()
            },
        )
        .await?;
        let hub = merit_api::NotificationHub::new("bench", ApiOptions::default().ws_buffer);
        let node = Node::start(
            crate::serve::node_options(settings),
            store.clone(),
            crate::serve::services(settings)
                .await
                .with_notifier(Arc::new(hub.clone())),
            transport.clone(),
        )
        .await?;
        Ok(Self {
            store,
            transport,
            load,
            node,
            hub,
        })
    }
}

/// The end-to-end stage's outcome.
struct EndToEnd {
    run: Run,
    /// CPU milliseconds per vote, by process, over the run.
    cpu: cpu::PerVote,
    counted: verify::Counted,
}

/// The end-to-end stage: `--events` votes through the node as fast as it takes them,
/// then checked.
async fn end_to_end(
    t: &UnderTest,
    args: &BenchArgs,
    db_name: &str,
    votes_cast: &mut HashMap<u32, u64>,
) -> Result<EndToEnd> {
    let limit = args.limit();
    eprintln!(
        "end-to-end: {} votes ({}) through merit on {db_name} ...",
        args.events,
        args.shape.name(),
    );
    let cpu_before = cpu::sample();
    let run = stage(
        "end-to-end",
        limit,
        run_votes(t, "e2e", args.events, None, args.shape),
    )
    .await?;
    let cpu = cpu::per_vote(&cpu_before, &cpu::sample(), args.events);
    let counted = stage(
        "end-to-end check",
        limit,
        verify::votes(
            &t.store,
            "e2e",
            args.shape,
            args.events,
            &run.sent.vote_ids,
            &run.sent.recorded_ids,
            votes_cast,
        ),
    )
    .await?;
    Ok(EndToEnd { run, cpu, counted })
}

/// The latency stage's outcome.
struct Latency {
    run: Run,
    /// Publish → the node's hub.
    hub: listen::Heard,
    /// Publish → a WebSocket client on `/ws`.
    websocket: listen::Heard,
    counted: verify::Counted,
}

/// The latency stage: with the node's API served and a listener per voter on its hub and
/// on `/ws`, `--rate` votes per second for `--seconds`, then their notifications awaited
/// and the votes checked. Returns the API still serving: it stops with the node.
async fn latency(
    settings: &Settings,
    t: &UnderTest,
    args: &BenchArgs,
    votes_cast: &mut HashMap<u32, u64>,
) -> Result<(Latency, crate::serve::Api)> {
    let limit = args.limit();
    let total = args.rate * args.seconds;
    let (api, at_hub, websocket) = listeners(settings, t, args.shape.voters(total), limit).await?;
    eprintln!("latency: {} events/s for {} s ...", args.rate, args.seconds);
    let paced = Duration::from_secs(u64::from(args.seconds));
    let run = stage(
        "latency",
        limit + paced,
        run_votes(t, "lat", total, Some(args.rate), args.shape),
    )
    .await?;
    let (hub, websocket) = stage("notifications", listen::PATIENCE + limit, async {
        let deadline = Instant::now() + listen::PATIENCE;
        let votes_of = |v: u32| args.shape.votes_of(v, total) as usize;
        let at_hub = at_hub.finish(&run.sent.published, votes_of, deadline).await;
        let websocket = websocket
            .finish(&run.sent.published, votes_of, deadline)
            .await;
        anyhow::Ok((at_hub, websocket))
    })
    .await?;
    let counted = stage(
        "latency check",
        limit,
        verify::votes(
            &t.store,
            "lat",
            args.shape,
            total,
            &run.sent.vote_ids,
            &run.sent.recorded_ids,
            votes_cast,
        ),
    )
    .await?;
    let heard = Latency {
        run,
        hub,
        websocket,
        counted,
    };
    Ok((heard, api))
}

/// Serves the node's API and puts a listener per voter (of the first `voters`) in place,
/// on the hub and on `/ws`, before any vote is published.
async fn listeners(
    settings: &Settings,
    t: &UnderTest,
    voters: u32,
    limit: Duration,
) -> Result<(crate::serve::Api, listen::Listening, listen::Listening)> {
    let voters: Vec<Address> = (0..voters).map(voter).collect();
    let (api, credentials) = stage(
        "serve the API",
        limit,
        serve_api(settings, &t.store, t.transport.clone(), &t.node, &t.hub),
    )
    .await?;
    eprintln!(
        "latency: {} WebSocket clients on ws://{}/ws ...",
        voters.len(),
        api.address
    );
    let tokens = voters
        .iter()
        .map(|v| (*v, credentials.sign_user(v, TOKEN_TTL_SECS)))
        .collect();
    let websocket = stage(
        "WebSocket clients",
        limit,
        listen::websocket(api.address, tokens),
    )
    .await?;
    let at_hub = listen::hub(&t.hub, &voters);
    Ok((api, at_hub, websocket))
}

impl Figures {
    /// The run's figures from its stages' outcomes.
    fn new(
        settings: &Settings,
        args: &BenchArgs,
        before: Measured,
        e2e: &EndToEnd,
        lat: Latency,
        (activated, activations_per_sec, rss_per_actor_bytes): (usize, f64, f64),
    ) -> Self {
        let e2e_per_sec = f64::from(args.events) / e2e.run.secs;
        let latencies = &lat.run.latencies;
        Self {
            database: before.db_name,
            shards: settings.mailbox.shards,
            prefetch: settings.mailbox.prefetch,
            shape: args.shape,
            clock_ticks_per_sec: cpu::clock_ticks(),
            raw_messages: args.events,
            raw_msgs_per_sec: before.raw,
            baseline_votes: args.events,
            baseline_votes_per_sec: before.baseline.votes_per_sec,
            baseline_msgs_per_sec: before.baseline.msgs_per_sec,
            baseline_cpu_ms_per_vote: before.baseline.cpu_per_vote,
            e2e_events: args.events,
            e2e_events_per_sec: e2e_per_sec,
            e2e_deliveries_per_sec: 2.0 * e2e_per_sec,
            e2e_cpu_ms_per_vote: e2e.cpu,
            ratio_events_to_baseline: e2e_per_sec / before.baseline.votes_per_sec,
            ratio_events_to_raw: e2e_per_sec / before.raw,
            e2e_checked: e2e.counted,
            latency_offered_per_sec: args.rate,
            latency_events: latencies.len(),
            latency_p50_ms: percentile(latencies, 0.50),
            latency_p99_ms: percentile(latencies, 0.99),
            latency_p999_ms: percentile(latencies, 0.999),
            latency_checked: lat.counted,
            hub: lat.hub,
            websocket: lat.websocket,
            activated,
            activations_per_sec,
            rss_per_actor_bytes,
        }
    }
}

/// Runs one stage of the bench within `limit`: a stage that does not finish (a wedged
/// broker, a database that stopped answering) fails the run with the stage's name rather
/// than hang it.
async fn stage<T>(
    name: &str,
    limit: Duration,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, work).await {
        Ok(done) => done.with_context(|| format!("bench stage '{name}'")),
        Err(_) => anyhow::bail!(
            "bench stage '{name}' did not finish within {} s: the broker or the database \
             stopped answering, or the machine is too slow for this size (see --stage-timeout)",
            limit.as_secs()
        ),
    }
}

fn print_table(f: &Figures) {
    println!("| measure | value |");
    println!("|---|---|");
    println!("| database | {} |", f.database);
    println!("| shards × prefetch | {} × {} |", f.shards, f.prefetch);
    let shape = match f.shape {
        Shape::Spread => "spread (consecutive votes on different actors)",
        Shape::PerVoter => "per-voter (each voter's 50 votes back to back)",
        Shape::HotProposal => "hot-proposal (every vote on one proposal, distinct voters)",
    };
    println!("| load shape | {shape} |");
    println!(
        "| raw RabbitMQ publish-confirm + consume-ack, one quorum queue | {:.0} msg/s |",
        f.raw_msgs_per_sec
    );
    println!(
        "| broker only, merit's topology: vote → proposal shard → vote.recorded → user shard, confirms + acks | {:.0} votes/s ({:.0} msg/s) |",
        f.baseline_votes_per_sec, f.baseline_msgs_per_sec
    );
    println!("| merit end-to-end (publish → actors → commit → ack) | {:.0} votes/s ({:.0} deliveries/s) |", f.e2e_events_per_sec, f.e2e_deliveries_per_sec);
    println!(
        "| ratio end-to-end votes / broker-only votes | {:.2} |",
        f.ratio_events_to_baseline
    );
    println!(
        "| ratio end-to-end votes / raw messages | {:.2} |",
        f.ratio_events_to_raw
    );
    print_cpu("broker only", &f.baseline_cpu_ms_per_vote);
    print_cpu("end-to-end", &f.e2e_cpu_ms_per_vote);
    println!(
        "| every vote counted once (rows, tallies, inboxes, votes_cast) | end-to-end {} of {}, latency {} of {} |",
        f.e2e_checked.vote_rows, f.e2e_checked.sent, f.latency_checked.vote_rows, f.latency_checked.sent
    );
    println!(
        "| publish → commit at {} events/s | p50 {:.1} ms, p99 {:.1} ms, p999 {:.1} ms ({} events) |",
        f.latency_offered_per_sec, f.latency_p50_ms, f.latency_p99_ms, f.latency_p999_ms, f.latency_events
    );
    print_heard(
        "publish → hub",
        f.latency_offered_per_sec,
        &f.hub,
        "subscribers",
    );
    print_heard(
        "publish → WebSocket client",
        f.latency_offered_per_sec,
        &f.websocket,
        "clients",
    );
    println!(
        "| actor activation from storage (+ one inbox commit) | {:.0} actors/s ({} actors) |",
        f.activations_per_sec, f.activated
    );
    println!(
        "| resident memory per actor | {:.1} KiB |",
        f.rss_per_actor_bytes / 1024.0
    );
}

/// A row of CPU time per vote.
fn print_cpu(stage: &str, c: &cpu::PerVote) {
    println!(
        "| CPU per vote, {stage} | {:.3} ms: merit {:.3}, RabbitMQ {:.3}, PostgreSQL {:.3} |",
        c.total_ms(),
        c.merit_ms,
        c.rabbitmq_ms,
        c.postgres_ms
    );
}

/// A row of notification latency, with what was due against what arrived.
fn print_heard(path: &str, rate: u32, h: &listen::Heard, listeners: &str) {
    let ended = if h.ended.is_empty() {
        String::new()
    } else {
        let why: Vec<String> = h.ended.iter().map(|(w, n)| format!("{n}× {w}")).collect();
        format!("; ended early: {}", why.join(", "))
    };
    println!(
        "| {path} at {rate} events/s | p50 {:.1} ms, p99 {:.1} ms, p999 {:.1} ms ({} of {} notifications, {} missing, {} duplicate; {} {listeners}, {} short{ended}) |",
        h.p50_ms,
        h.p99_ms,
        h.p999_ms,
        h.received,
        h.expected,
        h.expected - h.received,
        h.duplicates,
        h.listeners,
        h.short,
    );
}

/// Votes per proposal in a run (voters = votes / this).
const PROPOSALS: u32 = 50;
/// Validity of the latency run's user tokens: the whole run.
const TOKEN_TTL_SECS: i64 = 24 * 3600;

/// Serves the node's HTTP API as `merit serve` does, on a free loopback port, trusting a
/// JWT secret made for this run (returned, to sign the clients' tokens) and alone: its
/// notifications do not fan out to other nodes on the broker, and it registers in the
/// bench's database only. It runs no chain side.
async fn serve_api(
    settings: &Settings,
    store: &Store,
    transport: Arc<RabbitTransport>,
    node: &Node,
    hub: &merit_api::NotificationHub,
) -> Result<(crate::serve::Api, Credentials)> {
    let jwt_secret: [u8; 32] = rand::random();
    let admin_token: [u8; 32] = rand::random();
    let credentials = Credentials::new(&jwt_secret, &admin_token);
    let exposure = crate::serve::Exposure {
        listener: std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .context("listen on a free loopback port")?,
        metrics_listener: None,
        credentials: credentials.clone(),
        clustered: false,
        discovery: None,
    };
    let api = crate::serve::Api::start(
        settings,
        exposure,
        store,
        transport,
        node,
        None,
        hub.clone(),
    )
    .await
    .context("serve the HTTP API")?;
    Ok((api, credentials))
}

/// A fresh node on the same store activates every stored user actor (one event each that
/// changes nothing: a snapshot read, hydrate, and an inbox commit); returns how many, the
/// rate, and the resident memory added per actor.
async fn activation(
    settings: &Settings,
    db_url: &str,
    transport: Arc<RabbitTransport>,
) -> Result<(usize, f64, f64)> {
    use merit_storage::{entities::user, sea_orm::QuerySelect};
    // A pool of its own: connections the previous node's actors opened belong to that
    // node's arbiter runtimes, which stopped with it (reusing one failed with "a Tokio
    // context … is being shutdown").
    let store = Store::connect(db_url, &StoreOptions::default()).await?;
    let users: Vec<String> = user::Entity::find()
        .select_only()
        .column(user::Column::Address)
        .into_tuple()
        .all(store.db())
        .await?;
    let node = Node::start(
        crate::serve::node_options(settings),
        store.clone(),
        crate::serve::services(settings).await,
        transport,
    )
    .await?;
    let rss_before = rss_bytes();
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    for key in &users {
        let address: Address = key.parse().context("a stored user address")?;
        // An event the UserActor ignores (a vote recorded for someone else would be
        // refused as a key mismatch upstream; this one is addressed but changes nothing).
        let env = Arc::new(Envelope::new(
            "bench",
            merit_messages::BenefitsChanged {
                user: address,
                multiplier_bps: 10_000,
                boosting_nfts: Vec::new(),
                config_version: 0,
            },
        ));
        pending.push(node.registries().user.route(key.clone(), env, 0));
        // Bounded concurrency, as a shard's prefetch would.
        if pending.len() >= 200 {
            let _ = pending.next().await;
        }
    }
    while pending.next().await.is_some() {}
    let secs = started.elapsed().as_secs_f64();
    let resident: usize = node.status().registries.iter().map(|r| r.resident).sum();
    let rss = rss_bytes().saturating_sub(rss_before) as f64 / resident.max(1) as f64;
    node.shutdown(Duration::from_secs(10)).await;
    store.close().await?;
    Ok((users.len(), users.len() as f64 / secs, rss))
}

/// This process's resident set size (Linux), bytes.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

type Cleanup = Box<dyn FnOnce(Store) -> futures::future::BoxFuture<'static, Result<()>> + Send>;

/// A database of the run's own: its store, its name for the report, its URL (for the
/// fresh store each later node needs) and what removes it.
async fn temp_database(
    settings: &Settings,
    run_id: &str,
) -> Result<(Store, String, String, Cleanup)> {
    let url = settings.database_url.expose();
    if url.starts_with("postgres") {
        let admin = Store::connect(
            url,
            &StoreOptions {
                max_connections: 1,
                ..Default::default()
            },
        )
        .await?;
        let name = format!("merit_bench_{run_id}");
        admin
            .db()
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
        let cut = url
            .rfind('/')
            .context("a PostgreSQL URL has a database path")?;
        let bench_url = format!("{}/{name}", &url[..cut]);
        let store = Store::connect(&bench_url, &StoreOptions::default()).await?;
        let cleanup: Cleanup = Box::new(move |store| {
            Box::pin(async move {
                store.close().await?;
                admin
                    .db()
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await?;
                admin.close().await?;
                Ok(())
            })
        });
        Ok((store, "PostgreSQL".to_string(), bench_url, cleanup))
    } else {
        let dir = tempfile::tempdir()?;
        let bench_url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("bench.db").display()
        );
        let store = Store::connect(&bench_url, &StoreOptions::default()).await?;
        let cleanup: Cleanup = Box::new(move |store| {
            Box::pin(async move {
                store.close().await?;
                drop(dir);
                Ok(())
            })
        });
        Ok((store, "SQLite".to_string(), bench_url, cleanup))
    }
}

fn voter(i: u32) -> Address {
    let mut a = [0u8; 20];
    a[16..].copy_from_slice(&(i + 1).to_be_bytes());
    Address(a)
}

/// A voting stage's outcome.
struct Run {
    /// From the first publish to the last commit.
    secs: f64,
    /// Per vote, publish → the UserActor's commit of its `vote.recorded`, ms, sorted.
    latencies: Vec<f64>,
    /// What was published.
    sent: Sent,
}

/// The votes a stage published.
struct Sent {
    /// The publish time of each vote by the id of its `vote.recorded`.
    published: HashMap<String, DateTime<Utc>>,
    /// The ids of the votes sent.
    vote_ids: Vec<String>,
    /// The ids of their `vote.recorded`s.
    recorded_ids: Vec<String>,
}

/// Publishes `n` votes of `shape` (over 50 proposals, created first) through the load
/// generator's own connection, optionally paced at `rate` per second, and waits until
/// merit applied them all. Measures from the first publish to the last commit, and per
/// vote the latency from its publish to the commit of its `governance.vote.recorded` by
/// the voter's UserActor — the whole path through both actors and the relay.
async fn run_votes(
    t: &UnderTest,
    tag: &str,
    n: u32,
    rate: Option<u32>,
    shape: Shape,
) -> Result<Run> {
    let now = Utc::now();
    let applied_before = applied(&t.node);
    let created = proposals(tag, now);
    let started_at = Utc::now();
    t.load.publish(created).await?;
    let sent = publish_votes(&t.load, tag, n, rate, shape).await?;
    // Each vote is a proposal turn (the vote) and a user turn (its vote.recorded); each
    // creation too (proposal and creator). Unlocked achievements add user turns on top,
    // so the count is reached a little before the last vote is in: it only says when to
    // start reading the inbox. The stage's time limit bounds both waits.
    let target = applied_before + 2 * u64::from(n + PROPOSALS);
    while applied(&t.node) < target {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (latencies, last) = committed(&t.store, &sent, started_at).await?;
    // To the last commit's turn, not to when it was seen: the inbox reads take no part.
    let secs = (last - started_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
    Ok(Run {
        secs,
        latencies,
        sent,
    })
}

/// Events the node's actors applied (or found duplicate) so far.
fn applied(node: &Node) -> u64 {
    node.status()
        .registries
        .iter()
        .map(|r| r.applied + r.duplicates)
        .sum()
}

/// The creation of stage `tag`'s proposals, open from `now` for a day.
fn proposals(tag: &str, now: DateTime<Utc>) -> Vec<Outgoing> {
    (0..PROPOSALS)
        .map(|p| {
            Outgoing::from_envelope(&Envelope::new(
                "bench",
                ProposalCreated {
                    proposal: format!("{tag}-{p}").parse().expect("valid id"),
                    creator: voter(p),
                    title: "bench".into(),
                    description: String::new(),
                    starts_at: now,
                    ends_at: now + chrono::Duration::days(1),
                    quorum: 1,
                    threshold_bps: 5_000,
                },
            ))
        })
        .collect()
}

/// Publishes `n` votes of `shape` on stage `tag`'s proposals through `load`, in batches:
/// one every 10 ms at `rate` per second, else back to back.
async fn publish_votes(
    load: &RabbitTransport,
    tag: &str,
    n: u32,
    rate: Option<u32>,
    shape: Shape,
) -> Result<Sent> {
    let mut sent = Sent {
        published: HashMap::with_capacity(n as usize),
        vote_ids: Vec::with_capacity(n as usize),
        recorded_ids: Vec::with_capacity(n as usize),
    };
    let batch = match rate {
        Some(r) => (r / 100).max(1), // one batch every 10 ms
        None => 500,
    };
    let mut i = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while i < n {
        if rate.is_some() {
            tick.tick().await;
        }
        let mut out = Vec::with_capacity(batch as usize);
        for _ in 0..batch.min(n - i) {
            let (v, p) = shape.vote(i, n);
            let env = Envelope::new(
                "bench",
                VoteCast {
                    proposal: format!("{tag}-{p}").parse().expect("valid id"),
                    voter: voter(v),
                    choice: VoteChoice::For,
                    reason: None,
                },
            );
            // The voter's UserActor commits the ProposalActor's `governance.vote.recorded`,
            // whose id derives from the vote's: the end of the path.
            let recorded = merit_messages::EventId::derived(env.id, "recorded").to_string();
            sent.published.insert(recorded.clone(), env.occurred_at);
            sent.recorded_ids.push(recorded);
            sent.vote_ids.push(env.id.to_string());
            out.push(Outgoing::from_envelope(&env));
            i += 1;
        }
        load.publish(out).await?;
    }
    Ok(sent)
}

/// Waits until the UserActors' inbox holds every vote's `vote.recorded` — then a run's
/// tail does not spill into the next run and no late vote is left out of the figures.
/// Returns each vote's publish → commit latency, ms, sorted, and the last commit's time
/// (`started_at` if none came later).
async fn committed(
    store: &Store,
    sent: &Sent,
    started_at: DateTime<Utc>,
) -> Result<(Vec<f64>, DateTime<Utc>)> {
    let user_inbox = merit_actors::inbox_consumer(
        merit_messages::ActorKind::User,
        merit_messages::Origin::Merit,
    );
    let mut pending: Vec<String> = sent.recorded_ids.clone();
    let mut latencies = Vec::with_capacity(sent.published.len());
    let mut last = started_at;
    loop {
        let mut missing = Vec::new();
        for chunk in pending.chunks(1_000) {
            let rows = inbox::Entity::find()
                .filter(inbox::Column::Consumer.eq(user_inbox.as_str()))
                .filter(inbox::Column::EventId.is_in(chunk.iter().cloned()))
                .all(store.db())
                .await?;
            let found: HashSet<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
            missing.extend(
                chunk
                    .iter()
                    .filter(|id| !found.contains(id.as_str()))
                    .cloned(),
            );
            for row in &rows {
                if let Some(at) = sent.published.get(&row.event_id) {
                    latencies.push(
                        (row.processed_at - *at).num_microseconds().unwrap_or(0) as f64 / 1000.0,
                    );
                    last = last.max(row.processed_at);
                }
            }
        }
        pending = missing;
        if pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    Ok((latencies, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_gives_distinct_pairs_and_counts_each_voters_votes() {
        for shape in [Shape::Spread, Shape::PerVoter, Shape::HotProposal] {
            for n in [1, 49, 50, 51, 3_000, 10_001] {
                let votes: Vec<(u32, u32)> = (0..n).map(|i| shape.vote(i, n)).collect();
                let pairs: HashSet<_> = votes.iter().copied().collect();
                assert_eq!(pairs.len(), n as usize, "{shape:?} {n}: a pair repeats");
                assert!(votes.iter().all(|(_, p)| *p < PROPOSALS));
                let mut cast: HashMap<u32, u32> = HashMap::new();
                for (v, _) in &votes {
                    *cast.entry(*v).or_default() += 1;
                }
                let voters = shape.voters(n);
                assert!(cast.keys().all(|v| *v < voters), "{shape:?} {n}");
                for v in 0..voters + 1 {
                    let got = cast.get(&v).copied().unwrap_or(0);
                    assert_eq!(got, shape.votes_of(v, n), "{shape:?} {n} voter {v}");
                }
            }
        }
        // Hot proposal: one proposal, every voter distinct.
        assert!((0..500).all(|i| Shape::HotProposal.vote(i, 500) == (i, 0)));
        // Spread: consecutive votes never share a voter or a proposal.
        let n = 3_000;
        assert!((1..n).all(|i| {
            let (a, b) = (Shape::Spread.vote(i - 1, n), Shape::Spread.vote(i, n));
            a.0 != b.0 && a.1 != b.1
        }));
    }
}
