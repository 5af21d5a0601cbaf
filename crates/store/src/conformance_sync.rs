//! The behaviour every backend must show for sessions that follow a mailbox: stored
//! message structure (with the ASCII surrogate's for raw UTF-8 headers), the delta
//! after a MODSEQ, the `\Recent` mark, and the change counter IDLE waits on.

use crate::conformance_queue::{account, ok};
use crate::*;
use buudien_types::Uid;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Runs every case, each on a fresh store from `factory`.
pub async fn run_sync<S, G, F, Fut>(factory: F)
where
    S: MailboxStore,
    F: Fn() -> Fut,
    Fut: Future<Output = (S, G)>,
{
    macro_rules! case {
        ($name:ident) => {{
            let (store, guard) = factory().await;
            eprintln!("conformance (sync): {}", stringify!($name));
            $name(Arc::new(store)).await;
            drop(guard);
        }};
    }
    case!(structure_is_stored_at_delivery_and_append);
    case!(delta_reports_only_what_changed);
    case!(recent_goes_to_one_session);
    case!(watch_wakes_on_commit);
    case!(append_many_is_all_or_nothing);
}

async fn inbox<S: MailboxStore>(s: &S, account: AccountId) -> Mailbox {
    ok(s.mailbox(account, "INBOX").await).unwrap_or_else(|| panic!("no INBOX"))
}

async fn structure_is_stored_at_delivery_and_append<S: MailboxStore>(s: Arc<S>) {
    let ann = account(&*s, "ann@s.example", Quota::default()).await;
    let plain = b"Subject: hi\r\n\r\nbody\r\n";
    let utf8 = "Subject: h\u{e9}llo\r\n\r\nbody\r\n".as_bytes();
    ok(s.deliver(&[ann], plain, SystemTime::now()).await);
    ok(s.deliver(&[ann], utf8, SystemTime::now()).await);
    let mb = inbox(&*s, ann).await;
    ok(
        s.append(mb.id, utf8, Flags::default(), &[], SystemTime::now())
            .await,
    );
    let entries = ok(s.messages(mb.id).await);
    assert_eq!(entries.len(), 3);
    assert_eq!(
        entries[0].ascii_size, None,
        "ASCII message has no surrogate"
    );
    for e in &entries[1..] {
        let a = e
            .ascii_size
            .unwrap_or_else(|| panic!("UTF-8 header needs a surrogate"));
        assert!(a > e.size, "the surrogate's encoded word is longer");
    }
    let uids: Vec<Uid> = entries.iter().map(|e| e.uid).chain([Uid(99)]).collect();
    let some = ok(s
        .entries(mb.id, &[Uid(99), entries[2].uid, entries[0].uid])
        .await);
    assert_eq!(
        some,
        vec![entries[0].clone(), entries[2].clone()],
        "UID order, missing skipped"
    );
    let metas = ok(s.metas(mb.id, &uids).await);
    assert_eq!(metas.len(), 3, "the missing UID is skipped");
    assert!(
        metas
            .iter()
            .all(|m| m.meta.as_ref().is_some_and(|b| !b.is_empty()))
    );
    assert!(metas[0].ascii_meta.is_none());
    assert!(metas[1].ascii_meta.is_some() && metas[2].ascii_meta.is_some());
    assert_ne!(metas[1].meta, metas[1].ascii_meta);
    // Read together, they are what they are apart.
    let both = ok(s.entries_and_metas(mb.id, &uids, true).await);
    assert_eq!(both, (ok(s.entries(mb.id, &uids).await), metas));
    let alone = ok(s.entries_and_metas(mb.id, &uids, false).await);
    assert_eq!(alone, (ok(s.entries(mb.id, &uids).await), Vec::new()));
}

async fn delta_reports_only_what_changed<S: MailboxStore>(s: Arc<S>) {
    let ann = account(&*s, "ann@s.example", Quota::default()).await;
    for n in 0..4 {
        let m = format!("Subject: {n}\r\n\r\nx\r\n");
        ok(s.deliver(&[ann], m.as_bytes(), SystemTime::now()).await);
    }
    let mb = inbox(&*s, ann).await;
    let base = mb.highestmodseq;
    let none = ok(s.delta(mb.id, base).await);
    assert_eq!(none.highestmodseq, base);
    assert!(none.changed.is_empty() && none.expunged.is_empty());
    assert_eq!(none.uidnext, 5);

    ok(
        s.store_flags(mb.id, &[Uid(2)], FlagOp::Add, Flags::SEEN, &[], None)
            .await,
    );
    ok(s.expunge(mb.id, &[Uid(3)]).await);
    ok(
        s.deliver(&[ann], b"Subject: new\r\n\r\nx\r\n", SystemTime::now())
            .await,
    );
    let d = ok(s.delta(mb.id, base).await);
    assert!(d.highestmodseq > base);
    assert_eq!(d.uidnext, 6);
    let changed: Vec<u32> = d.changed.iter().map(|e| e.uid.0).collect();
    assert_eq!(changed, vec![2, 5], "the flagged and the new message");
    assert!(d.changed[0].flags.contains(Flags::SEEN));
    assert_eq!(d.expunged, vec![Uid(3)]);
    let later = ok(s.delta(mb.id, d.highestmodseq).await);
    assert!(later.changed.is_empty() && later.expunged.is_empty());
    assert!(s.delta(MailboxId::MAX, 0).await.is_err(), "unknown mailbox");
}

