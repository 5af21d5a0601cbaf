//! Submission sessions (587 with STARTTLS, 465 with implicit TLS) and STARTTLS on the
//! inbound port, with real rustls handshakes over an in-memory duplex: AUTH, the
//! sender checks, message completion, the outbound queue, STARTTLS injection.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use buudien_smtp::{Mode, SmtpConfig, SmtpServer};
use buudien_store::{MailStore, RcptState};
use common::*;
use tokio::io::AsyncWriteExt;

const BODY: &str =
    "From: Ann <ann@example.org>\r\nTo: x@example.net\r\nSubject: hi\r\n\r\nhello\r\n";

fn plain(user: &str, password: &str) -> String {
    B64.encode(format!("\0{user}\0{password}"))
}

#[tokio::test]
async fn starttls_then_auth_plain_and_relay() {
    let env = env().await;
    let server = env.server(config());
    let (acceptor, connector) = tls_pair();
    let (mut raw, _) = start_tls_capable(&server, acceptor, REMOTE, Mode::Submission);
    assert!(raw_reply(&mut raw).await.starts_with("220 "));
    raw.write_all(b"EHLO client.example.net\r\n").await.unwrap();
    let ehlo = raw_reply(&mut raw).await;
    assert!(
        ehlo.contains("250-STARTTLS") || ehlo.ends_with("250 STARTTLS"),
        "{ehlo}"
    );
    assert!(!ehlo.contains("AUTH"), "no AUTH before TLS: {ehlo}");
    raw.write_all(b"MAIL FROM:<ann@example.org>\r\n")
        .await
        .unwrap();
    assert_eq!(
        raw_reply(&mut raw).await,
        "530 5.7.0 Must issue a STARTTLS command first"
    );
    raw.write_all(format!("AUTH PLAIN {}\r\n", plain(ANN, PASSWORD)).as_bytes())
        .await
        .unwrap();
    assert_eq!(
        raw_reply(&mut raw).await,
        "538 5.7.11 encryption required for requested authentication mechanism"
    );
    raw.write_all(b"STARTTLS\r\n").await.unwrap();
    assert_eq!(raw_reply(&mut raw).await, "220 2.0.0 Ready to start TLS");
    let mut c = client_tls(&connector, raw).await;
    let ehlo = c.ehlo().await;
    assert!(ehlo.ends_with("250 AUTH PLAIN LOGIN"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert_eq!(
        c.cmd("MAIL FROM:<ann@example.org>").await,
        "530 5.7.0 Authentication required"
    );
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", plain(ANN, PASSWORD))).await,
        "235 2.7.0 authentication successful"
    );
    assert_eq!(
        c.cmd("AUTH PLAIN x").await,
        "503 5.5.1 already authenticated"
    );
    let r = c
        .message(
            ANN,
            &["x@example.net", "Y@Example.COM", BOB, "team@example.org"],
            BODY,
        )
        .await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    // Remote recipients are queued with the envelope.
    let q = env.queue().await;
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].envelope.sender, ANN);
    assert!(!q[0].envelope.eight_bit && !q[0].envelope.smtputf8);
    let rcpts: Vec<&str> = q[0].recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(rcpts, vec!["x@example.net", "Y@Example.COM"]);
    assert!(
        q[0].recipients
            .iter()
            .all(|r| r.state == RcptState::Pending)
    );
    let queued = env.blob(&q[0].blob).await;
    // Local recipients get it directly, once each, with Return-Path (final
    // delivery); the queued copy has none (RFC 5321 §4.4: relays must not add it).
    let bob = env.inbox(env.bob).await;
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[0], format!("Return-Path: <{ANN}>\r\n{queued}"));
    assert!(!queued.contains("Return-Path"), "{queued}");
    assert_eq!(env.inbox(env.ann).await.len(), 1, "ann via team@");
    assert!(
        queued.starts_with(
            "Received: from client.example.net ([192.0.2.1])\r\n\t(using TLSv1.3 with cipher TLS13_"
        ),
        "{queued}"
    );
    assert!(
        queued.contains("(authenticated sender: ann@example.org)"),
        "{queued}"
    );
    assert!(queued.contains("with ESMTPSA id "), "{queued}");
    // RFC 6409 §8: Date and Message-ID added.
    assert!(queued.contains("\r\nDate: "), "{queued}");
    assert!(queued.contains("\r\nMessage-ID: <"), "{queued}");
    assert!(queued.ends_with(BODY));
}

