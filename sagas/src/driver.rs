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

struct Driver {
    inner: Arc<Inner>,
    id: SagaId,
    saga: saga::Model,
    steps: Vec<saga_step::Model>,
}

/// Whether the driver still holds the lease and should go on.
type Go = bool;

/// Which way the saga moves, and what differs between the two ways: forward runs each
/// step's action from the first step on, backward runs their compensations from the last
/// step reached back to the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Backward,
}

impl Direction {
    fn phase(self) -> Phase {
        match self {
            Direction::Forward => Phase::Action,
            Direction::Backward => Phase::Compensation,
        }
    }

    /// The span's `phase` field.
    fn label(self) -> &'static str {
        match self {
            Direction::Forward => "action",
            Direction::Backward => "compensation",
        }
    }

    /// The index the saga moves to once step `i` is finished.
    fn next(self, i: usize) -> i32 {
        match self {
            Direction::Forward => i as i32 + 1,
            Direction::Backward => i as i32 - 1,
        }
    }

    fn retry(self, sdef: &StepDef) -> &crate::RetryPolicy {
        match self {
            Direction::Forward => &sdef.retry,
            Direction::Backward => &sdef.compensation_retry,
        }
    }

    /// The attempts already counted for this direction's call of `step`.
    fn attempts(self, step: &saga_step::Model) -> u32 {
        let n = match self {
            Direction::Forward => step.attempts,
            Direction::Backward => step.compensation_attempts,
        };
        u32::try_from(n).unwrap_or(0)
    }

    fn set_attempts(self, step: &mut saga_step::ActiveModel, attempts: u32) {
        match self {
            Direction::Forward => step.attempts = Set(attempts as i32),
            Direction::Backward => step.compensation_attempts = Set(attempts as i32),
        }
    }

    /// The output a call answered with while it is not finished yet: the next call (a
    /// re-poll) gets it back as `previous`.
    fn set_output(self, step: &mut saga_step::ActiveModel, output: serde_json::Value) {
        match self {
            Direction::Forward => step.output = Set(Some(output)),
            Direction::Backward => step.compensation_output = Set(Some(output)),
        }
    }

    /// The step's state while a call is in flight.
    fn calling(self) -> StepState {
        match self {
            Direction::Forward => StepState::Running,
            Direction::Backward => StepState::Compensating,
        }
    }

    /// The step's state while its effect awaits finality and is re-polled.
    fn awaiting(self) -> StepState {
        match self {
            Direction::Forward => StepState::Awaiting,
            Direction::Backward => StepState::CompensationAwaiting,
        }
    }

    /// The step's state once this direction's call finished.
    fn finished(self) -> StepState {
        match self {
            Direction::Forward => StepState::Done,
            Direction::Backward => StepState::Compensated,
        }
    }

    /// The step's state while waiting to retry; a compensation has none and stays
    /// `compensating`, which the next call counts as a new attempt all the same.
    fn retrying(self) -> Option<StepState> {
        match self {
            Direction::Forward => Some(StepState::Retrying),
            Direction::Backward => None,
        }
    }

    fn retrying_message(self) -> &'static str {
        match self {
            Direction::Forward => "step failed transiently: retrying",
            Direction::Backward => "compensation failed: retrying",
        }
    }
}

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

    /// Writes that attempt number `attempt` of step `i` is being called, before calling it:
    /// a crash during the call is then seen on resume.
    async fn begin_attempt(&mut self, dir: Direction, i: usize, attempt: u32) -> Result<Go> {
        let mut step = self.step_am(i);
        step.state = Set(dir.calling().as_str().into());
        dir.set_attempts(&mut step, attempt);
        step.next_attempt_at = Set(None);
        match dir {
            Direction::Forward if self.steps[i].started_at.is_none() => {
                step.started_at = Set(Some(Utc::now()));
            }
            Direction::Forward => {}
            Direction::Backward => info!(attempt, "compensating step"),
        }
        let mut am = self.saga_am();
        am.next_attempt_at = Set(None);
        self.commit(am, Some((i, step))).await
    }

    /// Writes what the call of step `t.i` answered.
    async fn record(
        &mut self,
        def: &SagaDefinition,
        dir: Direction,
        t: Tried,
        outcome: StepOutcome,
    ) -> Result<Go> {
        let now = Utc::now();
        match outcome {
            StepOutcome::Done(output) => self.finished(def, dir, t.i, output).await,
            StepOutcome::Pending {
                output,
                recheck_after,
            } => {
                debug!(
                    recheck_ms = recheck_after.as_millis() as u64,
                    "step awaiting finality"
                );
                let at = lease::until(now, recheck_after);
                let mut step = self.step_am(t.i);
                step.state = Set(dir.awaiting().as_str().into());
                dir.set_output(&mut step, output);
                step.next_attempt_at = Set(Some(at));
                let mut am = self.saga_am();
                am.next_attempt_at = Set(Some(at));
                self.commit(am, Some((t.i, step))).await
            }
            StepOutcome::Retry(error) => self.retry_later(def, dir, t, now, error).await,
            StepOutcome::Fail(error) => self.refused(def, dir, t, error).await,
        }
    }

    /// The call of step `i` finished: the saga moves past it.
    async fn finished(
        &mut self,
        def: &SagaDefinition,
        dir: Direction,
        i: usize,
        output: serde_json::Value,
    ) -> Result<Go> {
        let mut step = self.step_am(i);
        step.state = Set(dir.finished().as_str().into());
        step.next_attempt_at = Set(None);
        let mut am = self.moved_past(dir, i);
        match dir {
            Direction::Forward => {
                info!("step done");
                // Later steps and this step's compensation read it.
                step.output = Set(Some(output));
                if i + 1 == def.steps.len() {
                    info!("saga completed");
                    am.state = Set(SagaState::Completed.as_str().into());
                }
            }
            // Nothing calls an undone step again, so its compensation's answer is not kept.
            Direction::Backward => info!("step compensated"),
        }
        self.commit(am, Some((i, step))).await
    }

    /// The call of step `t.i` failed transiently: retry after a backoff, or give up.
    async fn retry_later(
        &mut self,
        def: &SagaDefinition,
        dir: Direction,
        t: Tried,
        now: chrono::DateTime<Utc>,
        error: String,
    ) -> Result<Go> {
        let sdef = &def.steps[t.i];
        let attempts = if t.polling {
            t.done_attempts + 1
        } else {
            t.attempt
        };
        if !dir.retry(sdef).allows_another(attempts) {
            return self.give_up(def, dir, t.i, attempts, error).await;
        }
        let wait = self.backoff(dir.retry(sdef), attempts);
        warn!(error = %error, attempts, backoff_ms = wait.as_millis() as u64, "{}", dir.retrying_message());
        let at = lease::until(now, wait);
        let mut step = self.step_am(t.i);
        if let (Some(retrying), false) = (dir.retrying(), t.polling) {
            // A failed check of an awaiting step keeps it awaiting: the next call checks
            // again rather than counting a new attempt up front.
            step.state = Set(retrying.as_str().into());
        }
        dir.set_attempts(&mut step, attempts);
        step.last_error = Set(Some(error.clone()));
        step.next_attempt_at = Set(Some(at));
        let mut am = self.saga_am();
        am.next_attempt_at = Set(Some(at));
        if dir == Direction::Forward {
            // While compensating, the saga's last error keeps why it compensates.
            am.last_error = Set(Some(format!(
                "step {:?} attempt {attempts}: {error}",
                sdef.name
            )));
        }
        self.commit(am, Some((t.i, step))).await
    }

    /// The call of step `t.i` refused for good: an action's refusal starts the compensation
    /// (of the steps before it), a compensation's refusal leaves the saga stuck.
    async fn refused(
        &mut self,
        def: &SagaDefinition,
        dir: Direction,
        t: Tried,
        error: String,
    ) -> Result<Go> {
        let (i, sdef) = (t.i, &def.steps[t.i]);
        match dir {
            Direction::Forward => {
                warn!(error = %error, "step failed permanently: compensating");
                let mut step = self.step_am(i);
                step.state = Set(StepState::Failed.as_str().into());
                step.last_error = Set(Some(error.clone()));
                step.next_attempt_at = Set(None);
                if !self.commit(self.saga_am(), Some((i, step))).await? {
                    return Ok(false);
                }
                let reason = format!("step {:?} failed: {error}", sdef.name);
                self.begin_compensation(i as i32 - 1, reason).await
            }
            Direction::Backward => {
                self.stuck(sdef, i, t.attempt, format!("refused: {error}"))
                    .await
            }
        }
    }

    /// Step `i` ran out of attempts in `dir`.
    async fn give_up(
        &mut self,
        def: &SagaDefinition,
        dir: Direction,
        i: usize,
        attempts: u32,
        error: String,
    ) -> Result<Go> {
        match dir {
            Direction::Forward => self.exhausted(def, i, attempts, error).await,
            Direction::Backward => self.stuck(&def.steps[i], i, attempts, error).await,
        }
    }
    /// The step ran out of attempts: its effect is unknown, so it is compensated too.
    async fn exhausted(
        &mut self,
        def: &SagaDefinition,
        i: usize,
        attempts: u32,
        error: String,
    ) -> Result<Go> {
        let name = &def.steps[i].name;
        warn!(error = %error, attempts, "step gave up: compensating, this step included");
        let mut step = self.step_am(i);
        step.state = Set(StepState::Exhausted.as_str().into());
        step.attempts = Set(attempts as i32);
        step.last_error = Set(Some(error.clone()));
        step.next_attempt_at = Set(None);
        if !self.commit(self.saga_am(), Some((i, step))).await? {
            return Ok(false);
        }
        self.begin_compensation(
            i as i32,
            format!("step {name:?} gave up after {attempts} attempts: {error}"),
        )
        .await
    }

    async fn begin_compensation(&mut self, from: i32, reason: String) -> Result<Go> {
        let mut am = self.saga_am();
        am.state = Set(SagaState::Compensating.as_str().into());
        am.current_step = Set(from);
        am.last_error = Set(Some(reason));
        am.next_attempt_at = Set(None);
        self.commit(am, None).await
    }

    /// A compensation gave up: the saga needs an operator. Loud, never silent.
    async fn stuck(
        &mut self,
        sdef: &StepDef,
        i: usize,
        attempts: u32,
        error: String,
    ) -> Result<Go> {
        tracing::error!(error = %error, attempts, "compensation gave up: saga is stuck and needs an operator");
        let mut step = self.step_am(i);
        step.compensation_attempts = Set(attempts as i32);
        step.last_error = Set(Some(error.clone()));
        step.next_attempt_at = Set(None);
        let mut am = self.saga_am();
        am.state = Set(SagaState::Stuck.as_str().into());
        am.next_attempt_at = Set(None);
        am.last_error = Set(Some(format!(
            "compensation of step {:?} after {attempts} attempts: {error}",
            sdef.name
        )));
        self.commit(am, Some((i, step))).await
    }
}

fn into_model<A>(am: A) -> Result<<A::Entity as EntityTrait>::Model>
where
    A: ActiveModelTrait + merit_storage::sea_orm::TryIntoModel<<A::Entity as EntityTrait>::Model>,
{
    am.try_into_model()
        .map_err(|e| SagaError::Storage(StorageError::corrupt("saga row", e)))
}
