//! Many distinct users passing through one node: the resident actor count stays under the
//! cap (least recently used idle actors are passivated) and memory stays bounded.
//! `MERIT_PASSIVATION_USERS` raises the count (the README's figure uses 1,000,000).

mod common;

use std::{sync::Arc, time::Duration};

use common::{run_in_system, services};
use merit_actors::{Outcome, RetryPolicy, UserDomain};
use merit_messages::{Address, Envelope, VoteCast, VoteChoice};
use merit_storage::{Store, StoreOptions};
use merit_supervisors::{Registry, Residency};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_string)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Bytes held by the in-memory SQLite database (it grows with every user; it is not actor
/// memory, so it is subtracted from RSS).
async fn db_kib(store: &Store) -> u64 {
    use merit_storage::sea_orm::{ConnectionTrait, Statement};
    let pragma = |name: &'static str| {
        let store = store.clone();
        async move {
            let row = store
                .db()
                .query_one(Statement::from_string(
                    store.backend(),
                    format!("PRAGMA {name}"),
                ))
                .await
                .expect("pragma")
                .expect("a row");
            row.try_get_by_index::<i64>(0).expect("integer") as u64
        }
    };
    pragma("page_count").await * pragma("page_size").await / 1024
}

/// The resident cap, and how many users vote at a time.
const CAP: usize = 5_000;
const WAVE: u32 = 1_000;

/// A registry of user actors on `arbiters`, capped at [`CAP`] resident actors.
fn user_registry(store: &Store, arbiters: &[actix::Arbiter]) -> Registry<UserDomain> {
    Registry::new(
        arbiters
            .iter()
            .map(|a| a.handle())
            .collect::<Vec<_>>()
            .into(),
        store.clone(),
        services("passivation"),
        RetryPolicy::default(),
        Residency {
            max_resident: CAP,
            idle: Duration::from_secs(3600),
        },
    )
}

/// Wave `wave`: [`WAVE`] users never seen before each vote once; every vote is applied.
async fn route_wave(registry: &Registry<UserDomain>, wave: u32) {
    let replies: Vec<_> = (0..WAVE)
        .map(|i| {
            let n = wave * WAVE + i;
            let mut a = [0u8; 20];
            a[16..].copy_from_slice(&n.to_be_bytes());
            let voter = Address(a);
            let env = Envelope::new(
                "passivation-test",
                VoteCast {
                    proposal: "p".parse().expect("id"),
                    voter,
                    choice: VoteChoice::For,
                    reason: None,
                },
            );
            registry.route(voter.to_string(), Arc::new(env), 0)
        })
        .collect();
    for r in replies {
        assert!(matches!(r.await.expect("answer"), Outcome::Applied(_)));
    }
}

/// Every user activated once, idle actors were passivated, and memory apart from the
/// database did not grow with the number of users once the cap was reached.
async fn check_activations_and_memory(
    registry: &Registry<UserDomain>,
    store: &Store,
    (users, peak): (u32, usize),
    rss_after_first_cap: Option<u64>,
    started: std::time::Instant,
) {
    let status = registry.status();
    let rss_end = rss_kib();
    let db_end = db_kib(store).await;
    let without_db = rss_end.saturating_sub(db_end);
    let growth = without_db.saturating_sub(rss_after_first_cap.unwrap_or(without_db));
    println!(
        "users={users} cap={CAP} peak_resident={peak} activations={} passivations={} rss_end={} MiB sqlite_db={} MiB rss_without_db={} MiB growth_after_cap_without_db={} MiB elapsed={:.1}s",
        status.activations,
        status.passivations,
        rss_end / 1024,
        db_end / 1024,
        without_db / 1024,
        growth / 1024,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        status.activations,
        u64::from(users),
        "every user activated once"
    );
    assert!(
        status.passivations >= u64::from(users) - CAP as u64,
        "idle actors were passivated"
    );
    // Resident actors are capped, so memory apart from the database does not grow with
    // the number of users (allowing for allocator slack).
    assert!(
        growth < 256 * 1024,
        "RSS grew by {} MiB after reaching the cap",
        growth / 1024
    );
}

#[test]
fn distinct_users_stay_under_the_resident_cap_with_bounded_memory() {
    let users: u32 = std::env::var("MERIT_PASSIVATION_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    run_in_system(async move {
        let store = Store::connect("sqlite::memory:", &StoreOptions::default())
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        let arbiters: Vec<actix::Arbiter> = (0..2).map(|_| actix::Arbiter::new()).collect();
        let registry = user_registry(&store, &arbiters);
        let mut peak = 0;
        let mut rss_after_first_cap = None;
        let started = std::time::Instant::now();
        for wave in 0..users / WAVE {
            route_wave(&registry, wave).await;
            let resident = registry.resident();
            peak = peak.max(resident);
            assert!(
                resident <= CAP + WAVE as usize,
                "resident {resident} exceeds the cap {CAP} (+ one wave in flight)"
            );
            if rss_after_first_cap.is_none() && (wave + 1) * WAVE >= 2 * CAP as u32 {
                rss_after_first_cap = Some(rss_kib().saturating_sub(db_kib(&store).await));
            }
        }
        check_activations_and_memory(
            &registry,
            &store,
            (users, peak),
            rss_after_first_cap,
            started,
        )
        .await;
        for a in arbiters {
            a.stop();
        }
    });
}
