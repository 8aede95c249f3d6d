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
use tracing::{debug, info, info_span, warn, Instrument};

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
            let go = match state {
                SagaState::Running => self.forward(&def).await?,
                _ => self.backward(&def).await?,
            };
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

    /// One forward move: run (or re-poll) the current step and record its outcome.
    async fn forward(&mut self, def: &SagaDefinition) -> Result<Go> {
        let n = def.steps.len();
        let Ok(i) = usize::try_from(self.saga.current_step) else {
            return self
                .fail(format!("running saga at step {}", self.saga.current_step))
                .await;
        };
        if i >= n {
            info!("saga completed");
            let mut am = self.saga_am();
            am.state = Set(SagaState::Completed.as_str().into());
            am.next_attempt_at = Set(None);
            return self.commit(am, None).await;
        }
        let sdef: &StepDef = &def.steps[i];
        let state = match self.steps[i].state.parse::<StepState>() {
            Ok(s) => s,
            Err(e) => return self.fail(e.to_string()).await,
        };
        match state {
            StepState::Pending | StepState::Running | StepState::Retrying | StepState::Awaiting => {
            }
            StepState::Done => {
                // Already recorded (written with its own transition); just move on.
                let mut am = self.saga_am();
                am.current_step = Set(i as i32 + 1);
                return self.commit(am, None).await;
            }
            _ => {
                // A step already failed or compensating while the saga runs forward: the
                // compensation decision was lost; take it again.
                let from = if state == StepState::Failed {
                    i as i32 - 1
                } else {
                    i as i32
                };
                return self
                    .begin_compensation(from, format!("step {:?} is {state}", sdef.name))
                    .await;
            }
        }
        let polling = state == StepState::Awaiting;
        let done_attempts = u32::try_from(self.steps[i].attempts).unwrap_or(0);
        let attempt = if polling {
            done_attempts.max(1)
        } else {
            done_attempts + 1
        };
        let span = info_span!("saga_step", step = i, name = %sdef.name, phase = "action", attempt);
        if !polling {
            if !sdef.retry.allows_another(attempt - 1) {
                // Earlier attempts never answered (crash, lost lease): stop re-running it.
                let error = format!(
                    "gave up after {} attempts that did not finish (crash or lost lease)",
                    attempt - 1
                );
                return self
                    .exhausted(def, i, attempt - 1, error)
                    .instrument(span)
                    .await;
            }
            let mut step = self.step_am(i);
            step.state = Set(StepState::Running.as_str().into());
            step.attempts = Set(attempt as i32);
            step.next_attempt_at = Set(None);
            if self.steps[i].started_at.is_none() {
                step.started_at = Set(Some(Utc::now()));
            }
            let mut am = self.saga_am();
            am.next_attempt_at = Set(None);
            if !self
                .commit(am, Some((i, step)))
                .instrument(span.clone())
                .await?
            {
                return Ok(false);
            }
        }
        let ctx = self.context(def, i, Phase::Action, attempt);
        debug!(parent: &span, polling, "calling action");
        let Some(outcome) = self
            .call(sdef.action.clone(), ctx, sdef.timeout)
            .instrument(span.clone())
            .await?
        else {
            return Ok(false);
        };
        let now = Utc::now();
        async {
            match outcome {
                StepOutcome::Done(output) => {
                    info!("step done");
                    let mut step = self.step_am(i);
                    step.state = Set(StepState::Done.as_str().into());
                    step.output = Set(Some(output));
                    step.next_attempt_at = Set(None);
                    let mut am = self.saga_am();
                    am.current_step = Set(i as i32 + 1);
                    am.next_attempt_at = Set(None);
                    if i + 1 == n {
                        info!("saga completed");
                        am.state = Set(SagaState::Completed.as_str().into());
                    }
                    self.commit(am, Some((i, step))).await
                }
                StepOutcome::Pending {
                    output,
                    recheck_after,
                } => {
                    debug!(recheck_ms = recheck_after.as_millis() as u64, "step awaiting finality");
                    let at = lease::until(now, recheck_after);
                    let mut step = self.step_am(i);
                    step.state = Set(StepState::Awaiting.as_str().into());
                    step.output = Set(Some(output));
                    step.next_attempt_at = Set(Some(at));
                    let mut am = self.saga_am();
                    am.next_attempt_at = Set(Some(at));
                    self.commit(am, Some((i, step))).await
                }
                StepOutcome::Retry(error) => {
                    let attempts = if polling { done_attempts + 1 } else { attempt };
                    if !sdef.retry.allows_another(attempts) {
                        return self.exhausted(def, i, attempts, error).await;
                    }
                    let wait = self.backoff(&sdef.retry, attempts);
                    warn!(error = %error, attempts, backoff_ms = wait.as_millis() as u64, "step failed transiently: retrying");
                    let at = lease::until(now, wait);
                    let mut step = self.step_am(i);
                    if !polling {
                        // A failed check of an awaiting step keeps it awaiting: the next
                        // call checks again rather than counting a new attempt up front.
                        step.state = Set(StepState::Retrying.as_str().into());
                    }
                    step.attempts = Set(attempts as i32);
                    step.last_error = Set(Some(error.clone()));
                    step.next_attempt_at = Set(Some(at));
                    let mut am = self.saga_am();
                    am.next_attempt_at = Set(Some(at));
                    am.last_error = Set(Some(format!("step {:?} attempt {attempts}: {error}", sdef.name)));
                    self.commit(am, Some((i, step))).await
                }
                StepOutcome::Fail(error) => {
                    warn!(error = %error, "step failed permanently: compensating");
                    let mut step = self.step_am(i);
                    step.state = Set(StepState::Failed.as_str().into());
                    step.last_error = Set(Some(error.clone()));
                    step.next_attempt_at = Set(None);
                    if !self.commit(self.saga_am(), Some((i, step))).await? {
                        return Ok(false);
                    }
                    self.begin_compensation(i as i32 - 1, format!("step {:?} failed: {error}", sdef.name))
                        .await
                }
            }
        }
        .instrument(span)
        .await
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

    /// One backward move: compensate (or re-poll the compensation of) the current step.
    async fn backward(&mut self, def: &SagaDefinition) -> Result<Go> {
        let Ok(i) = usize::try_from(self.saga.current_step) else {
            info!("saga compensated");
            let mut am = self.saga_am();
            am.state = Set(SagaState::Compensated.as_str().into());
            am.next_attempt_at = Set(None);
            return self.commit(am, None).await;
        };
        let i = i.min(def.steps.len() - 1);
        let sdef: &StepDef = &def.steps[i];
        let state = match self.steps[i].state.parse::<StepState>() {
            Ok(s) => s,
            Err(e) => return self.fail(e.to_string()).await,
        };
        let span = info_span!("saga_step", step = i, name = %sdef.name, phase = "compensation",
            attempt = tracing::field::Empty);
        let next = |d: &Driver| {
            let mut am = d.saga_am();
            am.current_step = Set(i as i32 - 1);
            am.next_attempt_at = Set(None);
            am
        };
        if !state.needs_compensation() {
            return self.commit(next(self), None).await;
        }
        let Some(compensation) = sdef.compensation.clone() else {
            debug!(parent: &span, "nothing to undo");
            let mut step = self.step_am(i);
            step.state = Set(StepState::Compensated.as_str().into());
            return self.commit(next(self), Some((i, step))).await;
        };
        let polling = state == StepState::CompensationAwaiting;
        let done_attempts = u32::try_from(self.steps[i].compensation_attempts).unwrap_or(0);
        let attempt = if polling {
            done_attempts.max(1)
        } else {
            done_attempts + 1
        };
        span.record("attempt", attempt);
        if !polling {
            if !sdef.compensation_retry.allows_another(attempt - 1) {
                let error = format!(
                    "gave up after {} attempts that did not finish (crash or lost lease)",
                    attempt - 1
                );
                return self
                    .stuck(sdef, i, attempt - 1, error)
                    .instrument(span)
                    .await;
            }
            info!(parent: &span, attempt, "compensating step");
            let mut step = self.step_am(i);
            step.state = Set(StepState::Compensating.as_str().into());
            step.compensation_attempts = Set(attempt as i32);
            step.next_attempt_at = Set(None);
            let mut am = self.saga_am();
            am.next_attempt_at = Set(None);
            if !self
                .commit(am, Some((i, step)))
                .instrument(span.clone())
                .await?
            {
                return Ok(false);
            }
        }
        let ctx = self.context(def, i, Phase::Compensation, attempt);
        let Some(outcome) = self
            .call(compensation, ctx, sdef.timeout)
            .instrument(span.clone())
            .await?
        else {
            return Ok(false);
        };
        let now = Utc::now();
        async {
            match outcome {
                StepOutcome::Done(_) => {
                    info!("step compensated");
                    let mut step = self.step_am(i);
                    step.state = Set(StepState::Compensated.as_str().into());
                    step.next_attempt_at = Set(None);
                    let am = next(self);
                    self.commit(am, Some((i, step))).await
                }
                StepOutcome::Pending {
                    output,
                    recheck_after,
                } => {
                    let at = lease::until(now, recheck_after);
                    let mut step = self.step_am(i);
                    step.state = Set(StepState::CompensationAwaiting.as_str().into());
                    step.compensation_output = Set(Some(output));
                    step.next_attempt_at = Set(Some(at));
                    let mut am = self.saga_am();
                    am.next_attempt_at = Set(Some(at));
                    self.commit(am, Some((i, step))).await
                }
                StepOutcome::Retry(error) => {
                    let attempts = if polling { done_attempts + 1 } else { attempt };
                    if !sdef.compensation_retry.allows_another(attempts) {
                        return self.stuck(sdef, i, attempts, error).await;
                    }
                    let wait = self.backoff(&sdef.compensation_retry, attempts);
                    warn!(error = %error, attempts, backoff_ms = wait.as_millis() as u64, "compensation failed: retrying");
                    let at = lease::until(now, wait);
                    let mut step = self.step_am(i);
                    step.compensation_attempts = Set(attempts as i32);
                    step.last_error = Set(Some(error.clone()));
                    step.next_attempt_at = Set(Some(at));
                    let mut am = self.saga_am();
                    am.next_attempt_at = Set(Some(at));
                    self.commit(am, Some((i, step))).await
                }
                StepOutcome::Fail(error) => {
                    self.stuck(sdef, i, attempt, format!("refused: {error}")).await
                }
            }
        }
        .instrument(span)
        .await
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
    am.try_into_model().map_err(|e| {
        SagaError::Storage(StorageError::Corrupt {
            what: "saga row".into(),
            reason: e.to_string(),
        })
    })
}
