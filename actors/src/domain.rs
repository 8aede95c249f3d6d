//! The contract between an actor's pure core and its shell.
//!
//! A [`Domain`] is a plain function `(state, event) -> (new state, emitted events)` plus the
//! projection writes that mirror the state into queryable tables. The shell
//! ([`crate::EntityActor`]) loads, calls the core, commits one transaction and replies; the
//! core never does I/O, so it is unit-tested without actors, brokers or databases.

use std::sync::Arc;

use merit_messages::{ActorKind, Envelope};
use merit_storage::{
    sea_orm::{DatabaseConnection, DatabaseTransaction},
    TxFuture,
};
use serde::{de::DeserializeOwned, Serialize};

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

/// One kind of actor: its state, its pure transition function and its projections.
pub trait Domain: Sized + Unpin + 'static {
    /// Which actor kind this is (also its inbox consumer name).
    const KIND: ActorKind;
    /// The state, persisted as JSON in the actor snapshot.
    type State: Clone + Default + Serialize + DeserializeOwned + Send + Sync + Unpin + 'static;

    /// Applies `event` to `state` for the actor `key`. Pure and deterministic: the same
    /// inputs always give the same decision. Must not panic; if it does, the shell
    /// contains it (restarts the actor from storage and retries the message).
    fn apply(key: &str, state: &Self::State, event: &Envelope) -> Decision<Self::State>;

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

    /// Writes the projections of `state` in the turn's transaction.
    fn project(
        txn: &DatabaseTransaction,
        key: String,
        state: Self::State,
        event: Arc<Envelope>,
    ) -> TxFuture<'_, ()>;
}
