//! An anvil of one test's own on a free port (killed on drop), the achievement contract
//! deployed on it, and raw JSON-RPC calls for what merit's adapter does not expose
//! (mining, impersonation, nonces).
//!
//! An anvil started with a state file can be stopped and restarted on the same port with
//! its chain intact (blocks, receipts, nonces, the contract): a graceful stop dumps the
//! state, the restart loads it — an RPC node going away and coming back.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use merit_chain::{Chain, EthersChain, EthersOptions};
use merit_config::Secret;
use merit_messages::Address;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// anvil's first dev key: the deployer (admin) and merit's default minter key.
pub const DEPLOYER_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// anvil's third dev key: a bystander used only to read the chain.
pub const READER_KEY: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9e8eb35f6b6cf";

fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("MERIT_ANVIL") {
        return path.into();
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    assert!(
        path.exists(),
        "anvil not found at {}: run `npm ci` in contracts/ (or set MERIT_ANVIL)",
        path.display()
    );
    path
}

/// A running anvil, killed when dropped.
pub struct Anvil {
    child: Option<Child>,
    pub port: u16,
    /// Arguments other than the port.
    args: Vec<String>,
}

impl Anvil {
    /// `block_time`: `Some(s)` mines a block every `s` seconds (so confirmations accrue by
    /// themselves); `None` mines only a block per transaction (automine) and whatever the
    /// test mines with [`Anvil::mine`].
    pub fn start(block_time: Option<u64>) -> Self {
        Self::launch(block_time, None)
    }

    /// Like [`Anvil::start`], keeping the chain in `state` across [`Anvil::stop`] and
    /// [`Anvil::restart`].
    pub fn start_persistent(block_time: Option<u64>, state: &Path) -> Self {
        Self::launch(block_time, Some(state))
    }

    fn launch(block_time: Option<u64>, state: Option<&Path>) -> Self {
        let mut args = vec!["--host".to_string(), "127.0.0.1".into(), "--quiet".into()];
        if let Some(secs) = block_time {
            args.extend(["--block-time".to_string(), secs.to_string()]);
        }
        if let Some(state) = state {
            args.extend(["--state".to_string(), state.display().to_string()]);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let port = TcpListener::bind("127.0.0.1:0")
                .expect("bind a free port")
                .local_addr()
                .expect("local addr")
                .port();
            if let Some(child) = spawn_on(port, &args, deadline) {
                return Self {
                    child: Some(child),
                    port,
                    args,
                };
            }
            // The port was taken meanwhile: another one.
            assert!(Instant::now() < deadline, "anvil did not start");
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGTERM and wait: anvil dumps its state file (if it has one) and exits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same arguments (and so the same state).
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(child) = spawn_on(self.port, &self.args, deadline) {
                self.child = Some(child);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "anvil did not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// One JSON-RPC call; returns `result`.
    pub async fn rpc(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        rpc(self.port, method, params).await
    }

    /// Mines a block every `every` until the returned guard is dropped (on an automining
    /// anvil, where otherwise only transactions make blocks).
    pub fn keep_mining(&self, every: Duration) -> AbortOnDrop {
        let port = self.port;
        AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                rpc(port, "anvil_mine", serde_json::json!(["0x1"])).await;
            }
        }))
    }

    /// Mines `blocks` blocks now.
    pub async fn mine(&self, blocks: u64) {
        self.rpc("anvil_mine", serde_json::json!([format!("0x{blocks:x}")]))
            .await;
    }

    /// Transactions ever sent by `account` (its nonce at the latest block).
    pub async fn nonce(&self, account: Address) -> u64 {
        let hex = self
            .rpc(
                "eth_getTransactionCount",
                serde_json::json!([account.to_string(), "latest"]),
            )
            .await;
        let hex = hex.as_str().expect("hex quantity");
        u64::from_str_radix(hex.trim_start_matches("0x"), 16).expect("a quantity")
    }

    /// Deploys the achievement contract with [`DEPLOYER_KEY`] (merit's default minter key
    /// in the test settings); returns the deployer's (admin and minter) view of it and a
    /// bystander's read-only view, connected separately.
    pub async fn deploy(&self) -> (EthersChain, EthersChain) {
        let admin = EthersChain::deploy(
            &self.url(),
            &Secret::new(DEPLOYER_KEY),
            EthersOptions::default(),
        )
        .await
        .expect("deploy the achievement contract");
        let reader = EthersChain::connect(
            &self.url(),
            admin.contract(),
            &Secret::new(READER_KEY),
            EthersOptions::default(),
        )
        .await
        .expect("connect a reader");
        (admin, reader)
    }
}

/// Starts anvil on `port`; `None` if it exited (the port is taken) before `deadline`.
fn spawn_on(port: u16, args: &[String], deadline: Instant) -> Option<Child> {
    let mut child = Command::new(binary())
        .args(["--port", &port.to_string()])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn anvil");
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

impl Drop for Anvil {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One JSON-RPC call to the anvil on `port` over a plain HTTP/1.1 connection; returns
/// `result`.
pub async fn rpc(port: u16, method: &str, params: serde_json::Value) -> serde_json::Value {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        .to_string();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to anvil");
    let request = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        port,
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send rpc");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read rpc answer");
    let text = String::from_utf8(raw).expect("utf-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON-RPC answer");
    assert!(answer.get("error").is_none(), "{method} failed: {answer}");
    answer["result"].clone()
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n").expect("chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// Aborts the task when dropped.
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