#[tokio::test]
async fn starttls_discards_pipelined_commands() {
    let env = env().await;
    let server = env.server(config());
    let (acceptor, connector) = tls_pair();
    let (mut raw, _) = start_tls_capable(&server, acceptor, REMOTE, Mode::Inbound);
    assert!(raw_reply(&mut raw).await.starts_with("220 "));
    raw.write_all(b"EHLO client.example.net\r\n").await.unwrap();
    assert!(raw_reply(&mut raw).await.contains("STARTTLS"));
    // The injected commands travel in the same write as STARTTLS (CVE-2011-0411).
    raw.write_all(b"STARTTLS\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<ann@example.org>\r\n")
        .await
        .unwrap();
    assert_eq!(raw_line(&mut raw).await, "220 2.0.0 Ready to start TLS");
    let mut c = client_tls(&connector, raw).await;
    // Nothing of them was run, and the EHLO from before TLS is forgotten.
    assert_eq!(
        c.cmd("RCPT TO:<ann@example.org>").await,
        "503 5.5.1 send EHLO or HELO first"
    );
    let ehlo = c.ehlo().await;
    assert!(
        !ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    assert_eq!(
        c.cmd("RCPT TO:<ann@example.org>").await,
        "503 5.5.1 send MAIL first"
    );
    assert_eq!(c.cmd("STARTTLS").await, "503 5.5.1 TLS already active");
    let r = c.message("carol@example.net", &[ANN], BODY).await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    let m = &env.inbox(env.ann).await[0];
    assert!(m.contains("with ESMTPS id"), "{m}");
    assert!(!m.contains("authenticated"), "{m}");
}

#[tokio::test]
async fn failed_handshake_closes() {
    let env = env().await;
    let server = env.server(config());
    let (acceptor, _) = tls_pair();
    let (mut raw, task) = start_tls_capable(&server, acceptor, LOOPBACK, Mode::Submission);
    raw_reply(&mut raw).await;
    raw.write_all(b"EHLO x\r\nSTARTTLS\r\n").await.unwrap();
    raw_reply(&mut raw).await;
    assert_eq!(raw_line(&mut raw).await, "220 2.0.0 Ready to start TLS");
    raw.write_all(b"MAIL FROM:<not@handshake>\r\n")
        .await
        .unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn implicit_tls_on_465() {
    let env = env().await;
    let server = env.server(config());
    let (acceptor, connector) = tls_pair();
    let (raw, _) = start_tls_capable(&server, acceptor, REMOTE, Mode::Submissions);
    let mut c = client_tls(&connector, raw).await;
    let ehlo = c.hello().await;
    assert!(
        ehlo.contains("AUTH PLAIN LOGIN") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    assert!(c.cmd("AUTH LOGIN").await.starts_with("334 VXNlcm5hbWU6"));
    assert_eq!(c.cmd(&B64.encode(ANN)).await, "334 UGFzc3dvcmQ6");
    assert_eq!(
        c.cmd(&B64.encode(PASSWORD)).await,
        "235 2.7.0 authentication successful"
    );
    let r = c.message(ANN, &[BOB], BODY).await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    let m = &env.inbox(env.bob).await[0];
    // Local only: Return-Path is added at this final delivery.
    assert!(
        m.starts_with("Return-Path: <ann@example.org>\r\nReceived: "),
        "{m}"
    );
    assert!(m.contains("with ESMTPSA id"), "{m}");
    assert!(env.queue().await.is_empty());
}

/// A loopback submission session already authenticated as ann.
async fn logged_in(server: &SmtpServer<common::TestStore>) -> Client<tokio::io::DuplexStream> {
    let (mut c, _) = connect(server, LOOPBACK, Mode::Submission);
    let ehlo = c.hello().await;
    assert!(
        ehlo.contains("AUTH PLAIN LOGIN"),
        "loopback may AUTH: {ehlo}"
    );
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", plain(ANN, PASSWORD))).await,
        "235 2.7.0 authentication successful"
    );
    c
}

#[tokio::test]
async fn auth_failures() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, task) = connect(&server, LOOPBACK, Mode::Submission);
    c.hello().await;
    assert_eq!(
        c.cmd("MAIL FROM:<ann@example.org>").await,
        "530 5.7.0 Authentication required"
    );
    assert_eq!(
        c.cmd("AUTH CRAM-MD5").await,
        "504 5.5.4 unrecognized authentication type"
    );
    assert_eq!(c.cmd("AUTH PLAIN").await, "334 ");
    assert_eq!(c.cmd("*").await, "501 5.0.0 authentication cancelled");
    assert_eq!(
        c.cmd("AUTH PLAIN !!!").await,
        "501 5.5.2 cannot decode the initial response"
    );
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", plain(ANN, "wrong"))).await,
        "535 5.7.8 authentication credentials invalid"
    );
    assert_eq!(
        c.cmd(&format!(
            "AUTH PLAIN {}",
            plain("nobody@example.org", PASSWORD)
        ))
        .await,
        "535 5.7.8 authentication credentials invalid"
    );
    // authzid other than the login.
    let other = B64.encode(format!("{BOB}\0{ANN}\0{PASSWORD}"));
    c.send(&format!("AUTH PLAIN {other}")).await;
    assert_eq!(
        c.reply().await,
        "535 5.7.8 authentication credentials invalid"
    );
    assert_eq!(
        c.reply().await,
        "421 4.7.0 mx.example.org too many failed logins, closing connection"
    );
    assert!(c.closed().await);
    task.await.unwrap();
    // An over-long SASL line.
    let (mut c, _) = connect(&server, LOOPBACK, Mode::Submission);
    c.hello().await;
    c.cmd("AUTH LOGIN").await;
    assert_eq!(
        c.cmd(&"A".repeat(20_000)).await,
        "500 5.5.6 authentication exchange line is too long"
    );
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok");
}

