//! An anvil (a local Ethereum node) of one test's own on a free port, killed on drop; the
//! well-known dev accounts it unlocks; the achievement contract deployed on it; and raw
//! JSON-RPC calls for what merit's adapter does not expose (mining, snapshots, nonces,
//! transactions sent as a dev account).
//!
//! An anvil started with a state file can be stopped and restarted on the same port with
//! its chain intact (blocks, receipts, nonces, the contract): a graceful stop dumps the
//! state, the restart loads it — an RPC node going away and coming back. One started with
//! [`Anvil::start_on`] after a [`Anvil::kill`] comes back with a fresh chain instead.
//!
//! The binary is the one `npm ci` installs in `contracts/node_modules`, or `MERIT_ANVIL`.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ethers::{
    providers::{Http, Middleware, Provider},
    types::{TransactionRequest, H160, U256},
};
use merit_chain::{Chain, EthersChain, EthersOptions};
use merit_config::Secret;
use merit_messages::{Address, TxHash};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// anvil's default chain id.
pub const CHAIN_ID: u64 = 31337;

/// anvil's dev accounts 0..2 (mnemonic "test test ... junk"): (address, private key).
pub const ACCOUNTS: [(&str, &str); 3] = [
    (
        "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
        "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    ),
    (
        "0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    ),
    (
        "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc",
        "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9e8eb35f6b6cf",
    ),
];

/// anvil's first dev key: the deployer (admin) and merit's default minter key.
pub const DEPLOYER_KEY: &str = ACCOUNTS[0].1;
/// anvil's third dev key: a bystander used only to read the chain.
pub const READER_KEY: &str = ACCOUNTS[2].1;

/// The address of dev account `i`.
pub fn account(i: usize) -> Address {
    ACCOUNTS[i].0.parse().expect("valid address")
}

/// The private key of dev account `i`.
pub fn key(i: usize) -> Secret {
    Secret::new(ACCOUNTS[i].1)
}

/// Fast retries: tests should fail in seconds, not minutes.
pub fn fast_options() -> EthersOptions {
    EthersOptions {
        rpc_timeout: Duration::from_secs(5),
        attempts: 3,
        backoff: Duration::from_millis(50),
        deploy_timeout: Duration::from_secs(20),
    }
}

/// How long a start or restart may take, retries included.
const START_TIMEOUT: Duration = Duration::from_secs(20);

fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("MERIT_ANVIL") {
        return path.into();
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
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
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// Arguments other than the port.
    args: Vec<String>,
}

impl Anvil {
    /// `block_time`: `Some(s)` mines a block every `s` seconds (so confirmations accrue by
    /// themselves); `None` mines only a block per transaction (automine) and whatever the
    /// test mines with [`Anvil::mine`].
    pub fn start(block_time: Option<u64>) -> Self {
        Self::launch(None, args(block_time, None))
    }

    /// Like [`Anvil::start`], keeping the chain in `state` across [`Anvil::stop`] and
    /// [`Anvil::restart`].
    pub fn start_persistent(block_time: Option<u64>, state: &Path) -> Self {
        Self::launch(None, args(block_time, Some(state)))
    }

    /// An automining anvil with a fresh chain on `port` (waiting for the port to be free),
    /// e.g. the port of one that was killed.
    pub fn start_on(port: u16) -> Self {
        Self::launch(Some(port), args(None, None))
    }

    fn launch(port: Option<u16>, args: Vec<String>) -> Self {
        let (child, port) = spawn_retrying(port, &args);
        Self {
            child: Some(child),
            port,
            args,
        }
    }

    /// Its JSON-RPC URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An ethers provider for it, polling every 50 ms.
    pub fn provider(&self) -> Provider<Http> {
        Provider::<Http>::try_from(self.url())
            .expect("valid url")
            .interval(Duration::from_millis(50))
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

    /// Kills the node (the port is then free for a restart).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same arguments (and so the same state).
    pub fn restart(&mut self) {
        self.stop();
        let (child, _) = spawn_retrying(Some(self.port), &self.args);
        self.child = Some(child);
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

    /// Snapshots the chain; [`Anvil::revert`] to the returned id drops every later block.
    pub async fn snapshot(&self) -> U256 {
        self.provider()
            .request("evm_snapshot", ())
            .await
            .expect("evm_snapshot")
    }

    /// Reverts the chain to `id` (a reorg, from a listener's point of view).
    pub async fn revert(&self, id: U256) {
        let ok: bool = self
            .provider()
            .request("evm_revert", [id])
            .await
            .expect("evm_revert");
        assert!(ok, "evm_revert({id}) refused");
    }

    /// `transferFrom(from, to, token)` sent as `from` (anvil signs for its dev accounts);
    /// asserts it succeeded.
    pub async fn transfer_from(
        &self,
        contract: Address,
        from: Address,
        to: Address,
        token: u64,
    ) -> TxHash {
        let selector = &ethers::utils::id("transferFrom(address,address,uint256)")[..4];
        let args = ethers::abi::encode(&[
            ethers::abi::Token::Address(H160(from.0)),
            ethers::abi::Token::Address(H160(to.0)),
            ethers::abi::Token::Uint(U256::from(token)),
        ]);
        let tx = TransactionRequest::new()
            .from(H160(from.0))
            .to(H160(contract.0))
            .data([selector, &args].concat());
        let receipt = self.send(tx).await;
        assert_eq!(receipt.status, Some(1u64.into()), "transferFrom reverted");
        TxHash(receipt.transaction_hash.0)
    }

    /// Sends `data` to `to` as `from` (anvil signs for its dev accounts) with a fixed gas
    /// limit, so nothing is estimated and a reverting call is still mined; returns its
    /// hash once mined, whatever its status.
    pub async fn send_unchecked(&self, from: Address, to: Address, data: Vec<u8>) -> TxHash {
        let tx = TransactionRequest::new()
            .from(H160(from.0))
            .to(H160(to.0))
            .gas(200_000u64)
            .data(data);
        TxHash(self.send(tx).await.transaction_hash.0)
    }

    async fn send(&self, tx: TransactionRequest) -> ethers::types::TransactionReceipt {
        let provider = self.provider();
        let pending = provider
            .send_transaction(tx, None)
            .await
            .expect("transaction accepted");
        pending.await.expect("mined").expect("receipt")
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

    /// Deploys a fresh achievement contract signed by dev account 0, with
    /// [`fast_options`]: the deployer's (admin and minter) view of it.
    pub async fn deploy_fast(&self) -> EthersChain {
        EthersChain::deploy(&self.url(), &key(0), fast_options())
            .await
            .expect("deploy")
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        self.kill();
    }
}

/// anvil's arguments other than the port.
fn args(block_time: Option<u64>, state: Option<&Path>) -> Vec<String> {
    let mut args = vec!["--host".to_string(), "127.0.0.1".into(), "--quiet".into()];
    if let Some(secs) = block_time {
        args.extend(["--block-time".to_string(), secs.to_string()]);
    }
    if let Some(state) = state {
        args.extend(["--state".to_string(), state.display().to_string()]);
    }
    args
}

/// Starts anvil with `args` on `port` (retrying until it is free) or, given none, on a
/// free port (another one whenever the last was taken meanwhile); panics after
/// [`START_TIMEOUT`].
fn spawn_retrying(port: Option<u16>, args: &[String]) -> (Child, u16) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let on = port.unwrap_or_else(crate::free_port);
        if let Some(child) = spawn_on(on, args, deadline) {
            return (child, on);
        }
        assert!(
            Instant::now() < deadline,
            "anvil did not start on port {on}"
        );
        if port.is_some() {
            std::thread::sleep(Duration::from_millis(200));
        }
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
