//! The `--ledger` file: one line per intact message once its batch's confirm is in.

use std::io::Write;

use anyhow::{Context, Result};
use merit_mailbox::Outgoing;

/// A batch's intact messages, as the ledger names them: type, event id, proposal, user.
pub(super) type Entries = Vec<[String; 4]>;

/// The `--ledger` file: what became of each intact message.
pub(super) struct Ledger(std::io::BufWriter<std::fs::File>);

impl Ledger {
    pub(super) fn create(path: &std::path::Path) -> Result<Self> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("create the ledger {}", path.display()))?;
        Ok(Self(std::io::BufWriter::new(file)))
    }

    /// The intact messages of `batch` (malformed ones are not votes merit could count).
    pub(super) fn entries(batch: &[Outgoing], kinds: &[bool]) -> Entries {
        batch
            .iter()
            .zip(kinds)
            .filter(|(_, intact)| **intact)
            .map(|(out, _)| {
                let header = |k: &str| out.headers.get(k).cloned().unwrap_or_default();
                [
                    out.routing_key.clone(),
                    out.message_id.clone(),
                    header("merit-proposal"),
                    header("merit-user"),
                ]
            })
            .collect()
    }

    pub(super) fn record(&mut self, confirmed: bool, entries: &Entries) -> Result<()> {
        let outcome = if confirmed { "confirmed" } else { "failed" };
        for [kind, id, proposal, user] in entries {
            writeln!(self.0, "{outcome}\t{kind}\t{id}\t{proposal}\t{user}")?;
        }
        Ok(self.0.flush()?)
    }
}
