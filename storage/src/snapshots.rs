//! Actor snapshots loaded together: the actors activated at the same moment are read with
//! one statement, not one each.
//!
//! When many actors wake at once (a hot proposal's voters, each a new UserActor), each
//! used to run its own `SELECT` on activation. Now a load joins a queue; the first load
//! to find nobody serving the queue starts a task that takes everything queued (up to
//! [`MAX_KEYS_PER_READ`]), reads it with one statement and answers each load, until the
//! queue is empty. It never waits to fill a read, so a lone activation is read at once.
//!
//! On PostgreSQL the statement joins two unnested arrays, so its text is the same for
//! any number of keys and stays prepared; on SQLite it is a row-value `IN (VALUES …)`.
//! A failed read answers nobody: each of its loads then reads its own row, and reports
//! its own error. So does a load whose serving task was dropped (its runtime shut down).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use merit_messages::ActorKind;
use sea_orm::{
    sea_query::ArrayType, ConnectionTrait, DbBackend, EntityName, EntityTrait, Statement,
    Value as SeaValue,
};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::{entities::actor, error::Result, store::Store};

/// The most snapshots one statement reads.
pub(crate) const MAX_KEYS_PER_READ: usize = 1_000;

/// A stored snapshot: `(version, state)`.
pub(crate) type Snapshot = (i64, Value);

struct Load {
    kind: ActorKind,
    key: String,
    reply: oneshot::Sender<Option<Snapshot>>,
}

/// The queue of loads waiting for a read, shared by a store's clones.
#[derive(Default)]
pub(crate) struct SnapshotLoader {
    queue: Mutex<Vec<Load>>,
    serving: AtomicBool,
}

impl std::fmt::Debug for SnapshotLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotLoader").finish_non_exhaustive()
    }
}

impl SnapshotLoader {
    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Load>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store {
    /// Loads an actor's snapshot: `(version, state)`, or `None` for an actor never stored.
    /// Loads made at the same moment share one read (see [`crate::snapshots`]).
    pub async fn load_actor(&self, kind: ActorKind, key: &str) -> Result<Option<Snapshot>> {
        let (reply, answer) = oneshot::channel();
        let loader = self.snapshot_loader();
        loader.queue().push(Load {
            kind,
            key: key.to_string(),
            reply,
        });
        if !loader.serving.swap(true, Ordering::AcqRel) {
            // The guard goes into the task as it is made: should the task be dropped before
            // it first runs (its runtime shutting down), the guard still clears the queue.
            let serving = Serving {
                loader,
                done: false,
            };
            tokio::spawn(serve(self.clone(), serving));
        }
        match answer.await {
            Ok(snapshot) => Ok(snapshot),
            // The shared read failed or was dropped: read this one alone.
            Err(_) => self.load_actor_alone(kind, key).await,
        }
    }

    async fn load_actor_alone(&self, kind: ActorKind, key: &str) -> Result<Option<Snapshot>> {
        let row = actor::Entity::find_by_id((kind.as_str().to_string(), key.to_string()))
            .one(self.db())
            .await?;
        Ok(row.map(|r| (r.version, r.state)))
    }
}

/// Clears the queue if the serving task is dropped mid-read, so no load waits forever
/// (each then reads alone), and lets the next load start a new task. A task that ends
/// because the queue is empty sets `done` first and leaves both alone.
struct Serving {
    loader: Arc<SnapshotLoader>,
    done: bool,
}

impl Drop for Serving {
    fn drop(&mut self) {
        if !self.done {
            self.loader.queue().clear();
            self.loader.serving.store(false, Ordering::Release);
        }
    }
}

async fn serve(store: Store, mut serving: Serving) {
    loop {
        let loads: Vec<Load> = {
            let mut queue = serving.loader.queue();
            let n = queue.len().min(MAX_KEYS_PER_READ);
            queue.drain(..n).collect()
        };
        if loads.is_empty() {
            let loader = &serving.loader;
            loader.serving.store(false, Ordering::Release);
            // A load queued after the drain above but before the flag fell found the
            // flag up and started no task: serve it here, unless a new task already is.
            if loader.queue().is_empty() || loader.serving.swap(true, Ordering::AcqRel) {
                serving.done = true;
                return;
            }
            continue;
        }
        match read_many(&store, &loads).await {
            Ok(mut found) => {
                for load in loads {
                    let snapshot = found.remove(&(load.kind.as_str(), load.key));
                    let _ = load.reply.send(snapshot);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, loads = loads.len(), "a shared snapshot read failed; each load reads alone");
            }
        }
    }
}

/// Reads the snapshots of `loads` with one statement.
async fn read_many(
    store: &Store,
    loads: &[Load],
) -> Result<HashMap<(&'static str, String), Snapshot>> {
    let backend = store.backend();
    let table = actor::Entity.table_name();
    let stmt = match backend {
        DbBackend::Postgres => {
            let array =
                |cells: Vec<SeaValue>| SeaValue::Array(ArrayType::String, Some(Box::new(cells)));
            Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT a.kind, a.key, a.version, a.state FROM {table} a \
                     JOIN UNNEST($1::text[], $2::text[]) AS w(kind, key) \
                     ON a.kind = w.kind AND a.key = w.key"
                ),
                [
                    array(loads.iter().map(|l| l.kind.as_str().into()).collect()),
                    array(loads.iter().map(|l| l.key.clone().into()).collect()),
                ],
            )
        }
        _ => {
            let rows = vec!["(?, ?)"; loads.len()].join(", ");
            Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT kind, key, version, state FROM {table} \
                     WHERE (kind, key) IN (VALUES {rows})"
                ),
                loads
                    .iter()
                    .flat_map(|l| [SeaValue::from(l.kind.as_str()), l.key.clone().into()]),
            )
        }
    };
    let mut found = HashMap::with_capacity(loads.len());
    for row in store.db().query_all(stmt).await? {
        let kind: String = row.try_get("", "kind")?;
        let Some(kind) = loads.iter().map(|l| l.kind.as_str()).find(|k| *k == kind) else {
            continue;
        };
        let state: Value = row.try_get("", "state")?;
        found.insert(
            (kind, row.try_get("", "key")?),
            (row.try_get("", "version")?, state),
        );
    }
    Ok(found)
}
