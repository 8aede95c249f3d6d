//! `merit config current|history|get|set|diff|rollback|dry-run`: the dynamic config center
//! ([`merit_actors::center`]) from the command line.
//!
//! Every subcommand connects to `MERIT_DATABASE_URL` and applies pending migrations first
//! (reported on stderr, so stdout stays the command's own output). A document or argument
//! the center refuses comes back as [`Refused`]: the binary prints `error: <path>: <reason>`
//! and exits with code 2, and nothing was written.

use std::{fmt, io::Read, path::PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use merit_actors::center::{CenterError, ConfigCenter, VersionInfo};
use merit_config::{DynamicConfig, Settings};

/// The dynamic config center's subcommands (flattened into `merit config`).
#[derive(Subcommand, Debug)]
pub(crate) enum CenterCommand {
    /// Print the active dynamic config (rules, tiers, limits) and its version.
    Current {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List stored versions, newest first, with who made each and why.
    History {
        /// Most versions to list.
        #[arg(long, default_value_t = 20)]
        limit: u64,
        /// Versions to skip (from the newest).
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print one stored version with its document.
    Get {
        /// The version.
        version: u64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Validate a document and store it as the next version (broadcast as
    /// `config.changed`); with --dry-run, only show what it would change.
    Set(SetArgs),
    /// Show what changed from version A to version B (0: the built-in document).
    Diff {
        /// The older version.
        a: u64,
        /// The newer version.
        b: u64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Store a new version equal to an older one (0: the built-in document).
    Rollback {
        /// The version to restore.
        version: u64,
        #[command(flatten)]
        who: Who,
    },
    /// Evaluate a proposed document against stored user history: per rule, how many users
    /// it would newly unlock. Writes nothing.
    DryRun {
        /// The proposed document (`-` for stdin).
        #[arg(long)]
        file: PathBuf,
        /// Evaluation time for windowed conditions (RFC 3339; default: now).
        #[arg(long)]
        at: Option<DateTime<Utc>>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Who makes a change and why (recorded in the history and the event).
#[derive(Args, Debug)]
pub(crate) struct Who {
    /// Who makes the change (1-100 characters).
    #[arg(long)]
    author: String,
    /// Why (1-500 characters).
    #[arg(long)]
    reason: String,
}

/// `merit config set`.
#[derive(Args, Debug)]
pub(crate) struct SetArgs {
    /// The document (`-` for stdin).
    #[arg(long)]
    file: PathBuf,
    /// Who makes the change (1-100 characters).
    #[arg(long, required_unless_present = "dry_run")]
    author: Option<String>,
    /// Why (1-500 characters).
    #[arg(long, required_unless_present = "dry_run")]
    reason: Option<String>,
    /// Validate, diff against the current version and dry-run the rules; store nothing.
    #[arg(long)]
    dry_run: bool,
}

/// A document or argument the config center refused; nothing was written. The binary
/// prints it as `error: {self}` and exits with code 2.
#[derive(Debug)]
pub(crate) struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Turns the center's refusals into [`Refused`]; other errors keep their message.
fn refused(e: CenterError) -> anyhow::Error {
    match e {
        // RuleError displays as `<path>: <reason>`.
        CenterError::Invalid(rule) => Refused(rule.to_string()).into(),
        CenterError::BadInput(message) => Refused(message).into(),
        other => other.into(),
    }
}

/// Runs one subcommand.
pub(crate) async fn run(settings: &Settings, command: CenterCommand) -> Result<()> {
    let store = crate::connect(settings).await?;
    for name in store.migrate().await.context("migrate")? {
        eprintln!("applied {name}");
    }
    let center = ConfigCenter::new(store.clone());
    let result = dispatch(&center, command).await;
    store.close().await?;
    result
}

async fn dispatch(center: &ConfigCenter, command: CenterCommand) -> Result<()> {
    match command {
        CenterCommand::Current { json } => current(center, json).await,
        CenterCommand::History {
            limit,
            offset,
            json,
        } => history(center, limit, offset, json).await,
        CenterCommand::Get { version, json } => match center.get(version).await? {
            Some((info, config)) => print_version(Some(&info), &config, json),
            None => Err(CenterError::NotFound(version).into()),
        },
        CenterCommand::Set(args) => set(center, args).await,
        CenterCommand::Diff { a, b, json } => {
            let diff = center.diff(a, b).await?;
            print_json_or_text(&diff, json)
        }
        CenterCommand::Rollback { version, who } => {
            let info = center
                .rollback(version, &who.author, &who.reason)
                .await
                .map_err(refused)?;
            println!(
                "stored config version {} (rollback to version {version})",
                info.version
            );
            Ok(())
        }
        CenterCommand::DryRun { file, at, json } => {
            let document = read_document(&file)?;
            let report = center
                .dry_run(&document, at.unwrap_or_else(Utc::now))
                .await
                .map_err(refused)?;
            print_json_or_text(&report, json)
        }
    }
}

/// `current`: the active version (version 0, the built-in document, has no stored info).
async fn current(center: &ConfigCenter, json: bool) -> Result<()> {
    let config = center.current().await?;
    let info = match config.version {
        0 => None,
        v => center.get(v).await?.map(|(info, _)| info),
    };
    print_version(info.as_ref(), &config, json)
}

/// `history`: a page of versions, newest first, as a table or JSON.
async fn history(center: &ConfigCenter, limit: u64, offset: u64, json: bool) -> Result<()> {
    let page = center.history(offset, limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(());
    }
    println!(
        "{:>7}  {:<20}  {:<20}  {:<9}  reason",
        "version", "created", "author", "restores"
    );
    for v in &page.versions {
        println!(
            "{:>7}  {:<20}  {:<20}  {:<9}  {}",
            v.version,
            v.created_at.format("%Y-%m-%d %H:%M:%S"),
            v.author,
            v.rollback_of.map(|r| r.to_string()).unwrap_or_default(),
            v.reason
        );
    }
    println!(
        "({} of {} versions shown{})",
        page.versions.len(),
        page.total,
        if page.total == 0 {
            "; the built-in document is active as version 0"
        } else {
            ""
        }
    );
    Ok(())
}

/// `value` as pretty JSON with `--json`, else as its text form.
fn print_json_or_text<T: serde::Serialize + std::fmt::Display>(
    value: &T,
    json: bool,
) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{value}");
    }
    Ok(())
}

async fn set(center: &ConfigCenter, args: SetArgs) -> Result<()> {
    let document = read_document(&args.file)?;
    if args.dry_run {
        let proposed =
            DynamicConfig::parse(&document, 0).map_err(|e| refused(CenterError::Invalid(e)))?;
        let current = center.current().await?;
        let mut diff = merit_actors::center::ConfigDiff::between(&current, &proposed);
        diff.to = current.version + 1;
        print!("{diff}");
        let report = center
            .dry_run(&document, Utc::now())
            .await
            .map_err(refused)?;
        print!("{report}");
        println!("dry run: nothing was stored");
        return Ok(());
    }
    let (Some(author), Some(reason)) = (args.author, args.reason) else {
        anyhow::bail!("--author and --reason are required unless --dry-run is given");
    };
    let info = center
        .propose(&document, &author, &reason)
        .await
        .map_err(refused)?;
    println!("stored config version {}", info.version);
    Ok(())
}

fn read_document(file: &PathBuf) -> Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("read the document from stdin")?;
        return Ok(bytes);
    }
    std::fs::read(file).with_context(|| format!("read {}", file.display()))
}

fn print_version(info: Option<&VersionInfo>, config: &DynamicConfig, json: bool) -> Result<()> {
    if json {
        let mut out = serde_json::json!({
            "version": config.version,
            "document": config.to_document(),
        });
        if let Some(info) = info {
            out["author"] = info.author.clone().into();
            out["reason"] = info.reason.clone().into();
            out["rollback_of"] = serde_json::to_value(info.rollback_of)?;
            out["created_at"] = serde_json::to_value(info.created_at)?;
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    match info {
        None => println!("version {} (built-in default)", config.version),
        Some(info) => println!(
            "version {} by {} at {}{}: {}",
            info.version,
            info.author,
            info.created_at.to_rfc3339(),
            info.rollback_of
                .map(|r| format!(" (rollback to {r})"))
                .unwrap_or_default(),
            info.reason
        ),
    }
    println!("{}", serde_json::to_string_pretty(&config.to_document())?);
    Ok(())
}
