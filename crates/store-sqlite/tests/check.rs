//! Damaged blobs: a read checks the file's size against the index and quarantines a
//! missing or wrong-size blob (`StoreError::Damaged`); `check` verifies size and
//! hash (BLAKE3, or SHA-256 for older blobs) of every blob, finds orphans and
//! reference-count mismatches, and with `quarantine` sets the damage aside.

use buudien_store::{BlobId, MailStore, NewAccount, PasswordRecord, Quota, StoreError};
use buudien_store_sqlite::{CheckOptions, CheckReport, Problem, ProblemKind, SqliteStore};
use buudien_types::{Address, Domain};
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use tokio::io::AsyncReadExt;

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn pw() -> PasswordRecord {
    PasswordRecord {
        hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        scram_sha256: "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5".into(),
    }
}

fn blob_path(dir: &Path, blob: &BlobId) -> PathBuf {
    let hex = blob.to_hex();
    dir.join("blobs").join(&hex[..2]).join(&hex[2..4]).join(hex)
}

fn message(n: usize) -> Vec<u8> {
    format!("Subject: message {n}\r\n\r\nbody of message {n}, long enough to cut\r\n").into_bytes()
}

/// A store with `n` messages delivered to ann, each in a file of its own (these tests
/// damage files); their blobs in delivery order.
async fn store_with(dir: &Path, n: usize) -> (SqliteStore, Vec<BlobId>) {
    let s = ok(SqliteStore::open(dir));
    s.set_inline_max(0);
    ok(s.add_domain(&ok(Domain::parse("a.example"))).await);
    let id = ok(s
        .add_account(NewAccount {
            address: ok(Address::parse("ann@a.example")),
            password: pw(),
            quota: Quota::default(),
        })
        .await);
    for i in 0..n {
        ok(s.deliver(&[id], &message(i), SystemTime::now()).await);
    }
    let drop_ = ok(s.open_maildrop(id).await);
    let blobs = drop_.entries.iter().map(|e| e.blob).collect();
    (s, blobs)
}

fn run_check(s: &SqliteStore, quarantine: bool) -> (CheckReport, Vec<Problem>) {
    let mut found = Vec::new();
    let report = ok(s.check(CheckOptions { quarantine }, &mut |p| found.push(p.clone())));
    (report, found)
}

fn kind_of(found: &[Problem], blob: &BlobId) -> Option<ProblemKind> {
    found
        .iter()
        .find(|p| p.blob == *blob)
        .map(|p| p.kind.clone())
}

async fn read_all(s: &SqliteStore, blob: &BlobId) -> Result<Vec<u8>, StoreError> {
    let mut r = s.read_blob(blob).await?;
    let mut v = Vec::new();
    r.read_to_end(&mut v).await?;
    Ok(v)
}

