//! The governance process: proposal sequence numbers (creation order, for streaks) and the
//! index the deadline timer scans.

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
                .table(t("proposal_seqs"))
                .col(string(t("proposal_id")).primary_key())
                .col(big_integer(t("seq")).unique_key())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_proposals_deadlines")
                .table(t("proposals"))
                .col(t("status"))
                .col(t("ends_at"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("idx_proposals_deadlines")
                .table(t("proposals"))
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(t("proposal_seqs")).to_owned())
            .await
    }
}
