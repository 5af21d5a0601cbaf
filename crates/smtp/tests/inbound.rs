//! Whole inbound (port 25) sessions over an in-memory duplex against a real
//! store: local delivery, aliases, sub-addresses, relay control, sizes, quota,
//! recipient limits, loops and the session limits. The tests read like protocol
//! traces.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use buudien_smtp::{Limits, Mode, SmtpConfig};
use buudien_store::MailStore;
use common::*;
use std::time::Duration;

const MSG: &str =
    "From: carol@example.net\r\nSubject: hello\r\n\r\nline 1\r\n.dot line\r\nline 3\r\n";

#[tokio::test]
async fn greeting_and_ehlo_keywords() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, task) = connect(&server, REMOTE, Mode::Inbound);
    let ehlo = c.hello().await;
    let lines: Vec<&str> = ehlo.lines().collect();
    assert_eq!(
        lines,
        vec![
            "250-mx.example.org greets client.example.net",
            "250-PIPELINING",
            "250-SIZE 52428800",
            "250-8BITMIME",
            "250-ENHANCEDSTATUSCODES",
            "250-SMTPUTF8",
            "250-CHUNKING",
            "250 DSN",
        ]
    );
    // No AUTH on port 25, not even from loopback; no STARTTLS without a certificate.
    assert!(!ehlo.contains("AUTH") && !ehlo.contains("STARTTLS"));
    assert_eq!(c.cmd("HELO old.example").await, "250 mx.example.org");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 mx.example.org Bye");
    assert!(c.closed().await);
    task.await.unwrap();

    let (mut c, _) = connect(&server, LOOPBACK, Mode::Inbound);
    assert!(!c.hello().await.contains("AUTH"));
    assert_eq!(
        c.cmd("AUTH PLAIN AGFubgBjb3JyZWN0IGhvcnNl").await,
        "502 5.5.1 AUTH not available on this service"
    );
}

#[tokio::test]
async fn local_delivery_with_trace_fields() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    let r = c.message("carol@example.net", &[ANN], MSG).await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    let id = r.rsplit(' ').next().unwrap().to_owned();
    let inbox = env.inbox(env.ann).await;
    assert_eq!(inbox.len(), 1);
    let m = &inbox[0];
    assert!(m.starts_with("Return-Path: <carol@example.net>\r\nReceived: from client.example.net ([192.0.2.1])\r\n"), "{m}");
    assert!(
        m.contains(&format!("by mx.example.org (buudien) with ESMTP id {id}")),
        "{m}"
    );
    assert!(m.contains("for <ann@example.org>;"), "{m}");
    assert!(m.ends_with(MSG), "{m}");
    assert!(env.inbox(env.bob).await.is_empty());
    assert!(env.queue().await.is_empty());
    // The session goes on: a second message in the same connection.
    let r = c.message("", &[BOB], "Subject: two\r\n\r\nx\r\n").await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    let m = &env.inbox(env.bob).await[0];
    assert!(m.starts_with("Return-Path: <>\r\n"), "{m}");
}

#[tokio::test]
async fn aliases_and_subaddresses_store_once_per_account() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    let r = c
        .message(
            "carol@example.net",
            &[
                "team@example.org",
                "Ann+Lists@Example.org",
                "sales@example.org",
                ANN,
            ],
            MSG,
        )
        .await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    let ann = env.inbox(env.ann).await;
    assert_eq!(ann.len(), 1, "ann gets one copy");
    assert!(!ann[0].contains("\tfor <"), "several recipients: no 'for'");
    assert_eq!(env.inbox(env.bob).await.len(), 1);

    let r = c
        .message("carol@example.net", &["bob+x+y@example.org"], MSG)
        .await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    assert_eq!(env.inbox(env.bob).await.len(), 2);
}

