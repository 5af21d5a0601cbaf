//! Fault injection (`BUUDIEN_FAULTS`, here through `open_with_faults`): a failure at
//! any storage step of a delivery, a submission or an APPEND is a temporary error,
//! leaves nothing visible (no message, UIDNEXT/HIGHESTMODSEQ/usage/queue unchanged),
//! leaves no file without a row in `tmp/` or `blobs/` and no row without its file, and
//! the same call made again succeeds once. Each runs with messages in files of their
//! own and, where the points apply, with small messages kept in the database.

use buudien_store::{
    AccountId, Envelope, Flags, MailStore, MailboxId, MailboxStore, MessageSource, NewAccount,
    NewMessage, NewRecipient, PasswordRecord, QueueStore, Quota, StoreError, Submission,
};
use buudien_store_sqlite::SqliteStore;
use buudien_types::{Address, Domain};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const POINTS: [&str; 5] = [
    "blob_write",
    "blob_fsync",
    "blob_rename",
    "dir_fsync",
    "commit",
];

const MSG: &[u8] = b"From: a@b.example\r\nSubject: faults\r\n\r\nbody\r\n";
const MSG2: &[u8] = b"From: a@b.example\r\nSubject: second\r\n\r\nmore\r\n";

fn pw() -> PasswordRecord {
    PasswordRecord {
        hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        scram_sha256: "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5".into(),
    }
}

/// A store with one account in a fresh directory, opened with fault plan `plan`.
struct World {
    dir: tempfile::TempDir,
    store: SqliteStore,
    account: AccountId,
    address: Address,
    inbox: MailboxId,
}

/// Messages in files of their own (every fault point applies).
async fn world(plan: &str) -> Result<World, Box<dyn std::error::Error>> {
    world_with(plan, false).await
}

/// With `inline`, small messages are kept in the database (no directory fsync).
async fn world_with(plan: &str, inline: bool) -> Result<World, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open_with_faults(dir.path(), plan)?;
    if !inline {
        store.set_inline_max(0);
    }
    store.add_domain(&Domain::parse("a.example")?).await?;
    let address = Address::parse("ann@a.example")?;
    let account = store
        .add_account(NewAccount {
            address: address.clone(),
            password: pw(),
            quota: Quota::default(),
        })
        .await?;
    let inbox = store.mailbox(account, "INBOX").await?.ok_or("no INBOX")?.id;
    Ok(World {
        dir,
        store,
        account,
        address,
        inbox,
    })
}

/// What a client could see, and the files on disk.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    uidnext: u32,
    highestmodseq: u64,
    messages: u64,
    entries: usize,
    used_messages: u64,
    used_bytes: u64,
    queued: usize,
    tmp_files: usize,
    /// Blobs stored: files, and rows holding their bytes.
    blob_files: usize,
}

fn files_under(d: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(d)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            files_under(&e.path(), out)?;
        } else {
            out.push(e.path());
        }
    }
    Ok(())
}

impl World {
    async fn seen(&self) -> Result<Seen, Box<dyn std::error::Error>> {
        let inbox = self
            .store
            .mailbox(self.account, "INBOX")
            .await?
            .ok_or("no INBOX")?;
        let account = self
            .store
            .account(&self.address)
            .await?
            .ok_or("no account")?;
        let mut tmp = Vec::new();
        files_under(&self.dir.path().join("tmp"), &mut tmp)?;
        let mut blobs = Vec::new();
        files_under(&self.dir.path().join("blobs"), &mut blobs)?;
        let inline = self.check_blobs(&blobs)?;
        Ok(Seen {
            uidnext: inbox.uidnext.0,
            highestmodseq: inbox.highestmodseq,
            messages: inbox.messages,
            entries: self.store.messages(self.inbox).await?.len(),
            used_messages: account.used_messages,
            used_bytes: account.used_bytes,
            queued: self.store.queue_list().await?.len(),
            tmp_files: tmp.len(),
            blob_files: blobs.len() + inline,
        })
    }

    /// Every blob file has a referenced row and every row its file or its bytes;
    /// returns how many rows hold their bytes.
    fn check_blobs(&self, files: &[PathBuf]) -> Result<usize, Box<dyn std::error::Error>> {
        let db = rusqlite::Connection::open(self.dir.path().join("buudien.sqlite"))?;
        let mut stmt =
            db.prepare("SELECT lower(hex(id)), refcount, data IS NOT NULL FROM blobs")?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, bool>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let names: Vec<String> = files
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect();
        for (hex, refcount, inline) in &rows {
            assert!(*refcount > 0, "blob row {hex} without references");
            assert!(
                *inline || names.contains(hex),
                "blob row {hex} without its file"
            );
            assert!(
                !(*inline && names.contains(hex)),
                "blob {hex} both in a file and in its row"
            );
        }
        for name in &names {
            assert!(
                rows.iter().any(|(hex, _, _)| hex == name),
                "blob file {name} without a row"
            );
        }
        Ok(rows.iter().filter(|(_, _, inline)| *inline).count())
    }
}