#[tokio::test]
async fn throttled_address_gets_454() {
    let env = env().await;
    let server = SmtpServer::new(env.store.clone(), config(), fast_throttle(2));
    let (mut c, _) = connect(&server, LOOPBACK, Mode::Submission);
    c.hello().await;
    for _ in 0..2 {
        assert!(
            c.cmd(&format!("AUTH PLAIN {}", plain(ANN, "bad")))
                .await
                .starts_with("535 5.7.8")
        );
    }
    let (mut c, _) = connect(&server, LOOPBACK, Mode::Submission);
    c.hello().await;
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", plain(ANN, PASSWORD))).await,
        "454 4.7.0 too many failed logins, try again later"
    );
}

#[tokio::test]
async fn envelope_sender_must_be_the_users() {
    let env = env().await;
    env.store
        .add_alias(&addr("ann.lee@example.org"), &[addr(ANN)])
        .await
        .unwrap();
    let server = env.server(config());
    let mut c = logged_in(&server).await;
    for ok in [
        "ann@example.org",
        "ANN@example.org",
        "ann+news@example.org",
        "ann.lee@example.org",
        "ann.lee+x@example.org",
        "sales@example.org",
        "team@example.org",
        "",
    ] {
        assert_eq!(
            c.cmd(&format!("MAIL FROM:<{ok}>")).await,
            "250 2.1.0 Ok",
            "{ok}"
        );
        c.cmd("RSET").await;
    }
    for bad in [
        "bob@example.org",
        "bob+ann@example.org",
        "ann@example.net",
        "nobody@example.org",
        "ann@[127.0.0.1]",
        "@example.org:ann@example.net",
    ] {
        assert_eq!(
            c.cmd(&format!("MAIL FROM:<{bad}>")).await,
            "550 5.7.1 sender address not owned by ann@example.org",
            "{bad}"
        );
    }
}

