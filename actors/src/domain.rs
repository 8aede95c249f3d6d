//! The contract between an actor's pure core and its shell.
//!
//! A [`Domain`] is a plain function `(config, state, event, inputs) -> (new state, emitted
//! events)` plus the projection writes that mirror the state into queryable tables. The
//! shell ([`crate::EntityActor`]) loads, gathers the event's outside inputs
//! ([`Domain::prepare`]: reads only), calls the core, commits one transaction, tells the
//! domain it committed ([`Domain::committed`]: cache write-through) and replies. The core
//! never does I/O, so it is unit-tested without actors, brokers or databases.

use std::{future::Future, pin::Pin, sync::Arc};

use merit_config::{ConfigHandle, DynamicConfig};
use merit_messages::{ActorKind, Envelope};
use merit_storage::{
    cache::TieredCache,
    sea_orm::{DatabaseConnection, DatabaseTransaction},
    Store, TxFuture,
};
use serde::{de::DeserializeOwned, Serialize};

use crate::notify::Notifier;

/// What applying one event decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<S> {
    /// The new state; ignored unless `changed`.
    pub state: S,
    /// Whether the state changed (an unchanged state is not rewritten, but the event is
    /// still recorded in the inbox so it is never applied twice).
    pub changed: bool,
    /// Events to emit, committed to the outbox with the turn. Their ids must be derived
    /// from the applied event (`Envelope::caused`) so a redelivery emits the same ids.
    pub emit: Vec<Envelope>,
}

impl<S> Decision<S> {
    /// The state changed to `state`.
    pub fn changed(state: S) -> Self {
        Self {
            state,
            changed: true,
            emit: Vec::new(),
        }
    }

    /// Nothing changes (the event is irrelevant, stale or refused).
    pub fn unchanged(state: S) -> Self {
        Self {
            state,
            changed: false,
            emit: Vec::new(),
        }
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
pub trait Domain: Sized + Unpin + 'static {
    /// Which actor kind this is (also its inbox consumer name).
    const KIND: ActorKind;
    /// The state, persisted as JSON in the actor snapshot.
    type State: Clone + Default + Serialize + DeserializeOwned + Send + Sync + Unpin + 'static;
    /// What [`Domain::prepare`] reads from outside the actor for one event.
    type Inputs: Default + Send + Sync + 'static;

    /// Reads what applying `event` needs from outside this actor (another actor's
    /// published projection, through the cache). Runs before every attempt; must only
    /// read, or write idempotently.
    fn prepare<'a>(
        _store: &'a Store,
        _services: &'a Services,
        _key: &'a str,
        _state: &'a Self::State,
        _event: &'a Envelope,
    ) -> TxFuture<'a, Self::Inputs> {
        Box::pin(async { Ok(Self::Inputs::default()) })
    }

    /// Applies `event` to `state` for the actor `key` under the active dynamic `config`.
    /// Pure and deterministic: the same inputs always give the same decision. Must not
    /// panic; if it does, the shell contains it (restarts the actor from storage and
    /// retries the message).
    fn apply(
        config: &DynamicConfig,
        key: &str,
        state: &Self::State,
        event: &Envelope,
        inputs: &Self::Inputs,
    ) -> Decision<Self::State>;

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

    /// Writes the projections of `state` in the turn's transaction. `state` is shared, not
    /// copied: a proposal's state holds every voter, and a turn must not cost O(voters).
    fn project(
        txn: &DatabaseTransaction,
        key: String,
        state: Arc<Self::State>,
        event: Arc<Envelope>,
    ) -> TxFuture<'_, ()>;

    /// Runs when an event turns out to be applied already (a redelivery). The commit it
    /// repeats may have happened without its [`Domain::committed`] (a crash, or a commit
    /// whose acknowledgement was lost), so anything written through from there must be
    /// made safe here (e.g. invalidate the cache key rather than trust it).
    fn resync<'a>(_services: &'a Services, _key: &'a str) -> Detached<'a> {
        Box::pin(async {})
    }

    /// Runs after a turn that changed the state committed (write-through caching).
    fn committed<'a>(
        _services: &'a Services,
        _key: &'a str,
        _before: &'a Self::State,
        _after: &'a Self::State,
    ) -> Detached<'a> {
        Box::pin(async {})
    }
}
