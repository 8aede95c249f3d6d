//! The shared test harness: every test gets its own database (a fresh SQLite file or a
//! fresh PostgreSQL database), so tests run in parallel without seeing each other.
//!
//! PostgreSQL is reached through `MERIT_TEST_PG_URL` (an admin connection to an existing
//! database; default `postgres://postgres@127.0.0.1:5432/postgres`).

#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod anvil;

#[allow(unused_imports)] // each test binary uses its own part of the harness
pub use merit_testkit::{free_port, pg_admin_url, Backend, TestDb};

/// [`merit_testkit::on_both_backends!`], at this test crate's root as before.
#[macro_export]
macro_rules! on_both_backends {
    ($($t:tt)*) => { merit_testkit::on_both_backends! { $($t)* } };
}

#[allow(unused_imports)]
pub use merit_testkit::broker::{rabbit_cluster, rabbitmqctl, Vhost};

mod cli;
mod events;
mod node;
mod process;
mod reads;
mod redis_server;

#[allow(unused_imports)]
pub use cli::*;
#[allow(unused_imports)]
pub use events::*;
#[allow(unused_imports)]
pub use node::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use reads::*;
#[allow(unused_imports)]
pub use redis_server::*;
