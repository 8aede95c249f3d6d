//! The transitions a driver writes around a call: the attempt begun, then what the call
//! answered — done, awaiting finality, a retry later, a refusal, attempts exhausted, the
//! compensation begun, or a compensation stuck.

use chrono::Utc;
use merit_storage::sea_orm::Set;
use tracing::{debug, info, warn};

use super::{Direction, Driver, Go, Tried};
use crate::{
    definition::{SagaDefinition, StepDef, StepOutcome},
    error::Result,
    lease,
    state::{SagaState, StepState},
};

impl Driver {
    /// Writes that attempt number `attempt` of step `i` is being called, before calling it:
    /// a crash during the call is then seen on resume.
    pub(super) async fn begin_attempt(
        &mut self,
        dir: Direction,
        i: usize,
        attempt: u32,
    ) -> Result<Go> {
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
    pub(super) async fn record(
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
    pub(super) async fn give_up(
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

    pub(super) async fn begin_compensation(&mut self, from: i32, reason: String) -> Result<Go> {
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
