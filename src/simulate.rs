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

use std::{
    collections::{BTreeMap, HashMap},
    io::{IsTerminal, Write},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use chrono::Utc;
use futures::{future::BoxFuture, stream::FuturesUnordered, FutureExt, StreamExt};
use lapin::{options::ExchangeDeclareOptions, types::FieldTable, ExchangeKind};
use merit_config::{SecretUrl, Settings};
use merit_mailbox::{Outgoing, RabbitOptions, RabbitTransport, Topology, Transport};
use merit_messages::{
    Address, Envelope, ProposalCreated, ProposalId, VoteCast, VoteChoice, EVENTS_EXCHANGE,
    MAX_ENVELOPE_BYTES,
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};

/// The `source` of every envelope the simulator publishes.
const SOURCE: &str = "merit-simulate";
/// Pacing period: each tick publishes what the profile says is due.
const TICK: Duration = Duration::from_millis(20);
/// Most earlier votes kept as candidates for duplicates.
const DUPLICATE_POOL: usize = 100_000;
/// A routing key and `type` no merit version knows.
const UNKNOWN_TYPE: &str = "governance.vote.retracted";

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

/// The ways a malformed message is broken, published in this order, round robin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broken {
    BadJson,
    WrongType,
    UnknownType,
    UnknownVersion,
    MissingField,
    Oversized,
    BadChecksum,
}

impl Broken {
    const ALL: [Broken; 7] = [
        Broken::BadJson,
        Broken::WrongType,
        Broken::UnknownType,
        Broken::UnknownVersion,
        Broken::MissingField,
        Broken::Oversized,
        Broken::BadChecksum,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::WrongType => "wrong_type",
            Self::UnknownType => "unknown_type",
            Self::UnknownVersion => "unknown_version",
            Self::MissingField => "missing_field",
            Self::Oversized => "oversized",
            Self::BadChecksum => "bad_checksum",
        }
    }

    /// The dead-letter class merit gives it (`x-merit-reason-class`).
    fn dead_letter_class(self) -> &'static str {
        match self {
            Self::BadJson => "malformed",
            Self::WrongType | Self::BadChecksum => "invalid_field",
            Self::UnknownType => "unknown_type",
            Self::UnknownVersion => "unknown_version",
            Self::MissingField => "missing_field",
            Self::Oversized => "oversized",
        }
    }
}

/// Messages by kind.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    proposals: u64,
    votes: u64,
    duplicates: u64,
    malformed: [u64; Broken::ALL.len()],
}

impl Counts {
    fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }

    fn total(&self) -> u64 {
        self.proposals + self.votes + self.duplicates + self.malformed_total()
    }

    fn paced(&self) -> u64 {
        self.total() - self.proposals
    }

    fn add(&mut self, other: &Counts) {
        self.proposals += other.proposals;
        self.votes += other.votes;
        self.duplicates += other.duplicates;
        for (mine, theirs) in self.malformed.iter_mut().zip(other.malformed) {
            *mine += theirs;
        }
    }
}

/// What one paced slot became.
enum Kind {
    Vote,
    Duplicate,
    Malformed(Broken),
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

/// Draws `0..n` without replacement, uniformly: a Fisher-Yates shuffle done lazily, so
/// memory grows with the draws, not with `n` (users × proposals can be large).
struct Draw {
    remaining: u64,
    moved: HashMap<u64, u64>,
}

impl Draw {
    fn new(n: u64) -> Self {
        Self {
            remaining: n,
            moved: HashMap::new(),
        }
    }

