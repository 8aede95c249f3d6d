//! The connection to RabbitMQ and its recovery.
//!
//! merit runs its own reconnect loop instead of lapin's automatic recovery: lapin 4.12
//! replays channels and consumers in place, and its changelog shows that acking a delivery
//! from before a recovery was still being fixed in 4.12.3. Here every connection is new
//! and numbered (its *generation*); nothing from an older generation is ever reused, so a
//! stale delivery tag cannot reach the broker on a new channel.
//!
//! A supervisor task watches the live [`Link`] (connection events, a 250 ms status poll,
//! and reports from users that saw an operation fail). When the link is lost it marks the
//! state `Down`, reconnects with capped, jittered exponential backoff, re-declares the
//! topology if it was ever declared, opens a new publisher channel with confirms, and
//! publishes `Up` with the next generation. Publishers and one-shot operations wait for
//! `Up` (bounded by the operation timeout); consumers resubscribe on each new generation.

use merit_messages::Backoff;
use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use futures::StreamExt;
use lapin::{options::ConfirmSelectOptions, Channel, Connection, ConnectionProperties};
use tokio::{
    sync::{watch, Mutex, Notify},
    task::JoinHandle,
    time::Instant,
};
use tracing::{debug, info, warn};

use super::{addresses::BrokerAddresses, declare, RabbitOptions};
use crate::{
    error::{Error, Result},
    topology::Topology,
};

/// One live connection and its publisher channel.
pub(crate) struct Link {
    /// 1 for the first connection, +1 per reconnect.
    pub(crate) generation: u64,
    /// The broker address it went to, without credentials.
    pub(crate) address: String,
    pub(crate) connection: Connection,
    /// Confirm-mode channel shared by every publisher.
    pub(crate) publisher: Channel,
    /// Held while a batch is written, so batches do not interleave and each keeps its order.
    pub(crate) publish_lock: Mutex<()>,
    broken: Notify,
}

impl Link {
    /// Whether both the connection and the publisher channel are open.
    pub(crate) fn is_alive(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }

    /// Whether the connection itself is open (a channel may have failed on its own).
    pub(crate) fn connection_open(&self) -> bool {
        self.connection.status().connected()
    }

    /// Tells the supervisor to check this link now rather than at its next poll.
    pub(crate) fn report_broken(&self) {
        self.broken.notify_one();
    }

    /// Opens a channel for one operation or one consumer.
    pub(crate) async fn channel(&self, purpose: &str) -> Result<Channel> {
        self.connection
            .create_channel()
            .await
            .map_err(|e| Error::amqp(format!("open a channel to {purpose}"), e))
    }
}

/// The state every part of the transport observes.
#[derive(Clone)]
pub(crate) enum LinkState {
    Up(Arc<Link>),
    Down,
    Closed,
}

/// What the transport, its consumers and its deliveries share.
pub(crate) struct Shared {
    pub(crate) addresses: BrokerAddresses,
    pub(crate) topology: Topology,
    pub(crate) options: RabbitOptions,
    state: watch::Sender<LinkState>,
    declared: AtomicBool,
}

impl Shared {
    pub(crate) fn new(
        addresses: BrokerAddresses,
        topology: Topology,
        options: RabbitOptions,
    ) -> Self {
        Self {
            addresses,
            topology,
            options,
            state: watch::Sender::new(LinkState::Down),
            declared: AtomicBool::new(false),
        }
    }

    /// The live link, if the transport is connected.
    pub(crate) fn current(&self) -> Option<Arc<Link>> {
        match &*self.state.borrow() {
            LinkState::Up(link) => Some(link.clone()),
            _ => None,
        }
    }

    /// The generation of the live link, if any.
    pub(crate) fn generation(&self) -> Option<u64> {
        self.current().map(|l| l.generation)
    }

    /// Remembers that the topology is declared, so that reconnects re-declare it.
    pub(crate) fn mark_declared(&self) {
        self.declared.store(true, Ordering::SeqCst);
    }

