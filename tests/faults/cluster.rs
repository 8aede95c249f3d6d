//! The 3-node test broker cluster (`scripts/rabbit-cluster.sh`): the broker node leading
//! the most shard queues stopped and restarted under load.

use std::{collections::BTreeMap, time::Duration};

use serde_json::Value;

use crate::{
    common,
    harness::{assert_clean, skipped_outside_fault_tier, Run, Setup},
};

/// A queue of the test cluster: its name, leader and members (a classic queue has `""`
/// for both).
#[derive(Debug, serde::Deserialize)]
struct ClusterQueue {
    name: String,
    leader: Value,
    members: Value,
}

impl ClusterQueue {
    fn leader(&self) -> &str {
        self.leader.as_str().unwrap_or_default()
    }

    fn members(&self) -> usize {
        self.members.as_array().map_or(0, Vec::len)
    }
}

/// The number (1 to 3) of a test-cluster broker node, from its name `merit-m<i>@localhost`.
fn broker_node_number(node: &str) -> u8 {
    node.strip_prefix("merit-m")
        .and_then(|rest| rest.split('@').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a test-cluster node name: {node}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault tier: stops a node of the test broker cluster for 5 s: run serially (see the module docs)"]
async fn broker_node_leading_the_shards_stopped_under_load_loses_and_doubles_nothing() {
    if skipped_outside_fault_tier() {
        return;
    }
    let r = Run::start("broker-node", Setup::nodes(1).on_broker_cluster()).await;
    let listed = common::rabbit_cluster(&[
        "ctl",
        "1",
        "list_queues",
        "-p",
        &r.vhost.name,
        "name",
        "leader",
        "members",
        "--formatter",
        "json",
    ]);
    let queues: Vec<ClusterQueue> = serde_json::from_str(&listed).expect("list_queues JSON");
    let shards: Vec<&ClusterQueue> = queues
        .iter()
        .filter(|q| q.name.starts_with("merit.") && q.name.ends_with(char::is_numeric))
        .collect();
    assert_eq!(shards.len(), 6, "2 shards for each of 3 kinds: {queues:#?}");
    for q in &shards {
        assert_eq!(q.members(), 3, "replicated on every broker node: {q:?}");
    }
    let mut led: BTreeMap<u8, usize> = BTreeMap::new();
    for q in &shards {
        *led.entry(broker_node_number(q.leader())).or_default() += 1;
    }
    let (&leader, _) = led.iter().max_by_key(|(_, n)| **n).expect("a leader");
    eprintln!("broker-node: shard leaders by node {led:?}; stopping merit-m{leader}");
    // merit connects to the first address, node 1, which declared the queues and so leads
    // them: stopping it takes merit's connection down too.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let node = leader.to_string();
    r.fault(move || {
        common::rabbit_cluster(&["ctl", &node, "stop_app"]);
        std::thread::sleep(Duration::from_secs(5));
        common::rabbit_cluster(&["ctl", &node, "start_app"]);
        common::rabbit_cluster(&["ctl", &node, "await_startup", "--timeout", "120"]);
    })
    .await;
    let log = common::strip_ansi(&std::fs::read_to_string(&r.log).expect("node log"));
    if leader == 1 {
        assert!(
            log.contains("lost the RabbitMQ connection"),
            "merit's broker node stopped: {}",
            r.log.display()
        );
        assert!(
            log.lines().any(|l| l.contains("connected to RabbitMQ")
                && (l.contains("127.0.0.1:5682") || l.contains("127.0.0.1:5683"))),
            "merit went on through another broker node: {}",
            r.log.display()
        );
    }
    assert_clean(&r.finish().await);
}
