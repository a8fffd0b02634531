//! changetrail's cross-crate tests, in one binary.
//!
//! Tests that touch a database run once per backend: SQLite always, PostgreSQL when
//! `CHANGETRAIL_TEST_DATABASE_URL` is set (CI sets it), each in a fresh database.

/// Generates `sqlite::NAME` and `postgres::NAME` tests from `async fn NAME(Backend)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(test_support::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(test_support::Backend::Postgres).await } )*
        }
    };
}

/// A fresh database of the backend, or return after saying why the test is skipped.
macro_rules! db_or_skip {
    ($backend:expr, $test:expr) => {
        match test_support::TestDb::new($backend).await {
            Some(db) => db,
            None => return test_support::skipped($test),
        }
    };
}

/// A running app on the backend, or return after saying why the test is skipped.
macro_rules! app_or_skip {
    ($backend:expr, $test:expr) => {
        match test_support::TestApp::spawn($backend).await {
            Some(app) => app,
            None => return test_support::skipped($test),
        }
    };
}

mod bad_input;
mod channels;
mod conformance;
mod conformance_work;
mod connections;
mod environments;
mod hardening;
mod importer;
mod isolation;
mod moto;
mod organizations;
mod project_files;
mod push;
mod rules;
mod setup_tools;
mod snapshots;
mod sources;
mod stream;
mod timeline;
mod tokens;
mod web_view;
