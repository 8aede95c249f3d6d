//! `on_both_backends!` puts each test in its tier: the PostgreSQL half always in the
//! service tier, the SQLite half too when the body says `services;` (checked by listing
//! the ignored tests: `cargo nextest list -p merit-testkit --run-ignored ignored-only`).

use merit_testkit::{on_both_backends, Backend};

/// Each half gets its own backend: libtest names the test's thread after the test, and a
/// multi-threaded tokio test runs its body on that thread.
async fn runs_on(backend: Backend) {
    let test = std::thread::current()
        .name()
        .unwrap_or_default()
        .to_string();
    let expected = if test.ends_with("::postgres") {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    assert!(
        test.ends_with("::sqlite") || test.ends_with("::postgres"),
        "{test}"
    );
    assert_eq!(backend, expected, "{test}");
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
