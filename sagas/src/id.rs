//! Saga ids and the idempotency keys steps hand to the outside world.

use std::{fmt, str::FromStr};

use merit_messages::MERIT_NAMESPACE;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A saga instance's id. Deterministic ids ([`SagaId::derived`]) make `start` idempotent
/// across redeliveries of whatever started the saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SagaId(pub Uuid);

impl SagaId {
    /// A random id.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// `uuid5(MERIT_NAMESPACE, "saga:{kind}:{key}")`: the same business key (e.g. an
    /// achievement id) always names the same saga.
    pub fn derived(kind: &str, key: &str) -> Self {
        let name = format!("saga:{kind}:{key}");
        Self(Uuid::new_v5(&MERIT_NAMESPACE, name.as_bytes()))
    }
}

impl fmt::Display for SagaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for SagaId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(Uuid::parse_str(s)?))
    }
}

/// Whether a step's action or its compensation is being called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Moving forward.
    Action,
    /// Undoing.
    Compensation,
}

/// The key an action must pass to the outside world (a contract call's nonce source, an
/// HTTP `Idempotency-Key`, a unique column) so that running it again — after a crash, a
/// timeout or a retry — has the effect of running it once. It is stable across attempts,
/// restarts and nodes: `(saga id, step index, phase)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey {
    /// The saga.
    pub saga_id: SagaId,
    /// The step index.
    pub step: usize,
    /// Action or compensation (they must not share a key).
    pub phase: Phase,
}

impl fmt::Display for IdempotencyKey {
    /// `"{saga_id}:{step}"` for an action, `"{saga_id}:{step}:undo"` for a compensation.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.phase {
            Phase::Action => write!(f, "{}:{}", self.saga_id, self.step),
            Phase::Compensation => write!(f, "{}:{}:undo", self.saga_id, self.step),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct_per_kind() {
        assert_eq!(SagaId::derived("a", "k"), SagaId::derived("a", "k"));
        assert_ne!(SagaId::derived("a", "k"), SagaId::derived("b", "k"));
    }

    #[test]
    fn action_and_compensation_keys_differ() {
        let id = SagaId::derived("a", "k");
        let act = IdempotencyKey {
            saga_id: id,
            step: 1,
            phase: Phase::Action,
        };
        let undo = IdempotencyKey {
            phase: Phase::Compensation,
            ..act
        };
        assert_eq!(act.to_string(), format!("{id}:1"));
        assert_eq!(undo.to_string(), format!("{id}:1:undo"));
    }
}
