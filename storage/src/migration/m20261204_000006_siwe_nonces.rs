//! Sign-In with Ethereum nonces: each one issued by `POST /api/v1/auth/nonce`, kept until
//! it is used once or expires. In the database so that any node can verify a nonce
//! another node issued, embedded mode included (which has no Redis).

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
                .table(t("siwe_nonces"))
                .col(string(t("nonce")).primary_key())
                .col(timestamp_with_time_zone(t("expires_at")))
                .to_owned(),
        )
        .await?;
        m.get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS idx_siwe_nonces_expires_at ON siwe_nonces (expires_at)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(t("siwe_nonces")).to_owned())
            .await
    }
}
