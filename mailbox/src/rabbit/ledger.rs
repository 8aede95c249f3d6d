//! The settle bookkeeping of one consumer channel, without a broker: which delivery tags
//! the channel handed out, which of them the application acked, which were settled one by
//! one (requeued, dead-lettered, dropped), and so which frames may be sent now.
//!
//! Guarantees (the broker's rule is that a `basic.ack(multiple=true)` for tag `T` acks
//! *every* unacked delivery with a tag `≤ T` on the channel):
//! - a multiple-ack goes to the highest tag `T` such that every tag `≤ T` delivered on the
//!   channel was acked by the application or already settled by a frame of its own; a
//!   delivery still in a turn, being retried, requeued or dead-lettered is a hole that
//!   stops the prefix until its own frame was *sent* ([`Ledger::settled`]);
//! - the tag of a multiple-ack is always one the broker still holds unacked (an acked-by-
//!   the-application tag), never a tag settled before, which the broker would refuse by
//!   closing the channel;
//! - a tag the ledger never saw (a gap in the channel's sequence) is a hole for good;
//! - when acked tags pile up behind a hole (a long turn or a retry), at `spill` of them
//!   they are acked one by one instead, so the hole does not hold the prefetch window (the
//!   consumer uses 1: an ack never waits for another delivery's turn).
//!
//! Tags on a channel start at 1 and grow by one per delivery; a channel's ledger ends with
//! the channel ([`Ledger::reset`] when its generation is gone).

use std::collections::BTreeMap;

/// The state of a delivered tag above the settled prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    /// With the application (in a turn, retrying), being requeued or dead-lettered, or a
    /// tag the ledger never saw: a hole.
    Held,
    /// Acked by the application; waits for a frame.
    Acked,
    /// Settled by a frame of its own that was sent.
    Settled,
}

/// One `basic.ack` frame to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The delivery tag it names.
    pub(crate) tag: u64,
    /// `true`: it acks every tag up to `tag`; `false`: only `tag`.
    pub(crate) multiple: bool,
}

/// What became of an application ack given to [`Ledger::acked`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acked {
    /// Recorded: a frame from [`Ledger::take`] will carry it.
    Pending,
    /// The tag is already settled (or was never held): nothing to send.
    AlreadySettled,
}

/// The settle bookkeeping of one consumer channel; see the module docs.
#[derive(Debug)]
pub(crate) struct Ledger {
    /// Every tag `≤ floor` is settled.
    floor: u64,
    /// The highest tag seen.
    last: u64,
    /// Tags in `(floor, last]`, each with its mark.
    open: BTreeMap<u64, Mark>,
    /// Acked tags waiting behind a hole that are sent one by one instead.
    spill: usize,
}

impl Ledger {
    /// An empty ledger; `spill` (at least 1) acked tags waiting behind a hole are acked
    /// one by one.
    pub(crate) fn new(spill: usize) -> Self {
        Self {
            floor: 0,
            last: 0,
            open: BTreeMap::new(),
            spill: spill.max(1),
        }
    }

    /// Records that `tag` was delivered. Tags missing between the last one seen and `tag`
    /// become holes that nothing fills; a tag not above the last one is ignored.
    pub(crate) fn delivered(&mut self, tag: u64) {
        if tag <= self.last {
            return;
        }
        for missing in self.last + 1..tag {
            self.open.insert(missing, Mark::Held);
        }
        self.open.insert(tag, Mark::Held);
        self.last = tag;
    }

    /// Records that the application acked `tag`.
    pub(crate) fn acked(&mut self, tag: u64) -> Acked {
        self.delivered(tag);
        match self.open.get_mut(&tag) {
            Some(mark @ Mark::Held) => {
                *mark = Mark::Acked;
                Acked::Pending
            }
            Some(Mark::Acked) => Acked::Pending,
            _ => Acked::AlreadySettled,
        }
    }

    /// Records that the frame settling `tag` alone (a requeue, or the ack after a dead
    /// letter) was sent: it stops being a hole.
    pub(crate) fn settled(&mut self, tag: u64) {
        self.delivered(tag);
        if let Some(mark) = self.open.get_mut(&tag) {
            *mark = Mark::Settled;
        }
    }