#[tokio::test]
async fn from_header_must_be_the_users() {
    let env = env().await;
    let server = env.server(config());
    let mut c = logged_in(&server).await;
    for from in [
        "Bob <bob@example.org>",
        "ann@example.org, bob@example.org",
        "\"ann@example.org\" <bob@example.org>",
        "<ann@example.org",
    ] {
        let body = format!("From: {from}\r\nSubject: x\r\n\r\nx\r\n");
        assert_eq!(
            c.message(ANN, &[BOB], &body).await,
            "550 5.7.1 From: header address not owned by ann@example.org",
            "{from}"
        );
    }
    for from in [
        "Ann Lee <ann@example.org>",
        "\"Lee, Ann\" <ANN+x@example.org> (work)",
        "sales@example.org",
    ] {
        let body = format!("From: {from}\r\nSubject: x\r\n\r\nx\r\n");
        assert!(
            c.message(ANN, &[BOB], &body).await.starts_with("250 2.0.0"),
            "{from}"
        );
    }
    assert!(env.inbox(env.bob).await.len() == 3);
    // Switched off, anything goes (the envelope check stays).
    let server = env.server(SmtpConfig {
        check_from_header: false,
        ..config()
    });
    let mut c = logged_in(&server).await;
    let body = "From: Bob <bob@example.org>\r\n\r\nx\r\n";
    assert!(c.message(ANN, &[BOB], body).await.starts_with("250 2.0.0"));
}

#[tokio::test]
async fn existing_date_and_message_id_are_kept() {
    let env = env().await;
    let server = env.server(config());
    let mut c = logged_in(&server).await;
    let body = "Date: Thu, 1 Jan 1970 00:00:00 +0000\r\nMessage-Id: <own@id>\r\nFrom: ann@example.org\r\n\r\nx\r\n";
    assert!(c.message(ANN, &[BOB], body).await.starts_with("250 2.0.0"));
    let m = &env.inbox(env.bob).await[0];
    assert_eq!(m.matches("Date:").count(), 1, "{m}");
    assert_eq!(
        m.to_ascii_lowercase().matches("message-id:").count(),
        1,
        "{m}"
    );
    assert!(m.ends_with(body));
    // Inbound mail is not completed (RFC 6409 §8 is for submission only).
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    assert!(
        c.message("carol@example.net", &[BOB], "Subject: bare\r\n\r\nx\r\n")
            .await
            .starts_with("250 2.0.0")
    );
    let m = &env.inbox(env.bob).await[1];
    assert!(!m.contains("Message-ID") && !m.contains("\r\nDate:"), "{m}");
}

#[tokio::test]
async fn dsn_parameters_reach_the_queue() {
    let env = env().await;
    let server = env.server(config());
    let mut c = logged_in(&server).await;
    assert_eq!(
        c.cmd("MAIL FROM:<ann@example.org> RET=HDRS ENVID=abc+2B1 BODY=8BITMIME SIZE=100")
            .await,
        "250 2.1.0 Ok"
    );
    assert_eq!(
        c.cmd("RCPT TO:<x@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x+40example.net")
            .await,
        "250 2.1.5 Ok"
    );
    assert!(c.data(BODY).await.starts_with("250 2.0.0"));
    let q = env.queue().await;
    let e = &q[0].envelope;
    assert_eq!(e.envid.as_deref(), Some("abc+1"));
    assert_eq!(e.ret, Some(buudien_store::Ret::Headers));
    assert!(e.eight_bit && !e.smtputf8);
    let r = &q[0].recipients[0];
    assert_eq!(r.orcpt.as_deref(), Some("rfc822;x+40example.net"));
    let n = r.notify.unwrap();
    assert!(n.success && n.failure && !n.delay);
}