#[tokio::test]
async fn check_finds_each_kind_of_damage_and_quarantines_it() {
    let dir = ok(tempfile::tempdir());
    let (s, b) = store_with(dir.path(), 4).await;
    let (truncated, flipped, deleted, sound) = (b[0], b[1], b[2], b[3]);
    let (clean, none) = run_check(&s, false);
    assert!(none.is_empty(), "{none:?}");
    assert_eq!((clean.blobs, clean.verified, clean.problems), (4, 4, 0));
    assert!(clean.bytes > 0);

    // Truncate one, flip a byte of another (same size), delete a third, and leave a
    // file that has no row.
    let p = blob_path(dir.path(), &truncated);
    let bytes = ok(std::fs::read(&p));
    ok(std::fs::write(&p, &bytes[..10]));
    let p = blob_path(dir.path(), &flipped);
    let mut bytes = ok(std::fs::read(&p));
    bytes[12] ^= 0x20;
    ok(std::fs::write(&p, &bytes));
    ok(std::fs::remove_file(blob_path(dir.path(), &deleted)));
    let orphan = BlobId([0xab; 32]);
    let p = blob_path(dir.path(), &orphan);
    ok(std::fs::create_dir_all(ok(p.parent().ok_or("no parent"))));
    ok(std::fs::write(&p, b"nobody's"));

    let (report, found) = run_check(&s, false);
    assert_eq!(report.problems, 4, "{found:?}");
    assert_eq!((report.verified, report.quarantined_now), (1, 0));
    assert!(matches!(
        kind_of(&found, &truncated),
        Some(ProblemKind::WrongSize { found: 10, .. })
    ));
    assert!(matches!(
        kind_of(&found, &flipped),
        Some(ProblemKind::WrongHash { .. })
    ));
    assert!(matches!(
        kind_of(&found, &deleted),
        Some(ProblemKind::Missing { .. })
    ));
    assert_eq!(kind_of(&found, &orphan), Some(ProblemKind::Orphan));
    assert_eq!(kind_of(&found, &sound), None);
    let line = found
        .iter()
        .find(|p| p.blob == truncated)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        line.starts_with(&format!("wrong-size {}", truncated.to_hex())),
        "{line}"
    );
    assert!(line.contains("ann@a.example"), "{line}");
    // Looking changes nothing.
    assert!(blob_path(dir.path(), &flipped).exists());

    let (report, found) = run_check(&s, true);
    assert_eq!(
        (report.problems, report.quarantined_now),
        (4, 3),
        "{found:?}"
    );
    for blob in [truncated, flipped] {
        assert!(!blob_path(dir.path(), &blob).exists());
    }
    let kept = ok(std::fs::read_dir(dir.path().join("quarantine"))).count();
    assert_eq!(kept, 2, "the two damaged files are kept aside");

    // Next time they are listed as quarantined, not as new problems.
    let (report, found) = run_check(&s, false);
    assert_eq!((report.problems, report.quarantined), (1, 3), "{found:?}");
    for blob in [truncated, flipped, deleted] {
        assert!(matches!(
            kind_of(&found, &blob),
            Some(ProblemKind::Quarantined { .. })
        ));
    }
    // Reads of the damaged fail as such; the sound one is served.
    for blob in [truncated, flipped, deleted] {
        let e = read_all(&s, &blob).await.err();
        assert!(matches!(e, Some(StoreError::Damaged(_))), "{e:?}");
    }
    assert_eq!(ok(read_all(&s, &sound).await), message(3));
}

#[tokio::test]
async fn a_wrong_size_blob_read_is_damaged_and_quarantined_once() {
    let dir = ok(tempfile::tempdir());
    let (s, b) = store_with(dir.path(), 2).await;
    let p = blob_path(dir.path(), &b[0]);
    let bytes = ok(std::fs::read(&p));
    ok(std::fs::write(&p, &bytes[..bytes.len() - 3]));

    let e = read_all(&s, &b[0]).await.err();
    let Some(StoreError::Damaged(text)) = e else {
        panic!("{e:?}")
    };
    assert!(
        text.contains("wrong size") && text.contains("quarantined"),
        "{text}"
    );
    assert!(!StoreError::Damaged(text.clone()).is_temporary());
    assert!(!p.exists(), "the file moved away");
    let aside = ok(std::fs::read_dir(dir.path().join("quarantine")))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    assert_eq!(aside.len(), 1);
    assert!(aside[0].starts_with(&b[0].to_hex()), "{aside:?}");
    // Again: known, answered at once, not moved again.
    let e = read_all(&s, &b[0]).await.err();
    assert!(
        matches!(&e, Some(StoreError::Damaged(t)) if t.contains("is quarantined")),
        "{e:?}"
    );
    // The other message is served; a blob that was never stored is not "damaged".
    assert_eq!(ok(read_all(&s, &b[1]).await), message(1));
    let e = read_all(&s, &BlobId([1; 32])).await.err();
    assert!(matches!(e, Some(StoreError::NotFound(_))), "{e:?}");
    // A missing file is damage too.
    ok(std::fs::remove_file(blob_path(dir.path(), &b[1])));
    let e = read_all(&s, &b[1]).await.err();
    assert!(
        matches!(&e, Some(StoreError::Damaged(t)) if t.contains("missing")),
        "{e:?}"
    );
    let (report, found) = run_check(&s, false);
    assert_eq!((report.problems, report.quarantined), (0, 2), "{found:?}");
}

