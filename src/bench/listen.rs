//! Who hears the latency run's `governance.vote.recorded` notifications, and when: a
//! subscriber on the node's hub per voter (what a session is handed) and a real
//! WebSocket client per voter on the node's `/ws` (what a user's browser would see).
//!
//! Flow: the listeners are in place before the first vote is published — every
//! WebSocket client has had its `hello`, so its session is subscribed — and each stamps
//! a notification when it reads it and hands it to one collector. [`Listening::finish`]
//! matches what arrives against the votes' publish times until every vote was heard or
//! [`PATIENCE`] ran out, then stops the listeners. Notifications of other votes (an
//! earlier run's, to the same voters) are not counted. What was not heard is counted,
//! never dropped from view: a missing notification lowers `received`, a listener that
//! heard fewer than its votes counts in `short`, a connection the server closed is named
//! in `ended`.
//!
//! The WebSocket clients are tokio tasks on the bench's own runtime, in the node's
//! process: they share its CPU with the actors (actix arbiters), the HTTP workers and the
//! broker and database drivers, as a co-located client would; an arrival is stamped when
//! the client's task reads the frame, so their scheduling delay is in the figure.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt, TryStreamExt};
use merit_messages::Address;
use serde::{Deserialize, Serialize};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tokio_tungstenite::{
    tungstenite::{self, http::StatusCode, Message},
    MaybeTlsStream, WebSocketStream,
};

/// The notification whose arrival is timed.
const VOTE_RECORDED: &str = "governance.vote.recorded";
/// How long to wait for the last notifications after the last commit: longer than the
/// sessions' log re-read (`ApiOptions::ws_catch_up`, 15 s), the backstop for a live
/// notification that missed, so a late one is timed rather than counted missing.
pub(super) const PATIENCE: Duration = Duration::from_secs(20);
/// How long a client waits for its `hello` after the upgrade.
const HELLO_WITHIN: Duration = Duration::from_secs(10);
/// Connections opened at once.
const CONNECTING: usize = 16;
/// Attempts per client when the API's per-address rate limit refuses it (every client
/// comes from 127.0.0.1), a second apart.
const ATTEMPTS: u32 = 10;

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// The listeners of one run. Each listener task ends with why it stopped early, if it
/// did.
pub(super) struct Listening {
    arrivals: mpsc::UnboundedReceiver<Arrival>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Option<String>>>,
}

/// A `vote.recorded` notification reaching the listener of the `voter`th voter.
struct Arrival {
    voter: u32,
    event_id: String,
    at: DateTime<Utc>,
}

/// What a run's listeners heard, against what was published.
#[derive(Debug, Serialize)]
pub(super) struct Heard {
    /// Listeners (one per voter).
    pub(super) listeners: usize,
    /// Notifications due: one per vote.
    pub(super) expected: usize,
    /// Distinct published votes whose notification arrived.
    pub(super) received: usize,
    /// Notifications that arrived again at the same listener.
    pub(super) duplicates: usize,
    /// Listeners that heard fewer than their votes.
    pub(super) short: usize,
    /// Listeners that stopped early, by why.
    pub(super) ended: BTreeMap<String, usize>,
    /// Publish → arrival percentiles, ms, of what arrived.
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) p999_ms: f64,
}

/// A wire frame of `/ws`: the fields the bench reads.
#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    frame: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    event_id: String,
}

/// Subscribes to the hub for each of `voters`.
pub(super) fn hub(hub: &merit_api::NotificationHub, voters: &[Address]) -> Listening {
    let (heard, arrivals) = mpsc::unbounded_channel();
    let (stop, stopped) = watch::channel(false);
    let tasks = voters
        .iter()
        .zip(0..)
        .map(|(address, voter)| {
            let mut sub = hub.subscribe(&address.to_string());
            let mut stopped = stopped.clone();
            let heard = heard.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        n = sub.rx.recv() => match n {
                            Some(n) if n.kind == VOTE_RECORDED => {
                                let at = Utc::now();
                                let _ = heard.send(Arrival { voter, event_id: n.event_id.to_string(), at });
                            }
                            Some(_) => {}
                            None => return Some("dropped by the hub: too slow".to_string()),
                        },
                        _ = stopped.changed() => return None,
                    }
                }
            })
        })
        .collect();
    Listening {
        arrivals,
        stop,
        tasks,
    }
}