#[tokio::test]
async fn unknown_users_and_syntax() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    assert_eq!(c.cmd("MAIL FROM:<carol@example.net>").await, "250 2.1.0 Ok");
    for rcpt in [
        "nobody@example.org",
        "nobody+tag@example.org",
        "\"a b\"@example.org",
    ] {
        assert_eq!(
            c.cmd(&format!("RCPT TO:<{rcpt}>")).await,
            "550 5.1.1 recipient address rejected: user unknown",
            "{rcpt}"
        );
    }
    assert!(c.cmd("RCPT TO:<a@>").await.starts_with("501 5.1.3 "));
    assert!(
        c.cmd("RCPT TO:ann@example.org")
            .await
            .starts_with("501 5.1.3 ")
    );
    assert!(
        c.cmd("RCPT TO:<ann@example.org> FOO=1")
            .await
            .starts_with("555 5.5.4 ")
    );
    assert_eq!(c.cmd("DATA").await, "554 5.5.1 no valid recipients");
    // Sub-addressing can be turned off.
    let server = env.server(SmtpConfig {
        subaddress_separator: None,
        ..config()
    });
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    c.cmd("MAIL FROM:<>").await;
    assert!(
        c.cmd("RCPT TO:<ann+x@example.org>")
            .await
            .starts_with("550 5.1.1")
    );
}

#[tokio::test]
async fn postmaster_is_accepted() {
    let env = env().await;
    add_account(&env.store, "postmaster@example.org").await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    c.cmd("MAIL FROM:<carol@example.net>").await;
    assert_eq!(c.cmd("RCPT TO:<Postmaster>").await, "250 2.1.5 Ok");
    assert!(c.data(MSG).await.starts_with("250 2.0.0"));
}

#[tokio::test]
async fn relay_is_denied_in_every_form() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    assert_eq!(c.cmd("MAIL FROM:<carol@example.net>").await, "250 2.1.0 Ok");
    for rcpt in [
        "victim@example.net",
        "@example.org:victim@example.net",
        "@example.org,@example.org:ann@example.org",
        "victim%example.net@example.org",
        "example.net!victim@example.org",
        "\"victim@example.net\"@example.org",
        "victim@[192.0.2.9]",
        "ann@example.org.evil.net",
    ] {
        assert_eq!(
            c.cmd(&format!("RCPT TO:<{rcpt}>")).await,
            "550 5.7.1 relay access denied",
            "{rcpt}"
        );
    }
    assert_eq!(c.cmd("DATA").await, "554 5.5.1 no valid recipients");
    assert!(env.queue().await.is_empty());
    // From loopback too: only AUTH (submission) may relay.
    let (mut c, _) = connect(&server, LOOPBACK, Mode::Inbound);
    c.hello().await;
    c.cmd("MAIL FROM:<ann@example.org>").await;
    assert!(
        c.cmd("RCPT TO:<x@example.net>")
            .await
            .starts_with("550 5.7.1")
    );

    let server = env.server(SmtpConfig {
        relay_denied_code: 554,
        ..config()
    });
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    c.cmd("MAIL FROM:<>").await;
    assert_eq!(
        c.cmd("RCPT TO:<x@example.net>").await,
        "554 5.7.1 relay access denied"
    );
}

