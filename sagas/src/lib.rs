//! merit's saga engine: compensation-based sagas persisted in merit's database.
//!
//! Owns: saga definitions (ordered steps, each an action with an optional compensation, a
//! timeout and retry policies), the executor that runs them, and the saga log (`sagas`,
//! `saga_steps`) with leases.
//! Guarantees: a saga's steps run strictly in order; every transition is committed before
//! and after each call, so a crash re-runs at most the call in flight, under the same
//! idempotency key; a step that fails for good is followed by the compensations of every
//! step that may have acted, in reverse order; a compensation that gives up leaves the
//! saga `stuck`, visible and retryable — never silently dropped; one saga is driven by at
//! most one executor at a time (a fenced lease); `start` is idempotent by saga id.
//! Must not know: the domain — sagas call actors and adapters given to their steps; the
//! rules live there.

mod definition;
mod driver;
mod error;
mod executor;
mod id;
pub mod lease;
mod retry;
mod state;
mod view;

pub use definition::{
    BoxFuture, ContextError, SagaDefinition, SagaRegistry, StepContext, StepDef, StepFn,
    StepOutcome,
};
pub use error::{Result, SagaError};
pub use executor::{ExecutorOptions, SagaExecutor, Started};
pub use id::{IdempotencyKey, Phase, SagaId};
pub use retry::RetryPolicy;
pub use state::{SagaState, StepState};
pub use view::{SagaFilter, SagaPage, SagaSummary, SagaView, StepView, MAX_PAGE_SIZE};
