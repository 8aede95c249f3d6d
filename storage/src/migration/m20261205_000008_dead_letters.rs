//! The dead-letter table: a recorder on each node moves dead letters from `merit.dlq` into
//! it, so operators list, filter and page them by index and replay or discard them by id
//! (the queue has no browse, and paging it by get-and-requeue reordered it). Also indexes
//! the saga log by correlation id, so both can be followed by one operation's id.

#![allow(elided_lifetimes_in_paths)] // sea-orm-migration's async_trait signature

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

fn t(name: &str) -> Alias {
    Alias::new(name)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(t("dead_letters"))
                .col(big_integer(t("seq")).auto_increment().primary_key())
                .col(string_uniq(t("id")))
                .col(string(t("routing_key")))
                .col(string(t("reason_class")))
                .col(text(t("reason")))
                .col(integer(t("attempts")))
                .col(blob(t("body")))
                .col(big_integer_null(t("truncated_from")))
                .col(string(t("origin")))
                .col(string(t("source_queue")))
                .col(string_null(t("message_id")))
                .col(string_null(t("correlation_id")))
                .col(json_binary(t("headers")))
                .col(timestamp_with_time_zone(t("dead_lettered_at")))
                .col(timestamp_with_time_zone(t("recorded_at")))
                .col(string(t("state")))
                .col(timestamp_with_time_zone_null(t("settled_at")))
                .to_owned(),
        )
        .await?;
        // Every listing is "these filters, in arrival order, after this seq": one index
        // per filter an operator uses, each ending in seq.
        for (name, cols) in [
            ("idx_dead_letters_state_seq", "state, seq"),
            ("idx_dead_letters_class_seq", "reason_class, state, seq"),
            ("idx_dead_letters_key_seq", "routing_key, state, seq"),
            ("idx_dead_letters_at", "dead_lettered_at"),
            ("idx_dead_letters_correlation", "correlation_id"),
        ] {
            m.get_connection()
                .execute_unprepared(&format!(
                    "CREATE INDEX IF NOT EXISTS {name} ON dead_letters ({cols})"
                ))
                .await?;
        }
        // An achievement keeps the correlation id of the event that unlocked it, so its
        // unlock saga runs under the operation's id (rows from before have none).
        m.alter_table(
            Table::alter()
                .table(t("achievements"))
                .add_column(string_null(t("correlation_id")))
                .to_owned(),
        )
        .await?;
        // The dashboard follows an operation by its correlation id into the saga log too.
        m.get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS idx_sagas_correlation ON sagas (correlation_id)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(t("achievements"))
                .drop_column(t("correlation_id"))
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(t("dead_letters")).to_owned())
            .await
    }
}
