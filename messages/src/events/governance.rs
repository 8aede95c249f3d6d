//! The governance process: proposals and votes.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{check_len, check_line, Validate};
use crate::{
    error::Result,
    ids::{ProposalId, TierId, TokenId},
    Address, DecodeError,
};

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
        check_line("title", &self.title, 1, 200)?;
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

/// `governance.proposal.accepted` v1 (emitted by merit's ProposalActor): a creation was
/// accepted and the proposal exists. The creator's UserActor counts this, never the
/// producer's `governance.proposal.created`, so a creation the ProposalActor refused (a
/// duplicate id, a window or quorum below the configured minimum) unlocks nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalAccepted {
    /// The proposal.
    pub proposal: ProposalId,
    /// Its creator.
    pub creator: Address,
    /// The proposal's sequence number (creation order, from 1).
    pub proposal_seq: u64,
}

impl Validate for ProposalAccepted {
    fn validate(&self) -> Result<()> {
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

impl VoteChoice {
    /// Every choice, in the order the API and the documents list them.
    pub const ALL: [Self; 3] = [Self::For, Self::Against, Self::Abstain];

    /// The wire spelling (as in the envelope's payload).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::For => "for",
            Self::Against => "against",
            Self::Abstain => "abstain",
        }
    }
}

impl std::str::FromStr for VoteChoice {
    type Err = crate::UnknownVariant;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or(crate::UnknownVariant)
    }
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

/// `governance.proposal.result` v1: how a proposal a user voted on ended, for that voter's
/// notification log. Emitted by the ProposalActor once per voter after the proposal closed
/// or was cancelled, in batches (see [`ProposalFanout`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalResult {
    /// The proposal.
    pub proposal: ProposalId,
    /// The voter told.
    pub voter: Address,
    /// The result.
    pub outcome: ProposalOutcome,
    /// Final weights.
    pub tally: Tally,
    /// Whether the quorum was reached.
    pub quorum_reached: bool,
    /// When voting closed (or the proposal was cancelled).
    pub closed_at: DateTime<Utc>,
}

impl Validate for ProposalResult {
    fn validate(&self) -> Result<()> {
        Ok(())
    }
}

/// `governance.proposal.fanout` v1: merit's own bookkeeping. A closed proposal tells its
/// voters in batches; each batch is one turn of the ProposalActor, and this event asks for
/// the batch after voter `after` (the first batch when absent), so a proposal with 100,000
/// voters never holds one huge turn and a crash resumes at the batch it stopped in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalFanout {
    /// The proposal.
    pub proposal: ProposalId,
    /// The last voter already told, in address order; absent for the first batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Address>,
}

impl Validate for ProposalFanout {
    fn validate(&self) -> Result<()> {
        Ok(())
    }
}

/// One NFT that boosted a vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Boost {
    /// The token.
    pub token: TokenId,
    /// Its benefit tier.
    pub tier: TierId,
    /// What it added to the multiplier, in basis points.
    pub bonus_bps: u32,
}

/// Most boosts one recorded vote may list.
pub const MAX_BOOSTS: usize = 1_000;

/// `governance.vote.recorded` v1 (emitted by merit's ProposalActor): a vote was counted,
/// with the weight it got. The voter's UserActor counts it for achievement rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VoteRecorded {
    /// The proposal.
    pub proposal: ProposalId,
    /// The proposal's sequence number (creation order, from 1), for streaks.
    pub proposal_seq: u64,
    /// The voter.
    pub voter: Address,
    /// The choice.
    pub choice: VoteChoice,
    /// Weight counted, in weight units (1000 = one plain vote).
    pub weight: u64,
    /// Multiplier applied, in basis points (10000 = x1).
    pub multiplier_bps: u32,
    /// The NFTs that boosted it (each boosts at most one vote per proposal).
    pub boosts: Vec<Boost>,
    /// The dynamic config version the weight was computed under.
    pub config_version: u64,
    /// The voter created the proposal: the vote counts in the tally but not toward the
    /// voter's achievements. Absent means `false`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub own_proposal: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Validate for VoteRecorded {
    fn validate(&self) -> Result<()> {
        if self.boosts.len() > MAX_BOOSTS {
            return Err(DecodeError::invalid(
                "boosts",
                format!(
                    "{} entries: at most {MAX_BOOSTS} allowed",
                    self.boosts.len()
                ),
            ));
        }
        Ok(())
    }
}

/// Which deadline of a proposal came due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeadlinePhase {
    /// `starts_at`: voting opens.
    Open,
    /// `ends_at`: voting closes and the outcome is decided.
    Close,
}

/// `governance.proposal.deadline` v1 (emitted by merit's deadline timer): a persisted
/// deadline of a proposal is due. Its id is derived from (proposal, phase), so every node
/// that fires it fires the same event and the ProposalActor's inbox applies it once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalDeadline {
    /// The proposal.
    pub proposal: ProposalId,
    /// Which deadline.
    pub phase: DeadlinePhase,
    /// When it was due.
    pub due_at: DateTime<Utc>,
}

impl Validate for ProposalDeadline {
    fn validate(&self) -> Result<()> {
        Ok(())
    }
}

/// `governance.proposal.cancelled` v1: the creator withdraws a proposal before it closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalCancelled {
    /// The proposal.
    pub proposal: ProposalId,
    /// Who cancels (must be the creator).
    pub by: Address,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

impl Validate for ProposalCancelled {
    fn validate(&self) -> Result<()> {
        check_len("reason", &self.reason, 0, 1_000)
    }
}

/// `governance.proposal.executed` v1: a succeeded proposal was carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalExecuted {
    /// The proposal.
    pub proposal: ProposalId,
    /// Who executed it.
    pub by: Address,
}

impl Validate for ProposalExecuted {
    fn validate(&self) -> Result<()> {
        Ok(())
    }
}
