//! Defining a saga kind: an ordered list of steps, each an action with an optional
//! compensation, a timeout and retry policies. Definitions are code, registered in a
//! [`SagaRegistry`] at start-up; the database holds only instances (by kind name), so a
//! saga persisted by one version resumes under the definition the next version registers.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use merit_messages::SharedCause;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::{
    error::{Result, SagaError},
    id::{IdempotencyKey, Phase, SagaId},
    retry::RetryPolicy,
};

/// What an action (or compensation) reports.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    /// It took effect; the output is stored and handed to later steps (and to this step's
    /// compensation).
    Done(Value),
    /// It acted but the effect is not final yet (a transaction waiting for confirmations).
    /// The output is stored, the step waits `recheck_after`, then the same function is
    /// called again with the output in [`StepContext::previous`] so it can check instead
    /// of acting again — or act again, with the same idempotency key, if the effect
    /// vanished (a reorg dropped the transaction). Re-polls do not spend attempts.
    Pending {
        /// What to check next time (e.g. the transaction hash).
        output: Value,
        /// How long to wait before checking.
        recheck_after: Duration,
    },
    /// A transient failure: retried after a backoff while the retry policy allows, then
    /// the step counts as exhausted (effect unknown) and the saga compensates.
    Retry(String),
    /// A permanent failure that left no effect: the saga compensates the steps before.
    Fail(String),
}

impl StepOutcome {
    /// `Done` with `output` serialised (a serialisation failure is a permanent failure).
    pub fn done(output: impl Serialize) -> Self {
        match serde_json::to_value(output) {
            Ok(v) => StepOutcome::Done(v),
            Err(e) => StepOutcome::Fail(format!("step output is not serialisable: {e}")),
        }
    }

    /// `Done` with no output.
    pub fn done_empty() -> Self {
        StepOutcome::Done(Value::Null)
    }

    /// `Pending` with `output` serialised.
    pub fn pending(output: impl Serialize, recheck_after: Duration) -> Self {
        match serde_json::to_value(output) {
            Ok(output) => StepOutcome::Pending {
                output,
                recheck_after,
            },
            Err(e) => StepOutcome::Fail(format!("step output is not serialisable: {e}")),
        }
    }

    /// A transient failure.
    pub fn retry(error: impl fmt::Display) -> Self {
        StepOutcome::Retry(error.to_string())
    }

    /// A permanent failure.
    pub fn fail(error: impl fmt::Display) -> Self {
        StepOutcome::Fail(error.to_string())
    }
}

/// A value in the step context could not be read as the type asked for. When it does not
/// decode, serde_json's error is its [`std::error::Error::source`] (and its text the reason).
#[derive(Debug, Clone)]
pub struct ContextError {
    /// The saga.
    pub saga_id: SagaId,
    /// The step.
    pub step: usize,
    /// Which value (`data`, `output of "mint"`, `previous output`).
    pub what: String,
    /// Missing, or why it does not decode.
    pub reason: String,
    /// The decoder's error, if any.
    source: SharedCause,
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "saga {} step {}: {} {}",
            self.saga_id, self.step, self.what, self.reason
        )
    }
}

impl std::error::Error for ContextError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.get()
    }
}

impl From<ContextError> for StepOutcome {
    /// Bad data does not get better by retrying: a permanent failure.
    fn from(e: ContextError) -> Self {
        StepOutcome::Fail(e.to_string())
    }
}

/// Everything a step's action or compensation is given.
#[derive(Debug, Clone)]
pub struct StepContext {
    /// The saga.
    pub saga_id: SagaId,
    /// Its kind.
    pub kind: String,
    /// The step index (0-based).
    pub step: usize,
    /// The step's name.
    pub name: String,
    /// Action or compensation.
    pub phase: Phase,
    /// Attempt number of this phase (1-based; a re-run after a crash counts; re-polls of a
    /// pending step keep the number of the attempt that acted).
    pub attempt: u32,
    /// Pass this to the outside world.
    pub idempotency_key: IdempotencyKey,
    /// What this phase reported with `Pending` last time, if it did.
    pub previous: Option<Value>,
    pub(crate) data: Value,
    pub(crate) outputs: BTreeMap<String, Value>,
}

impl StepContext {
    /// The saga's data as `T`.
    pub fn data<T: DeserializeOwned>(&self) -> std::result::Result<T, ContextError> {
        serde_json::from_value(self.data.clone()).map_err(|e| self.undecodable("data", e))
    }