/// The store calls under test.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// `deliver` to the account (one blob).
    Deliver,
    /// `submit` with a local copy carrying `Return-Path` and a remote recipient (two
    /// blobs).
    SubmitBoth,
    /// `submit` to a remote recipient only (one blob, one queue row).
    SubmitRemote,
    /// APPEND of one message.
    Append,
    /// APPEND of two messages in one transaction (RFC 3502).
    AppendTwo,
}

const OPS: [Op; 5] = [
    Op::Deliver,
    Op::SubmitBoth,
    Op::SubmitRemote,
    Op::Append,
    Op::AppendTwo,
];

impl Op {
    async fn run(self, w: &World) -> Result<(), StoreError> {
        let envelope = Envelope {
            sender: "ann@a.example".into(),
            envid: None,
            ret: None,
            eight_bit: false,
            smtputf8: false,
        };
        let rcpts = [NewRecipient {
            address: "bob@b.example".into(),
            orcpt: None,
            notify: None,
        }];
        let one = |m: &[u8]| NewMessage {
            source: MessageSource::Bytes(m.to_vec()),
            flags: Flags::default(),
            keywords: vec!["$Fault".into()],
            received: SystemTime::now(),
        };
        match self {
            Op::Deliver => {
                w.store
                    .deliver(&[w.account], MSG, SystemTime::now())
                    .await?;
            }
            Op::SubmitBoth | Op::SubmitRemote => {
                let local = [w.account];
                let both = matches!(self, Op::SubmitBoth);
                w.store
                    .submit(Submission {
                        message: MSG,
                        local_prefix: if both {
                            b"Return-Path: <ann@a.example>\r\n"
                        } else {
                            b""
                        },
                        received: SystemTime::now(),
                        local: if both { &local } else { &[] },
                        outbound: Some((&envelope, &rcpts)),
                    })
                    .await?;
            }
            Op::Append => {
                w.store.append_many(w.inbox, vec![one(MSG)]).await?;
            }
            Op::AppendTwo => {
                w.store
                    .append_many(w.inbox, vec![one(MSG), one(MSG2)])
                    .await?;
            }
        }
        Ok(())
    }

    /// (local messages, queued messages, blob files) one successful call adds.
    fn adds(self) -> (u64, usize, usize) {
        match self {
            Op::Deliver | Op::Append => (1, 0, 1),
            Op::SubmitBoth => (1, 1, 2),
            Op::SubmitRemote => (0, 1, 1),
            Op::AppendTwo => (2, 0, 2),
        }
    }

    /// How many blobs one call writes (and places, in a fresh store).
    fn blobs(self) -> usize {
        self.adds().2
    }
}

/// Runs `op` in a store whose plan is `plan`: it fails, temporarily, with nothing
/// visible and no stray file; run again, it succeeds exactly once.
async fn fails_cleanly_then_succeeds(op: Op, plan: &str, inline: bool) -> TestResult {
    let w = world_with(plan, inline).await?;
    let before = w.seen().await?;
    let err = match op.run(&w).await {
        Ok(()) => return Err(format!("{op:?} with {plan} succeeded").into()),
        Err(e) => e,
    };
    assert!(err.is_temporary(), "{op:?} with {plan}: {err:?}");
    assert!(
        matches!(err, StoreError::Io(_)),
        "{op:?} with {plan}: {err:?}"
    );
    assert_eq!(w.seen().await?, before, "{op:?} with {plan} left something");

    op.run(&w).await?;
    let after = w.seen().await?;
    let (local, queued, files) = op.adds();
    let want = Seen {
        uidnext: before.uidnext + u32::try_from(local)?,
        highestmodseq: before.highestmodseq + local,
        messages: before.messages + local,
        entries: before.entries + usize::try_from(local)?,
        used_messages: before.used_messages + local,
        used_bytes: after.used_bytes,
        queued: before.queued + queued,
        tmp_files: 0,
        blob_files: before.blob_files + files,
    };
    assert_eq!(after, want, "{op:?} after {plan}");
    assert_eq!(after.used_bytes > before.used_bytes, local > 0);
    Ok(())
}

#[tokio::test]
async fn every_point_fails_every_write_cleanly() -> TestResult {
    for op in OPS {
        for point in POINTS {
            fails_cleanly_then_succeeds(op, &format!("{point}:1"), false).await?;
        }
    }
    Ok(())
}

