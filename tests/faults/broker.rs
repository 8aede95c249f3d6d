//! The machine's RabbitMQ stopped and restarted under load.

use std::time::Duration;

use crate::harness::{fault_five_seconds_in, run, skipped_outside_fault_tier, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault tier: restarts the shared RabbitMQ: run serially (see the module docs)"]
async fn rabbitmq_restarted_under_load_loses_and_doubles_nothing() {
    if skipped_outside_fault_tier() {
        return;
    }
    fault_five_seconds_in("rabbitmq", Setup::nodes(1), || {
        run("rabbitmqctl", &["stop_app"]);
        std::thread::sleep(Duration::from_secs(3));
        run("rabbitmqctl", &["start_app"]);
        run("rabbitmqctl", &["await_startup", "--timeout", "60"]);
    })
    .await;
}
