//! A domain that panics on demand: poison in a batched turn, an event twice in a batch,
//! and a panicking handler restarting only its actor.

use std::{sync::Arc, time::Duration};

use merit_actors::{Decision, Domain, Outcome, RetryPolicy};
use merit_config::DynamicConfig;
use merit_messages::{ActorKind, Envelope};
use merit_storage::Rows;
use merit_supervisors::{Registry, Residency};

use crate::{
    common::{run_in_system, services, wallet, Backend, TestDb},
    poison::vote,
};

/// A domain whose handler panics for one key, or for votes on the proposal `poison`, to
/// prove containment. Its state counts the events it applied.
struct Panicky;

impl Domain for Panicky {
    const KIND: ActorKind = ActorKind::User;
    type State = u64;
    type Inputs = ();
    type Effects = ();

    fn apply(
        _: &DynamicConfig,
        key: &str,
        state: &mut u64,
        event: &Envelope,
        _: &(),
        _: &mut (),
    ) -> Decision {
        assert!(!key.ends_with("bad"), "injected handler panic");
        if let merit_messages::Event::VoteCast(v) = &event.event {
            assert!(v.proposal.as_str() != "poison", "injected poison message");
        }
        *state += 1;
        Decision::changed()
    }

    fn project(_: &str, _: &u64, _: &(), _: &mut Rows) {}
}

fn panicky(store: &merit_storage::Store, arbiter: &actix::Arbiter) -> Registry<Panicky> {
    Registry::new(
        vec![arbiter.handle()].into(),
        store.clone(),
        services("panicky"),
        RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        },
        Residency {
            max_resident: 100,
            idle: Duration::from_secs(60),
        },
    )
    .with_turn_batch(64)
}

/// The stored count of the `Panicky` actor `key`.
async fn stored_count(store: &merit_storage::Store, key: &str) -> (i64, u64) {
    let (version, state) = store
        .load_actor(ActorKind::User, key)
        .await
        .expect("load")
        .expect("stored");
    (version, serde_json::from_value(state).expect("count"))
}

/// A [`panicky`] registry on an arbiter of its own and a fresh SQLite store.
struct PanickyRegistry {
    db: TestDb,
    store: merit_storage::Store,
    arbiter: actix::Arbiter,
    registry: Registry<Panicky>,
}

impl PanickyRegistry {
    async fn start() -> Self {
        let (db, store) = TestDb::migrated(Backend::Sqlite).await;
        let arbiter = actix::Arbiter::new();
        let registry = panicky(&store, &arbiter);
        Self {
            db,
            store,
            arbiter,
            registry,
        }
    }

    async fn finish(self) {
        self.arbiter.stop();
        self.store.close().await.expect("close");
        self.db.cleanup().await;
    }
}

/// Each answer's outcome, in order.
async fn outcomes_of<F, E>(answers: Vec<F>) -> Vec<Outcome>
where
    F: std::future::Future<Output = Result<Outcome, E>>,
    E: std::fmt::Debug,
{
    let mut outcomes = Vec::new();
    for rx in answers {
        outcomes.push(rx.await.expect("answer"));
    }
    outcomes
}

#[test]
fn a_poison_message_in_a_batched_turn_is_dead_lettered_alone_and_its_neighbours_applied() {
    run_in_system(async {
        let t = PanickyRegistry::start().await;
        let (store, registry) = (&t.store, &t.registry);
        // The first message starts a turn at once; the rest queue behind it and are taken
        // as one batch, the poison in the middle.
        let mut answers = Vec::new();
        for i in 0..9 {
            let proposal = if i == 4 {
                "poison".to_string()
            } else {
                format!("p{i}")
            };
            answers.push(registry.route("key-1".into(), Arc::new(vote(wallet(i), &proposal)), 0));
        }
        let outcomes = outcomes_of(answers).await;
        for (i, outcome) in outcomes.iter().enumerate() {
            if i == 4 {
                match outcome {
                    Outcome::DeadLetter { reason, attempts } => {
                        assert!(reason.contains("injected poison message"), "{reason}");
                        assert_eq!(*attempts, 3, "its own attempts, once");
                    }
                    other => panic!("the poison: expected a dead letter, got {other:?}"),
                }
            } else {
                assert!(
                    matches!(outcome, Outcome::Applied(Some(_))),
                    "message {i}: {outcome:?}"
                );
            }
        }
        let status = registry.status();
        assert_eq!(status.applied, 8, "every neighbour applied once");
        assert_eq!(status.dead_letters, 1, "the poison dead-lettered once");
        assert_eq!(stored_count(store, "key-1").await.1, 8);
        t.finish().await;
    });
}

