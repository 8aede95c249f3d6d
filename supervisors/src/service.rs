//! Supervised long-lived services (shard consumers, the outbox relay, ...) and the
//! dependencies whose health gates their restarts.
//!
//! A service that returns or fails is restarted with exponential backoff. Before a restart
//! counts against the service's budget, its dependencies are probed: if one is down (the
//! broker restarting, the database unreachable) the restart waits for it — a circuit
//! breaker per dependency — instead of burning the budget. Past `intensity` restarts
//! within `period` the service is marked failed, which makes the node unhealthy; it keeps
//! retrying at the slowest backoff so it recovers once the fault clears.

use merit_messages::{Backoff, Retrying};
use std::{
    collections::VecDeque,
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    error::Result,
    tree::{ServiceState, Tree},
};

/// Restart behaviour of a supervised service.
#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    /// First backoff; doubles per consecutive failure.
    pub base_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
    /// Restarts allowed within `period` before the service is marked failed.
    pub intensity: u32,
    /// The window for `intensity`.
    pub period: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            intensity: 10,
            period: Duration::from_secs(60),
        }
    }
}

type Probe = Box<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

/// An outside service (database, broker, Redis, chain RPC) with a health probe.
pub struct Dependency {
    name: &'static str,
    up: AtomicBool,
    probe: Probe,
}

impl std::fmt::Debug for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dependency")
            .field("name", &self.name)
            .field("up", &self.is_up())
            .finish()
    }
}

impl Dependency {
    /// A dependency named `name`, healthy while `probe` answers true.
    pub fn new<F, Fut>(name: &'static str, probe: F) -> Arc<Self>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        Arc::new(Self {
            name,
            up: AtomicBool::new(true),
            probe: Box::new(move || Box::pin(probe())),
        })
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether it was up at the last check.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Probes now and records the answer.
    pub async fn check(&self) -> bool {
        let up = (self.probe)().await;
        let was = self.up.swap(up, Ordering::AcqRel);
        if was != up {
            if up {
                tracing::info!(dependency = self.name, "dependency is back");
            } else {
                tracing::warn!(dependency = self.name, "dependency is down");
            }
        }
        up
    }

    /// Waits until the dependency answers (probing with backoff up to 5 s) or shutdown.
    pub async fn wait_up(&self, shutdown: &mut watch::Receiver<bool>) {
        let mut retrying = Retrying::new(Backoff::exponential(
            Duration::from_millis(100),
            Duration::from_secs(5),
        ));
        while !self.check().await {
            tokio::select! {
                _ = tokio::time::sleep(retrying.next_delay()) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Starts `make` as the supervised service `name`, restarting it per `policy` until
/// `shutdown` turns true.
pub fn spawn_service<F, Fut>(
    tree: Tree,
    name: String,
    policy: RestartPolicy,
    deps: Vec<Arc<Dependency>>,
    mut shutdown: watch::Receiver<bool>,
    mut make: F,
) -> JoinHandle<()>
where
    F: FnMut(watch::Receiver<bool>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut restarts: VecDeque<Instant> = VecDeque::new();
        let mut consecutive = 0u32;
        loop {
            if *shutdown.borrow() {
                break;
            }
            for dep in &deps {
                if !dep.is_up() {
                    tree.set_state(&name, ServiceState::Waiting(dep.name().to_string()));
                    dep.wait_up(&mut shutdown).await;
                }
            }
            if *shutdown.borrow() {
                break;
            }
            tree.set_state(&name, ServiceState::Running);
            let started = Instant::now();
            let result = make(shutdown.clone()).await;
            if *shutdown.borrow() {
                break;
            }
            let error = match result {
                Ok(()) => "exited".to_string(),
                Err(e) => e.to_string(),
            };
            // A long healthy run resets the backoff.
            if started.elapsed() > policy.period {
                consecutive = 0;
            }
            // Blame a dependency first: an outage is waited out, not counted.
            let mut blamed = None;
            for dep in &deps {
                if !dep.check().await {
                    blamed = Some(dep.name());
                    break;
                }
            }
            if let Some(dep) = blamed {
                tracing::warn!(service = %name, dependency = dep, error = %error, "service stopped while a dependency is down; waiting for it");
                tree.record_error(&name, &error, false);
                continue;
            }
            let now = Instant::now();
            restarts.push_back(now);
            while restarts
                .front()
                .is_some_and(|t| now.duration_since(*t) > policy.period)
            {
                restarts.pop_front();
            }
            let exhausted = restarts.len() as u32 > policy.intensity;
            tree.record_error(&name, &error, true);
            if exhausted {
                tracing::error!(service = %name, error = %error, restarts = restarts.len(), "restart intensity exceeded; service marked failed");
                tree.set_state(&name, ServiceState::Failed);
            } else {
                tracing::warn!(service = %name, error = %error, "service failed; restarting");
                tree.set_state(&name, ServiceState::Backoff);
            }
            let backoff = if exhausted {
                policy.max_backoff
            } else {
                backoff(policy, consecutive)
            };
            consecutive = consecutive.saturating_add(1);
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => break,
            }
        }
        tree.set_state(&name, ServiceState::Stopped);
    })
}

fn backoff(policy: RestartPolicy, consecutive: u32) -> Duration {
    Backoff::exponential(policy.base_backoff, policy.max_backoff).delay(consecutive)
}
