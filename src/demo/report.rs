//! What the demo shows: live listeners per user, the progress line, and the summary.

use std::{
    io::Write,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::Result;
use merit_actors::ProposalStatus;
use merit_messages::Address;
use merit_storage::{
    entities::{
        achievement::{self, AchievementState},
        nft, proposal, vote,
    },
    sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter},
};

use super::Sent;
use crate::serve::Running;

/// A live subscription per user: counts what is delivered and times each vote from its
/// publication to its `governance.vote.recorded` notification.
pub(super) struct Listeners {
    pub(super) sent: Sent,
    pub(super) latencies: Arc<Mutex<Vec<Duration>>>,
    pub(super) notified: Arc<AtomicU64>,
    pub(super) tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Listeners {
    pub(super) fn spawn(hub: &merit_api::NotificationHub, users: &[Address]) -> Self {
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
    pub(super) fn percentiles<const N: usize>(&self, qs: [f64; N]) -> [String; N] {
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

    pub(super) fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// What the run did, for the summary.
pub(super) struct Outcome {
    pub(super) load: String,
    pub(super) published: u64,
    pub(super) traded: u32,
    pub(super) started: Instant,
}

/// A line of the summary: what, and how much.
type Row = (&'static str, String);

/// The summary rows: what was offered, what the node made of it, and how fast.
pub(super) async fn summary(
    running: &Running,
    listeners: &Listeners,
    outcome: &Outcome,
) -> Result<Vec<Row>> {
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

pub(super) fn bar(done: usize, total: usize) -> String {
    let width = 24;
    let filled = (done.min(total) * width) / total.max(1);
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

/// A progress line: redrawn in place on a terminal, printed every few seconds otherwise
/// (a log file or CI keeps a readable record).
pub(super) fn progress(line: &str) {
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