    fn next(&mut self, rng: &mut StdRng) -> Option<u64> {
        if self.remaining == 0 {
            return None;
        }
        let j = rng.gen_range(0..self.remaining);
        let last = self.remaining - 1;
        let picked = self.moved.get(&j).copied().unwrap_or(j);
        let tail = self.moved.remove(&last).unwrap_or(last);
        if j != last {
            self.moved.insert(j, tail);
        }
        self.remaining = last;
        Some(picked)
    }
}

/// The wallet of simulated user `i`: fixed across runs (so `--users N` is always the same
/// community) and spread over the address space.
fn user_address(i: u32) -> Address {
    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let mut state = 0x6d65_7269_742d_7369 ^ u64::from(i);
    let mut bytes = [0u8; 20];
    for chunk in bytes.chunks_mut(8) {
        let word = splitmix(&mut state).to_be_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    Address(bytes)
}

/// `addr` in mixed case with a wrong EIP-55 checksum (one letter's case flipped so that
/// both cases remain), or `None` when it has too few letters for that.
fn bad_checksum(addr: &Address) -> Option<String> {
    let good = addr.to_checksum();
    let hex: Vec<char> = good[2..].chars().collect();
    for (i, c) in hex.iter().enumerate() {
        if !c.is_ascii_alphabetic() {
            continue;
        }
        let mut flipped = hex.clone();
        flipped[i] = if c.is_ascii_uppercase() {
            c.to_ascii_lowercase()
        } else {
            c.to_ascii_uppercase()
        };
        let upper = flipped.iter().any(char::is_ascii_uppercase);
        let lower = flipped.iter().any(char::is_ascii_lowercase);
        if upper && lower {
            return Some(format!("0x{}", flipped.into_iter().collect::<String>()));
        }
    }
    None
}

/// Builds the messages: proposals, votes (each user × proposal pair at most once),
/// duplicates of earlier votes, broken messages.
struct Generator {
    rng: StdRng,
    users: u32,
    proposals: Vec<ProposalId>,
    pairs: Draw,
    earlier_votes: Vec<Outgoing>,
    duplicate_fraction: f64,
    malformed_fraction: f64,
    duplicate_credit: f64,
    malformed_credit: f64,
    next_broken: usize,
}

impl Generator {
    fn new(plan: &Plan, run: &str) -> Result<Self> {
        let proposals = (0..plan.proposals)
            .map(|p| {
                format!("sim-{run}-{p}")
                    .parse::<ProposalId>()
                    .map_err(|e| anyhow::anyhow!("proposal id sim-{run}-{p}: {e}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut rng = StdRng::seed_from_u64(plan.seed);
        // Random phases, so that duplicates and broken messages do not fall on the same
        // slots of every run.
        let duplicate_credit = rng.gen::<f64>() * plan.duplicate_fraction;
        let malformed_credit = rng.gen::<f64>() * plan.malformed_fraction;
        Ok(Self {
            rng,
            users: plan.users,
            pairs: Draw::new(u64::from(plan.users) * u64::from(plan.proposals)),
            proposals,
            earlier_votes: Vec::new(),
            duplicate_fraction: plan.duplicate_fraction,
            malformed_fraction: plan.malformed_fraction,
            duplicate_credit,
            malformed_credit,
            next_broken: 0,
        })
    }

    fn random_user(&mut self) -> Address {
        user_address(self.rng.gen_range(0..self.users))
    }

    fn random_proposal(&mut self) -> ProposalId {
        self.proposals[self.rng.gen_range(0..self.proposals.len())].clone()
    }

    fn choice(&mut self) -> VoteChoice {
        match self.rng.gen_range(0..10) {
            0..=5 => VoteChoice::For,
            6..=8 => VoteChoice::Against,
            _ => VoteChoice::Abstain,
        }
    }

    /// `governance.proposal.created` for every proposal: open since a minute ago, for a
    /// day, quorum 1, a random creator.
    fn creations(&mut self) -> Vec<Outgoing> {
        let now = Utc::now();
        let ids = self.proposals.clone();
        ids.into_iter()
            .enumerate()
            .map(|(i, proposal)| {
                let creator = self.random_user();
                Outgoing::from_envelope(&Envelope::new(
                    SOURCE,
                    ProposalCreated {
                        proposal,
                        creator,
                        title: format!("Simulated proposal {i}"),
                        description: "Created by merit simulate.".into(),
                        starts_at: now - chrono::Duration::minutes(1),
                        ends_at: now + chrono::Duration::days(1),
                        quorum: 1,
                        threshold_bps: 5_000,
                    },
                ))
            })
            .collect()
    }

    /// The next paced message, or `None` when every user has voted on every proposal.
    fn next(&mut self) -> Option<(Kind, Outgoing)> {
        self.malformed_credit += self.malformed_fraction;
        self.duplicate_credit += self.duplicate_fraction;
        if self.malformed_credit >= 1.0 {
            self.malformed_credit -= 1.0;
            let broken = Broken::ALL[self.next_broken % Broken::ALL.len()];
            self.next_broken += 1;
            return Some((Kind::Malformed(broken), self.broken(broken)));
        }
        if self.duplicate_credit >= 1.0 && !self.earlier_votes.is_empty() {
            self.duplicate_credit -= 1.0;
            let i = self.rng.gen_range(0..self.earlier_votes.len());
            return Some((Kind::Duplicate, self.earlier_votes[i].clone()));
        }
        self.vote().map(|out| (Kind::Vote, out))
    }

    fn vote(&mut self) -> Option<Outgoing> {
        let pair = self.pairs.next(&mut self.rng)?;
        let count = self.proposals.len() as u64;
        let user = u32::try_from(pair / count).expect("a pair's user index is below --users");
        let proposal = self.proposals[(pair % count) as usize].clone();
        let choice = self.choice();
        let out = Outgoing::from_envelope(&Envelope::new(
            SOURCE,
            VoteCast {
                proposal,
                voter: user_address(user),
                choice,
                reason: None,
            },
        ));
        if self.earlier_votes.len() < DUPLICATE_POOL {
            self.earlier_votes.push(out.clone());
        } else {
            let i = self.rng.gen_range(0..DUPLICATE_POOL);
            self.earlier_votes[i] = out.clone();
        }
        Some(out)
    }

    /// A vote broken as `how`, with the routing key and key headers the intact vote would
    /// have, so it reaches the proposal's shard (an unknown type cannot: it goes through
    /// `merit.unrouted`) and is dead-lettered there. A fresh id each time.
    fn broken(&mut self, how: Broken) -> Outgoing {
        let mut voter = self.random_user();
        let proposal = self.random_proposal();
        let choice = self.choice();
        let env = Envelope::new(
            SOURCE,
            VoteCast {
                proposal: proposal.clone(),
                voter,
                choice,
                reason: None,
            },
        );
        let intact = Outgoing::from_envelope(&env);
        let mut wire: Value =
            serde_json::from_slice(&intact.body).expect("an encoded envelope is JSON");
        let mut routing_key = intact.routing_key.clone();
        let mut headers = intact.headers.clone();
        let body: Vec<u8> = match how {
            Broken::BadJson => {
                // Cut in the middle: not JSON any more.
                intact.body[..intact.body.len() / 2].to_vec()
            }
            Broken::WrongType => {
                wire["payload"]["choice"] = json!(42);
                wire.to_string().into_bytes()
            }
            Broken::UnknownType => {
                wire["type"] = json!(UNKNOWN_TYPE);
                routing_key = UNKNOWN_TYPE.to_string();
                wire.to_string().into_bytes()
            }
            Broken::UnknownVersion => {
                wire["version"] = json!(2);
                wire.to_string().into_bytes()
            }
            Broken::MissingField => {
                if let Some(payload) = wire["payload"].as_object_mut() {
                    payload.remove("voter");
                }
                if let Some(keys) = wire["keys"].as_object_mut() {
                    keys.remove("user");
                }
                headers.remove("merit-user");
                wire.to_string().into_bytes()
            }
            Broken::Oversized => {
                wire["payload"]["reason"] = json!("x".repeat(MAX_ENVELOPE_BYTES + 1_024));
                wire.to_string().into_bytes()
            }
            Broken::BadChecksum => {
                let mut mixed = bad_checksum(&voter);
                while mixed.is_none() {
                    voter = self.random_user();
                    mixed = bad_checksum(&voter);
                }
                let mixed = mixed.expect("the loop ends with a mixed-case address");
                wire["payload"]["voter"] = json!(mixed);
                // `keys` would be checked against the payload; leave it to merit to derive.
                if let Some(envelope) = wire.as_object_mut() {
                    envelope.remove("keys");
                }
                headers.insert("merit-user".into(), voter.to_string());
                wire.to_string().into_bytes()
            }
        };
        let mut out = Outgoing::new(routing_key, intact.message_id.clone(), body);
        out.correlation_id = intact.correlation_id.clone();
        out.headers = headers;
        out
    }
}

/// Why the run ended.
#[derive(Debug, Clone)]
enum Stop {
    Seconds(f64),
    Events(u64),
    AllPairsUsed(u64),
    Interrupted,
    Failed(String),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Seconds(s) => write!(f, "--seconds {s} reached"),
            Self::Events(n) => write!(f, "--events {n} reached"),
            Self::AllPairsUsed(n) => write!(
                f,
                "every user has voted on every proposal ({n} pairs): add --users or --proposals for a longer run"
            ),
            Self::Interrupted => f.write_str("interrupted (Ctrl-C)"),
            Self::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

/// A batch on its way: what it holds, how long publish → confirm took, the outcome.
type Flight<'a> = BoxFuture<'a, (Counts, Entries, Duration, merit_mailbox::Result<()>)>;

/// A batch's intact messages, as the ledger names them: type, event id, proposal, user.
type Entries = Vec<[String; 4]>;

/// The `--ledger` file: what became of each intact message.
struct Ledger(std::io::BufWriter<std::fs::File>);

impl Ledger {
    fn create(path: &std::path::Path) -> Result<Self> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("create the ledger {}", path.display()))?;
        Ok(Self(std::io::BufWriter::new(file)))
    }

    /// The intact messages of `batch` (malformed ones are not votes merit could count).
    fn entries(batch: &[Outgoing], kinds: &[bool]) -> Entries {
        batch
            .iter()
            .zip(kinds)
            .filter(|(_, intact)| **intact)
            .map(|(out, _)| {
                let header = |k: &str| out.headers.get(k).cloned().unwrap_or_default();
                [
                    out.routing_key.clone(),
                    out.message_id.clone(),
                    header("merit-proposal"),
                    header("merit-user"),
                ]
            })
            .collect()
    }

    fn record(&mut self, confirmed: bool, entries: &Entries) -> Result<()> {
        let outcome = if confirmed { "confirmed" } else { "failed" };
        for [kind, id, proposal, user] in entries {
            writeln!(self.0, "{outcome}\t{kind}\t{id}\t{proposal}\t{user}")?;
        }
        Ok(self.0.flush()?)
    }
}

/// What the run observed so far.
#[derive(Default)]
struct Tally {
    confirmed: Counts,
    failed: Counts,
    in_flight: u64,
    batch_ms: Vec<f64>,
}

/// The progress line.
struct Progress {
    terminal: bool,
    started: Instant,
}

impl Progress {
    fn draw(&self, tally: &Tally, paced_since: Option<Instant>, proposals: u32) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let c = &tally.confirmed;
        let rate = match paced_since {
            Some(since) => format!(
                "{:.0} events/s",
                c.paced() as f64 / since.elapsed().as_secs_f64().max(1e-3)
            ),
            None => format!("creating proposals {}/{proposals}", c.proposals),
        };
        let line = format!(
            "{elapsed:6.1} s | sent {} (in flight {}) | {rate} | duplicates {} | malformed {} | confirm failures {}",
            c.total(),
            tally.in_flight,
            c.duplicates,
            c.malformed_total(),
            tally.failed.total(),
        );
        let mut err = std::io::stderr().lock();
        // A progress line that cannot be written is not worth failing the run.
        let _ = if self.terminal {
            write!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }

    fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}

/// The summary, as printed and as written by `--json`.
#[derive(Debug, Serialize)]
struct Summary {
    run: String,
    amqp_url: String,
    seed: u64,
    profile: Profile,
    offered_rate: f64,
    users: u32,
    proposals: u32,
    stopped: String,
    sent: Sent,
    /// Messages in batches the broker refused (nack) or never confirmed.
    confirm_failures: u64,
    /// Messages still awaiting their confirm when the run was abandoned.
    unconfirmed: u64,
    paced_seconds: f64,
    achieved_rate: f64,
    batches: usize,
    batch_confirm_p50_ms: Option<f64>,
    batch_confirm_p99_ms: Option<f64>,
    /// Dead letters merit should produce, by `x-merit-reason-class`.
    expected_dead_letters: BTreeMap<String, u64>,
}

/// Confirmed messages by kind.
#[derive(Debug, Serialize)]
struct Sent {
    proposals_created: u64,
    votes: u64,
    duplicates: u64,
    malformed: u64,
    malformed_by_kind: BTreeMap<String, u64>,
    total: u64,
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

/// Decides how many paced messages are due: what the profile offers at the rate since
/// the paced phase began, less what was issued, with at most one second's worth of
/// backlog (a broker slower than the offered load is shown by the achieved rate, not
/// made up later: the excess is skipped for good).
#[derive(Debug)]
struct Pacer {
    profile: Profile,
    rate: f64,
    issued: u64,
    skipped: u64,
}

impl Pacer {
    fn new(profile: Profile, rate: f64) -> Self {
        Self {
            profile,
            rate,
            issued: 0,
            skipped: 0,
        }
    }

    /// Messages due `t` seconds into the paced phase.
    fn due(&mut self, t: f64) -> u64 {
        let target = self.profile.due(self.rate, t).floor() as u64;
        let due = target.saturating_sub(self.issued + self.skipped);
        let cap = self.rate.ceil().max(1.0) as u64;
        if due > cap {
            self.skipped += due - cap;
            return cap;
        }
        due
    }

    /// Counts `n` messages as issued (fewer than were due when the window was full).
    fn issued(&mut self, n: u64) {
        self.issued += n;
    }
}

/// The messages of one tick, with what the tally and the ledger need of them.
#[derive(Default)]
struct Batch {
    out: Vec<Outgoing>,
    /// Which of `out` are intact (not malformed), for the ledger.
    intact: Vec<bool>,
    counts: Counts,
}

impl Batch {
    fn proposal(&mut self, out: Outgoing) {
        self.counts.proposals += 1;
        self.intact.push(true);
        self.out.push(out);
    }

    fn paced(&mut self, kind: Kind, out: Outgoing) {
        match kind {
            Kind::Vote => self.counts.votes += 1,
            Kind::Duplicate => self.counts.duplicates += 1,
            Kind::Malformed(b) => self.counts.malformed[b as usize] += 1,
        }
        self.intact.push(!matches!(kind, Kind::Malformed(_)));
        self.out.push(out);
    }

    fn len(&self) -> u64 {
        self.out.len() as u64
    }
}

/// What a landed flight reports: its counts, its ledger entries, publish → confirm, the
/// outcome.
type Landed = (Counts, Entries, Duration, merit_mailbox::Result<()>);

/// A run in progress: what [`Run::drive`]'s loop changes, one method per event it waits
/// for (a Ctrl-C, a batch confirmed, a pacing tick).
struct Run<'a> {
    plan: &'a Plan,
    url: &'a SecretUrl,
    transport: &'a RabbitTransport,
    generator: Generator,
    /// The proposal creations not yet published.
    creations: std::vec::IntoIter<Outgoing>,
    ledger: Option<Ledger>,
    flights: FuturesUnordered<Flight<'a>>,
    tally: Tally,
    issued_total: u64,
    /// Set once every proposal is confirmed: the start of the paced phase.
    paced_since: Option<Instant>,
    pacer: Pacer,
    /// When the last paced message was confirmed.
    paced_end: Option<Instant>,
    stop: Option<Stop>,
    fatal: Option<anyhow::Error>,
    /// A second Ctrl-C: the confirms still awaited are given up.
    abandoned: bool,
}

impl<'a> Run<'a> {
    fn new(
        plan: &'a Plan,
        url: &'a SecretUrl,
        transport: &'a RabbitTransport,
        mut generator: Generator,
        ledger: Option<Ledger>,
    ) -> Self {
        let creations = generator.creations().into_iter();
        Self {
            plan,
            url,
            transport,
            generator,
            creations,
            ledger,
            flights: FuturesUnordered::new(),
            tally: Tally::default(),
            issued_total: 0,
            paced_since: None,
            pacer: Pacer::new(plan.profile, plan.rate),
            paced_end: None,
            stop: None,
            fatal: None,
            abandoned: false,
        }
    }

    /// Publishes until a stop condition and until every batch in flight has landed (or a
    /// second Ctrl-C gives them up), redrawing `progress` meanwhile.
    async fn drive(&mut self, progress: &Progress) {
        let mut interrupts = interrupts();
        let period = if progress.terminal {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(3)
        };
        let mut redraw = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while !self.done() {
            tokio::select! {
                biased;
                Some(()) = interrupts.recv() => self.interrupted(),
                Some(landed) = self.flights.next(), if !self.flights.is_empty() => {
                    self.landed(landed);
                }
                _ = tick.tick(), if self.stop.is_none() => self.tick(),
                _ = redraw.tick() => {
                    progress.draw(&self.tally, self.paced_since, self.plan.proposals);
                }
            }
        }
    }

    /// Stopped with every batch landed, or the batches in flight given up.
    fn done(&self) -> bool {
        self.abandoned || (self.stop.is_some() && self.flights.is_empty())
    }

    fn interrupted(&mut self) {
        if self.stop.is_none() {
            self.stop = Some(Stop::Interrupted);
        } else {
            // A second Ctrl-C: stop waiting for confirms.
            self.abandoned = true;
        }
    }

    /// Stops the run on the first fatal error (later ones follow from it).
    fn fail(&mut self, e: anyhow::Error) {
        if self.fatal.is_none() {
            self.stop = Some(Stop::Failed(format!("{e:#}")));
            self.fatal = Some(e);
        }
    }

    /// A batch's confirms are in (or failed): tally it and write it to the ledger.
    fn landed(&mut self, (counts, entries, took, result): Landed) {
        self.tally.in_flight -= counts.total();
        if let Some(ledger) = &mut self.ledger {
            if let Err(e) = ledger.record(result.is_ok(), &entries) {
                self.fail(e);
            }
        }
        match result {
            Ok(()) => {
                self.tally.confirmed.add(&counts);
                self.tally.batch_ms.push(took.as_secs_f64() * 1_000.0);
            }
            Err(e) => {
                self.tally.failed.add(&counts);
                // A nack is the broker's answer about these messages, not a lost broker.
                if !matches!(e, merit_mailbox::Error::Nacked { .. }) {
                    let e = anyhow::anyhow!(
                        "publish to {EVENTS_EXCHANGE} on {}: {e}",
                        self.url.redacted()
                    );
                    self.fail(e);
                }
            }
        }
        if self.paced_since.is_some() && counts.paced() > 0 {
            self.paced_end = Some(Instant::now());
        }
    }

    /// A pacing tick: publishes what is due, within the confirm window and `--events`.
    fn tick(&mut self) {
        let room = self.plan.window.saturating_sub(self.tally.in_flight);
        let left = self.plan.events.map_or(u64::MAX, |n| n - self.issued_total);
        let mut batch = Batch::default();
        match self.paced_since {
            None => self.create(&mut batch, room.min(left), left),
            Some(since) => self.pace(&mut batch, since, room.min(left)),
        }
        self.issued_total += batch.len();
        if let Some(n) = self.plan.events {
            if self.issued_total >= n && self.stop.is_none() {
                self.stop = Some(Stop::Events(n));
            }
        }
        if !batch.out.is_empty() {
            self.launch(batch);
        }
    }

    /// The creation phase: up to `limit` proposals; once every one is confirmed, the
    /// paced phase begins.
    fn create(&mut self, batch: &mut Batch, limit: u64, left: u64) {
        for out in self.creations.by_ref().take(limit as usize) {
            batch.proposal(out);
        }
        if batch.out.is_empty() && self.flights.is_empty() && left > 0 {
            // Every proposal is confirmed: votes may follow.
            self.paced_since = Some(Instant::now());
        }
    }

    /// The paced phase: what the pacer says is due, up to `limit`.
    fn pace(&mut self, batch: &mut Batch, since: Instant, limit: u64) {
        let t = since.elapsed().as_secs_f64();
        for _ in 0..self.pacer.due(t).min(limit) {
            let Some((kind, out)) = self.generator.next() else {
                let pairs = u64::from(self.plan.users) * u64::from(self.plan.proposals);
                self.stop = Some(Stop::AllPairsUsed(pairs));
                break;
            };
            batch.paced(kind, out);
        }
        self.pacer.issued(batch.len());
        if let Some(limit) = self.plan.seconds {
            if t >= limit && self.stop.is_none() {
                self.stop = Some(Stop::Seconds(limit));
            }
        }
    }

    /// Publishes `batch` and awaits its confirms in the background.
    fn launch(&mut self, batch: Batch) {
        self.tally.in_flight += batch.counts.total();
        let entries = if self.ledger.is_some() {
            Ledger::entries(&batch.out, &batch.intact)
        } else {
            Vec::new()
        };
        let (transport, counts, out) = (self.transport, batch.counts, batch.out);
        self.flights.push(
            async move {
                let started = Instant::now();
                let result = transport.publish(out).await;
                (counts, entries, started.elapsed(), result)
            }
            .boxed(),
        );
    }

    /// Gives up what is still in flight; the summary, and the error that stopped the run.
    fn finish(mut self, run: String) -> (Summary, Option<anyhow::Error>) {
        drop(std::mem::take(&mut self.flights));
        let summary = self.summary(run);
        (summary, self.fatal)
    }

    fn summary(&self, run: String) -> Summary {
        let paced_seconds = match (self.paced_since, self.paced_end) {
            (Some(since), Some(end)) => end.duration_since(since).as_secs_f64(),
            (Some(since), None) => since.elapsed().as_secs_f64(),
            _ => 0.0,
        };
        let mut batch_ms = self.tally.batch_ms.clone();
        batch_ms.sort_by(f64::total_cmp);
        let c = &self.tally.confirmed;
        let mut expected_dead_letters = BTreeMap::new();
        for b in Broken::ALL {
            *expected_dead_letters
                .entry(b.dead_letter_class().to_string())
                .or_insert(0) += c.malformed[b as usize];
        }
        let plan = self.plan;
        Summary {
            run,
            amqp_url: self.url.redacted().to_string(),
            seed: plan.seed,
            profile: plan.profile,
            offered_rate: plan.rate,
            users: plan.users,
            proposals: plan.proposals,
            stopped: self
                .stop
                .clone()
                .unwrap_or(Stop::Interrupted)
                .to_string()
                .replace('\n', " "),
            sent: Sent {
                proposals_created: c.proposals,
                votes: c.votes,
                duplicates: c.duplicates,
                malformed: c.malformed_total(),
                malformed_by_kind: Broken::ALL
                    .iter()
                    .map(|b| (b.name().to_string(), c.malformed[*b as usize]))
                    .collect(),
                total: c.total(),
            },
            confirm_failures: self.tally.failed.total(),
            unconfirmed: if self.abandoned {
                self.tally.in_flight
            } else {
                0
            },
            paced_seconds,
            achieved_rate: if paced_seconds > 0.0 {
                c.paced() as f64 / paced_seconds
            } else {
                0.0
            },
            batches: batch_ms.len(),
            batch_confirm_p50_ms: percentile(&batch_ms, 0.50),
            batch_confirm_p99_ms: percentile(&batch_ms, 0.99),
            expected_dead_letters,
        }
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

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
}

fn print_summary(s: &Summary) {
    let row = |label: &str, value: String| println!("  {label:<50} {value}");
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1} ms"));
    println!(
        "merit simulate summary (run {}, seed {}, {} at {} events/s)",
        s.run,
        s.seed,
        s.profile.as_str(),
        s.offered_rate
    );
    row("proposals created", s.sent.proposals_created.to_string());
    row("votes (distinct user x proposal)", s.sent.votes.to_string());
    row(
        "duplicates (an earlier vote, same id)",
        s.sent.duplicates.to_string(),
    );
    row("malformed", s.sent.malformed.to_string());
    for b in Broken::ALL {
        row(
            &format!("  {} -> dead letter {}", b.name(), b.dead_letter_class()),
            s.sent.malformed_by_kind[b.name()].to_string(),
        );
    }
    row("total confirmed", s.sent.total.to_string());
    row("confirm failures", s.confirm_failures.to_string());
    if s.unconfirmed > 0 {
        row("unconfirmed (abandoned)", s.unconfirmed.to_string());
    }
    row("paced phase", format!("{:.2} s", s.paced_seconds));
    row(
        "achieved rate",
        format!(
            "{:.1} events/s (offered {})",
            s.achieved_rate, s.offered_rate
        ),
    );
    row("batches", s.batches.to_string());
    row(
        "publish -> confirm per batch p50 / p99",
        format!(
            "{} / {}",
            ms(s.batch_confirm_p50_ms),
            ms(s.batch_confirm_p99_ms)
        ),
    );
    row("stopped", s.stopped.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draw_yields_every_index_once() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut d = Draw::new(1_000);
        let mut seen: Vec<u64> = std::iter::from_fn(|| d.next(&mut rng)).collect();
        assert_eq!(seen.len(), 1_000);
        seen.sort_unstable();
        assert!(seen.iter().copied().eq(0..1_000));
        assert_eq!(d.next(&mut rng), None);
    }

    #[test]
    fn the_pacer_offers_the_rate_tick_by_tick() {
        let mut p = Pacer::new(Profile::Steady, 100.0);
        assert_eq!(p.due(0.0), 0);
        assert_eq!(p.due(0.25), 25);
        p.issued(25);
        assert_eq!(p.due(0.5), 25);
        // What a full confirm window held back is still due at the next tick.
        p.issued(5);
        assert_eq!(p.due(0.75), 45);
        assert_eq!(p.skipped, 0);
    }

    #[test]
    fn the_pacer_skips_a_backlog_over_one_second() {
        let mut p = Pacer::new(Profile::Steady, 100.0);
        // Five seconds without a tick: one second's worth is due, the rest skipped for good.
        assert_eq!(p.due(5.0), 100);
        assert_eq!(p.skipped, 400);
        p.issued(100);
        assert_eq!(p.due(5.0), 0);
        assert_eq!(p.due(5.5), 50);
        // Below one event per second the backlog is still one message, not none.
        let mut slow = Pacer::new(Profile::Steady, 0.5);
        assert_eq!(slow.due(10.0), 1);
        assert_eq!(slow.skipped, 4);
    }

    #[test]
    fn the_pacer_follows_the_bursty_profile() {
        let mut p = Pacer::new(Profile::Bursty, 100.0);
        assert_eq!(p.due(0.25), 75);
        p.issued(75);
        // A burst is capped at one second of the average rate too.
        assert_eq!(p.due(1.0), 100);
        assert_eq!(p.skipped, 125);
        p.issued(100);
        assert_eq!(p.due(2.5), 0);
        assert_eq!(p.due(3.25), 75);
    }

    #[test]
    fn bursty_has_the_steady_average() {
        let (steady, bursty) = (Profile::Steady, Profile::Bursty);
        for t in [3.0, 6.0, 30.0] {
            assert!((steady.due(100.0, t) - bursty.due(100.0, t)).abs() < 1e-6);
        }
        assert!((bursty.due(100.0, 1.0) - 300.0).abs() < 1e-6);
        assert!((bursty.due(100.0, 2.5) - 300.0).abs() < 1e-6);
    }

    #[test]
    fn broken_messages_fail_with_their_class() {
        let args = SimulateArgs {
            amqp_url: None,
            users: 20,
            proposals: 3,
            rate: 10.0,
            seconds: None,
            events: None,
            profile: Profile::Steady,
            duplicate_fraction: 0.0,
            malformed_fraction: 0.0,
            seed: Some(1),
            confirm_window: 10,
            json: None,
            ledger: None,
        };
        let plan = Plan::new(&args).expect("valid arguments");
        let mut g = Generator::new(&plan, "test").expect("valid ids");
        for b in Broken::ALL {
            let out = g.broken(b);
            assert!(out.headers.contains_key("merit-proposal"), "{b:?}");
            match Envelope::decode(&out.body) {
                Ok(_) => panic!("{b:?} decoded"),
                Err(e) => assert_eq!(e.kind.as_str(), b.dead_letter_class(), "{b:?}: {e}"),
            }
        }
        let vote = g.vote().expect("pairs left");
        let env = Envelope::decode(&vote.body).expect("a vote decodes");
        assert_eq!(vote.message_id, env.id.to_string());

        // The ledger names the intact messages only, by type, id, proposal and user.
        let batch = vec![vote.clone(), g.broken(Broken::BadJson)];
        let entries = Ledger::entries(&batch, &[true, false]);
        let merit_messages::Event::VoteCast(VoteCast {
            proposal, voter, ..
        }) = &env.event
        else {
            panic!("a vote is a VoteCast: {:?}", env.event);
        };
        assert_eq!(
            entries,
            vec![[
                "governance.vote.cast".to_string(),
                env.id.to_string(),
                proposal.to_string(),
                voter.to_string().to_ascii_lowercase(),
            ]]
        );
    }

    #[test]
    fn users_have_distinct_addresses_with_bad_checksums_available() {
        let addrs: std::collections::HashSet<_> = (0..10_000).map(user_address).collect();
        assert_eq!(addrs.len(), 10_000);
        let bad = bad_checksum(&user_address(0)).expect("enough letters");
        assert!(bad.parse::<Address>().is_err());
    }
}