#[tokio::test]
async fn message_size_limits() {
    let env = env().await;
    let server = env.server(SmtpConfig {
        max_message_size: 1000,
        ..config()
    });
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    assert!(c.hello().await.contains("250-SIZE 1000\n"));
    assert_eq!(
        c.cmd("MAIL FROM:<carol@example.net> SIZE=1001").await,
        "552 5.3.4 message size exceeds fixed maximum message size"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<carol@example.net> SIZE=1000").await,
        "250 2.1.0 Ok"
    );
    assert_eq!(c.cmd(&format!("RCPT TO:<{ANN}>")).await, "250 2.1.5 Ok");
    let big = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(2000));
    assert_eq!(
        c.data(&big).await,
        "552 5.3.4 message size exceeds fixed maximum message size"
    );
    assert!(env.inbox(env.ann).await.is_empty());
    // The session is in step and the transaction is gone.
    assert_eq!(
        c.cmd("RCPT TO:<ann@example.org>").await,
        "503 5.5.1 send MAIL first"
    );
    assert!(
        c.message("carol@example.net", &[ANN], MSG)
            .await
            .starts_with("250 2.0.0")
    );
    // A line longer than 998 octets is fine (RFC 5321 §4.5.3.1.6 lets the server
    // accept it; Postfix does).
    let server = env.server(config());
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    let long = format!("Subject: long\r\n\r\n{}\r\n", "y".repeat(5000));
    assert!(
        c.message("carol@example.net", &[BOB], &long)
            .await
            .starts_with("250 2.0.0")
    );
    assert!(env.inbox(env.bob).await[0].ends_with(&long));
}

#[tokio::test]
async fn quota_at_rcpt_and_after_data() {
    let env = env().await;
    env.set_quota(ANN, Some(100)).await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    // SIZE says it will not fit: refused at RCPT.
    c.cmd("MAIL FROM:<carol@example.net> SIZE=500").await;
    assert_eq!(
        c.cmd(&format!("RCPT TO:<{ANN}>")).await,
        "452 4.2.2 mailbox full, try again later"
    );
    assert_eq!(c.cmd(&format!("RCPT TO:<{BOB}>")).await, "250 2.1.5 Ok");
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Ok");
    // Without SIZE it is only found after the data: a single recipient gets 452 for
    // the whole message (the sender keeps it).
    let big = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(500));
    c.cmd("MAIL FROM:<carol@example.net>").await;
    assert_eq!(c.cmd(&format!("RCPT TO:<{ANN}>")).await, "250 2.1.5 Ok");
    assert_eq!(
        c.data(&big).await,
        "452 4.2.2 mailbox full, try again later"
    );
    assert!(env.inbox(env.ann).await.is_empty());
    // With another recipient: stored for bob, and carol (remote) gets a bounce
    // through the queue about ann. Nothing is dropped silently.
    let r = c.message("carol@example.net", &[ANN, BOB], &big).await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    assert!(env.inbox(env.ann).await.is_empty());
    assert_eq!(env.inbox(env.bob).await.len(), 1);
    let q = env.queue().await;
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0].envelope.sender, "");
    assert_eq!(q[0].recipients[0].address, "carol@example.net");
    let dsn = env.blob(&q[0].blob).await;
    assert!(
        dsn.contains("Final-Recipient: rfc822;ann@example.org\r\n"),
        "{dsn}"
    );
    assert!(dsn.contains("Status: 5.2.2"), "{dsn}");
    // A local sender gets the bounce in its INBOX.
    let r = c.message(BOB, &["team@example.org"], &big).await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    let bob = env.inbox(env.bob).await;
    assert_eq!(bob.len(), 3, "the message and the bounce");
    assert!(bob[2].starts_with("Return-Path: <>\r\n"), "{}", bob[2]);
    assert!(
        bob[2].contains("<ann@example.org>: 5.2.2 mailbox of ann@example.org is full"),
        "{}",
        bob[2]
    );
    // The null sender cannot be told: the whole message gets 452.
    let r = c.message("", &[ANN, BOB], &big).await;
    assert_eq!(r, "452 4.2.2 mailbox full, try again later");
    assert_eq!(env.inbox(env.bob).await.len(), 3);
    // NOTIFY=NEVER: the sender asked for no bounce.
    c.cmd("MAIL FROM:<carol@example.net>").await;
    c.cmd(&format!("RCPT TO:<{ANN}> NOTIFY=NEVER")).await;
    c.cmd(&format!("RCPT TO:<{BOB}>")).await;
    assert!(c.data(&big).await.starts_with("250 2.0.0"));
    assert_eq!(env.queue().await.len(), 1, "no second bounce");

    let server = env.server(SmtpConfig {
        quota_permanent: true,
        ..config()
    });
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    c.cmd("MAIL FROM:<carol@example.net> SIZE=500").await;
    assert_eq!(
        c.cmd(&format!("RCPT TO:<{ANN}>")).await,
        "552 5.2.2 mailbox full"
    );
}

