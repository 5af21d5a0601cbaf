//! The behaviour of [`MailboxStore`] every backend must show: mailbox CREATE, DELETE,
//! RENAME and SUBSCRIBE, APPEND with flags, STORE with UNCHANGEDSINCE and the change
//! log, COPY and MOVE sharing emails, and quota.

use crate::conformance_queue::{account, ok, read_all};
use crate::*;
use buudien_types::{Address, Uid};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn msg(n: usize) -> Vec<u8> {
    format!("Subject: folder {n}\r\n\r\nbody {n}\r\n").into_bytes()
}

fn names(boxes: &[Mailbox]) -> Vec<&str> {
    boxes.iter().map(|b| b.name.as_str()).collect()
}

async fn named<S: MailboxStore>(s: &S, account: AccountId, name: &str) -> Mailbox {
    ok(s.mailbox(account, name).await).unwrap_or_else(|| panic!("no mailbox {name}"))
}

/// Runs every mailbox case, each on a fresh store from `factory`.
pub async fn run_mailbox<S, G, F, Fut>(factory: F)
where
    S: MailboxStore,
    F: Fn() -> Fut,
    Fut: Future<Output = (S, G)>,
{
    macro_rules! case {
        ($name:ident) => {{
            let (store, guard) = factory().await;
            eprintln!("conformance (mailbox): {}", stringify!($name));
            $name(Arc::new(store)).await;
            drop(guard);
        }};
    }
    case!(create_delete_rename_subscribe);
    case!(rename_inbox_moves_its_messages);
    case!(append_and_store_flags);
    case!(copy_and_move_share_emails);
    case!(append_respects_quota);
    case!(search_text_is_exact_where_it_answers);
}

