//! What a run shows: the progress line on stderr and the summary.

use std::{collections::BTreeMap, io::Write, time::Instant};

use serde::Serialize;

use super::{generate::Broken, run::Tally, Profile};

/// The progress line.
pub(super) struct Progress {
    pub(super) terminal: bool,
    pub(super) started: Instant,
}

impl Progress {
    pub(super) fn draw(&self, tally: &Tally, paced_since: Option<Instant>, proposals: u32) {
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

    pub(super) fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}

/// The summary, as printed and as written by `--json`.
#[derive(Debug, Serialize)]
pub(super) struct Summary {
    pub(super) run: String,
    pub(super) amqp_url: String,
    pub(super) seed: u64,
    pub(super) profile: Profile,
    pub(super) offered_rate: f64,
    pub(super) users: u32,
    pub(super) proposals: u32,
    pub(super) stopped: String,
    pub(super) sent: Sent,
    /// Messages in batches the broker refused (nack) or never confirmed.
    pub(super) confirm_failures: u64,
    /// Messages still awaiting their confirm when the run was abandoned.
    pub(super) unconfirmed: u64,
    pub(super) paced_seconds: f64,
    pub(super) achieved_rate: f64,
    pub(super) batches: usize,
    pub(super) batch_confirm_p50_ms: Option<f64>,
    pub(super) batch_confirm_p99_ms: Option<f64>,
    /// Dead letters merit should produce, by `x-merit-reason-class`.
    pub(super) expected_dead_letters: BTreeMap<String, u64>,
}

/// Confirmed messages by kind.
#[derive(Debug, Serialize)]
pub(super) struct Sent {
    pub(super) proposals_created: u64,
    pub(super) votes: u64,
    pub(super) duplicates: u64,
    pub(super) malformed: u64,
    pub(super) malformed_by_kind: BTreeMap<String, u64>,
    pub(super) total: u64,
}

pub(super) fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
}

pub(super) fn print_summary(s: &Summary) {
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