#[tokio::test]
async fn plaintext_auth_needs_tls_or_loopback_or_config() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, REMOTE, Mode::Submission);
    let ehlo = c.hello().await;
    assert!(
        !ehlo.contains("AUTH") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    let server = env.server(SmtpConfig {
        allow_plaintext_auth: true,
        ..config()
    });
    let (mut c, _) = connect(&server, REMOTE, Mode::Submission);
    assert!(c.hello().await.contains("AUTH PLAIN LOGIN"));
    assert!(
        c.cmd(&format!("AUTH PLAIN {}", plain(ANN, PASSWORD)))
            .await
            .starts_with("235")
    );
}

#[tokio::test]
async fn eight_bit_content_is_flagged_for_the_queue() {
    let env = env().await;
    let server = env.server(config());
    let mut c = logged_in(&server).await;
    // No BODY=8BITMIME, but 8-bit octets: the queue must know.
    let body = "From: ann@example.org\r\nSubject: caf\u{e9}\r\n\r\ncaf\u{e9}\r\n";
    assert!(
        c.message(ANN, &["x@example.net"], body)
            .await
            .starts_with("250 2.0.0")
    );
    let q = env.queue().await;
    assert!(q[0].envelope.eight_bit);
    assert!(
        env.blob(&q[0].blob).await.ends_with(body),
        "stored as received"
    );
}

#[tokio::test]
async fn queueing_wakes_the_queue_worker() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let env = env().await;
    let server = env.server(config());
    let woken = Arc::new(AtomicUsize::new(0));
    let w = woken.clone();
    server.on_queued(move || {
        w.fetch_add(1, Ordering::SeqCst);
    });
    let mut c = logged_in(&server).await;
    // Local only: nothing queued, no wake-up.
    assert!(
        c.message(ANN, &["bob@example.org"], BODY)
            .await
            .starts_with("250 2.0.0")
    );
    assert_eq!(woken.load(Ordering::SeqCst), 0);
    assert!(
        c.message(ANN, &["x@example.net"], BODY)
            .await
            .starts_with("250 2.0.0")
    );
    assert_eq!(woken.load(Ordering::SeqCst), 1);
    assert_eq!(env.queue().await.len(), 1);
    // A bounce queued for a remote sender (ann found full after the data) wakes it
    // too; the message itself went to bob only, so nothing else was queued.
    env.set_quota(ANN, Some(100)).await;
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    let big = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(500));
    let r = c.message("carol@example.net", &[ANN, BOB], &big).await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    assert_eq!(woken.load(Ordering::SeqCst), 2);
    let q = env.queue().await;
    assert_eq!(q.len(), 2, "{q:?}");
    assert_eq!(q[1].envelope.sender, "", "the bounce");
    assert_eq!(q[1].recipients[0].address, "carol@example.net");
}

#[tokio::test]
async fn submission_without_login_is_cut_off_sooner() {
    use buudien_smtp::Limits;
    use std::time::Duration;
    let env = env().await;
    let server = env.server(SmtpConfig {
        limits: Limits {
            preauth_timeout: Duration::from_millis(200),
            ..Limits::default()
        },
        ..config()
    });
    let (mut c, task) = connect(&server, LOOPBACK, Mode::Submission);
    c.hello().await;
    let r = c.reply().await;
    assert!(r.starts_with("421 4.4.2 ") && r.contains("timeout"), "{r}");
    assert!(c.closed().await);
    task.await.unwrap();
    // Logged in, the RFC 5321 command timer applies; port 25 never had the short one.
    let (mut c, _task) = connect(&server, LOOPBACK, Mode::Submission);
    c.hello().await;
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", plain(ANN, PASSWORD))).await,
        "235 2.7.0 authentication successful"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(c.cmd("NOOP").await.starts_with("250"));
    let (mut c, _task) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(c.cmd("NOOP").await.starts_with("250"));
}
