//! Poison traffic at volume: 10,000 malformed messages of every dead-letter class a
//! producer can cause, interleaved with 20 proposals and 2,000 good votes, published to a
//! real node (`merit serve` on RabbitMQ and PostgreSQL, its own vhost and database).
//! Every malformed message must land in the dead-letter queue exactly once, with the class
//! merit documents and a reason naming the field at fault; the good votes must all be
//! counted, none of them dead-lettered, and the node must stay ready.

mod common;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::{Duration, Instant},
};

use common::{Backend, ServedNode, TestDb, Vhost};
use merit_mailbox::{DeadLetter, Outgoing, RabbitTransport, Transport};
use merit_messages::{Address, Envelope, VoteCast, VoteChoice};
use merit_storage::{
    sea_orm::{EntityTrait, PaginatorTrait},
    Store,
};
use rand::{seq::SliceRandom, Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};

const PROPOSALS: u32 = 20;
const VOTES: u32 = 2_000;
const MALFORMED: usize = 10_000;
/// Oversized messages are 70 KB each: fewer of them keeps the DLQ small.
const OVERSIZED: usize = 250;
const BATCH: usize = 500;
/// The bound on every wait for the node.
const WAIT_SECS: u64 = 120;
const VOTE_CAST: &str = "governance.vote.cast";
const UNKNOWN_TYPE: &str = "governance.vote.exploded";

/// One way a producer can get a message wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Flaw {
    /// Not JSON at all.
    BadJson,
    /// A valid envelope cut off half-way.
    TruncatedJson,
    /// `payload.choice` is a number.
    WrongPayloadType,
    /// `version` is a string.
    WrongEnvelopeType,
    /// `payload.voter` is mixed-case with a wrong EIP-55 checksum.
    BadChecksum,
    /// The routing key is no event type (the unrouted mover classifies it).
    UnknownRoutingKey,
    /// The routing key is known but the envelope's `type` is not.
    UnknownBodyType,
    /// `version` 2 of a type that only has 1.
    UnknownVersion,
    /// `payload.voter` is left out.
    MissingPayloadKey,
    /// `occurred_at` is left out.
    MissingEnvelopeKey,
    /// Over 64 KiB.
    Oversized,
    /// The `merit-proposal` header names another proposal than the payload.
    HeaderMismatch,
    /// The envelope's `keys` name another proposal than the payload.
    KeysMismatch,
    /// No `merit-proposal` header (the unrouted mover classifies it).
    MissingKeyHeader,
    /// A valid `governance.proposal.cancelled` published as `governance.vote.cast`.
    TypeMismatch,
    /// The envelope's fields as a positional JSON array.
    ArrayEnvelope,
}

impl Flaw {
    const ALL: [Flaw; 16] = [
        Flaw::BadJson,
        Flaw::TruncatedJson,
        Flaw::WrongPayloadType,
        Flaw::WrongEnvelopeType,
        Flaw::BadChecksum,
        Flaw::UnknownRoutingKey,
        Flaw::UnknownBodyType,
        Flaw::UnknownVersion,
        Flaw::MissingPayloadKey,
        Flaw::MissingEnvelopeKey,
        Flaw::Oversized,
        Flaw::HeaderMismatch,
        Flaw::KeysMismatch,
        Flaw::MissingKeyHeader,
        Flaw::TypeMismatch,
        Flaw::ArrayEnvelope,
    ];

