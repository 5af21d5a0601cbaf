//! Runs the store conformance suite against the SQLite backend.

use buudien_store_sqlite::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_conforms() {
    buudien_store::conformance::run_all(|| async {
        let dir = tempfile::TempDir::new().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let store = SqliteStore::open(dir.path()).unwrap_or_else(|e| panic!("open: {e}"));
        (store, dir)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_queue_conforms() {
    buudien_store::conformance_queue::run_queue(|| async {
        let dir = tempfile::TempDir::new().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let store = SqliteStore::open(dir.path()).unwrap_or_else(|e| panic!("open: {e}"));
        (store, dir)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_mailboxes_conform() {
    buudien_store::conformance_mailbox::run_mailbox(|| async {
        let dir = tempfile::TempDir::new().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let store = SqliteStore::open(dir.path()).unwrap_or_else(|e| panic!("open: {e}"));
        (store, dir)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sync_conforms() {
    buudien_store::conformance_sync::run_sync(|| async {
        let dir = tempfile::TempDir::new().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let store = SqliteStore::open(dir.path()).unwrap_or_else(|e| panic!("open: {e}"));
        (store, dir)
    })
    .await;
}
