//! The config center against real databases: every test runs on a fresh SQLite file and
//! on a fresh PostgreSQL database (`MERIT_TEST_PG_URL`, an admin connection; default
//! `postgres://postgres@127.0.0.1:5432/postgres`), so they run in parallel.
//!
//! - proposals become current and head the history; malformed rules are refused with
//!   their path and nothing written; concurrent proposers get distinct, gap-free versions;
//! - a rollback is a new version equal to the old one, a diff lists exactly the changed
//!   rule, and each version puts one `config.changed` in the outbox;
//! - a dry run counts the users who would newly unlock a rule, pages through them all,
//!   and writes nothing.
//!
//! One test binary, in modules by behaviour.

#![allow(missing_docs)]

mod dry_run;
mod harness;
mod population;
mod proposals;
mod versions;