    /// Waits for a live link newer than generation `after` (0: any). `None` once closed.
    pub(crate) async fn next_link(&self, after: u64) -> Option<Arc<Link>> {
        let mut rx = self.state.subscribe();
        loop {
            match &*rx.borrow_and_update() {
                LinkState::Up(link) if link.generation > after && link.is_alive() => {
                    return Some(link.clone())
                }
                LinkState::Closed => return None,
                _ => {}
            }
            // A link can die without a state change until the supervisor notices it;
            // wake up periodically so that a dead `Up` does not stall us.
            let changed = tokio::time::timeout(Duration::from_millis(250), rx.changed()).await;
            if let Ok(Err(_)) = changed {
                return None;
            }
        }
    }

    /// Resolves once the transport is closed.
    pub(crate) async fn closed(&self) {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|s| matches!(s, LinkState::Closed)).await;
    }

    /// Like [`Self::next_link`], giving up at `deadline`.
    pub(crate) async fn link_before(
        &self,
        deadline: Instant,
        after: u64,
        operation: &str,
        started: Instant,
    ) -> Result<Arc<Link>> {
        match tokio::time::timeout_at(deadline, self.next_link(after)).await {
            Ok(Some(link)) => Ok(link),
            Ok(None) => Err(Error::Closed),
            Err(_) => Err(Error::Unavailable {
                operation: operation.to_string(),
                waited: started.elapsed(),
            }),
        }
    }

    /// Runs `op` on a live link; if it fails because the connection went away, waits for
    /// the next connection and runs it again, for up to the operation timeout. Failures
    /// with the connection still open (a refused declare, a missing queue) are returned.
    pub(crate) async fn with_link<T, F, Fut>(&self, operation: &str, mut op: F) -> Result<T>
    where
        F: FnMut(Arc<Link>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let started = Instant::now();
        let deadline = started + self.options.op_timeout;
        let mut after = 0;
        loop {
            let link = self
                .link_before(deadline, after, operation, started)
                .await?;
            match op(link.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) if !link.connection_open() => {
                    // The broker closed the connection over this operation for a reason
                    // no retry cures (a missing plugin): say so now, with the fix.
                    if let Some(refused) = e.refusal() {
                        link.report_broken();
                        return Err(refused);
                    }
                    debug!(operation, generation = link.generation, error = %e,
                        "connection lost during the operation; retrying on the next connection");
                    link.report_broken();
                    after = link.generation;
                }
                Err(e) => return Err(e.refusal().unwrap_or(e)),
            }
        }
    }
}

/// Connects generation `generation`: connection, topology (if declared), publisher.
pub(crate) async fn establish(shared: &Shared, generation: u64) -> Result<Arc<Link>> {
    let name = format!("{} #{generation}", shared.options.connection_name);
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let (connection, address) = shared
        .addresses
        .connect(&props, shared.options.connect_timeout)
        .await?;
    if shared.addresses.len() > 1 {
        info!(generation, address, "connected to RabbitMQ");
    }
    if shared.declared.load(Ordering::SeqCst) {
        declare::declare(&connection, &shared.topology, &shared.options).await?;
    }
    let publisher = connection
        .create_channel()
        .await
        .map_err(|e| Error::amqp("open the publisher channel", e))?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| Error::amqp("enable publisher confirms", e))?;
    Ok(Arc::new(Link {
        generation,
        address,
        connection,
        publisher,
        publish_lock: Mutex::new(()),
        broken: Notify::new(),
    }))
}

/// Owns the supervisor task; dropping it closes the transport.
pub(crate) struct Supervisor {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Publishes `first` as the live link and starts watching it.
    pub(crate) fn start(shared: Arc<Shared>, first: Arc<Link>) -> Self {
        shared.state.send_replace(LinkState::Up(first.clone()));
        let task = tokio::spawn(supervise(shared.clone(), first));
        Self { shared, task }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.task.abort();
        // Dropping the last handles of the link closes the connection; consumers see
        // `Closed` and end their streams.
        self.shared.state.send_replace(LinkState::Closed);
    }
}

