//! The queue worker delivering through a smarthost (a scripted SMTP server on
//! loopback): delivery, retries, bounces with DSNs, expiry, restarts, and hops that
//! lack 8BITMIME, DSN or SMTPUTF8.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use buudien_queue::SmarthostTls;
use buudien_store::{Notify, QueueStore, RcptState, Ret};
use buudien_types::Secret;
use common::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered() {
    let env = store().await;
    let fake = fake_server(Behaviour::accept_all()).await;
    let w = start(env.store.clone(), config(Some(fake.addr)), None);
    queue(
        &env.store,
        MESSAGE,
        &envelope("ann@local.example"),
        &[rcpt("bob@remote.example"), rcpt("carol@remote.example")],
    )
    .await;
    w.handle.wake();
    until(10, "the queue to empty", || queue_empty(&env.store)).await;
    w.stop().await;
    let got = fake.received();
    assert_eq!(got.len(), 1, "one transaction for both recipients");
    assert_eq!(
        got[0].data, MESSAGE,
        "the message arrives unchanged (dot-stuffing undone)"
    );
    assert_eq!(
        got[0].mail,
        format!("MAIL FROM:<ann@local.example> SIZE={}", MESSAGE.len())
    );
    assert_eq!(
        got[0].rcpts,
        [
            "RCPT TO:<bob@remote.example> ORCPT=rfc822;bob@remote.example",
            "RCPT TO:<carol@remote.example> ORCPT=rfc822;carol@remote.example"
        ]
    );
    assert!(
        inbox(&env.store, env.ann).await.is_empty(),
        "no DSN for a plain success"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_then_delivered() {
    let env = store().await;
    let b = Behaviour::accept_all().rcpt(|conn, _| {
        if conn == 0 {
            "451 4.3.0 try again later".into()
        } else {
            "250 2.1.5 ok".into()
        }
    });
    let fake = fake_server(b).await;
    let w = start(env.store.clone(), config(Some(fake.addr)), None);
    let id = queue(
        &env.store,
        MESSAGE,
        &envelope("ann@local.example"),
        &[rcpt("bob@remote.example")],
    )
    .await;
    w.handle.wake();
    until(5, "the first attempt", || async {
        fake.connections.load(Ordering::SeqCst) >= 1
    })
    .await;
    until(10, "the queue to empty", || queue_empty(&env.store)).await;
    w.stop().await;
    assert_eq!(
        fake.connections.load(Ordering::SeqCst),
        2,
        "deferred once, then delivered"
    );
    assert_eq!(fake.received().len(), 1);
    assert!(inbox(&env.store, env.ann).await.is_empty());
    let _ = id;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferral_is_recorded_with_its_retry_time() {
    let env = store().await;
    let fake =
        fake_server(Behaviour::accept_all().rcpt(|_, _| "452 4.2.2 mailbox full".into())).await;
    let mut cfg = config(Some(fake.addr));
    cfg.retry = vec![Duration::from_secs(3600)];
    let w = start(env.store.clone(), cfg, None);
    let before = SystemTime::now();
    queue(
        &env.store,
        MESSAGE,
        &envelope("ann@local.example"),
        &[rcpt("bob@remote.example")],
    )
    .await;
    w.handle.wake();
    until(5, "a recorded attempt", || async {
        env.store.queue_list().await.unwrap()[0].recipients[0].attempts == 1
    })
    .await;
    w.stop().await;
    let q = &env.store.queue_list().await.unwrap()[0];
    let r = &q.recipients[0];
    assert_eq!(r.state, RcptState::Pending);
    assert!(
        r.last_reply
            .as_deref()
            .unwrap()
            .ends_with("said: 452 4.2.2 mailbox full"),
        "{r:?}"
    );
    assert!(r.next_attempt >= before + Duration::from_secs(3500));
    assert_eq!(fake.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounced_to_the_local_sender() {
    let env = store().await;
    let b = Behaviour::accept_all().rcpt(|_, a| {
        if a.starts_with("bob") {
            "550 5.1.1 <bob@remote.example>: no such user".into()
        } else {
            "250 ok".into()
        }
    });
    let fake = fake_server(b).await;
    let w = start(env.store.clone(), config(Some(fake.addr)), None);
    let mut e = envelope("ann+lists@local.example");
    e.envid = Some("ENV 42".into());
    let mut bob = rcpt("bob@remote.example");
    bob.orcpt = Some("rfc822;Bob+40Remote.example".into());
    queue(
        &env.store,
        MESSAGE,
        &e,
        &[bob, rcpt("carol@remote.example")],
    )
    .await;
    w.handle.wake();
    until(10, "the queue to empty", || queue_empty(&env.store)).await;
    w.stop().await;
    assert_eq!(fake.received().len(), 1, "carol got it");
    let mail = inbox(&env.store, env.ann).await;
    assert_eq!(mail.len(), 1, "one DSN, to the +tag sender's account");
    let dsn = &mail[0];
    assert!(
        dsn.starts_with(
            "Return-Path: <>\r\nFrom: Mail Delivery <MAILER-DAEMON@mail.local.example>\r\n"
        ),
        "{dsn}"
    );
    assert!(dsn.contains("To: <ann+lists@local.example>\r\n"));
    assert!(dsn.contains("Subject: Returned mail: delivery failed\r\n"));
    assert!(dsn.contains("Content-Type: multipart/report; report-type=delivery-status;"));
    assert!(dsn.contains(
        "Reporting-MTA: dns; mail.local.example\r\nOriginal-Envelope-Id: ENV 42\r\nArrival-Date: "
    ));
    assert!(dsn.contains(
        "Original-Recipient: rfc822;Bob@Remote.example\r\nFinal-Recipient: rfc822;bob@remote.example\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; 127.0.0.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <bob@remote.example>: no such user\r\nLast-Attempt-Date: "
    ), "{dsn}");
    assert!(
        !dsn.contains("carol"),
        "delivered recipients are not in a failure DSN"
    );
    assert!(dsn.contains("Content-Type: message/rfc822\r\n\r\nFrom: ann@local.example\r\n"));
    assert!(dsn.contains("Hello Bob."), "the full message is returned");
}

/// A queued message whose stored bytes are damaged is not retried forever: every
/// recipient fails with 5.3.0 and the sender gets a DSN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_queued_message_bounces_at_once() {
    let env = store().await;
    let fake = fake_server(Behaviour::accept_all()).await;
    queue(
        &env.store,
        MESSAGE,
        &envelope("ann@local.example"),
        &[rcpt("bob@remote.example")],
    )
    .await;
    assert_eq!(testing::truncate_blobs(&env.store, None, 3).await, 1);
    let w = start(env.store.clone(), config(Some(fake.addr)), None);
    w.handle.wake();
    until(10, "the queue to empty", || queue_empty(&env.store)).await;
    w.stop().await;
    assert!(fake.received().is_empty(), "nothing damaged was sent");
    let mail = inbox(&env.store, env.ann).await;
    assert_eq!(mail.len(), 1, "one DSN");
    assert!(
        mail[0].contains("Action: failed\r\nStatus: 5.3.0\r\n"),
        "{}",
        mail[0]
    );
    assert!(mail[0].contains("damaged in storage"), "{}", mail[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_after_retries() {
    let env = store().await;
    let fake =
        fake_server(Behaviour::accept_all().rcpt(|_, _| "421 4.3.2 shutting down".into())).await;
    let mut cfg = config(Some(fake.addr));
    cfg.expire = Duration::from_millis(600);
    let w = start(env.store.clone(), cfg, None);
    let started = Instant::now();
    let mut e = envelope("ann@local.example");
    e.ret = Some(Ret::Headers);
    queue(&env.store, MESSAGE, &e, &[rcpt("bob@remote.example")]).await;
    w.handle.wake();
    until(10, "the queue to empty", || queue_empty(&env.store)).await;
    w.stop().await;
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "kept until it expired"
    );
    let tries = fake.connections.load(Ordering::SeqCst);
    assert!((3..=6).contains(&tries), "retried on the schedule: {tries}");
    let mail = inbox(&env.store, env.ann).await;
    assert_eq!(mail.len(), 1);
    let dsn = &mail[0];
    assert!(dsn.contains("Action: failed\r\nStatus: 4.3.2\r\n"), "{dsn}");
    assert!(dsn.contains("Diagnostic-Code: smtp; 421 4.3.2 shutting down\r\n"));
    assert!(
        dsn.contains("Content-Type: text/rfc822-headers\r\n"),
        "RET=HDRS"
    );
    assert!(!dsn.contains("Hello Bob."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_claim_is_delivered_once_after_its_lease() {
    let env = store().await;
    let fake = fake_server(Behaviour::accept_all()).await;
    queue(
        &env.store,
        MESSAGE,
        &envelope("ann@local.example"),
        &[rcpt("bob@remote.example")],
    )
    .await;
    // A worker claimed it and died.
    let lease = Duration::from_millis(700);
    let claimed = env.store.claim(SystemTime::now(), lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let started = Instant::now();
    let w = start(env.store.clone(), config(Some(fake.addr)), None);
    w.handle.wake();
    until(10, "the queue to empty", || queue_empty(&env.store)).await;
    w.stop().await;
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "waited for the lease"
    );
    assert_eq!(fake.received().len(), 1, "delivered exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_bit_body_is_converted_for_a_hop_without_8bitmime() {
    let env = store().await;
    let fake = fake_server(Behaviour::accept_all().extensions(&["PIPELINING", "SIZE"])).await;
    let w = start(env.store.clone(), config(Some(fake.addr)), None);
    let msg = "From: ann@local.example\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n";
    let mut e = envelope("ann@local.example");
    e.eight_bit = true;
    queue(
        &env.store,
        msg.as_bytes(),
        &e,
        &[rcpt("bob@remote.example")],
    )
    .await;
    w.handle.wake();
    until(10, "the queue to empty", || queue_empty(&env.store)).await;
    w.stop().await;
    let got = fake.received();
    assert_eq!(got.len(), 1);
    let data = String::from_utf8(got[0].data.clone()).unwrap();
    assert_eq!(
        data,
        "From: ann@local.example\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe\r\n"
    );
    assert!(!got[0].mail.contains("BODY="), "{}", got[0].mail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsn_parameters_go_to_a_hop_with_dsn() {
    let env = store().await;
    let fake = fake_server(Behaviour::accept_all()).await;
    let w = start(env.store.clone(), config(Some(fake.addr)), None);
    let mut e = envelope("ann@local.example");
    e.envid = Some("id+1".into());
    e.ret = Some(Ret::Headers);
    e.eight_bit = true;
    let mut r = rcpt("bob@remote.example");
    r.notify = Some(Notify {
        success: true,
        failure: true,
        delay: false,
    });
    r.orcpt = Some("rfc822;bob@remote.example".into());
    let mut never = rcpt("dan@remote.example");
    never.notify = Some(Notify::NEVER);
    queue(&env.store, MESSAGE, &e, &[r, never]).await;
    w.handle.wake();
    until(10, "the queue to empty", || queue_empty(&env.store)).await;
    w.stop().await;
    let got = fake.received();
    assert_eq!(
        got[0].mail,
        format!(
            "MAIL FROM:<ann@local.example> SIZE={} BODY=8BITMIME RET=HDRS ENVID=id+2B1",
            MESSAGE.len()
        )
    );
    assert_eq!(
        got[0].rcpts,
        [
            "RCPT TO:<bob@remote.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@remote.example",
            "RCPT TO:<dan@remote.example> NOTIFY=NEVER ORCPT=rfc822;dan@remote.example"
        ]
    );
    assert!(
        inbox(&env.store, env.ann).await.is_empty(),
        "the next hop reports success itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_dsn_for_a_hop_without_dsn() {
    let env = store().await;
    let fake = fake_server(Behaviour::accept_all().extensions(&["8BITMIME"])).await;
    let w = start(env.store.clone(), config(Some(fake.addr)), None);
    let mut r = rcpt("bob@remote.example");
    r.notify = Some(Notify {
        success: true,
        failure: true,
        delay: false,
    });
    let mut quiet = rcpt("carol@remote.example");
    quiet.notify = Some(Notify {
        success: false,
        failure: true,
        delay: false,
    });
    queue(
        &env.store,
        MESSAGE,
        &envelope("ann@local.example"),
        &[r, quiet],
    )
    .await;
    w.handle.wake();
    until(10, "the queue to empty", || queue_empty(&env.store)).await;
    w.stop().await;
    let got = fake.received();
    assert_eq!(
        got[0].rcpts,
        [
            "RCPT TO:<bob@remote.example>",
            "RCPT TO:<carol@remote.example>"
        ],
        "no DSN parameters"
    );
    assert_eq!(
        got[0].mail, "MAIL FROM:<ann@local.example>",
        "no SIZE advertised"
    );
    let mail = inbox(&env.store, env.ann).await;
    assert_eq!(mail.len(), 1);
    let dsn = &mail[0];
    assert!(dsn.contains("Subject: Delivery report: message delivered\r\n"));
    assert!(
        dsn.contains(
            "Final-Recipient: rfc822;bob@remote.example\r\nAction: relayed\r\nStatus: 2.0.0\r\n"
        ),
        "{dsn}"
    );
    assert!(
        !dsn.contains("carol@remote.example\r\nAction"),
        "carol asked for failures only"
    );
    assert!(
        dsn.contains("Content-Type: text/rfc822-headers\r\n"),
        "headers only on success"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtputf8_message_to_a_hop_without_it_bounces() {
    let env = store().await;
    let fake = fake_server(Behaviour::accept_all().extensions(&["8BITMIME", "DSN"])).await;
    let w = start(env.store.clone(), config(Some(fake.addr)), None);
    let mut e = envelope("ann@local.example");
    e.smtputf8 = true;
    e.eight_bit = true;
    let msg = "From: ann@local.example\r\nSubject: Grüße\r\n\r\nhallo\r\n";
    queue(
        &env.store,
        msg.as_bytes(),
        &e,
        &[rcpt("jürgen@remote.example")],
    )
    .await;
    w.handle.wake();
    until(10, "the queue to empty", || queue_empty(&env.store)).await;
    w.stop().await;
    assert_eq!(fake.connections.load(Ordering::SeqCst), 1);
    assert!(fake.received().is_empty());
    let mail = inbox(&env.store, env.ann).await;
    assert_eq!(mail.len(), 1);
    let dsn = &mail[0];
    assert!(dsn.contains("report-type=global-delivery-status"), "{dsn}");
    assert!(
        dsn.contains(
            "Final-Recipient: utf-8;jürgen@remote.example\r\nAction: failed\r\nStatus: 5.6.7\r\n"
        ),
        "{dsn}"
    );
    assert!(dsn.contains("Content-Type: message/global\r\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_sender_never_gets_a_dsn_and_dsns_to_remote_senders_are_queued() {
    let env = store().await;
    let fake = fake_server(Behaviour::accept_all().rcpt(|_, a| {
        if a.starts_with("bob") {
            "550 5.1.1 no".into()
        } else {
            "250 ok".into()
        }
    }))
    .await;
    let w = start(env.store.clone(), config(Some(fake.addr)), None);
    // A bounce that bounces: dropped.
    queue(
        &env.store,
        MESSAGE,
        &envelope(""),
        &[rcpt("bob@remote.example")],
    )
    .await;
    // A remote sender: the DSN goes out from <> through the queue.
    queue(
        &env.store,
        MESSAGE,
        &envelope("zed@elsewhere.example"),
        &[rcpt("bob@remote.example")],
    )
    .await;
    w.handle.wake();
    until(10, "the queue to empty", || queue_empty(&env.store)).await;
    until(10, "the DSN to go out", || async {
        !fake.received().is_empty()
    })
    .await;
    w.stop().await;
    let got = fake.received();
    assert_eq!(got.len(), 1, "only the DSN to zed");
    assert_eq!(
        got[0].mail,
        format!("MAIL FROM:<> SIZE={}", got[0].data.len()),
        "the DSN goes out from the null sender"
    );
    assert!(got[0].rcpts[0].starts_with("RCPT TO:<zed@elsewhere.example>"));
    let dsn = String::from_utf8_lossy(&got[0].data);
    assert!(dsn.contains("Final-Recipient: rfc822;bob@remote.example\r\nAction: failed\r\n"));
    assert!(
        !dsn.contains("Return-Path"),
        "Return-Path only at final delivery"
    );
    assert!(inbox(&env.store, env.ann).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_destination_are_bounded() {
    let env = store().await;
    let mut b = Behaviour::accept_all();
    b.data_delay = Duration::from_millis(150);
    let fake = fake_server(b).await;
    let mut cfg = config(Some(fake.addr));
    cfg.max_connections_per_domain = 2;
    cfg.workers = 8;
    let w = start(env.store.clone(), cfg, None);
    for _ in 0..6 {
        queue(
            &env.store,
            MESSAGE,
            &envelope("ann@local.example"),
            &[rcpt("bob@remote.example")],
        )
        .await;
    }
    w.handle.wake();
    until(20, "the queue to empty", || queue_empty(&env.store)).await;
    w.stop().await;
    assert_eq!(fake.received().len(), 6);
    assert_eq!(
        fake.max_active.load(Ordering::SeqCst),
        2,
        "never more than 2 at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_smarthost_is_retried() {
    let env = store().await;
    // Bind and drop: nothing listens there any more.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let w = start(env.store.clone(), config(Some(addr)), None);
    queue(
        &env.store,
        MESSAGE,
        &envelope("ann@local.example"),
        &[rcpt("bob@remote.example")],
    )
    .await;
    w.handle.wake();
    until(5, "two attempts", || async {
        env.store.queue_list().await.unwrap()[0].recipients[0].attempts >= 2
    })
    .await;
    w.stop().await;
    let q = &env.store.queue_list().await.unwrap()[0];
    let reply = q.recipients[0].last_reply.clone().unwrap();
    assert!(
        reply.starts_with("4.4.1 connect to 127.0.0.1[127.0.0.1]"),
        "{reply}"
    );
    assert_eq!(q.recipients[0].state, RcptState::Pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opportunistic_starttls_with_an_untrusted_certificate() {
    let env = store().await;
    let mut b = Behaviour::accept_all()
        .extensions(&["PIPELINING", "8BITMIME"])
        .starttls();
    b.tls_extensions = vec!["DSN"];
    let fake = fake_server(b).await;
    let w = start(env.store.clone(), config(Some(fake.addr)), None);
    let mut r = rcpt("bob@remote.example");
    r.notify = Some(Notify {
        success: false,
        failure: true,
        delay: false,
    });
    queue(&env.store, MESSAGE, &envelope("ann@local.example"), &[r]).await;
    w.handle.wake();
    until(10, "the queue to empty", || queue_empty(&env.store)).await;
    w.stop().await;
    let got = fake.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].tls, "sent over TLS");
    assert_eq!(
        got[0].ehlos,
        ["EHLO mail.local.example", "EHLO mail.local.example"],
        "EHLO again after TLS"
    );
    assert!(
        got[0].rcpts[0].contains("NOTIFY=FAILURE"),
        "capabilities learnt after TLS: {:?}",
        got[0].rcpts
    );
}

fn smarthost_with(
    addr: std::net::SocketAddr,
    tls: SmarthostTls,
    pass: &str,
) -> buudien_queue::QueueConfig {
    let mut cfg = config(Some(addr));
    if let Some(sh) = cfg.smarthost.as_mut() {
        sh.tls = tls;
        sh.auth = Some(("relayuser".into(), Secret::new(pass.to_string())));
    }
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_smarthost_with_auth() {
    let env = store().await;
    let mut b = Behaviour::accept_all();
    b.tls = Some(self_signed());
    b.implicit_tls = true;
    b.auth = Some(("relayuser".into(), "s3cret".into()));
    let fake = fake_server(b).await;
    let w = start(
        env.store.clone(),
        smarthost_with(fake.addr, SmarthostTls::Implicit, "s3cret"),
        None,
    );
    queue(
        &env.store,
        MESSAGE,
        &envelope("ann@local.example"),
        &[rcpt("bob@remote.example")],
    )
    .await;
    w.handle.wake();
    until(10, "the queue to empty", || queue_empty(&env.store)).await;
    w.stop().await;
    let got = fake.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].tls);
    assert_eq!(got[0].user.as_deref(), Some("relayuser"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smarthost_requirements_that_fail_defer() {
    let env = store().await;
    // STARTTLS required but not offered.
    let plain = fake_server(Behaviour::accept_all()).await;
    let w = start(
        env.store.clone(),
        smarthost_with(plain.addr, SmarthostTls::StartTls, "x"),
        None,
    );
    queue(
        &env.store,
        MESSAGE,
        &envelope("ann@local.example"),
        &[rcpt("bob@remote.example")],
    )
    .await;
    w.handle.wake();
    until(5, "an attempt", || async {
        env.store.queue_list().await.unwrap()[0].recipients[0].attempts >= 1
    })
    .await;
    w.stop().await;
    let q = env.store.queue_list().await.unwrap();
    let reply = q[0].recipients[0].last_reply.clone().unwrap();
    assert!(
        reply.starts_with("4.7.0 ") && reply.contains("STARTTLS"),
        "{reply}"
    );
    assert!(plain.received().is_empty());
    env.store.queue_remove(q[0].id).await.unwrap();

    // Wrong password.
    let mut b = Behaviour::accept_all().starttls();
    b.auth = Some(("relayuser".into(), "right".into()));
    let authd = fake_server(b).await;
    let w = start(
        env.store.clone(),
        smarthost_with(authd.addr, SmarthostTls::StartTls, "wrong"),
        None,
    );
    queue(
        &env.store,
        MESSAGE,
        &envelope("ann@local.example"),
        &[rcpt("bob@remote.example")],
    )
    .await;
    w.handle.wake();
    until(5, "an attempt", || async {
        env.store.queue_list().await.unwrap()[0].recipients[0].attempts >= 1
    })
    .await;
    w.stop().await;
    let q = env.store.queue_list().await.unwrap();
    let r = &q[0].recipients[0];
    assert_eq!(
        r.state,
        RcptState::Pending,
        "an authentication failure is retried"
    );
    assert!(
        r.last_reply.as_deref().unwrap().contains("said: 535 5.7.8"),
        "{r:?}"
    );
    assert!(inbox(&env.store, env.ann).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recipient_rejected() {
    let env = store().await;
    let fake =
        fake_server(Behaviour::accept_all().rcpt(|_, _| "550 5.7.1 relay denied".into())).await;
    let w = start(env.store.clone(), config(Some(fake.addr)), None);
    queue(
        &env.store,
        MESSAGE,
        &envelope("ann@local.example"),
        &[rcpt("bob@remote.example"), rcpt("eve@remote.example")],
    )
    .await;
    w.handle.wake();
    until(10, "the queue to empty", || queue_empty(&env.store)).await;
    w.stop().await;
    assert!(fake.received().is_empty());
    let mail = inbox(&env.store, env.ann).await;
    assert_eq!(mail.len(), 1);
    assert_eq!(
        mail[0]
            .matches("Action: failed\r\nStatus: 5.7.1\r\n")
            .count(),
        2
    );
}
