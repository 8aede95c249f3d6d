//! The connection to merit's database and the one place write transactions begin.
//!
//! SQLite (the embedded default) runs in WAL mode with a busy timeout, and every write
//! transaction in this process goes through one async gate, so two writers never hold
//! competing deferred transactions (SQLite's deadlock) while readers proceed in parallel.
//! PostgreSQL needs no gate: row locks and the version check serialise writers.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use sea_orm::{
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    Statement, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use tokio::sync::{Mutex, Notify};

use crate::{
    error::{Result, StorageError},
    feed::OutboxFeed,
    migration::Migrator,
    snapshots::SnapshotLoader,
};

/// How to connect.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most pooled connections (PostgreSQL; SQLite uses at most 4 readers + the writer gate).
    pub max_connections: u32,
    /// How long to wait for a connection or a SQLite lock.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// A boxed future borrowing a transaction, as write closures return.
pub type TxFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'c>>;

/// merit's database: a pool plus the write discipline. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    write_gate: Option<Arc<Mutex<()>>>,
    outbox_signal: Arc<Notify>,
    outbox_feed: Arc<OutboxFeed>,
    snapshots: Arc<SnapshotLoader>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the connection: its options hold the DSN, which may hold a password.
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish()
    }
}

/// The PostgreSQL advisory lock key migrations hold (`merit` + 1, as bytes).
pub(crate) const MIGRATION_LOCK: i64 = 0x6d65_7269_7400_0001;

/// The PostgreSQL advisory lock key proposal sequence numbers are allocated under
/// (`merit` + 2, as bytes).
pub(crate) const PROPOSAL_SEQ_LOCK: i64 = 0x6d65_7269_7400_0002;

impl Store {
    /// Connects to `url` (`sqlite:...` or `postgres://...`). Does not migrate.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self> {
        let scheme = url.split(':').next().unwrap_or_default();
        let sqlite = match scheme {
            "sqlite" => true,
            "postgres" | "postgresql" => false,
            other => {
                return Err(StorageError::UnsupportedBackend {
                    scheme: other.to_string(),
                })
            }
        };
        let mut opts = ConnectOptions::new(url.to_string());
        // No ping on every acquire (sqlx's default): it is a round trip per statement batch,
        // and a dead connection fails the statement anyway, which the callers retry (an
        // actor waits out an unreachable database without spending attempts).
        opts.acquire_timeout(options.acquire_timeout)
            .test_before_acquire(false)
            .sqlx_logging(false);
        if sqlite {
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            // An in-memory database exists once per connection: keep exactly one.
            let max = if in_memory {
                1
            } else {
                options.max_connections.clamp(1, 5)
            };
            opts.max_connections(max)
                .min_connections(if in_memory { 1 } else { 0 });
            if in_memory {
                // Never recycle it: a new connection would be a new, empty database.
                let forever = Duration::from_secs(100 * 365 * 24 * 3600);
                opts.idle_timeout(forever).max_lifetime(forever);
            }
            let busy = options.acquire_timeout;
            opts.map_sqlx_sqlite_opts(move |o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(busy)
                    .foreign_keys(true)
            });
        } else {
            opts.max_connections(options.max_connections);
        }
        let db = Database::connect(opts).await?;
        Ok(Self {
            db,
            write_gate: sqlite.then(|| Arc::new(Mutex::new(()))),
            outbox_signal: Arc::new(Notify::new()),
            outbox_feed: OutboxFeed::new(),
            snapshots: Arc::default(),
        })
    }

    /// The pool, for reads. Writes go through [`Store::write`] or [`Store::commit_turn`].
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Notified after outbox rows were committed that are not in the [`OutboxFeed`] (the
    /// chain listener's), so the relay in this process reads the table at once instead of
    /// waiting for its next poll.
    pub fn outbox_signal(&self) -> Arc<Notify> {
        self.outbox_signal.clone()
    }

    /// Committed outbox rows handed to this process's relay (see [`crate::feed`]).
    pub fn outbox_feed(&self) -> Arc<OutboxFeed> {
        self.outbox_feed.clone()
    }

    pub(crate) fn snapshot_loader(&self) -> Arc<SnapshotLoader> {
        self.snapshots.clone()
    }

    /// Which database this is.
    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Applies pending migrations; returns the names applied (empty when up to date).
    ///
    /// On PostgreSQL the nodes of a cluster that start together on a fresh database take
    /// turns: each holds a transaction-scoped advisory lock ([`MIGRATION_LOCK`]) while it
    /// reads what is pending and applies it, so the first applies and the others wait, then
    /// find nothing to do. (SQLite is one process's embedded file.)
    pub async fn migrate(&self) -> Result<Vec<String>> {
        let lock = if self.backend() == DbBackend::Postgres {
            let txn = self.db.begin().await?;
            txn.execute(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"),
            ))
            .await?;
            Some(txn)
        } else {
            None
        };
        let pending: Vec<String> = Migrator::get_pending_migrations(&self.db)
            .await?
            .iter()
            .map(|m| m.name().to_string())
            .collect();
        if !pending.is_empty() {
            let _gate = self.lock_writes().await;
            Migrator::up(&self.db, None).await?;
        }
        if let Some(txn) = lock {
            txn.commit().await?;
        }
        Ok(pending)
    }

    /// Checks the database answers (for readiness).
    pub async fn ping(&self) -> Result<()> {
        Ok(self.db.ping().await?)
    }

    /// Runs `f` in one write transaction: committed when `f` returns `Ok`, rolled back
    /// (entirely) when it returns `Err`.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send,
        F: for<'c> FnOnce(&'c DatabaseTransaction) -> TxFuture<'c, T> + Send,
    {
        let _gate = self.lock_writes().await;
        let txn = self.db.begin().await?;
        match f(&txn).await {
            Ok(value) => {
                txn.commit().await?;
                Ok(value)
            }
            Err(e) => {
                // Roll back now rather than on drop, so the connection returns clean.
                txn.rollback().await?;
                Err(e)
            }
        }
    }

    pub(crate) async fn lock_writes(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.write_gate {
            Some(gate) => Some(gate.lock().await),
            None => None,
        }
    }

    /// Closes the pool.
    pub async fn close(self) -> Result<()> {
        Ok(self.db.close().await?)
    }
}

/// Executes a statement built with sea-query on `conn`, returning rows affected.
pub(crate) async fn exec<C: ConnectionTrait>(
    conn: &C,
    stmt: &impl sea_orm::StatementBuilder,
) -> Result<u64> {
    let backend = conn.get_database_backend();
    Ok(conn.execute(backend.build(stmt)).await?.rows_affected())
}