#[tokio::test]
async fn recipient_limit() {
    let env = env().await;
    let server = env.server(SmtpConfig {
        max_recipients: 10, // acts as 100, RFC 5321's minimum
        ..config()
    });
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    c.cmd("MAIL FROM:<carol@example.net>").await;
    let mut batch = String::new();
    for i in 0..105 {
        batch.push_str(&format!("RCPT TO:<ann+{i}@example.org>\r\n"));
    }
    c.send_raw(batch.as_bytes()).await;
    for i in 0..105 {
        let r = c.reply().await;
        if i < 100 {
            assert_eq!(r, "250 2.1.5 Ok", "rcpt {i}");
        } else {
            assert_eq!(r, "452 4.5.3 too many recipients", "rcpt {i}");
        }
    }
    assert!(c.data(MSG).await.starts_with("250 2.0.0"));
    assert_eq!(env.inbox(env.ann).await.len(), 1);
}

#[tokio::test]
async fn pipelined_transaction() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    c.send_raw(
        b"MAIL FROM:<carol@example.net>\r\nRCPT TO:<nobody@example.org>\r\nRCPT TO:<ann@example.org>\r\nDATA\r\n",
    )
    .await;
    assert_eq!(c.reply().await, "250 2.1.0 Ok");
    assert!(c.reply().await.starts_with("550 5.1.1"));
    assert_eq!(c.reply().await, "250 2.1.5 Ok");
    assert!(c.reply().await.starts_with("354 "));
    c.send_raw(
        b"Subject: p\r\n\r\nbody\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.org>\r\nQUIT\r\n",
    )
    .await;
    assert!(c.reply().await.starts_with("250 2.0.0"));
    assert_eq!(c.reply().await, "250 2.1.0 Ok");
    assert_eq!(c.reply().await, "250 2.1.5 Ok");
    assert!(c.reply().await.starts_with("221 "));
    assert!(c.closed().await);
    assert_eq!(env.inbox(env.ann).await.len(), 1);
}

#[tokio::test]
async fn smtputf8_addresses() {
    let env = env().await;
    add_account(&env.store, "jörg@example.org").await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    assert_eq!(
        c.cmd("MAIL FROM:<jürgen@example.net>").await,
        "553 5.6.7 non-ASCII sender address needs SMTPUTF8"
    );
    c.cmd("MAIL FROM:<carol@example.net>").await;
    assert_eq!(
        c.cmd("RCPT TO:<jörg@example.org>").await,
        "553 5.6.7 non-ASCII recipient address needs SMTPUTF8"
    );
    c.cmd("RSET").await;
    assert_eq!(
        c.cmd("MAIL FROM:<jürgen@example.net> SMTPUTF8 BODY=8BITMIME")
            .await,
        "250 2.1.0 Ok"
    );
    assert_eq!(c.cmd("RCPT TO:<jörg@example.org>").await, "250 2.1.5 Ok");
    let body = "Subject: Grüße\r\n\r\nGrüße\r\n";
    let r = c.data(body).await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    let id = env
        .store
        .account(&addr("jörg@example.org"))
        .await
        .unwrap()
        .unwrap()
        .id;
    let m = &env.inbox(id).await[0];
    assert!(m.contains("with UTF8SMTP id"), "{m}");
    assert!(m.ends_with(body));
}

