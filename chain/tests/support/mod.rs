//! The chain tests' harness: one anvil per test on a free port (killed on drop), a SQLite
//! store in a temp file, the well-known anvil dev accounts, and a few raw RPC helpers.

#![allow(dead_code, unreachable_pub)]

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ethers::{
    providers::{Http, Middleware, Provider},
    types::{TransactionRequest, H160, U256},
};
use merit_chain::{Chain, EthersChain, EthersOptions, TxStatus};
use merit_config::Secret;
use merit_messages::{Address, TokenId, TxHash};
use merit_storage::{
    entities::outbox,
    sea_orm::{EntityTrait, QueryOrder},
    Store, StoreOptions,
};

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

pub fn account(i: usize) -> Address {
    ACCOUNTS[i].0.parse().expect("valid address")
}

pub fn key(i: usize) -> Secret {
    Secret::new(ACCOUNTS[i].1)
}

/// Fast retries: tests should fail in seconds, not minutes.
pub fn options() -> EthersOptions {
    EthersOptions {
        rpc_timeout: Duration::from_secs(5),
        attempts: 3,
        backoff: Duration::from_millis(50),
        deploy_timeout: Duration::from_secs(20),
    }
}

fn anvil_binary() -> PathBuf {
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
    pub port: u16,
}

impl Anvil {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind a free port")
            .local_addr()
            .expect("local addr")
            .port();
        Self::start_on(port)
    }

    pub fn start_on(port: u16) -> Self {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut child = Command::new(anvil_binary())
                .args([
                    "--port",
                    &port.to_string(),
                    "--host",
                    "127.0.0.1",
                    "--quiet",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn anvil");
            // Ready when it accepts connections; if it exited (port still held), try again.
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self {
                        child: Some(child),
                        port,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                Instant::now() < deadline,
                "anvil did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn provider(&self) -> Provider<Http> {
        Provider::<Http>::try_from(self.url())
            .expect("valid url")
            .interval(Duration::from_millis(50))
    }

    /// Kills the node (the port is then free for a restart).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn mine(&self, blocks: u64) {
        let _: serde_json::Value = self
            .provider()
            .request("anvil_mine", [U256::from(blocks)])
            .await
            .expect("anvil_mine");
    }

    pub async fn snapshot(&self) -> U256 {
        self.provider()
            .request("evm_snapshot", ())
            .await
            .expect("evm_snapshot")
    }

    pub async fn revert(&self, id: U256) {
        let ok: bool = self
            .provider()
            .request("evm_revert", [id])
            .await
            .expect("evm_revert");
        assert!(ok, "evm_revert({id}) refused");
    }

    /// `transferFrom(from, to, token)` sent as `from` (anvil signs for its dev accounts).
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
        let data = [selector, &args].concat();
        let tx = TransactionRequest::new()
            .from(H160(from.0))
            .to(H160(contract.0))
            .data(data);
        let provider = self.provider();
        let pending = provider
            .send_transaction(tx, None)
            .await
            .expect("transferFrom accepted");
        let receipt = pending.await.expect("mined").expect("receipt");
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
        let provider = self.provider();
        let pending = provider
            .send_transaction(tx, None)
            .await
            .expect("transaction accepted");
        let receipt = pending.await.expect("mined").expect("receipt");
        TxHash(receipt.transaction_hash.0)
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A migrated SQLite store in a temp dir (kept alive by the returned guard).
pub async fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("merit.db").display()
    );
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .expect("connect sqlite");
    store.migrate().await.expect("migrate");
    (store, dir)
}

/// Deploys a fresh contract signed by account 0.
pub async fn deploy(anvil: &Anvil) -> EthersChain {
    EthersChain::deploy(&anvil.url(), &key(0), options())
        .await
        .expect("deploy")
}

/// Waits until `tx` is mined in the canonical chain; asserts it succeeded.
pub async fn mined(chain: &dyn Chain, tx: &TxHash) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let TxStatus::Mined { receipt, .. } = chain.confirmations(tx).await.expect("status") {
            assert!(receipt.success, "{tx} reverted");
            return;
        }
        assert!(Instant::now() < deadline, "{tx} not mined");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every outbox row, in commit order.
pub async fn outbox(store: &Store) -> Vec<outbox::Model> {
    outbox::Entity::find()
        .order_by_asc(outbox::Column::Id)
        .all(store.db())
        .await
        .expect("read outbox")
}

pub fn token(n: u64) -> TokenId {
    TokenId::from(u128::from(n))
}
