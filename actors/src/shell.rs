//! The actor shell: one actix actor per key, generic over its [`Domain`].
//!
//! An actor runs one turn at a time, so the messages of one key are applied strictly in
//! arrival order while other actors proceed. A turn takes every message queued for the
//! actor (up to the turn batch, `MERIT_ACTORS_TURN_BATCH`):
//!
//! 1. activate: load the snapshot `(version, state)` from storage if not resident;
//! 2. apply the pure core to each message in order, inside `catch_unwind`, changing the
//!    state in place: a panic is contained — the in-memory state is dropped (the actor
//!    restarts from storage) and the messages are retried;
//! 3. commit one transaction: an inbox row per message, one snapshot write, the
//!    projections and the outbox;
//! 4. reply with each message's [`Outcome`]; the caller acks a delivery only on `Applied`
//!    or `Duplicate`, dead-letters it on `DeadLetter`, and requeues it otherwise.
//!
//! A batched turn that fails is split: messages applied before are answered as
//! duplicates, and on any other failure each message is applied alone, so a poison
//! message is retried and dead-lettered on its own while its neighbours are applied.
//!
//! Failures are retried with exponential backoff and jitter. A version conflict (another
//! node wrote this actor) reloads and retries at once. An unreachable database is waited
//! out without spending the message's attempts — a database outage must not dead-letter
//! good messages. Anything else (a panic, a corrupt snapshot, a refused statement) counts
//! an attempt, and after `max_attempts` the message is dead-lettered with the reason.

use std::{
    collections::{HashSet, VecDeque},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use actix::prelude::*;
use merit_messages::{Backoff, Envelope, EventId};
use merit_storage::{GroupCommitter, StorageError, Store};
use tokio::sync::oneshot;

use crate::{
    domain::{Domain, Services},
    error::ActorError,
};

mod turn;

use turn::attempt;

/// How failed messages are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts before a message is dead-lettered (counting earlier deliveries).
    pub max_attempts: u32,
    /// First backoff; doubles per attempt up to `max_backoff`, the upper half jittered
    /// ([`Backoff::exponential`]).
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
        Backoff::exponential(self.base_backoff, self.max_backoff).delay(attempt)
    }
}

/// Counters shared by all actors of one kind (read by the supervisor and `/metrics`).
#[derive(Debug, Default)]
pub struct KindStats {
    /// Messages routed to actors of this kind and not yet answered.
    pub inflight: AtomicUsize,
    /// Actors activated (loaded from storage).
    pub activations: AtomicU64,
    /// Messages applied (committed).
    pub applied: AtomicU64,
    /// Turns committed; a turn applies one or more messages of one actor.
    pub turns: AtomicU64,
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
    /// The delivery's span (disabled when untraced): the turn's span is its child.
    pub span: tracing::Span,
}

/// An actor for one key of domain `D`.
///
/// Messages are queued in arrival order and applied by one turn at a time. A turn takes
/// every queued message (up to the turn batch) and applies them in order to one state,
/// with one snapshot write and one commit; messages that arrive meanwhile wait for the
/// next turn. So an idle actor answers a lone message at once, and a busy one (a hot
/// proposal) amortises its commit over everything that queued behind it.
pub struct EntityActor<D: Domain> {
    key: String,
    store: Store,
    services: Services,
    committer: Option<GroupCommitter>,
    policy: RetryPolicy,
    stats: Arc<KindStats>,
    inflight: Arc<AtomicUsize>,
    /// Most messages one turn applies.
    turn_batch: usize,
    /// Messages received and not yet taken into a turn, in arrival order.
    queued: VecDeque<Deliver>,
    /// Whether a turn is running (it owns the state meanwhile).
    busy: bool,
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
            turn_batch: 1,
            queued: VecDeque::new(),
            busy: false,
            loaded: None,
        }
    }

    /// Commits through `committer` (group commit) instead of one transaction per turn.
    pub fn with_committer(mut self, committer: Option<GroupCommitter>) -> Self {
        self.committer = committer;
        self
    }

    /// Applies up to `n` queued messages per turn (1: one message per turn).
    pub fn with_turn_batch(mut self, n: usize) -> Self {
        self.turn_batch = n.max(1);
        self
    }

    /// Starts a turn with the queued messages, if any and if no turn is running.
    fn next_turn(&mut self, ctx: &mut Context<Self>) {
        let n = self.queued.len().min(self.turn_batch);
        if n == 0 {
            self.busy = false;
            return;
        }
        self.busy = true;
        let batch: Vec<Deliver> = self.queued.drain(..n).collect();
        let deps = TurnDeps {
            store: self.store.clone(),
            services: self.services.clone(),
            committer: self.committer.clone(),
            policy: self.policy,
            stats: self.stats.clone(),
            inflight: self.inflight.clone(),
        };
        let work = run_turn::<D>(deps, self.key.clone(), self.loaded.take(), batch);
        ctx.spawn(work.into_actor(self).map(|loaded, act, ctx| {
            act.loaded = loaded;
            act.next_turn(ctx);
        }));
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
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        self.queued.push_back(msg);
        if !self.busy {
            self.next_turn(ctx);
        }
    }
}

type Loaded<S> = Option<(i64, S)>;