    /// The dead-letter class merit documents for it.
    fn class(self) -> &'static str {
        match self {
            Flaw::BadJson | Flaw::TruncatedJson | Flaw::ArrayEnvelope => "malformed",
            Flaw::TypeMismatch => "type_mismatch",
            Flaw::WrongPayloadType | Flaw::WrongEnvelopeType | Flaw::BadChecksum => "invalid_field",
            Flaw::UnknownRoutingKey | Flaw::UnknownBodyType => "unknown_type",
            Flaw::UnknownVersion => "unknown_version",
            Flaw::MissingPayloadKey | Flaw::MissingEnvelopeKey => "missing_field",
            Flaw::Oversized => "oversized",
            Flaw::HeaderMismatch | Flaw::KeysMismatch => "key_mismatch",
            Flaw::MissingKeyHeader => "missing_key",
        }
    }

    /// What the reason must mention: the field at fault (or the header, routing key or
    /// limit where there is no field).
    fn needle(self) -> &'static str {
        match self {
            Flaw::BadJson | Flaw::TruncatedJson => "malformed: ",
            Flaw::WrongPayloadType => "payload.choice",
            Flaw::WrongEnvelopeType | Flaw::UnknownVersion => "version",
            Flaw::BadChecksum => "payload.voter",
            Flaw::UnknownRoutingKey => UNKNOWN_TYPE,
            Flaw::UnknownBodyType => "type: \"governance.vote.exploded\"",
            Flaw::MissingPayloadKey => "payload.voter",
            Flaw::MissingEnvelopeKey => "occurred_at",
            Flaw::Oversized => "65536",
            Flaw::HeaderMismatch | Flaw::MissingKeyHeader => "merit-proposal",
            Flaw::KeysMismatch => "keys",
            Flaw::TypeMismatch => "routing key",
            Flaw::ArrayEnvelope => "JSON object",
        }
    }

    /// Whether it reaches a proposal shard (and is classified by its consumer) rather
    /// than the unrouted mover.
    fn reaches_a_shard(self) -> bool {
        !matches!(self, Flaw::UnknownRoutingKey | Flaw::MissingKeyHeader)
    }

    fn count(self) -> usize {
        if self == Flaw::Oversized {
            OVERSIZED
        } else {
            (MALFORMED - OVERSIZED) / (Flaw::ALL.len() - 1)
        }
    }
}

fn proposal(p: u32) -> String {
    format!("p-{}", p % PROPOSALS)
}

/// Good vote `k`: every (voter, proposal) pair once, 100 voters per proposal.
fn good_vote(k: u32) -> Envelope {
    Envelope::new(
        "malformed-test",
        VoteCast {
            proposal: proposal(k).parse().expect("proposal id"),
            voter: common::wallet(k / PROPOSALS),
            choice: VoteChoice::For,
            reason: None,
        },
    )
}

/// A mixed-case address whose EIP-55 checksum is wrong.
fn bad_checksum(i: u32) -> String {
    let mut bytes = [0xab_u8; 20];
    bytes[16..].copy_from_slice(&i.to_be_bytes());
    let good = Address(bytes).to_checksum();
    let flip = good[2..]
        .char_indices()
        .find(|(_, c)| c.is_ascii_alphabetic())
        .map(|(at, _)| at + 2)
        .expect("0xab bytes give hex letters");
    let mut bad: Vec<char> = good.chars().collect();
    bad[flip] = if bad[flip].is_ascii_uppercase() {
        bad[flip].to_ascii_lowercase()
    } else {
        bad[flip].to_ascii_uppercase()
    };
    let bad: String = bad.into_iter().collect();
    assert!(
        bad[2..].chars().any(|c| c.is_ascii_uppercase())
            && bad[2..].chars().any(|c| c.is_ascii_lowercase()),
        "{bad} is mixed-case"
    );
    assert!(bad.parse::<Address>().is_err(), "{bad} is refused");
    bad
}

/// Malformed message `i` with `flaw`. Its key header names one of the good proposals
/// (so it shares shards and keys with good traffic) unless the flaw is the header.
fn malformed(i: u32, flaw: Flaw) -> Outgoing {
    let p = proposal(i);
    let env = Envelope::new(
        "malformed-test",
        VoteCast {
            proposal: p.parse().expect("proposal id"),
            voter: common::wallet(100_000 + i),
            choice: VoteChoice::Against,
            reason: None,
        },
    );
    let routing_key = if flaw == Flaw::UnknownRoutingKey {
        UNKNOWN_TYPE
    } else {
        VOTE_CAST
    };
    let header = match flaw {
        Flaw::HeaderMismatch => Some(proposal(i + 1)),
        Flaw::MissingKeyHeader => None,
        _ => Some(p.clone()),
    };
    let body = flawed_body(i, flaw, &env, &p);
    if flaw == Flaw::Oversized {
        assert!(body.len() > merit_messages::MAX_ENVELOPE_BYTES);
    }
    let mut out = Outgoing::new(routing_key, format!("malformed-{i:05}-{flaw:?}"), body);
    out.correlation_id = Some(env.correlation_id.to_string());
    if let Some(h) = header {
        out = out.with_header("merit-proposal", h);
    }
    // A user header on every message: vote.cast is not the user kind's, so it must not
    // matter where the proposal header is missing.
    out.with_header("merit-user", env.keys.user.expect("voter").to_string())
}

