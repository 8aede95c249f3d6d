//! `merit demo`: a node on embedded defaults (a fresh SQLite file, the in-process
//! transport and cache, the embedded dev chain) with the API and dashboard, and a
//! simulated community driven through it: users create proposals and vote on them at a
//! steady rate, the rules unlock achievements, the unlock sagas mint them as NFTs, a few
//! mints fail for good and are compensated, some NFTs change hands on chain (and so change
//! their holders' vote weights), and the proposals close. A progress line while it runs;
//! a summary at the end. `MERIT_AMQP_URL`, `MERIT_DATABASE_URL`, `MERIT_REDIS_URL` and
//! `MERIT_CHAIN_RPC_URL` put it on real services instead (injected failures and trades
//! need the dev chain and are skipped on a real one).

mod community;
mod report;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Result;
use merit_chain::Chain;
use merit_config::{SecretUrl, Settings};
use merit_messages::Address;
use rand::{rngs::StdRng, SeedableRng};

use self::{
    community::{create_proposals, publish_votes, settle, votes},
    report::{summary, Listeners, Outcome},
};
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
