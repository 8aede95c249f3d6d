//! Live notification delivery: the hub every WebSocket session of this node subscribes
//! to, and the fan-out that carries notifications between nodes.
//!
//! Flow: a UserActor commits notifications to the user's log, then hands them to its
//! node's hub ([`Notifier`]). The hub delivers them to this node's sessions of that user
//! and, when RabbitMQ is configured, publishes them on the fanout exchange
//! `merit.notify`; every other node's hub receives them on its own exclusive queue and
//! delivers them to its sessions. So a client connected to any node hears of events
//! wherever the actor ran.
//!
//! Live delivery is best effort and never blocks a turn: a session's buffer is bounded
//! (a full one drops the session — a slow client is dropped, not the node), and the
//! fan-out is fire-and-forget. Completeness comes from the log: sessions number what they
//! send by the log's `seq`, read the log on a gap, on a fan-out reconnect and
//! periodically, so nothing is lost and nothing is sent twice.

use merit_messages::{Backoff, Retrying};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::Duration,
};

use futures::StreamExt;
use lapin::{
    options::{
        BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
        QueueDeclareOptions,
    },
    types::FieldTable,
    BasicProperties, ConnectionProperties, ExchangeKind,
};
use merit_actors::{Notifier, UserNotification};
use merit_mailbox::BrokerAddresses;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

/// The fanout exchange notifications travel between nodes on.
pub const NOTIFY_EXCHANGE: &str = "merit.notify";
/// Notifications queued for the fan-out while it is (re)connecting; beyond, live copies
/// are dropped (the log keeps them).
const FANOUT_QUEUE: usize = 10_000;

/// The hub. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NotificationHub {
    inner: Arc<Inner>,
}

/// Live sessions by user: (session id, its sender).
type Subscribers = HashMap<String, Vec<(u64, mpsc::Sender<Arc<UserNotification>>)>>;

#[derive(Debug)]
struct Inner {
    node_id: String,
    buffer: usize,
    next_id: AtomicU64,
    subscribers: Mutex<Subscribers>,
    fanout: OnceLock<mpsc::Sender<Vec<UserNotification>>>,
    /// Bumped whenever live delivery may have missed something (a fan-out reconnect):
    /// every session re-reads its log.
    resync: watch::Sender<u64>,
    dropped_slow: AtomicU64,
}

/// Wire form on `merit.notify`.
#[derive(Serialize, Deserialize)]
struct FanoutMessage {
    origin: String,
    items: Vec<UserNotification>,
}

/// One session's subscription; unsubscribes when dropped.
#[derive(Debug)]
pub struct Subscription {
    hub: NotificationHub,
    user: String,
    id: u64,
    /// Live notifications for the user; `None` once the hub dropped this subscriber for
    /// being too slow.
    pub rx: mpsc::Receiver<Arc<UserNotification>>,
    /// Changes when the session should re-read its log.
    pub resync: watch::Receiver<u64>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = self.hub.lock();
        if let Some(list) = subs.get_mut(&self.user) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                subs.remove(&self.user);
            }
        }
    }
}

