//! Two nodes share the shard queues (single active consumer per shard); when the active
//! one is SIGKILLed, the other takes its shards over and nothing is lost or doubled.

mod common;

use std::time::Duration;

use common::{Backend, NodeProcess, TestDb, Vhost};
use merit_mailbox::{Outgoing, RabbitTransport, Topology, Transport};
use merit_messages::{Envelope, VoteCast, VoteChoice};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_two_nodes_moves_its_shards_to_the_other_with_nothing_lost() {
    common::init_crypto();
    let (db, store) = TestDb::migrated(Backend::Postgres).await;
    let vhost = Vhost::create();
    let producer = RabbitTransport::connect(
        &vhost.url,
        Topology {
            prefix: String::new(),
            shards: 4,
        },
    )
    .await
    .expect("connect");
    producer.declare().await.expect("declare");
    let log = common::artefacts().join(format!("cluster-{}.log", vhost.name));
    let env = |id: &'static str| {
        vec![
            ("MERIT_DATABASE_URL", db.url.clone()),
            ("MERIT_AMQP_URL", vhost.url.clone()),
            ("MERIT_MAILBOX_SHARDS", "4".to_string()),
            ("MERIT_NODE_ID", id.to_string()),
        ]
    };
    let as_refs = |v: &Vec<(&'static str, String)>| {
        v.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>()
    };
    let a_env = as_refs(&env("node-a"));
    let b_env = as_refs(&env("node-b"));
    let a = NodeProcess::spawn(
        &a_env
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>(),
        &log,
    );
    // Give A time to become the active consumer of every shard; B then waits as standby.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = NodeProcess::spawn(
        &b_env
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>(),
        &log,
    );

    const VOTES: u32 = 6_000;
    let votes: Vec<Envelope> = (0..VOTES)
        .map(|i| {
            Envelope::new(
                "cluster-test",
                VoteCast {
                    proposal: format!("p-{}", i / 300).parse().expect("id"),
                    voter: common::wallet(i % 300),
                    choice: VoteChoice::For,
                    reason: None,
                },
            )
        })
        .collect();
    let proposals: Vec<Outgoing> = (0..VOTES / 300)
        .map(|p| Outgoing::from_envelope(&common::open_proposal(&format!("p-{p}"))))
        .collect();
    producer
        .publish(proposals)
        .await
        .expect("publish proposals");
    for chunk in votes.chunks(1_000) {
        producer
            .publish(chunk.iter().map(Outgoing::from_envelope).collect())
            .await
            .expect("publish");
    }
    // Kill A once it has applied part of the work.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let n = common::votes_counted(&store).await;
        if n >= i64::from(VOTES) / 5 {
            println!("SIGKILL node-a at {n} of {VOTES}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress before the kill (log: {})",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.kill();
    loop {
        let n = common::votes_counted(&store).await;
        if n >= i64::from(VOTES) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node-b did not finish: {n} of {VOTES} (log: {})",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        common::votes_counted(&store).await,
        i64::from(VOTES),
        "0 lost, 0 doubled"
    );
    assert!(b.stop().success(), "node-b stops cleanly");
    vhost.delete();
    db.cleanup().await;
}
