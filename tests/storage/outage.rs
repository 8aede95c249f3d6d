//! A database going away is an outage, not a failed statement: what PostgreSQL sends a
//! session it terminates (a restart, a shutdown) is waited out, never counted against
//! the event being handled.

use merit_storage::sea_orm::{ConnectOptions, ConnectionTrait, Database, DbBackend, Statement};

use crate::common::{Backend, TestDb};

/// A PostgreSQL restart terminates every session with `57P01` ("terminating connection
/// due to administrator command"). That error once read as a failed statement: each turn
/// that met it spent an attempt, and during the fault suite's PostgreSQL restart one
/// `governance.vote.recorded` ran out of attempts and was dead-lettered (a vote lost for
/// its voter). Here a session is terminated as a restart does it, and what its next
/// statement gets must read as an outage.
#[tokio::test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_session_terminated_as_a_restart_does_is_an_outage() {
    let (db, store) = TestDb::migrated(Backend::Postgres).await;
    // One connection, not pinged before use, so the statement meets the terminated session.
    let mut options = ConnectOptions::new(db.url.clone());
    options
        .max_connections(1)
        .min_connections(1)
        .test_before_acquire(false)
        .sqlx_logging(false);
    let victim = Database::connect(options).await.expect("connect");
    let pid = victim
        .query_one(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_backend_pid() AS pid",
        ))
        .await
        .expect("read the pid")
        .expect("a row")
        .try_get::<i32>("", "pid")
        .expect("pid");
    // Waits (up to 5 s) until the session has ended, its error written to the socket.
    let ended = store
        .db()
        .query_one(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT pg_terminate_backend({pid}, 5000) AS ended"),
        ))
        .await
        .expect("terminate the session")
        .expect("a row")
        .try_get::<bool>("", "ended")
        .expect("ended");
    assert!(ended, "the session ended within 5 s");
    let err = victim
        .execute(Statement::from_string(DbBackend::Postgres, "SELECT 1"))
        .await
        .expect_err("the session is gone");
    assert!(
        merit_storage::is_unavailable(&err),
        "a terminated session reads as a failed statement: {err}"
    );
    db.cleanup().await;
}
