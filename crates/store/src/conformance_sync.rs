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
    let mut rx = s.watch_changes();
    let before = *rx.borrow_and_update();
    ok(
        s.deliver(&[ann], b"Subject: w\r\n\r\nx\r\n", SystemTime::now())
            .await,
    );
    let woke = tokio::time::timeout(Duration::from_secs(5), rx.changed()).await;
    assert!(matches!(woke, Ok(Ok(()))), "no wake-up after a delivery");
    assert_ne!(*rx.borrow(), before);
}
