//! `PgStore` with its blobs in S3-compatible object storage (a throwaway moto server,
//! see `moto`): the store conformance suites pass on it; the bytes land in the bucket
//! and not in `blob_chunks`, and are read back in ranges; a blob that exists is not
//! uploaded again; collection deletes the object only after the row, finishes
//! deletions an outage interrupted, and never deletes the object of a blob that was
//! delivered again meanwhile; an outage during a delivery is a temporary error that
//! leaves no row; and deliveries of the same bytes racing collection on another node
//! never leave a row without its object.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use buudien_store_postgres::testing;
mod moto;

use buudien_store::*;
use buudien_store_postgres::PgStore;
use buudien_types::{Address, Domain};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use std::time::SystemTime;
use tokio::io::AsyncReadExt;

fn ok<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// A store on a fresh database and a fresh bucket of the shared moto server.
async fn s3_store() -> PgStore {
    let url = testing::server().fresh_db().await;
    let m = moto::shared();
    let bucket = m.fresh_bucket();
    ok(PgStore::connect_with_s3(&url, 8, &m.settings(&bucket)).await)
}

async fn account(s: &PgStore, who: &str) -> AccountId {
    let a = Address::parse(who).unwrap();
    match s.add_domain(&Domain::parse(a.domain_str()).unwrap()).await {
        Ok(()) | Err(StoreError::Exists(_)) => {}
        Err(e) => panic!("{e}"),
    }
    ok(s.add_account(NewAccount {
        address: a,
        password: PasswordRecord {
            hash: "$argon2id$x".into(),
            scram_sha256: "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5".into(),
        },
        quota: Quota::default(),
    })
    .await)
}

/// One number from the database.
async fn count(url: &str, q: &str) -> i64 {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let n: i64 = client.query_one(q, &[]).await.unwrap().get(0);
    drop(client);
    let _ = driver.await;
    n
}

async fn read_all(s: &PgStore, blob: &BlobId) -> Vec<u8> {
    let mut r = ok(s.read_blob(blob).await);
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.unwrap();
    out
}

fn message(subject: &str, body_len: usize) -> Vec<u8> {
    let mut m = format!("From: a@example.org\r\nSubject: {subject}\r\n\r\n").into_bytes();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.!\r\n";
    while m.len() < body_len {
        m.extend_from_slice(line);
    }
    m
}

/// The blob of the message with UID `uid` in `mailbox`.
async fn blob_of(s: &PgStore, mailbox: MailboxId) -> BlobId {
    let msgs = ok(s.messages(mailbox).await);
    msgs.last().expect("a message").blob
}

