//! The machine's Redis (the L2 cache and discovery) flushed and stopped under load, then
//! started again empty.

use std::{process::Command, time::Duration};

use crate::harness::{fault_five_seconds_in, run, skipped_outside_fault_tier, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault tier: flushes and stops the shared Redis: run serially (see the module docs)"]
async fn redis_flushed_and_stopped_under_load_loses_and_doubles_nothing() {
    if skipped_outside_fault_tier() {
        return;
    }
    fault_five_seconds_in("redis", Setup::nodes(1).with_redis(), || {
        run("redis-cli", &["FLUSHALL"]);
        let _ = Command::new("redis-cli")
            .args(["shutdown", "nosave"])
            .status();
        std::thread::sleep(Duration::from_secs(4));
        run(
            "redis-server",
            &[
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        );
        std::thread::sleep(Duration::from_secs(1));
    })
    .await;
}
