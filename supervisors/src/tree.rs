//! The supervision tree as data: each supervised service's state, restarts and last
//! error, for `/ready`, the dashboard and tests.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use serde::Serialize;

/// Where a service stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum ServiceState {
    /// Registered, not yet running.
    Starting,
    /// Running.
    Running,
    /// Waiting for a dependency to come back.
    Waiting(String),
    /// Failed; restarting after a backoff.
    Backoff,
    /// Exceeded its restart intensity; still retrying slowly; the node is unhealthy.
    Failed,
    /// Stopped by shutdown.
    Stopped,
}

/// One supervised service.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    /// Name, e.g. `consumer.user.3`, `outbox-relay`.
    pub name: String,
    /// State.
    pub state: ServiceState,
    /// Restarts counted against the budget since start.
    pub restarts: u64,
    /// Stops caused by a dependency outage (not counted as restarts).
    pub outages: u64,
    /// Last error, if any.
    pub last_error: Option<String>,
    /// Last state change (seconds since the Unix epoch).
    pub since: u64,
}

/// The shared tree. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Tree(Arc<Mutex<BTreeMap<String, ServiceStatus>>>);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Tree {
    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<String, ServiceStatus>) -> R) -> R {
        f(&mut self
            .0
            .lock()
            .expect("tree lock is never poisoned: no panics under it"))
    }

    fn entry<'a>(
        map: &'a mut BTreeMap<String, ServiceStatus>,
        name: &str,
    ) -> &'a mut ServiceStatus {
        map.entry(name.to_string())
            .or_insert_with(|| ServiceStatus {
                name: name.to_string(),
                state: ServiceState::Starting,
                restarts: 0,
                outages: 0,
                last_error: None,
                since: now(),
            })
    }

    /// Sets a service's state.
    pub fn set_state(&self, name: &str, state: ServiceState) {
        self.with(|m| {
            let e = Self::entry(m, name);
            if e.state != state {
                e.state = state;
                e.since = now();
            }
        });
    }

    /// Records a failure; `counted` when it is a restart against the budget.
    pub fn record_error(&self, name: &str, error: &str, counted: bool) {
        self.with(|m| {
            let e = Self::entry(m, name);
            e.last_error = Some(error.to_string());
            if counted {
                e.restarts += 1;
            } else {
                e.outages += 1;
            }
        });
    }

    /// Every service, by name.
    pub fn snapshot(&self) -> Vec<ServiceStatus> {
        self.with(|m| m.values().cloned().collect())
    }

    /// False when any service exceeded its restart intensity.
    pub fn healthy(&self) -> bool {
        self.with(|m| m.values().all(|s| s.state != ServiceState::Failed))
    }
}
