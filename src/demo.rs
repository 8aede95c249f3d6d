//! `merit demo`: a node on embedded defaults (a fresh SQLite file, the in-process
//! transport and cache, the embedded dev chain) with the API and dashboard, and a
//! simulated community driven through it: users create proposals and vote on them at a
//! steady rate, the rules unlock achievements, the unlock sagas mint them as NFTs, a few
//! mints fail for good and are compensated, some NFTs change hands on chain (and so change
//! their holders' vote weights), and the proposals close. A progress line while it runs;
//! a summary at the end. `MERIT_AMQP_URL`, `MERIT_DATABASE_URL`, `MERIT_REDIS_URL` and
//! `MERIT_CHAIN_RPC_URL` put it on real services instead (injected failures and trades
//! need the dev chain and are skipped on a real one).

use std::{
    collections::HashMap,
    io::Write,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use chrono::Utc;
use merit_actors::ProposalStatus;
use merit_chain::{Chain, DevChain};
use merit_config::{SecretUrl, Settings};
use merit_mailbox::Outgoing;
use merit_messages::{Address, Envelope, ProposalCreated, VoteCast, VoteChoice};
use merit_storage::{
    entities::{
        achievement::{self, AchievementState},
        nft, outbox, proposal, vote,
    },
    sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter},
};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::serve::Running;

/// The community to simulate.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DemoArgs {
    /// Users in the community.
    #[arg(long, default_value_t = 120)]
    users: u32,
    /// Proposals they create (by a handful of active creators).
    #[arg(long, default_value_t = 18)]
    proposals: u32,
    /// Votes offered per second.
    #[arg(long, default_value_t = 300)]
    rate: u32,
    /// Mints the dev chain refuses for good (each compensated by its saga).
    #[arg(long, default_value_t = 3)]
    failures: u32,
    /// NFTs traded between users on the dev chain once minted.
    #[arg(long, default_value_t = 12)]
    trades: u32,
    /// Seed of the simulation (the same seed, the same community).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// How the votes fall on proposals.
    #[arg(long, value_enum, default_value_t = DemoShape::Spread)]
    shape: DemoShape,
    /// Keep serving the API and the dashboard after the summary, until Ctrl-C.
    #[arg(long)]
    keep_serving: bool,
}

/// How the demo's votes fall on proposals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DemoShape {
    /// About 80% of the users vote on each proposal, proposal after proposal: many
    /// ProposalActors share the rate.
    Spread,
    /// Every user votes on the first proposal, and on nothing else: one ProposalActor
    /// takes the whole rate, as when a single vote draws the community (use more
    /// `--users` to make it hot).
    HotProposal,
}

impl DemoShape {
    fn describe(self, votes: usize, proposals: u32, rate: u32) -> String {
        match self {
            Self::Spread => {
                format!("spread: {votes} votes over {proposals} proposals, offered at {rate}/s")
            }
            Self::HotProposal => {
                format!("hot proposal: {votes} votes on one proposal, offered at {rate}/s")
            }
        }
    }
}

/// Users who create proposals (few, so some have several pass).
const CREATORS: u32 = 6;
/// How long a proposal is open for votes.
const VOTING: Duration = Duration::from_secs(20);
/// How long the demo waits for everything to settle.
const SETTLE: Duration = Duration::from_secs(120);

fn wallet(i: u32) -> Address {
    let mut a = [0u8; 20];
    a[0] = 0xde;
    a[1] = 0x30;
    a[16..].copy_from_slice(&(i + 1).to_be_bytes());
    Address(a)
}

/// Applies the demo's embedded defaults to what the environment did not set.
pub(crate) fn settings(mut settings: Settings, dir: &std::path::Path) -> Settings {
    if std::env::var_os("MERIT_DATABASE_URL").is_none() {
        let file = dir.join("merit-demo.db");
        settings.database_url = SecretUrl::new(format!("sqlite://{}?mode=rwc", file.display()));
    }
    if std::env::var_os("MERIT_CHAIN_POLL_INTERVAL_MS").is_none() {
        settings.chain.poll_interval_ms = 200;
    }
    if std::env::var_os("MERIT_LOG_FILTER").is_none() {
        settings.log.filter = "warn".to_string();
    }
    if std::net::TcpListener::bind(settings.http_addr).is_err() {
        settings.http_addr.set_port(0);
    }
    settings
}

/// Publish instants of votes, by (proposal, voter), for the latency of their notification.
type Sent = Arc<Mutex<HashMap<(String, String), Instant>>>;