    /// The saga's data as stored.
    pub fn data_json(&self) -> &Value {
        &self.data
    }

    /// The output of step `name` (an earlier step; for a compensation, also this step).
    pub fn output<T: DeserializeOwned>(&self, name: &str) -> std::result::Result<T, ContextError> {
        let what = format!("output of {name:?}");
        let value = self
            .outputs
            .get(name)
            .ok_or_else(|| self.error(&what, "is missing".into(), SharedCause::default()))?;
        serde_json::from_value(value.clone()).map_err(|e| self.undecodable(&what, e))
    }

    /// The output of step `name` as stored, if it has one.
    pub fn output_json(&self, name: &str) -> Option<&Value> {
        self.outputs.get(name)
    }

    /// [`StepContext::previous`] as `T` (`None` on a first call).
    pub fn previous<T: DeserializeOwned>(&self) -> std::result::Result<Option<T>, ContextError> {
        match &self.previous {
            None => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| self.undecodable("previous output", e)),
        }
    }

    fn error(&self, what: &str, reason: String, source: SharedCause) -> ContextError {
        ContextError {
            saga_id: self.saga_id,
            step: self.step,
            what: what.to_string(),
            reason,
            source,
        }
    }

    /// `what` does not decode, for the reason `e` gives (kept as the source).
    fn undecodable(&self, what: &str, e: serde_json::Error) -> ContextError {
        self.error(what, e.to_string(), SharedCause::new(e))
    }
}

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A step's action or compensation. Implemented for every
/// `Fn(StepContext) -> impl Future<Output = StepOutcome>`; implement it by hand for a
/// struct holding adapters.
pub trait StepFn: Send + Sync + 'static {
    /// Runs once. May be called again with the same idempotency key (retry, crash,
    /// timeout), so its effect must be idempotent under that key.
    fn call(&self, ctx: StepContext) -> BoxFuture<StepOutcome>;
}

impl<F, Fut> StepFn for F
where
    F: Fn(StepContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = StepOutcome> + Send + 'static,
{
    fn call(&self, ctx: StepContext) -> BoxFuture<StepOutcome> {
        Box::pin(self(ctx))
    }
}

/// One step of a saga kind.
#[derive(Clone)]
pub struct StepDef {
    pub(crate) name: String,
    pub(crate) action: Arc<dyn StepFn>,
    pub(crate) compensation: Option<Arc<dyn StepFn>>,
    pub(crate) timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) compensation_retry: RetryPolicy,
}

impl fmt::Debug for StepDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepDef")
            .field("name", &self.name)
            .field("compensable", &self.compensation.is_some())
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("compensation_retry", &self.compensation_retry)
            .finish()
    }
}

impl StepDef {
    /// A step running `action`, without compensation (nothing to undo), a 30 s timeout,
    /// the default retry policy and, for compensations, 10 attempts up to 5 minutes apart.
    pub fn new(name: impl Into<String>, action: impl StepFn) -> Self {
        Self {
            name: name.into(),
            action: Arc::new(action),
            compensation: None,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            compensation_retry: RetryPolicy::exponential(
                10,
                Duration::from_secs(1),
                Duration::from_secs(300),
            ),
        }
    }

    /// Undoes the action. Called only if the action may have had an effect (it succeeded,
    /// is awaiting finality, or ran out of attempts), in reverse step order; retried until
    /// it succeeds or its policy gives up (the saga is then `stuck`). It must tolerate an
    /// effect that never happened.
    pub fn compensate(mut self, compensation: impl StepFn) -> Self {
        self.compensation = Some(Arc::new(compensation));
        self
    }

    /// How long one call may take; past it the call is abandoned and counts as a transient
    /// failure (its effect may still happen: the retry uses the same idempotency key).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Retry policy of the action.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Retry policy of the compensation.
    pub fn compensation_retry(mut self, policy: RetryPolicy) -> Self {
        self.compensation_retry = policy;
        self
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A saga kind: a name and its ordered steps.
#[derive(Debug, Clone)]
pub struct SagaDefinition {
    pub(crate) kind: String,
    pub(crate) steps: Vec<StepDef>,
}

impl SagaDefinition {
    /// An empty definition of `kind`; add steps with [`SagaDefinition::step`].
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            steps: Vec::new(),
        }
    }