fn key(blob: &BlobId) -> Path {
    Path::from(format!("blobs/{}", blob.to_hex()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_conforms() {
    buudien_store::conformance::run_all(|| async { (s3_store().await, ()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_queue_conforms() {
    buudien_store::conformance_queue::run_queue(|| async { (s3_store().await, ()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_mailboxes_conform() {
    buudien_store::conformance_mailbox::run_mailbox(|| async { (s3_store().await, ()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_sync_conforms() {
    buudien_store::conformance_sync::run_sync(|| async { (s3_store().await, ()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_land_in_the_bucket_and_stream_back() {
    let url = testing::server().fresh_db().await;
    let m = moto::shared();
    let bucket = m.fresh_bucket();
    let s = ok(PgStore::connect_with_s3(&url, 8, &m.settings(&bucket)).await);
    let a = account(&s, "big@example.org").await;
    // 3.5 MiB: four ranges of 1 MiB when read.
    let big = message("big", 3 * (1 << 20) + (1 << 19));
    let d = ok(s.deliver(&[a], &big, SystemTime::now()).await);
    let blob = blob_of(&s, d[0].mailbox).await;
    let client = m.client(&bucket);
    let stored = client
        .get(&key(&blob))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(stored.len(), big.len());
    assert!(stored[..] == big[..], "the object holds the message");
    assert_eq!(count(&url, "SELECT count(*) FROM blob_chunks").await, 0);
    assert_eq!(count(&url, "SELECT count(*) FROM blobs").await, 1);
    assert!(read_all(&s, &blob).await == big, "read back in ranges");
    // A small one: one range.
    let small = message("small", 300);
    let d = ok(s.deliver(&[a], &small, SystemTime::now()).await);
    let blob = blob_of(&s, d[0].mailbox).await;
    assert_eq!(read_all(&s, &blob).await, small);
    assert_eq!(count(&url, "SELECT count(*) FROM blob_chunks").await, 0);
    // The text index reads its messages from the bucket too.
    assert!(s.has_text_index(), "the test server has pg_trgm");
    let hits = ok(s.search_text(d[0].mailbox, "wxyzabcdefg", true).await).unwrap();
    assert_eq!(
        hits.matched,
        [d[0].uid],
        "the small body, read from the bucket"
    );
    assert_eq!(hits.unknown.len(), 1, "the big one is left to a scan");
    // A blob whose object is gone behind the store's back is damage, not a short read.
    client.delete(&key(&blob)).await.unwrap();
    match s.read_blob(&blob).await {
        Err(StoreError::Damaged(e)) => assert!(e.contains("no object"), "{e}"),
        Err(e) => panic!("expected damage, got {e}"),
        Ok(_) => panic!("read a blob without its object"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_in_postgres_stay_readable_after_switching_to_s3() {
    let url = testing::server().fresh_db().await;
    let plain = ok(PgStore::connect(&url, 4).await);
    let a = account(&plain, "old@example.org").await;
    let old = message("old", 2 * (1 << 20) + 7);
    let d = ok(plain.deliver(&[a], &old, SystemTime::now()).await);
    let blob = blob_of(&plain, d[0].mailbox).await;
    let m = moto::shared();
    let bucket = m.fresh_bucket();
    let s = ok(PgStore::connect_with_s3(&url, 4, &m.settings(&bucket)).await);
    assert!(read_all(&s, &blob).await == old, "chunks still read");
    assert!(m.client(&bucket).head(&key(&blob)).await.is_err());
}

/// Collection deletes rows first and objects after; an outage between leaves the
/// deletions pending (finished by the next collection); a blob delivered again
/// meanwhile keeps its object. An outage during a delivery is a temporary error and
/// leaves no row, while a delivery of bytes the store has needs no upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_and_outages() {
    let url = testing::server().fresh_db().await;
    let m = moto::shared();
    let bucket = m.fresh_bucket();
    let s = ok(PgStore::connect_with_s3(&url, 4, &m.settings(&bucket)).await);
    let client = m.client(&bucket);
    let a = account(&s, "gc@example.org").await;
    let one = message("one", 5000);
    let two = message("two", 5000);
    let d1 = ok(s.deliver(&[a], &one, SystemTime::now()).await)[0];
    let d2 = ok(s.deliver(&[a], &two, SystemTime::now()).await)[0];
    let msgs = ok(s.messages(d1.mailbox).await);
    let (b1, b2) = (msgs[0].blob, msgs[1].blob);
    assert!(client.head(&key(&b1)).await.is_ok() && client.head(&key(&b2)).await.is_ok());

    // Plain collection: the row and the object go.
    ok(s.expunge(d1.mailbox, &[d1.uid]).await);
    assert_eq!(ok(s.collect_garbage().await), 1);
    assert!(matches!(
        client.head(&key(&b1)).await,
        Err(object_store::Error::NotFound { .. })
    ));
    assert_eq!(count(&url, "SELECT count(*) FROM blob_deletions").await, 0);

    // A node whose object store is down: a second moto, stopped.
    let mut down = moto::Moto::start();
    down.bucket(&bucket);
    let broken = ok(PgStore::connect_with_s3(&url, 4, &down.settings(&bucket)).await);
    down.stop();
    // Bytes the store already has: no upload, so the delivery works.
    let again = ok(broken.deliver(&[a], &two, SystemTime::now()).await)[0];
    assert_eq!(blob_of(&broken, again.mailbox).await, b2);
    // New bytes: a temporary error, and no row.
    let three = message("three", 5000);
    let before = count(&url, "SELECT count(*) FROM blobs").await;
    match broken.deliver(&[a], &three, SystemTime::now()).await {
        Err(e) => assert!(e.is_temporary(), "{e:?}"),
        Ok(_) => panic!("delivered without the object store"),
    }
    assert_eq!(count(&url, "SELECT count(*) FROM blobs").await, before);
    assert_eq!(ok(s.messages(d1.mailbox).await).len(), 2, "no entry either");

    // Collection on the broken node: rows go, the objects' deletion waits.
    ok(s.expunge(d2.mailbox, &[d2.uid, again.uid]).await);
    match broken.collect_garbage().await {
        Err(e) => assert!(e.is_temporary(), "{e:?}"),
        Ok(n) => panic!("collected {n} without the object store"),
    }
    assert_eq!(count(&url, "SELECT count(*) FROM blobs").await, 0);
    assert_eq!(count(&url, "SELECT count(*) FROM blob_deletions").await, 1);
    assert!(client.head(&key(&b2)).await.is_ok(), "object kept so far");
    // The same bytes delivered again meanwhile: a new row, the deletion forgotten …
    let back = ok(s.deliver(&[a], &two, SystemTime::now()).await)[0];
    assert_eq!(count(&url, "SELECT count(*) FROM blob_deletions").await, 0);
    // … so collection keeps the object, and the message reads.
    ok(s.collect_garbage().await);
    assert_eq!(blob_of(&s, back.mailbox).await, b2);
    assert!(read_all(&s, &b2).await == two);
    // Gone for good: an interrupted deletion is finished by a working node.
    ok(s.expunge(back.mailbox, &[back.uid]).await);
    assert!(broken.collect_garbage().await.is_err());
    assert_eq!(count(&url, "SELECT count(*) FROM blob_deletions").await, 1);
    assert_eq!(ok(s.collect_garbage().await), 0, "no rows left to collect");
    assert_eq!(count(&url, "SELECT count(*) FROM blob_deletions").await, 0);
    assert!(matches!(
        client.head(&key(&b2)).await,
        Err(object_store::Error::NotFound { .. })
    ));
}

/// Two nodes race: one delivers the same bytes again and again and expunges them,
/// the other collects all the while. Whenever a delivery is in the mailbox its bytes
/// read back, and at the end every row has its object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_racing_deliveries_of_the_same_bytes() {
    let url = testing::server().fresh_db().await;
    let m = moto::shared();
    let bucket = m.fresh_bucket();
    let a = ok(PgStore::connect_with_s3(&url, 4, &m.settings(&bucket)).await);
    let b = ok(PgStore::connect_with_s3(&url, 4, &m.settings(&bucket)).await);
    let who = account(&a, "race@example.org").await;
    let same = message("same", 3000);
    let collector = tokio::spawn(async move {
        let mut rounds = 0;
        let stop = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < stop {
            b.collect_garbage().await?;
            rounds += 1;
            if rounds == 400 {
                break;
            }
        }
        Ok::<_, StoreError>(rounds)
    });
    for _ in 0..80 {
        let d = ok(a.deliver(&[who], &same, SystemTime::now()).await)[0];
        let blob = blob_of(&a, d.mailbox).await;
        assert!(
            read_all(&a, &blob).await == same,
            "a delivered message reads"
        );
        ok(a.expunge(d.mailbox, &[d.uid]).await);
    }
    let rounds = ok(collector.await.unwrap());
    assert!(rounds > 1, "the collector ran while the deliveries did");
    let d = ok(a.deliver(&[who], &same, SystemTime::now()).await)[0];
    ok(a.collect_garbage().await);
    let blob = blob_of(&a, d.mailbox).await;
    assert!(m.client(&bucket).head(&key(&blob)).await.is_ok());
    assert!(read_all(&a, &blob).await == same);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_fails_at_connect() {
    let url = testing::server().fresh_db().await;
    let m = moto::shared();
    match PgStore::connect_with_s3(&url, 2, &m.settings("no-such-bucket")).await {
        Err(e) => assert!(
            e.is_temporary() && e.to_string().contains("no-such-bucket"),
            "{e}"
        ),
        Ok(_) => panic!("connected to a missing bucket"),
    }
}