#[test]
fn an_event_twice_in_one_batch_or_applied_before_is_applied_once() {
    run_in_system(async {
        let t = PanickyRegistry::start().await;
        let (store, registry) = (&t.store, &t.registry);
        let before = Arc::new(vote(wallet(1), "p-before"));
        let first = registry.route("key-2".into(), before.clone(), 0);
        assert!(matches!(
            first.await.expect("answer"),
            Outcome::Applied(Some(1))
        ));
        // A burst: a message that starts a turn, then a batch holding one event twice and
        // one applied before (a redelivery), among new ones.
        let twice = Arc::new(vote(wallet(2), "p-twice"));
        let burst = [
            Arc::new(vote(wallet(3), "p-a")),
            twice.clone(),
            Arc::new(vote(wallet(4), "p-b")),
            twice.clone(),
            before.clone(),
            Arc::new(vote(wallet(5), "p-c")),
        ];
        let answers: Vec<_> = burst
            .iter()
            .map(|e| registry.route("key-2".into(), e.clone(), 0))
            .collect();
        let outcomes = outcomes_of(answers).await;
        let duplicates = outcomes
            .iter()
            .filter(|o| **o == Outcome::Duplicate)
            .count();
        assert_eq!(duplicates, 2, "the copy and the redelivery: {outcomes:?}");
        assert_eq!(outcomes[3], Outcome::Duplicate, "the copy in the batch");
        assert_eq!(outcomes[4], Outcome::Duplicate, "applied before the batch");
        assert!(outcomes
            .iter()
            .enumerate()
            .all(|(i, o)| i == 3 || i == 4 || matches!(o, Outcome::Applied(Some(_)))));
        assert_eq!(
            stored_count(store, "key-2").await.1,
            5,
            "1 before + 4 distinct new events"
        );
        let status = registry.status();
        assert_eq!(status.applied, 5);
        assert!(
            status.turns < status.applied,
            "the burst was batched: {} turns for {} messages",
            status.turns,
            status.applied
        );
        t.finish().await;
    });
}

#[test]
fn a_panicking_handler_restarts_only_its_actor() {
    run_in_system(async {
        let t = PanickyRegistry::start().await;
        let registry = &t.registry;
        let bad = registry.route("key-bad".into(), Arc::new(vote(wallet(1), "p")), 0);
        let good: Vec<_> = (0..10)
            .map(|i| registry.route(format!("key-{i}"), Arc::new(vote(wallet(i), "p")), 0))
            .collect();
        for rx in good {
            assert!(matches!(
                rx.await.expect("answer"),
                Outcome::Applied(Some(1))
            ));
        }
        match bad.await.expect("answer") {
            Outcome::DeadLetter { reason, attempts } => {
                assert!(reason.contains("injected handler panic"), "{reason}");
                assert_eq!(attempts, 3);
            }
            other => panic!("expected a dead letter, got {other:?}"),
        }
        // The same actor keeps serving: its next (good) message is applied after restarts.
        let status = registry.status();
        assert_eq!(status.restarts, 3, "one restart per panic");
        assert_eq!(status.applied, 10);
        let again = registry
            .route("key-0".into(), Arc::new(vote(wallet(0), "q")), 0)
            .await
            .expect("answer");
        assert_eq!(again, Outcome::Applied(Some(2)));
        t.finish().await;
    });
}
