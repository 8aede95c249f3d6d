//! Retry policy: exponential backoff with jitter. Pure: the random part comes in as an
//! argument, so the schedule is tested without sleeping.

use std::time::Duration;

use merit_messages::Backoff;

/// How often and how patiently a step (or its compensation) is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included (at least 1).
    pub max_attempts: u32,
    /// Wait after the first failed attempt.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Growth of the wait per failed attempt.
    pub multiplier: f64,
    /// Fraction of the wait taken off at random (0: none, 1: "full jitter"), so that many
    /// sagas failing together do not retry together.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// `max_attempts` attempts, doubling from `initial` up to `max`, 20 % jitter.
    pub fn exponential(max_attempts: u32, initial: Duration, max: Duration) -> Self {
        Self {
            max_attempts,
            initial_backoff: initial,
            max_backoff: max,
            ..Self::default()
        }
    }

    /// One attempt, no retry.
    pub fn once() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The same policy without jitter (deterministic waits, for tests and tight loops).
    pub fn without_jitter(self) -> Self {
        Self {
            jitter: 0.0,
            ..self
        }
    }

    /// Whether another attempt is allowed after `attempts` attempts.
    pub fn allows_another(&self, attempts: u32) -> bool {
        attempts < self.max_attempts.max(1)
    }

    /// The wait after failed attempt number `attempt` (1-based), given a uniform random
    /// `unit` in `[0, 1)`: `min(max, initial * multiplier^(attempt-1)) * (1 - jitter * unit)`.
    pub fn backoff(&self, attempt: u32, unit: f64) -> Duration {
        Backoff {
            initial: self.initial_backoff,
            max: self.max_backoff,
            multiplier: self.multiplier,
            jitter: self.jitter,
        }
        .delay_for(attempt.saturating_sub(1), unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::exponential(6, Duration::from_millis(100), Duration::from_secs(1))
    }

    #[test]
    fn backoff_doubles_until_the_cap() {
        let p = policy();
        let waits: Vec<u128> = (1..=6).map(|a| p.backoff(a, 0.0).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_only_shortens_and_by_at_most_its_fraction() {
        let p = policy();
        for a in 1..=6 {
            let full = p.backoff(a, 0.0);
            for unit in [0.0, 0.25, 0.5, 0.999] {
                let w = p.backoff(a, unit);
                assert!(w <= full, "attempt {a} unit {unit}: {w:?} > {full:?}");
                assert!(w.as_secs_f64() >= full.as_secs_f64() * (1.0 - p.jitter) - 1e-9);
            }
        }
        assert!(p.backoff(3, 0.9) < p.backoff(3, 0.1));
    }

    #[test]
    fn huge_attempt_numbers_stay_at_the_cap() {
        let p = policy().without_jitter();
        assert_eq!(p.backoff(u32::MAX, 0.5), Duration::from_secs(1));
    }

    #[test]
    fn attempts_are_bounded() {
        let p = RetryPolicy::exponential(3, Duration::ZERO, Duration::ZERO);
        assert!(p.allows_another(2));
        assert!(!p.allows_another(3));
        assert!(!RetryPolicy::once().allows_another(1));
    }
}
