//! Which deadlines of a proposal the deadline timer has emitted: `deadlines_fired` is 0
//! (none), 1 (open) or 2 (close). The timer's scan skips what it already emitted, so a
//! deadline its ProposalActor did not apply (refused, dead-lettered) stays with that one
//! proposal instead of filling the timer's batch and starving every other proposal.

#![allow(elided_lifetimes_in_paths)] // sea-orm-migration's async_trait signature

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("proposals"))
                .add_column(
                    ColumnDef::new(Alias::new("deadlines_fired"))
                        .small_integer()
                        .not_null()
                        .default(0),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("proposals"))
                .drop_column(Alias::new("deadlines_fired"))
                .to_owned(),
        )
        .await
    }
}
