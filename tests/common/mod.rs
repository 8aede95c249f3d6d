//! The shared test harness: every test gets its own database (a fresh SQLite file or a
//! fresh PostgreSQL database), so tests run in parallel without seeing each other.
//!
//! PostgreSQL is reached through `MERIT_TEST_PG_URL` (an admin connection to an existing
//! database; default `postgres://postgres@127.0.0.1:5432/postgres`).

#![allow(dead_code, unreachable_pub, missing_docs)]

use merit_storage::{sea_orm::ConnectionTrait, Store, StoreOptions};
use uuid::Uuid;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn pg_admin_url() -> String {
    std::env::var("MERIT_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database of its own for one test; dropped by [`TestDb::cleanup`].
pub struct TestDb {
    pub backend: Backend,
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
                let admin = admin().await;
                admin
                    .db()
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                admin.close().await.expect("close admin");
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
        let store = db.connect().await;
        store.migrate().await.expect("migrate");
        (db, store)
    }

    pub async fn connect(&self) -> Store {
        Store::connect(&self.url, &StoreOptions::default())
            .await
            .expect("connect")
    }

    /// Drops the PostgreSQL database (the SQLite directory goes with `self`).
    pub async fn cleanup(self) {
        if let Some(name) = &self.pg_name {
            let admin = admin().await;
            admin
                .db()
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .expect("drop test database");
            admin.close().await.expect("close admin");
        }
    }
}

async fn admin() -> Store {
    Store::connect(
        &pg_admin_url(),
        &StoreOptions {
            max_connections: 1,
            ..Default::default()
        },
    )
    .await
    .expect("PostgreSQL must be reachable at MERIT_TEST_PG_URL (run .ci/run to start it)")
}

/// Defines `mod $name { sqlite, postgres }`, running `$body(Backend)` on each backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident => $body:ident;)*) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$body($crate::common::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$body($crate::common::Backend::Postgres).await
                }
            }
        )*
    };
}
