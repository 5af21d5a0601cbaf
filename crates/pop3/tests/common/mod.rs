//! The store the POP3 session tests run on: SQLite, or PostgreSQL with the feature
//! `test-postgres`.

#![allow(clippy::unwrap_used, missing_docs, dead_code)]

#[cfg(feature = "test-postgres")]
pub use buudien_store_postgres::{PgStore as TestStore, testing};
/// The store the tests run on, and its fault injection (`testing`): SQLite in a temp
/// dir; with the feature `test-postgres`, PostgreSQL on a fresh database of the
/// throwaway test server. Both backends' `testing` modules have one shape.
#[cfg(not(feature = "test-postgres"))]
pub use buudien_store_sqlite::{SqliteStore as TestStore, testing};
pub use testing::open_store;
