//! sea-orm entities, one file per table. Ids that are UUIDs are stored as text and
//! unsigned chain numbers as BIGINT so that SQLite and PostgreSQL hold identical values.

#![allow(missing_docs)] // the derive macros generate undocumented public items

pub mod achievement;
pub mod actor;
pub mod benefit;
pub mod chain_checkpoint;
pub mod config_version;
pub mod dead_letter;
pub mod inbox;
pub mod nft;
pub mod node;
pub mod notification;
pub mod outbox;
pub mod proposal;
pub mod proposal_seq;
pub mod saga;
pub mod saga_step;
pub mod siwe_nonce;
pub mod user;
pub mod vote;
