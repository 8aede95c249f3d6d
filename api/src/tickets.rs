//! Short-lived, single-use tickets for the dashboard's live feed.
//!
//! A browser's `EventSource` cannot send an `Authorization` header, and the admin token
//! must never travel in a URL (URLs end up in proxy logs, browser history and `Referer`).
//! So the page asks `POST /api/v1/admin/stream-ticket` with the admin bearer for a ticket,
//! and opens `/dashboard/events?ticket=…`: a random value valid for
//! [`TICKET_TTL`] and accepted once. Tickets live in this node's memory: a ticket works
//! only on the node that issued it (the dashboard connects to the node it loaded from).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use rand::{distributions::Alphanumeric, Rng};
use sha2::{Digest, Sha256};

/// How long a ticket is accepted.
pub(crate) const TICKET_TTL: Duration = Duration::from_secs(30);
/// Tickets held at most; past it the oldest go (an admin-only endpoint issues them).
const MAX_TICKETS: usize = 10_000;

/// Outstanding tickets by SHA-256 digest (the values themselves are not kept). Debug shows
/// only how many there are.
pub(crate) struct StreamTickets {
    ttl: Duration,
    issued: Mutex<HashMap<[u8; 32], Instant>>,
}

impl std::fmt::Debug for StreamTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.issued.lock().map(|m| m.len()).unwrap_or_default();
        write!(f, "StreamTickets({n} outstanding)")
    }
}

impl Default for StreamTickets {
    fn default() -> Self {
        Self::new(TICKET_TTL)
    }
}

/// Why a ticket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Never issued here, already used, or expired and swept.
    Unknown,
    /// Issued, but past its lifetime.
    Expired,
}

impl StreamTickets {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            issued: Mutex::new(HashMap::new()),
        }
    }

    /// A new ticket and its lifetime.
    pub(crate) fn issue(&self) -> (String, Duration) {
        let ticket: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(43)
            .map(char::from)
            .collect();
        let now = Instant::now();
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        issued.retain(|_, until| *until > now);
        if issued.len() >= MAX_TICKETS {
            if let Some(oldest) = issued
                .iter()
                .min_by_key(|(_, until)| **until)
                .map(|(k, _)| *k)
            {
                issued.remove(&oldest);
            }
        }
        issued.insert(digest(&ticket), now + self.ttl);
        (ticket, self.ttl)
    }

    /// Accepts `ticket` once, if it is outstanding and unexpired.
    pub(crate) fn redeem(&self, ticket: &str) -> Result<(), Refused> {
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        match issued.remove(&digest(ticket)) {
            None => Err(Refused::Unknown),
            Some(until) if until <= Instant::now() => Err(Refused::Expired),
            Some(_) => Ok(()),
        }
    }
}

fn digest(ticket: &str) -> [u8; 32] {
    Sha256::digest(ticket.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_is_accepted_once() {
        let tickets = StreamTickets::default();
        let (ticket, ttl) = tickets.issue();
        assert_eq!(ttl, TICKET_TTL);
        assert!(ticket.len() >= 32);
        assert!(!format!("{tickets:?}").contains(&ticket));
        assert_eq!(tickets.redeem(&ticket), Ok(()));
        assert_eq!(tickets.redeem(&ticket), Err(Refused::Unknown), "reused");
        assert_eq!(tickets.redeem("made-up"), Err(Refused::Unknown));
        assert_ne!(tickets.issue().0, tickets.issue().0);
    }

    #[test]
    fn an_expired_ticket_is_refused() {
        let tickets = StreamTickets::new(Duration::from_millis(10));
        let (ticket, _) = tickets.issue();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(tickets.redeem(&ticket), Err(Refused::Expired));
        assert_eq!(tickets.redeem(&ticket), Err(Refused::Unknown));
    }
}