    /// The frames to send now, in order: at most one multiple-ack for the settled prefix,
    /// then single acks if too many acked tags wait behind a hole. The tags they name count
    /// as settled from here on, so the caller must send them in this order before any
    /// later frame.
    pub(crate) fn take(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        let mut cover = None;
        while let Some(&mark) = self.open.get(&(self.floor + 1)) {
            match mark {
                Mark::Held => break,
                Mark::Acked => cover = Some(self.floor + 1),
                Mark::Settled => {}
            }
            self.open.remove(&(self.floor + 1));
            self.floor += 1;
        }
        if let Some(tag) = cover {
            frames.push(Frame {
                tag,
                multiple: true,
            });
        }
        let waiting = self.open.values().filter(|m| **m == Mark::Acked).count();
        if waiting >= self.spill {
            for (&tag, mark) in self.open.iter_mut() {
                if *mark == Mark::Acked {
                    *mark = Mark::Settled;
                    frames.push(Frame {
                        tag,
                        multiple: false,
                    });
                }
            }
        }
        frames
    }

    /// Forgets everything: the channel (or its connection generation) is gone, so the
    /// broker requeues whatever it did not see settled. Returns how many acked tags were
    /// never sent. A new channel numbers its tags from 1 again.
    pub(crate) fn reset(&mut self) -> usize {
        let dropped = self.open.values().filter(|m| **m == Mark::Acked).count();
        self.open.clear();
        self.floor = 0;
        self.last = 0;
        dropped
    }