/// The same bytes delivered again heal a quarantined blob: the file is back, the
/// quarantine row is gone, and the first email reads again.
#[tokio::test]
async fn delivering_the_same_bytes_again_heals_a_quarantined_blob() {
    let dir = ok(tempfile::tempdir());
    let (s, b) = store_with(dir.path(), 1).await;
    ok(std::fs::remove_file(blob_path(dir.path(), &b[0])));
    let e = read_all(&s, &b[0]).await.err();
    assert!(matches!(e, Some(StoreError::Damaged(_))), "{e:?}");
    let (report, _) = run_check(&s, false);
    assert_eq!(report.quarantined, 1);
    let ann = ok(s.account(&ok(Address::parse("ann@a.example"))).await);
    let ann = ann.map(|a| a.id).unwrap_or_else(|| panic!("no account"));
    ok(s.deliver(&[ann], &message(0), SystemTime::now()).await);
    assert_eq!(ok(read_all(&s, &b[0]).await), message(0));
    let (report, found) = run_check(&s, false);
    assert_eq!((report.problems, report.quarantined), (0, 0), "{found:?}");
}

#[tokio::test]
async fn check_finds_reference_count_mismatches() {
    let dir = ok(tempfile::tempdir());
    let (s, b) = store_with(dir.path(), 2).await;
    let db = ok(rusqlite::Connection::open(
        dir.path().join("buudien.sqlite"),
    ));
    ok(db.execute("UPDATE blobs SET refcount = 3 WHERE id = ?1", [&b[0].0[..]]));
    let (report, found) = run_check(&s, false);
    assert_eq!(report.problems, 1, "{found:?}");
    assert_eq!(
        kind_of(&found, &b[0]),
        Some(ProblemKind::Refcount {
            recorded: 3,
            references: 1
        })
    );
    assert!(found[0].to_string().starts_with("refcount "), "{found:?}");
}

#[test]
fn a_version_5_database_gains_the_quarantine_table() {
    let dir = ok(tempfile::tempdir());
    drop(ok(SqliteStore::open(dir.path())));
    let db = ok(rusqlite::Connection::open(
        dir.path().join("buudien.sqlite"),
    ));
    ok(db.execute_batch(
        "DROP TABLE quarantine; DROP TRIGGER email_text_gone; DROP TABLE text_gone;
         DROP TABLE email_text;
         DROP INDEX emails_text_pending; ALTER TABLE emails DROP COLUMN text_state;
         DROP INDEX emails_blob; DROP INDEX queue_blob; ALTER TABLE blobs DROP COLUMN data;
         DROP INDEX changes_uid;
         PRAGMA user_version = 5;",
    ));
    drop(db);
    drop(ok(SqliteStore::open(dir.path())));
    let db = ok(rusqlite::Connection::open(
        dir.path().join("buudien.sqlite"),
    ));
    let v: i64 = ok(db.query_row("PRAGMA user_version", [], |r| r.get(0)));
    assert_eq!(v, 11);
    let n: i64 = ok(db.query_row("SELECT count(*) FROM quarantine", [], |r| r.get(0)));
    assert_eq!(n, 0);
}

#[tokio::test]
async fn garbage_whose_file_went_is_not_damage() {
    let dir = ok(tempfile::tempdir());
    let (s, b) = store_with(dir.path(), 1).await;
    let inbox = ok(s
        .mailboxes(ok(s.account(&ok(Address::parse("ann@a.example"))).await).map_or(0, |a| a.id))
        .await);
    let inbox = inbox.iter().find(|m| m.name == "INBOX").map(|m| m.id);
    let Some(inbox) = inbox else {
        panic!("no INBOX")
    };
    assert_eq!(ok(s.expunge(inbox, &[buudien_types::Uid(1)]).await), 1);
    // Unreferenced now; its file going first is what garbage collection does.
    ok(std::fs::remove_file(blob_path(dir.path(), &b[0])));
    let e = read_all(&s, &b[0]).await.err();
    assert!(matches!(e, Some(StoreError::NotFound(_))), "{e:?}");
    assert!(!dir.path().join("quarantine").exists());
    let (report, found) = run_check(&s, false);
    assert_eq!((report.problems, report.garbage), (0, 1), "{found:?}");
}

