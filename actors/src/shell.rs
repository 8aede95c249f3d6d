//! The actor shell: one actix actor per key, generic over its [`Domain`].
//!
//! A [`Deliver`] message is handled atomically (the actor's mailbox waits until the turn
//! is committed), so the messages of one key are applied strictly in arrival order while
//! other actors proceed. Per message:
//!
//! 1. activate: load the snapshot `(version, state)` from storage if not resident;
//! 2. apply the pure core, inside `catch_unwind`: a panic is contained — the in-memory
//!    state is dropped (the actor restarts from storage) and the message is retried;
//! 3. commit state + inbox + outbox + projections in one transaction;
//! 4. reply with the [`Outcome`]; the caller acks the delivery only on `Applied` or
//!    `Duplicate`, dead-letters it on `DeadLetter`, and requeues it otherwise.
//!
//! Failures are retried with exponential backoff and jitter. A version conflict (another
//! node wrote this actor) reloads and retries at once. An unreachable database is waited
//! out without spending the message's attempts — a database outage must not dead-letter
//! good messages. Anything else (a panic, a corrupt snapshot, a refused statement) counts
//! an attempt, and after `max_attempts` the message is dead-lettered with the reason.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use actix::prelude::*;
use merit_messages::Envelope;
use merit_storage::{
    GroupCommitter, OutboxMessage, StateWrite, StorageError, Store, Turn, TurnOutcome,
};
use rand::Rng;
use tokio::sync::oneshot;

use crate::{
    domain::{Domain, Services},
    error::ActorError,
};

/// How failed messages are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts before a message is dead-lettered (counting earlier deliveries).
    pub max_attempts: u32,
    /// First backoff; doubles per attempt, with ±50% jitter, capped at `max_backoff`.
    pub base_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.base_backoff.saturating_mul(1u32 << attempt.min(16));
        let capped = exp.min(self.max_backoff);
        let jitter = rand::thread_rng().gen_range(0.5..1.5);
        capped.mul_f64(jitter).min(self.max_backoff)
    }
}

/// Counters shared by all actors of one kind (read by the supervisor and `/metrics`).
#[derive(Debug, Default)]
pub struct KindStats {
    /// Messages routed to actors of this kind and not yet answered.
    pub inflight: AtomicUsize,
    /// Actors activated (loaded from storage).
    pub activations: AtomicU64,
    /// Turns committed.
    pub applied: AtomicU64,
    /// Deliveries found already applied.
    pub duplicates: AtomicU64,
    /// Retries after a failure.
    pub retries: AtomicU64,
    /// Actors restarted from storage after a panic.
    pub restarts: AtomicU64,
    /// Version conflicts (another writer won).
    pub conflicts: AtomicU64,
    /// Messages given up on.
    pub dead_letters: AtomicU64,
}

/// The result of delivering one message to an actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Committed at this version (`None`: recorded, state unchanged).
    Applied(Option<i64>),
    /// Already applied before; nothing changed.
    Duplicate,
    /// Failed `attempts` times; give up with `reason`.
    DeadLetter {
        /// Why.
        reason: String,
        /// Attempts made, including earlier deliveries.
        attempts: u32,
    },
}

/// Apply `envelope`; the outcome is sent on `reply`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    /// The event.
    pub envelope: Arc<Envelope>,
    /// Attempts already spent on earlier deliveries of this message.
    pub prior_attempts: u32,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<Outcome>,
}

/// An actor for one key of domain `D`.
pub struct EntityActor<D: Domain> {
    key: String,
    store: Store,
    services: Services,
    committer: Option<GroupCommitter>,
    policy: RetryPolicy,
    stats: Arc<KindStats>,
    inflight: Arc<AtomicUsize>,
    /// `(version, state)` while resident; `None` until loaded or after a restart.
    loaded: Option<(i64, D::State)>,
}

impl<D: Domain> EntityActor<D> {
    /// An actor for `key`; its state is loaded on the first message. `inflight` is
    /// decremented once per handled message (the registry increments it when routing).
    pub fn new(
        key: String,
        store: Store,
        services: Services,
        policy: RetryPolicy,
        stats: Arc<KindStats>,
        inflight: Arc<AtomicUsize>,
    ) -> Self {
        Self {
            key,
            store,
            services,
            committer: None,
            policy,
            stats,
            inflight,
            loaded: None,
        }
    }

