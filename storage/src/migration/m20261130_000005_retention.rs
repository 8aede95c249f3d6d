//! Indexes for the retention sweep: it deletes inbox rows, published outbox rows and
//! notifications older than their retention, a bounded chunk at a time, and each chunk
//! must find its rows by age without scanning the table.

#![allow(elided_lifetimes_in_paths)] // sea-orm-migration's async_trait signature

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// `(name, definition)`: the same syntax on SQLite and PostgreSQL.
const INDEXES: [(&str, &str); 3] = [
    ("idx_inbox_processed_at", "inbox (processed_at)"),
    // Only published rows are ever swept; pending ones have their own partial index.
    (
        "idx_outbox_published_at",
        "outbox (published_at) WHERE published_at IS NOT NULL",
    ),
    ("idx_notifications_created_at", "notifications (created_at)"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (name, on) in INDEXES {
            m.get_connection()
                .execute_unprepared(&format!("CREATE INDEX IF NOT EXISTS {name} ON {on}"))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (name, _) in INDEXES {
            m.get_connection()
                .execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        Ok(())
    }
}
