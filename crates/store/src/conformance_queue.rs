//! The queue's part of the conformance suite: what every [`QueueStore`] must do. A
//! backend's tests call [`run_queue`] with the same kind of factory as
//! [`run_all`](crate::conformance::run_all).

use crate::*;
use buudien_types::{Address, Domain};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncReadExt;

const HOUR: Duration = Duration::from_secs(3600);

pub(crate) fn ok<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) async fn account<S: MailStore>(s: &S, who: &str, quota: Quota) -> AccountId {
    let a = Address::parse(who).unwrap_or_else(|e| panic!("{e}"));
    let d = Domain::parse(a.domain_str()).unwrap_or_else(|e| panic!("{e}"));
    match s.add_domain(&d).await {
        Ok(()) | Err(StoreError::Exists(_)) => {}
        Err(e) => panic!("add_domain: {e}"),
    }
    ok(s.add_account(NewAccount {
        address: a,
        password: PasswordRecord {
            hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            scram_sha256: "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5".into(),
        },
        quota,
    })
    .await)
}

pub(crate) async fn read_all<S: MailStore>(s: &S, blob: &BlobId) -> Result<Vec<u8>> {
    let mut r = s.read_blob(blob).await?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).await?;
    Ok(out)
}

fn msg(n: usize) -> Vec<u8> {
    format!("Subject: queued {n}\r\nFrom: a@b.example\r\n\r\nbody {n}\r\n").into_bytes()
}

fn envelope() -> Envelope {
    Envelope {
        sender: "ann@a.example".into(),
        envid: Some("env-1".into()),
        ret: Some(Ret::Headers),
        eight_bit: true,
        smtputf8: false,
    }
}

fn rcpts(n: usize) -> Vec<NewRecipient> {
    (0..n)
        .map(|i| NewRecipient {
            address: format!("r{i}@remote.example"),
            orcpt: (i == 0).then(|| "rfc822;r0@remote.example".to_string()),
            notify: match i {
                0 => None,
                1 => Some(Notify::NEVER),
                _ => Some(Notify {
                    success: true,
                    failure: true,
                    delay: false,
                }),
            },
        })
        .collect()
}

/// Queues `msg(n)` for `k` remote recipients; returns its id.
async fn enqueue<S: QueueStore>(s: &S, n: usize, k: usize, at: SystemTime) -> QueueId {
    let env = envelope();
    let r = rcpts(k);
    let sub = ok(s
        .submit(Submission {
            message: &msg(n),
            local_prefix: &[],
            received: at,
            local: &[],
            outbound: Some((&env, &r)),
        })
        .await);
    assert!(sub.delivered.is_empty());
    sub.queued
        .unwrap_or_else(|| panic!("outbound recipients were not queued"))
}

