//! The typed domain events. Each event type is also its AMQP routing key; each has a
//! version, and a payload struct per (type, version). Adding a field means a new version.

mod achievement;
mod config;
mod governance;
mod nft;
mod user;

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use serde_json::{value::RawValue, Value};

pub use achievement::{
    AchievementFailed, AchievementMinted, AchievementRevoked, AchievementUnlocked,
};
pub use config::ConfigChanged;
pub use governance::{
    Boost, DeadlinePhase, ProposalAccepted, ProposalCancelled, ProposalClosed, ProposalCreated,
    ProposalDeadline, ProposalExecuted, ProposalFanout, ProposalOutcome, ProposalResult, Tally,
    VoteCast, VoteChoice, VoteRecorded, MAX_BOOSTS,
};
pub use nft::{ChainRef, NftBurned, NftMinted, NftTransferred};
pub use user::{BenefitsChanged, HoldingChange, HoldingsChanged, MAX_BOOSTING_NFTS};

use crate::{
    envelope::{decode_value, ActorKeys},
    error::{DecodeError, DecodeErrorKind, Result},
};

/// Payload checks beyond what the types enforce (lengths, ranges, cross-field rules).
pub(crate) trait Validate {
    /// `Err` names the offending field relative to the payload.
    fn validate(&self) -> Result<()>;
}

/// Checks a free-text field: `min..=max` characters, and no control characters other
/// than tab, line feed and carriage return (a NUL, for one, is refused by PostgreSQL's
/// text type, and no control character belongs in text people read).
pub(crate) fn check_len(field: &str, value: &str, min: usize, max: usize) -> Result<()> {
    check_text(field, value, min, max, true)
}

/// Checks a one-line text field (a title, a name): as [`check_len`], and no line breaks
/// or tabs either.
pub(crate) fn check_line(field: &str, value: &str, min: usize, max: usize) -> Result<()> {
    check_text(field, value, min, max, false)
}

fn check_text(field: &str, value: &str, min: usize, max: usize, multiline: bool) -> Result<()> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(DecodeError::invalid(
            field,
            format!("{n} characters: expected {min}..={max}"),
        ));
    }
    check_no_controls(field, value, multiline)
}

/// Refuses control characters (Unicode category Cc) in `value`; with `multiline`, tab,
/// line feed and carriage return are allowed. The error names the first one and where it
/// is (`control character U+0000 at character 2`).
pub fn check_no_controls(field: &str, value: &str, multiline: bool) -> Result<()> {
    let bad = value
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() && !(multiline && matches!(c, '\t' | '\n' | '\r')));
    match bad {
        None => Ok(()),
        Some((at, c)) => Err(DecodeError::invalid(
            field,
            format!(
                "control character U+{:04X} at character {}: not allowed in {} text",
                u32::from(c),
                at + 1,
                if multiline { "free" } else { "one-line" }
            ),
        )),
    }
}

/// Who may publish an event type to merit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Producers outside merit (and merit's own API, on their behalf): published to the
    /// producers' exchange `merit.events`.
    Producer,
    /// merit alone (its actors, timer, chain listener, sagas): published to the internal
    /// exchange `merit.internal`, which only merit's broker user may write. The same type
    /// arriving through the producers' exchange is dead-lettered as `forbidden_type`.
    Merit,
}

impl Origin {
    /// `producer` or `merit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Producer => "producer",
            Self::Merit => "merit",
        }
    }
}

/// The kinds of actor that hold state; every event is handled by zero or more of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// One per wallet.
    User,
    /// One per proposal.
    Proposal,
    /// One per token.
    Nft,
}

impl ActorKind {
    /// All kinds.
    pub const ALL: [ActorKind; 3] = [ActorKind::User, ActorKind::Proposal, ActorKind::Nft];

    /// The AMQP header carrying this kind's key (`merit-user`, ...), which the
    /// consistent-hash exchange of this kind hashes to pick the shard.
    pub fn header(self) -> &'static str {
        match self {
            Self::User => "merit-user",
            Self::Proposal => "merit-proposal",
            Self::Nft => "merit-nft",
        }
    }

    /// Lowercase name, used in queue names and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Proposal => "proposal",
            Self::Nft => "nft",
        }
    }
}

impl fmt::Display for ActorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! event_types {
    ($( $variant:ident => $key:literal, $payload:ident, [$($kind:ident),*] ; )*) => {
        /// The type of an event; its string form is the AMQP routing key.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType {
            $(
                #[doc = concat!("`", $key, "`")]
                $variant,
            )*
        }

        impl EventType {
            /// Every known event type.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),*];

