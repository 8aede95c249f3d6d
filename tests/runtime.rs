//! The runtime on real RabbitMQ and PostgreSQL: per-key order, dead letters with reasons,
//! contained panics, and recovery when the broker drops its connections.

mod common;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use chrono::Utc;
use common::{eventually, node_options, run_in_system, services, wallet, Backend, TestDb, Vhost};
use merit_actors::{Decision, Domain, Outcome, RetryPolicy};
use merit_config::DynamicConfig;
use merit_mailbox::{Outgoing, RabbitTransport, Transport};
use merit_messages::{ActorKind, Address, Envelope, VoteChoice};
use merit_storage::{
    entities::{actor, user},
    sea_orm::{ActiveValue::Set, EntityTrait, PaginatorTrait},
    Rows, Store,
};
use merit_supervisors::{Node, Registry, Residency};

async fn rabbit(vhost: &Vhost, shards: u16) -> Arc<RabbitTransport> {
    Arc::new(common::declared_transport(&vhost.url, shards).await)
}

/// 1,000 tokens, each minted then transferred 9 times along a chain of owners, all
/// published interleaved. The NftActor ignores a change older than the last it applied,
/// so any reordering within a key would drop transfers and the `user.holdings.changed`
/// events they emit; strict per-key order emits exactly 1 + 2 × 9 per token.
#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn per_key_order_holds_under_concurrency_across_1000_keys() {
    run_in_system(async {
        const TOKENS: u32 = 1_000;
        const HOPS: u32 = 9;
        let (db, store, vhost) = common::pg_and_vhost().await;
        let transport = rabbit(&vhost, 4).await;
        let node = Node::start(
            node_options("order", 4),
            store.clone(),
            services("order"),
            transport.clone(),
        )
        .await
        .expect("node");

        let batch: Vec<Outgoing> = (0..=HOPS)
            .flat_map(|step| common::nft_step(step, TOKENS))
            .collect();
        for chunk in batch.chunks(2_000) {
            transport.publish(chunk.to_vec()).await.expect("publish");
        }
        let expected_emitted = u64::from(TOKENS) * (1 + 2 * u64::from(HOPS));
        common::nft_chains_applied(&store, TOKENS, HOPS, 120).await;
        let emitted = common::holdings_changes_emitted(&store).await;
        assert_eq!(
            emitted, expected_emitted,
            "a reordered change would have been ignored"
        );
        // The holdings flowed on to the users, in order too: each token ends with its last owner.
        let last_owner = wallet(5 + HOPS).to_string();
        eventually(60, "holdings reach the users", || {
            let store = store.clone();
            let last_owner = last_owner.clone();
            async move {
                store
                    .load_actor(ActorKind::User, &last_owner)
                    .await
                    .expect("load")
                    .is_some_and(|(_, s)| s["holdings"].get("5").is_some())
            }
        })
        .await;
        node.shutdown(Duration::from_secs(5)).await;
        vhost.delete();
        db.cleanup().await;
    });
}

fn vote(voter: Address, proposal: &str) -> Envelope {
    common::vote_cast("dlq-test", proposal, voter, VoteChoice::For)
}

/// A user whose stored snapshot is unreadable: every turn for it fails.
async fn plant_corrupt_snapshot(store: &Store, user: Address) {
    actor::Entity::insert(actor::ActiveModel {
        kind: Set("user".into()),
        key: Set(user.to_string()),
        version: Set(1),
        state: Set(serde_json::json!({"votes_cast": "not a number"})),
        updated_at: Set(Utc::now()),
    })
    .exec(store.db())
    .await
    .expect("plant a corrupt snapshot");
}

/// A proposal's creation and 50 good votes on it, with three poison messages among them:
/// a vote by `poisoned`, bad JSON and an unknown event type.
fn votes_with_poison(poisoned: Address) -> Vec<Outgoing> {
    let good: Vec<Envelope> = (0..50).map(|i| vote(wallet(i), "p-1")).collect();
    let created = common::open_proposal("p-1");
    let mut out = vec![Outgoing::from_envelope(&created)];
    out.extend(good[..25].iter().map(Outgoing::from_envelope));
    out.push(Outgoing::from_envelope(&vote(poisoned, "p-1")));
    // Routed like a creation, which the proposal shards take.
    let mut bad_json = Outgoing::from_envelope(&created);
    bad_json.body = Bytes::from_static(b"{\"id\": oops");
    bad_json.message_id = "bad-json".into();
    out.push(bad_json);
    let mut unknown = Outgoing::from_envelope(&good[1]);
    unknown.routing_key = "governance.vote.exploded".into();
    unknown.message_id = "unknown-type".into();
    out.push(unknown);
    out.extend(good[25..].iter().map(Outgoing::from_envelope));
    out
}

/// The three dead letters carry their reasons: one malformed, one unknown type, and the
/// poisoned turn's handler error after its three attempts.
async fn check_dead_letters_carry_their_reasons(transport: &RabbitTransport, store: &Store) {
    let dead = common::all_dead_letters(transport, store).await;
    let classes: Vec<&str> = dead.iter().map(|d| d.reason_class.as_str()).collect();
    assert_eq!(
        classes.iter().filter(|c| **c == "malformed").count(),
        1,
        "{classes:?}"
    );
    assert!(classes.contains(&"unknown_type"), "{classes:?}");
    let handler = dead
        .iter()
        .find(|d| d.reason_class == "handler_error")
        .expect("handler error dead letter");
    assert!(
        handler.reason.contains("unreadable"),
        "reason names the failure: {}",
        handler.reason
    );
    assert_eq!(handler.attempts, 3, "dead-lettered after max_attempts");
}

