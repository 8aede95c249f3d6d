//! The chain side of a node: the chain adapter (ethers with `MERIT_CHAIN_RPC_URL`, else the
//! embedded dev chain), the Transfer-log listener, the periodic full sync, and the saga
//! executor running the AchievementUnlock saga with its starter.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use merit_actors::unlock::{start_pending_unlocks, unlock_saga, UnlockDeps};
use merit_chain::{
    full_sync, Chain, DevChain, EthersChain, EthersOptions, Listener, ListenerConfig, Minter,
};
use merit_config::{MinterSource, Settings};
use merit_messages::Address;
use merit_sagas::{ExecutorOptions, SagaExecutor, SagaRegistry};
use merit_storage::Store;
use tokio::{sync::watch, task::JoinHandle};

/// How often unlocked achievements without a saga are looked for (the saga start itself
/// is idempotent, so every node runs this).
const STARTER_INTERVAL: Duration = Duration::from_millis(500);
/// How often the full sync compares every known token's owner with the chain.
const FULL_SYNC_INTERVAL: Duration = Duration::from_secs(600);

/// The running chain side.
pub(crate) struct ChainRuntime {
    executor: SagaExecutor,
    chain: Arc<dyn Chain>,
    confirmations: u64,
    listener: merit_chain::StatusHandle,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// An embedded dev chain of this node's own (its own contract, hence its own listener
/// checkpoint: several nodes or successive runs sharing a database never share it).
pub(crate) fn dev_chain(settings: &Settings) -> DevChain {
    let instance = format!(":{}:{}", settings.node_id, uuid::Uuid::new_v4().simple());
    DevChain::instance(settings.chain.chain_id, &instance)
}

/// The chain the settings select.
pub(crate) async fn connect_chain(settings: &Settings) -> Result<Arc<dyn Chain>> {
    let Some(rpc) = &settings.chain_rpc_url else {
        let dev = Arc::new(dev_chain(settings));
        // Blocks advance on their own, so confirmations come as on a real chain.
        dev.spawn_miner(
            settings
                .chain
                .poll_interval()
                .max(Duration::from_millis(50)),
        );
        tracing::info!(
            chain_id = settings.chain.chain_id,
            "no MERIT_CHAIN_RPC_URL: using the embedded dev chain"
        );
        return Ok(dev);
    };
    let options = EthersOptions::default();
    let minter = minter(settings).await?;
    tracing::info!(kind = minter.kind(), address = %minter.address(), "minter ready");
    let contract: Option<Address> = settings
        .chain
        .contract_address
        .as_deref()
        .map(|address| {
            address
                .parse()
                .map_err(|e| anyhow::anyhow!("MERIT_CHAIN_CONTRACT_ADDRESS: {e}"))
        })
        .transpose()?;
    let chain = EthersChain::connect_with(
        rpc.expose(),
        contract.unwrap_or(Address([0; 20])),
        minter,
        options,
    )
    .await
    .with_context(|| format!("connect to the chain at {}", rpc.redacted()))?;
    // Checked before anything is sent: a node pointed at the wrong network must not
    // deploy or mint there.
    let actual = chain.chain_id();
    anyhow::ensure!(
        actual == settings.chain.chain_id,
        "the chain at {} has chain id {actual}, but MERIT_CHAIN_CHAIN_ID is {}: point \
         MERIT_CHAIN_RPC_URL at the intended network, or set MERIT_CHAIN_CHAIN_ID={actual} \
         if that chain is the one",
        rpc.redacted(),
        settings.chain.chain_id
    );
    let chain = match contract {
        Some(_) => chain,
        None => {
            let chain = chain
                .deploy_contract()
                .await
                .with_context(|| format!("deploy the contract at {}", rpc.redacted()))?;
            tracing::warn!(
                contract = %chain.contract(),
                "no MERIT_CHAIN_CONTRACT_ADDRESS: deployed a fresh contract; set it to keep using this one"
            );
            chain
        }
    };
    Ok(Arc::new(chain))
}

/// The minter the settings select: a plaintext key, a decrypted keystore or an external
/// signer checked to hold the address. Fails the start with a message that names the
/// setting and never the key, the password or the signer URL.
pub(crate) async fn minter(settings: &Settings) -> Result<Minter> {
    match &settings.minter {
        MinterSource::Key(key) => {
            if settings.env.is_production() {
                tracing::warn!(
                    "production runs with a plaintext minter key (MERIT_MINTER_ALLOW_PLAINTEXT_KEY=true); \
                     an encrypted keystore or an external signer keeps it safer"
                );
            }
            Minter::from_key(key).context("MERIT_MINTER_KEY")
        }
        MinterSource::Keystore { path, password } => Minter::from_keystore(path, password)
            .await
            .context("MERIT_MINTER_KEYSTORE"),
        MinterSource::Signer { url, address } => {
            let address: Address = address
                .parse()
                .map_err(|e| anyhow::anyhow!("MERIT_MINTER_ADDRESS: {e}"))?;
            Minter::external(url.expose(), address)
                .await
                .with_context(|| format!("MERIT_MINTER_SIGNER_URL ({})", url.redacted()))
        }
    }
}

impl ChainRuntime {
    /// Starts the listener, the full sync, the saga executor and the unlock starter.
    /// `chain` replaces the chain the settings select (the demo passes its dev chain).
    pub(crate) async fn start(
        settings: &Settings,
        store: &Store,
        chain: Option<Arc<dyn Chain>>,
    ) -> Result<Self> {
        let chain = match chain {
            Some(chain) => chain,
            None => connect_chain(settings).await?,
        };
        let (shutdown, stop) = watch::channel(false);
        let confirmations = settings.chain.confirmations;
        let poll = settings.chain.poll_interval();

        let listener = Listener::new(
            store.clone(),
            chain.clone(),
            ListenerConfig {
                confirmations,
                poll_interval: poll,
                ..ListenerConfig::default()
            },
        );
        let listener_status = listener.status_handle();
        let executor = saga_executor(settings, store, &chain)?;
        let tasks = vec![
            tokio::spawn(listener.run(stopped(stop.clone()))),
            run_executor(executor.clone(), stop.clone()),
            run_unlock_starter(executor.clone(), store.clone(), stop.clone()),
            run_full_sync(chain.clone(), store.clone(), confirmations, stop),
        ];
        Ok(Self {
            executor,
            chain,
            confirmations,
            listener: listener_status,
            shutdown,
            tasks,
        })
    }

