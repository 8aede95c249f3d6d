//! The operator's retry of a `failed` or `stuck` saga: where it resumes, and the write
//! that reopens it.

use chrono::Utc;
use merit_storage::{
    entities::{saga, saga_step},
    sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set},
};
use tracing::info;

use super::SagaExecutor;
use crate::{
    error::{Result, SagaError},
    id::SagaId,
    state::{SagaState, StepState},
    view::{self, SagaView},
};

impl SagaExecutor {
    /// Operator retry of a `failed` or `stuck` saga. A stuck saga resumes its compensation
    /// with a fresh attempt budget for the step that gave up; a failed one resumes where
    /// it stopped (forward, or backward if it was compensating).
    #[tracing::instrument(skip(self), fields(saga_id = %id))]
    pub async fn retry(&self, id: SagaId) -> Result<SagaView> {
        let (row, steps) = view::load(self.inner.store.db(), id)
            .await?
            .ok_or_else(|| SagaError::NotFound { id: id.to_string() })?;
        let state: SagaState = row.state.parse()?;
        if !state.is_retryable() {
            return Err(SagaError::InvalidState {
                id: id.to_string(),
                state: state.to_string(),
                reason: "only failed or stuck sagas can be retried",
            });
        }
        if self.inner.registry.get(&row.kind).is_none() {
            return Err(SagaError::UnknownKind {
                kind: row.kind,
                registered: self.inner.registry.kinds(),
            });
        }
        let resumed = resumed_state(state, &steps);
        let ok = self
            .reopen(id, state, row.state.clone(), resumed, row.current_step)
            .await?;
        if !ok {
            return Err(SagaError::InvalidState {
                id: id.to_string(),
                state: state.to_string(),
                reason: "it changed while being retried",
            });
        }
        info!(from = %state, to = %resumed, "operator retry");
        self.spawn_driver(id);
        self.get(id)
            .await?
            .ok_or_else(|| SagaError::NotFound { id: id.to_string() })
    }
    /// Moves a `failed` or `stuck` saga (still in `state`, stored as `previous`) to
    /// `resumed`, unleased and due now; a stuck saga's step `current` gets a fresh
    /// compensation budget. `false` if the saga's state changed meanwhile.
    async fn reopen(
        &self,
        id: SagaId,
        state: SagaState,
        previous: String,
        resumed: SagaState,
        current: i32,
    ) -> Result<bool> {
        self.inner
            .store
            .write(move |txn| {
                Box::pin(async move {
                    let now = Utc::now();
                    let res = saga::Entity::update_many()
                        .set(saga::ActiveModel {
                            state: Set(resumed.as_str().into()),
                            next_attempt_at: Set(None),
                            lease_owner: Set(None),
                            lease_until: Set(None),
                            updated_at: Set(now),
                            ..Default::default()
                        })
                        .filter(saga::Column::Id.eq(id.to_string()))
                        .filter(saga::Column::State.eq(previous))
                        .exec(txn)
                        .await?;
                    if res.rows_affected == 1 && state == SagaState::Stuck {
                        saga_step::Entity::update_many()
                            .set(saga_step::ActiveModel {
                                compensation_attempts: Set(0),
                                next_attempt_at: Set(None),
                                updated_at: Set(now),
                                ..Default::default()
                            })
                            .filter(saga_step::Column::SagaId.eq(id.to_string()))
                            .filter(saga_step::Column::Step.eq(current))
                            .exec(txn)
                            .await?;
                    }
                    Ok(res.rows_affected == 1)
                })
            })
            .await
            .map_err(Into::into)
    }
}

/// Where an operator retry resumes a saga: backward if it is stuck or any step shows the
/// compensation had begun, forward otherwise.
fn resumed_state(state: SagaState, steps: &[saga_step::Model]) -> SagaState {
    let backward = state == SagaState::Stuck
        || steps.iter().any(|s| {
            s.state.parse::<StepState>().is_ok_and(|st| {
                matches!(
                    st,
                    StepState::Failed
                        | StepState::Exhausted
                        | StepState::Compensating
                        | StepState::CompensationAwaiting
                        | StepState::Compensated
                )
            })
        });
    if backward {
        SagaState::Compensating
    } else {
        SagaState::Running
    }
}
