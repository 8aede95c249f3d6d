//! The machine's PostgreSQL restarted under load.

use crate::harness::{fault_five_seconds_in, run, skipped_outside_fault_tier, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault tier: restarts the shared PostgreSQL: run serially (see the module docs)"]
async fn postgresql_restarted_under_load_loses_and_doubles_nothing() {
    if skipped_outside_fault_tier() {
        return;
    }
    fault_five_seconds_in("postgresql", Setup::nodes(1), || {
        let version = std::fs::read_dir("/etc/postgresql")
            .expect("a Debian PostgreSQL cluster")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .next()
            .expect("a version");
        run(
            "pg_ctlcluster",
            &[
                "--skip-systemctl-redirect",
                &version,
                "main",
                "restart",
                "-m",
                "fast",
            ],
        );
    })
    .await;
}
