//! `merit simulate`: an AMQP producer for load. It publishes exactly the envelopes a
//! producer in any language would (README, "Publishing events"): to the topic exchange
//! `merit.events`, the event type as routing key, persistent, `application/json`, the
//! envelope id as `message_id`, the key headers (`merit-proposal`, `merit-user`), with
//! publisher confirms.
//!
//! It first creates every proposal (`governance.proposal.created`, open from a minute ago
//! for a day, quorum 1) and waits for their confirms, then publishes
//! `governance.vote.cast` from random users on random proposals at the offered rate — a
//! user votes at most once per proposal (the pairs are drawn without replacement) — for a
//! duration or a number of events. Optionally a fraction of the paced messages are
//! duplicates (an earlier vote re-published with the same id, which merit's inbox must
//! absorb) and a fraction are broken in one of seven ways, each carrying the headers that
//! take it to a shard where it is dead-lettered with its class.
//!
//! Messages go out in small batches per 20 ms tick through [`RabbitTransport`], which
//! writes a batch in order and awaits its confirms together; up to `--confirm-window`
//! messages are unconfirmed at once. A progress line on stderr shows the achieved rate;
//! the summary (sent by kind, achieved rate, publish → confirm latency per batch) goes to
//! stdout and, with `--json`, to a file.

mod generate;
mod ledger;
mod pacer;
mod report;
mod run;

use std::{
    io::IsTerminal,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use lapin::{options::ExchangeDeclareOptions, types::FieldTable, ExchangeKind};
use merit_config::{SecretUrl, Settings};
use merit_mailbox::{RabbitOptions, RabbitTransport, Topology};
use merit_messages::EVENTS_EXCHANGE;
use serde::Serialize;

use generate::Generator;
use ledger::Ledger;
use report::{print_summary, Progress};
use run::Run;

/// The load to offer.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SimulateArgs {
    /// The broker to publish to (default: MERIT_AMQP_URL). A merit node must have declared
    /// the topology there (`merit serve` does).
    #[arg(long)]
    amqp_url: Option<String>,
    /// Simulated users (wallets); each votes at most once per proposal.
    #[arg(long, default_value_t = 1_000)]
    users: u32,
    /// Proposals created before the votes start.
    #[arg(long, default_value_t = 50)]
    proposals: u32,
    /// Offered load after the proposals are created, events per second (votes,
    /// duplicates and malformed messages together).
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
    /// Stop after this many seconds of paced load (default 30 unless --events is given;
    /// with both, whichever comes first).
    #[arg(long)]
    seconds: Option<f64>,
    /// Stop after this many messages in all (proposal creations included).
    #[arg(long)]
    events: Option<u64>,
    /// `steady`, or `bursty`: 1 s at three times the rate, then 2 s idle (same average).
    #[arg(long, value_enum, default_value_t = Profile::Steady)]
    profile: Profile,
    /// Share (0-1) of paced messages that re-publish an earlier vote with the same id.
    #[arg(long, default_value_t = 0.0)]
    duplicate_fraction: f64,
    /// Share (0-1) of paced messages that are broken, cycling through: bad JSON, a field
    /// of the wrong type, an unknown type, an unknown version, a missing field, an
    /// envelope over 64 KiB, an address with a bad EIP-55 checksum.
    #[arg(long, default_value_t = 0.0)]
    malformed_fraction: f64,
    /// Seed of the random choices (users, proposals, vote choices); random if not given.
    #[arg(long)]
    seed: Option<u64>,
    /// Messages published but not yet confirmed, at most.
    #[arg(long, default_value_t = 200)]
    confirm_window: u32,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also write one line per intact message (proposal, vote, duplicate) once its batch's
    /// confirm is in: `OUTCOME TYPE EVENT_ID PROPOSAL USER`, tab-separated, where OUTCOME
    /// is `confirmed` or `failed` (nacked or never confirmed: it may or may not have been
    /// stored). A checker matches merit's effects to event ids with it.
    #[arg(long)]
    ledger: Option<PathBuf>,
}

/// How the offered load is spread over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Profile {
    /// The rate, all the time.
    Steady,
    /// Three times the rate for 1 s, then nothing for 2 s: the same average.
    Bursty,
}

impl Profile {
    /// Messages due in total `t` seconds into the paced phase at an average of `rate`/s.
    fn due(self, rate: f64, t: f64) -> f64 {
        match self {
            Self::Steady => rate * t,
            Self::Bursty => {
                let cycles = (t / 3.0).floor();
                let within = t - 3.0 * cycles;
                3.0 * rate * (cycles + within.min(1.0))
            }
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Steady => "steady",
            Self::Bursty => "bursty",
        }
    }
}

/// The arguments, checked.
struct Plan {
    users: u32,
    proposals: u32,
    rate: f64,
    seconds: Option<f64>,
    events: Option<u64>,
    profile: Profile,
    duplicate_fraction: f64,
    malformed_fraction: f64,
    seed: u64,
    window: u64,
}

