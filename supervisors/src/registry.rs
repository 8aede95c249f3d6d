//! Actor registries: one per actor kind. A registry activates an actor on the first
//! message for its key, routes messages to it in the order they are given, keeps the
//! number of resident actors under a cap and passivates idle ones.
//!
//! Ordering: `route` enqueues into the actor's mailbox synchronously (`do_send`), so the
//! order of `route` calls for one key is the order of application. Capacity is bounded
//! upstream by the broker's prefetch, which is why `do_send` (which ignores mailbox
//! capacity) is safe here.
//!
//! Residency: an actor with messages in flight is never passivated. Passivation drops
//! the registry's address; actix stops the actor once its mailbox is empty, and the next
//! message reactivates it from storage.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use actix::{prelude::*, ArbiterHandle};
use merit_actors::{Deliver, Domain, EntityActor, KindStats, Outcome, RetryPolicy, Services};
use merit_messages::Envelope;
use merit_storage::{GroupCommitter, Store};
use serde::Serialize;
use tokio::sync::oneshot;

/// How many actors may stay resident, and for how long while idle.
#[derive(Debug, Clone, Copy)]
pub struct Residency {
    /// Most resident actors of this kind; the least recently used idle ones are
    /// passivated beyond it.
    pub max_resident: usize,
    /// Idle time after which an actor is passivated.
    pub idle: Duration,
}

struct Slot<D: Domain> {
    addr: Addr<EntityActor<D>>,
    inflight: Arc<AtomicUsize>,
    last_used: Instant,
}

/// A point-in-time view of one registry, for the dashboard and `/metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryStatus {
    /// Actor kind.
    pub kind: &'static str,
    /// Resident actors now.
    pub resident: usize,
    /// Messages routed and not yet finished.
    pub inflight: usize,
    /// Actors activated from storage since start.
    pub activations: u64,
    /// Actors passivated since start.
    pub passivations: u64,
    /// Messages applied.
    pub applied: u64,
    /// Turns committed (a turn applies one or more queued messages of one actor).
    pub turns: u64,
    /// Duplicate deliveries absorbed.
    pub duplicates: u64,
    /// Retries.
    pub retries: u64,
    /// Actor restarts after a panic.
    pub restarts: u64,
    /// Version conflicts.
    pub conflicts: u64,
    /// Messages dead-lettered by handlers.
    pub dead_letters: u64,
}

/// The registry of one actor kind.
pub struct Registry<D: Domain> {
    slots: Mutex<HashMap<String, Slot<D>>>,
    arbiters: Arc<[ArbiterHandle]>,
    store: Store,
    services: Services,
    committer: Option<GroupCommitter>,
    turn_batch: usize,
    policy: RetryPolicy,
    residency: Residency,
    stats: Arc<KindStats>,
    passivations: AtomicU64,
}

impl<D: Domain> Registry<D> {
    /// A registry whose actors run on `arbiters` (chosen by key hash) and use `store`.
    pub fn new(
        arbiters: Arc<[ArbiterHandle]>,
        store: Store,
        services: Services,
        policy: RetryPolicy,
        residency: Residency,
    ) -> Self {
        assert!(
            !arbiters.is_empty(),
            "a registry needs at least one arbiter"
        );
        Self {
            slots: Mutex::new(HashMap::new()),
            arbiters,
            store,
            services,
            committer: None,
            turn_batch: 1,
            policy,
            residency,
            stats: Arc::new(KindStats::default()),
            passivations: AtomicU64::new(0),
        }
    }

    /// Commits the turns of this kind's actors through `committer` (group commit).
    pub fn with_committer(mut self, committer: GroupCommitter) -> Self {
        self.committer = Some(committer);
        self
    }

    /// Lets each actor apply up to `n` queued messages in one turn (one state write, one
    /// commit); 1 applies them one by one.
    pub fn with_turn_batch(mut self, n: usize) -> Self {
        self.turn_batch = n.max(1);
        self
    }

    /// Routes `envelope` to the actor `key`, activating it if needed. The receiver yields
    /// the outcome once the turn is committed (or given up); it errs if the actor died
    /// without answering, in which case the message must be redelivered.
    pub fn route(
        &self,
        key: String,
        envelope: Arc<Envelope>,
        prior_attempts: u32,
    ) -> oneshot::Receiver<Outcome> {
        self.route_in(key, envelope, prior_attempts, tracing::Span::none())
    }

