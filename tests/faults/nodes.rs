//! merit's own nodes fail under load: one SIGKILLed three times, one of two SIGKILLed,
//! and nodes joining and leaving (a SIGTERM handover, a SIGKILL takeover).

use std::time::Duration;

use crate::{
    common,
    harness::{assert_clean, skipped_outside_fault_tier, Run, Setup},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault tier: takes 40 s of wall time: run serially (see the module docs)"]
async fn node_sigkilled_three_times_under_load_loses_and_doubles_nothing() {
    if skipped_outside_fault_tier() {
        return;
    }
    // On anvil: the in-process dev chain dies with the node, and a chain that forgets
    // sent transactions is not what a crashed node meets in production.
    let mut r = Run::start("sigkill", Setup::nodes(1).on_anvil()).await;
    // 5, 10 and 15 s into the load: the last two while mints are in flight (a voter
    // reaches "voter-10" from about 12 s on).
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        r.nodes.pop().expect("the node").kill();
        r.nodes.push(r.spawn(0));
    }
    assert_clean(&r.finish().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault tier: takes 40 s of wall time: run serially (see the module docs)"]
async fn one_of_two_nodes_sigkilled_under_load_loses_and_doubles_nothing() {
    if skipped_outside_fault_tier() {
        return;
    }
    let mut r = Run::start("two-nodes", Setup::nodes(2).on_anvil()).await;
    // 12 s into the load, while "voter-10" mints are in flight.
    tokio::time::sleep(Duration::from_secs(12)).await;
    // The first node is the active consumer of every shard and holds the saga leases.
    r.nodes.remove(0).kill();
    assert_clean(&r.finish().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault tier: runs four nodes for 40 s: run serially (see the module docs)"]
async fn nodes_joining_and_leaving_under_load_lose_and_double_nothing() {
    if skipped_outside_fault_tier() {
        return;
    }
    // Three nodes share the shards; a fourth joins, one leaves with SIGTERM (a handover)
    // and one is SIGKILLed (a takeover after its registration expires), all while
    // `merit simulate` publishes; the ledger checker then counts every vote, unlock,
    // mint and notification. On anvil, like the other tests that SIGKILL a node: each
    // node's in-process dev chain dies with it, so a mint the killed node made just before
    // its listener read the log would be on no chain the others can read (a chain that
    // forgets sent transactions is not what a crashed node meets in production).
    let mut r = Run::start("membership", Setup::nodes(3).on_anvil()).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let joined = r.spawn(3);
    common::wait_ready(&joined.http_url(60), 60).await;
    r.nodes.push(joined);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status = r.nodes.remove(0).stop();
    assert!(status.success(), "SIGTERM exits cleanly: {status}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    r.nodes.remove(0).kill();
    let log = common::strip_ansi(&std::fs::read_to_string(&r.log).expect("node log"));
    assert!(
        log.contains("shard handed over") && log.contains("shard ownership changed"),
        "shards changed hands: {}",
        r.log.display()
    );
    assert_clean(&r.finish().await);
}
