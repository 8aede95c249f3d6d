//! The initial schema: actor snapshots, projections, inbox, outbox, saga log, dynamic
//! config versions and chain checkpoints.

#![allow(elided_lifetimes_in_paths)] // sea-orm-migration's async_trait signature

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

fn t(name: &str) -> Alias {
    Alias::new(name)
}

fn ts(name: &str) -> ColumnDef {
    timestamp_with_time_zone(t(name))
}

fn ts_null(name: &str) -> ColumnDef {
    timestamp_with_time_zone_null(t(name))
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One function per table (with its indexes), called in the order this migration
        // has always created them: it already ran on existing databases.
        create_actors(m).await?;
        create_users(m).await?;
        create_achievements(m).await?;
        create_proposals(m).await?;
        create_votes(m).await?;
        create_nfts(m).await?;
        create_benefits(m).await?;
        create_inbox(m).await?;
        create_outbox(m).await?;
        create_sagas(m).await?;
        create_saga_steps(m).await?;
        create_config_versions(m).await?;
        create_chain_checkpoints(m).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "chain_checkpoints",
            "config_versions",
            "saga_steps",
            "sagas",
            "outbox",
            "inbox",
            "benefits",
            "nfts",
            "votes",
            "proposals",
            "achievements",
            "users",
            "actors",
        ] {
            m.drop_table(Table::drop().table(t(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}

async fn index(m: &SchemaManager<'_>, table: &str, name: &str, cols: &[&str]) -> Result<(), DbErr> {
    let mut idx = Index::create();
    idx.name(name).table(t(table));
    for c in cols {
        idx.col(t(c));
    }
    m.create_index(idx.to_owned()).await
}

/// Actor snapshots, one row per actor (kind, key).
async fn create_actors(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    m.create_table(
        Table::create()
            .table(t("actors"))
            .col(string(t("kind")))
            .col(string(t("key")))
            .col(big_integer(t("version")))
            .col(json_binary(t("state")))
            .col(ts("updated_at"))
            .primary_key(Index::create().col(t("kind")).col(t("key")))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Per-user activity facts.
async fn create_users(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    m.create_table(
        Table::create()
            .table(t("users"))
            .col(string(t("address")).primary_key())
            .col(big_integer(t("proposals_created")).default(0))
            .col(big_integer(t("votes_cast")).default(0))
            .col(json_binary(t("counters")))
            .col(ts("first_seen_at"))
            .col(ts("last_active_at"))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Achievements earned, looked up by user and rule.
async fn create_achievements(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    m.create_table(
        Table::create()
            .table(t("achievements"))
            .col(string(t("id")).primary_key())
            .col(string(t("user")))
            .col(string(t("rule_id")))
            .col(big_integer(t("rule_version")))
            .col(string(t("tier")))
            .col(string_null(t("token_id")))
            .col(string(t("state")))
            .col(string_null(t("saga_id")))
            .col(text_null(t("reason")))
            .col(ts("created_at"))
            .col(ts("updated_at"))
            .to_owned(),
    )
    .await?;
    index(
        m,
        "achievements",
        "idx_achievements_user",
        &["user", "rule_id"],
    )
    .await?;
    Ok(())
}

/// Governance proposals, scanned by status and end time.
async fn create_proposals(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    m.create_table(
        Table::create()
            .table(t("proposals"))
            .col(string(t("id")).primary_key())
            .col(string(t("creator")))
            .col(string(t("title")))
            .col(text(t("description")))
            .col(ts("starts_at"))
            .col(ts("ends_at"))
            .col(big_integer(t("quorum")))
            .col(integer(t("threshold_bps")))
            .col(string(t("status")))
            .col(json_binary(t("tally")))
            .col(ts("created_at"))
            .col(ts("updated_at"))
            .to_owned(),
    )
    .await?;
    index(
        m,
        "proposals",
        "idx_proposals_status_ends",
        &["status", "ends_at"],
    )
    .await?;
    Ok(())
}

/// Votes, one per proposal and voter, also looked up by voter.
async fn create_votes(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    m.create_table(
        Table::create()
            .table(t("votes"))
            .col(string(t("proposal_id")))
            .col(string(t("voter")))
            .col(string(t("choice")))
            .col(big_integer(t("weight")))
            .col(json_binary(t("boosts")))
            .col(string(t("event_id")))
            .col(ts("cast_at"))
            .primary_key(Index::create().col(t("proposal_id")).col(t("voter")))
            .to_owned(),
    )
    .await?;
    index(m, "votes", "idx_votes_voter", &["voter"]).await?;
    Ok(())
}

/// The achievement NFTs as seen on chain, looked up by owner.
async fn create_nfts(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    m.create_table(
        Table::create()
            .table(t("nfts"))
            .col(string(t("token_id")).primary_key())
            .col(string_null(t("owner")))
            .col(string_null(t("tier")))
            .col(string_null(t("achievement_id")))
            .col(boolean(t("burned")).default(false))
            .col(big_integer(t("last_block")))
            .col(big_integer(t("last_log_index")))
            .col(ts("updated_at"))
            .to_owned(),
    )
    .await?;
    index(m, "nfts", "idx_nfts_owner", &["owner"]).await?;
    Ok(())
}

/// Each user's current voting boost.
async fn create_benefits(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    m.create_table(
        Table::create()
            .table(t("benefits"))
            .col(string(t("user")).primary_key())
            .col(big_integer(t("multiplier_bps")))
            .col(json_binary(t("boosting_nfts")))
            .col(big_integer(t("config_version")))
            .col(ts("updated_at"))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Events each consumer processed (deduplication).
async fn create_inbox(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    m.create_table(
        Table::create()
            .table(t("inbox"))
            .col(string(t("consumer")))
            .col(string(t("event_id")))
            .col(ts("processed_at"))
            .primary_key(Index::create().col(t("consumer")).col(t("event_id")))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Events waiting for (or done with) the relay.
async fn create_outbox(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    m.create_table(
        Table::create()
            .table(t("outbox"))
            .col(big_integer(t("id")).auto_increment().primary_key())
            .col(string_uniq(t("event_id")))
            .col(string(t("routing_key")))
            .col(text(t("payload")))
            .col(json_binary(t("headers")))
            .col(ts("created_at"))
            .col(ts_null("published_at"))
            .to_owned(),
    )
    .await?;
    // The relay scans pending rows in id order; a partial index keeps that scan
    // proportional to the backlog, not to the table. Same syntax on both backends.
    m.get_connection()
        .execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_outbox_pending ON outbox (id) WHERE published_at IS NULL",
        )
        .await?;
    Ok(())
}

/// Saga instances, scanned by state.
async fn create_sagas(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    m.create_table(
        Table::create()
            .table(t("sagas"))
            .col(string(t("id")).primary_key())
            .col(string(t("kind")))
            .col(string(t("state")))
            .col(integer(t("current_step")))
            .col(json_binary(t("data")))
            .col(string(t("correlation_id")))
            .col(text_null(t("last_error")))
            .col(ts("created_at"))
            .col(ts("updated_at"))
            .to_owned(),
    )
    .await?;
    index(m, "sagas", "idx_sagas_state", &["state", "updated_at"]).await?;
    Ok(())
}

/// Each saga's steps.
async fn create_saga_steps(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    m.create_table(
        Table::create()
            .table(t("saga_steps"))
            .col(string(t("saga_id")))
            .col(integer(t("step")))
            .col(string(t("name")))
            .col(string(t("state")))
            .col(integer(t("attempts")))
            .col(text_null(t("last_error")))
            .col(json_binary_null(t("output")))
            .col(ts_null("started_at"))
            .col(ts("updated_at"))
            .primary_key(Index::create().col(t("saga_id")).col(t("step")))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Dynamic config versions.
async fn create_config_versions(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    m.create_table(
        Table::create()
            .table(t("config_versions"))
            .col(big_integer(t("version")).primary_key())
            .col(json_binary(t("document")))
            .col(string(t("author")))
            .col(text(t("reason")))
            .col(big_integer_null(t("rollback_of")))
            .col(ts("created_at"))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// How far each chain reader got.
async fn create_chain_checkpoints(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    m.create_table(
        Table::create()
            .table(t("chain_checkpoints"))
            .col(string(t("id")).primary_key())
            .col(big_integer(t("block_number")))
            .col(string(t("block_hash")))
            .col(ts("updated_at"))
            .to_owned(),
    )
    .await?;

    Ok(())
}