    /// Whether any acked tag still waits for a frame.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.open.values().filter(|m| **m == Mark::Acked).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn multiple(tag: u64) -> Frame {
        Frame {
            tag,
            multiple: true,
        }
    }

    fn single(tag: u64) -> Frame {
        Frame {
            tag,
            multiple: false,
        }
    }

    fn delivered(ledger: &mut Ledger, tags: std::ops::RangeInclusive<u64>) {
        for tag in tags {
            ledger.delivered(tag);
        }
    }

    #[test]
    fn in_order_acks_drained_together_are_one_multiple_ack() {
        let mut l = Ledger::new(64);
        delivered(&mut l, 1..=5);
        for tag in 1..=5 {
            assert_eq!(l.acked(tag), Acked::Pending);
        }
        assert_eq!(l.take(), vec![multiple(5)]);
        assert_eq!(l.take(), vec![]);
        assert_eq!(l.pending(), 0);
    }

    #[test]
    fn out_of_order_acks_only_ack_the_contiguous_prefix() {
        let mut l = Ledger::new(64);
        delivered(&mut l, 1..=6);
        l.acked(2);
        l.acked(3);
        l.acked(5);
        assert_eq!(l.take(), vec![], "tag 1 is still in a turn");
        l.acked(1);
        assert_eq!(l.take(), vec![multiple(3)], "4 is a hole, so 5 waits");
        assert_eq!(l.pending(), 1);
        l.acked(4);
        assert_eq!(l.take(), vec![multiple(5)]);
        l.acked(6);
        assert_eq!(l.take(), vec![multiple(6)]);
    }

    #[test]
    fn a_requeued_or_dead_lettered_tag_is_a_hole_until_its_own_frame_was_sent() {
        let mut l = Ledger::new(64);
        delivered(&mut l, 1..=4);
        l.acked(1);
        // 2 is being requeued (or its dead letter is being published): not yet sent.
        l.acked(3);
        l.acked(4);
        assert_eq!(l.take(), vec![multiple(1)]);
        assert_eq!(
            l.take(),
            vec![],
            "nothing may cover 2 before its nack was sent"
        );
        l.settled(2);
        assert_eq!(l.take(), vec![multiple(4)]);
    }

    #[test]
    fn a_multiple_ack_never_names_a_tag_settled_on_its_own() {
        let mut l = Ledger::new(64);
        delivered(&mut l, 1..=3);
        l.acked(1);
        l.settled(2);
        l.settled(3);
        // The broker no longer holds 2 and 3: an ack naming them would close the channel.
        assert_eq!(l.take(), vec![multiple(1)]);
        delivered(&mut l, 4..=4);
        l.settled(4);
        assert_eq!(
            l.take(),
            vec![],
            "a prefix of individually settled tags sends nothing"
        );
        l.acked(5);
        assert_eq!(l.take(), vec![multiple(5)]);
    }

    #[test]
    fn acking_a_tag_already_covered_does_nothing() {
        let mut l = Ledger::new(64);
        delivered(&mut l, 1..=2);
        l.acked(1);
        l.acked(2);
        assert_eq!(l.take(), vec![multiple(2)]);
        assert_eq!(l.acked(1), Acked::AlreadySettled);
        l.settled(2);
        assert_eq!(l.take(), vec![]);
    }

    #[test]
    fn a_tag_never_seen_is_a_hole_for_good() {
        let mut l = Ledger::new(64);
        l.delivered(1);
        l.delivered(3); // 2 never reached the ledger
        l.acked(1);
        l.acked(3);
        assert_eq!(l.take(), vec![multiple(1)]);
        assert_eq!(l.pending(), 1);
    }

    #[test]
    fn acks_piling_up_behind_a_hole_spill_as_single_acks() {
        let mut l = Ledger::new(3);
        delivered(&mut l, 1..=6);
        l.acked(2);
        l.acked(3);
        assert_eq!(l.take(), vec![], "1 is retrying; two acks may wait");
        l.acked(5);
        assert_eq!(l.take(), vec![single(2), single(3), single(5)]);
        // The spilled tags are settled: the prefix passes them without naming them.
        l.acked(1);
        assert_eq!(l.take(), vec![multiple(1)]);
        l.acked(4);
        assert_eq!(
            l.take(),
            vec![multiple(4)],
            "5 went alone; 4 is the last acked"
        );
        l.acked(6);
        assert_eq!(l.take(), vec![multiple(6)]);
    }

    #[test]
    fn with_a_spill_of_one_no_ack_waits_for_a_hole() {
        let mut l = Ledger::new(1);
        delivered(&mut l, 1..=4);
        // 1 is held by a caller that awaits the ack of 2: 2 must not wait for 1.
        l.acked(2);
        assert_eq!(l.take(), vec![single(2)]);
        // Acks drained together still go out as one multiple-ack when they form a prefix.
        l.acked(1);
        l.acked(3);
        assert_eq!(l.take(), vec![multiple(3)]);
        l.acked(4);
        assert_eq!(l.take(), vec![multiple(4)]);
    }

    #[test]
    fn after_a_multiple_ack_nothing_it_covered_is_held() {
        // What a dropped settler would requeue is exactly what the ledger still holds:
        // a tag a multiple-ack covered is gone from it, so it can never be nacked.
        let mut l = Ledger::new(64);
        delivered(&mut l, 1..=3);
        l.acked(1);
        l.acked(2);
        assert_eq!(l.take(), vec![multiple(2)]);
        assert_eq!(l.acked(2), Acked::AlreadySettled);
        l.settled(1);
        assert_eq!(l.take(), vec![]);
        assert_eq!(l.pending(), 0);
        l.settled(3);
        assert_eq!(l.take(), vec![]);
    }

    #[test]
    fn a_generation_change_resets_and_drops_unsent_acks() {
        let mut l = Ledger::new(64);
        delivered(&mut l, 1..=4);
        l.acked(2);
        l.acked(3);
        assert_eq!(l.take(), vec![]);
        assert_eq!(
            l.reset(),
            2,
            "the broker requeues them; they are never acked"
        );
        assert_eq!(l.take(), vec![]);
        // The next channel numbers from 1 again; nothing of the old one carries over.
        l.delivered(1);
        l.delivered(2);
        l.acked(2);
        assert_eq!(l.take(), vec![], "the new 1 is still held");
        l.acked(1);
        assert_eq!(l.take(), vec![multiple(2)]);
    }
}
