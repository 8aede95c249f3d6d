//! The governance process: proposals and votes.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{check_len, Validate};
use crate::{error::Result, ids::ProposalId, Address, DecodeError};

/// `governance.proposal.created` v1: a proposal was opened for voting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalCreated {
    /// Id chosen by the creating system, unique per proposal.
    pub proposal: ProposalId,
    /// Wallet of the user who created it.
    pub creator: Address,
    /// Title, 1-200 characters.
    pub title: String,
    /// Body text, at most 8,000 characters.
    #[serde(default)]
    pub description: String,
    /// Voting opens at this instant (RFC 3339).
    pub starts_at: DateTime<Utc>,
    /// Voting closes at this instant; must be after `starts_at`.
    pub ends_at: DateTime<Utc>,
    /// Minimum total weight (for + against + abstain, in weight units) for a valid result.
    pub quorum: u64,
    /// Share of for / (for + against) needed to pass, in basis points (1-10000).
    #[serde(default = "default_threshold_bps")]
    pub threshold_bps: u16,
}

fn default_threshold_bps() -> u16 {
    5_000
}

impl Validate for ProposalCreated {
    fn validate(&self) -> Result<()> {
        check_len("title", &self.title, 1, 200)?;
        check_len("description", &self.description, 0, 8_000)?;
        if self.ends_at <= self.starts_at {
            return Err(DecodeError::invalid(
                "ends_at",
                format!(
                    "{} is not after starts_at {}",
                    self.ends_at.to_rfc3339(),
                    self.starts_at.to_rfc3339()
                ),
            ));
        }
        if self.threshold_bps == 0 || self.threshold_bps > 10_000 {
            return Err(DecodeError::invalid(
                "threshold_bps",
                format!(
                    "{} is out of range: expected 1..=10000 basis points",
                    self.threshold_bps
                ),
            ));
        }
        Ok(())
    }
}

/// How a vote was cast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VoteChoice {
    /// In favour.
    For,
    /// Against.
    Against,
    /// Counted towards quorum only.
    Abstain,
}

/// `governance.vote.cast` v1: a user voted on a proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VoteCast {
    /// The proposal voted on.
    pub proposal: ProposalId,
    /// Wallet of the voter.
    pub voter: Address,
    /// The choice.
    pub choice: VoteChoice,
    /// Optional free-text reason, at most 1,000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Validate for VoteCast {
    fn validate(&self) -> Result<()> {
        if let Some(reason) = &self.reason {
            check_len("reason", reason, 0, 1_000)?;
        }
        Ok(())
    }
}

/// Summed vote weights of one proposal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tally {
    /// Weight of `for` votes.
    pub for_weight: u64,
    /// Weight of `against` votes.
    pub against_weight: u64,
    /// Weight of `abstain` votes.
    pub abstain_weight: u64,
    /// Number of distinct voters.
    pub voters: u64,
}

/// The result of a closed proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProposalOutcome {
    /// Quorum reached and the threshold met.
    Succeeded,
    /// Quorum missed or the threshold not met.
    Defeated,
    /// Cancelled before it closed.
    Cancelled,
}

/// `governance.proposal.closed` v1: voting ended; carries the final tally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalClosed {
    /// The proposal.
    pub proposal: ProposalId,
    /// Its creator (so the creator's achievements can count passed proposals).
    pub creator: Address,
    /// The result.
    pub outcome: ProposalOutcome,
    /// Final weights.
    pub tally: Tally,
    /// Whether the quorum was reached.
    pub quorum_reached: bool,
    /// When voting closed.
    pub closed_at: DateTime<Utc>,
}

impl Validate for ProposalClosed {
    fn validate(&self) -> Result<()> {
        Ok(())
    }
}
