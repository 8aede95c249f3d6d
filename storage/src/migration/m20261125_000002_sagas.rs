//! The saga engine's columns: a lease (which node drives a saga, until when), when a
//! saga is next due (backoff, a re-poll of a step waiting for finality), and per step the
//! compensation's own attempts, output and due time.

#![allow(elided_lifetimes_in_paths)] // sea-orm-migration's async_trait signature

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

fn t(name: &str) -> Alias {
    Alias::new(name)
}

/// SQLite accepts one change per `ALTER TABLE`, so each column is its own statement.
async fn add(m: &SchemaManager<'_>, table: &str, col: ColumnDef) -> Result<(), DbErr> {
    m.alter_table(
        Table::alter()
            .table(t(table))
            .add_column(col.to_owned())
            .to_owned(),
    )
    .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        add(m, "sagas", string_null(t("lease_owner"))).await?;
        add(m, "sagas", timestamp_with_time_zone_null(t("lease_until"))).await?;
        add(
            m,
            "sagas",
            timestamp_with_time_zone_null(t("next_attempt_at")),
        )
        .await?;
        add(
            m,
            "saga_steps",
            integer(t("compensation_attempts")).default(0).to_owned(),
        )
        .await?;
        add(m, "saga_steps", json_binary_null(t("compensation_output"))).await?;
        add(
            m,
            "saga_steps",
            timestamp_with_time_zone_null(t("next_attempt_at")),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_sagas_kind_state")
                .table(t("sagas"))
                .col(t("kind"))
                .col(t("state"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_sagas_due")
                .table(t("sagas"))
                .col(t("state"))
                .col(t("next_attempt_at"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for name in ["idx_sagas_due", "idx_sagas_kind_state"] {
            m.drop_index(Index::drop().name(name).table(t("sagas")).to_owned())
                .await?;
        }
        for (table, col) in [
            ("saga_steps", "next_attempt_at"),
            ("saga_steps", "compensation_output"),
            ("saga_steps", "compensation_attempts"),
            ("sagas", "next_attempt_at"),
            ("sagas", "lease_until"),
            ("sagas", "lease_owner"),
        ] {
            m.alter_table(
                Table::alter()
                    .table(t(table))
                    .drop_column(t(col))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
