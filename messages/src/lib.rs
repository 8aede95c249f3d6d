//! merit's messages: the event envelope, the typed domain events and their routing keys.
//!
//! Owns: the wire format every producer and consumer shares, strict decoding (addresses
//! validated and normalised, sizes bounded, unknown type or version refused with the field
//! and reason), deterministic ids for chain-derived and emitted events, and the JSON Schema
//! of every event; and the one [`Backoff`] schedule every retry in merit uses (pure, no
//! I/O). Guarantees: decoding never panics and never yields a partly-valid event.
//! Must not know: any I/O — brokers, databases, chains or actors.

mod addresses;
pub mod backoff;
mod envelope;
mod error;
mod events;
mod ids;
mod schema;
pub mod strict;
pub mod trace;

pub use addresses::split_url_list;
pub use backoff::{Backoff, Retrying};
pub use envelope::{ActorKeys, Envelope, MAX_ENVELOPE_BYTES, MAX_SOURCE_LEN};
pub use error::{json_error, panic_message, DecodeError, DecodeErrorKind, Result, SharedCause};
pub use events::{
    check_no_controls, AchievementFailed, AchievementMinted, AchievementRevoked,
    AchievementUnlocked, ActorKind, BenefitsChanged, Boost, ChainRef, ConfigChanged, DeadlinePhase,
    Event, EventType, HoldingChange, HoldingsChanged, NftBurned, NftMinted, NftTransferred, Origin,
    ProposalAccepted, ProposalCancelled, ProposalClosed, ProposalCreated, ProposalDeadline,
    ProposalExecuted, ProposalFanout, ProposalOutcome, ProposalResult, Tally, VoteCast, VoteChoice,
    VoteRecorded, MAX_BOOSTING_NFTS, MAX_BOOSTS,
};
pub use ids::short as quote_untrusted;

/// A text that names none of a domain enum's variants (a vote choice, a proposal status,
/// an achievement state): each has one spelling, and parsing it back is the one way in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not one of the known values")]
pub struct UnknownVariant;
pub use ids::{
    Address, EventId, ProposalId, RuleId, TierId, TokenId, TxHash, UserId, MAX_ID_LEN,
    MERIT_NAMESPACE,
};
pub use schema::all_schemas;

/// The topic exchange producers publish envelopes to (only [`Origin::Producer`] types are
/// routed from it).
pub const EVENTS_EXCHANGE: &str = "merit.events";

/// The topic exchange merit publishes its own events to ([`Origin::Merit`] types, and the
/// producer types merit relays). Only merit's broker user may write to it.
pub const INTERNAL_EXCHANGE: &str = "merit.internal";
