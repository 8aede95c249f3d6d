//! The executor: starts sagas, drives many at once (each one's steps strictly in order),
//! resumes them after a restart, and answers what the dashboard asks.
//!
//! Flow: [`SagaExecutor::start`] writes the saga and its pending steps in one transaction
//! (or finds the saga already there) and spawns a driver. A driver takes a permit from the
//! executor's semaphore, claims the saga's lease and runs it (see `driver.rs`).
//! [`SagaExecutor::resume_all`] spawns a driver for every unfinished saga;
//! [`SagaExecutor::run`] does that once and then polls for sagas that became due (after a
//! long backoff or re-poll wait) or whose lease expired on a dead node.

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::Utc;
use merit_storage::{
    entities::{saga, saga_step},
    sea_orm::{
        sea_query::{Condition, OnConflict},
        ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    },
    Store,
};
use rand::{rngs::StdRng, SeedableRng};
use serde::Serialize;
use tokio::{sync::Semaphore, task::AbortHandle};
use tracing::{info, warn};
use uuid::Uuid;

use crate::{
    definition::{SagaDefinition, SagaRegistry},
    driver,
    error::{Result, SagaError},
    id::SagaId,
    state::{SagaState, StepState},
    view::{self, SagaFilter, SagaPage, SagaView},
};

mod retry;

/// How an executor runs.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// This node's id, written as the lease owner. Unique among live processes.
    pub node_id: String,
    /// Most sagas driven at once by this executor.
    pub max_concurrent: usize,
    /// How long a claim lasts without renewal; a dead node's sagas are taken over after it.
    pub lease_ttl: Duration,
    /// How often [`SagaExecutor::run`] looks for due sagas and expired leases.
    pub poll_interval: Duration,
    /// Waits up to this long are slept by the driver holding the lease; longer ones are
    /// left to the poller.
    pub max_inline_wait: Duration,
    /// Seed of the backoff jitter (`None`: from the OS).
    pub jitter_seed: Option<u64>,
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        Self {
            node_id: format!("node-{}", Uuid::new_v4().simple()),
            max_concurrent: 64,
            lease_ttl: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            max_inline_wait: Duration::from_secs(2),
            jitter_seed: None,
        }
    }
}

/// What [`SagaExecutor::start`] found or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The saga.
    pub id: SagaId,
    /// `false`: a saga with this id existed already and was left as it was.
    pub created: bool,
    /// Its kind (for an existing saga, the stored one).
    pub kind: String,
    /// Its state when `start` returned.
    pub state: SagaState,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) registry: SagaRegistry,
    pub(crate) options: ExecutorOptions,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) rng: Mutex<StdRng>,
    drivers: Mutex<HashMap<SagaId, AbortHandle>>,
}

impl Inner {
    fn drivers(&self) -> std::sync::MutexGuard<'_, HashMap<SagaId, AbortHandle>> {
        // The map stays consistent even if a holder panicked: every operation is one call.
        self.drivers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes a driver from the in-flight map when its task ends, however it ends.
struct DriverGuard {
    inner: Arc<Inner>,
    id: SagaId,
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        self.inner.drivers().remove(&self.id);
    }
}

/// The saga executor. A cheap-to-clone handle; drivers run on the tokio runtime.
#[derive(Clone)]
pub struct SagaExecutor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SagaExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaExecutor")
            .field("node_id", &self.inner.options.node_id)
            .field("kinds", &self.inner.registry.kinds())
            .field("in_flight", &self.inner.drivers().len())
            .finish()
    }
}

