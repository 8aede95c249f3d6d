//! Pacing: how many paced messages each tick publishes.

use super::Profile;

/// Decides how many paced messages are due: what the profile offers at the rate since
/// the paced phase began, less what was issued, with at most one second's worth of
/// backlog (a broker slower than the offered load is shown by the achieved rate, not
/// made up later: the excess is skipped for good).
#[derive(Debug)]
pub(super) struct Pacer {
    profile: Profile,
    rate: f64,
    issued: u64,
    skipped: u64,
}

impl Pacer {
    pub(super) fn new(profile: Profile, rate: f64) -> Self {
        Self {
            profile,
            rate,
            issued: 0,
            skipped: 0,
        }
    }

    /// Messages due `t` seconds into the paced phase.
    pub(super) fn due(&mut self, t: f64) -> u64 {
        let target = self.profile.due(self.rate, t).floor() as u64;
        let due = target.saturating_sub(self.issued + self.skipped);
        let cap = self.rate.ceil().max(1.0) as u64;
        if due > cap {
            self.skipped += due - cap;
            return cap;
        }
        due
    }

    /// Counts `n` messages as issued (fewer than were due when the window was full).
    pub(super) fn issued(&mut self, n: u64) {
        self.issued += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_offers_the_rate_tick_by_tick() {
        let mut p = Pacer::new(Profile::Steady, 100.0);
        assert_eq!(p.due(0.0), 0);
        assert_eq!(p.due(0.25), 25);
        p.issued(25);
        assert_eq!(p.due(0.5), 25);
        // What a full confirm window held back is still due at the next tick.
        p.issued(5);
        assert_eq!(p.due(0.75), 45);
        assert_eq!(p.skipped, 0);
    }

    #[test]
    fn the_pacer_skips_a_backlog_over_one_second() {
        let mut p = Pacer::new(Profile::Steady, 100.0);
        // Five seconds without a tick: one second's worth is due, the rest skipped for good.
        assert_eq!(p.due(5.0), 100);
        assert_eq!(p.skipped, 400);
        p.issued(100);
        assert_eq!(p.due(5.0), 0);
        assert_eq!(p.due(5.5), 50);
        // Below one event per second the backlog is still one message, not none.
        let mut slow = Pacer::new(Profile::Steady, 0.5);
        assert_eq!(slow.due(10.0), 1);
        assert_eq!(slow.skipped, 4);
    }

    #[test]
    fn the_pacer_follows_the_bursty_profile() {
        let mut p = Pacer::new(Profile::Bursty, 100.0);
        assert_eq!(p.due(0.25), 75);
        p.issued(75);
        // A burst is capped at one second of the average rate too.
        assert_eq!(p.due(1.0), 100);
        assert_eq!(p.skipped, 125);
        p.issued(100);
        assert_eq!(p.due(2.5), 0);
        assert_eq!(p.due(3.25), 75);
    }

    #[test]
    fn bursty_has_the_steady_average() {
        let (steady, bursty) = (Profile::Steady, Profile::Bursty);
        for t in [3.0, 6.0, 30.0] {
            assert!((steady.due(100.0, t) - bursty.due(100.0, t)).abs() < 1e-6);
        }
        assert!((bursty.due(100.0, 1.0) - 300.0).abs() < 1e-6);
        assert!((bursty.due(100.0, 2.5) - 300.0).abs() < 1e-6);
    }
}
