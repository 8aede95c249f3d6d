//! What the API serves beyond the projections: each user's notification log (a dense
//! sequence per user, so a WebSocket client that reconnects catches up on exactly what it
//! missed) and the node registry used for service discovery when Redis is not configured.

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
                .table(t("notifications"))
                .col(string(t("user")))
                .col(big_integer(t("seq")))
                .col(string(t("event_id")))
                .col(string(t("kind")))
                .col(json_binary(t("payload")))
                .col(timestamp_with_time_zone(t("created_at")))
                .primary_key(Index::create().col(t("user")).col(t("seq")))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(t("nodes"))
                .col(string(t("node_id")).primary_key())
                .col(json_binary(t("info")))
                .col(timestamp_with_time_zone(t("heartbeat_at")))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(t("nodes")).to_owned())
            .await?;
        m.drop_table(Table::drop().table(t("notifications")).to_owned())
            .await
    }
}
