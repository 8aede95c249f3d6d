//! merit's test harness, written once and used by every crate's integration tests.
//!
//! Owns: a database of its own per test ([`TestDb`]: a fresh SQLite file, or a fresh
//! PostgreSQL database dropped by [`TestDb::cleanup`]) and a RabbitMQ vhost of its own
//! ([`broker::Vhost`]), so tests run in parallel without seeing each other;
//! [`on_both_backends!`], which runs one test body on each backend; and an anvil chain of
//! its own ([`anvil::Anvil`]: a local Ethereum node on a free port, its dev accounts, the
//! achievement contract deployed through merit-chain's adapter, raw JSON-RPC for mining,
//! snapshots and nonces).
//!
//! Tests that need running services (PostgreSQL, RabbitMQ, Redis, anvil, Chromium) are
//! the service tier: they carry
//! `#[ignore = "service tier: needs running services (README: Test tiers)"]`, so a plain
//! `cargo test` runs the fast tier on any machine and lists the rest as ignored, and
//! `--include-ignored` (or `.ci/run`) runs them.
//! Must not know: any crate above storage and chain — a test harness that needs actors,
//! mailboxes or nodes builds them in its own crate's `tests/common` on top of this one.
//!
//! PostgreSQL is reached through `MERIT_TEST_PG_URL` (an admin connection to an existing
//! database; default `postgres://postgres@127.0.0.1:5432/postgres`).

pub mod anvil;
pub mod broker;

use std::{
    collections::BTreeSet,
    sync::{Mutex, PoisonError},
};

use merit_storage::{sea_orm::ConnectionTrait, Store, StoreOptions};
use uuid::Uuid;

/// A local port nothing listens on now, never the same one twice in this process.
///
/// The kernel may hand the port it just released to the next `bind(0)`, so two tests that
/// each start a server of their own (a Redis they kill and restart, an anvil) could be
/// given one port and end up sharing, and stopping, one server.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free local port");
        if GIVEN
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(port)
        {
            return port;
        }
    }
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A database of its own on the PostgreSQL at `MERIT_TEST_PG_URL`.
    Postgres,
}

/// The admin connection URL for PostgreSQL tests (`MERIT_TEST_PG_URL`).
pub fn pg_admin_url() -> String {
    std::env::var("MERIT_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database of its own for one test; dropped by [`TestDb::cleanup`] (the SQLite
/// directory goes when the value is dropped).
#[derive(Debug)]
pub struct TestDb {
    /// The backend it is on.
    pub backend: Backend,
    /// Its connection URL.
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A fresh, empty (unmigrated) database.
    pub async fn empty(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("merit.db").display()
                );
                Self {
                    backend,
                    url,
                    pg_name: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let name = format!("merit_t_{}", Uuid::new_v4().simple());
                admin_execute(&format!("CREATE DATABASE {name}")).await;
                let base = pg_admin_url();
                let cut = base.rfind('/').expect("database URL has a path");
                let url = format!("{}/{name}", &base[..cut]);
                Self {
                    backend,
                    url,
                    pg_name: Some(name),
                    _dir: None,
                }
            }
        }
    }

    /// A fresh database with every migration applied, and a store connected to it.
    pub async fn migrated(backend: Backend) -> (Self, Store) {
        let db = Self::empty(backend).await;
        let store = db.store().await;
        (db, store)
    }

    /// A new connection pool to it (a "process" of its own).
    pub async fn connect(&self) -> Store {
        Store::connect(&self.url, &StoreOptions::default())
            .await
            .expect("connect")
    }

    /// A new connection pool to it, with every migration applied.
    pub async fn store(&self) -> Store {
        let store = self.connect().await;
        store.migrate().await.expect("migrate");
        store
    }

    /// Drops the PostgreSQL database.
    pub async fn cleanup(self) {
        if let Some(name) = &self.pg_name {
            admin_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        }
    }
}

/// Runs `sql` on a one-connection admin pool of `MERIT_TEST_PG_URL`.
async fn admin_execute(sql: &str) {
    let admin = Store::connect(
        &pg_admin_url(),
        &StoreOptions {
            max_connections: 1,
            ..Default::default()
        },
    )
    .await
    .expect("PostgreSQL must be reachable at MERIT_TEST_PG_URL (run .ci/run to start it)");
    admin
        .db()
        .execute_unprepared(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    admin.close().await.expect("close admin");
}

/// Defines `mod $name { sqlite, postgres }` for each `$name => $body;`, running the async
/// `$body(Backend)` on each backend in a multi-threaded tokio runtime (2 workers, or `N`
/// after a leading `workers = N;`).
///
/// The `postgres` test belongs to the service tier (ignored by a plain `cargo test`, run by
/// `--include-ignored`); the `sqlite` one to the fast tier, unless a leading `services;`
/// says the body needs running services too (a broker, Redis).
///
/// ```ignore
/// on_both_backends! {
///     a_turn_commits_state_inbox_and_outbox_together => turn_commits_all;
/// }
/// async fn turn_commits_all(backend: Backend) { /* … */ }
/// ```
#[macro_export]
macro_rules! on_both_backends {
    (@one $workers:literal, fast, $name:ident => $body:ident) => {
        $crate::on_both_backends! { @mod $workers, [], $name => $body }
    };
    (@one $workers:literal, services, $name:ident => $body:ident) => {
        $crate::on_both_backends! {
            @mod $workers,
            [ignore = "service tier: needs running services (README: Test tiers)"],
            $name => $body
        }
    };
    // `$sqlite`: the sqlite test's tier attribute, if it has one.
    (@mod $workers:literal, [$($sqlite:meta)?], $name:ident => $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = $workers)]
            $(#[$sqlite])?
            async fn sqlite() {
                super::$body($crate::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = $workers)]
            #[ignore = "service tier: needs running services (README: Test tiers)"]
            async fn postgres() {
                super::$body($crate::Backend::Postgres).await
            }
        }
    };
    (@all $workers:literal, $tier:ident, $($name:ident => $body:ident;)*) => {
        $( $crate::on_both_backends! { @one $workers, $tier, $name => $body } )*
    };
    (workers = $workers:literal; services; $($rest:tt)*) => {
        $crate::on_both_backends! { @all $workers, services, $($rest)* }
    };
    (workers = $workers:literal; $($rest:tt)*) => {
        $crate::on_both_backends! { @all $workers, fast, $($rest)* }
    };
    (services; $($rest:tt)*) => {
        $crate::on_both_backends! { @all 2, services, $($rest)* }
    };
    ($($rest:tt)*) => {
        $crate::on_both_backends! { @all 2, fast, $($rest)* }
    };
}