    /// Commits through `committer` (group commit) instead of one transaction per turn.
    pub fn with_committer(mut self, committer: Option<GroupCommitter>) -> Self {
        self.committer = committer;
        self
    }
}

impl<D: Domain> Actor for EntityActor<D> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Routing uses `do_send`, bounded by the broker's prefetch; the capacity only
        // matters for `send`, which merit does not use on actors.
        ctx.set_mailbox_capacity(usize::MAX);
    }
}

impl<D: Domain> Handler<Deliver> for EntityActor<D> {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: Deliver, _: &mut Self::Context) -> Self::Result {
        let deps = TurnDeps {
            store: self.store.clone(),
            services: self.services.clone(),
            committer: self.committer.clone(),
            policy: self.policy,
            stats: self.stats.clone(),
        };
        let work = process::<D>(
            deps,
            self.key.clone(),
            self.loaded.take(),
            msg.envelope,
            msg.prior_attempts,
        );
        let reply = msg.reply;
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            move |(loaded, outcome), act, _| {
                act.loaded = loaded;
                act.inflight.fetch_sub(1, Ordering::AcqRel);
                act.stats.inflight.fetch_sub(1, Ordering::AcqRel);
                // The receiver may be gone (node shutting down): the delivery is then
                // redelivered by the broker and the inbox absorbs it.
                let _ = reply.send(outcome);
            },
        )))
    }
}

type Loaded<S> = Option<(i64, S)>;

/// What a turn needs from its actor besides the message.
struct TurnDeps {
    store: Store,
    services: Services,
    committer: Option<GroupCommitter>,
    policy: RetryPolicy,
    stats: Arc<KindStats>,
}

#[tracing::instrument(
    name = "actor.turn",
    skip_all,
    fields(kind = %D::KIND, key = %key, event_id = %envelope.id, correlation_id = %envelope.correlation_id, event_type = %envelope.event_type())
)]
async fn process<D: Domain>(
    deps: TurnDeps,
    key: String,
    mut loaded: Loaded<D::State>,
    envelope: Arc<Envelope>,
    prior_attempts: u32,
) -> (Loaded<D::State>, Outcome) {
    let TurnDeps {
        store,
        services,
        committer,
        policy,
        stats,
    } = deps;
    let mut attempts = prior_attempts;
    let mut outage_waits = 0u32;
    loop {
        let failure = match attempt::<D>(
            &store,
            &services,
            committer.as_ref(),
            &key,
            &mut loaded,
            &envelope,
            &stats,
        )
        .await
        {
            Ok(outcome) => return (loaded, outcome),
            Err(e) => e,
        };
        loaded = None; // restart from storage on the next attempt
        match &failure {
            ActorError::Storage(StorageError::VersionConflict { .. }) => {
                stats.conflicts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %failure, "version conflict; reloading");
                continue;
            }
            ActorError::Storage(StorageError::Db(db)) if is_unavailable(db) => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %failure, "database unavailable; waiting without spending attempts");
                tokio::time::sleep(policy.backoff(outage_waits)).await;
                outage_waits = outage_waits.saturating_add(1);
                continue;
            }
            ActorError::Panicked(_) => {
                stats.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %failure, "handler panicked; actor restarted from storage");
            }
            _ => tracing::warn!(error = %failure, attempts = attempts + 1, "turn failed"),
        }
        attempts += 1;
        if attempts >= policy.max_attempts {
            stats.dead_letters.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %failure, attempts, "giving up: dead-lettering");
            return (
                loaded,
                Outcome::DeadLetter {
                    reason: failure.to_string(),
                    attempts,
                },
            );
        }
        stats.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(policy.backoff(attempts - 1)).await;
    }
}