#[tokio::test]
async fn mail_loops_are_refused() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    let hops = "Received: from a by b; Thu, 1 Jan 1970 00:00:00 +0000\r\n".repeat(101);
    let r = c
        .message(
            "carol@example.net",
            &[ANN],
            &format!("{hops}Subject: loop\r\n\r\nx\r\n"),
        )
        .await;
    assert_eq!(
        r,
        "554 5.4.6 too many hops (101 Received fields): mail loop?"
    );
    let hops = "Received: from a by b; Thu, 1 Jan 1970 00:00:00 +0000\r\n".repeat(100);
    let r = c
        .message(
            "carol@example.net",
            &[ANN],
            &format!("{hops}Subject: ok\r\n\r\nx\r\n"),
        )
        .await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
}

#[tokio::test]
async fn commands_out_of_order_and_misc() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    assert!(c.reply().await.starts_with("220 "));
    assert_eq!(
        c.cmd("MAIL FROM:<>").await,
        "503 5.5.1 send EHLO or HELO first"
    );
    assert_eq!(c.cmd("EHLO").await, "501 EHLO needs a domain");
    assert!(c.cmd("EHLO bad;name").await.starts_with("501 syntax: EHLO"));
    c.ehlo().await;
    assert_eq!(
        c.cmd("RCPT TO:<ann@example.org>").await,
        "503 5.5.1 send MAIL first"
    );
    assert_eq!(c.cmd("DATA").await, "503 5.5.1 send MAIL first");
    c.cmd("MAIL FROM:<>").await;
    assert_eq!(c.cmd("MAIL FROM:<>").await, "503 5.5.1 nested MAIL command");
    assert_eq!(c.cmd("XYZZY").await, "500 5.5.2 command unrecognized");
    assert_eq!(
        c.cmd("ETRN example.org").await,
        "502 5.5.1 command not implemented"
    );
    assert!(c.cmd("VRFY ann").await.starts_with("252 2.5.0 "));
    assert_eq!(c.cmd("EXPN team").await, "502 5.5.1 EXPN not available");
    assert!(c.cmd("HELP").await.starts_with("214-2.0.0 "));
    assert_eq!(c.cmd("NOOP whatever").await, "250 2.0.0 Ok");
    assert_eq!(
        c.cmd("STARTTLS").await,
        "503 5.5.1 not allowed during a mail transaction"
    );
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Ok");
    assert_eq!(c.cmd("STARTTLS").await, "502 5.5.1 STARTTLS not available");
    assert!(
        c.cmd("MAIL FROM:<a@b.c> BODY=BINARYMIME")
            .await
            .starts_with("555 5.5.4")
    );
    // EHLO resets the transaction (RFC 5321 §4.1.4).
    c.cmd("MAIL FROM:<>").await;
    c.ehlo().await;
    assert_eq!(
        c.cmd("RCPT TO:<ann@example.org>").await,
        "503 5.5.1 send MAIL first"
    );
}

#[tokio::test]
async fn line_too_long_then_resync() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    let long = format!("MAIL FROM:<{}@example.net>", "a".repeat(2100));
    assert_eq!(c.cmd(&long).await, "500 5.5.2 line too long");
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok");
    // 2048 octets with the CRLF is still a line.
    let fits = format!("NOOP {}", "b".repeat(2048 - 7));
    assert_eq!(c.cmd(&fits).await, "250 2.0.0 Ok");
}

#[tokio::test]
async fn too_many_errors_close_the_session() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, task) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    for _ in 0..19 {
        assert_eq!(c.cmd("BOGUS").await, "500 5.5.2 command unrecognized");
    }
    c.send("BOGUS").await;
    assert_eq!(c.reply().await, "500 5.5.2 command unrecognized");
    assert_eq!(
        c.reply().await,
        "421 4.7.0 mx.example.org too many errors, closing connection"
    );
    assert!(c.closed().await);
    task.await.unwrap();
}

