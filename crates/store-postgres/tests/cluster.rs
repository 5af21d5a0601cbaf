//! Two or three `PgStore`s on one database behave as the nodes of a cluster do:
//! migrations serialise and refuse code that is too old, the POP3 maildrop lease is
//! exclusive across stores and lapses when its holder is gone, a change on one store
//! wakes a watcher on another (the latency is printed), UIDs and MODSEQs become
//! visible in increasing order under concurrent writers, queue claims never overlap,
//! a node restarted under its name takes back its own claims only, and a snapshot on
//! one store keeps its blobs from another store's collection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use buudien_store_postgres::testing;

use buudien_store::*;
use buudien_store_postgres::{CODE_VERSION, PgStore};
use buudien_types::{Address, Domain};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::AsyncReadExt;

fn ok<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

async fn nodes(n: usize) -> (String, Vec<PgStore>) {
    let pg = testing::server();
    let url = pg.fresh_db().await;
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(ok(PgStore::connect(&url, 8).await));
    }
    (url, out)
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

async fn sql(url: &str, q: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    client.batch_execute(q).await.unwrap();
    drop(client);
    let _ = driver.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_serialise_and_refuse_old_code() {
    let pg = testing::server();
    let url = pg.fresh_db().await;
    // Four nodes start at once on an empty database: one migrates, the others wait
    // on the advisory lock and find the schema ready.
    let mut starts = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        starts.push(tokio::spawn(async move { PgStore::connect(&url, 2).await }));
    }
    for s in starts {
        assert!(s.await.unwrap().is_ok(), "a concurrent start failed");
    }
    let r = PgStore::connect_as(&url, 2, 0).await;
    assert!(
        matches!(r, Err(StoreError::Refused(_))),
        "code older than the schema's minimum must refuse to start"
    );
    // A newer schema that only expanded (min_code not above ours) is fine …
    sql(
        &url,
        "INSERT INTO schema_version (version, min_code) VALUES (1000, 1)",
    )
    .await;
    assert!(PgStore::connect(&url, 2).await.is_ok());
    // … one that contracted past this code is not.
    sql(
        &url,
        &format!(
            "INSERT INTO schema_version (version, min_code) VALUES (1001, {})",
            CODE_VERSION + 1
        ),
    )
    .await;
    let r = PgStore::connect(&url, 2).await;
    assert!(matches!(r, Err(StoreError::Refused(_))), "{:?}", r.err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maildrop_lease_is_exclusive_across_nodes_and_lapses() {
    let (url, n) = nodes(2).await;
    let (a, b) = (&n[0], &n[1]);
    let ann = account(a, "ann@c.example").await;
    // Renewed every 500 ms: two renewals may be late by a second before it lapses.
    a.set_leases(Duration::from_millis(1500), Duration::from_secs(300));
    let g = ok(a.lock_maildrop(ann).await).expect("first lock");
    assert!(ok(b.lock_maildrop(ann).await).is_none(), "in use on node A");
    // Renewed by its holder well past its length.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        ok(b.lock_maildrop(ann).await).is_none(),
        "renewed lease lapsed"
    );
    drop(g);
    let start = Instant::now();
    let g2 = loop {
        if let Some(g) = ok(b.lock_maildrop(ann).await) {
            break g;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "release not seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(g2);
    // A holder that died: its row stays until the lease runs out.
    tokio::time::sleep(Duration::from_millis(200)).await;
    sql(
        &url,
        &format!(
            "DELETE FROM maildrop_locks; INSERT INTO maildrop_locks (account_id, holder, until)
             VALUES ({ann}, 'dead node', now() + interval '1 second')"
        ),
    )
    .await;
    assert!(ok(a.lock_maildrop(ann).await).is_none());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        ok(b.lock_maildrop(ann).await).is_some(),
        "lease of a dead holder did not lapse"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_node_wakes_a_watcher_on_another() {
    let (_url, n) = nodes(2).await;
    let (a, b) = (&n[0], &n[1]);
    let ann = account(a, "ann@c.example").await;
    let inbox = ok(b.mailbox(ann, "INBOX").await).unwrap();
    let mut rx = b.watch_mailbox(inbox.id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    rx.borrow_and_update();
    let mut took = Vec::new();
    for i in 0..10 {
        let m = format!("Subject: {i}\r\n\r\nx\r\n");
        let t = Instant::now();
        ok(a.deliver(&[ann], m.as_bytes(), SystemTime::now()).await);
        let woke = tokio::time::timeout(Duration::from_secs(5), rx.changed()).await;
        assert!(matches!(woke, Ok(Ok(()))), "no wake-up on node B");
        took.push(t.elapsed());
        rx.borrow_and_update();
    }
    took.sort();
    let median = took[took.len() / 2];
    eprintln!(
        "cross-node wake-up after delivery (incl. commit): median {median:?}, max {:?}",
        took[took.len() - 1]
    );
    assert!(median < Duration::from_millis(1000), "median {median:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uids_and_modseqs_become_visible_in_order() {
    let (_url, n) = nodes(3).await;
    let n: Vec<Arc<PgStore>> = n.into_iter().map(Arc::new).collect();
    let ann = account(&n[0], "ann@c.example").await;
    let inbox = ok(n[0].mailbox(ann, "INBOX").await).unwrap().id;
    let mut writers = Vec::new();
    for (node, store) in n.iter().take(2).enumerate() {
        for w in 0..4 {
            let s = Arc::clone(store);
            writers.push(tokio::spawn(async move {
                for k in 0..6 {
                    let m = format!("Subject: {node}.{w}.{k}\r\n\r\nx\r\n");
                    let e = s
                        .append(
                            inbox,
                            m.as_bytes(),
                            Flags::default(),
                            &[],
                            SystemTime::now(),
                        )
                        .await?;
                    s.store_flags(inbox, &[e.uid], FlagOp::Add, Flags::SEEN, &[], None)
                        .await?;
                }
                Ok::<(), StoreError>(())
            }));
        }
    }
    // The observer (node 3) follows with deltas: a change it has not seen yet never
    // carries a MODSEQ at or below what it already saw, and new UIDs only go up.
    let observer = Arc::clone(&n[2]);
    let watch = tokio::spawn(async move {
        let mut since = 0u64;
        let mut max_uid = 0u32;
        let mut seen: BTreeMap<u32, u64> = BTreeMap::new();
        let mut rounds = 0;
        let mut last_round = false;
        loop {
            let d = observer.delta(inbox, since).await?;
            for e in &d.changed {
                assert!(e.modseq > since, "MODSEQ {} after {since}", e.modseq);
                if !seen.contains_key(&e.uid.0) {
                    assert!(e.uid.0 > max_uid, "UID {} after {max_uid}", e.uid.0);
                }
                seen.insert(e.uid.0, e.modseq);
            }
            if let Some(m) = seen.keys().next_back() {
                max_uid = max_uid.max(*m);
            }
            since = d.highestmodseq;
            rounds += 1;
            if last_round {
                let all = observer.messages(inbox).await?;
                return Ok::<_, StoreError>((seen, all, rounds));
            }
            if seen.len() == 48 {
                // Every write is committed once all 48 are \Seen: one more delta.
                let all = observer.messages(inbox).await?;
                last_round = all.len() == 48 && all.iter().all(|e| e.flags.contains(Flags::SEEN));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    for w in writers {
        ok(w.await.unwrap());
    }
    let (seen, all, rounds) = tokio::time::timeout(Duration::from_secs(60), watch)
        .await
        .expect("observer did not finish")
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let uids: Vec<u32> = all.iter().map(|e| e.uid.0).collect();
    assert_eq!(uids, (1..=48).collect::<Vec<_>>(), "unique, gapless UIDs");
    for e in &all {
        assert_eq!(
            seen.get(&e.uid.0),
            Some(&e.modseq),
            "observer missed a change"
        );
    }
    eprintln!("observer followed 48 APPENDs + 48 STOREs from two nodes in {rounds} deltas");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_claims_never_overlap_across_nodes() {
    let (_url, n) = nodes(2).await;
    let n: Vec<Arc<PgStore>> = n.into_iter().map(Arc::new).collect();
    let env = Envelope {
        sender: "a@c.example".into(),
        envid: None,
        ret: None,
        eight_bit: false,
        smtputf8: false,
    };
    let rcpt = vec![NewRecipient {
        address: "r@remote.example".into(),
        orcpt: None,
        notify: None,
    }];
    let now = SystemTime::now();
    let mut ids = BTreeSet::new();
    for i in 0..30 {
        let m = format!("Subject: q{i}\r\n\r\nx\r\n");
        let s = ok(n[i % 2]
            .submit(Submission {
                message: m.as_bytes(),
                local_prefix: &[],
                received: now,
                local: &[],
                outbound: Some((&env, &rcpt)),
            })
            .await);
        ids.insert(s.queued.unwrap());
    }
    let mut tasks = Vec::new();
    for k in 0..8 {
        let s = Arc::clone(&n[k % 2]);
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let c = s.claim(now, Duration::from_secs(3600), 2).await?;
                if c.is_empty() {
                    return Ok::<_, StoreError>(got);
                }
                got.extend(c.into_iter().map(|m| m.id));
            }
        }));
    }
    let mut claimed = BTreeSet::new();
    for t in tasks {
        for id in ok(t.await.unwrap()) {
            assert!(claimed.insert(id), "message {id} claimed twice");
        }
    }
    assert_eq!(claimed, ids, "every message claimed exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_on_one_node_keeps_blobs_from_anothers_collection() {
    let (_url, n) = nodes(2).await;
    let (a, b) = (&n[0], &n[1]);
    let ann = account(a, "ann@c.example").await;
    let body = b"Subject: pinned\r\n\r\nbody\r\n";
    ok(a.deliver(&[ann], body, SystemTime::now()).await);
    let d = ok(a.open_maildrop(ann).await);
    let blob = d.entries[0].blob;
    ok(b.expunge(d.mailbox, &[d.entries[0].uid]).await);
    assert_eq!(ok(b.collect_garbage().await), 0, "pinned on node A");
    let mut r = ok(b.read_blob(&blob).await);
    let mut got = Vec::new();
    r.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, body);
    drop(d);
    let start = Instant::now();
    loop {
        if ok(b.collect_garbage().await) == 1 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "never collected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(b.read_blob(&blob).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_span_chunks() {
    let (_url, n) = nodes(1).await;
    let s = &n[0];
    let ann = account(s, "ann@c.example").await;
    let mut m = b"Subject: big\r\n\r\n".to_vec();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n";
    while m.len() < 3 * (1 << 20) + 1234 {
        m.extend_from_slice(line);
    }
    ok(s.deliver(&[ann], &m, SystemTime::now()).await);
    let d = ok(s.open_maildrop(ann).await);
    assert_eq!(d.entries[0].size, m.len() as u64);
    let mut r = ok(s.read_blob(&d.entries[0].blob).await);
    let mut got = Vec::new();
    r.read_to_end(&mut got).await.unwrap();
    assert!(got == m, "the bytes of a four-chunk blob come back whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_notifications_polling_still_wakes_watchers() {
    let (url, n) = nodes(2).await;
    let (a, b) = (&n[0], &n[1]);
    let ann = account(a, "ann@c.example").await;
    // As on an engine without NOTIFY: the trigger is gone, only polling is left.
    sql(&url, "DROP TRIGGER mailbox_changed ON mailboxes").await;
    let inbox = ok(b.mailbox(ann, "INBOX").await).unwrap();
    let mut rx = b.watch_mailbox(inbox.id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    rx.borrow_and_update();
    let t = Instant::now();
    ok(
        a.deliver(&[ann], b"Subject: p\r\n\r\nx\r\n", SystemTime::now())
            .await,
    );
    let woke = tokio::time::timeout(Duration::from_secs(5), rx.changed()).await;
    assert!(
        matches!(woke, Ok(Ok(()))),
        "polling did not notice the delivery"
    );
    eprintln!("wake-up by polling alone: {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_missing_a_chunk_fails_as_damaged_when_opened() {
    let (url, n) = nodes(1).await;
    let s = &n[0];
    let ann = account(s, "ann@c.example").await;
    let mut m = b"Subject: big\r\n\r\n".to_vec();
    while m.len() < 2 * (1 << 20) + 100 {
        m.extend_from_slice(b"the same line again and again\r\n");
    }
    ok(s.deliver(&[ann], &m, SystemTime::now()).await);
    let d = ok(s.open_maildrop(ann).await);
    sql(&url, "DELETE FROM blob_chunks WHERE seq = 1").await;
    // Damaged at once, before any byte is read (so a POP3 +OK or an IMAP literal is
    // never started for it), never a short read.
    match s.read_blob(&d.entries[0].blob).await {
        Err(StoreError::Damaged(_)) => {}
        Err(e) => panic!("not reported as damaged: {e}"),
        Ok(mut r) => {
            let mut got = Vec::new();
            let e = r.read_to_end(&mut got).await;
            panic!("opened; read {} of {} octets: {e:?}", got.len(), m.len());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_writers_on_two_nodes_neither_fail_nor_lose_counts() {
    let (_url, n) = nodes(2).await;
    let n: Vec<Arc<PgStore>> = n.into_iter().map(Arc::new).collect();
    let ann = account(&n[0], "ann@c.example").await;
    let bob = account(&n[0], "bob@c.example").await;
    let mut tasks = Vec::new();
    for k in 0..6usize {
        let s = Arc::clone(&n[k % 2]);
        tasks.push(tokio::spawn(async move {
            let inbox = s.mailbox(ann, "INBOX").await?.map(|m| m.id).unwrap_or(0);
            let archive = s.mailbox(ann, "Archive").await?.map(|m| m.id).unwrap_or(0);
            for i in 0..8usize {
                // The same bytes for everyone: one shared blob, revived and released.
                let body = format!("Subject: shared {}\r\n\r\nx\r\n", i % 3);
                let d = s
                    .deliver(&[bob, ann], body.as_bytes(), SystemTime::now())
                    .await?;
                let mine = d.iter().find(|x| x.account == ann).map(|x| x.uid);
                let uid = mine.unwrap_or(buudien_types::Uid(0));
                match (k + i) % 4 {
                    0 => {
                        s.expunge(inbox, &[uid]).await?;
                    }
                    1 => {
                        s.move_messages(inbox, &[uid], archive).await?;
                    }
                    2 => {
                        s.copy(inbox, &[uid], archive).await?;
                        s.store_flags(inbox, &[uid], FlagOp::Add, Flags::SEEN, &[], None)
                            .await?;
                    }
                    _ => {
                        s.collect_garbage().await?;
                    }
                }
            }
            Ok::<(), StoreError>(())
        }));
    }
    for t in tasks {
        ok(t.await.unwrap());
    }
    // Usage agrees with what is left: of ann's 48 copies, 12 were expunged (case 0
    // comes up twice per task), the moved and copied ones are still one email each.
    let usage = |who: &'static str| {
        let s = Arc::clone(&n[1]);
        async move {
            let a = ok(s.account(&Address::parse(who).unwrap()).await).unwrap();
            (a.used_messages, a.used_bytes)
        }
    };
    let size = "Subject: shared 0\r\n\r\nx\r\n".len() as u64;
    assert_eq!(usage("ann@c.example").await, (36, 36 * size));
    assert_eq!(usage("bob@c.example").await, (48, 48 * size));
    for id in [ann, bob] {
        for mb in ok(n[1].mailboxes(id).await) {
            let list = ok(n[1].messages(mb.id).await);
            assert_eq!(
                mb.messages as usize,
                list.len(),
                "{}: message count",
                mb.name
            );
            assert!(
                list.iter().all(|e| e.uid < mb.uidnext),
                "{}: UIDNEXT",
                mb.name
            );
        }
    }
    ok(n[0].collect_garbage().await);
    // Every blob still referenced reads back whole.
    for e in ok(n[1]
        .messages(ok(n[1].mailbox(bob, "INBOX").await).unwrap().id)
        .await)
    {
        let mut r = ok(n[1].read_blob(&e.blob).await);
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len() as u64, e.size);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_takes_back_its_own_claims_only() {
    let (url, n) = nodes(2).await;
    let (a, b) = (&n[0], &n[1]);
    a.set_node("node-a");
    b.set_node("node-b");
    let env = Envelope {
        sender: "a@c.example".into(),
        envid: None,
        ret: None,
        eight_bit: false,
        smtputf8: false,
    };
    let rcpt = vec![NewRecipient {
        address: "r@remote.example".into(),
        orcpt: None,
        notify: None,
    }];
    let now = SystemTime::now();
    for i in 0..2 {
        let m = format!("Subject: claim {i}\r\n\r\nx\r\n");
        ok(a.submit(Submission {
            message: m.as_bytes(),
            local_prefix: &[],
            received: now,
            local: &[],
            outbound: Some((&env, &rcpt)),
        })
        .await);
    }
    let hour = Duration::from_secs(3600);
    let held_by_a = ok(a.claim(now, hour, 1).await);
    let held_by_b = ok(b.claim(now, hour, 1).await);
    assert_eq!((held_by_a.len(), held_by_b.len()), (1, 1));
    assert!(
        ok(a.claim(now, hour, 2).await).is_empty(),
        "both are claimed"
    );
    // Node A "crashes" and starts again under its name: only its claim comes back.
    drop(n);
    let a2 = ok(PgStore::connect(&url, 2).await);
    // Without a name, nothing is released (the claims may be anyone's).
    assert_eq!(ok(a2.release_own_claims().await), 0);
    a2.set_node("node-a");
    assert_eq!(ok(a2.release_own_claims().await), 1);
    let again = ok(a2.claim(now, hour, 2).await);
    let ids: Vec<_> = again.iter().map(|m| m.id).collect();
    assert_eq!(
        ids,
        vec![held_by_a[0].id],
        "only node A's claim is taken back"
    );
    // Node B's claim is still live: a restart of A never takes it.
    assert_eq!(
        ok(a2.release_own_claims().await),
        1,
        "A's new claim is its own again"
    );
    a2.set_node("node-c");
    assert_eq!(ok(a2.release_own_claims().await), 0);
}
