//! Supervised services: restart with backoff, restart intensity, and dependency outages
//! that are waited out instead of counted.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use merit_supervisors::{
    spawn_service, Dependency, RestartPolicy, ServiceState, SupervisorError, Tree,
};
use tokio::sync::watch;

fn quick(intensity: u32) -> RestartPolicy {
    RestartPolicy {
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(20),
        intensity,
        period: Duration::from_secs(60),
    }
}

async fn wait_for(
    tree: &Tree,
    name: &str,
    want: impl Fn(&merit_supervisors::ServiceStatus) -> bool,
) -> merit_supervisors::ServiceStatus {
    for _ in 0..500 {
        if let Some(s) = tree.snapshot().into_iter().find(|s| s.name == name) {
            if want(&s) {
                return s;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "service {name} never reached the expected state: {:?}",
        tree.snapshot()
    );
}

#[tokio::test]
async fn a_service_failing_past_its_intensity_is_marked_failed_and_the_node_unhealthy() {
    let tree = Tree::default();
    let (stop, rx) = watch::channel(false);
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let handle = spawn_service(
        tree.clone(),
        "flaky".into(),
        quick(3),
        vec![],
        rx,
        move |_| {
            r.fetch_add(1, Ordering::SeqCst);
            async { Err(SupervisorError::ConsumerEnded("test".into())) }
        },
    );
    let status = wait_for(&tree, "flaky", |s| s.state == ServiceState::Failed).await;
    assert!(status.restarts > 3, "{status:?}");
    assert!(!tree.healthy());
    assert!(runs.load(Ordering::SeqCst) >= 4, "it kept being restarted");
    assert!(status
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("stopped receiving")));
    let _ = stop.send(true);
    handle.await.expect("supervisor ends on shutdown");
    assert_eq!(
        wait_for(&tree, "flaky", |s| s.state == ServiceState::Stopped)
            .await
            .state,
        ServiceState::Stopped
    );
}

#[tokio::test]
async fn failures_while_a_dependency_is_down_are_waited_out_not_counted() {
    let tree = Tree::default();
    let (stop, rx) = watch::channel(false);
    let up = Arc::new(AtomicBool::new(false));
    let probe_up = up.clone();
    let db = Dependency::new("database", move || {
        let up = probe_up.clone();
        async move { up.load(Ordering::SeqCst) }
    });
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let handle = spawn_service(
        tree.clone(),
        "consumer".into(),
        quick(2),
        vec![db.clone()],
        rx,
        move |_| {
            r.fetch_add(1, Ordering::SeqCst);
            async { Err(SupervisorError::ConsumerEnded("db gone".into())) }
        },
    );
    // The first run fails while the database is down: the supervisor waits for it.
    let waiting = wait_for(
        &tree,
        "consumer",
        |s| matches!(&s.state, ServiceState::Waiting(d) if d == "database"),
    )
    .await;
    assert_eq!(waiting.restarts, 0, "an outage spends no restart budget");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        runs.load(Ordering::SeqCst) <= 1,
        "no restart loop while the dependency is down"
    );
    assert!(tree.healthy());
    // Back up: the service runs again (and, still failing on its own, now counts restarts).
    up.store(true, Ordering::SeqCst);
    let counted = wait_for(&tree, "consumer", |s| s.restarts >= 1).await;
    assert!(counted.outages >= 1, "{counted:?}");
    let _ = stop.send(true);
    handle.await.expect("supervisor ends on shutdown");
}
