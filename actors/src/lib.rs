//! merit's actors: `UserActor`, `ProposalActor` and `NftActor`.
//!
//! Owns: each kind's state and its pure transition function ([`Domain`]), and the actix
//! shell ([`EntityActor`]) that activates an actor from storage, applies messages strictly
//! in order, commits state + inbox + outbox + projections in one transaction, contains
//! panics and retries failures. Guarantees: a message is applied at most once per actor
//! kind (the inbox), and its outcome is reported only after the commit. Also owns the
//! operation that crosses from this domain to the chain, the AchievementUnlock saga
//! ([`unlock`], run by the domain-free saga engine), and the config center ([`center`]).
//! Must not know: brokers, consumers or registries — the supervisors route to it.

pub mod center;
mod domain;
mod error;
mod nft;
mod notify;
mod proposal;
mod shell;
pub mod unlock;
mod user;

pub use domain::{Decision, Detached, Domain, Services};
pub use error::{ActorError, Result};
pub use nft::{NftDomain, NftState};
pub use notify::{LogOnly, Notifier, UserNotification};
pub use proposal::{
    load_held, warm_benefits, ProposalDomain, ProposalInfo, ProposalInputs, ProposalState,
    ProposalStatus, VoteRecord, BASE_WEIGHT,
};
pub use shell::{inbox_consumer, Deliver, EntityActor, KindStats, Outcome, RetryPolicy};
pub use user::{achievement_token, HeldNfts, Holding, UserDomain, UserState};

/// The UserActor.
pub type UserActor = EntityActor<UserDomain>;
/// The ProposalActor.
pub type ProposalActor = EntityActor<ProposalDomain>;
/// The NftActor.
pub type NftActor = EntityActor<NftDomain>;
