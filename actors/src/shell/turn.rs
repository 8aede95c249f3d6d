//! One try at a turn: activate the actor if it is not resident, apply the domain to each
//! message in order inside `catch_unwind`, and commit the inbox rows, the snapshot, the
//! projections and the outbox in one transaction.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{atomic::Ordering, Arc},
};

use merit_messages::Envelope;
use merit_storage::{OutboxMessage, Rows, StateWrite, Turn, TurnOutcome};
use tracing::Instrument;

use super::{inbox_row, Deliver, Loaded, Outcome, TurnDeps};
use crate::{domain::Domain, error::ActorError};

/// One try at a turn over `items` (in order), in the turn's span (DEBUG: made only when
/// traced): a child of the first delivery's span, following from the others'. What an
/// event emits continues that event's own trace: the first's through the turn's span, a
/// batched one's through its delivery's span, so a vote batched behind another stays in
/// its producer's trace.
pub(super) async fn attempt<D: Domain>(
    deps: &TurnDeps,
    key: &str,
    loaded: &mut Loaded<D::State>,
    items: &[&Deliver],
) -> crate::error::Result<Outcome> {
    let first = &items[0];
    let span = tracing::debug_span!(
        parent: &first.span,
        "actor.turn",
        kind = %D::KIND,
        key = %key,
        events = items.len(),
        event_id = %first.envelope.id,
        correlation_id = %first.envelope.correlation_id,
    );
    for other in &items[1..] {
        span.follows_from(&other.span);
    }
    let events: Vec<&Arc<Envelope>> = items.iter().map(|i| &i.envelope).collect();
    let origins: Vec<&tracing::Span> = items.iter().map(|i| &i.span).collect();
    apply_and_commit::<D>(deps, key, loaded, &events, &origins)
        .instrument(span)
        .await
}

/// One try at a turn over `events` (in order): activate if needed, apply each, commit
/// once. On success `loaded` holds the state after the turn; on an error it is `None`
/// (the state may hold part of the turn) and the caller decides what to retry.
/// `origins[i]` is the span of event `i`'s delivery (see [`attempt`]).
async fn apply_and_commit<D: Domain>(
    deps: &TurnDeps,
    key: &str,
    loaded: &mut Loaded<D::State>,
    events: &[&Arc<Envelope>],
    origins: &[&tracing::Span],
) -> crate::error::Result<Outcome> {
    let TurnDeps {
        store,
        services,
        committer,
        stats,
        ..
    } = deps;
    let (version, mut state) = match loaded.take() {
        Some(loaded) => loaded,
        None => activate::<D>(deps, key).await?,
    };
    let config = services.config.get();
    let mut effects = D::Effects::default();
    let inputs = D::prepare_turn(store, services, key, &state, events).await?;
    let (changed, emit) =
        apply_events::<D>(&config, key, &mut state, events, &inputs, &mut effects)?;
    let state_write = changed.then(|| StateWrite {
        kind: D::KIND,
        key: key.to_string(),
        expected_version: version,
        state: serde_json::to_value(&state).expect("actor state serialises to JSON"),
    });
    let (consumer, event_id) = inbox_row::<D>(events[0]);
    let turn = Turn {
        consumer,
        event_id,
        batched: events[1..].iter().map(|e| inbox_row::<D>(e)).collect(),
        state: state_write,
        outbox: outbox_rows(&emit, origins),
    };
    let mut rows = Rows::new();
    if changed {
        D::project(key, &state, &effects, &mut rows);
    }
    let outcome = match committer {
        Some(c) => c.commit(turn, rows).await?,
        None => store.commit_turn_rows(turn, rows).await?,
    };
    let n = events.len() as u64;
    Ok(match outcome {
        TurnOutcome::Applied {
            version: new_version,
        } => {
            stats.applied.fetch_add(n, Ordering::Relaxed);
            stats.turns.fetch_add(1, Ordering::Relaxed);
            if new_version.is_some() {
                D::committed(services, key, &state, &effects).await;
            }
            *loaded = Some((new_version.unwrap_or(version), state));
            Outcome::Applied(new_version)
        }
        TurnOutcome::Duplicate => {
            stats.duplicates.fetch_add(n, Ordering::Relaxed);
            D::resync(services, key).await;
            // The store may be ahead of this actor (a commit it did not see confirmed):
            // reload before the next message rather than meet a version conflict.
            Outcome::Duplicate
        }
    })
}

/// Activates an actor: its snapshot (or the default state and version 0 when it has
/// none), hydrated with what the snapshot leaves out.
async fn activate<D: Domain>(deps: &TurnDeps, key: &str) -> crate::error::Result<(i64, D::State)> {
    let (version, mut state) = match deps.store.load_actor(D::KIND, key).await? {
        Some((version, json)) => {
            let state =
                serde_json::from_value(json).map_err(|source| ActorError::CorruptSnapshot {
                    kind: D::KIND,
                    key: key.to_string(),
                    source,
                })?;
            (version, state)
        }
        None => (0, D::State::default()),
    };
    D::hydrate(deps.store.db(), key, &mut state).await?;
    deps.stats.activations.fetch_add(1, Ordering::Relaxed);
    Ok((version, state))
}

/// Applies each of a turn's events in order: whether any changed the state, and what
/// they emitted, each with the index of the event that emitted it. A panicking domain
/// fails the turn instead of the actor.
fn apply_events<D: Domain>(
    config: &merit_config::DynamicConfig,
    key: &str,
    state: &mut D::State,
    events: &[&Arc<Envelope>],
    inputs: &[D::Inputs],
    effects: &mut D::Effects,
) -> crate::error::Result<(bool, Vec<(usize, Envelope)>)> {
    let (mut changed, mut emit) = (false, Vec::new());
    for (i, (envelope, inputs)) in events.iter().zip(inputs).enumerate() {
        let decision = catch_unwind(AssertUnwindSafe(|| {
            D::apply(config, key, state, envelope, inputs, effects)
        }))
        .map_err(|panic| ActorError::Panicked(merit_messages::panic_message(&*panic)))?;
        changed |= decision.changed;
        emit.extend(decision.emit.into_iter().map(|e| (i, e)));
    }
    Ok((changed, emit))
}

/// The outbox rows of a turn's emitted events (each with the index of the event that
/// emitted it), each carrying the trace context it continues (see [`attempt`] and
/// `merit_messages::trace`); empty headers when tracing is off.
fn outbox_rows(emit: &[(usize, Envelope)], origins: &[&tracing::Span]) -> Vec<OutboxMessage> {
    let mut traces: Vec<Option<std::collections::HashMap<String, String>>> =
        vec![None; origins.len()];
    let mut rows = Vec::with_capacity(emit.len());
    for (i, envelope) in emit {
        let trace = traces[*i].get_or_insert_with(|| match i {
            0 => merit_messages::trace::inject(&tracing::Span::current()),
            _ => merit_messages::trace::inject(origins[*i]),
        });
        rows.push(OutboxMessage::from_envelope(envelope).with_headers(trace));
    }
    rows
}