    /// Appends a step.
    pub fn step(mut self, step: StepDef) -> Self {
        self.steps.push(step);
        self
    }

    /// The kind's name.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[StepDef] {
        &self.steps
    }

    fn validate(&self) -> Result<()> {
        let invalid = |reason: String| SagaError::InvalidDefinition {
            kind: self.kind.clone(),
            reason,
        };
        if self.kind.is_empty() || self.kind.len() > 64 {
            return Err(invalid("the kind must be 1-64 characters".into()));
        }
        if self.steps.is_empty() {
            return Err(invalid("a saga needs at least one step".into()));
        }
        let mut seen = HashMap::new();
        for (i, s) in self.steps.iter().enumerate() {
            if let Some(first) = seen.insert(s.name.as_str(), i) {
                return Err(invalid(format!(
                    "steps {first} and {i} are both named {:?}",
                    s.name
                )));
            }
            if s.timeout.is_zero() {
                return Err(invalid(format!("step {:?} has a zero timeout", s.name)));
            }
        }
        Ok(())
    }
}

/// The saga kinds an executor can run.
#[derive(Debug, Clone, Default)]
pub struct SagaRegistry {
    kinds: HashMap<String, Arc<SagaDefinition>>,
}

impl SagaRegistry {
    /// No kinds.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `definition`; refuses an invalid one or a kind registered twice.
    pub fn register(&mut self, definition: SagaDefinition) -> Result<&mut Self> {
        definition.validate()?;
        if self.kinds.contains_key(&definition.kind) {
            return Err(SagaError::InvalidDefinition {
                kind: definition.kind,
                reason: "registered twice".into(),
            });
        }
        self.kinds
            .insert(definition.kind.clone(), Arc::new(definition));
        Ok(self)
    }

    /// The definition of `kind`.
    pub fn get(&self, kind: &str) -> Option<Arc<SagaDefinition>> {
        self.kinds.get(kind).cloned()
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> Vec<String> {
        let mut k: Vec<String> = self.kinds.keys().cloned().collect();
        k.sort();
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn noop(_: StepContext) -> StepOutcome {
        StepOutcome::done_empty()
    }

    #[test]
    fn a_definition_without_steps_or_with_twin_names_is_refused() {
        let mut reg = SagaRegistry::new();
        assert!(reg.register(SagaDefinition::new("empty")).is_err());
        let twins = SagaDefinition::new("twins")
            .step(StepDef::new("a", noop))
            .step(StepDef::new("a", noop));
        let err = reg.register(twins).expect_err("twin names");
        assert!(err.to_string().contains("\"a\""), "{err}");
        assert!(reg.kinds().is_empty());
    }

    #[test]
    fn a_kind_registers_once() {
        let mut reg = SagaRegistry::new();
        let def = || SagaDefinition::new("k").step(StepDef::new("a", noop));
        reg.register(def()).expect("first");
        assert!(reg.register(def()).is_err());
        assert_eq!(reg.kinds(), vec!["k".to_string()]);
    }

    #[test]
    fn bad_context_data_is_a_permanent_failure_naming_the_value() {
        let id = SagaId::derived("k", "1");
        let ctx = StepContext {
            saga_id: id,
            kind: "k".into(),
            step: 0,
            name: "a".into(),
            phase: Phase::Action,
            attempt: 1,
            idempotency_key: IdempotencyKey {
                saga_id: id,
                step: 0,
                phase: Phase::Action,
            },
            previous: None,
            data: serde_json::json!({"n": "not a number"}),
            outputs: BTreeMap::new(),
        };
        #[derive(serde::Deserialize, Debug)]
        struct D {
            #[allow(dead_code)]
            n: u32,
        }
        let err = ctx.data::<D>().expect_err("bad data");
        assert!(matches!(
            StepOutcome::from(err.clone()),
            StepOutcome::Fail(_)
        ));
        assert!(err.to_string().contains("data"), "{err}");
        let missing = ctx.output::<u32>("mint").expect_err("missing");
        assert!(missing.to_string().contains("mint"), "{missing}");
        // The decoder's error is kept as the source (a missing value has none).
        use std::error::Error as _;
        let source = err.source().expect("kept");
        assert!(
            source.downcast_ref::<serde_json::Error>().is_some(),
            "{source:?}"
        );
        assert!(err.to_string().ends_with(&source.to_string()), "{err}");
        assert!(missing.source().is_none(), "{missing}");
    }
}