/// `Return-Path` (the local prefix) is on the local copies and not on the queued one;
/// quota counts the local copy's size; both blobs are collected once unused.
async fn local_prefix_goes_to_local_copies_only<S: QueueStore>(s: Arc<S>) {
    let ann = account(&*s, "ann@local.example", Quota::default()).await;
    let env = envelope();
    let r = rcpts(1);
    let prefix = b"Return-Path: <ann@local.example>\r\n";
    let sub = ok(s
        .submit(Submission {
            message: &msg(1),
            local_prefix: prefix,
            received: SystemTime::now(),
            local: &[ann],
            outbound: Some((&env, &r)),
        })
        .await);
    let id = sub.queued.unwrap_or_else(|| panic!("not queued"));
    let drop_ = ok(s.open_maildrop(ann).await);
    let local = ok(read_all(&*s, &drop_.entries[0].blob).await);
    assert_eq!(local, [&prefix[..], &msg(1)].concat());
    assert_eq!(drop_.entries[0].size, local.len() as u64);
    let q = ok(s.queue_list().await);
    assert_eq!(ok(read_all(&*s, &q[0].blob).await), msg(1));
    assert_eq!(q[0].size, msg(1).len() as u64);
    let acct = ok(s
        .account(&Address::parse("ann@local.example").unwrap_or_else(|e| panic!("{e}")))
        .await);
    assert_eq!(acct.map(|a| a.used_bytes), Some(local.len() as u64));
    // Without remote recipients the prefix still applies; without local ones it is
    // ignored.
    let only_remote = ok(s
        .submit(Submission {
            message: &msg(2),
            local_prefix: prefix,
            received: SystemTime::now(),
            local: &[],
            outbound: Some((&env, &r)),
        })
        .await);
    let q = ok(s.queue_list().await);
    let second = q.iter().find(|m| Some(m.id) == only_remote.queued);
    let second = second.unwrap_or_else(|| panic!("second message not queued"));
    assert_eq!(ok(read_all(&*s, &second.blob).await), msg(2));
    // Both copies of the first are collected once expunged and released.
    let queued_blob = q.iter().find(|m| m.id == id).map(|m| m.blob);
    drop(drop_);
    let d = ok(s.open_maildrop(ann).await);
    ok(s.expunge(d.mailbox, &[d.entries[0].uid]).await);
    drop(d);
    ok(s.queue_remove(id).await);
    assert!(ok(s.collect_garbage().await) >= 2);
    if let Some(b) = queued_blob {
        assert!(read_all(&*s, &b).await.is_err());
    }
}

/// Runs every queue case, each on a fresh store from `factory`.
pub async fn run_queue<S, G, F, Fut>(factory: F)
where
    S: QueueStore,
    F: Fn() -> Fut,
    Fut: Future<Output = (S, G)>,
{
    macro_rules! case {
        ($name:ident) => {{
            let (store, guard) = factory().await;
            eprintln!("conformance (queue): {}", stringify!($name));
            $name(Arc::new(store)).await;
            drop(guard);
        }};
    }
    case!(submit_stores_local_and_queued_parts);
    case!(submit_is_all_or_nothing_on_quota);
    case!(local_prefix_goes_to_local_copies_only);
    case!(submit_needs_a_recipient);
    case!(claim_is_exclusive_until_the_lease_expires);
    case!(claim_honours_next_attempt_and_limit);
    case!(record_and_release_lifecycle);
    case!(flush_makes_deferred_due);
    case!(flush_during_an_attempt_is_not_lost);
    case!(remove_deletes_without_report);
    case!(bounce_fails_pending_recipients);
    case!(queued_blob_lives_until_released);
    case!(concurrent_claims_never_overlap);
}

async fn submit_stores_local_and_queued_parts<S: QueueStore>(s: Arc<S>) {
    let ann = account(&*s, "ann@a.example", Quota::default()).await;
    let bob = account(&*s, "bob@a.example", Quota::default()).await;
    let env = envelope();
    let r = rcpts(3);
    let at = SystemTime::now();
    let sub = ok(s
        .submit(Submission {
            message: &msg(1),
            local_prefix: &[],
            received: at,
            local: &[ann, bob, ann],
            outbound: Some((&env, &r)),
        })
        .await);
    assert_eq!(sub.delivered.len(), 2, "one copy per account");
    let id = sub.queued.unwrap_or_else(|| panic!("not queued"));
    for acct in [ann, bob] {
        let d = ok(s.open_maildrop(acct).await);
        assert_eq!(d.entries.len(), 1);
        assert_eq!(ok(read_all(&*s, &d.entries[0].blob).await), msg(1));
    }
    let list = ok(s.queue_list().await);
    assert_eq!(list.len(), 1);
    let q = &list[0];
    assert_eq!(q.id, id);
    assert_eq!(q.envelope, env);
    assert_eq!(q.size, msg(1).len() as u64);
    assert_eq!(ok(read_all(&*s, &q.blob).await), msg(1));
    let since = |t: SystemTime| {
        t.duration_since(at)
            .unwrap_or_else(|e| e.duration())
            .as_millis()
    };
    assert!(since(q.queued_at) < 1000, "queued_at is the arrival time");
    assert_eq!(q.recipients.len(), 3);
    for (i, (got, want)) in q.recipients.iter().zip(&r).enumerate() {
        assert_eq!(got.index as usize, i);
        assert_eq!(got.address, want.address);
        assert_eq!(got.orcpt, want.orcpt);
        assert_eq!(got.notify, want.notify);
        assert_eq!(got.state, RcptState::Pending);
        assert_eq!(got.attempts, 0);
        assert!(got.next_attempt <= SystemTime::now(), "due at once");
        assert_eq!(got.last_reply, None);
        assert!(!got.relayed && !got.reported);
    }
    // Local only, and outbound only, are both fine; an empty outbound list is none.
    let sub = ok(s
        .submit(Submission {
            message: &msg(2),
            local_prefix: &[],
            received: at,
            local: &[ann],
            outbound: Some((&env, &[])),
        })
        .await);
    assert_eq!((sub.delivered.len(), sub.queued), (1, None));
    enqueue(&*s, 3, 1, at).await;
    assert_eq!(ok(s.queue_list().await).len(), 2);
}