/// Opens a WebSocket client per voter on `ws://{address}/ws` with its token; returns
/// once every one has had its `hello`, or the first that failed to.
pub(super) async fn websocket(
    address: SocketAddr,
    voters: Vec<(Address, String)>,
) -> Result<Listening> {
    let sockets: Vec<(u32, Socket)> = futures::stream::iter(voters.into_iter().zip(0..))
        .map(|((voter, token), i)| async move {
            let socket = connect(address, voter, &token)
                .await
                .with_context(|| format!("the WebSocket client of {voter}"))?;
            anyhow::Ok((i, socket))
        })
        .buffer_unordered(CONNECTING)
        .try_collect()
        .await?;
    let (heard, arrivals) = mpsc::unbounded_channel();
    let (stop, stopped) = watch::channel(false);
    let tasks = sockets
        .into_iter()
        .map(|(voter, socket)| tokio::spawn(client(voter, socket, heard.clone(), stopped.clone())))
        .collect();
    Ok(Listening {
        arrivals,
        stop,
        tasks,
    })
}

async fn connect(address: SocketAddr, voter: Address, token: &str) -> Result<Socket> {
    // The token is a credential: it stays out of the errors.
    let url = format!("ws://{address}/ws?token={token}");
    let mut attempt = 1;
    let mut socket = loop {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((socket, _)) => break socket,
            Err(tungstenite::Error::Http(response))
                if response.status() == StatusCode::TOO_MANY_REQUESTS && attempt < ATTEMPTS =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("open ws://{address}/ws (attempt {attempt} of {ATTEMPTS})")
                })
            }
        }
    };
    let hello = tokio::time::timeout(HELLO_WITHIN, next_text(&mut socket))
        .await
        .with_context(|| format!("no frame within {HELLO_WITHIN:?} of the upgrade"))??;
    let frame: Frame = serde_json::from_str(&hello)
        .with_context(|| format!("the first frame is not a /ws frame: {hello}"))?;
    anyhow::ensure!(
        frame.frame == "hello" && frame.user == voter.to_string(),
        "expected a hello for {voter} first, got {hello}"
    );
    Ok(socket)
}

/// The next text frame, answering pings on the way.
async fn next_text(socket: &mut Socket) -> Result<String> {
    loop {
        match socket
            .next()
            .await
            .context("the server closed the connection")??
        {
            Message::Text(text) => return Ok(text),
            // tungstenite queued the pong; flushing sends it now.
            Message::Ping(_) => socket.flush().await?,
            Message::Close(frame) => anyhow::bail!("the server closed the connection: {frame:?}"),
            _ => {}
        }
    }
}

/// Reads `socket` until stopped, answering the server's pings (it drops a client silent
/// for three); returns why it stopped early, if it did.
async fn client(
    voter: u32,
    mut socket: Socket,
    heard: mpsc::UnboundedSender<Arrival>,
    mut stopped: watch::Receiver<bool>,
) -> Option<String> {
    loop {
        tokio::select! {
            message = socket.next() => {
                let ended = match message {
                    Some(Ok(Message::Text(text))) => {
                        let at = Utc::now();
                        match serde_json::from_str::<Frame>(&text) {
                            Ok(f) if f.frame == "notification" && f.kind == VOTE_RECORDED => {
                                let _ = heard.send(Arrival { voter, event_id: f.event_id, at });
                                None
                            }
                            Ok(_) => None,
                            Err(e) => Some(format!("an unreadable frame: {e}")),
                        }
                    }
                    // tungstenite queued the pong; flushing sends it now.
                    Some(Ok(Message::Ping(_))) => socket
                        .flush()
                        .await
                        .err()
                        .map(|e| format!("answering a ping: {e}")),
                    Some(Ok(Message::Close(frame))) => Some(match frame {
                        Some(f) => format!("closed by the server: {} {}", u16::from(f.code), f.reason),
                        None => "closed by the server".to_string(),
                    }),
                    Some(Ok(_)) => None,
                    Some(Err(e)) => Some(format!("connection error: {e}")),
                    None => Some("connection ended".to_string()),
                };
                if ended.is_some() {
                    return ended;
                }
            }
            _ = stopped.changed() => {
                let _ = socket.close(None).await;
                return None;
            }
        }
    }
}

