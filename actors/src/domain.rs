//! The contract between an actor's pure core and its shell.
//!
//! A [`Domain`] is a plain function `(config, state, event, inputs) -> (state changed in
//! place, emitted events, effects for the projections)` plus the projection writes that
//! mirror the state into queryable tables. The shell ([`crate::EntityActor`]) loads,
//! gathers each event's outside inputs ([`Domain::prepare`]: reads only), calls the core
//! once per event of a turn (several queued messages of one actor make one turn), commits
//! one transaction, tells the domain it committed ([`Domain::committed`]: cache
//! write-through, live notifications) and replies. The core never does I/O, so it is
//! unit-tested without actors, brokers or databases.
//!
//! The core changes the state in place: a proposal's state holds every voter, and a vote
//! must not cost a copy of them. What a turn leaves for its projections (the votes
//! counted, the notifications added) goes into the turn's [`Domain::Effects`], never into
//! the state.

use std::{future::Future, pin::Pin, sync::Arc};

use merit_config::{ConfigHandle, DynamicConfig};
use merit_messages::{ActorKind, Envelope};
use merit_storage::{cache::TieredCache, sea_orm::DatabaseConnection, Rows, Store, TxFuture};
use serde::{de::DeserializeOwned, Serialize};

use crate::notify::Notifier;

/// What applying one event decided (the state itself was changed in place).
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use]
pub struct Decision {
    /// Whether the state changed (an unchanged state is not rewritten, but the event is
    /// still recorded in the inbox so it is never applied twice). An event that leaves the
    /// state unchanged must not have touched it.
    pub changed: bool,
    /// Events to emit, committed to the outbox with the turn. Their ids must be derived
    /// from the applied event (`Envelope::caused`) so a redelivery emits the same ids.
    pub emit: Vec<Envelope>,
}

impl Decision {
    /// The state changed.
    pub fn changed() -> Self {
        Self {
            changed: true,
            emit: Vec::new(),
        }
    }

    /// Nothing changes (the event is irrelevant, stale or refused).
    pub fn unchanged() -> Self {
        Self::default()
    }

    /// Adds an emitted event.
    pub fn emit(mut self, envelope: Envelope) -> Self {
        self.emit.push(envelope);
        self
    }
}

/// What the actors of a node share besides storage: the active dynamic config, the
/// benefits cache and live notification delivery. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Services {
    /// The active dynamic config (tiers, limits, rules), swapped live by the config watcher.
    pub config: ConfigHandle,
    /// L1 → L2 → database cache of per-user benefits.
    pub cache: TieredCache,
    /// Where committed user notifications go for live delivery.
    pub notifier: Arc<dyn Notifier>,
}

impl Services {
    /// Services for one node: `config` active, `cache` as built from the settings, and
    /// notifications kept in the log only.
    pub fn new(config: ConfigHandle, cache: TieredCache) -> Self {
        Self {
            config,
            cache,
            notifier: crate::notify::log_only(),
        }
    }

    /// The same services delivering committed notifications live through `notifier`.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
    }
}