/// Malformed messages and a message whose handler keeps failing go to the dead-letter
/// queue with their reasons; the messages around them are applied.
#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn poison_messages_are_dead_lettered_with_reasons_while_neighbours_are_processed() {
    run_in_system(async {
        let (db, store, vhost) = common::pg_and_vhost().await;
        let transport = rabbit(&vhost, 2).await;
        let poisoned = wallet(999);
        plant_corrupt_snapshot(&store, poisoned).await;
        let node = Node::start(
            node_options("dlq", 2),
            store.clone(),
            services("dlq"),
            transport.clone(),
        )
        .await
        .expect("node");
        transport
            .publish(votes_with_poison(poisoned))
            .await
            .expect("publish");

        let db_conn = store.db().clone();
        // 50 voters (their vote.recorded) and the creator.
        eventually(60, "the good votes are applied", || {
            let db_conn = db_conn.clone();
            async move { user::Entity::find().count(&db_conn).await.expect("count") == 51 }
        })
        .await;
        let (t, s) = (transport.clone(), store.clone());
        // Bad JSON is refused by the proposal shard it reached; the unknown type by the
        // unrouted mover; the poisoned turn after its attempts.
        eventually(60, "three dead letters", || {
            let (t, s) = (t.clone(), s.clone());
            async move { common::all_dead_letters(t.as_ref(), &s).await.len() >= 3 }
        })
        .await;
        check_dead_letters_carry_their_reasons(&transport, &store).await;
        let status = node.status();
        let users = status
            .registries
            .iter()
            .find(|r| r.kind == "user")
            .expect("user registry");
        assert!(
            users.retries >= 2,
            "the poisoned turn was retried: {users:?}"
        );
        node.shutdown(Duration::from_secs(5)).await;
        vhost.delete();
        db.cleanup().await;
    });
}

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

#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn closed_broker_connections_recover_with_nothing_lost() {
    run_in_system(async {
        let (db, store, vhost) = common::pg_and_vhost().await;
        let node_transport = rabbit(&vhost, 2).await;
        let node = Node::start(
            node_options("recover", 2),
            store.clone(),
            services("recover"),
            node_transport.clone(),
        )
        .await
        .expect("node");
        let producer = rabbit(&vhost, 2).await;
        common::publish_open_proposals(producer.as_ref(), 10).await;
        let votes: Vec<Envelope> = (0..4_000)
            .map(|i| vote(wallet(i % 400), &format!("p-{}", i / 400)))
            .collect();
        let mut closed = 0;
        for (i, chunk) in votes.chunks(500).enumerate() {
            // The producer retries a batch the outage interrupted; duplicates are absorbed.
            while producer
                .publish(chunk.iter().map(Outgoing::from_envelope).collect())
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if i % 3 == 1 {
                vhost.close_connections();
                closed += 1;
            }
        }
        let s = store.clone();
        eventually(
            120,
            "all 4,000 votes applied after the connections were closed",
            || {
                let s = s.clone();
                async move { common::votes_counted(&s).await >= 4_000 }
            },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            common::votes_counted(&store).await,
            4_000,
            "nothing lost, nothing doubled"
        );
        assert!(closed >= 2);
        assert!(
            node_transport.is_connected().await,
            "the node's transport reconnected by itself"
        );
        node.shutdown(Duration::from_secs(5)).await;
        vhost.delete();
        db.cleanup().await;
    });
}

/// Every node runs the retention sweeper: an inbox row applied before the retention goes,
/// a fresh one stays, and the service shows in the node's status.
#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn a_node_sweeps_bookkeeping_rows_past_their_retention() {
    use merit_storage::entities::inbox;
    run_in_system(async {
        let (db, store, vhost) = common::pg_and_vhost().await;
        let transport = rabbit(&vhost, 1).await;
        let row = |id: &str, days_ago: i64| inbox::ActiveModel {
            consumer: Set("user".into()),
            event_id: Set(id.into()),
            processed_at: Set(Utc::now() - chrono::Duration::days(days_ago)),
        };
        inbox::Entity::insert_many([row("expired", 2), row("fresh", 0)])
            .exec(store.db())
            .await
            .expect("inbox rows");
        let mut options = node_options("sweep", 1);
        options.retention.inbox = Some(Duration::from_secs(86_400));
        options.sweep_interval = Duration::from_millis(200);
        let node = Node::start(options, store.clone(), services("sweep"), transport)
            .await
            .expect("node");
        let ids = |store: merit_storage::Store| async move {
            inbox::Entity::find()
                .all(store.db())
                .await
                .expect("inbox")
                .into_iter()
                .map(|r| r.event_id)
                .collect::<Vec<_>>()
        };
        let s = store.clone();
        eventually(30, "the expired inbox row is swept", || {
            let s = s.clone();
            async move { ids(s).await == ["fresh"] }
        })
        .await;
        assert!(node
            .status()
            .services
            .iter()
            .any(|s| s.name == "retention-sweeper"));
        node.shutdown(Duration::from_secs(5)).await;
        vhost.delete();
        store.close().await.expect("close");
        db.cleanup().await;
    });
}