async fn submit_is_all_or_nothing_on_quota<S: QueueStore>(s: Arc<S>) {
    let ann = account(&*s, "ann@a.example", Quota::default()).await;
    let full = Quota {
        bytes: Some(10),
        messages: None,
    };
    let bob = account(&*s, "bob@a.example", full).await;
    let env = envelope();
    let r = rcpts(2);
    let got = s
        .submit(Submission {
            message: &msg(1),
            local_prefix: &[],
            received: SystemTime::now(),
            local: &[ann, bob],
            outbound: Some((&env, &r)),
        })
        .await;
    assert!(matches!(got, Err(StoreError::OverQuota(_))), "{got:?}");
    assert!(ok(s.open_maildrop(ann).await).entries.is_empty());
    assert!(ok(s.queue_list().await).is_empty(), "nothing queued either");
    assert_eq!(ok(s.collect_garbage().await), 0, "no blob row was left");
}

async fn submit_needs_a_recipient<S: QueueStore>(s: Arc<S>) {
    let env = envelope();
    for outbound in [None, Some((&env, &[][..]))] {
        let got = s
            .submit(Submission {
                message: &msg(1),
                local_prefix: &[],
                received: SystemTime::now(),
                local: &[],
                outbound,
            })
            .await;
        assert!(matches!(got, Err(StoreError::Refused(_))), "{got:?}");
    }
}

async fn claim_is_exclusive_until_the_lease_expires<S: QueueStore>(s: Arc<S>) {
    let now = SystemTime::now();
    let id = enqueue(&*s, 1, 2, now).await;
    let first = ok(s.claim(now, HOUR, 10).await);
    assert_eq!(first.iter().map(|m| m.id).collect::<Vec<_>>(), vec![id]);
    assert_eq!(first[0].recipients.len(), 2);
    assert!(
        ok(s.claim(now, HOUR, 10).await).is_empty(),
        "claimed: nobody else gets it"
    );
    let later = now + HOUR / 2;
    assert!(ok(s.claim(later, HOUR, 10).await).is_empty(), "lease alive");
    // The first worker died: its lease runs out and another worker takes over.
    let after = now + HOUR + Duration::from_secs(1);
    let second = ok(s.claim(after, HOUR, 10).await);
    assert_eq!(second.len(), 1, "the expired claim is taken over");
    assert!(ok(s.claim(after, HOUR, 10).await).is_empty());
    // Released: claimable again at once.
    ok(s.release(id).await);
    assert_eq!(ok(s.claim(after, HOUR, 10).await).len(), 1);
}

