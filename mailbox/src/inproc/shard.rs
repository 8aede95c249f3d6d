//! One in-process shard queue: ready messages in publish order, the active consumer's
//! in-flight messages, and the consumers waiting to take over (single active consumer).
//!
//! Every message keeps the sequence number it was given when published. Ready messages
//! are ordered by it, so a message that comes back (requeued, or returned because its
//! consumer went away) goes back in front of everything published after it — at the
//! head of the shard, in its original order relative to the other returned messages.
//! That keeps per-key order across redeliveries.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::delivery::Delivery;

/// A queued message.
#[derive(Debug, Clone)]
pub(crate) struct Msg {
    pub(crate) routing_key: String,
    pub(crate) body: Bytes,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) message_id: Option<String>,
    pub(crate) correlation_id: Option<String>,
    pub(crate) redelivered: bool,
    pub(crate) delivery_count: u32,
    pub(crate) origin: merit_messages::Origin,
}

impl Msg {
    /// The message as it comes back after an unacked delivery.
    fn returned(mut self) -> Self {
        self.redelivered = true;
        self.delivery_count = self.delivery_count.saturating_add(1);
        self
    }
}

/// A consumer of the shard; the first one in the line is the active one.
pub(crate) struct Slot {
    pub(crate) id: u64,
    pub(crate) tx: mpsc::Sender<Delivery>,
    pub(crate) prefetch: usize,
}

#[derive(Default)]
pub(crate) struct Shard {
    next_seq: u64,
    ready: BTreeMap<u64, Msg>,
    in_flight: BTreeMap<u64, Msg>,
    consumers: VecDeque<Slot>,
}

impl Shard {
    /// Appends a newly published message.
    pub(crate) fn push(&mut self, msg: Msg) {
        self.ready.insert(self.next_seq, msg);
        self.next_seq += 1;
    }

    pub(crate) fn ready_len(&self) -> usize {
        self.ready.len()
    }

    pub(crate) fn add_consumer(&mut self, slot: Slot) {
        self.consumers.push_back(slot);
    }

    /// The active consumer, if it has room for one more in-flight message.
    pub(crate) fn active_with_room(&self) -> Option<&Slot> {
        self.consumers
            .front()
            .filter(|s| self.in_flight.len() < s.prefetch)
    }

    pub(crate) fn active_id(&self) -> Option<u64> {
        self.consumers.front().map(|s| s.id)
    }

    /// Whether consumer `id` is active and its receiver was dropped.
    pub(crate) fn active_is_gone(&self, id: u64) -> bool {
        self.consumers
            .front()
            .is_some_and(|s| s.id == id && s.tx.is_closed())
    }

    /// Takes the next ready message into flight.
    pub(crate) fn start_next(&mut self) -> Option<(u64, Msg)> {
        let (seq, msg) = self.ready.pop_first()?;
        self.in_flight.insert(seq, msg.clone());
        Some((seq, msg))
    }

    /// Undoes [`Self::start_next`] for a message that could not be handed over.
    pub(crate) fn unstart(&mut self, seq: u64) {
        if let Some(msg) = self.in_flight.remove(&seq) {
            self.ready.insert(seq, msg);
        }
    }

    /// Removes in-flight message `seq` of consumer `consumer`; `None` if that consumer
    /// is no longer active or the message is no longer in flight (already returned).
    pub(crate) fn finish(&mut self, seq: u64, consumer: u64) -> Option<Msg> {
        if self.active_id() != Some(consumer) {
            return None;
        }
        self.in_flight.remove(&seq)
    }

    /// Puts a finished message back at the head, as a redelivery.
    pub(crate) fn put_back(&mut self, seq: u64, msg: Msg) {
        self.ready.insert(seq, msg.returned());
    }

    /// Removes consumer `id`. If it was the active one, its in-flight messages return to
    /// the head as redeliveries and the next waiting consumer becomes active.
    pub(crate) fn retire(&mut self, id: u64) -> bool {
        let Some(pos) = self.consumers.iter().position(|s| s.id == id) else {
            return false;
        };
        self.consumers.remove(pos);
        if pos == 0 {
            let returned = std::mem::take(&mut self.in_flight);
            for (seq, msg) in returned {
                self.ready.insert(seq, msg.returned());
            }
        }
        true
    }

    /// Sequence numbers of ready messages (for tests of the ordering rule).
    #[cfg(test)]
    fn ready_seqs(&self) -> Vec<u64> {
        self.ready.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: u8) -> Msg {
        Msg {
            routing_key: "nft.burned".into(),
            body: Bytes::from(vec![n]),
            headers: BTreeMap::new(),
            message_id: None,
            correlation_id: None,
            redelivered: false,
            delivery_count: 0,
            origin: merit_messages::Origin::Merit,
        }
    }

    #[test]
    fn returned_messages_go_back_in_front_in_publish_order() {
        let mut s = Shard::default();
        let (tx, _rx) = mpsc::channel(10);
        s.add_consumer(Slot {
            id: 1,
            tx,
            prefetch: 10,
        });
        for n in 0..5 {
            s.push(msg(n));
        }
        let a = s.start_next().expect("0");
        let b = s.start_next().expect("1");
        // Requeue the second first, then the first: they come back as 0, 1, then 2…
        let mb = s.finish(b.0, 1).expect("in flight");
        s.put_back(b.0, mb);
        let ma = s.finish(a.0, 1).expect("in flight");
        s.put_back(a.0, ma);
        assert_eq!(s.ready_seqs(), vec![0, 1, 2, 3, 4]);
        let (seq, m) = s.start_next().expect("head");
        assert_eq!(
            (seq, m.body[0], m.redelivered, m.delivery_count),
            (0, 0, true, 1)
        );
        // Retiring the consumer returns what it held; a second consumer never saw 0.
        s.retire(1);
        assert_eq!(s.ready_seqs().len(), 5);
        assert!(s.finish(0, 1).is_none());
    }
}