impl Listening {
    /// Measures each arrival from its vote's publish (`published`: `vote.recorded` id →
    /// publish time) until every vote was heard or `deadline`, then stops the listeners.
    /// `votes_of(voter)` is how many notifications a listener is due.
    pub(super) async fn finish(
        mut self,
        published: &HashMap<String, DateTime<Utc>>,
        votes_of: impl Fn(u32) -> usize,
        deadline: Instant,
    ) -> Heard {
        let mut tally = Tally::default();
        let deadline = tokio::time::Instant::from_std(deadline);
        while tally.received < published.len() {
            match tokio::time::timeout_at(deadline, self.arrivals.recv()).await {
                Ok(Some(a)) => tally.take(a, published),
                Ok(None) | Err(_) => break,
            }
        }
        let _ = self.stop.send(true);
        let listeners = self.tasks.len();
        let mut ended = BTreeMap::new();
        for task in self.tasks {
            let why = match task.await {
                Ok(why) => why,
                Err(e) => Some(format!("listener failed: {e}")),
            };
            if let Some(why) = why {
                *ended.entry(why).or_default() += 1;
            }
        }
        // Stamped before the stop: measured too.
        while let Ok(a) = self.arrivals.try_recv() {
            tally.take(a, published);
        }
        let short = (0..listeners as u32)
            .filter(|v| tally.heard_by.get(v).map_or(0, HashSet::len) < votes_of(*v))
            .count();
        let mut latencies = tally.latencies;
        latencies.sort_by(|a, b| a.total_cmp(b));
        Heard {
            listeners,
            expected: published.len(),
            received: tally.received,
            duplicates: tally.duplicates,
            short,
            ended,
            p50_ms: super::percentile(&latencies, 0.50),
            p99_ms: super::percentile(&latencies, 0.99),
            p999_ms: super::percentile(&latencies, 0.999),
        }
    }
}

/// Arrivals matched against the published votes.
#[derive(Default)]
struct Tally {
    /// Distinct votes heard, by listener.
    heard_by: HashMap<u32, HashSet<String>>,
    received: usize,
    duplicates: usize,
    /// Publish → arrival, ms.
    latencies: Vec<f64>,
}

impl Tally {
    fn take(&mut self, a: Arrival, published: &HashMap<String, DateTime<Utc>>) {
        let Some(sent) = published.get(&a.event_id) else {
            return;
        };
        if self.heard_by.entry(a.voter).or_default().insert(a.event_id) {
            self.received += 1;
            self.latencies
                .push((a.at - *sent).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        } else {
            self.duplicates += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use merit_actors::{Notifier, UserNotification};
    use uuid::Uuid;

    use super::*;

    fn note(user: Address, event_id: Uuid) -> UserNotification {
        UserNotification {
            user: user.to_string(),
            seq: 1,
            event_id,
            kind: VOTE_RECORDED.to_string(),
            payload: serde_json::json!({}),
            at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn notifications_that_never_arrive_are_counted_missing() {
        let hub_ = merit_api::NotificationHub::new("n", 8);
        let voters = [super::super::voter(0), super::super::voter(1)];
        let listening = hub(&hub_, &voters);
        let (heard, lost, unrelated) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        hub_.notify(&[
            note(voters[0], heard),
            note(voters[0], heard),
            note(voters[1], unrelated),
        ]);
        let published = HashMap::from([
            (heard.to_string(), Utc::now()),
            (lost.to_string(), Utc::now()),
        ]);
        let deadline = Instant::now() + Duration::from_millis(200);
        let h = listening.finish(&published, |_| 1, deadline).await;
        assert_eq!(
            (h.listeners, h.expected, h.received, h.duplicates, h.short),
            (2, 2, 1, 1, 1),
            "{h:?}"
        );
        assert!(h.ended.is_empty(), "{h:?}");
    }
}
