//! `merit simulate`'s ledger: what became of each message it published, by event id.

use std::{collections::HashMap, path::PathBuf};

/// A message `merit simulate` published, from its `--ledger`.
#[derive(Debug)]
pub(crate) struct Sent {
    /// The broker confirmed it (at least once: a duplicate re-sends the same id).
    pub(crate) confirmed: bool,
    pub(crate) proposal: String,
    pub(crate) user: String,
}

/// `merit simulate`'s ledger, by event type and then event id.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    pub(crate) votes: HashMap<String, Sent>,
    pub(crate) proposals: HashMap<String, Sent>,
}

impl Ledger {
    pub(crate) fn read(path: &PathBuf) -> Self {
        let text = std::fs::read_to_string(path).expect("the simulate ledger");
        let mut ledger = Self::default();
        for line in text.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            let [outcome, kind, id, proposal, user] = fields[..] else {
                panic!("a ledger line has five fields: {line:?}");
            };
            let of_kind = match kind {
                "governance.vote.cast" => &mut ledger.votes,
                "governance.proposal.created" => &mut ledger.proposals,
                other => panic!("the ledger names only intact messages: {other}"),
            };
            let sent = of_kind.entry(id.to_string()).or_insert(Sent {
                confirmed: false,
                proposal: proposal.to_string(),
                user: user.to_ascii_lowercase(),
            });
            sent.confirmed |= outcome == "confirmed";
        }
        ledger
    }

    pub(crate) fn confirmed(of_kind: &HashMap<String, Sent>) -> u64 {
        of_kind.values().filter(|s| s.confirmed).count() as u64
    }
}