#[test]
fn check_beside_a_busy_writer_reports_nothing() {
    let dir = ok(tempfile::tempdir());
    let rt = ok(tokio::runtime::Runtime::new());
    let (s, _) = rt.block_on(store_with(dir.path(), 20));
    let writer = s.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let done2 = done.clone();
    let task = rt.spawn(async move {
        let id = ok(writer.account(&ok(Address::parse("ann@a.example"))).await).map_or(0, |a| a.id);
        let mut n = 100;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            ok(writer.deliver(&[id], &message(n), SystemTime::now()).await);
            ok(writer.collect_garbage().await);
            done2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            n += 1;
        }
        n - 100
    });
    // At least 5 checks, and until the writer has stored a few messages meanwhile.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut rounds = 0;
    while rounds < 5 || done.load(std::sync::atomic::Ordering::Relaxed) < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never got going"
        );
        let (report, found) = run_check(&s, false);
        assert!(found.is_empty(), "{found:?}");
        assert!(report.verified >= 20);
        rounds += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = ok(rt.block_on(task));
    assert!(written > 0, "the writer ran");
}

/// Files under `blobs/`.
fn blob_files(dir: &Path) -> usize {
    fn walk(p: &Path) -> usize {
        std::fs::read_dir(p).map_or(0, |rd| {
            rd.flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() { walk(&p) } else { 1 }
                })
                .sum()
        })
    }
    walk(&dir.join("blobs"))
}

#[tokio::test]
async fn small_messages_live_in_the_database_and_large_ones_in_files() {
    let dir = ok(tempfile::tempdir());
    let (s, _) = store_with(dir.path(), 0).await;
    s.set_inline_max(buudien_store_sqlite::DEFAULT_INLINE_MAX);
    let ann = ok(s.account(&ok(Address::parse("ann@a.example"))).await).map_or(0, |a| a.id);
    let small = message(1);
    let mut large = b"Subject: large\r\n\r\n".to_vec();
    large.resize(200 * 1024, b'x');
    ok(s.deliver(&[ann], &small, SystemTime::now()).await);
    ok(s.deliver(&[ann], &large, SystemTime::now()).await);
    assert_eq!(
        blob_files(dir.path()),
        1,
        "only the large message has a file"
    );
    let drop_ = ok(s.open_maildrop(ann).await);
    let got: Vec<Vec<u8>> = {
        let mut v = Vec::new();
        for e in &drop_.entries {
            v.push(ok(read_all(&s, &e.blob).await));
        }
        v
    };
    assert_eq!(got, vec![small.clone(), large.clone()]);
    let db = ok(rusqlite::Connection::open(
        dir.path().join("buudien.sqlite"),
    ));
    let inline: i64 = ok(db.query_row(
        "SELECT count(*) FROM blobs WHERE data IS NOT NULL",
        [],
        |r| r.get(0),
    ));
    assert_eq!(inline, 1);
    let (report, found) = run_check(&s, false);
    assert!(found.is_empty(), "{found:?}");
    assert_eq!(report.verified, 2);
    // Expunged and collected: the row and its bytes go; the file too.
    let inbox = ok(s.mailboxes(ann).await);
    let inbox = inbox.iter().find(|m| m.name == "INBOX").map_or(0, |m| m.id);
    let uids: Vec<_> = drop_.entries.iter().map(|e| e.uid).collect();
    assert_eq!(ok(s.expunge(inbox, &uids).await), 2);
    drop(drop_);
    ok(s.collect_garbage().await);
    let rows: i64 = ok(db.query_row("SELECT count(*) FROM blobs", [], |r| r.get(0)));
    assert_eq!((rows, blob_files(dir.path())), (0, 0));
}

