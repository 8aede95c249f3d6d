//! The broker addresses a client may connect to: one URL, or several nodes of one RabbitMQ
//! cluster (`MERIT_AMQP_URL=amqp://u:p@mq1/v,amqp://u:p@mq2/v`). Each connect tries them in
//! turn, starting after the one the previous connection used: a connection is most often
//! lost because its node went down, so the next attempt goes to another node first.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use lapin::{Connection, ConnectionProperties};

use crate::error::{Error, Result};

/// A rotating list of broker addresses.
pub struct BrokerAddresses {
    urls: Vec<String>,
    /// The index the next connect starts at.
    next: AtomicUsize,
}

impl BrokerAddresses {
    /// Parses a comma-separated list (see [`merit_messages::split_url_list`]).
    pub fn parse(list: &str) -> Result<Self> {
        let urls: Vec<String> = merit_messages::split_url_list(list)
            .into_iter()
            .map(str::to_owned)
            .collect();
        if let Some(bad) = urls.iter().find(|u| !u.contains("://")) {
            return Err(Error::invalid(
                "broker address",
                &redact(bad),
                "an amqp:// or amqps:// URL",
            ));
        }
        Ok(Self {
            urls,
            next: AtomicUsize::new(0),
        })
    }

    /// How many addresses there are.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// Always false: a list has at least one address.
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// Every address with its credentials removed, comma-separated.
    pub fn redacted(&self) -> String {
        self.urls
            .iter()
            .map(|u| redact(u))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Connects to the first address that answers, trying each once, starting after the
    /// one the previous successful connect used. Each attempt is bounded by `timeout`.
    /// Returns the connection and the address it went to (redacted).
    pub async fn connect(
        &self,
        props: &ConnectionProperties,
        timeout: Duration,
    ) -> Result<(Connection, String)> {
        let start = self.next.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for step in 0..self.urls.len() {
            let index = (start + step) % self.urls.len();
            let url = &self.urls[index];
            match tokio::time::timeout(timeout, Connection::connect(url, props.clone())).await {
                Ok(Ok(connection)) => {
                    self.next.store(index + 1, Ordering::Relaxed);
                    return Ok((connection, redact(url)));
                }
                Ok(Err(source)) => {
                    let failed = Error::Connect {
                        url: redact(url),
                        source,
                    };
                    // Credentials, permissions and vhosts are the cluster's, not the node's:
                    // no other address would answer differently.
                    if let Some(refused) = failed.refusal() {
                        return Err(refused);
                    }
                    if self.urls.len() == 1 {
                        return Err(failed);
                    }
                    failures.push(failed.to_string());
                }
                Err(_) if self.urls.len() == 1 => {
                    return Err(Error::Unavailable {
                        operation: format!("connect to {}", redact(url)),
                        waited: timeout,
                    })
                }
                Err(_) => failures.push(format!("{}: no answer in {timeout:?}", redact(url))),
            }
        }
        Err(Error::NoBroker {
            failures: failures.join("; "),
        })
    }
}

/// The URL without its credentials, for errors and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<not a URL>".to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact("amqp://guest:s3cret@10.0.0.1:5672/%2f"),
            "amqp://***@10.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://host/vh"), "amqp://host/vh");
        assert_eq!(redact("guest:s3cret@host"), "<not a URL>");
    }

    #[test]
    fn a_list_is_redacted_address_by_address() {
        let list = BrokerAddresses::parse("amqp://u:s3cret@a:1/v,amqp://u:s3cret@b:2/v")
            .expect("a list of two");
        assert_eq!(list.len(), 2);
        assert_eq!(list.redacted(), "amqp://***@a:1/v,amqp://***@b:2/v");
    }

    #[tokio::test]
    async fn connect_goes_past_an_address_that_refuses_and_names_every_failure() {
        // Two ports nothing listens on: both are tried, and the error names both.
        let (a, b) = (listener(), listener());
        let closed = [port(&a), port(&b)];
        drop((a, b));
        let list = BrokerAddresses::parse(&format!(
            "amqp://u:s3cret@127.0.0.1:{}/v,amqp://u:s3cret@127.0.0.1:{}/v",
            closed[0], closed[1]
        ))
        .expect("a list of two");
        let props = ConnectionProperties::default();
        let err = list
            .connect(&props, Duration::from_secs(5))
            .await
            .expect_err("nothing listens")
            .to_string();
        for port in closed {
            assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
        }
        assert!(!err.contains("s3cret"), "{err}");
    }

    fn listener() -> std::net::TcpListener {
        std::net::TcpListener::bind("127.0.0.1:0").expect("a free port")
    }

    fn port(l: &std::net::TcpListener) -> u16 {
        l.local_addr().expect("its address").port()
    }
}