impl Plan {
    fn new(args: &SimulateArgs) -> Result<Self> {
        anyhow::ensure!(args.users >= 1, "--users must be at least 1");
        anyhow::ensure!(args.proposals >= 1, "--proposals must be at least 1");
        anyhow::ensure!(
            args.rate.is_finite() && args.rate > 0.0,
            "--rate must be a positive number of events per second, not {}",
            args.rate
        );
        if let Some(s) = args.seconds {
            anyhow::ensure!(
                s.is_finite() && s > 0.0,
                "--seconds must be positive, not {s}"
            );
        }
        anyhow::ensure!(args.events != Some(0), "--events must be at least 1");
        for (flag, f) in [
            ("--duplicate-fraction", args.duplicate_fraction),
            ("--malformed-fraction", args.malformed_fraction),
        ] {
            anyhow::ensure!(
                (0.0..=1.0).contains(&f),
                "{flag} must be between 0 and 1, not {f}"
            );
        }
        anyhow::ensure!(
            args.duplicate_fraction + args.malformed_fraction <= 1.0,
            "--duplicate-fraction + --malformed-fraction must be at most 1"
        );
        anyhow::ensure!(
            args.confirm_window >= 1,
            "--confirm-window must be at least 1"
        );
        Ok(Self {
            users: args.users,
            proposals: args.proposals,
            rate: args.rate,
            seconds: match (args.seconds, args.events) {
                (None, None) => Some(30.0),
                (s, _) => s,
            },
            events: args.events,
            profile: args.profile,
            duplicate_fraction: args.duplicate_fraction,
            malformed_fraction: args.malformed_fraction,
            seed: args.seed.unwrap_or_else(rand::random),
            window: u64::from(args.confirm_window),
        })
    }
}

/// Runs `merit simulate`.
pub(crate) async fn simulate(settings: Settings, args: SimulateArgs) -> Result<()> {
    let plan = Plan::new(&args)?;
    let url = match args.amqp_url.as_deref() {
        Some(u) => SecretUrl::new(u),
        None => settings.amqp_url.clone().context(
            "merit simulate publishes to RabbitMQ: pass --amqp-url or set MERIT_AMQP_URL \
             (e.g. amqp://guest:guest@127.0.0.1:5672/%2f)",
        )?,
    };
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    // The shard count does not matter: the simulator only publishes to merit.events and
    // never declares (a node declares the topology with its own shard count).
    let options = RabbitOptions {
        op_timeout: Duration::from_secs(15),
        connection_name: format!("merit-simulate {run}"),
        ..RabbitOptions::default()
    };
    let transport = RabbitTransport::connect_with(url.expose(), Topology::new(1), options)
        .await
        // The mailbox error already names the broker and says why (its source repeats it).
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    check_exchange(&url).await?;

    let generator = Generator::new(&plan, &run)?;
    eprintln!(
        "merit simulate: run {run}, seed {}, {} users, {} proposals, {} {} events/s, to {}",
        plan.seed,
        plan.users,
        plan.proposals,
        plan.profile.as_str(),
        plan.rate,
        url.redacted()
    );
    let progress = Progress {
        terminal: std::io::stderr().is_terminal(),
        started: Instant::now(),
    };
    let ledger = args.ledger.as_deref().map(Ledger::create).transpose()?;
    let mut state = Run::new(&plan, &url, &transport, generator, ledger);
    state.drive(&progress).await;
    progress.draw(&state.tally, state.paced_since, plan.proposals);
    progress.finish();
    let (summary, fatal) = state.finish(run);

    print_summary(&summary);
    if let Some(path) = &args.json {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("write {}", path.display()))?;
        println!("written to {}", path.display());
    }
    match fatal {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Fails clearly when the broker has no `merit.events` (no node ever declared the
/// topology there): publishing would only get the channel closed.
async fn check_exchange(url: &SecretUrl) -> Result<()> {
    let conn = crate::serve::amqp_connection(url.expose())
        .await
        .with_context(|| format!("connect to RabbitMQ at {}", url.redacted()))?;
    let found = async {
        let ch = conn.create_channel().await?;
        ch.exchange_declare(
            EVENTS_EXCHANGE.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
        // Closed before the connection, which lapin would otherwise report as an error.
        ch.close(200, "checked".into()).await
    }
    .await;
    if let Err(e) = conn.close(200, "checked".into()).await {
        tracing::debug!(error = %e, "closing the check connection");
    }
    found.map_err(|e| {
        anyhow::anyhow!(
            "the exchange {EVENTS_EXCHANGE} does not exist on {} ({e}): start a merit node \
             against this broker first (`merit serve` declares the topology)",
            url.redacted()
        )
    })
}

/// Ctrl-C presses, as a stream of `()`.
fn interrupts() -> tokio::sync::mpsc::UnboundedReceiver<()> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    rx
}
