//! `/ws`: a user's notifications as they happen.
//!
//! After authentication (a user token as `Authorization: Bearer` or, for browsers, the
//! `token` query parameter) the server sends `{"type":"hello","user","last_seq"}`, then
//! one `{"type":"notification","seq","event_id","kind","payload","at"}` per entry of the
//! user's log, in `seq` order, each exactly once per connection. A client that reconnects
//! with `?after=<last seq it saw>` first receives everything after it from the log, then
//! live ones: nothing is lost across a reconnect. Without `after` it starts from now.
//!
//! The session sends a ping every heartbeat and drops a client silent for three; a client
//! whose buffer fills (it does not read) is dropped with close code 1008 — the node never
//! waits for a slow client. Every send has a deadline (`ws_send_timeout`): a client that
//! stops reading parks a send once the socket and the session's channel are full, and a
//! send past its deadline ends the session (close 1008 when the frame can still go out),
//! so the heartbeat and the slow-client drop keep working and the session's task and
//! subscription are freed. A user holds at most `ws_max_sessions_per_user` sessions on a
//! node; one more is refused with 429 before the upgrade.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use actix_web::{get, web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message, Session};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    auth::Caller,
    error::{ApiError, Result},
    routes::users::{last_seq, read_log, NotificationDto},
    state::ApiState,
};

/// Log entries read per catch-up query.
const CATCH_UP_BATCH: u64 = 500;
/// Largest frame accepted from a client (clients only send control frames).
const MAX_FRAME: usize = 4 * 1024;

/// Where to resume.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WsQuery {
    /// Resume after this `seq` of the user's log (default: from now).
    pub after: Option<u64>,
    /// The user token, for clients that cannot send an Authorization header (read by
    /// the authentication, declared here for the OpenAPI document).
    #[allow(dead_code)]
    pub token: Option<String>,
}

/// Upgrades to a WebSocket carrying the caller's notifications.
#[utoipa::path(get, path = "/ws", tag = "notifications",
    params(WsQuery),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "Switching protocols: the server then sends text frames, each a JSON WsFrame (components/schemas/WsFrame): a hello, then the user's notifications in seq order"),
        (status = 400, description = "Not a WebSocket request", body = crate::error::ErrorBody),
        (status = 401, description = "No or an invalid credential", body = crate::error::ErrorBody),
        (status = 403, description = "Not a user token", body = crate::error::ErrorBody),
        (status = 429, description = "The user already has the most sessions allowed on this node", body = crate::error::ErrorBody),
        (status = 503, description = "The database is unavailable", body = crate::error::ErrorBody),
    ))]
#[get("/ws")]
pub(crate) async fn ws(
    state: web::Data<ApiState>,
    req: HttpRequest,
    body: web::Payload,
    query: web::Query<WsQuery>,
) -> Result<HttpResponse> {
    let user = Caller::from_request_with(&req, true)?.user()?;
    let user = user.to_string();
    let max = state.options.ws_max_sessions_per_user;
    let subscription = state.hub.try_subscribe(&user, max).ok_or_else(|| {
        metrics::counter!("merit_ws_refused_total", "reason" => "session_cap").increment(1);
        ApiError::rate_limited(format!(
            "user {user} already has {max} WebSocket sessions on this node (the most allowed); \
             close one first"
        ))
    })?;
    let (response, session, stream) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::bad_request(format!("not a WebSocket upgrade: {e}")))?;
    let start = match query.after {
        Some(after) => crate::routes::int64("after", after)?,
        None => last_seq(&state, &user).await?,
    };
    let state = state.into_inner();
    actix_web::rt::spawn(async move {
        let stream = stream.max_frame_size(MAX_FRAME);
        let result = run(&state, &user, start, session, stream, subscription).await;
        if let Err(why) = result {
            tracing::debug!(user = %user, why, "WebSocket session ended");
        }
    });
    Ok(response)
}

/// A frame the server sends on `/ws`: JSON text, tagged by `type`. First a `hello`, then
/// one `notification` per entry of the user's log, in `seq` order without gaps.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum WsFrame {
    /// The session is open.
    Hello {
        /// The token's wallet (lowercase 0x address).
        user: String,
        /// The `after` the session started from; notifications with a higher `seq` follow.
        last_seq: u64,
    },
    /// One entry of the user's notification log.
    Notification {
        /// Position in the user's log, from 1, without gaps.
        seq: u64,
        /// The event reported.
        event_id: String,
        /// The event type: `achievement.unlocked`, `achievement.minted`,
        /// `achievement.failed`, `governance.vote.recorded`, `governance.proposal.closed`,
        /// `governance.proposal.result`, `user.benefits.changed`.
        kind: String,
        /// The event's payload, as its JSON Schema documents it.
        #[schema(value_type = Object)]
        payload: serde_json::Value,
        /// When the event occurred.
        at: chrono::DateTime<chrono::Utc>,
    },
}

