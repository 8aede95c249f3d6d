//! `on_both_backends!` puts each test in its tier: the PostgreSQL half always in the
//! service tier, the SQLite half too when the body says `services;` (checked by listing
//! the ignored tests: `cargo nextest list -p merit-testkit --run-ignored ignored-only`).

use merit_testkit::{on_both_backends, Backend};

async fn runs_on(backend: Backend) {
    assert!(matches!(backend, Backend::Sqlite | Backend::Postgres));
}

on_both_backends! {
    a_fast_body => runs_on;
}

mod with_services {
    use super::*;

    on_both_backends! {
        services;
        a_body_needing_services => runs_on;
    }
}
