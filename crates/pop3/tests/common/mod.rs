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
    _store: &TestStore,
    dir: &std::path::Path,
    content: Option<&[u8]>,
    keep: usize,
) -> usize {
    let mut cut = 0;
    for p in blob_files(dir) {
        let bytes = std::fs::read(&p).unwrap();
        if content.is_none_or(|c| c == bytes) {
            std::fs::write(&p, &bytes[..keep.min(bytes.len())]).unwrap();
            cut += 1;
        }
    }
    cut
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
pub async fn remove_blobs(_store: &TestStore, dir: &std::path::Path) -> usize {
    let files = blob_files(dir);
    for p in &files {
        std::fs::remove_file(p).unwrap();
    }
    files.len()
}

/// Fault injection: takes the bytes of every message out of the store (the index
/// keeps its rows). Returns how many messages' bytes went.
#[cfg(feature = "test-postgres")]
pub async fn remove_blobs(store: &TestStore, _dir: &std::path::Path) -> usize {
    buudien_store_postgres::testing::remove_blob_bytes(store).await
}

/// The message files of a SQLite store in `dir` (`blobs/xx/yy/<sha256 hex>`).
#[cfg(not(feature = "test-postgres"))]
fn blob_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.join("blobs")];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