impl WsFrame {
    fn text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why a session ended.
type End = Result<(), &'static str>;

/// A send that did not complete within the deadline: the client does not read.
const SEND_TIMED_OUT: &str = "dropped: a send timed out (the client does not read)";

/// `send` within `limit`: a closed session is "client gone", a late one [`SEND_TIMED_OUT`].
async fn timed<F>(limit: Duration, send: F) -> End
where
    F: Future<Output = Result<(), actix_ws::Closed>>,
{
    match tokio::time::timeout(limit, send).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err("client gone"),
        Err(_) => Err(SEND_TIMED_OUT),
    }
}

struct Sender {
    session: Session,
    last_sent: u64,
    timeout: Duration,
}

impl Sender {
    async fn send(&mut self, n: NotificationDto) -> End {
        if n.seq <= self.last_sent {
            return Ok(());
        }
        let frame = WsFrame::Notification {
            seq: n.seq,
            event_id: n.event_id,
            kind: n.kind,
            payload: n.payload,
            at: n.at,
        };
        timed(self.timeout, self.session.text(frame.text())).await?;
        self.last_sent = n.seq;
        metrics::counter!("merit_ws_notifications_sent_total").increment(1);
        Ok(())
    }

    /// Sends everything in the log after what was sent.
    async fn catch_up(&mut self, state: &ApiState, user: &str) -> End {
        loop {
            let rows = read_log(state, user, self.last_sent, CATCH_UP_BATCH)
                .await
                .map_err(|_| "log unreadable")?;
            let full = rows.len() as u64 == CATCH_UP_BATCH;
            for row in rows {
                self.send(row.into()).await?;
            }
            if !full {
                return Ok(());
            }
        }
    }
}

async fn run(
    state: &ApiState,
    user: &str,
    start: u64,
    session: Session,
    mut stream: actix_ws::MessageStream,
    mut subscription: crate::notify::Subscription,
) -> End {
    let timeout = state.options.ws_send_timeout;
    let mut out = Sender {
        session,
        last_sent: start,
        timeout,
    };
    let hello = WsFrame::Hello {
        user: user.to_string(),
        last_seq: start,
    };
    timed(timeout, out.session.text(hello.text())).await?;
    let heartbeat = state.options.ws_heartbeat;
    let mut ping = tokio::time::interval(heartbeat);
    let mut catch_up = tokio::time::interval(state.options.ws_catch_up);
    let mut last_heard = Instant::now();
    // The first tick of `catch_up` fires at once: the backlog after `start`.
    let result: End = loop {
        tokio::select! {
            live = subscription.rx.recv() => match live {
                Some(n) if n.seq == out.last_sent + 1 => {
                    let dto = NotificationDto {
                        seq: n.seq,
                        event_id: n.event_id.to_string(),
                        kind: n.kind.clone(),
                        payload: n.payload.clone(),
                        at: n.at,
                    };
                    if let Err(e) = out.send(dto).await { break Err(e) }
                }
                Some(n) if n.seq <= out.last_sent => {}
                // A gap: something arrived out of order or was missed; the log has it.
                Some(_) => if let Err(e) = out.catch_up(state, user).await { break Err(e) },
                None => break Err("dropped: too slow"),
            },
            _ = subscription.resync.changed() => {
                if let Err(e) = out.catch_up(state, user).await { break Err(e) }
            }
            _ = catch_up.tick() => {
                if let Err(e) = out.catch_up(state, user).await { break Err(e) }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > heartbeat * 3 {
                    break Err("client silent");
                }
                if let Err(e) = timed(timeout, out.session.ping(b"")).await { break Err(e) }
            }
            msg = stream.next() => match msg {
                Some(Ok(Message::Ping(bytes))) => {
                    last_heard = Instant::now();
                    if let Err(e) = timed(timeout, out.session.pong(&bytes)).await { break Err(e) }
                }
                Some(Ok(Message::Close(_))) | None => break Ok(()),
                Some(Ok(_)) => last_heard = Instant::now(),
                Some(Err(_)) => break Err("protocol error"),
            },
        }
    };
    let reason = match result {
        Err(why @ ("dropped: too slow" | SEND_TIMED_OUT)) => {
            let label = if why == SEND_TIMED_OUT {
                "send_timeout"
            } else {
                "buffer_full"
            };
            metrics::counter!("merit_ws_dropped_total", "reason" => label).increment(1);
            Some(CloseReason {
                code: CloseCode::Policy,
                description: Some(
                    "too slow: the client does not read; reconnect with ?after=<last seq>"
                        .to_string(),
                ),
            })
        }
        _ => None,
    };
    // A client that does not read may never take the close frame either: bounded too.
    let _ = tokio::time::timeout(CLOSE_WAIT.min(timeout), out.session.close(reason)).await;
    result
}

/// Longest wait for a close frame to be queued.
const CLOSE_WAIT: Duration = Duration::from_millis(500);
