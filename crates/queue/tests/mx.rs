//! The MX path: preference order and fallback, the implicit MX, null MX (RFC 7505)
//! and unknown domains, with a static resolver pointing at fake servers on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use buudien_queue::{HickoryResolver, Resolve, StaticResolver};
use common::*;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_hosts_are_tried_in_preference_order() {
    let env = store().await;
    let primary = fake_server(Behaviour::accept_all()).await;
    let port = primary.addr.port();
    // A second server on the same port of another loopback address.
    let backup = fake_server_on(Behaviour::accept_all(), &format!("127.0.0.3:{port}")).await;
    let resolver = StaticResolver::new()
        // first.example: the preferred host answers.
        .with_mx("first.example", 20, "backup.mx.test")
        .with_mx("first.example", 10, "primary.mx.test")
        // fallback.example: the preferred host refuses connections (nothing listens
        // on 127.0.0.2), so the next one gets it.
        .with_mx("fallback.example", 5, "dead.mx.test")
        .with_mx("fallback.example", 50, "backup.mx.test")
        .with_host("primary.mx.test", ip(1))
        .with_host("backup.mx.test", ip(3))
        .with_host("dead.mx.test", ip(2));
    let mut cfg = config(None);
    cfg.mx_port = port;
    let w = start(env.store.clone(), cfg, Some(Arc::new(resolver)));
    queue(
        &env.store,
        MESSAGE,
        &envelope("ann@local.example"),
        &[rcpt("a@first.example")],
    )
    .await;
    queue(
        &env.store,
        MESSAGE,
        &envelope("ann@local.example"),
        &[rcpt("b@Fallback.Example")],
    )
    .await;
    w.handle.wake();
    until(10, "the queue to empty", || queue_empty(&env.store)).await;
    w.stop().await;
    let p = primary.received();
    let b = backup.received();
    assert_eq!(p.len(), 1, "first.example went to its preferred MX");
    assert!(p[0].rcpts[0].starts_with("RCPT TO:<a@first.example>"));
    assert_eq!(b.len(), 1, "fallback.example went to its second MX");
    assert!(b[0].rcpts[0].starts_with("RCPT TO:<b@Fallback.Example>"));
    assert_eq!(backup.connections.load(Ordering::SeqCst), 1);
    assert!(inbox(&env.store, env.ann).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_per_domain_for_several_recipients_and_domains() {
    let env = store().await;
    let fake = fake_server(Behaviour::accept_all()).await;
    let resolver = StaticResolver::new()
        .with_mx("one.example", 10, "mx.test")
        .with_mx("two.example", 10, "mx.test")
        .with_host("mx.test", ip(1));
    let mut cfg = config(None);
    cfg.mx_port = fake.addr.port();
    let w = start(env.store.clone(), cfg, Some(Arc::new(resolver)));
    let rcpts = [
        rcpt("a@one.example"),
        rcpt("b@two.example"),
        rcpt("c@one.example"),
    ];
    queue(&env.store, MESSAGE, &envelope("ann@local.example"), &rcpts).await;
    w.handle.wake();
    until(10, "the queue to empty", || queue_empty(&env.store)).await;
    w.stop().await;
    let mut got: Vec<Vec<String>> = fake.received().into_iter().map(|r| r.rcpts).collect();
    got.sort();
    assert_eq!(got.len(), 2, "one transaction per domain");
    assert!(got[0][0].starts_with("RCPT TO:<a@one.example>"));
    assert!(got[0][1].starts_with("RCPT TO:<c@one.example>"));
    assert!(got[1][0].starts_with("RCPT TO:<b@two.example>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_mx_null_mx_and_unknown_domains() {
    let env = store().await;
    let fake = fake_server(Behaviour::accept_all()).await;
    let resolver = StaticResolver::new()
        .with_host("bare.example", ip(1))
        .with_mx("null.example", 0, ".");
    let mut cfg = config(None);
    cfg.mx_port = fake.addr.port();
    let w = start(env.store.clone(), cfg, Some(Arc::new(resolver)));
    let rcpts = [
        rcpt("a@bare.example"),
        rcpt("b@null.example"),
        rcpt("c@nowhere.example"),
    ];
    queue(&env.store, MESSAGE, &envelope("ann@local.example"), &rcpts).await;
    w.handle.wake();
    until(10, "the queue to empty", || queue_empty(&env.store)).await;
    w.stop().await;
    let got = fake.received();
    assert_eq!(got.len(), 1, "bare.example has no MX: its own address");
    assert!(got[0].rcpts[0].starts_with("RCPT TO:<a@bare.example>"));
    let mail = inbox(&env.store, env.ann).await;
    assert_eq!(mail.len(), 1, "one DSN for both failures");
    let dsn = &mail[0];
    assert!(
        dsn.contains(
            "Final-Recipient: rfc822;b@null.example\r\nAction: failed\r\nStatus: 5.1.10\r\n"
        ),
        "{dsn}"
    );
    assert!(
        dsn.contains(
            "Final-Recipient: rfc822;c@nowhere.example\r\nAction: failed\r\nStatus: 5.1.2\r\n"
        ),
        "{dsn}"
    );
    assert!(dsn.contains(
        "<b@null.example>: 5.1.10 null.example does not accept mail (null MX, RFC 7505)"
    ));
    assert!(!dsn.contains("a@bare.example\r\nAction"));
}

#[tokio::test]
async fn hickory_resolver_builds_with_configured_servers() {
    let r = HickoryResolver::new(&["127.0.0.1:5353".parse().unwrap()]);
    assert!(r.is_ok());
    let _: &dyn Resolve = &r.unwrap();
}