/// A link that lives less than this before it is lost counts as a flap: the next
/// reconnect backs off as if the previous one had failed.
const STABLE_LINK: Duration = Duration::from_secs(10);

async fn supervise(shared: Arc<Shared>, mut link: Arc<Link>) {
    // Consecutive short-lived links: a broker that accepts the connection and then closes
    // it (say, it refuses a declaration) must not be reconnected to in a hot loop.
    let mut flaps = 0u32;
    loop {
        let up_since = tokio::time::Instant::now();
        wait_until_lost(&link).await;
        let pause = if up_since.elapsed() < STABLE_LINK {
            flaps = flaps.saturating_add(1);
            Some(backoff(&shared.options, flaps - 1))
        } else {
            flaps = 0;
            None
        };
        let lost = link.generation;
        shared.state.send_replace(LinkState::Down);
        warn!(
            generation = lost,
            "lost the RabbitMQ connection; reconnecting"
        );
        // Close what is left of the old connection (its publisher channel may have failed
        // alone) before the next generation goes live, so that "older generation" always
        // means "closed channel" for the deliveries that remember it.
        close_old(&link).await;
        if let Some(pause) = pause {
            warn!(
                flaps,
                delay_ms = pause.as_millis() as u64,
                "the link was lost soon after it came up; backing off"
            );
            tokio::time::sleep(pause).await;
        }
        link = reconnect(&shared, lost + 1).await;
        shared.state.send_replace(LinkState::Up(link.clone()));
        info!(generation = link.generation, "reconnected to RabbitMQ");
    }
}

async fn wait_until_lost(link: &Link) {
    let mut events = Some(link.connection.events_listener().boxed());
    let mut poll = tokio::time::interval(Duration::from_millis(250));
    while link.is_alive() {
        tokio::select! {
            event = async { events.as_mut().expect("guarded by the select condition").next().await },
                if events.is_some() =>
            {
                match event {
                    Some(lapin::Event::Error(e)) => debug!(error = %e, "connection error event"),
                    Some(_) => {}
                    None => events = None,
                }
            }
            _ = poll.tick() => {}
            _ = link.broken.notified() => {}
        }
    }
}

async fn reconnect(shared: &Shared, generation: u64) -> Arc<Link> {
    let mut attempt = 0u32;
    loop {
        match establish(shared, generation).await {
            Ok(link) => return link,
            Err(e) => {
                let delay = backoff(&shared.options, attempt);
                warn!(attempt, delay_ms = delay.as_millis() as u64, error = %e, "reconnect failed");
                tokio::time::sleep(delay).await;
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// Exponential from `reconnect_min`, capped at `reconnect_max`, with the upper half
/// jittered so that many nodes do not reconnect in step after a broker restart.
pub(crate) fn backoff(options: &RabbitOptions, attempt: u32) -> Duration {
    Backoff::exponential(options.reconnect_min, options.reconnect_max).delay(attempt)
}

/// Closes a lost link's connection if it is somehow still open.
async fn close_old(link: &Link) {
    if !link.connection_open() {
        return;
    }
    let close = link.connection.close(200, "replaced".into());
    match tokio::time::timeout(Duration::from_secs(5), close).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(error = %e, "closing a lost connection"),
        Err(_) => warn!(
            generation = link.generation,
            "a lost connection did not close within 5 s"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let o = RabbitOptions {
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            ..RabbitOptions::default()
        };
        for _ in 0..50 {
            let d0 = backoff(&o, 0);
            assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
            let d30 = backoff(&o, 30);
            assert!(d30 >= Duration::from_millis(2500) && d30 <= Duration::from_secs(5));
        }
    }
}