pub(crate) async fn demo(settings: Settings, args: DemoArgs) -> Result<()> {
    let started = Instant::now();
    let dev = settings.chain_rpc_url.is_none().then(|| {
        let dev = Arc::new(crate::chain_runtime::dev_chain(&settings));
        dev.spawn_miner(settings.chain.poll_interval());
        dev
    });
    let running = Running::start(&settings, dev.clone().map(|d| d as Arc<dyn Chain>)).await?;
    let base = format!("http://{}", running.api.address);
    eprintln!(
        "merit demo: node up at {base} (database {})",
        settings.database_url.redacted()
    );

    let users: Vec<Address> = (0..args.users.max(CREATORS)).map(wallet).collect();
    let listeners = Listeners::spawn(&running.hub, &users);
    if let Some(dev) = &dev {
        dev.refuse_mints(args.failures as usize);
    }

    // Proposals, then votes in proposal order (so streaks form), at the offered rate.
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut published = create_proposals(&running, &args, &users).await?;
    let votes = votes(&args, &users, &mut rng)?;
    published += publish_votes(&running, &votes, args.rate, &listeners.sent).await?;

    // Trades on chain once NFTs exist; then wait for everything to settle.
    let traded = settle(&running, dev.as_deref(), &args, &users, &mut rng).await?;
    // The last notifications of the trades.
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!();

    let outcome = Outcome {
        load: args.shape.describe(votes.len(), args.proposals, args.rate),
        published,
        traded,
        started,
    };
    let rows = summary(&running, &listeners, &outcome).await?;
    println!("\nmerit demo summary");
    for (what, value) in rows {
        println!("  {what:<42} {value}");
    }
    listeners.stop();
    if args.keep_serving {
        println!("\ndashboard: {base}/dashboard (log in with MERIT_ADMIN_TOKEN; the development default is in the README)");
        println!("API:       {base}/openapi.json");
        println!("serving until Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
    } else {
        println!(
            "\nthe node stops now; run `merit demo --keep-serving` to keep its API and \
             dashboard up after the summary"
        );
    }
    running.stop().await
}

/// A live subscription per user: counts what is delivered and times each vote from its
/// publication to its `governance.vote.recorded` notification.
struct Listeners {
    sent: Sent,
    latencies: Arc<Mutex<Vec<Duration>>>,
    notified: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Listeners {
    fn spawn(hub: &merit_api::NotificationHub, users: &[Address]) -> Self {
        let sent: Sent = Arc::default();
        let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let notified = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for user in users {
            let mut sub = hub.subscribe(&user.to_string());
            let (sent, latencies, notified) = (sent.clone(), latencies.clone(), notified.clone());
            tasks.push(tokio::spawn(async move {
                while let Some(n) = sub.rx.recv().await {
                    notified.fetch_add(1, Ordering::Relaxed);
                    if n.kind == "governance.vote.recorded" {
                        let key = (
                            n.payload["proposal"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                            n.user.clone(),
                        );
                        let at = sent.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                        if let Some(at) = at {
                            latencies
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(at.elapsed());
                        }
                    }
                }
            }));
        }
        Self {
            sent,
            latencies,
            notified,
            tasks,
        }
    }

    /// Publish → notification latencies at quantiles `qs`, or `-` when none was timed.
    fn percentiles<const N: usize>(&self, qs: [f64; N]) -> [String; N] {
        let mut lat = self
            .latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        lat.sort();
        qs.map(|q| {
            if lat.is_empty() {
                return "-".to_string();
            }
            let i = ((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1;
            format!("{:.1} ms", lat[i].as_secs_f64() * 1000.0)
        })
    }

    fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// Publishes `governance.proposal.created` for every proposal, open for [`VOTING`], by a
/// few creators; returns how many were published.
async fn create_proposals(running: &Running, args: &DemoArgs, users: &[Address]) -> Result<u64> {
    let now = Utc::now();
    let mut batch = Vec::new();
    for p in 0..args.proposals {
        batch.push(Envelope::new(
            "merit-demo",
            ProposalCreated {
                proposal: format!("demo-{p}").parse().context("proposal id")?,
                creator: users[(p % CREATORS) as usize],
                title: format!("Community proposal #{p}"),
                description: "Simulated by merit demo".to_string(),
                starts_at: now - chrono::Duration::seconds(1),
                ends_at: now + chrono::Duration::from_std(VOTING).unwrap_or_default(),
                quorum: 20_000,
                threshold_bps: 5_000,
            },
        ));
    }
    publish(running, &batch).await?;
    Ok(batch.len() as u64)
}

/// The votes of the community, in proposal order, as `--shape` spreads them.
fn votes(args: &DemoArgs, users: &[Address], rng: &mut StdRng) -> Result<Vec<Envelope>> {
    let mut votes = Vec::new();
    let voted_on = match args.shape {
        DemoShape::Spread => args.proposals,
        DemoShape::HotProposal => args.proposals.min(1),
    };
    for p in 0..voted_on {
        for voter in users {
            if args.shape == DemoShape::HotProposal || rng.gen_bool(0.8) {
                // Every third proposal is unpopular, so some are defeated.
                let against_from = if p % 3 == 2 { 3 } else { 6 };
                let roll = rng.gen_range(0..10);
                let choice = if roll == 9 {
                    VoteChoice::Abstain
                } else if roll >= against_from {
                    VoteChoice::Against
                } else {
                    VoteChoice::For
                };
                votes.push(Envelope::new(
                    "merit-demo",
                    VoteCast {
                        proposal: format!("demo-{p}").parse().context("proposal id")?,
                        voter: *voter,
                        choice,
                        reason: None,
                    },
                ));
            }
        }
    }
    Ok(votes)
}

/// Publishes `votes` at `rate` per second, in 50 ms ticks, noting when each went out;
/// returns how many were published.
async fn publish_votes(
    running: &Running,
    votes: &[Envelope],
    rate: u32,
    sent: &Sent,
) -> Result<u64> {
    let total_votes = votes.len();
    let tick = Duration::from_millis(50);
    let per_tick = (rate as usize * tick.as_millis() as usize / 1000).max(1);
    let mut published = 0;
    let mut next = Instant::now();
    for (i, chunk) in votes.chunks(per_tick).enumerate() {
        {
            let mut sent = sent.lock().unwrap_or_else(|p| p.into_inner());
            for v in chunk {
                if let merit_messages::Event::VoteCast(c) = &v.event {
                    sent.insert(
                        (c.proposal.to_string(), c.voter.to_string()),
                        Instant::now(),
                    );
                }
            }
        }
        publish(running, chunk).await?;
        published += chunk.len() as u64;
        progress(&format!(
            "voting      {}  {}/{} votes",
            bar((i + 1) * per_tick, total_votes),
            ((i + 1) * per_tick).min(total_votes),
            total_votes
        ));
        next += tick;
        tokio::time::sleep_until(next.into()).await;
    }
    Ok(published)
}

/// Trades NFTs on the dev chain once enough are minted, and waits (at most [`SETTLE`])
/// until the proposals are closed, the achievements settled and the outbox empty; returns
/// the NFTs traded.
async fn settle(
    running: &Running,
    dev: Option<&DevChain>,
    args: &DemoArgs,
    users: &[Address],
    rng: &mut StdRng,
) -> Result<u32> {
    let db = running.store.db();
    let mut traded = 0u32;
    let deadline = Instant::now() + SETTLE;
    loop {
        let open_proposals = proposal::Entity::find()
            .filter(proposal::Column::Status.is_in(["pending", "active"]))
            .count(db)
            .await?;
        let in_flight = achievement::Entity::find()
            .filter(
                achievement::Column::State
                    .is_in([AchievementState::Unlocked, AchievementState::Reserved]),
            )
            .count(db)
            .await?;
        let pending_outbox = outbox::Entity::find()
            .filter(outbox::Column::PublishedAt.is_null())
            .count(db)
            .await?;
        let minted = nft::Entity::find().count(db).await?;
        let total = achievement::Entity::find().count(db).await?;
        if let Some(dev) = dev {
            if traded < args.trades && minted >= u64::from(args.trades) {
                traded += trade(dev, db, users, args.trades - traded, rng).await?;
            }
        }
        progress(&format!(
            "settling    {}  achievements {}/{} settled, {minted} NFTs, {open_proposals} proposals open",
            bar((total - in_flight) as usize, total.max(1) as usize),
            total - in_flight,
            total
        ));
        let trades_done = dev.is_none() || traded >= args.trades;
        if open_proposals == 0 && in_flight == 0 && pending_outbox == 0 && trades_done {
            return Ok(traded);
        }
        if Instant::now() > deadline {
            eprintln!(
                "\nmerit demo: not settled after {SETTLE:?}; the summary shows where it stands"
            );
            return Ok(traded);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the run did, for the summary.
struct Outcome {
    load: String,
    published: u64,
    traded: u32,
    started: Instant,
}

/// A line of the summary: what, and how much.
type Row = (&'static str, String);

/// The summary rows: what was offered, what the node made of it, and how fast.
async fn summary(running: &Running, listeners: &Listeners, outcome: &Outcome) -> Result<Vec<Row>> {
    let sagas = running.sagas().counts(None).await?;
    let count = |state: &str| {
        sagas
            .iter()
            .filter(|(s, _)| s.as_str() == state)
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    let [p50, p99] = listeners.percentiles([0.50, 0.99]);
    let applied: u64 = running.status().registries.iter().map(|r| r.applied).sum();
    let mut rows = vec![
        ("load", outcome.load.clone()),
        (
            "events published (proposals + votes)",
            outcome.published.to_string(),
        ),
        ("actor turns committed", applied.to_string()),
    ];
    rows.extend(stored(running.store.db()).await?);
    rows.extend([
        ("NFTs traded on chain", outcome.traded.to_string()),
        (
            "sagas completed / compensated",
            format!("{} / {}", count("completed"), count("compensated")),
        ),
        (
            "notifications delivered live",
            listeners.notified.load(Ordering::Relaxed).to_string(),
        ),
        (
            "publish -> vote notification p50 / p99",
            format!("{p50} / {p99}"),
        ),
        (
            "elapsed",
            format!("{:.1} s", outcome.started.elapsed().as_secs_f64()),
        ),
    ]);
    Ok(rows)
}

/// The summary rows the database answers: votes, proposals, achievements, NFTs.
async fn stored(db: &merit_storage::sea_orm::DatabaseConnection) -> Result<Vec<Row>> {
    let achievements = |state: AchievementState| {
        achievement::Entity::find()
            .filter(achievement::Column::State.eq(state))
            .count(db)
    };
    let proposals_in = |status: ProposalStatus| {
        proposal::Entity::find()
            .filter(proposal::Column::Status.eq(status.as_str()))
            .count(db)
    };
    Ok(vec![
        (
            "votes counted",
            vote::Entity::find().count(db).await?.to_string(),
        ),
        (
            "proposals succeeded / defeated",
            format!(
                "{} / {}",
                proposals_in(ProposalStatus::Succeeded).await?,
                proposals_in(ProposalStatus::Defeated).await?
            ),
        ),
        (
            "achievements unlocked",
            achievement::Entity::find().count(db).await?.to_string(),
        ),
        (
            "  minted as NFTs",
            achievements(AchievementState::Minted).await?.to_string(),
        ),
        (
            "  failed and compensated",
            achievements(AchievementState::Failed).await?.to_string(),
        ),
        (
            "NFTs on chain",
            nft::Entity::find()
                .filter(nft::Column::Burned.eq(false))
                .count(db)
                .await?
                .to_string(),
        ),
    ])
}

async fn publish(running: &Running, envelopes: &[Envelope]) -> Result<()> {
    running
        .transport
        .publish(envelopes.iter().map(Outgoing::from_envelope).collect())
        .await
        .context("publish")
}

/// Moves up to `n` NFTs from their holders to other users, directly on the dev chain (not
/// through merit): the listener brings the change back as `nft.transferred`.
async fn trade(
    dev: &DevChain,
    db: &merit_storage::sea_orm::DatabaseConnection,
    users: &[Address],
    n: u32,
    rng: &mut StdRng,
) -> Result<u32> {
    let held = nft::Entity::find()
        .filter(nft::Column::Burned.eq(false))
        .all(db)
        .await?;
    let mut done = 0;
    for row in held.into_iter().take(n as usize) {
        let (Some(owner), Ok(token)) = (row.owner.as_deref(), row.token_id.parse()) else {
            continue;
        };
        let Ok(from) = owner.parse::<Address>() else {
            continue;
        };
        let to = users[rng.gen_range(0..users.len())];
        if to != from && dev.transfer(from, to, &token).is_ok() {
            done += 1;
        }
    }
    Ok(done)
}

fn bar(done: usize, total: usize) -> String {
    let width = 24;
    let filled = (done.min(total) * width) / total.max(1);
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

/// A progress line: redrawn in place on a terminal, printed every few seconds otherwise
/// (a log file or CI keeps a readable record).
fn progress(line: &str) {
    use std::io::IsTerminal;
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let _ = write!(err, "\r{line:<110}");
        let _ = err.flush();
        return;
    }
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(3)) {
        *last = Some(Instant::now());
        let _ = writeln!(err, "{}", line.trim_end());
    }
}
