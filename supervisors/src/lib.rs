//! merit's supervisors: the supervision tree of a node.
//!
//! Owns: per-kind actor registries (activation on demand, per-key order, concurrency
//! across keys, passivation and a resident cap), the shard consumers that feed them from
//! the mailboxes, the outbox relay, supervised restarts with backoff, restart intensity
//! and per-dependency circuit breakers, and the queryable tree of all of it.
//! Guarantees: a delivery is acked only after its turn committed; one that cannot be
//! applied is dead-lettered with its reason, never dropped; a failing service never
//! takes others down.
//! Must not know: HTTP, the chain, or domain rules.

pub mod dead_letters;
mod error;
mod node;
pub mod ownership;
pub mod pulse;
mod registry;
mod relay;
mod service;
mod shard;
mod timers;
mod tree;

pub use error::{Result, SupervisorError};
pub use node::{Node, NodeOptions, NodeProbe, NodeStatus, Registries, ShardOwnership};
pub use ownership::Membership;
pub use registry::{Registry, RegistryStatus, Residency};
pub use relay::{RELAY_BATCH, RELAY_IN_FLIGHT};
pub use service::{spawn_service, Dependency, RestartPolicy};
pub use timers::{
    deadline_envelope, fire_due_deadlines, refresh_config, run_config_watcher, run_deadline_timer,
    DEADLINE_CONSUMER,
};
pub use tree::{ServiceState, ServiceStatus, Tree};