/// The same with small messages kept in the database: they pass the same points but
/// the directory fsync, which they never need.
#[tokio::test]
async fn every_point_fails_every_inline_write_cleanly() -> TestResult {
    for op in OPS {
        for point in POINTS.into_iter().filter(|p| *p != "dir_fsync") {
            fails_cleanly_then_succeeds(op, &format!("{point}:1"), true).await?;
        }
    }
    Ok(())
}

/// The second blob of one transaction fails after the first was placed: the first
/// file goes too.
#[tokio::test]
async fn a_failure_at_the_second_blob_removes_the_first() -> TestResult {
    for op in OPS.into_iter().filter(|op| op.blobs() == 2) {
        for point in POINTS.into_iter().filter(|p| *p != "commit") {
            fails_cleanly_then_succeeds(op, &format!("{point}:2"), false).await?;
        }
        for point in ["blob_write", "blob_fsync", "blob_rename"] {
            fails_cleanly_then_succeeds(op, &format!("{point}:2"), true).await?;
        }
    }
    Ok(())
}

/// A message already stored is not disturbed when storing the same bytes again
/// fails: its file (shared, content-addressed) stays, and its row keeps its count.
#[tokio::test]
async fn a_failed_copy_of_a_stored_message_keeps_the_original() -> TestResult {
    for point in POINTS {
        // The first call passes each point once; the second fails at it.
        let w = world(&format!("{point}:2")).await?;
        Op::Deliver.run(&w).await?;
        let before = w.seen().await?;
        assert_eq!(before.blob_files, 1);
        let failed = Op::Deliver.run(&w).await;
        // A live blob is not placed again, so the rename and directory fsync of the
        // second delivery are never reached.
        if matches!(point, "blob_rename" | "dir_fsync") {
            assert!(failed.is_ok(), "{point}: {failed:?}");
            continue;
        }
        assert!(failed.is_err_and(|e| e.is_temporary()), "{point}");
        assert_eq!(w.seen().await?, before, "{point}");
        let drop = w.store.open_maildrop(w.account).await?;
        assert_eq!(drop.entries.len(), 1);
    }
    Ok(())
}

#[test]
fn a_bad_plan_refuses_to_open() -> TestResult {
    let dir = tempfile::tempdir()?;
    for plan in ["fsync:1", "commit", "commit:0"] {
        let r = SqliteStore::open_with_faults(dir.path(), plan);
        assert!(matches!(r, Err(StoreError::Refused(_))), "{plan}");
    }
    assert!(SqliteStore::open_with_faults(dir.path(), "").is_ok());
    Ok(())
}

/// The bytes of a blob, through the store.
async fn blob_bytes(
    w: &World,
    blob: &buudien_store::BlobId,
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    w.store.read_blob(blob).await?.read_to_end(&mut out).await?;
    Ok(out)
}

/// A failed write that re-placed the file of a blob awaiting garbage collection
/// (expunged, still pinned by a POP3 maildrop) leaves that file alone: the pinned
/// reader still reads it, and collection takes it only once nothing needs it.
#[tokio::test]
async fn a_failed_write_keeps_a_pinned_garbage_blob() -> TestResult {
    // Delivery 1 passes each point once; deliveries 2 and 3 fail after placing.
    let w = world("dir_fsync:2,commit:2").await?;
    Op::Deliver.run(&w).await?;
    let drop = w.store.open_maildrop(w.account).await?;
    let entry = drop.entries.first().ok_or("no message")?;
    let (uid, blob) = (entry.uid, entry.blob);
    assert_eq!(w.store.expunge(w.inbox, &[uid]).await?, 1);
    for attempt in ["dir_fsync", "commit"] {
        let r = Op::Deliver.run(&w).await;
        assert!(r.is_err_and(|e| e.is_temporary()), "{attempt}");
        assert_eq!(blob_bytes(&w, &blob).await?, MSG, "{attempt}");
        assert!(w.store.messages(w.inbox).await?.is_empty(), "{attempt}");
    }
    // Pinned: garbage collection leaves it.
    assert_eq!(w.store.collect_garbage().await?, 0);
    assert_eq!(blob_bytes(&w, &blob).await?, MSG);
    std::mem::drop(drop);
    assert_eq!(w.store.collect_garbage().await?, 1);
    // The retry stores it again, once.
    Op::Deliver.run(&w).await?;
    assert_eq!(blob_bytes(&w, &blob).await?, MSG);
    let seen = w.seen().await?;
    assert_eq!((seen.messages, seen.entries, seen.blob_files), (1, 1, 1));
    Ok(())
}
