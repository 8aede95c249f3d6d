//! Test nodes as child processes (`merit serve`), for the service-tier HTTP tests.

use uuid::Uuid;

use super::{eventually, strip_ansi, Backend, TestDb, Vhost};

/// What a `merit serve` child process runs on: a fresh, empty PostgreSQL database (the
/// node migrates it) and a fresh vhost, with the process-wide crypto provider installed.
pub async fn served_pg_and_vhost() -> (TestDb, Vhost) {
    init_crypto();
    (TestDb::empty(Backend::Postgres).await, Vhost::create())
}

/// A fresh admin token and JWT secret for one test node: `(admin, jwt_secret)`.
pub fn secrets() -> (String, String) {
    let id = Uuid::new_v4().simple().to_string();
    (
        format!("admin-{id}"),
        format!("jwt-secret-{id}-0123456789abcdef"),
    )
}

/// Waits until the node at `base` answers `/ready` with 200.
pub async fn wait_ready(base: &str, secs: u64) {
    let http = reqwest::Client::new();
    eventually(secs, "the node is ready", || {
        let (http, base) = (http.clone(), base.to_string());
        async move {
            http.get(format!("{base}/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
}

/// Installs the process-wide rustls provider (sqlx and lapin each compile one in).
pub fn init_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// `merit serve` as a child process, so tests can SIGKILL it.
pub struct NodeProcess {
    child: std::process::Child,
    pub log: std::path::PathBuf,
    /// Where this start's output begins in `log` (the log is appended across restarts).
    log_start: u64,
}

impl NodeProcess {
    /// Starts `merit serve` with `envs` (plus MERIT_ENV=test and the repo's config dir),
    /// appending its output to `log`.
    pub fn spawn(envs: &[(&str, &str)], log: &std::path::Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open node log");
        let log_start = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_merit"));
        cmd.arg("serve");
        for (k, _) in std::env::vars() {
            if k.starts_with("MERIT_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("MERIT_ENV", "test")
            .env(
                "MERIT_CONFIG_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
            )
            .env("MERIT_LOG_FILTER", "info")
            .envs(envs.iter().copied())
            .stdout(file.try_clone().expect("clone log handle"))
            .stderr(file);
        let child = cmd.spawn().expect("spawn merit serve");
        Self {
            child,
            log: log.to_path_buf(),
            log_start,
        }
    }

    /// The node's HTTP base URL (`http://127.0.0.1:PORT`), read from its "serving" log
    /// line once it is up (test nodes listen on port 0).
    pub fn http_url(&self, secs: u64) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let raw = std::fs::read(&self.log).unwrap_or_default();
            let text = strip_ansi(&String::from_utf8_lossy(
                raw.get(usize::try_from(self.log_start).unwrap_or(0)..)
                    .unwrap_or_default(),
            ));
            if let Some(line) = text.lines().find(|l| l.contains("serving;")) {
                if let Some(addr) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("http="))
                {
                    return format!("http://{addr}");
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node did not start serving within {secs}s; log: {}",
                self.log.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// SIGKILL: no shutdown, no flush — a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait for merit serve")
    }
}

/// A test that fails part-way must not leave its node running.
impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The folder for test artefacts (logs), under `target/`.
pub fn artefacts() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artefacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artefacts");
    dir
}

/// A node log of `name` under [`artefacts`], any earlier run's removed.
pub fn fresh_log(name: &str) -> std::path::PathBuf {
    let log = artefacts().join(name);
    let _ = std::fs::remove_file(&log);
    log
}

/// The variables of a test node: its database, its broker (`None`: the embedded one), its
/// id and admin token, then `extra` (a JWT secret, a shard count, ...).
pub fn serve_env<'a>(
    db_url: &'a str,
    amqp_url: Option<&'a str>,
    node_id: &'a str,
    admin: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![("MERIT_DATABASE_URL", db_url)];
    env.extend(amqp_url.map(|url| ("MERIT_AMQP_URL", url)));
    env.push(("MERIT_NODE_ID", node_id));
    env.push(("MERIT_ADMIN_TOKEN", admin));
    env.extend_from_slice(extra);
    env
}

/// `GET url` with `token` as the bearer: the body as JSON (the request must succeed).
pub async fn get_json(url: &str, token: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("a JSON body")
}

/// `merit serve` on a fresh PostgreSQL database and RabbitMQ vhost of its own, with fresh
/// secrets: what most service-tier HTTP tests start from.
pub struct ServedNode {
    pub process: NodeProcess,
    /// The node's HTTP base URL.
    pub base: String,
    pub admin: String,
    pub jwt: String,
    pub log: std::path::PathBuf,
    pub db: TestDb,
    pub vhost: Vhost,
}

impl ServedNode {
    /// Starts node `node_id` (its JWT secret set, then `extra`) logging to [`fresh_log`]
    /// `log`, and waits for its HTTP address (not for readiness).
    pub async fn start(node_id: &str, log: &str, extra: &[(&str, &str)]) -> Self {
        init_crypto();
        let db = TestDb::empty(Backend::Postgres).await;
        let vhost = Vhost::create();
        Self::spawn_on(db, vhost, node_id, fresh_log(log), extra)
    }

    /// As [`ServedNode::start`], on a database and vhost the caller made (and may have
    /// prepared, e.g. declared), appending to `log` as it is.
    pub fn spawn_on(
        db: TestDb,
        vhost: Vhost,
        node_id: &str,
        log: std::path::PathBuf,
        extra: &[(&str, &str)],
    ) -> Self {
        let (admin, jwt) = secrets();
        let mut more = vec![("MERIT_JWT_SECRET", jwt.as_str())];
        more.extend_from_slice(extra);
        let env = serve_env(&db.url, Some(&vhost.url), node_id, &admin, &more);
        let process = NodeProcess::spawn(&env, &log);
        let base = process.http_url(60);
        Self {
            process,
            base,
            admin,
            jwt,
            log,
            db,
            vhost,
        }
    }

    /// A user token for `wallet`, valid for an hour.
    pub fn user(&self, wallet: &merit_messages::Address) -> String {
        merit_api::sign(self.jwt.as_bytes(), &wallet.to_string(), 3600)
    }

    /// Stops the node (SIGTERM) and removes its vhost and database.
    pub async fn finish(self) {
        self.process.stop();
        self.vhost.delete();
        self.db.cleanup().await;
    }
}

/// Sends `request`: its status, and its body as JSON where it is JSON, else as a string.
pub async fn answer(request: reqwest::RequestBuilder) -> (reqwest::StatusCode, serde_json::Value) {
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, body)
}