    /// The saga executor (for the API: list, timeline, retry).
    pub(crate) fn executor(&self) -> SagaExecutor {
        self.executor.clone()
    }

    /// The chain as the API sees it (readiness, checkpoint lag, on-demand full sync).
    pub(crate) fn access(&self) -> merit_api::ChainAccess {
        merit_api::ChainAccess {
            chain: self.chain.clone(),
            confirmations: self.confirmations,
            listener: Some(self.listener.clone()),
        }
    }

    /// Stops everything and waits for it; sagas in flight are resumed by the next start
    /// (or by another node once their lease expires).
    pub(crate) async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        if let Err(e) = self.executor.shutdown().await {
            tracing::warn!(error = %e, "saga executor shutdown");
        }
    }
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The saga executor of this node, with the AchievementUnlock saga registered.
fn saga_executor(
    settings: &Settings,
    store: &Store,
    chain: &Arc<dyn Chain>,
) -> Result<SagaExecutor> {
    let mut registry = SagaRegistry::new();
    registry.register(unlock_saga(UnlockDeps {
        store: store.clone(),
        chain: chain.clone(),
        confirmations: settings.chain.confirmations.max(1),
        poll: settings
            .chain
            .poll_interval()
            .clamp(Duration::from_millis(50), Duration::from_secs(2)),
    }))?;
    Ok(SagaExecutor::new(
        store.clone(),
        registry,
        ExecutorOptions {
            node_id: settings.node_id.clone(),
            ..ExecutorOptions::default()
        },
    ))
}

/// Runs `executor` until `stop`; an executor that fails is logged, not restarted.
fn run_executor(executor: SagaExecutor, stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = executor.run(stopped(stop)).await {
            tracing::error!(error = %e, "saga executor stopped");
        }
    })
}

/// Starts the sagas of unlocked achievements that have none, every [`STARTER_INTERVAL`]
/// until `stop`.
fn run_unlock_starter(
    executor: SagaExecutor,
    store: Store,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match start_pending_unlocks(&executor, &store, 100).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(started = n, "achievement unlock sagas started"),
                Err(e) => {
                    tracing::warn!(error = %e, "starting unlock sagas failed; retrying")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(STARTER_INTERVAL) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    })
}

/// Compares every known token's owner with the chain every [`FULL_SYNC_INTERVAL`] (the
/// first after one interval) until `stop`.
fn run_full_sync(
    chain: Arc<dyn Chain>,
    store: Store,
    confirmations: u64,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(FULL_SYNC_INTERVAL) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            match full_sync(&store, chain.as_ref(), confirmations).await {
                Ok(report) => {
                    metrics::counter!("merit_chain_full_syncs_total").increment(1);
                    metrics::counter!("merit_chain_full_sync_drift_total")
                        .increment(report.drifted);
                    tracing::info!(
                        checked = report.checked,
                        drifted = report.drifted,
                        repaired = report.repaired,
                        "full sync done"
                    );
                }
                Err(e) => tracing::warn!(error = %e, "full sync failed; next run retries"),
            }
        }
    })
}
