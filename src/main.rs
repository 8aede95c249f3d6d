//! The `merit` binary: parses the command line and wires the crates together. No domain
//! logic lives here.

/// mimalloc instead of glibc's malloc: under load merit allocates and frees small buffers
/// on many threads (envelopes, rows, AMQP frames), and glibc's malloc spent a third of
/// merit's CPU on it (`perf`, hot-proposal drain). See the README's benchmark figures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod asyncapi;
mod bench;
mod chain_runtime;
mod config_cmd;
mod demo;
mod reshard;
mod serve;
mod simulate;
mod telemetry;

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use merit_config::{render_show, to_redacted_json, Loaded, Settings};
use merit_storage::{Store, StoreOptions};

/// merit: an actor-system runtime joining achievements and governance for a web3 community.
#[derive(Parser, Debug)]
#[command(name = "merit", version, about, long_about = None)]
struct Cli {
    /// Folder holding `<env>.toml` (the environment is chosen by MERIT_ENV).
    #[arg(
        long,
        global = true,
        default_value = "config",
        env = "MERIT_CONFIG_DIR"
    )]
    config_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node: migrate, then consume the shard queues, apply events in the actors and
    /// relay the outbox, until SIGINT or SIGTERM.
    Serve,
    /// Run a node on embedded defaults and drive a simulated community through it:
    /// proposals, votes, achievements minted as NFTs, compensated failures, trades.
    Demo(demo::DemoArgs),
    /// Apply pending database migrations (a no-op when up to date).
    Migrate,
    /// Change the number of shard queues per actor kind on a drained deployment: checks
    /// that no node runs and every shard queue and the outbox are empty, then creates or
    /// deletes shard queues to match.
    Reshard(reshard::ReshardArgs),
    /// Measure raw RabbitMQ against merit end-to-end on the configured services.
    Bench(bench::BenchArgs),
    /// Publish load to RabbitMQ as a producer would: proposals, then votes from random
    /// users at a steady or bursty rate, optionally with duplicates and malformed messages;
    /// shows the achieved rate and prints a summary.
    Simulate(simulate::SimulateArgs),
    /// Inspect the effective configuration; manage the dynamic config (rules, tiers,
    /// limits) stored as numbered versions.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print a user token (an HS256 JWT signed with MERIT_JWT_SECRET) for a wallet, for
    /// the API and the WebSocket.
    Token {
        /// The wallet address (the token's subject).
        #[arg(long)]
        user: String,
        /// Seconds until it expires.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: i64,
    },
    /// Print or write the contracts: the JSON Schema of every event envelope (default),
    /// the AsyncAPI document of the messages, or the OpenAPI document of the HTTP API.
    Schema {
        /// Write one `<type>.v1.json` file per event into this folder instead of printing.
        #[arg(long, conflicts_with_all = ["asyncapi", "openapi"])]
        out: Option<PathBuf>,
        /// Print the AsyncAPI 3.0 document (committed as docs/asyncapi.json).
        #[arg(long, conflicts_with = "openapi")]
        asyncapi: bool,
        /// Print the OpenAPI document of the HTTP API (committed as docs/openapi.json).
        #[arg(long)]
        openapi: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Print every setting with its source; secrets are redacted.
    Show {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Center(config_cmd::CenterCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // A document or argument the config center refused: a usage error, nothing written.
        Err(e) if e.is::<config_cmd::Refused>() => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    // sqlx enables rustls' ring provider and lapin/hyper aws-lc-rs; with both compiled in,
    // rustls cannot pick one by itself. An Err only means one is already installed.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let dir = cli.config_dir.as_path();
    match cli.command {
        Command::Schema {
            out,
            asyncapi,
            openapi,
        } => schema(out, asyncapi, openapi),
        Command::Token { user, ttl_secs } => token(&load_settings(dir)?.settings, &user, ttl_secs),
        Command::Config {
            command: ConfigCommand::Show { json },
        } => show(&load_settings(dir)?, json),
        Command::Config {
            command: ConfigCommand::Center(command),
        } => {
            let settings = load_with_logs(dir)?;
            runtime()?.block_on(config_cmd::run(&settings, command))
        }
        Command::Migrate => {
            let settings = load_with_logs(dir)?;
            runtime()?.block_on(migrate_command(&settings))
        }
        Command::Reshard(args) => {
            let settings = load_with_logs(dir)?;
            runtime()?.block_on(reshard::reshard(&settings, args))
        }
        Command::Bench(args) => {
            let settings = load_with_logs(dir)?;
            actix_system().block_on(bench::bench(settings, args))
        }
        Command::Simulate(args) => {
            let settings = load_with_logs(dir)?;
            runtime()?.block_on(simulate::simulate(settings, args))
        }
        Command::Demo(args) => {
            let loaded = load_settings(dir)?;
            let dir = tempfile::tempdir().context("a folder for the demo database")?;
            let settings = demo::settings(loaded.settings, dir.path());
            init_tracing(&settings);
            actix_system().block_on(demo::demo(settings, args))
        }
        Command::Serve => {
            let loaded = load_settings(dir)?;
            actix_system().block_on(async move {
                // Inside the runtime: the OTLP exporter runs on it.
                let _telemetry = telemetry::init(&loaded.settings)?;
                serve::serve(loaded.settings).await
            })
        }
    }
}

/// `merit schema`: the AsyncAPI document, the OpenAPI document, or the event schemas.
fn schema(out: Option<PathBuf>, asyncapi: bool, openapi: bool) -> Result<()> {
    if asyncapi {
        println!("{}", serde_json::to_string_pretty(&asyncapi::document())?);
        Ok(())
    } else if openapi {
        println!("{}", merit_api::openapi_document());
        Ok(())
    } else {
        write_schemas(out)
    }
}

/// `merit token`: a user JWT for `user`, valid for `ttl_secs`.
fn token(settings: &Settings, user: &str, ttl_secs: i64) -> Result<()> {
    let wallet: merit_messages::Address = user
        .parse()
        .map_err(|e| anyhow::anyhow!("--user: {user:?} is not a wallet address: {e}"))?;
    anyhow::ensure!(ttl_secs > 0, "--ttl-secs must be positive");
    println!(
        "{}",
        merit_api::sign(
            settings.jwt_secret.expose_secret().as_bytes(),
            &wallet.to_string(),
            ttl_secs
        )
    );
    Ok(())
}

/// `merit config show`: every setting with its source, as text or JSON.
fn show(loaded: &Loaded, json: bool) -> Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_redacted_json(loaded))?
        );
    } else {
        print!("{}", render_show(loaded));
    }
    Ok(())
}