    /// [`Registry::route`] for a delivery traced by `span`: the turn's span is its child.
    pub fn route_in(
        &self,
        key: String,
        envelope: Arc<Envelope>,
        prior_attempts: u32,
        span: tracing::Span,
    ) -> oneshot::Receiver<Outcome> {
        let (reply, rx) = oneshot::channel();
        let mut slots = self
            .slots
            .lock()
            .expect("registry lock is never poisoned: no panics under it");
        let now = Instant::now();
        let slot = slots
            .entry(key)
            .or_insert_with_key(|key| self.activate(key.clone(), now));
        slot.last_used = now;
        slot.inflight.fetch_add(1, Ordering::AcqRel);
        self.stats.inflight.fetch_add(1, Ordering::AcqRel);
        slot.addr.do_send(Deliver {
            envelope,
            prior_attempts,
            reply,
            span,
        });
        if slots.len() > self.residency.max_resident {
            self.evict_lru(&mut slots);
        }
        rx
    }

    fn activate(&self, key: String, now: Instant) -> Slot<D> {
        let inflight = Arc::new(AtomicUsize::new(0));
        let arbiter = &self.arbiters[arbiter_index(&key, self.arbiters.len())];
        let actor = EntityActor::<D>::new(
            key,
            self.store.clone(),
            self.services.clone(),
            self.policy,
            self.stats.clone(),
            inflight.clone(),
        )
        .with_committer(self.committer.clone())
        .with_turn_batch(self.turn_batch);
        let addr = EntityActor::start_in_arbiter(arbiter, move |_| actor);
        Slot {
            addr,
            inflight,
            last_used: now,
        }
    }

    /// Passivates the least recently used idle actors until 90% of the cap remains, so the
    /// scan runs once per tenth of the cap, not on every activation.
    fn evict_lru(&self, slots: &mut HashMap<String, Slot<D>>) {
        let target = self.residency.max_resident - self.residency.max_resident / 10;
        let excess = slots.len().saturating_sub(target);
        let mut idle: Vec<(Instant, String)> = slots
            .iter()
            .filter(|(_, s)| s.inflight.load(Ordering::Acquire) == 0)
            .map(|(k, s)| (s.last_used, k.clone()))
            .collect();
        idle.sort_unstable();
        for (_, key) in idle.into_iter().take(excess) {
            slots.remove(&key);
            self.passivations.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Passivates actors idle for longer than the residency's idle time. Returns how many.
    pub fn passivate_idle(&self) -> usize {
        let mut slots = self
            .slots
            .lock()
            .expect("registry lock is never poisoned: no panics under it");
        let before = slots.len();
        let idle = self.residency.idle;
        slots.retain(|_, s| s.inflight.load(Ordering::Acquire) > 0 || s.last_used.elapsed() < idle);
        let removed = before - slots.len();
        self.passivations
            .fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }

    /// Resident actors now.
    pub fn resident(&self) -> usize {
        self.slots
            .lock()
            .expect("registry lock is never poisoned: no panics under it")
            .len()
    }

    /// Counters and gauges of this registry.
    pub fn status(&self) -> RegistryStatus {
        let s = &self.stats;
        RegistryStatus {
            kind: D::KIND.as_str(),
            resident: self.resident(),
            inflight: s.inflight.load(Ordering::Acquire),
            activations: s.activations.load(Ordering::Relaxed),
            passivations: self.passivations.load(Ordering::Relaxed),
            applied: s.applied.load(Ordering::Relaxed),
            turns: s.turns.load(Ordering::Relaxed),
            duplicates: s.duplicates.load(Ordering::Relaxed),
            retries: s.retries.load(Ordering::Relaxed),
            restarts: s.restarts.load(Ordering::Relaxed),
            conflicts: s.conflicts.load(Ordering::Relaxed),
            dead_letters: s.dead_letters.load(Ordering::Relaxed),
        }
    }
}

fn arbiter_index(key: &str, n: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % n as u64) as usize
}