impl SagaExecutor {
    /// An executor over `store` (migrated) running the kinds in `registry`.
    pub fn new(store: Store, registry: SagaRegistry, options: ExecutorOptions) -> Self {
        let rng = match options.jitter_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        Self {
            inner: Arc::new(Inner {
                store,
                registry,
                permits: Arc::new(Semaphore::new(options.max_concurrent.max(1))),
                options,
                rng: Mutex::new(rng),
                drivers: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// This executor's node id (the lease owner it writes).
    pub fn node_id(&self) -> &str {
        &self.inner.options.node_id
    }

    /// Starts saga `id` of `kind` with `data` (its correlation id is the saga id).
    pub async fn start<T: Serialize + ?Sized>(
        &self,
        kind: &str,
        id: SagaId,
        data: &T,
    ) -> Result<Started> {
        self.start_correlated(kind, id, data, id.0).await
    }

    /// Starts saga `id` of `kind` with `data`, tagged with `correlation_id`. Idempotent by
    /// id: if the saga exists (whatever its state), nothing is written and it is returned.
    #[tracing::instrument(skip(self, data), fields(saga_id = %id, correlation_id = %correlation_id))]
    pub async fn start_correlated<T: Serialize + ?Sized>(
        &self,
        kind: &str,
        id: SagaId,
        data: &T,
        correlation_id: Uuid,
    ) -> Result<Started> {
        let def = self
            .inner
            .registry
            .get(kind)
            .ok_or_else(|| SagaError::UnknownKind {
                kind: kind.to_string(),
                registered: self.inner.registry.kinds(),
            })?;
        let data = serde_json::to_value(data).map_err(|source| SagaError::Data {
            kind: kind.to_string(),
            source,
        })?;
        let (row, steps) = new_rows(&def, kind, id, data, correlation_id);
        let created = self.insert_new(row, steps).await?;
        let started = if created {
            info!(kind, "saga started");
            Started {
                id,
                created,
                kind: kind.to_string(),
                state: SagaState::Running,
            }
        } else {
            self.existing(id, kind).await?
        };
        if started.state.is_active() {
            self.spawn_driver(id);
        }
        Ok(started)
    }

    /// Inserts a new saga with its steps; `false` (and nothing written) if its id exists.
    async fn insert_new(
        &self,
        row: saga::ActiveModel,
        steps: Vec<saga_step::ActiveModel>,
    ) -> Result<bool> {
        self.inner
            .store
            .write(move |txn| {
                Box::pin(async move {
                    let inserted = saga::Entity::insert(row)
                        .on_conflict(OnConflict::column(saga::Column::Id).do_nothing().to_owned())
                        .exec_without_returning(txn)
                        .await?;
                    if inserted == 1 {
                        saga_step::Entity::insert_many(steps)
                            .exec_without_returning(txn)
                            .await?;
                    }
                    Ok(inserted == 1)
                })
            })
            .await
            .map_err(Into::into)
    }

    /// The saga `start` found already there under `id`, as it is.
    async fn existing(&self, id: SagaId, kind: &str) -> Result<Started> {
        let existing = self
            .get(id)
            .await?
            .ok_or_else(|| SagaError::NotFound { id: id.to_string() })?;
        if existing.saga.kind != kind {
            warn!(stored = %existing.saga.kind, asked = kind, "saga id exists with another kind");
        }
        Ok(Started {
            id,
            created: false,
            kind: existing.saga.kind,
            state: existing.saga.state,
        })
    }

    /// Spawns a driver for `id` unless one runs in this process already.
    fn spawn_driver(&self, id: SagaId) -> bool {
        let mut drivers = self.inner.drivers();
        if drivers.contains_key(&id) {
            return false;
        }
        let inner = self.inner.clone();
        // The map lock is held until the handle is inserted, so the guard's removal (on
        // another thread) cannot run before the insertion.
        let handle = tokio::spawn(async move {
            let _guard = DriverGuard {
                inner: inner.clone(),
                id,
            };
            if let Err(e) = driver::drive(inner, id).await {
                warn!(saga_id = %id, error = %e, "saga driver stopped: the poller will resume it");
            }
        });
        drivers.insert(id, handle.abort_handle());
        true
    }

    /// Spawns a driver for every unfinished saga (after a restart). Running steps are re-run
    /// (under the same idempotency keys), awaiting ones re-polled, waits honoured. Sagas
    /// leased by a live node are left to it. Returns how many drivers were spawned.
    pub async fn resume_all(&self) -> Result<usize> {
        let ids: Vec<String> = saga::Entity::find()
            .select_only()
            .column(saga::Column::Id)
            .filter(saga::Column::State.is_in(active_states()))
            .order_by_asc(saga::Column::CreatedAt)
            .into_tuple()
            .all(self.inner.store.db())
            .await?;
        Ok(self.spawn_all(ids))
    }

    /// Spawns drivers for active sagas that are due now and not leased by a live node.
    pub async fn resume_due(&self) -> Result<usize> {
        let now = Utc::now();
        let ids: Vec<String> = saga::Entity::find()
            .select_only()
            .column(saga::Column::Id)
            .filter(saga::Column::State.is_in(active_states()))
            .filter(
                Condition::any()
                    .add(saga::Column::NextAttemptAt.is_null())
                    .add(saga::Column::NextAttemptAt.lte(now)),
            )
            .filter(
                Condition::any()
                    .add(saga::Column::LeaseOwner.is_null())
                    .add(saga::Column::LeaseUntil.is_null())
                    .add(saga::Column::LeaseUntil.lt(now))
                    .add(saga::Column::LeaseOwner.eq(self.node_id())),
            )
            .order_by_asc(saga::Column::NextAttemptAt)
            .limit(1000)
            .into_tuple()
            .all(self.inner.store.db())
            .await?;
        Ok(self.spawn_all(ids))
    }

    fn spawn_all(&self, ids: Vec<String>) -> usize {
        let mut spawned = 0;
        for id in ids {
            match id.parse::<SagaId>() {
                Ok(id) => spawned += usize::from(self.spawn_driver(id)),
                Err(e) => warn!(saga_id = %id, error = %e, "saga row with a malformed id skipped"),
            }
        }
        spawned
    }

    /// Resumes everything, then keeps resuming what becomes due until `shutdown` resolves,
    /// then [`SagaExecutor::shutdown`]s. A failed poll (database down) is logged and tried
    /// again at the next tick.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let n = self.resume_all().await?;
        info!(node = self.node_id(), resumed = n, "saga executor running");
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(self.inner.options.poll_interval) => {
                    if let Err(e) = self.resume_due().await {
                        warn!(error = %e, "saga poll failed; next tick retries");
                    }
                }
            }
        }
        self.shutdown().await?;
        Ok(())
    }

    /// Stops every driver of this executor and gives up this node's leases, so that other
    /// nodes take its sagas over at once instead of after the TTL. A step cut off mid-call
    /// stays `running` and is re-run by the next driver under the same idempotency key.
    /// Returns how many leases were released.
    pub async fn shutdown(&self) -> Result<u64> {
        self.abort_all();
        let owner = self.node_id().to_string();
        let released = self
            .inner
            .store
            .write(move |txn| {
                Box::pin(async move {
                    let res = saga::Entity::update_many()
                        .set(saga::ActiveModel {
                            lease_owner: Set(None),
                            lease_until: Set(None),
                            ..Default::default()
                        })
                        .filter(saga::Column::LeaseOwner.eq(owner))
                        .exec(txn)
                        .await?;
                    Ok(res.rows_affected)
                })
            })
            .await?;
        info!(node = self.node_id(), released, "saga executor stopped");
        Ok(released)
    }

    /// Stops every driver of this executor at its next await point, writing nothing — what
    /// a crash does. Their sagas keep their state and their leases until the TTL.
    pub fn abort_all(&self) {
        for (_, handle) in self.inner.drivers().drain() {
            handle.abort();
        }
    }

    /// How many sagas this executor is driving right now.
    pub fn in_flight(&self) -> usize {
        self.inner.drivers().len()
    }

    /// A saga and its steps timeline.
    pub async fn get(&self, id: SagaId) -> Result<Option<SagaView>> {
        view::get(self.inner.store.db(), id).await
    }

    /// Page `page` (0-based) of sagas matching `filter`, most recently changed first.
    pub async fn list(&self, filter: &SagaFilter, page: u64, page_size: u64) -> Result<SagaPage> {
        view::list(self.inner.store.db(), filter, page, page_size).await
    }

    /// Sagas per state (all states present), optionally of one kind.
    pub async fn counts(&self, kind: Option<&str>) -> Result<BTreeMap<SagaState, u64>> {
        view::counts(self.inner.store.db(), kind).await
    }

    /// Waits until saga `id` is no longer active (completed, compensated, failed, stuck)
    /// and returns it; [`SagaError::Timeout`] after `timeout`.
    pub async fn wait(&self, id: SagaId, timeout: Duration) -> Result<SagaView> {
        let started = tokio::time::Instant::now();
        loop {
            let view = self
                .get(id)
                .await?
                .ok_or_else(|| SagaError::NotFound { id: id.to_string() })?;
            if !view.saga.state.is_active() {
                return Ok(view);
            }
            if started.elapsed() >= timeout {
                return Err(SagaError::Timeout {
                    id: id.to_string(),
                    state: view.saga.state.to_string(),
                    waited_ms: started.elapsed().as_millis(),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The saga's and its steps' rows as `start` writes them: running, at the first step, every
/// step pending.
fn new_rows(
    def: &SagaDefinition,
    kind: &str,
    id: SagaId,
    data: serde_json::Value,
    correlation_id: Uuid,
) -> (saga::ActiveModel, Vec<saga_step::ActiveModel>) {
    let now = Utc::now();
    let row = saga::ActiveModel {
        id: Set(id.to_string()),
        kind: Set(kind.to_string()),
        state: Set(SagaState::Running.as_str().into()),
        current_step: Set(0),
        data: Set(data),
        correlation_id: Set(correlation_id.to_string()),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        lease_owner: Set(None),
        lease_until: Set(None),
        next_attempt_at: Set(None),
    };
    let steps = def
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| saga_step::ActiveModel {
            saga_id: Set(id.to_string()),
            step: Set(i as i32),
            name: Set(s.name.clone()),
            state: Set(StepState::Pending.as_str().into()),
            attempts: Set(0),
            last_error: Set(None),
            output: Set(None),
            started_at: Set(None),
            updated_at: Set(now),
            compensation_attempts: Set(0),
            compensation_output: Set(None),
            next_attempt_at: Set(None),
        })
        .collect();
    (row, steps)
}

fn active_states() -> [&'static str; 2] {
    [
        SagaState::Running.as_str(),
        SagaState::Compensating.as_str(),
    ]
}
