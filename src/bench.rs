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
mod node;
mod raw;
mod report;
mod stages;
mod verify;
mod votes;

use std::time::Duration;

use anyhow::{Context, Result};
use merit_config::Settings;
use merit_mailbox::Topology;
use merit_messages::Address;
use serde::Serialize;

use node::temp_database;
use report::print_table;
use stages::{measure, Baseline, Measured};

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
/// Votes per proposal in a run (voters = votes / this).
const PROPOSALS: u32 = 50;

fn voter(i: u32) -> Address {
    let mut a = [0u8; 20];
    a[16..].copy_from_slice(&(i + 1).to_be_bytes());
    Address(a)
}
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

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
