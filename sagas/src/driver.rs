//! Drives one saga, step after step, while holding its lease.
//!
//! Each transition is one transaction, fenced on the lease: BEFORE an action or
//! compensation is called its step is written `running` / `compensating` with the attempt
//! counted (so a crash mid-call is seen on resume and the call re-run under the same
//! idempotency key), and AFTER it answers the outcome is written together with the saga's
//! position. Waits (backoff, re-polls) shorter than `max_inline_wait` are slept here with
//! the lease renewed; longer ones release the lease and leave the saga to the poller.

use std::{
    collections::BTreeMap, future::Future, panic::AssertUnwindSafe, sync::Arc, time::Duration,
};

use chrono::Utc;
use futures::FutureExt;
use merit_storage::{
    entities::{saga, saga_step},
    sea_orm::{
        ActiveModelTrait, ActiveValue, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set,
    },
    StorageError,
};
use rand::Rng;
use tracing::{debug, info, info_span, warn, Instrument, Span};

use crate::{
    definition::{SagaDefinition, StepContext, StepDef, StepFn, StepOutcome},
    error::{Result, SagaError},
    executor::Inner,
    id::{IdempotencyKey, Phase, SagaId},
    lease,
    state::{SagaState, StepState},
    view,
};

/// Claims `id` and drives it until it is final, must wait long, or the lease is lost.
pub(crate) async fn drive(inner: Arc<Inner>, id: SagaId) -> Result<()> {
    let Ok(_permit) = inner.permits.clone().acquire_owned().await else {
        return Ok(()); // executor shut down
    };
    let (owner, ttl) = (inner.options.node_id.as_str(), inner.options.lease_ttl);
    if !lease::try_claim(&inner.store, id, owner, ttl).await? {
        debug!(saga_id = %id, "saga is final or held by another node");
        return Ok(());
    }
    let Some((saga, steps)) = view::load(inner.store.db(), id).await? else {
        return Ok(());
    };
    let span = info_span!("saga", saga_id = %id, kind = %saga.kind,
        correlation_id = %saga.correlation_id, node = %owner);
    let mut driver = Driver {
        inner: inner.clone(),
        id,
        saga,
        steps,
    };
    async move {
        let result = driver.run().await;
        // Whatever happened, let another driver (here or elsewhere) take over at once.
        let released = lease::release(&driver.inner.store, id, owner).await;
        result.and(released.map(|_| ()))
    }
    .instrument(span)
    .await
}

mod direction;
mod transitions;

use direction::Direction;

struct Driver {
    inner: Arc<Inner>,
    id: SagaId,
    saga: saga::Model,
    steps: Vec<saga_step::Model>,
}

/// Whether the driver still holds the lease and should go on.
type Go = bool;

/// Where the saga stands: at a step (in the state read), or already moved on.
enum Position {
    At(usize, StepState),
    Moved(Go),
}

/// What a step calls next, or how the saga moved on without calling anything.
enum Callee {
    Call(Arc<dyn StepFn>),
    Moved(Go),
}

/// The call just made: which step, and how its attempt was counted.
#[derive(Debug, Clone, Copy)]
struct Tried {
    i: usize,
    /// A re-poll of an awaiting step (it does not count an attempt up front).
    polling: bool,
    attempt: u32,
    /// The attempts counted before this call.
    done_attempts: u32,
}

