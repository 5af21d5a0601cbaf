//! Fault injection for tests of this crate and of the protocol crates (feature
//! `testing`): damaging stored messages, whether in files of their own
//! (`blobs/xx/yy/<id hex>`) or kept in the database (`blobs.data`). The same
//! functions exist for PostgreSQL (`buudien_store_postgres::testing`), so a test
//! damages either backend alike.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::SqliteStore;
use std::path::{Path, PathBuf};

/// A new store in `dir` (the PostgreSQL backend's `testing::open_store` has the same
/// shape, so a test picks a backend by its import alone).
pub async fn open_store(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir).unwrap_or_else(|e| panic!("opening the store: {e}"))
}

/// The message files under `dir`'s `blobs/`.
fn blob_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.join("blobs")];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn db(store: &SqliteStore) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(store.data_dir().join("buudien.sqlite"))
        .unwrap_or_else(|e| panic!("opening the database: {e}"));
    c.busy_timeout(std::time::Duration::from_secs(30)).unwrap();
    c
}

/// Cuts the stored bytes of the message `content` (of every message when `None`) to
/// their first `keep` octets. Returns how many were cut.
pub async fn truncate_blobs(store: &SqliteStore, content: Option<&[u8]>, keep: usize) -> usize {
    let mut cut = 0;
    for p in blob_files(store.data_dir()) {
        let bytes = std::fs::read(&p).unwrap();
        if content.is_none_or(|c| c == bytes) {
            std::fs::write(&p, &bytes[..keep.min(bytes.len())]).unwrap();
            cut += 1;
        }
    }
    let db = db(store);
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    cut += match content {
        Some(c) => db.execute(
            "UPDATE blobs SET data = substr(data, 1, ?1) WHERE data = ?2",
            rusqlite::params![keep, c],
        ),
        None => db.execute(
            "UPDATE blobs SET data = substr(data, 1, ?1) WHERE data IS NOT NULL",
            [keep],
        ),
    }
    .unwrap_or_else(|e| panic!("cutting blobs: {e}"));
    cut
}

/// Takes the bytes of every message out of the store (the index keeps its rows).
/// Returns how many messages' bytes went.
pub async fn remove_blob_bytes(store: &SqliteStore) -> usize {
    let files = blob_files(store.data_dir());
    for p in &files {
        std::fs::remove_file(p).unwrap();
    }
    let rows = db(store)
        .execute("UPDATE blobs SET data = NULL WHERE data IS NOT NULL", [])
        .unwrap_or_else(|e| panic!("removing blob bytes: {e}"));
    files.len() + rows
}