/// `merit migrate`: connects, applies what is pending and closes.
async fn migrate_command(settings: &Settings) -> Result<()> {
    let store = connect(settings).await?;
    migrate(&store, settings).await?;
    Ok(store.close().await?)
}

/// The settings, with the logs set up from them (the commands that run services log).
fn load_with_logs(config_dir: &std::path::Path) -> Result<Settings> {
    let loaded = load_settings(config_dir)?;
    init_tracing(&loaded.settings);
    Ok(loaded.settings)
}

fn load_settings(config_dir: &std::path::Path) -> Result<Loaded> {
    let loaded = Settings::from_process_env(config_dir).context("invalid configuration")?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(loaded)
}

fn init_tracing(settings: &Settings) {
    telemetry::init_logs(settings);
}

/// Actors run on actix arbiters; brokers, databases and everything else on a
/// multi-threaded tokio runtime that the actix System drives.
fn actix_system() -> actix_rt::SystemRunner {
    actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("the tokio runtime starts")
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

async fn connect(settings: &Settings) -> Result<Store> {
    Store::connect(settings.database_url.expose(), &StoreOptions::default())
        .await
        .map_err(|e| {
            let said = format!("{e:#}");
            let error = anyhow::Error::new(e)
                .context(format!("connect to {}", settings.database_url.redacted()));
            match database_fix(&said) {
                Some(fix) => error.context(fix),
                None => error,
            }
        })
}

/// What to do about a database refusal no retry cures, from PostgreSQL's own words.
fn database_fix(said: &str) -> Option<&'static str> {
    if said.contains("role \"") && said.contains("does not exist") {
        Some(
            "the database user does not exist: create it (`CREATE ROLE NAME LOGIN PASSWORD ...`) \
             or fix the user in MERIT_DATABASE_URL",
        )
    } else if said.contains("database \"") && said.contains("does not exist") {
        Some(
            "the database does not exist: create it (`createdb NAME`, or `CREATE DATABASE`) or \
             fix the name in MERIT_DATABASE_URL",
        )
    } else if said.contains("password authentication failed") {
        Some("PostgreSQL refused the password: fix the password in MERIT_DATABASE_URL")
    } else {
        None
    }
}

async fn migrate(store: &Store, settings: &Settings) -> Result<()> {
    let applied = store.migrate().await.context("migrate")?;
    if applied.is_empty() {
        println!(
            "database {} is up to date",
            settings.database_url.redacted()
        );
    } else {
        for name in &applied {
            println!("applied {name}");
        }
        println!(
            "database {} migrated ({} applied)",
            settings.database_url.redacted(),
            applied.len()
        );
    }
    Ok(())
}

fn write_schemas(out: Option<PathBuf>) -> Result<()> {
    let schemas = merit_messages::all_schemas();
    match out {
        None => {
            let all: serde_json::Map<String, serde_json::Value> = schemas.into_iter().collect();
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            for (name, schema) in schemas {
                let path = dir.join(&name);
                std::fs::write(&path, serde_json::to_string_pretty(&schema)? + "\n")
                    .with_context(|| format!("write {}", path.display()))?;
                println!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}
