//! Harness: a client of one node, assertions on refused requests, and the node with two
//! users that the REST tests share.

use std::time::Duration;

use merit_messages::Address;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::{self, ServedNode};

/// A client of one node.
pub(crate) struct Api {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    jwt_secret: String,
}

impl Api {
    pub(crate) fn new(base: String, jwt_secret: &str) -> Self {
        Self {
            base,
            http: reqwest::Client::new(),
            jwt_secret: jwt_secret.to_string(),
        }
    }

    pub(crate) fn user(&self, wallet: &merit_messages::Address) -> String {
        merit_api::sign(self.jwt_secret.as_bytes(), &wallet.to_string(), 3600)
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        common::answer(req).await
    }

    pub(crate) async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// Polls `path` until `check` accepts the answer.
    pub(crate) async fn until(
        &self,
        secs: u64,
        path: &str,
        token: &str,
        check: impl Fn(StatusCode, &Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let (status, body) = self.get(path, Some(token)).await;
            if check(status, &body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out on GET {path}: last answer {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Asserts an error answer: the status and a JSON body whose message mentions `needle`.
pub(crate) fn assert_error(answer: &(StatusCode, Value), status: StatusCode, needle: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    let message = answer.1["error"]["message"].as_str().unwrap_or_default();
    assert!(
        answer.1["error"]["code"].is_string(),
        "error code in {}",
        answer.1
    );
    assert!(
        message.contains(needle),
        "error message {message:?} should mention {needle:?}"
    );
}

/// Asserts each `(path, token, status, needle)`: a GET refused as [`assert_error`] checks.
pub(crate) async fn assert_gets_refused(
    api: &Api,
    cases: &[(&str, Option<&str>, StatusCode, &str)],
) {
    for &(path, token, status, needle) in cases {
        assert_error(&api.get(path, token).await, status, needle);
    }
}

/// Asserts that `POST path` with `body` is refused as [`assert_error`] checks.
pub(crate) async fn assert_post_refused(
    api: &Api,
    (path, token): (&str, &str),
    body: Value,
    status: StatusCode,
    needle: &str,
) {
    assert_error(&api.post(path, Some(token), body).await, status, needle);
}

/// One node of the REST tests (ready), its client, and two users with their tokens.
pub(crate) struct Rest {
    pub(crate) node: ServedNode,
    pub(crate) api: Api,
    pub(crate) alice: Address,
    pub(crate) bob: Address,
    pub(crate) a: String,
    pub(crate) b: String,
}

impl Rest {
    pub(crate) async fn start(log: &str) -> Self {
        let node = ServedNode::start("api-node", log, &[]).await;
        let api = Api::new(node.base.clone(), &node.jwt);
        api.until(30, "/ready", &node.admin, |s, _| s == StatusCode::OK)
            .await;
        let (alice, bob) = (common::wallet(1), common::wallet(2));
        let (a, b) = (api.user(&alice), api.user(&bob));
        Self {
            node,
            api,
            alice,
            bob,
            a,
            b,
        }
    }

    pub(crate) fn adm(&self) -> &str {
        &self.node.admin
    }

    /// Alice's user path.
    pub(crate) fn me(&self) -> String {
        format!("/api/v1/users/{}", self.alice)
    }
}