/// The inbox consumer under which actor `kind` records an event of `origin`: merit's own
/// events under the kind's name (`proposal`), producers' under `{kind}@producer`. Two
/// namespaces, so an id a producer chose (any id, including one merit derives from public
/// data, like a proposal's deadline) can never make an actor take one of merit's own events
/// for a duplicate, nor the reverse.
pub fn inbox_consumer(kind: merit_messages::ActorKind, origin: merit_messages::Origin) -> String {
    match origin {
        merit_messages::Origin::Merit => kind.as_str().to_string(),
        merit_messages::Origin::Producer => format!("{}@producer", kind.as_str()),
    }
}

/// Whether a database error means "the database is unreachable" (wait it out) rather
/// than "this statement failed" (spend an attempt).
fn is_unavailable(err: &merit_storage::sea_orm::DbErr) -> bool {
    use merit_storage::sea_orm::{sqlx::Error as Sqlx, DbErr, RuntimeErr};
    match err {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => matches!(
            e,
            Sqlx::Io(_)
                | Sqlx::PoolTimedOut
                | Sqlx::PoolClosed
                | Sqlx::WorkerCrashed
                | Sqlx::Protocol(_)
        ),
        _ => false,
    }
}

async fn attempt<D: Domain>(
    store: &Store,
    services: &Services,
    committer: Option<&GroupCommitter>,
    key: &str,
    loaded: &mut Loaded<D::State>,
    envelope: &Arc<Envelope>,
    stats: &KindStats,
) -> crate::error::Result<Outcome> {
    if loaded.is_none() {
        let (version, mut state) = match store.load_actor(D::KIND, key).await? {
            Some((version, json)) => {
                let state =
                    serde_json::from_value(json).map_err(|e| ActorError::CorruptSnapshot {
                        kind: D::KIND,
                        key: key.to_string(),
                        reason: e.to_string(),
                    })?;
                (version, state)
            }
            None => (0, D::State::default()),
        };
        D::hydrate(store.db(), key, &mut state).await?;
        *loaded = Some((version, state));
        stats.activations.fetch_add(1, Ordering::Relaxed);
    }
    let (version, state) = loaded.as_ref().expect("loaded just above");
    let inputs = D::prepare(store, services, key, state, envelope).await?;
    let config = services.config.get();
    let decision = catch_unwind(AssertUnwindSafe(|| {
        D::apply(&config, key, state, envelope, &inputs)
    }))
    .map_err(|panic| ActorError::Panicked(panic_message(&panic)))?;
    let state_write = decision.changed.then(|| StateWrite {
        kind: D::KIND,
        key: key.to_string(),
        expected_version: *version,
        state: serde_json::to_value(&decision.state).expect("actor state serialises to JSON"),
    });
    let turn = Turn {
        consumer: inbox_consumer(D::KIND, envelope.event_type().origin()),
        event_id: envelope.id,
        state: state_write,
        outbox: decision
            .emit
            .iter()
            .map(OutboxMessage::from_envelope)
            .collect(),
    };
    let changed = decision.changed;
    let next = Arc::new(decision.state);
    let (projected, proj_key, proj_env) = (next.clone(), key.to_string(), envelope.clone());
    let project: merit_storage::Projector = Box::new(move |txn| {
        if changed {
            D::project(txn, proj_key.clone(), projected.clone(), proj_env.clone())
        } else {
            Box::pin(async { Ok(()) })
        }
    });
    let outcome = match committer {
        Some(c) => c.commit(turn, project).await?,
        None => store.commit_turn(turn, |txn| project(txn)).await?,
    };
    // The projector is gone with the commit: the state is this turn's alone again.
    let next = Arc::try_unwrap(next).unwrap_or_else(|shared| (*shared).clone());
    Ok(match outcome {
        TurnOutcome::Applied {
            version: new_version,
        } => {
            stats.applied.fetch_add(1, Ordering::Relaxed);
            if let Some(v) = new_version {
                D::committed(services, key, state, &next).await;
                *loaded = Some((v, next));
            }
            Outcome::Applied(new_version)
        }
        TurnOutcome::Duplicate => {
            stats.duplicates.fetch_add(1, Ordering::Relaxed);
            D::resync(services, key).await;
            // The store may be ahead of this actor (a commit it did not see confirmed):
            // reload before the next message rather than meet a version conflict.
            *loaded = None;
            Outcome::Duplicate
        }
    })
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_string())
}