/// A future that cannot fail (after-commit work: its failures are logged, not returned).
pub type Detached<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// One kind of actor: its state, its pure transition function and its projections.
///
/// # Adding an actor kind
///
/// 1. In `merit-messages`: a variant of [`ActorKind`] (its name, its routing header), the
///    kind among the handlers of each event type it takes (the events table in
///    `events/mod.rs`, read by `EventType::handlers`) and the key it addresses in
///    `Event::keys`.
/// 2. Here: a state (plain data, stored as JSON), a `Domain` impl whose [`Domain::apply`]
///    is pure, and its unit specs, one per event type (no actor, broker or database).
/// 3. In `merit-supervisors`: a `Registry<YourDomain>` beside `user`, `proposal` and `nft`
///    in the node, with its shard consumers, so its messages reach it.
///
/// A kind that counts the votes each user cast, with the spec of its one event:
///
/// ```
/// use merit_actors::{Decision, Domain};
/// use merit_config::DynamicConfig;
/// use merit_messages::{ActorKind, Address, Envelope, Event, VoteCast, VoteChoice};
/// use merit_storage::Rows;
///
/// struct VoteCounter;
///
/// impl Domain for VoteCounter {
///     const KIND: ActorKind = ActorKind::User;
///     type State = u64;
///     type Inputs = ();
///     type Effects = ();
///
///     fn apply(
///         _config: &DynamicConfig,
///         _key: &str,
///         votes: &mut u64,
///         event: &Envelope,
///         _inputs: &(),
///         _effects: &mut (),
///     ) -> Decision {
///         match &event.event {
///             Event::VoteCast(_) => {
///                 *votes += 1;
///                 Decision::changed()
///             }
///             _ => Decision::unchanged(),
///         }
///     }
///
///     fn project(_key: &str, _votes: &u64, _effects: &(), _rows: &mut Rows) {}
/// }
///
/// let vote = Envelope::new(
///     "doc",
///     VoteCast {
///         proposal: "p-1".parse().unwrap(),
///         voter: Address([1; 20]),
///         choice: VoteChoice::For,
///         reason: None,
///     },
/// );
/// let mut votes = 0;
/// let config = DynamicConfig::builtin();
/// let decision = VoteCounter::apply(&config, "0x01", &mut votes, &vote, &(), &mut ());
/// assert!(decision.changed && decision.emit.is_empty());
/// assert_eq!(votes, 1);
/// ```
pub trait Domain: Sized + Unpin + 'static {
    /// Which actor kind this is (also its inbox consumer name).
    const KIND: ActorKind;
    /// The state, persisted as JSON in the actor snapshot.
    type State: Clone + Default + Serialize + DeserializeOwned + Send + Sync + Unpin + 'static;
    /// What [`Domain::prepare`] reads from outside the actor for one event.
    type Inputs: Default + Send + Sync + 'static;
    /// What one turn's events leave for [`Domain::project`] and [`Domain::committed`]
    /// (the votes counted, the notifications added), accumulated over the turn's events.
    type Effects: Default + Send + Sync + 'static;

    /// Reads what applying `event` needs from outside this actor (another actor's
    /// published projection, through the cache). Runs before every attempt; must only
    /// read, or write idempotently. The events of one turn are prepared concurrently,
    /// each against the state at the start of the turn: what it reads must not depend on
    /// what an earlier event of the same turn changes (the state may only let it skip a
    /// read whose result `apply` would not use anyway).
    fn prepare<'a>(
        _store: &'a Store,
        _services: &'a Services,
        _key: &'a str,
        _state: &'a Self::State,
        _event: &'a Envelope,
    ) -> TxFuture<'a, Self::Inputs> {
        Box::pin(async { Ok(Self::Inputs::default()) })
    }

    /// [`Domain::prepare`] for every event of a turn, in order. The default overlaps the
    /// events' reads; a domain whose events read one table may read for all of them at
    /// once instead (a hot proposal's voters' tokens: one query per turn, not per vote).
    fn prepare_turn<'a>(
        store: &'a Store,
        services: &'a Services,
        key: &'a str,
        state: &'a Self::State,
        events: &'a [&'a Arc<Envelope>],
    ) -> TxFuture<'a, Vec<Self::Inputs>> {
        Box::pin(futures::future::try_join_all(events.iter().map(
            move |event| Self::prepare(store, services, key, state, event),
        )))
    }

    /// Applies `event` to `state` in place for the actor `key` under the active dynamic
    /// `config`, adding what the projections and [`Domain::committed`] need to `effects`
    /// (shared by every event of the turn, in order). Pure and deterministic: the same
    /// inputs always give the same decision. Must not panic; if it does, the shell
    /// contains it (drops the state, restarts the actor from storage and retries).
    fn apply(
        config: &DynamicConfig,
        key: &str,
        state: &mut Self::State,
        event: &Envelope,
        inputs: &Self::Inputs,
        effects: &mut Self::Effects,
    ) -> Decision;

    /// Completes a state just loaded from its snapshot with what the snapshot leaves out
    /// because it lives in a projection (e.g. a proposal's voters, which would otherwise
    /// make every vote rewrite all earlier votes). Runs once per activation.
    fn hydrate<'a>(
        _db: &'a DatabaseConnection,
        _key: &'a str,
        _state: &'a mut Self::State,
    ) -> TxFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    /// The rows the turn writes to the read models, from `state` after the turn and the
    /// turn's `effects`. It only describes them: the committer writes them in the turn's
    /// transaction, merged by entity with the other turns of its batch (one statement per
    /// entity), so a projection costs no round trip of its own. Runs only for a turn that
    /// changed the state.
    fn project(key: &str, state: &Self::State, effects: &Self::Effects, rows: &mut Rows);

    /// Runs when an event turns out to be applied already (a redelivery). The commit it
    /// repeats may have happened without its [`Domain::committed`] (a crash, or a commit
    /// whose acknowledgement was lost), so anything written through from there must be
    /// made safe here (e.g. invalidate the cache key rather than trust it).
    fn resync<'a>(_services: &'a Services, _key: &'a str) -> Detached<'a> {
        Box::pin(async {})
    }

    /// Runs after a turn that changed the state committed (write-through caching, live
    /// notifications), with the state after the turn and the turn's effects.
    fn committed<'a>(
        _services: &'a Services,
        _key: &'a str,
        _state: &'a Self::State,
        _effects: &'a Self::Effects,
    ) -> Detached<'a> {
        Box::pin(async {})
    }
}

/// The state after one event, applied to a copy (for the cores' unit tests).
#[cfg(test)]
pub(crate) struct Applied<S> {
    pub(crate) state: S,
    pub(crate) changed: bool,
    pub(crate) emit: Vec<Envelope>,
}

/// Applies `event` to a copy of `state` (for the cores' unit tests).
#[cfg(test)]
pub(crate) fn apply_to_copy<D: Domain>(
    config: &DynamicConfig,
    key: &str,
    state: &D::State,
    event: &Envelope,
    inputs: &D::Inputs,
) -> Applied<D::State> {
    let mut state = state.clone();
    let decision = D::apply(
        config,
        key,
        &mut state,
        event,
        inputs,
        &mut D::Effects::default(),
    );
    Applied {
        state,
        changed: decision.changed,
        emit: decision.emit,
    }
}