#[tokio::test]
async fn junk_commands_are_limited() {
    let env = env().await;
    let server = env.server(SmtpConfig {
        limits: Limits {
            max_junk_commands: 3,
            ..Limits::default()
        },
        ..config()
    });
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    c.cmd("NOOP").await;
    c.cmd("RSET").await;
    c.send("NOOP").await;
    assert_eq!(c.reply().await, "250 2.0.0 Ok");
    assert!(c.reply().await.starts_with("421 4.7.0"));
    assert!(c.closed().await);
}

#[tokio::test]
async fn idle_timeout_and_stop() {
    let env = env().await;
    let server = env.server(SmtpConfig {
        limits: Limits {
            command_timeout: Duration::from_millis(200),
            ..Limits::default()
        },
        ..config()
    });
    let (mut c, task) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    assert_eq!(
        c.reply().await,
        "421 4.4.2 mx.example.org timeout exceeded, closing connection"
    );
    assert!(c.closed().await);
    task.await.unwrap();

    let server = env.server(config());
    let (mut c, task) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    server.stop();
    assert_eq!(
        c.reply().await,
        "421 4.3.2 mx.example.org service shutting down, closing connection"
    );
    assert!(c.closed().await);
    task.await.unwrap();
}

#[tokio::test]
async fn http_requests_are_dropped() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, task) = connect(&server, REMOTE, Mode::Inbound);
    assert!(c.reply().await.starts_with("220 "));
    c.send("GET / HTTP/1.1").await;
    assert!(c.closed().await);
    task.await.unwrap();
}

#[tokio::test]
async fn notify_success_gets_a_delivered_report() {
    // RFC 3461 §5.2.3: a final delivery for a recipient with NOTIFY=SUCCESS is
    // reported to the sender; NOTIFY without SUCCESS (or none) is not.
    let env = env().await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    assert_eq!(
        c.cmd(&format!("MAIL FROM:<{BOB}> ENVID=e1")).await,
        "250 2.1.0 Ok"
    );
    assert_eq!(
        c.cmd(&format!(
            "RCPT TO:<{ANN}> NOTIFY=SUCCESS ORCPT=rfc822;{ANN}"
        ))
        .await,
        "250 2.1.5 Ok"
    );
    assert!(c.data(MSG).await.starts_with("250 2.0.0"));
    assert_eq!(env.inbox(env.ann).await.len(), 1);
    let bob = env.inbox(env.bob).await;
    assert_eq!(bob.len(), 1, "bob gets the report");
    let report = &bob[0];
    assert!(report.starts_with("Return-Path: <>\r\n"), "{report}");
    assert!(report.contains("report-type=delivery-status"), "{report}");
    assert!(report.contains("Original-Envelope-Id: e1\r\n"), "{report}");
    assert!(
        report.contains("Final-Recipient: rfc822;ann@example.org\r\n"),
        "{report}"
    );
    assert!(
        report.contains("Action: delivered\r\nStatus: 2.0.0\r\n"),
        "{report}"
    );
    // NOTIFY=FAILURE only: no report.
    assert_eq!(c.cmd(&format!("MAIL FROM:<{BOB}>")).await, "250 2.1.0 Ok");
    assert_eq!(
        c.cmd(&format!("RCPT TO:<{ANN}> NOTIFY=FAILURE")).await,
        "250 2.1.5 Ok"
    );
    assert!(c.data(MSG).await.starts_with("250 2.0.0"));
    assert_eq!(env.inbox(env.bob).await.len(), 1);
    // The null sender is never sent a report.
    assert_eq!(c.cmd("MAIL FROM:<>").await, "250 2.1.0 Ok");
    assert_eq!(
        c.cmd(&format!("RCPT TO:<{ANN}> NOTIFY=SUCCESS")).await,
        "250 2.1.5 Ok"
    );
    assert!(c.data(MSG).await.starts_with("250 2.0.0"));
    assert_eq!(env.inbox(env.ann).await.len(), 3);
    assert_eq!(env.inbox(env.bob).await.len(), 1);
}
