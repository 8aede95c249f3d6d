//! The states a saga and its steps go through, and the one place their names are spelled.
//!
//! ```text
//! saga:  running ──▶ completed
//!           │ a step fails for good
//!           ▼
//!        compensating ──▶ compensated
//!           │ a compensation gives up
//!           ▼
//!        stuck (operator)          failed: could not run at all (unknown kind, bad data)
//!
//! step:  pending ─▶ running ─▶ done
//!                     │  ▲ ╲─▶ awaiting (re-polled) ─▶ done
//!                     ▼  │
//!                   retrying          running ─▶ failed (permanent: no effect)
//!                                     running ─▶ exhausted (retries ran out: effect unknown)
//!        done | awaiting | exhausted ─▶ compensating ─▶ (compensation_awaiting) ─▶ compensated
//! ```

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::error::SagaError;

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The name stored in the database and shown to operators.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = SagaError;
            fn from_str(s: &str) -> Result<Self, SagaError> {
                match s {
                    $($text => Ok($name::$variant),)*
                    other => Err(SagaError::UnknownState {
                        what: stringify!($name),
                        value: other.to_string(),
                    }),
                }
            }
        }
    };
}

named_enum!(
    /// Where a saga stands.
    SagaState {
        /// Running its steps forward.
        Running => "running",
        /// A step failed for good; undoing the completed steps in reverse order.
        Compensating => "compensating",
        /// Every step done. Final.
        Completed => "completed",
        /// Every step that may have had an effect was undone. Final.
        Compensated => "compensated",
        /// Could not run at all (its kind is not registered, its data is unreadable).
        /// Final until an operator retries it.
        Failed => "failed",
        /// A compensation gave up: the world may be half-changed. Final until an operator
        /// retries it.
        Stuck => "stuck",
    }
);

impl SagaState {
    /// Whether an executor still has work to do on a saga in this state.
    pub fn is_active(self) -> bool {
        matches!(self, SagaState::Running | SagaState::Compensating)
    }

    /// Whether an operator may [`retry`](crate::SagaExecutor::retry) it.
    pub fn is_retryable(self) -> bool {
        matches!(self, SagaState::Failed | SagaState::Stuck)
    }
}

named_enum!(
    /// Where one step stands.
    StepState {
        /// Not reached yet.
        Pending => "pending",
        /// Its action was called and has not answered yet (re-run on resume).
        Running => "running",
        /// Its action failed transiently; due again after a backoff.
        Retrying => "retrying",
        /// Its action acted and waits for finality (re-polled with its last output).
        Awaiting => "awaiting",
        /// Its action succeeded.
        Done => "done",
        /// Its action failed permanently and reported no effect.
        Failed => "failed",
        /// Its action ran out of attempts: its effect is unknown, so it is compensated too.
        Exhausted => "exhausted",
        /// Its compensation is being run (re-run on resume).
        Compensating => "compensating",
        /// Its compensation acted and waits for finality.
        CompensationAwaiting => "compensation_awaiting",
        /// Its compensation succeeded.
        Compensated => "compensated",
    }
);

impl StepState {
    /// Whether the step may have changed the world, so that compensation must undo it.
    pub fn needs_compensation(self) -> bool {
        matches!(
            self,
            StepState::Done
                | StepState::Awaiting
                | StepState::Exhausted
                | StepState::Running
                | StepState::Retrying
                | StepState::Compensating
                | StepState::CompensationAwaiting
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_name_round_trips() {
        for s in SagaState::ALL {
            assert_eq!(s.as_str().parse::<SagaState>().expect("parse"), *s);
        }
        for s in StepState::ALL {
            assert_eq!(s.as_str().parse::<StepState>().expect("parse"), *s);
        }
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_value() {
        let err = "halfway".parse::<SagaState>().expect_err("unknown");
        assert!(err.to_string().contains("halfway"), "{err}");
    }

    #[test]
    fn only_steps_that_may_have_acted_are_compensated() {
        assert!(StepState::Done.needs_compensation());
        assert!(StepState::Exhausted.needs_compensation());
        assert!(!StepState::Failed.needs_compensation());
        assert!(!StepState::Pending.needs_compensation());
        assert!(!StepState::Compensated.needs_compensation());
    }
}
