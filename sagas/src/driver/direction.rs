//! Which way a saga moves: forward through the steps' actions or backward through their
//! compensations, and what differs between the two ways.

use merit_storage::{entities::saga_step, sea_orm::Set};

use crate::{definition::StepDef, id::Phase, state::StepState};

/// Which way the saga moves, and what differs between the two ways: forward runs each
/// step's action from the first step on, backward runs their compensations from the last
/// step reached back to the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    Forward,
    Backward,
}

impl Direction {
    pub(super) fn phase(self) -> Phase {
        match self {
            Direction::Forward => Phase::Action,
            Direction::Backward => Phase::Compensation,
        }
    }

    /// The span's `phase` field.
    pub(super) fn label(self) -> &'static str {
        match self {
            Direction::Forward => "action",
            Direction::Backward => "compensation",
        }
    }

    /// The index the saga moves to once step `i` is finished.
    pub(super) fn next(self, i: usize) -> i32 {
        match self {
            Direction::Forward => i as i32 + 1,
            Direction::Backward => i as i32 - 1,
        }
    }

    pub(super) fn retry(self, sdef: &StepDef) -> &crate::RetryPolicy {
        match self {
            Direction::Forward => &sdef.retry,
            Direction::Backward => &sdef.compensation_retry,
        }
    }

    /// The attempts already counted for this direction's call of `step`.
    pub(super) fn attempts(self, step: &saga_step::Model) -> u32 {
        let n = match self {
            Direction::Forward => step.attempts,
            Direction::Backward => step.compensation_attempts,
        };
        u32::try_from(n).unwrap_or(0)
    }

    pub(super) fn set_attempts(self, step: &mut saga_step::ActiveModel, attempts: u32) {
        match self {
            Direction::Forward => step.attempts = Set(attempts as i32),
            Direction::Backward => step.compensation_attempts = Set(attempts as i32),
        }
    }

    /// The output a call answered with while it is not finished yet: the next call (a
    /// re-poll) gets it back as `previous`.
    pub(super) fn set_output(self, step: &mut saga_step::ActiveModel, output: serde_json::Value) {
        match self {
            Direction::Forward => step.output = Set(Some(output)),
            Direction::Backward => step.compensation_output = Set(Some(output)),
        }
    }

    /// The step's state while a call is in flight.
    pub(super) fn calling(self) -> StepState {
        match self {
            Direction::Forward => StepState::Running,
            Direction::Backward => StepState::Compensating,
        }
    }

    /// The step's state while its effect awaits finality and is re-polled.
    pub(super) fn awaiting(self) -> StepState {
        match self {
            Direction::Forward => StepState::Awaiting,
            Direction::Backward => StepState::CompensationAwaiting,
        }
    }

    /// The step's state once this direction's call finished.
    pub(super) fn finished(self) -> StepState {
        match self {
            Direction::Forward => StepState::Done,
            Direction::Backward => StepState::Compensated,
        }
    }

    /// The step's state while waiting to retry; a compensation has none and stays
    /// `compensating`, which the next call counts as a new attempt all the same.
    pub(super) fn retrying(self) -> Option<StepState> {
        match self {
            Direction::Forward => Some(StepState::Retrying),
            Direction::Backward => None,
        }
    }

    pub(super) fn retrying_message(self) -> &'static str {
        match self {
            Direction::Forward => "step failed transiently: retrying",
            Direction::Backward => "compensation failed: retrying",
        }
    }
}
