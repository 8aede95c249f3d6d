//! Schema migrations. Append-only: a released migration is never edited; a change is a new
//! file. `Migrator::up` records what ran in `seaql_migrations`, so running it twice is a no-op.

mod m20261124_000001_initial;
mod m20261125_000002_sagas;
mod m20261125_000003_governance;
mod m20261130_000004_api;
mod m20261130_000005_retention;
mod m20261204_000006_siwe_nonces;
mod m20261204_000007_deadlines_fired;
mod m20261205_000008_dead_letters;

use sea_orm_migration::{MigrationTrait, MigratorTrait};

/// All of merit's migrations, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_initial::Migration),
            Box::new(m20261125_000002_sagas::Migration),
            Box::new(m20261125_000003_governance::Migration),
            Box::new(m20261130_000004_api::Migration),
            Box::new(m20261130_000005_retention::Migration),
            Box::new(m20261204_000006_siwe_nonces::Migration),
            Box::new(m20261204_000007_deadlines_fired::Migration),
            Box::new(m20261205_000008_dead_letters::Migration),
        ]
    }
}