/// What a turn needs from its actor besides the messages.
struct TurnDeps {
    store: Store,
    services: Services,
    committer: Option<GroupCommitter>,
    policy: RetryPolicy,
    stats: Arc<KindStats>,
    inflight: Arc<AtomicUsize>,
}

impl TurnDeps {
    /// Sends one message's outcome and counts it as handled.
    fn answer(&self, reply: oneshot::Sender<Outcome>, outcome: Outcome) {
        self.inflight.fetch_sub(1, Ordering::AcqRel);
        self.stats.inflight.fetch_sub(1, Ordering::AcqRel);
        // The receiver may be gone (node shutting down): the delivery is then redelivered
        // by the broker and the inbox absorbs it.
        let _ = reply.send(outcome);
    }
}

/// The inbox row a message takes: `(consumer, event id)`.
fn inbox_row<D: Domain>(envelope: &Envelope) -> (String, EventId) {
    (
        inbox_consumer(D::KIND, envelope.event_type().origin()),
        envelope.id,
    )
}

/// One turn over `batch` (in arrival order); returns the state to keep.
///
/// Several messages are first tried together: one apply each, in order, on one state,
/// then one commit. Each keeps its own inbox row and gets its own outcome:
/// - an event twice in the batch is applied once, and its copy answered as a duplicate;
/// - events applied before (a redelivery) are answered as duplicates and the rest is
///   tried again without them;
/// - any other failure (a poison message, a refused statement) splits the batch: each
///   message is then applied alone, with the retries and the dead-lettering of a lone
///   message, so one bad message never holds back or fails its neighbours.
async fn run_turn<D: Domain>(
    deps: TurnDeps,
    key: String,
    mut loaded: Loaded<D::State>,
    batch: Vec<Deliver>,
) -> Loaded<D::State> {
    let mut seen = HashSet::with_capacity(batch.len());
    let (mut items, mut copies) = (Vec::with_capacity(batch.len()), Vec::new());
    for item in batch {
        if seen.insert(inbox_row::<D>(&item.envelope)) {
            items.push(item);
        } else {
            copies.push(item);
        }
    }
    let mut outage_waits = 0u32;
    while items.len() > 1 {
        let batch: Vec<&Deliver> = items.iter().collect();
        let failure = match attempt::<D>(&deps, &key, &mut loaded, &batch).await {
            Ok(outcome) => {
                for item in items.drain(..) {
                    deps.answer(item.reply, outcome.clone());
                }
                break;
            }
            Err(e) => e,
        };
        loaded = None; // the state may hold half a turn: reload it
        match failure {
            ActorError::Storage(StorageError::PartlyApplied { applied }) => {
                let applied: HashSet<(String, EventId)> = applied.into_iter().collect();
                let (before, rest): (Vec<Deliver>, Vec<Deliver>) = items
                    .into_iter()
                    .partition(|i| applied.contains(&inbox_row::<D>(&i.envelope)));
                deps.stats
                    .duplicates
                    .fetch_add(before.len() as u64, Ordering::Relaxed);
                for item in before {
                    deps.answer(item.reply, Outcome::Duplicate);
                }
                D::resync(&deps.services, &key).await;
                items = rest;
            }
            ActorError::Storage(StorageError::VersionConflict { .. }) => {
                deps.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %failure, "version conflict; reloading");
            }
            ActorError::Storage(StorageError::Db(ref db)) if is_unavailable(db) => {
                deps.stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %failure, "database unavailable; waiting without spending attempts");
                tokio::time::sleep(deps.policy.backoff(outage_waits)).await;
                outage_waits = outage_waits.saturating_add(1);
            }
            _ => {
                tracing::debug!(error = %failure, messages = items.len(),
                    "a batched turn failed; applying its messages one by one");
                break;
            }
        }
    }
    for item in items {
        loaded = process::<D>(&deps, &key, loaded, item).await;
    }
    for copy in copies {
        deps.stats.duplicates.fetch_add(1, Ordering::Relaxed);
        deps.answer(copy.reply, Outcome::Duplicate);
    }
    loaded
}

/// Applies one message alone, retrying failures with backoff, and answers it.
async fn process<D: Domain>(
    deps: &TurnDeps,
    key: &str,
    mut loaded: Loaded<D::State>,
    item: Deliver,
) -> Loaded<D::State> {
    let mut attempts = item.prior_attempts;
    let mut outage_waits = 0u32;
    let policy = deps.policy;
    let stats = &deps.stats;
    loop {
        let failure = match attempt::<D>(deps, key, &mut loaded, &[&item]).await {
            Ok(outcome) => {
                deps.answer(item.reply, outcome);
                return loaded;
            }
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
                tracing::error!(error = %failure, event_id = %item.envelope.id,
                    "handler panicked; actor restarted from storage");
            }
            _ => tracing::warn!(error = %failure, event_id = %item.envelope.id,
                attempts = attempts + 1, "turn failed"),
        }
        attempts += 1;
        if attempts >= policy.max_attempts {
            stats.dead_letters.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %failure, event_id = %item.envelope.id, attempts,
                "giving up: dead-lettering");
            let outcome = Outcome::DeadLetter {
                reason: failure.to_string(),
                attempts,
            };
            deps.answer(item.reply, outcome);
            return loaded;
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
pub(crate) fn is_unavailable(err: &merit_storage::sea_orm::DbErr) -> bool {
    merit_storage::is_unavailable(err)
}
