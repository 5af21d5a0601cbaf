//! The store the POP3 session tests run on: SQLite, or PostgreSQL with the feature
//! `test-postgres`.

#![allow(clippy::unwrap_used, missing_docs, dead_code)]

/// The store the tests run on: SQLite in a temp dir; with the feature `test-postgres`,
/// PostgreSQL on a fresh database of the throwaway test server.
#[cfg(not(feature = "test-postgres"))]
pub type TestStore = buudien_store_sqlite::SqliteStore;
/// The store the tests run on: SQLite in a temp dir; with the feature `test-postgres`,
/// PostgreSQL on a fresh database of the throwaway test server.
#[cfg(feature = "test-postgres")]
pub type TestStore = buudien_store_postgres::PgStore;

/// A new, empty [`TestStore`] (SQLite keeps its files in `dir`).
#[cfg(not(feature = "test-postgres"))]
pub async fn open_store(dir: &std::path::Path) -> TestStore {
    buudien_store_sqlite::SqliteStore::open(dir).unwrap()
}

/// A new, empty [`TestStore`] (on its own database; `dir` is unused).
#[cfg(feature = "test-postgres")]
pub async fn open_store(_dir: &std::path::Path) -> TestStore {
    buudien_store_postgres::testing::server().store().await
}

/// Fault injection: cuts the stored bytes of the message `content` (of every message
/// when `None`) to their first `keep` octets. Returns how many were cut.
#[cfg(not(feature = "test-postgres"))]
pub async fn truncate_blobs(
    store: &TestStore,
    _dir: &std::path::Path,
    content: Option<&[u8]>,
    keep: usize,
) -> usize {
    buudien_store_sqlite::testing::truncate_blobs(store, content, keep).await
}

/// Fault injection: cuts the stored bytes of the message `content` (of every message
/// when `None`) to their first `keep` octets. Returns how many were cut.
#[cfg(feature = "test-postgres")]
pub async fn truncate_blobs(
    store: &TestStore,
    _dir: &std::path::Path,
    content: Option<&[u8]>,
    keep: usize,
) -> usize {
    buudien_store_postgres::testing::truncate_blobs(store, content, keep).await
}

/// Fault injection: takes the bytes of every message out of the store (the index
/// keeps its rows). Returns how many messages' bytes went.
#[cfg(not(feature = "test-postgres"))]
pub async fn remove_blobs(store: &TestStore, _dir: &std::path::Path) -> usize {
    buudien_store_sqlite::testing::remove_blob_bytes(store).await
}

/// Fault injection: takes the bytes of every message out of the store (the index
/// keeps its rows). Returns how many messages' bytes went.
#[cfg(feature = "test-postgres")]
pub async fn remove_blobs(store: &TestStore, _dir: &std::path::Path) -> usize {
    buudien_store_postgres::testing::remove_blob_bytes(store).await
}