async fn claim_honours_next_attempt_and_limit<S: QueueStore>(s: Arc<S>) {
    let now = SystemTime::now();
    let a = enqueue(&*s, 1, 1, now).await;
    let b = enqueue(&*s, 2, 1, now).await;
    let c = enqueue(&*s, 3, 1, now).await;
    let got = ok(s.claim(now, HOUR, 2).await);
    assert_eq!(
        got.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![a, b],
        "oldest first, at most `limit`"
    );
    let retry = now + Duration::from_secs(600);
    for id in [a, b] {
        ok(s.record(
            id,
            &[(
                0,
                Outcome::Deferred {
                    reply: "451 4.3.0 try later".into(),
                    next_attempt: retry,
                },
            )],
        )
        .await);
        ok(s.release(id).await);
    }
    let got = ok(s.claim(now, HOUR, 10).await);
    assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), vec![c]);
    ok(s.release(c).await);
    let before = ok(s.claim(retry - Duration::from_secs(1), HOUR, 10).await);
    assert_eq!(before.iter().map(|m| m.id).collect::<Vec<_>>(), vec![c]);
    ok(s.release(c).await);
    let due = ok(s.claim(retry, HOUR, 10).await);
    assert_eq!(due.iter().map(|m| m.id).collect::<Vec<_>>(), vec![a, b, c]);
    let r = &due[0].recipients[0];
    assert_eq!(r.attempts, 1);
    assert_eq!(r.state, RcptState::Pending);
    assert_eq!(r.last_reply.as_deref(), Some("451 4.3.0 try later"));
    let drift = r
        .next_attempt
        .duration_since(retry)
        .unwrap_or_else(|e| e.duration());
    assert!(
        drift < Duration::from_secs(1),
        "next_attempt kept: {drift:?}"
    );
}

async fn record_and_release_lifecycle<S: QueueStore>(s: Arc<S>) {
    let now = SystemTime::now();
    let id = enqueue(&*s, 1, 3, now).await;
    assert_eq!(ok(s.claim(now, HOUR, 10).await).len(), 1);
    let later = now + Duration::from_secs(60);
    ok(s.record(
        id,
        &[
            (
                0,
                Outcome::Delivered {
                    reply: "250 2.0.0 ok".into(),
                    relayed: true,
                },
            ),
            (
                1,
                Outcome::Failed {
                    reply: "550 5.1.1 no such user".into(),
                },
            ),
            (
                2,
                Outcome::Deferred {
                    reply: "421 4.4.2 timeout".into(),
                    next_attempt: later,
                },
            ),
        ],
    )
    .await);
    // A second result for a final recipient is dropped.
    ok(s.record(
        id,
        &[(
            1,
            Outcome::Delivered {
                reply: "250 late".into(),
                relayed: false,
            },
        )],
    )
    .await);
    ok(s.mark_reported(id, &[0, 1]).await);
    ok(s.release(id).await);
    let list = ok(s.queue_list().await);
    assert_eq!(list.len(), 1, "recipient 2 is still pending");
    let r = &list[0].recipients;
    assert_eq!(r[0].state, RcptState::Delivered);
    assert!(r[0].relayed && r[0].reported);
    assert_eq!(r[1].state, RcptState::Failed);
    assert_eq!(r[1].last_reply.as_deref(), Some("550 5.1.1 no such user"));
    assert_eq!(r[2].state, RcptState::Pending);
    assert!(!r[2].reported);
    assert!(ok(s.claim(now, HOUR, 10).await).is_empty(), "not due yet");
    let got = ok(s.claim(later, HOUR, 10).await);
    assert_eq!(got.len(), 1);
    ok(s.record(
        id,
        &[(
            2,
            Outcome::Failed {
                reply: "550 5.0.0 gave up".into(),
            },
        )],
    )
    .await);
    // Crash before the report: the final, unreported recipient brings it back.
    let again = ok(s.claim(later + HOUR * 2, HOUR, 10).await);
    assert_eq!(again.len(), 1, "unreported final results are claimable");
    assert_eq!(again[0].recipients[2].state, RcptState::Failed);
    assert_eq!(again[0].recipients[2].attempts, 2);
    ok(s.release(id).await);
    assert_eq!(ok(s.queue_list().await).len(), 1, "kept until reported");
    ok(s.mark_reported(id, &[2]).await);
    // Crash between the report and release: claimed once more, then removed.
    assert_eq!(ok(s.claim(later, HOUR, 10).await).len(), 1);
    ok(s.release(id).await);
    assert!(ok(s.queue_list().await).is_empty(), "done: removed");
    ok(s.release(id).await);
    ok(s.record(
        id,
        &[(
            0,
            Outcome::Failed {
                reply: "gone".into(),
            },
        )],
    )
    .await);
}

