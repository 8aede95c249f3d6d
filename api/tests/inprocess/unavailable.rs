//! A dependency that fails is a 503 naming it, never with its error text (which can hold
//! hostnames, URLs with passwords, SQL): that goes to the node's log.

use std::{future::Future, pin::Pin, sync::Arc};

use merit_mailbox::{
    DeadLetter, DeadLetterDelivery, Error, InProcessTransport, Outgoing, Result, Transport,
};
use tokio::sync::mpsc;

use crate::common::*;

/// What the failing broker's error says: its URL with the password.
const BROKER_PASSWORD: &str = "hunter2-broker-password";

/// A future as `#[async_trait]` spells it (this crate does not depend on the macro).
type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The in-process transport with the broker down for publishing: each publish fails with
/// an error whose text holds the broker's URL and password.
struct DownBroker(InProcessTransport);

impl Transport for DownBroker {
    fn declare<'s, 'f>(&'s self) -> Boxed<'f, Result<()>>
    where
        's: 'f,
        Self: 'f,
    {
        self.0.declare()
    }

    fn publish<'s, 'f>(&'s self, _: Vec<Outgoing>) -> Boxed<'f, Result<()>>
    where
        's: 'f,
        Self: 'f,
    {
        Box::pin(async {
            Err(Error::NoBroker {
                failures: format!(
                    "amqp://merit:{BROKER_PASSWORD}@rabbit.internal:5672/%2f: connection refused"
                ),
            })
        })
    }

    fn consume<'s, 'f>(
        &'s self,
        shard: ShardId,
        prefetch: u16,
    ) -> Boxed<'f, Result<mpsc::Receiver<Delivery>>>
    where
        's: 'f,
        Self: 'f,
    {
        self.0.consume(shard, prefetch)
    }

    fn queue_depths<'s, 'f>(&'s self) -> Boxed<'f, Result<Vec<(String, u64)>>>
    where
        's: 'f,
        Self: 'f,
    {
        self.0.queue_depths()
    }

    fn dead_letters<'s, 'f>(&'s self, limit: usize) -> Boxed<'f, Result<Vec<DeadLetter>>>
    where
        's: 'f,
        Self: 'f,
    {
        self.0.dead_letters(limit)
    }

    fn consume_dead_letters<'s, 'f>(
        &'s self,
        prefetch: u16,
    ) -> Boxed<'f, Result<mpsc::Receiver<DeadLetterDelivery>>>
    where
        's: 'f,
        Self: 'f,
    {
        self.0.consume_dead_letters(prefetch)
    }

    fn is_connected<'s, 'f>(&'s self) -> Boxed<'f, bool>
    where
        's: 'f,
        Self: 'f,
    {
        Box::pin(async { false })
    }
}

#[actix_web::test]
async fn a_broker_that_fails_a_publish_is_503_naming_the_broker_not_its_error() {
    let h = Harness::start("down-broker-node").await;
    let (mut state, quiet) = h.unconsumed();
    state.transport = Arc::new(DownBroker(quiet));
    let app = app!(&state);
    let alice = h.user(&wallet(1));
    let answer = send(
        &app,
        post("/api/v1/proposals", Some(&alice), &proposal("down-1")).to_request(),
    )
    .await;
    answer.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the broker did not answer",
    );
    for leak in [BROKER_PASSWORD, "rabbit.internal", "amqp://"] {
        assert!(!answer.text.contains(leak), "{leak:?} in {}", answer.text);
    }
    h.stop().await;
}