#[tokio::test]
async fn check_hashes_inline_blobs_and_sets_bad_ones_aside() {
    let dir = ok(tempfile::tempdir());
    let (s, _) = store_with(dir.path(), 0).await;
    s.set_inline_max(buudien_store_sqlite::DEFAULT_INLINE_MAX);
    let ann = ok(s.account(&ok(Address::parse("ann@a.example"))).await).map_or(0, |a| a.id);
    let good = message(7);
    ok(s.deliver(&[ann], &good, SystemTime::now()).await);
    let blob = ok(s.open_maildrop(ann).await).entries[0].blob;
    // Same length, other bytes: only the hash can tell.
    let mut bad = good.clone();
    bad[0] = b'X';
    let db = ok(rusqlite::Connection::open(
        dir.path().join("buudien.sqlite"),
    ));
    ok(db.execute("UPDATE blobs SET data = ?1", [&bad]));
    let (_, found) = run_check(&s, false);
    assert_eq!(
        kind_of(&found, &blob),
        Some(ProblemKind::WrongHash {
            size: good.len() as u64
        })
    );
    assert!(!found[0].quarantined_now);
    let (_, found) = run_check(&s, true);
    assert!(found[0].quarantined_now, "{found:?}");
    // The bad bytes wait in quarantine/ for the operator; reads fail as damaged.
    let kept: Vec<_> = ok(std::fs::read_dir(dir.path().join("quarantine")))
        .flatten()
        .map(|e| ok(std::fs::read(e.path())))
        .collect();
    assert_eq!(kept, vec![bad]);
    assert!(matches!(
        read_all(&s, &blob).await,
        Err(StoreError::Damaged(_))
    ));
    let (_, found) = run_check(&s, false);
    assert!(found.iter().all(Problem::is_known), "{found:?}");
    // The same message delivered again heals it.
    ok(s.deliver(&[ann], &good, SystemTime::now()).await);
    assert_eq!(ok(read_all(&s, &blob).await), good);
    let (_, found) = run_check(&s, false);
    assert!(found.is_empty(), "{found:?}");
}

/// The SHA-256 of `bytes`: the blob id of stores written before ids were BLAKE3.
fn sha256(bytes: &[u8]) -> BlobId {
    use sha2::Digest;
    BlobId(sha2::Sha256::digest(bytes).into())
}

#[tokio::test]
async fn blobs_named_by_sha256_from_before_blake3_still_check_and_read() {
    let dir = ok(tempfile::tempdir());
    // Two messages in files, one in the database.
    let (s, files) = store_with(dir.path(), 2).await;
    s.set_inline_max(buudien_store_sqlite::DEFAULT_INLINE_MAX);
    let ann = ok(s.account(&ok(Address::parse("ann@a.example"))).await).map_or(0, |a| a.id);
    ok(s.deliver(&[ann], &message(9), SystemTime::now()).await);
    let new = ok(s.open_maildrop(ann).await).entries;
    let blobs: Vec<BlobId> = new.iter().map(|e| e.blob).collect();
    assert_eq!(blobs[..2], files[..]);
    for (i, b) in blobs.iter().enumerate() {
        let n = if i == 2 { 9 } else { i };
        assert_eq!(
            *b,
            BlobId::of(&[&message(n)]),
            "new blobs are named by BLAKE3"
        );
    }
    drop(s);
    // Rename every blob to the SHA-256 of its bytes, as an older buudien named it.
    let db = ok(rusqlite::Connection::open(
        dir.path().join("buudien.sqlite"),
    ));
    ok(db.execute_batch("PRAGMA foreign_keys = OFF"));
    let mut old = Vec::new();
    for (i, b) in blobs.iter().enumerate() {
        let n = if i == 2 { 9 } else { i };
        let sha = sha256(&message(n));
        if i < 2 {
            let to = blob_path(dir.path(), &sha);
            ok(std::fs::create_dir_all(to.parent().unwrap_or(dir.path())));
            ok(std::fs::rename(blob_path(dir.path(), b), &to));
        }
        ok(db.execute("UPDATE blobs SET id = ?1 WHERE id = ?2", [&sha.0, &b.0]));
        ok(db.execute(
            "UPDATE emails SET blob_id = ?1 WHERE blob_id = ?2",
            [&sha.0, &b.0],
        ));
        old.push(sha);
    }
    drop(db);
    let s = ok(SqliteStore::open(dir.path()));
    let (report, found) = run_check(&s, false);
    assert!(found.is_empty(), "{found:?}");
    assert_eq!(report.verified, 3);
    assert_eq!(ok(read_all(&s, &old[0]).await), message(0));
    assert_eq!(ok(read_all(&s, &old[2]).await), message(9));
    // Damage is still found in such a file: same length, other bytes.
    let path = blob_path(dir.path(), &old[1]);
    let mut bytes = ok(std::fs::read(&path));
    bytes[0] ^= 1;
    ok(std::fs::write(&path, &bytes));
    let (_, found) = run_check(&s, false);
    assert_eq!(
        kind_of(&found, &old[1]),
        Some(ProblemKind::WrongHash {
            size: message(1).len() as u64
        })
    );
    assert_eq!(found.len(), 1, "{found:?}");
}
