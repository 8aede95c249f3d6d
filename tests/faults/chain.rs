//! The chain's RPC node (anvil) stopped and restarted under load, while mints are in
//! flight.

use std::time::Duration;

use crate::harness::{assert_clean, skipped_outside_fault_tier, Run, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault tier: stops the test's anvil for 5 s: run serially (see the module docs)"]
async fn anvil_stopped_and_restarted_under_load_loses_and_doubles_nothing() {
    if skipped_outside_fault_tier() {
        return;
    }
    let mut r = Run::start("anvil", Setup::nodes(1).on_anvil()).await;
    // 12 s into the load, while "voter-10" mints are in flight: transactions in its pool
    // are lost with it.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let anvil = r.anvil.as_mut().expect("anvil");
    anvil.stop();
    tokio::time::sleep(Duration::from_secs(5)).await;
    anvil.restart();
    assert_clean(&r.finish().await);
}
