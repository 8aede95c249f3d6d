//! One backoff schedule for every retry in merit: the wait grows by a factor per failed
//! try up to a cap, and part of each wait is taken off at random, so that retriers that
//! failed together (nodes after a broker restart, actors after a database outage, sagas
//! behind one chain fault) do not retry in step.
//!
//! Pure at its core: [`Backoff::delay_for`] takes the random part as an argument, so a
//! schedule is tested without sleeping; [`Backoff::delay`] draws it.

use std::time::Duration;

/// An exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The wait before the first retry, before jitter.
    pub initial: Duration,
    /// The longest wait, before jitter.
    pub max: Duration,
    /// Growth per failed try (at least 1).
    pub multiplier: f64,
    /// Fraction of each wait taken off at random: 0 none, 0.5 the upper half jittered
    /// (the default), 1 "full jitter".
    pub jitter: f64,
}

impl Backoff {
    /// Doubling from `initial` up to `max`, with the upper half of each wait jittered.
    pub const fn exponential(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            multiplier: 2.0,
            jitter: 0.5,
        }
    }

    /// The same schedule with `jitter` (clamped to 0..=1) taken off at random.
    pub const fn with_jitter(self, jitter: f64) -> Self {
        Self { jitter, ..self }
    }

    /// The wait before retry number `retry` (0 for the first), given a uniform `unit` in
    /// `[0, 1)`: `min(max, initial · multiplier^retry) · (1 − jitter · unit)`.
    pub fn delay_for(&self, retry: u32, unit: f64) -> Duration {
        let growth = self.multiplier.max(1.0).powi(retry.min(64) as i32);
        let max = self.max.as_secs_f64();
        let base = (self.initial.as_secs_f64() * growth).min(max);
        let jitter = self.jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0);
        let secs = (base * (1.0 - jitter)).max(0.0);
        if secs.is_finite() {
            Duration::from_secs_f64(secs)
        } else {
            self.max
        }
    }

    /// [`Backoff::delay_for`] with a random `unit`.
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_for(retry, rand::random::<f64>())
    }
}

/// A retry loop's wait: [`Backoff::delay`] for the next retry, counting the retries since
/// the last [`Retrying::reset`].
#[derive(Debug, Clone)]
pub struct Retrying {
    backoff: Backoff,
    retries: u32,
}

impl Retrying {
    /// Starts counting retries of `backoff`.
    pub fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            retries: 0,
        }
    }

    /// The wait before the next retry; each call counts one more.
    pub fn next_delay(&mut self) -> Duration {
        let wait = self.backoff.delay(self.retries);
        self.retries = self.retries.saturating_add(1);
        wait
    }

    /// Back to the first wait (after a success).
    pub fn reset(&mut self) {
        self.retries = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn grows_by_the_multiplier_until_the_cap() {
        let b = Backoff::exponential(MS(100), MS(1_000));
        let waits: Vec<u128> = (0..6).map(|r| b.delay_for(r, 0.0).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(b.delay_for(u32::MAX, 0.0), MS(1_000), "no overflow");
    }

    #[test]
    fn jitter_takes_off_at_most_its_fraction() {
        let b = Backoff::exponential(MS(100), MS(1_000));
        for unit in [0.0, 0.25, 0.5, 0.999] {
            let w = b.delay_for(3, unit);
            assert!(w <= MS(800) && w >= MS(400), "{unit}: {w:?}");
        }
        assert_eq!(b.with_jitter(0.0).delay_for(3, 0.9), MS(800));
        assert!(b.with_jitter(1.0).delay_for(3, 0.999) < MS(1));
        for r in 0..20 {
            assert!(b.delay(r) <= MS(1_000));
        }
    }

    #[test]
    fn a_retry_loop_counts_and_resets() {
        let mut r = Retrying::new(Backoff::exponential(MS(10), MS(40)).with_jitter(0.0));
        let waits: Vec<Duration> = (0..4).map(|_| r.next_delay()).collect();
        assert_eq!(waits, [MS(10), MS(20), MS(40), MS(40)]);
        r.reset();
        assert_eq!(r.next_delay(), MS(10));
    }
}
