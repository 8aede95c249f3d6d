//! The test: the traffic published to a real node, every malformed message dead-lettered
//! once with its class and reason, every good vote counted.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use merit_mailbox::{DeadLetter, Outgoing, RabbitTransport, Transport};
use merit_storage::{
    sea_orm::{EntityTrait, PaginatorTrait},
    Store,
};
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    common::{self, Backend, ServedNode, TestDb, Vhost},
    traffic::{
        traffic, Flaw, Traffic, BATCH, MALFORMED, PROPOSALS, UNKNOWN_TYPE, VOTES, VOTE_CAST,
        WAIT_SECS,
    },
};

/// A client of the node's HTTP API.
struct Api {
    base: String,
    admin: String,
    http: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.base);
        common::answer(self.http.get(url).bearer_auth(&self.admin)).await
    }

    /// The DLQ's depth as the API reports it.
    async fn dlq_total(&self) -> u64 {
        let (status, page) = self.get("/api/v1/dlq?page_size=1").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["total"].as_u64().expect("total")
    }

    /// Polls `/ready` until it answers 200, for at most `secs`.
    async fn ready(&self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (status, body) = self.get("/ready").await;
            if status == StatusCode::OK {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/ready not 200 within {secs}s: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn ten_thousand_malformed_messages_are_dead_lettered_with_their_reasons_and_good_traffic_is_unaffected(
) {
    common::init_crypto();
    let started = Instant::now();
    let seed: u64 = rand::thread_rng().gen();
    println!("interleaving seed: {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let db = TestDb::empty(Backend::Postgres).await;
    let vhost = Vhost::create();
    let producer = common::declared_transport(&vhost.url, 2).await;

    let log = common::artefacts().join(format!("malformed-{}.log", vhost.name));
    let extra = [
        ("MERIT_MAILBOX_SHARDS", "2"),
        ("MERIT_MAILBOX_PREFETCH", "200"),
    ];
    let served = ServedNode::spawn_on(db, vhost, "malformed-node", log, &extra);
    println!("node log: {}", served.log.display());
    let api = Api {
        base: served.base.clone(),
        admin: served.admin.clone(),
        http: reqwest::Client::new(),
    };
    api.ready(60).await;
    let store = served.db.connect().await;

    let traffic = traffic(&mut rng);
    let publishing = publish(&producer, &traffic).await;
    check_good_votes_are_counted_and_the_dlq_fills(&api, &store, publishing, &served.log).await;
    check_the_queues_drained_and_each_good_vote_counted_once(&producer, &store).await;
    let class_of =
        check_each_malformed_message_is_dead_lettered_once(&producer, &store, &traffic).await;
    check_the_api_lists_the_same_dead_letters(&api, &class_of).await;

    // The node is still ready after all that.
    api.ready(30).await;
    let ServedNode {
        process, vhost, db, ..
    } = served;
    let status = process.stop();
    assert!(status.success(), "clean exit: {status}");
    drop(producer);
    store.close().await.expect("close store");
    vhost.delete();
    db.cleanup().await;
    println!("test took {:.1}s", started.elapsed().as_secs_f64());
}

/// Publishes the proposals, then the rest in batches: when the rest began.
async fn publish(producer: &RabbitTransport, traffic: &Traffic) -> Instant {
    producer
        .publish(traffic.proposals.clone())
        .await
        .expect("publish proposals");
    let publishing = Instant::now();
    for batch in traffic.shuffled.chunks(BATCH) {
        producer.publish(batch.to_vec()).await.expect("publish");
    }
    println!(
        "published {} messages in {:.1}s",
        traffic.shuffled.len() + PROPOSALS as usize,
        publishing.elapsed().as_secs_f64()
    );
    publishing
}

/// Good traffic: every vote counted. Malformed traffic: the DLQ fills to exactly 10,000.
async fn check_good_votes_are_counted_and_the_dlq_fills(
    api: &Api,
    store: &Store,
    publishing: Instant,
    log: &std::path::Path,
) {
    common::eventually(WAIT_SECS, "all 2,000 good votes counted", || {
        let s = store.clone();
        async move { common::votes_counted(&s).await >= i64::from(VOTES) }
    })
    .await;
    println!(
        "votes counted after {:.1}s",
        publishing.elapsed().as_secs_f64()
    );
    let deadline = Instant::now() + Duration::from_secs(WAIT_SECS);
    let mut total = 0;
    while Instant::now() < deadline {
        total = api.dlq_total().await;
        if total >= MALFORMED as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "DLQ at {total} after {:.1}s",
        publishing.elapsed().as_secs_f64()
    );
    assert!(
        total >= MALFORMED as u64,
        "only {total} of {MALFORMED} dead-lettered within {WAIT_SECS}s; log: {}",
        log.display()
    );
}

/// Nothing more arrives (no duplicates, no good message) once the shards drain. The
/// depth is read through the transport: the API's `total` is read right after its own
/// peek returned what it took, and can lag by those messages.
async fn check_the_queues_drained_and_each_good_vote_counted_once(
    producer: &RabbitTransport,
    store: &Store,
) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let depths = producer.queue_depths().await.expect("queue depths");
    let depth = |name: &str| {
        depths
            .iter()
            .find(|(q, _)| q == name)
            .map(|(_, n)| *n)
            .unwrap_or_else(|| panic!("no queue {name} in {depths:?}"))
    };
    assert_eq!(
        depth("merit.dlq"),
        0,
        "the recorder took every dead letter off the queue: {depths:?}"
    );
    let recorded = store
        .count_dead_letters(&merit_storage::DeadLetterFilter::default())
        .await
        .expect("count dead letters");
    assert_eq!(
        recorded, MALFORMED as u64,
        "the dead-letter table holds exactly the malformed messages"
    );
    assert_eq!(depth("merit.unrouted"), 0, "the mover drained: {depths:?}");
    for q in ["merit.proposal.0", "merit.proposal.1"] {
        assert_eq!(depth(q), 0, "the shards drained: {depths:?}");
    }
    assert_eq!(
        common::votes_counted(store).await,
        i64::from(VOTES),
        "votes counted once each"
    );
    let vote_rows = merit_storage::entities::vote::Entity::find()
        .count(store.db())
        .await
        .expect("count votes");
    assert_eq!(vote_rows, u64::from(VOTES), "one votes row per good vote");
}

/// Every dead letter, read directly: each malformed message exactly once, with its class,
/// its reason, its routing key and body unchanged, taken from the queue it reached (a
/// proposal shard, or merit.unrouted for what no shard could take). Returns each dead
/// letter's class by its id.
async fn check_each_malformed_message_is_dead_lettered_once(
    producer: &RabbitTransport,
    store: &Store,
    traffic: &Traffic,
) -> HashMap<String, String> {
    let reading = Instant::now();
    common::eventually(60, "every malformed message is dead-lettered", || async {
        common::all_dead_letters(producer, store).await.len() >= MALFORMED
    })
    .await;
    let dead: Vec<DeadLetter> = common::all_dead_letters(producer, store).await;
    println!(
        "read {} dead letters in {:.1}s",
        dead.len(),
        reading.elapsed().as_secs_f64()
    );
    assert_eq!(dead.len(), MALFORMED, "dead letters read");
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut per_class: BTreeMap<&str, usize> = BTreeMap::new();
    let mut per_flaw: BTreeMap<Flaw, usize> = BTreeMap::new();
    let mut samples: BTreeMap<Flaw, String> = BTreeMap::new();
    let mut class_of: HashMap<String, String> = HashMap::new();
    for d in &dead {
        let id = d.message_id.as_deref().expect("original message id kept");
        *seen.entry(id).or_default() += 1;
        assert!(
            !traffic.good_ids.contains(id),
            "a good message was dead-lettered: {} {}",
            d.reason_class,
            d.reason
        );
        let (flaw, out) = traffic
            .sent
            .get(id)
            .unwrap_or_else(|| panic!("an unexpected dead letter: {id} {}", d.reason));
        check_the_dead_letter_of(d, *flaw, out);
        *per_class.entry(d.reason_class.as_str()).or_default() += 1;
        *per_flaw.entry(*flaw).or_default() += 1;
        samples.entry(*flaw).or_insert_with(|| d.reason.clone());
        class_of.insert(d.id.clone(), d.reason_class.clone());
    }
    let doubled: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    assert!(doubled.is_empty(), "dead-lettered twice: {doubled:?}");
    assert_eq!(seen.len(), MALFORMED, "every malformed message once");
    for (flaw, reason) in &samples {
        println!("  {flaw:?} -> {}: {reason}", flaw.class());
    }
    println!("dead letters per class: {per_class:?}");
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    for f in Flaw::ALL {
        *expected.entry(f.class()).or_default() += f.count();
        assert_eq!(per_flaw.get(&f).copied(), Some(f.count()), "{f:?}");
    }
    assert_eq!(per_class, expected, "per class: what was sent of it");
    class_of
}

/// The dead letter `d` of `out`, malformed with `flaw`: its class, a reason naming the
/// field, its routing key and body unchanged, the queue it was taken from.
fn check_the_dead_letter_of(d: &DeadLetter, flaw: Flaw, out: &Outgoing) {
    assert_eq!(d.reason_class, flaw.class(), "{flaw:?}: {}", d.reason);
    assert!(
        d.reason.contains(flaw.needle()),
        "{flaw:?}: the reason {:?} names {:?}",
        d.reason,
        flaw.needle()
    );
    assert_eq!(d.routing_key, out.routing_key, "{flaw:?}");
    if out.body.len() > merit_mailbox::MAX_DEAD_LETTER_BODY {
        // Kept cut at the bound, with the original size beside it.
        assert_eq!(
            d.body,
            out.body.slice(..merit_mailbox::MAX_DEAD_LETTER_BODY),
            "{flaw:?}: the body's head"
        );
        assert_eq!(d.truncated_from, Some(out.body.len()), "{flaw:?}");
    } else {
        assert_eq!(d.body, out.body, "{flaw:?}: body unchanged");
        assert_eq!(d.truncated_from, None, "{flaw:?}");
    }
    if flaw.reaches_a_shard() {
        assert!(d.attempts >= 1, "{flaw:?}: delivered at least once");
        assert!(
            d.source_queue.starts_with("merit.proposal."),
            "{flaw:?} classified by a proposal shard, not {}",
            d.source_queue
        );
    } else {
        assert_eq!(d.source_queue, "merit.unrouted", "{flaw:?}");
        assert_eq!(d.attempts, 0, "{flaw:?}: never reached a handler");
    }
}

/// The operators' API shows the same dead letters: a page of 500, each with its class,
/// reason and routing key; its total settles at 10,000.
async fn check_the_api_lists_the_same_dead_letters(api: &Api, class_of: &HashMap<String, String>) {
    let (status, body) = api.get(&format!("/api/v1/dlq?page_size={BATCH}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), BATCH, "a full page");
    let mut api_classes: BTreeMap<&str, usize> = BTreeMap::new();
    for item in items {
        let id = item["id"].as_str().expect("id");
        let class = item["reason_class"].as_str().expect("reason_class");
        let reason = item["reason"].as_str().expect("reason");
        let routing_key = item["routing_key"].as_str().expect("routing_key");
        assert_eq!(class_of.get(id).map(String::as_str), Some(class), "{item}");
        assert!(!reason.is_empty(), "{item}");
        assert!(
            routing_key == VOTE_CAST || routing_key == UNKNOWN_TYPE,
            "{item}"
        );
        *api_classes.entry(class).or_default() += 1;
    }
    println!("API page 1 per class: {api_classes:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.dlq_total().await != MALFORMED as u64 {
        assert!(
            Instant::now() < deadline,
            "the API's total settles at {MALFORMED}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
