//! A run in progress: the loop that paces batches, awaits their confirms and tallies them.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use futures::{future::BoxFuture, stream::FuturesUnordered, FutureExt, StreamExt};
use merit_config::SecretUrl;
use merit_mailbox::{Outgoing, RabbitTransport, Transport};
use merit_messages::EVENTS_EXCHANGE;

use super::{
    generate::{Broken, Counts, Generator, Kind},
    interrupts,
    ledger::{Entries, Ledger},
    pacer::Pacer,
    report::{percentile, Progress, Sent, Summary},
    Plan,
};

/// Pacing period: each tick publishes what the profile says is due.
const TICK: Duration = Duration::from_millis(20);

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

/// What the run observed so far.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) confirmed: Counts,
    pub(super) failed: Counts,
    pub(super) in_flight: u64,
    pub(super) batch_ms: Vec<f64>,
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
pub(super) struct Run<'a> {
    plan: &'a Plan,
    url: &'a SecretUrl,
    transport: &'a RabbitTransport,
    generator: Generator,
    /// The proposal creations not yet published.
    creations: std::vec::IntoIter<Outgoing>,
    ledger: Option<Ledger>,
    flights: FuturesUnordered<Flight<'a>>,
    pub(super) tally: Tally,
    issued_total: u64,
    /// Set once every proposal is confirmed: the start of the paced phase.
    pub(super) paced_since: Option<Instant>,
    pacer: Pacer,
    /// When the last paced message was confirmed.
    paced_end: Option<Instant>,
    stop: Option<Stop>,
    fatal: Option<anyhow::Error>,
    /// A second Ctrl-C: the confirms still awaited are given up.
    abandoned: bool,
}

impl<'a> Run<'a> {
    pub(super) fn new(
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
    pub(super) async fn drive(&mut self, progress: &Progress) {
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
    pub(super) fn finish(mut self, run: String) -> (Summary, Option<anyhow::Error>) {
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
