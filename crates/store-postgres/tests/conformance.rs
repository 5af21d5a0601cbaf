//! Runs the store conformance suite against the PostgreSQL backend, each case on a
//! fresh database of one throwaway server (see `buudien_store_postgres::testing`).

use buudien_store_postgres::testing;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_conforms() {
    let pg = testing::server();
    buudien_store::conformance::run_all(|| async { (pg.store().await, ()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_queue_conforms() {
    let pg = testing::server();
    buudien_store::conformance_queue::run_queue(|| async { (pg.store().await, ()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_mailboxes_conform() {
    let pg = testing::server();
    buudien_store::conformance_mailbox::run_mailbox(|| async { (pg.store().await, ()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sync_conforms() {
    let pg = testing::server();
    buudien_store::conformance_sync::run_sync(|| async { (pg.store().await, ()) }).await;
}