impl Driver {
    async fn run(&mut self) -> Result<()> {
        let Some(def) = self.inner.registry.get(&self.saga.kind) else {
            let reason = format!(
                "unknown saga kind {:?}: no definition is registered on node {} (registered: {:?})",
                self.saga.kind,
                self.inner.options.node_id,
                self.inner.registry.kinds()
            );
            return self.fail(reason).await.map(|_| ());
        };
        let stored: Vec<&str> = self.steps.iter().map(|s| s.name.as_str()).collect();
        let defined: Vec<&str> = def.steps.iter().map(|s| s.name.as_str()).collect();
        if stored != defined {
            let reason = format!(
                "saga kind {:?} changed since this saga started: stored steps {stored:?}, registered steps {defined:?}",
                def.kind
            );
            return self.fail(reason).await.map(|_| ());
        }
        loop {
            let state = match self.saga.state.parse::<SagaState>() {
                Ok(s) => s,
                Err(e) => return self.fail(e.to_string()).await.map(|_| ()),
            };
            if !state.is_active() {
                return Ok(());
            }
            if let Some(at) = self.saga.next_attempt_at {
                let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                if wait > self.inner.options.max_inline_wait {
                    debug!(
                        wait_ms = wait.as_millis() as u64,
                        "long wait: leaving to the poller"
                    );
                    return Ok(());
                }
                if !wait.is_zero() && self.hold_lease(tokio::time::sleep(wait)).await?.is_none() {
                    return Ok(());
                }
            }
            let dir = match state {
                SagaState::Running => Direction::Forward,
                _ => Direction::Backward,
            };
            let go = self.step(&def, dir).await?;
            if !go {
                warn!("lease lost: another node drives this saga now");
                return Ok(());
            }
        }
    }