            /// The routing key / `type` field.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $key,)*
                }
            }

            /// The actor kinds that handle this event, each addressed by its key in the envelope.
            pub fn handlers(self) -> &'static [ActorKind] {
                match self {
                    $(Self::$variant => &[$(ActorKind::$kind),*],)*
                }
            }

            /// JSON Schema of the full envelope carrying this event, as producers publish it.
            pub fn envelope_schema(self) -> Value {
                match self {
                    $(Self::$variant => crate::schema::envelope_schema::<$payload>(self),)*
                }
            }
        }

        impl FromStr for EventType {
            type Err = DecodeError;
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($key => Ok(Self::$variant),)*
                    other => Err(DecodeError::new(
                        DecodeErrorKind::UnknownType,
                        "type",
                        format!(
                            "{} is not a known event type: expected one of {}",
                            crate::ids::short(other),
                            [$($key),*].join(", ")
                        ),
                    )),
                }
            }
        }

        /// A decoded, validated event.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        #[serde(untagged)]
        pub enum Event {
            $(
                #[doc = concat!("`", $key, "`")]
                $variant($payload),
            )*
        }

        impl Event {
            /// This event's type.
            pub fn event_type(&self) -> EventType {
                match self {
                    $(Self::$variant(_) => EventType::$variant,)*
                }
            }

            pub(crate) fn validate(&self) -> Result<()> {
                match self {
                    $(Self::$variant(p) => p.validate(),)*
                }
            }

            /// Decodes a payload of `event_type` at `version` (only v1 exists so far).
            pub(crate) fn decode(event_type: EventType, version: u32, payload: &RawValue) -> Result<Self> {
                if version != 1 {
                    return Err(DecodeError::new(
                        DecodeErrorKind::UnknownVersion,
                        "version",
                        format!("{} version {version} is not supported: expected 1", event_type.as_str()),
                    ));
                }
                let event = match event_type {
                    $(EventType::$variant => Self::$variant(decode_value(payload)?),)*
                };
                event.validate()?;
                Ok(event)
            }
        }

        $(
            impl From<$payload> for Event {
                fn from(p: $payload) -> Self {
                    Self::$variant(p)
                }
            }
        )*
    };
}

event_types! {
    ProposalCreated => "governance.proposal.created", ProposalCreated, [Proposal];
    ProposalAccepted => "governance.proposal.accepted", ProposalAccepted, [User];
    VoteCast => "governance.vote.cast", VoteCast, [Proposal];
    VoteRecorded => "governance.vote.recorded", VoteRecorded, [User];
    ProposalDeadline => "governance.proposal.deadline", ProposalDeadline, [Proposal];
    ProposalCancelled => "governance.proposal.cancelled", ProposalCancelled, [Proposal];
    ProposalExecuted => "governance.proposal.executed", ProposalExecuted, [Proposal];
    ProposalClosed => "governance.proposal.closed", ProposalClosed, [User];
    ProposalResult => "governance.proposal.result", ProposalResult, [User];
    ProposalFanout => "governance.proposal.fanout", ProposalFanout, [Proposal];
    AchievementUnlocked => "achievement.unlocked", AchievementUnlocked, [User];
    AchievementRevoked => "achievement.revoked", AchievementRevoked, [User];
    AchievementMinted => "achievement.minted", AchievementMinted, [User];
    AchievementFailed => "achievement.failed", AchievementFailed, [User];
    NftMinted => "nft.minted", NftMinted, [Nft];
    NftTransferred => "nft.transferred", NftTransferred, [Nft];
    NftBurned => "nft.burned", NftBurned, [Nft];
    HoldingsChanged => "user.holdings.changed", HoldingsChanged, [User];
    BenefitsChanged => "user.benefits.changed", BenefitsChanged, [];
    ConfigChanged => "config.changed", ConfigChanged, [];
}

impl EventType {
    /// Who may publish this type: producers may send proposal creations, cancellations,
    /// executions and votes; every other type is merit's own.
    pub fn origin(self) -> Origin {
        match self {
            Self::ProposalCreated
            | Self::VoteCast
            | Self::ProposalCancelled
            | Self::ProposalExecuted => Origin::Producer,
            _ => Origin::Merit,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Event {
    /// The actor keys this event addresses, derived from its payload (the single source of
    /// truth: a producer-supplied `keys` must agree with these).
    pub fn keys(&self) -> ActorKeys {
        let mut k = ActorKeys::default();
        match self {
            Self::ProposalCreated(p) => {
                k.proposal = Some(p.proposal.clone());
                k.user = Some(p.creator);
            }
            Self::VoteCast(p) => {
                k.proposal = Some(p.proposal.clone());
                k.user = Some(p.voter);
            }
            Self::ProposalAccepted(p) => {
                k.proposal = Some(p.proposal.clone());
                k.user = Some(p.creator);
            }
            Self::VoteRecorded(p) => {
                k.proposal = Some(p.proposal.clone());
                k.user = Some(p.voter);
            }
            Self::ProposalDeadline(p) => k.proposal = Some(p.proposal.clone()),
            Self::ProposalCancelled(p) => {
                k.proposal = Some(p.proposal.clone());
                k.user = Some(p.by);
            }
            Self::ProposalExecuted(p) => {
                k.proposal = Some(p.proposal.clone());
                k.user = Some(p.by);
            }
            Self::ProposalClosed(p) => {
                k.proposal = Some(p.proposal.clone());
                k.user = Some(p.creator);
            }
            Self::ProposalResult(p) => {
                k.proposal = Some(p.proposal.clone());
                k.user = Some(p.voter);
            }
            Self::ProposalFanout(p) => k.proposal = Some(p.proposal.clone()),
            Self::AchievementUnlocked(p) => k.user = Some(p.user),
            Self::AchievementRevoked(p) => k.user = Some(p.user),
            Self::AchievementMinted(p) => k.user = Some(p.user),
            Self::AchievementFailed(p) => k.user = Some(p.user),
            Self::NftMinted(p) => {
                k.nft = Some(p.token.clone());
                k.user = Some(p.to);
            }
            Self::NftTransferred(p) => k.nft = Some(p.token.clone()),
            Self::NftBurned(p) => k.nft = Some(p.token.clone()),
            Self::HoldingsChanged(p) => k.user = Some(p.user),
            Self::BenefitsChanged(p) => k.user = Some(p.user),
            Self::ConfigChanged(_) => {}
        }
        k
    }
}