async fn create_delete_rename_subscribe<S: MailboxStore>(s: Arc<S>) {
    let ann = account(&*s, "ann@f.example", Quota::default()).await;
    let made = ok(s.create_mailbox(ann, "Work/Projects", None).await);
    assert_eq!(made.name, "Work/Projects");
    assert_eq!(made.uidnext, Uid(1));
    let boxes = ok(s.mailboxes(ann).await);
    assert!(
        names(&boxes).contains(&"Work"),
        "superior created: {:?}",
        names(&boxes)
    );
    assert!(matches!(
        s.create_mailbox(ann, "Work", None).await,
        Err(StoreError::Exists(_))
    ));
    assert!(matches!(
        s.create_mailbox(ann, "inbox", None).await,
        Err(StoreError::Exists(_))
    ));
    for bad in ["", "a//b", "/a", "x\u{1}y"] {
        assert!(
            s.create_mailbox(ann, bad, None).await.is_err(),
            "{bad:?} accepted"
        );
    }
    assert_eq!(named(&*s, ann, "iNbOx").await.name, "INBOX");
    // DELETE: not INBOX, not with inferiors.
    assert!(matches!(
        s.delete_mailbox(ann, "INBOX").await,
        Err(StoreError::Refused(_))
    ));
    assert!(matches!(
        s.delete_mailbox(ann, "Work").await,
        Err(StoreError::Refused(_))
    ));
    // RENAME carries the inferiors along.
    ok(s.rename_mailbox(ann, "Work", "Jobs").await);
    let boxes = ok(s.mailboxes(ann).await);
    assert!(
        names(&boxes).contains(&"Jobs/Projects"),
        "{:?}",
        names(&boxes)
    );
    assert!(!names(&boxes).iter().any(|n| n.starts_with("Work")));
    assert!(matches!(
        s.rename_mailbox(ann, "Jobs", "Archive").await,
        Err(StoreError::Exists(_))
    ));
    assert!(s.rename_mailbox(ann, "Jobs", "Jobs/Inner").await.is_err());
    // A recreated mailbox gets a new UIDVALIDITY (RFC 9051 §2.3.1.1).
    let old = named(&*s, ann, "Jobs/Projects").await;
    ok(s.delete_mailbox(ann, "Jobs/Projects").await);
    assert!(ok(s.mailbox(ann, "Jobs/Projects").await).is_none());
    let again = ok(s.create_mailbox(ann, "Jobs/Projects", None).await);
    assert_ne!(again.uidvalidity, old.uidvalidity);
    // SUBSCRIBE.
    ok(s.subscribe(ann, "Jobs", false).await);
    assert!(!named(&*s, ann, "Jobs").await.subscribed);
    ok(s.subscribe(ann, "Jobs", true).await);
    assert!(named(&*s, ann, "Jobs").await.subscribed);
    // RFC 9051 §6.3.7: a name without a mailbox can be subscribed, and a deleted
    // mailbox's subscription stays until UNSUBSCRIBE or a new mailbox takes it.
    ok(s.subscribe(ann, "Nope", true).await);
    assert!(ok(s.mailbox(ann, "Nope").await).is_none());
    assert!(
        !ok(s.create_mailbox(ann, "Gone", None).await).subscribed,
        "CREATE does not subscribe"
    );
    ok(s.subscribe(ann, "Gone", true).await);
    ok(s.delete_mailbox(ann, "Gone").await);
    assert_eq!(ok(s.orphan_subscriptions(ann).await), vec!["Gone", "Nope"]);
    ok(s.subscribe(ann, "Nope", false).await);
    ok(s.create_mailbox(ann, "Gone", None).await);
    assert!(named(&*s, ann, "Gone").await.subscribed);
    assert!(ok(s.orphan_subscriptions(ann).await).is_empty());
    ok(s.subscribe(ann, "Gone", false).await);
    ok(s.delete_mailbox(ann, "Gone").await);
    assert!(
        ok(s.orphan_subscriptions(ann).await).is_empty(),
        "an unsubscribed mailbox leaves nothing"
    );
    assert!(s.subscribe(ann, "a//b", true).await.is_err(), "bad name");
    assert!(matches!(
        s.delete_mailbox(ann, "Nope").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn rename_inbox_moves_its_messages<S: MailboxStore>(s: Arc<S>) {
    let ann = account(&*s, "ann@f.example", Quota::default()).await;
    for n in 0..3 {
        ok(s.deliver(&[ann], &msg(n), SystemTime::now()).await);
    }
    let inbox = named(&*s, ann, "INBOX").await;
    ok(s.rename_mailbox(ann, "INBOX", "Old").await);
    let inbox_after = named(&*s, ann, "INBOX").await;
    assert_eq!(inbox_after.messages, 0);
    assert_eq!(inbox_after.uidvalidity, inbox.uidvalidity);
    assert!(ok(s.messages(inbox.id).await).is_empty());
    let old = named(&*s, ann, "Old").await;
    let moved = ok(s.messages(old.id).await);
    assert_eq!(moved.len(), 3);
    assert_eq!(ok(read_all(&*s, &moved[2].blob).await), msg(2));
    let a = ok(s
        .account(&Address::parse("ann@f.example").unwrap_or_else(|e| panic!("{e}")))
        .await);
    assert_eq!(
        a.map(|a| a.used_messages),
        Some(3),
        "moving does not change usage"
    );
}

async fn append_and_store_flags<S: MailboxStore>(s: Arc<S>) {
    let ann = account(&*s, "ann@f.example", Quota::default()).await;
    let drafts = named(&*s, ann, "Drafts").await;
    let when = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let kw = vec!["$Forwarded".to_string()];
    let first = ok(s
        .append(
            drafts.id,
            &msg(1),
            Flags::SEEN.with(Flags::DRAFT),
            &kw,
            when,
        )
        .await);
    let second = ok(s
        .append(drafts.id, &msg(2), Flags::default(), &[], when)
        .await);
    assert_eq!((first.uid, second.uid), (Uid(1), Uid(2)));
    assert!(second.modseq > first.modseq);
    assert_eq!(first.received, when);
    assert_eq!(first.size, msg(1).len() as u64);
    let list = ok(s.messages(drafts.id).await);
    assert_eq!(list, vec![first.clone(), second.clone()]);
    assert!(list[0].flags.contains(Flags::SEEN) && list[0].flags.contains(Flags::DRAFT));
    assert_eq!(list[0].keywords, kw);

    let before = named(&*s, ann, "Drafts").await.highestmodseq;
    let all = [first.uid, second.uid];
    let r = ok(s
        .store_flags(drafts.id, &all, FlagOp::Add, Flags::FLAGGED, &[], None)
        .await);
    assert_eq!(r.changed.len(), 2);
    assert!(r.modified.is_empty());
    let m = r.changed[0].modseq;
    assert!(
        m > before && r.changed.iter().all(|c| c.modseq == m),
        "one MODSEQ per STORE"
    );
    assert_eq!(named(&*s, ann, "Drafts").await.highestmodseq, m);
    let log = ok(s.changes_since(drafts.id, before).await);
    assert_eq!(log.len(), 2);
    assert!(
        log.iter()
            .all(|c| c.kind == ChangeKind::Flags && c.modseq == m)
    );
    // Nothing to change: no new MODSEQ.
    let r = ok(s
        .store_flags(drafts.id, &all, FlagOp::Add, Flags::FLAGGED, &[], None)
        .await);
    assert!(r.changed.is_empty());
    assert_eq!(named(&*s, ann, "Drafts").await.highestmodseq, m);
    // UNCHANGEDSINCE below a message's MODSEQ: reported as modified, left alone.
    let r = ok(s
        .store_flags(
            drafts.id,
            &all,
            FlagOp::Remove,
            Flags::FLAGGED,
            &[],
            Some(m - 1),
        )
        .await);
    assert_eq!(r.modified, vec![first.uid, second.uid]);
    assert!(r.changed.is_empty());
    // -FLAGS, then FLAGS replaces flags and keywords.
    let r = ok(s
        .store_flags(
            drafts.id,
            &[first.uid],
            FlagOp::Remove,
            Flags::SEEN,
            &kw,
            Some(m),
        )
        .await);
    assert_eq!(r.changed.len(), 1);
    assert!(!r.changed[0].flags.contains(Flags::SEEN));
    assert!(r.changed[0].keywords.is_empty());
    let junk = vec!["Junk".to_string(), "$Label1".to_string()];
    let r = ok(s
        .store_flags(
            drafts.id,
            &[second.uid],
            FlagOp::Set,
            Flags::ANSWERED,
            &junk,
            None,
        )
        .await);
    assert_eq!(r.changed[0].flags, Flags::ANSWERED);
    assert_eq!(
        r.changed[0].keywords,
        vec!["$Label1".to_string(), "Junk".to_string()]
    );
    // Unknown UIDs are skipped.
    let r = ok(s
        .store_flags(drafts.id, &[Uid(99)], FlagOp::Add, Flags::SEEN, &[], None)
        .await);
    assert_eq!(r, FlagsStored::default());
}

async fn copy_and_move_share_emails<S: MailboxStore>(s: Arc<S>) {
    let ann = account(&*s, "ann@f.example", Quota::default()).await;
    let bob = account(&*s, "bob@f.example", Quota::default()).await;
    for n in 0..3 {
        ok(s.deliver(&[ann], &msg(n), SystemTime::now()).await);
    }
    let inbox = named(&*s, ann, "INBOX").await;
    let archive = named(&*s, ann, "Archive").await;
    let trash = named(&*s, ann, "Trash").await;
    ok(
        s.store_flags(inbox.id, &[Uid(1)], FlagOp::Add, Flags::SEEN, &[], None)
            .await,
    );
    let pairs = ok(s
        .copy(inbox.id, &[Uid(1), Uid(2), Uid(77)], archive.id)
        .await);
    assert_eq!(pairs, vec![(Uid(1), Uid(1)), (Uid(2), Uid(2))]);
    let copies = ok(s.messages(archive.id).await);
    let originals = ok(s.messages(inbox.id).await);
    assert_eq!(copies[0].blob, originals[0].blob, "no new blob");
    assert!(copies[0].flags.contains(Flags::SEEN), "flags are copied");
    let usage = |s: Arc<S>| async move {
        let a = ok(s
            .account(&Address::parse("ann@f.example").unwrap_or_else(|e| panic!("{e}")))
            .await);
        a.map(|a| (a.used_messages, a.used_bytes))
    };
    let before = usage(s.clone()).await;
    assert_eq!(before.map(|u| u.0), Some(3), "a copy is the same email");
    // MOVE: gone from the source (logged as expunge), present in the target.
    let since = named(&*s, ann, "INBOX").await.highestmodseq;
    let moved = ok(s.move_messages(inbox.id, &[Uid(3)], trash.id).await);
    assert_eq!(moved, vec![(Uid(3), Uid(1))]);
    assert_eq!(ok(s.messages(inbox.id).await).len(), 2);
    assert_eq!(ok(s.messages(trash.id).await).len(), 1);
    let log = ok(s.changes_since(inbox.id, since).await);
    assert!(
        log.iter()
            .any(|c| c.kind == ChangeKind::Expunge && c.uid == Uid(3))
    );
    assert_eq!(usage(s.clone()).await, before);
    // Expunging one copy keeps the email for the other; the last one frees the quota.
    ok(s.expunge(inbox.id, &[Uid(1)]).await);
    assert_eq!(usage(s.clone()).await, before);
    ok(s.expunge(archive.id, &[Uid(1)]).await);
    assert_eq!(usage(s.clone()).await.map(|u| u.0), Some(2));
    // Another account's mailbox is not a target.
    let bob_inbox = named(&*s, bob, "INBOX").await;
    assert!(s.copy(inbox.id, &[Uid(2)], bob_inbox.id).await.is_err());
    // RFC 6851 §3.1: a MOVE within the mailbox gives the message a new UID.
    let before = ok(s.mailbox(ann, "INBOX").await).map(|m| m.uidnext);
    let moved = ok(s.move_messages(inbox.id, &[Uid(2)], inbox.id).await);
    assert_eq!(moved.len(), 1);
    assert_eq!(Some(moved[0].1), before, "the next UID");
    let now: Vec<Uid> = ok(s.messages(inbox.id).await)
        .iter()
        .map(|m| m.uid)
        .collect();
    assert!(
        !now.contains(&Uid(2)) && now.contains(&moved[0].1),
        "{now:?}"
    );
}

async fn append_respects_quota<S: MailboxStore>(s: Arc<S>) {
    let ann = account(
        &*s,
        "ann@f.example",
        Quota {
            bytes: None,
            messages: Some(1),
        },
    )
    .await;
    let sent = named(&*s, ann, "Sent").await;
    ok(
        s.append(sent.id, &msg(1), Flags::SEEN, &[], SystemTime::now())
            .await,
    );
    let r = s
        .append(sent.id, &msg(2), Flags::SEEN, &[], SystemTime::now())
        .await;
    assert!(matches!(r, Err(StoreError::OverQuota(_))), "{r:?}");
    assert_eq!(ok(s.messages(sent.id).await).len(), 1);
}

/// [`MailboxStore::search_text`] may decline (`None`), but where it answers, every
/// message containing the string (ASCII here, any case) is matched or left to a
/// scan, no other message is matched, and nothing of another mailbox or account
/// shows.
async fn search_text_is_exact_where_it_answers<S: MailboxStore>(s: Arc<S>) {
    let ann = account(&*s, "ann@f.example", Quota::default()).await;
    let bob = account(&*s, "bob@f.example", Quota::default()).await;
    let bodies = [
        "Subject: one\r\n\r\nThe Quick brown fox\r\n",
        "Subject: two\r\n\r\nlazy dog\r\n",
        "Subject: quick\r\n\r\nnothing\r\n",
    ];
    for b in bodies {
        ok(s.deliver(&[ann], b.as_bytes(), SystemTime::now()).await);
    }
    ok(s.deliver(&[bob], bodies[0].as_bytes(), SystemTime::now())
        .await);
    let inbox = named(&*s, ann, "INBOX").await;
    let archive = named(&*s, ann, "Archive").await;
    ok(s.copy(inbox.id, &[Uid(2)], archive.id).await);
    for (needle, body_only, want) in [
        ("quick", true, vec![Uid(1)]),
        ("QUICK", false, vec![Uid(1), Uid(3)]),
        ("lazy dog", true, vec![Uid(2)]),
        ("absent", false, vec![]),
    ] {
        let Some(hits) = ok(s.search_text(inbox.id, needle, body_only).await) else {
            continue;
        };
        for uid in [Uid(1), Uid(2), Uid(3)] {
            let matched = hits.matched.contains(&uid);
            let unknown = hits.unknown.contains(&uid);
            assert!(!(matched && unknown), "{needle}: {hits:?}");
            if want.contains(&uid) {
                assert!(matched || unknown, "{needle}: {uid:?} missed: {hits:?}");
            } else {
                assert!(!matched, "{needle}: {uid:?} is no match: {hits:?}");
            }
        }
        assert!(
            hits.matched.iter().chain(&hits.unknown).all(|u| u.0 <= 3),
            "{hits:?}"
        );
    }
    if let Some(hits) = ok(s.search_text(archive.id, "lazy", true).await) {
        assert!(
            hits.matched
                .iter()
                .chain(&hits.unknown)
                .all(|&u| u == Uid(1))
        );
        assert!(
            !hits.matched.is_empty() || !hits.unknown.is_empty(),
            "{hits:?}"
        );
    }
}
