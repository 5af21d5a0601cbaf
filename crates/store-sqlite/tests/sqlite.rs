//! What is particular to the SQLite backend: state survives reopening (a restart or
//! another process), two handles on one directory see each other's writes, and stale
//! temporary files are cleaned while fresh ones are kept.

use buudien_store::{AccountId, MailStore, NewAccount, PasswordRecord, Quota};
use buudien_store_sqlite::SqliteStore;
use buudien_types::{Address, Domain};
use std::time::SystemTime;

fn pw() -> PasswordRecord {
    PasswordRecord {
        hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        scram_sha256: "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5".into(),
    }
}

/// A store in a temporary directory with a.example and ann@a.example (`quota`).
async fn store_with_ann(quota: Quota) -> (tempfile::TempDir, SqliteStore, AccountId) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = SqliteStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    s.add_domain(&Domain::parse("a.example").unwrap_or_else(|e| panic!("{e}")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = s
        .add_account(NewAccount {
            address: Address::parse("ann@a.example").unwrap_or_else(|e| panic!("{e}")),
            password: pw(),
            quota,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (dir, s, id)
}

#[tokio::test]
async fn survives_reopen_and_is_shared_between_handles() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let a = Address::parse("ann@a.example").unwrap_or_else(|e| panic!("{e}"));
    let first = SqliteStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    first
        .add_domain(&Domain::parse("a.example").unwrap_or_else(|e| panic!("{e}")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = first
        .add_account(NewAccount {
            address: a.clone(),
            password: pw(),
            quota: Quota::default(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A second handle (as a CLI process would open) delivers; the first sees it.
    let second = SqliteStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    second
        .deliver(&[id], b"Subject: x\r\n\r\ny\r\n", SystemTime::now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let d = first
        .open_maildrop(id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.entries.len(), 1);
    drop(d);
    drop(first);
    drop(second);
    let again = SqliteStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let d = again
        .open_maildrop(id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.entries.len(), 1);
    assert_eq!(d.entries[0].size, 17);
    let acct = again.account(&a).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(acct.map(|x| x.used_messages), Some(1));
}

#[test]
fn clean_tmp_keeps_fresh_files() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = SqliteStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let fresh = dir.path().join("tmp").join("1.fresh.tmp");
    std::fs::write(&fresh, b"x").unwrap_or_else(|e| panic!("{e}"));
    let old = dir.path().join("tmp").join("1.old.tmp");
    let f = std::fs::File::create(&old).unwrap_or_else(|e| panic!("{e}"));
    let long_ago = SystemTime::now() - std::time::Duration::from_secs(7200);
    f.set_modified(long_ago).unwrap_or_else(|e| panic!("{e}"));
    drop(f);
    assert_eq!(s.clean_tmp().ok(), Some(1));
    assert!(fresh.exists());
    assert!(!old.exists());
}

/// A writer killed between placing a blob file and committing its rows leaves a file
/// with no row: the first garbage collection of the next process removes it, and
/// only it (a referenced blob and files that are not blobs stay).
#[tokio::test]
async fn first_gc_removes_blob_files_without_rows() {
    let (dir, s, id) = store_with_ann(Quota::default()).await;
    // In a file of its own (small messages are otherwise kept in the database).
    s.set_inline_max(0);
    s.deliver(&[id], b"Subject: kept\r\n\r\ny\r\n", SystemTime::now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let blob_files = |d: &std::path::Path| -> Vec<std::path::PathBuf> {
        let mut v = Vec::new();
        for top in std::fs::read_dir(d.join("blobs")).unwrap_or_else(|e| panic!("{e}")) {
            let top = top.unwrap_or_else(|e| panic!("{e}")).path();
            for leaf in std::fs::read_dir(&top).unwrap_or_else(|e| panic!("{e}")) {
                let leaf = leaf.unwrap_or_else(|e| panic!("{e}")).path();
                for f in std::fs::read_dir(&leaf).unwrap_or_else(|e| panic!("{e}")) {
                    v.push(f.unwrap_or_else(|e| panic!("{e}")).path());
                }
            }
        }
        v.sort();
        v
    };
    let kept = blob_files(dir.path());
    assert_eq!(kept.len(), 1);
    drop(s);
    // What a killed writer leaves: a placed file whose rows never committed.
    let orphan_hex = "ab".repeat(32);
    let leaf = dir.path().join("blobs").join("ab").join("ab");
    std::fs::create_dir_all(&leaf).unwrap_or_else(|e| panic!("{e}"));
    let orphan = leaf.join(&orphan_hex);
    std::fs::write(&orphan, b"Subject: lost\r\n\r\n").unwrap_or_else(|e| panic!("{e}"));
    let stranger = leaf.join("README");
    std::fs::write(&stranger, b"not a blob").unwrap_or_else(|e| panic!("{e}"));

    let s = SqliteStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.collect_garbage().await.ok(), Some(1));
    assert!(!orphan.exists());
    assert!(stranger.exists());
    std::fs::remove_file(&stranger).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(blob_files(dir.path()), kept);
    let d = s.open_maildrop(id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.entries.len(), 1);
    drop(d);
    // Later collections do not walk the directory again.
    std::fs::write(&orphan, b"again").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.collect_garbage().await.ok(), Some(0));
    assert!(orphan.exists());
}

/// The free-space reserve: a delivery that would eat into it is a temporary
/// `Full` error and leaves nothing behind; a reserve of 0 turns the check off.
#[tokio::test]
async fn free_space_reserve_refuses_new_mail_with_a_temporary_error() {
    let (dir, s, id) = store_with_ann(Quota::default()).await;
    // More than any test machine has free.
    s.set_min_free_space(u64::MAX / 4);
    let e = s
        .deliver(&[id], b"Subject: x\r\n\r\ny\r\n", SystemTime::now())
        .await
        .err();
    assert!(
        matches!(&e, Some(buudien_store::StoreError::Full(t)) if t.contains("kept for deletions")),
        "{e:?}"
    );
    assert!(e.is_some_and(|e| e.is_temporary()));
    let tmp = std::fs::read_dir(dir.path().join("tmp"))
        .unwrap_or_else(|e| panic!("{e}"))
        .count();
    assert_eq!(tmp, 0, "no temporary file left");
    let d = s.open_maildrop(id).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(d.entries.is_empty());
    drop(d);
    s.set_min_free_space(0);
    s.deliver(&[id], b"Subject: x\r\n\r\ny\r\n", SystemTime::now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Group commit: concurrent deliveries share transactions, yet each is answered on
/// its own. 48 deliveries at once to an account that holds 40 messages: exactly 40
/// succeed (a piece that fails its quota check is rolled back alone), UIDs are 1..40
/// with no gap, and the account's usage counts 40.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deliveries_share_commits_and_fail_alone() {
    let (_dir, s, id) = store_with_ann(Quota {
        bytes: None,
        messages: Some(40),
    })
    .await;
    let a = Address::parse("ann@a.example").unwrap_or_else(|e| panic!("{e}"));
    let tasks: Vec<_> = (0..48)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let msg = format!("Subject: {i}\r\n\r\nmessage {i}\r\n");
                s.deliver(&[id], msg.as_bytes(), SystemTime::now()).await
            })
        })
        .collect();
    let mut ok = 0;
    let mut over = 0;
    for t in tasks {
        match t.await.unwrap_or_else(|e| panic!("{e}")) {
            Ok(_) => ok += 1,
            Err(buudien_store::StoreError::OverQuota(_)) => over += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((ok, over), (40, 8));
    let d = s.open_maildrop(id).await.unwrap_or_else(|e| panic!("{e}"));
    let uids: Vec<u32> = d.entries.iter().map(|e| e.uid.0).collect();
    assert_eq!(uids, (1..=40).collect::<Vec<_>>());
    drop(d);
    let acct = s.account(&a).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(acct.map(|x| x.used_messages), Some(40));
}

/// Garbage collection takes more blobs than one round holds (2,000), in several
/// rounds, and leaves no file behind.
#[tokio::test]
async fn garbage_collection_takes_many_blobs_in_rounds() {
    use buudien_store::{Flags, MailboxStore, MessageSource, NewMessage};
    let (dir, s, id) = store_with_ann(Quota::default()).await;
    let inbox = s
        .mailbox(id, "INBOX")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no INBOX"))
        .id;
    let n = 2_345;
    let messages = (0..n)
        .map(|i| NewMessage {
            source: MessageSource::Bytes(format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes()),
            flags: Flags::default(),
            keywords: Vec::new(),
            received: SystemTime::now(),
        })
        .collect();
    let stored = s
        .append_many(inbox, messages)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let uids: Vec<_> = stored.iter().map(|m| m.uid).collect();
    assert_eq!(
        s.expunge(inbox, &uids)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        n
    );
    let removed = s.collect_garbage().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(removed, n);
    let mut files = 0;
    for d in walk(&dir.path().join("blobs")) {
        files += usize::from(d.is_file());
    }
    assert_eq!(files, 0, "every blob file is gone");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{e}")) {
        let p = e.unwrap_or_else(|e| panic!("{e}")).path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