async fn flush_makes_deferred_due<S: QueueStore>(s: Arc<S>) {
    let now = SystemTime::now();
    let a = enqueue(&*s, 1, 2, now).await;
    let b = enqueue(&*s, 2, 1, now).await;
    assert_eq!(ok(s.claim(now, HOUR, 10).await).len(), 2);
    let retry = now + HOUR * 4;
    for (id, k) in [(a, 2u32), (b, 1)] {
        let results: Vec<_> = (0..k)
            .map(|i| {
                (
                    i,
                    Outcome::Deferred {
                        reply: "451".into(),
                        next_attempt: retry,
                    },
                )
            })
            .collect();
        ok(s.record(id, &results).await);
        ok(s.release(id).await);
    }
    assert!(ok(s.claim(SystemTime::now(), HOUR, 10).await).is_empty());
    assert_eq!(ok(s.queue_flush(Some(a)).await), 2);
    let got = ok(s.claim(SystemTime::now(), HOUR, 10).await);
    assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), vec![a]);
    assert_eq!(ok(s.queue_flush(None).await), 3);
    let got = ok(s.claim(SystemTime::now(), HOUR, 10).await);
    assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), vec![b]);
    assert!(matches!(
        s.queue_flush(Some(b + a + 100)).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn flush_during_an_attempt_is_not_lost<S: QueueStore>(s: Arc<S>) {
    let now = SystemTime::now();
    let a = enqueue(&*s, 1, 1, now).await;
    assert_eq!(ok(s.claim(now, HOUR, 10).await).len(), 1);
    // `queue flush` arrives while the attempt runs; the attempt then defers.
    assert_eq!(ok(s.queue_flush(Some(a)).await), 1);
    let deferred = Outcome::Deferred {
        reply: "451".into(),
        next_attempt: now + HOUR * 4,
    };
    ok(s.record(a, &[(0, deferred.clone())]).await);
    ok(s.release(a).await);
    let got = ok(s.claim(SystemTime::now(), HOUR, 10).await);
    assert_eq!(
        got.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![a],
        "still due now"
    );
    // A flush before a claim is used up by that claim: the next deferral holds.
    ok(s.record(a, &[(0, deferred)]).await);
    ok(s.release(a).await);
    assert!(ok(s.claim(SystemTime::now(), HOUR, 10).await).is_empty());
}

async fn remove_deletes_without_report<S: QueueStore>(s: Arc<S>) {
    let now = SystemTime::now();
    let a = enqueue(&*s, 1, 2, now).await;
    let b = enqueue(&*s, 2, 1, now).await;
    ok(s.queue_remove(a).await);
    let list = ok(s.queue_list().await);
    assert_eq!(list.iter().map(|m| m.id).collect::<Vec<_>>(), vec![b]);
    assert!(matches!(
        s.queue_remove(a).await,
        Err(StoreError::NotFound(_))
    ));
    let got = ok(s.claim(now, HOUR, 10).await);
    assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), vec![b]);
}