    /// Runs `fut` while renewing the lease; `None` if the lease was lost meanwhile.
    async fn hold_lease<F: Future>(&self, fut: F) -> Result<Option<F::Output>> {
        let opts = &self.inner.options;
        let every = (opts.lease_ttl / 3).max(Duration::from_millis(10));
        tokio::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return Ok(Some(out)),
                _ = tokio::time::sleep(every) => {
                    if !lease::renew(&self.inner.store, self.id, &opts.node_id, opts.lease_ttl).await? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Calls a step function with a timeout, catching a panic; `None` if the lease was lost.
    async fn call(
        &self,
        f: Arc<dyn StepFn>,
        ctx: StepContext,
        timeout: Duration,
    ) -> Result<Option<StepOutcome>> {
        let guarded = AssertUnwindSafe(f.call(ctx)).catch_unwind();
        let call = tokio::time::timeout(timeout, guarded);
        Ok(self.hold_lease(call).await?.map(|r| match r {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(panic)) => StepOutcome::Retry(format!(
                "panicked: {}",
                merit_messages::panic_message(&*panic)
            )),
            Err(_) => StepOutcome::Retry(format!("timed out after {} ms", timeout.as_millis())),
        }))
    }

    /// Writes a saga change (and a step change) iff the lease is still ours, extending it.
    async fn commit(
        &mut self,
        mut saga_am: saga::ActiveModel,
        step: Option<(usize, saga_step::ActiveModel)>,
    ) -> Result<Go> {
        let now = Utc::now();
        let opts = &self.inner.options;
        saga_am.updated_at = Set(now);
        let final_state = match &saga_am.state {
            ActiveValue::Set(s) | ActiveValue::Unchanged(s) => {
                s.parse::<SagaState>().is_ok_and(|s| !s.is_active())
            }
            ActiveValue::NotSet => false,
        };
        if final_state {
            // The lease goes with the final transition: nobody sees a final saga held.
            saga_am.lease_owner = Set(None);
            saga_am.lease_until = Set(None);
        } else {
            saga_am.lease_until = Set(Some(lease::until(now, opts.lease_ttl)));
        }
        let step = step.map(|(i, mut am)| {
            am.updated_at = Set(now);
            (i, am)
        });
        let (id, owner) = (self.id.to_string(), opts.node_id.clone());
        let (saga_w, step_w) = (saga_am.clone(), step.clone());
        let go = self
            .inner
            .store
            .write(move |txn| {
                Box::pin(async move {
                    let res = saga::Entity::update_many()
                        .set(saga_w)
                        .filter(saga::Column::Id.eq(id.clone()))
                        .filter(saga::Column::LeaseOwner.eq(owner))
                        .exec(txn)
                        .await?;
                    if res.rows_affected != 1 {
                        return Ok(false);
                    }
                    if let Some((i, am)) = step_w {
                        saga_step::Entity::update_many()
                            .set(am)
                            .filter(saga_step::Column::SagaId.eq(id))
                            .filter(saga_step::Column::Step.eq(i as i32))
                            .exec(txn)
                            .await?;
                    }
                    Ok(true)
                })
            })
            .await?;
        if go {
            self.saga = into_model(saga_am)?;
            if let Some((i, am)) = step {
                self.steps[i] = into_model(am)?;
            }
        }
        Ok(go)
    }

    fn saga_am(&self) -> saga::ActiveModel {
        self.saga.clone().into_active_model()
    }

    fn step_am(&self, i: usize) -> saga_step::ActiveModel {
        self.steps[i].clone().into_active_model()
    }

    /// Marks the saga failed: it cannot run here (unknown kind, changed definition, bad row).
    async fn fail(&mut self, reason: String) -> Result<Go> {
        warn!(reason = %reason, "saga failed: it cannot run");
        let mut am = self.saga_am();
        am.state = Set(SagaState::Failed.as_str().into());
        am.last_error = Set(Some(reason));
        am.next_attempt_at = Set(None);
        self.commit(am, None).await
    }

    fn context(&self, def: &SagaDefinition, i: usize, phase: Phase, attempt: u32) -> StepContext {
        let upto = match phase {
            Phase::Action => i,
            Phase::Compensation => i + 1,
        };
        let outputs: BTreeMap<String, serde_json::Value> = self.steps[..upto]
            .iter()
            .filter_map(|s| s.output.clone().map(|o| (s.name.clone(), o)))
            .collect();
        let step = &self.steps[i];
        StepContext {
            saga_id: self.id,
            kind: def.kind.clone(),
            step: i,
            name: step.name.clone(),
            phase,
            attempt,
            idempotency_key: IdempotencyKey {
                saga_id: self.id,
                step: i,
                phase,
            },
            previous: match phase {
                Phase::Action => step.output.clone(),
                Phase::Compensation => step.compensation_output.clone(),
            },
            data: self.saga.data.clone(),
            outputs,
        }
    }

    fn backoff(&self, policy: &crate::RetryPolicy, attempt: u32) -> Duration {
        let unit: f64 = match self.inner.rng.lock() {
            Ok(mut rng) => rng.gen(),
            Err(poisoned) => poisoned.into_inner().gen(),
        };
        policy.backoff(attempt, unit)
    }

    /// One move in `dir`: run (or re-poll) the current step's action or compensation and
    /// record its outcome.
    async fn step(&mut self, def: &SagaDefinition, dir: Direction) -> Result<Go> {
        let (i, state) = match self.position(def, dir).await? {
            Position::At(i, state) => (i, state),
            Position::Moved(go) => return Ok(go),
        };
        let sdef: &StepDef = &def.steps[i];
        let span = info_span!("saga_step", step = i, name = %sdef.name, phase = dir.label(),
            attempt = tracing::field::Empty);
        let callee = match dir {
            Direction::Forward => self.action_to_call(sdef, i, state).await?,
            Direction::Backward => self.compensation_to_call(sdef, i, state, &span).await?,
        };
        let f = match callee {
            Callee::Call(f) => f,
            Callee::Moved(go) => return Ok(go),
        };
        let polling = state == dir.awaiting();
        let done_attempts = dir.attempts(&self.steps[i]);
        let attempt = if polling {
            done_attempts.max(1)
        } else {
            done_attempts + 1
        };
        span.record("attempt", attempt);
        if !polling {
            if !dir.retry(sdef).allows_another(attempt - 1) {
                // Earlier attempts never answered (crash, lost lease): stop re-running it.
                let error = format!(
                    "gave up after {} attempts that did not finish (crash or lost lease)",
                    attempt - 1
                );
                return self
                    .give_up(def, dir, i, attempt - 1, error)
                    .instrument(span)
                    .await;
            }
            if !self
                .begin_attempt(dir, i, attempt)
                .instrument(span.clone())
                .await?
            {
                return Ok(false);
            }
        }
        if dir == Direction::Forward {
            debug!(parent: &span, polling, "calling action");
        }
        let ctx = self.context(def, i, dir.phase(), attempt);
        let Some(outcome) = self
            .call(f, ctx, sdef.timeout)
            .instrument(span.clone())
            .await?
        else {
            return Ok(false);
        };
        let tried = Tried {
            i,
            polling,
            attempt,
            done_attempts,
        };
        self.record(def, dir, tried, outcome).instrument(span).await
    }

    /// The step the saga stands at in `dir`, or how it moved on without one: past the last
    /// step it is completed, before the first it is compensated.
    async fn position(&mut self, def: &SagaDefinition, dir: Direction) -> Result<Position> {
        let current = self.saga.current_step;
        let i = match (dir, usize::try_from(current)) {
            (Direction::Forward, Err(_)) => {
                let reason = format!("running saga at step {current}");
                return self.fail(reason).await.map(Position::Moved);
            }
            (Direction::Forward, Ok(i)) if i >= def.steps.len() => {
                info!("saga completed");
                return self.finish(SagaState::Completed).await.map(Position::Moved);
            }
            (Direction::Forward, Ok(i)) => i,
            (Direction::Backward, Err(_)) => {
                info!("saga compensated");
                return self
                    .finish(SagaState::Compensated)
                    .await
                    .map(Position::Moved);
            }
            (Direction::Backward, Ok(i)) => i.min(def.steps.len() - 1),
        };
        match self.steps[i].state.parse::<StepState>() {
            Ok(state) => Ok(Position::At(i, state)),
            Err(e) => self.fail(e.to_string()).await.map(Position::Moved),
        }
    }

    /// Moves the saga to the final `state`.
    async fn finish(&mut self, state: SagaState) -> Result<Go> {
        let mut am = self.saga_am();
        am.state = Set(state.as_str().into());
        am.next_attempt_at = Set(None);
        self.commit(am, None).await
    }

    /// The action a step in `state` calls next, or how the saga moved on without calling it.
    async fn action_to_call(
        &mut self,
        sdef: &StepDef,
        i: usize,
        state: StepState,
    ) -> Result<Callee> {
        match state {
            StepState::Pending | StepState::Running | StepState::Retrying | StepState::Awaiting => {
                Ok(Callee::Call(sdef.action.clone()))
            }
            StepState::Done => {
                // Already recorded (written with its own transition); just move on.
                let mut am = self.saga_am();
                am.current_step = Set(i as i32 + 1);
                self.commit(am, None).await.map(Callee::Moved)
            }
            _ => {
                // A step already failed or compensating while the saga runs forward: the
                // compensation decision was lost; take it again.
                let from = if state == StepState::Failed {
                    i as i32 - 1
                } else {
                    i as i32
                };
                let reason = format!("step {:?} is {state}", sdef.name);
                self.begin_compensation(from, reason)
                    .await
                    .map(Callee::Moved)
            }
        }
    }

    /// The compensation a step in `state` calls next, or how the saga moved on without
    /// calling one: the step has nothing to undo.
    async fn compensation_to_call(
        &mut self,
        sdef: &StepDef,
        i: usize,
        state: StepState,
        span: &Span,
    ) -> Result<Callee> {
        if !state.needs_compensation() {
            let am = self.moved_past(Direction::Backward, i);
            return self.commit(am, None).await.map(Callee::Moved);
        }
        let Some(compensation) = sdef.compensation.clone() else {
            debug!(parent: span, "nothing to undo");
            let mut step = self.step_am(i);
            step.state = Set(StepState::Compensated.as_str().into());
            let am = self.moved_past(Direction::Backward, i);
            return self.commit(am, Some((i, step))).await.map(Callee::Moved);
        };
        Ok(Callee::Call(compensation))
    }

    /// The saga moved past step `i` in `dir`, its wait (if any) over.
    fn moved_past(&self, dir: Direction, i: usize) -> saga::ActiveModel {
        let mut am = self.saga_am();
        am.current_step = Set(dir.next(i));
        am.next_attempt_at = Set(None);
        am
    }
}

fn into_model<A>(am: A) -> Result<<A::Entity as EntityTrait>::Model>
where
    A: ActiveModelTrait + merit_storage::sea_orm::TryIntoModel<<A::Entity as EntityTrait>::Model>,
{
    am.try_into_model()
        .map_err(|e| SagaError::Storage(StorageError::corrupt("saga row", e)))
}