/// The body of malformed message `i` with `flaw`, made from `env` (a vote on `p`).
fn flawed_body(i: u32, flaw: Flaw, env: &Envelope, p: &str) -> Vec<u8> {
    let json = env.to_json();
    let mut v: Value = serde_json::from_slice(&json).expect("an envelope is JSON");
    match flaw {
        Flaw::BadJson => format!("{{\"id\": oops-{i}").into_bytes(),
        Flaw::TruncatedJson => json[..json.len() / 2].to_vec(),
        // The envelope is sound; the routing key or a header is not.
        Flaw::UnknownRoutingKey | Flaw::HeaderMismatch | Flaw::MissingKeyHeader => json,
        Flaw::TypeMismatch => {
            let voter: Address = v["payload"]["voter"]
                .as_str()
                .expect("voter")
                .parse()
                .expect("address");
            Envelope::new(
                "malformed-test",
                merit_messages::ProposalCancelled {
                    proposal: p.parse().expect("proposal id"),
                    by: voter,
                    reason: String::new(),
                },
            )
            .to_json()
        }
        Flaw::ArrayEnvelope => {
            let fields = ["id", "type", "version", "source", "occurred_at"]
                .iter()
                .map(|k| v[*k].clone())
                .chain([Value::Null, Value::Null, Value::Null, v["payload"].clone()])
                .collect::<Vec<_>>();
            serde_json::to_vec(&fields).expect("json")
        }
        _ => {
            edit_field(i, flaw, &mut v);
            serde_json::to_vec(&v).expect("json")
        }
    }
}

/// Gets one field of the envelope `v` wrong, as `flaw` says.
fn edit_field(i: u32, flaw: Flaw, v: &mut Value) {
    match flaw {
        Flaw::WrongPayloadType => v["payload"]["choice"] = json!(42),
        Flaw::WrongEnvelopeType => v["version"] = json!("1"),
        Flaw::BadChecksum => v["payload"]["voter"] = json!(bad_checksum(i)),
        Flaw::UnknownBodyType => v["type"] = json!(UNKNOWN_TYPE),
        Flaw::UnknownVersion => v["version"] = json!(2),
        Flaw::MissingPayloadKey => {
            v["payload"]
                .as_object_mut()
                .expect("payload")
                .remove("voter");
        }
        Flaw::MissingEnvelopeKey => {
            v.as_object_mut().expect("envelope").remove("occurred_at");
        }
        Flaw::Oversized => v["payload"]["reason"] = json!("x".repeat(70_000)),
        Flaw::KeysMismatch => v["keys"]["proposal"] = json!(proposal(i + 1)),
        other => unreachable!("{other:?} is not a field's flaw"),
    }
}

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

/// What is published: every malformed message by id with its flaw, the ids of the good
/// messages, the proposals, and the rest shuffled together.
struct Traffic {
    sent: HashMap<String, (Flaw, Outgoing)>,
    good_ids: HashSet<String>,
    proposals: Vec<Outgoing>,
    shuffled: Vec<Outgoing>,
}

/// The traffic: 10,000 malformed messages and 2,000 good votes, shuffled together, after
/// the 20 proposals the votes are for.
fn traffic(rng: &mut rand::rngs::StdRng) -> Traffic {
    let mut flaws: Vec<Flaw> = Flaw::ALL
        .iter()
        .flat_map(|&f| std::iter::repeat_n(f, f.count()))
        .collect();
    assert_eq!(flaws.len(), MALFORMED);
    flaws.shuffle(rng);
    let mut sent: HashMap<String, (Flaw, Outgoing)> = HashMap::new();
    let mut shuffled: Vec<Outgoing> = Vec::with_capacity(MALFORMED + VOTES as usize);
    for (i, &flaw) in flaws.iter().enumerate() {
        let out = malformed(u32::try_from(i).expect("index"), flaw);
        shuffled.push(out.clone());
        sent.insert(out.message_id.clone(), (flaw, out));
    }
    let good: Vec<Outgoing> = (0..VOTES)
        .map(|k| Outgoing::from_envelope(&good_vote(k)))
        .collect();
    shuffled.extend(good.iter().cloned());
    shuffled.shuffle(rng);
    let proposals: Vec<Outgoing> = (0..PROPOSALS)
        .map(|p| Outgoing::from_envelope(&common::open_proposal(&proposal(p))))
        .collect();
    let good_ids = proposals
        .iter()
        .chain(good.iter())
        .map(|o| o.message_id.clone())
        .collect();
    Traffic {
        sent,
        good_ids,
        proposals,
        shuffled,
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