impl NotificationHub {
    /// A hub for node `node_id` buffering `buffer` notifications per session.
    pub fn new(node_id: impl Into<String>, buffer: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                node_id: node_id.into(),
                buffer: buffer.max(1),
                next_id: AtomicU64::new(1),
                subscribers: Mutex::new(HashMap::new()),
                fanout: OnceLock::new(),
                resync: watch::channel(0).0,
                dropped_slow: AtomicU64::new(0),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Subscribers> {
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes a session to `user`'s live notifications.
    pub fn subscribe(&self, user: &str) -> Subscription {
        self.try_subscribe(user, usize::MAX)
            .expect("no cap: a subscription is always taken")
    }

    /// Subscribes a session to `user`'s live notifications unless the user already has
    /// `max` sessions on this node (checked and taken under one lock).
    pub fn try_subscribe(&self, user: &str, max: usize) -> Option<Subscription> {
        let (tx, rx) = mpsc::channel(self.inner.buffer);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut subs = self.lock();
            let list = subs.entry(user.to_string()).or_default();
            if list.len() >= max {
                return None;
            }
            list.push((id, tx));
        }
        Some(Subscription {
            hub: self.clone(),
            user: user.to_string(),
            id,
            rx,
            resync: self.inner.resync.subscribe(),
        })
    }

    /// Sessions connected to this node now.
    pub fn sessions(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// Sessions dropped for being too slow since start.
    pub fn dropped_slow(&self) -> u64 {
        self.inner.dropped_slow.load(Ordering::Relaxed)
    }

    /// Delivers to this node's sessions; a session whose buffer is full is dropped.
    fn deliver_local(&self, notifications: &[UserNotification]) {
        let mut subs = self.lock();
        for n in notifications {
            let Some(list) = subs.get_mut(&n.user) else {
                continue;
            };
            let n = Arc::new(n.clone());
            list.retain(|(_, tx)| match tx.try_send(n.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Counted once, as `merit_ws_dropped_total{reason="buffer_full"}`, when
                    // the session sees its feed closed.
                    self.inner.dropped_slow.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(user = %n.user, "WebSocket client too slow: dropped");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
            if list.is_empty() {
                subs.remove(&n.user);
            }
        }
    }

    /// Runs the fan-out over RabbitMQ at `url` (one address, or several nodes of one
    /// cluster, comma-separated) until `shutdown` turns true, reconnecting with backoff to
    /// the next address. Each (re)connect asks every session to re-read its log.
    pub async fn run_fanout(self, url: String, mut shutdown: watch::Receiver<bool>) {
        let addresses = match BrokerAddresses::parse(&url) {
            Ok(addresses) => addresses,
            Err(e) => {
                tracing::error!(error = %e, "notification fan-out not started");
                return;
            }
        };
        let (tx, mut outgoing) = mpsc::channel(FANOUT_QUEUE);
        if self.inner.fanout.set(tx).is_err() {
            tracing::warn!("notification fan-out already running");
            return;
        }
        let mut retrying = Retrying::new(Backoff::exponential(
            Duration::from_millis(200),
            Duration::from_secs(5),
        ));
        loop {
            let result = tokio::select! {
                r = self.fanout_once(&addresses, &mut outgoing) => r,
                _ = stopped(&mut shutdown) => return,
            };
            if result.is_ok() {
                retrying.reset();
            }
            let backoff = retrying.next_delay();
            if let Err(e) = result {
                tracing::warn!(error = %e, retry_in = ?backoff, "notification fan-out lost; reconnecting")
            }
            self.inner.resync.send_modify(|g| *g += 1);
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stopped(&mut shutdown) => return,
            }
        }
    }

    async fn fanout_once(
        &self,
        addresses: &BrokerAddresses,
        outgoing: &mut mpsc::Receiver<Vec<UserNotification>>,
    ) -> Result<(), FanoutError> {
        let props = ConnectionProperties::default()
            .with_connection_name(format!("merit-notify {}", self.inner.node_id).into());
        let (connection, _) = addresses.connect(&props, CONNECT_TIMEOUT).await?;
        let publisher = connection.create_channel().await?;
        declare_exchange(&publisher).await?;
        let mut consumer = self.consume(&connection).await?;
        // Connected: what was missed while away is read from the logs.
        self.inner.resync.send_modify(|g| *g += 1);
        tracing::info!("notification fan-out connected");
        loop {
            tokio::select! {
                batch = outgoing.recv() => {
                    let Some(items) = batch else { return Ok(()) };
                    self.publish(&publisher, items).await?;
                }
                delivery = consumer.next() => match delivery {
                    Some(Ok(d)) => self.receive(&d.data),
                    Some(Err(e)) => return Err(e.into()),
                    None => return Ok(()),
                },
            }
        }
    }

    /// Binds an exclusive, auto-delete queue of this node to the exchange and consumes it.
    async fn consume(
        &self,
        connection: &lapin::Connection,
    ) -> Result<lapin::Consumer, FanoutError> {
        let channel = connection.create_channel().await?;
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                queue.name().clone(),
                NOTIFY_EXCHANGE.into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(channel
            .basic_consume(
                queue.name().clone(),
                format!("merit-notify-{}", self.inner.node_id)
                    .as_str()
                    .into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?)
    }

    /// Publishes a batch of this node's notifications for the other nodes.
    async fn publish(
        &self,
        publisher: &lapin::Channel,
        items: Vec<UserNotification>,
    ) -> Result<(), FanoutError> {
        let body = serde_json::to_vec(&FanoutMessage {
            origin: self.inner.node_id.clone(),
            items,
        })
        .unwrap_or_default();
        // Fire and forget (the confirm is dropped): the log is the durable copy.
        drop(
            publisher
                .basic_publish(
                    NOTIFY_EXCHANGE.into(),
                    "".into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default(),
                )
                .await?,
        );
        Ok(())
    }

    /// Delivers another node's notifications to this node's sessions (a node's own come
    /// back too: it delivered them already).
    fn receive(&self, data: &[u8]) {
        match serde_json::from_slice::<FanoutMessage>(data) {
            Ok(m) if m.origin != self.inner.node_id => self.deliver_local(&m.items),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "unreadable message on merit.notify ignored"),
        }
    }
}

/// Declares the durable fanout exchange the nodes share.
async fn declare_exchange(channel: &lapin::Channel) -> Result<(), FanoutError> {
    channel
        .exchange_declare(
            NOTIFY_EXCHANGE.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

impl Notifier for NotificationHub {
    fn notify(&self, notifications: &[UserNotification]) {
        self.deliver_local(notifications);
        if let Some(fanout) = self.inner.fanout.get() {
            if fanout.try_send(notifications.to_vec()).is_err() {
                metrics::counter!("merit_ws_fanout_dropped_total").increment(1);
            }
        }
    }
}

/// Why one fan-out connection ended: the broker, or no address took the connection.
type FanoutError = Box<dyn std::error::Error + Send + Sync>;

/// How long one connection attempt to one broker address may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves once `shutdown` says stop (or its sender is gone); holds no guard across awaits.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(user: &str, seq: u64) -> UserNotification {
        UserNotification {
            user: user.to_string(),
            seq,
            event_id: uuid::Uuid::new_v4(),
            kind: "achievement.unlocked".to_string(),
            payload: serde_json::json!({}),
            at: chrono::Utc::now(),
        }
    }

    #[tokio::test]
    async fn a_user_hears_only_their_own_notifications() {
        let hub = NotificationHub::new("n", 8);
        let mut a = hub.subscribe("a");
        let mut b = hub.subscribe("b");
        hub.notify(&[note("a", 1), note("b", 1), note("a", 2)]);
        assert_eq!(a.rx.recv().await.expect("a notification").seq, 1);
        assert_eq!(a.rx.recv().await.expect("a notification").seq, 2);
        assert_eq!(b.rx.recv().await.expect("a notification").user, "b");
        assert!(b.rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_slow_session_is_dropped_and_others_go_on() {
        let hub = NotificationHub::new("n", 2);
        let mut slow = hub.subscribe("a");
        let mut fast = hub.subscribe("a");
        for seq in 1..=3 {
            hub.notify(&[note("a", seq)]);
            // The fast one keeps up.
            assert_eq!(fast.rx.recv().await.expect("a notification").seq, seq);
        }
        assert_eq!(hub.dropped_slow(), 1);
        assert_eq!(slow.rx.recv().await.expect("a notification").seq, 1);
        assert_eq!(slow.rx.recv().await.expect("a notification").seq, 2);
        assert!(slow.rx.recv().await.is_none(), "dropped: the channel ends");
        assert_eq!(hub.sessions(), 1);
        drop(fast);
        assert_eq!(hub.sessions(), 0);
    }

    #[test]
    fn sessions_over_the_per_user_cap_are_refused_until_one_ends() {
        let hub = NotificationHub::new("n", 4);
        let first = hub.try_subscribe("0xa", 2).expect("first");
        let _second = hub.try_subscribe("0xa", 2).expect("second");
        assert!(
            hub.try_subscribe("0xa", 2).is_none(),
            "third over a cap of 2"
        );
        assert!(hub.try_subscribe("0xb", 2).is_some(), "another user");
        drop(first);
        assert!(hub.try_subscribe("0xa", 2).is_some(), "a freed place");
    }
}