async fn bounce_fails_pending_recipients<S: QueueStore>(s: Arc<S>) {
    let now = SystemTime::now();
    let id = enqueue(&*s, 1, 3, now).await;
    assert_eq!(ok(s.claim(now, HOUR, 10).await).len(), 1);
    ok(s.record(
        id,
        &[
            (
                0,
                Outcome::Delivered {
                    reply: "250".into(),
                    relayed: false,
                },
            ),
            (
                1,
                Outcome::Deferred {
                    reply: "451".into(),
                    next_attempt: now + HOUR,
                },
            ),
            (
                2,
                Outcome::Deferred {
                    reply: "451".into(),
                    next_attempt: now + HOUR,
                },
            ),
        ],
    )
    .await);
    ok(s.mark_reported(id, &[0]).await);
    ok(s.release(id).await);
    assert_eq!(
        ok(s.queue_bounce(id, "bounced by the administrator").await),
        2
    );
    assert_eq!(ok(s.queue_bounce(id, "again").await), 0);
    let got = ok(s.claim(now, HOUR, 10).await);
    assert_eq!(got.len(), 1, "due for its report");
    let r = &got[0].recipients;
    assert_eq!(r[0].state, RcptState::Delivered);
    for x in &r[1..] {
        assert_eq!(x.state, RcptState::Failed);
        assert_eq!(
            x.last_reply.as_deref(),
            Some("bounced by the administrator")
        );
    }
    assert!(matches!(
        s.queue_bounce(id + 100, "x").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn queued_blob_lives_until_released<S: QueueStore>(s: Arc<S>) {
    let now = SystemTime::now();
    let ann = account(&*s, "ann@a.example", Quota::default()).await;
    // Shared between a mailbox and the queue.
    let env = envelope();
    let r = rcpts(1);
    let sub = ok(s
        .submit(Submission {
            message: &msg(1),
            local_prefix: &[],
            received: now,
            local: &[ann],
            outbound: Some((&env, &r)),
        })
        .await);
    let id = sub.queued.unwrap_or_else(|| panic!("queued"));
    let only = enqueue(&*s, 2, 1, now).await;
    let list = ok(s.queue_list().await);
    let (shared, alone) = (list[0].blob, list[1].blob);
    let d = ok(s.open_maildrop(ann).await);
    ok(s.expunge(d.mailbox, &[d.entries[0].uid]).await);
    drop(d);
    assert_eq!(ok(s.collect_garbage().await), 0, "queued blobs are live");
    assert_eq!(ok(read_all(&*s, &shared).await), msg(1));
    assert_eq!(ok(read_all(&*s, &alone).await), msg(2));
    ok(s.claim(now, HOUR, 10).await);
    for q in [id, only] {
        ok(s.record(
            q,
            &[(
                0,
                Outcome::Delivered {
                    reply: "250".into(),
                    relayed: false,
                },
            )],
        )
        .await);
        ok(s.mark_reported(q, &[0]).await);
        ok(s.release(q).await);
    }
    assert!(ok(s.queue_list().await).is_empty());
    assert_eq!(ok(s.collect_garbage().await), 2);
    assert!(read_all(&*s, &shared).await.is_err());
    assert!(read_all(&*s, &alone).await.is_err());
    // The same bytes queued again after collection are stored afresh.
    let again = enqueue(&*s, 2, 1, now).await;
    let list = ok(s.queue_list().await);
    assert_eq!(list[0].id, again);
    assert_eq!(ok(read_all(&*s, &list[0].blob).await), msg(2));
}

async fn concurrent_claims_never_overlap<S: QueueStore>(s: Arc<S>) {
    let now = SystemTime::now();
    let mut ids = BTreeSet::new();
    for n in 0..12 {
        ids.insert(enqueue(&*s, n, 1, now).await);
    }
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.claim(now, HOUR, 3).await }));
    }
    let mut seen = BTreeSet::new();
    for t in tasks {
        let got = match t.await {
            Ok(Ok(got)) => got,
            other => panic!("claim failed: {other:?}"),
        };
        for m in got {
            assert!(seen.insert(m.id), "message {} claimed twice", m.id);
        }
    }
    assert_eq!(seen, ids, "every message claimed exactly once");
}
