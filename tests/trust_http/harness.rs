//! Harness: a node of the test's own (`merit serve` on a fresh PostgreSQL database) and its
//! client.

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{self, answer, Backend, NodeProcess, TestDb};

/// A node of the test's own on a fresh PostgreSQL database.
pub(crate) struct Node {
    pub(crate) base: String,
    pub(crate) admin: String,
    jwt: String,
    pub(crate) db: Option<TestDb>,
    process: Option<NodeProcess>,
    pub(crate) http: reqwest::Client,
}

impl Node {
    pub(crate) async fn start(name: &str, extra: &[(&str, &str)]) -> Self {
        common::init_crypto();
        let db = TestDb::empty(Backend::Postgres).await;
        let (admin, jwt) = common::secrets();
        let log = common::fresh_log(&format!("trust-{name}.log"));
        let mut more = vec![("MERIT_JWT_SECRET", jwt.as_str())];
        more.extend_from_slice(extra);
        let envs = common::serve_env(&db.url, None, name, &admin, &more);
        let process = NodeProcess::spawn(&envs, &log);
        let base = process.http_url(60);
        common::wait_ready(&base, 60).await;
        Self {
            base,
            admin,
            jwt,
            db: Some(db),
            process: Some(process),
            http: reqwest::Client::new(),
        }
    }

    pub(crate) fn user(&self, wallet: &merit_messages::Address) -> String {
        merit_api::sign(self.jwt.as_bytes(), &wallet.to_string(), 3600)
    }

    pub(crate) async fn metric(&self, url: &str, name: &str) -> Option<f64> {
        let text = self.http.get(url).send().await.ok()?.text().await.ok()?;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// `GET path` with `token`: status and JSON body.
    pub(crate) async fn get_as(&self, path: &str, token: &str) -> (StatusCode, Value) {
        answer(
            self.http
                .get(format!("{}{path}", self.base))
                .bearer_auth(token),
        )
        .await
    }

    pub(crate) async fn stop(mut self) {
        if let Some(p) = self.process.take() {
            p.stop();
        }
        if let Some(db) = self.db.take() {
            db.cleanup().await;
        }
    }
}