async fn recent_goes_to_one_session<S: MailboxStore>(s: Arc<S>) {
    let ann = account(&*s, "ann@s.example", Quota::default()).await;
    ok(
        s.deliver(&[ann], b"Subject: a\r\n\r\nx\r\n", SystemTime::now())
            .await,
    );
    let mb = inbox(&*s, ann).await;
    assert_eq!(
        ok(s.claim_recent(mb.id).await),
        Uid(0),
        "first claim: all recent"
    );
    assert_eq!(ok(s.claim_recent(mb.id).await), Uid(1), "second: none");
    ok(
        s.deliver(&[ann], b"Subject: b\r\n\r\nx\r\n", SystemTime::now())
            .await,
    );
    assert_eq!(
        ok(s.claim_recent(mb.id).await),
        Uid(1),
        "the new one is recent"
    );
}

async fn watch_wakes_on_commit<S: MailboxStore>(s: Arc<S>) {
    let ann = account(&*s, "ann@s.example", Quota::default()).await;
    let bob = account(&*s, "bob@s.example", Quota::default()).await;
    let ann_inbox = inbox(&*s, ann).await;
    let bob_inbox = inbox(&*s, bob).await;
    let mut rx = s.watch_mailbox(ann_inbox.id);
    let mut other = s.watch_mailbox(bob_inbox.id);
    // The first look may wake each watcher once; let it pass.
    tokio::time::sleep(Duration::from_millis(500)).await;
    rx.borrow_and_update();
    other.borrow_and_update();
    ok(
        s.deliver(&[ann], b"Subject: w\r\n\r\nx\r\n", SystemTime::now())
            .await,
    );
    let woke = tokio::time::timeout(Duration::from_secs(5), rx.changed()).await;
    assert!(matches!(woke, Ok(Ok(()))), "no wake-up after a delivery");
    // Another mailbox's watcher sleeps on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !other.has_changed().unwrap_or(true),
        "a delivery to ann woke bob's watcher"
    );
    // A flag change and an expunge wake it too.
    let uid = ok(s.messages(ann_inbox.id).await)
        .first()
        .map(|m| m.uid)
        .unwrap_or_else(|| panic!("no message"));
    rx.borrow_and_update();
    ok(
        s.store_flags(ann_inbox.id, &[uid], FlagOp::Add, Flags::SEEN, &[], None)
            .await,
    );
    let woke = tokio::time::timeout(Duration::from_secs(5), rx.changed()).await;
    assert!(matches!(woke, Ok(Ok(()))), "no wake-up after a flag change");
    rx.borrow_and_update();
    ok(s.expunge(ann_inbox.id, &[uid]).await);
    let woke = tokio::time::timeout(Duration::from_secs(5), rx.changed()).await;
    assert!(matches!(woke, Ok(Ok(()))), "no wake-up after an expunge");
}

async fn append_many_is_all_or_nothing<S: MailboxStore>(s: Arc<S>) {
    let quota = Quota {
        bytes: None,
        messages: Some(3),
    };
    let ann = account(&*s, "ann@s.example", quota).await;
    let mb = inbox(&*s, ann).await;
    let new = |n: usize, source: MessageSource| NewMessage {
        source,
        flags: if n == 0 {
            Flags::SEEN
        } else {
            Flags::default()
        },
        keywords: vec![format!("k{n}")],
        received: SystemTime::now(),
    };
    let file = tempfile_with(b"junk before Subject: from a file\r\n\r\nx\r\n junk after")
        .unwrap_or_else(|| panic!("temp file"));
    let two = vec![
        new(0, MessageSource::Bytes(b"Subject: a\r\n\r\nx\r\n".to_vec())),
        new(
            1,
            MessageSource::File {
                file: Arc::new(file),
                offset: 12,
                len: 27,
            },
        ),
    ];
    let entries = ok(s.append_many(mb.id, two).await);
    assert_eq!(entries.len(), 2);
    assert!(entries[0].uid < entries[1].uid);
    assert!(entries[0].flags.contains(Flags::SEEN));
    assert_eq!(entries[1].keywords, vec!["k1".to_owned()]);
    assert_eq!(entries[1].size, 27, "the range of the file");
    let stored = ok(crate::conformance_queue::read_all(&*s, &entries[1].blob).await);
    assert_eq!(stored, b"Subject: from a file\r\n\r\nx\r\n");
    // Two more would exceed the quota of 3: neither is stored.
    let more = vec![
        new(2, MessageSource::Bytes(b"Subject: b\r\n\r\nx\r\n".to_vec())),
        new(3, MessageSource::Bytes(b"Subject: c\r\n\r\nx\r\n".to_vec())),
    ];
    assert!(matches!(
        s.append_many(mb.id, more).await,
        Err(StoreError::OverQuota(_))
    ));
    assert_eq!(ok(s.messages(mb.id).await).len(), 2, "all or none");
}

/// An unnamed file holding `bytes`.
fn tempfile_with(bytes: &[u8]) -> Option<std::fs::File> {
    use std::io::Write;
    let path = std::env::temp_dir().join(format!(
        "buudien-conformance-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .ok()?;
    f.write_all(bytes).ok()?;
    let _ = std::fs::remove_file(&path);
    Some(f)
}
