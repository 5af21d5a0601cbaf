//! Hostile bytes on the SMTP command channel, as protocol traces: NUL and garbage
//! (`500 5.5.2`, RFC 5321 §4.2.4), 8-bit addresses without SMTPUTF8 (`553 5.6.7`,
//! RFC 6531 §3.5), invalid UTF-8 even with SMTPUTF8 (`501`), and an endless line
//! (`500`, then `421 4.7.0` and close once it runs MAX_OVERLONG_SKIP past the limit,
//! RFC 5321 §3.8). The session goes on after every refusal the RFC allows it to.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use buudien_smtp::Mode;
use buudien_smtp_proto::MAX_OVERLONG_SKIP;
use common::*;

#[tokio::test]
async fn nul_and_garbage_get_500_and_the_session_goes_on() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    for bad in [
        &b"NOOP\0"[..],
        b"\0\0\0\0",
        b"\xff\xfe\xfd garbage",
        b"MAIL FROM:<a\0b@example.net>",
        b"RCPT\0TO:<ann@example.org>",
    ] {
        c.send_raw(bad).await;
        c.send_raw(b"\r\n").await;
        let r = c.reply().await;
        assert!(r.starts_with("500 5.5.2 "), "{bad:?}: {r}");
    }
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok");
    let r = c
        .message("carol@example.net", &[ANN], "Subject: x\r\n\r\nhi\r\n")
        .await;
    assert!(r.starts_with("250 "), "{r}");
}

#[tokio::test]
async fn eight_bit_addresses_need_smtputf8_and_valid_utf8() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    // RFC 6531 §3.5: UTF-8 without SMTPUTF8.
    let r = c.cmd("MAIL FROM:<jöran@example.net>").await;
    assert!(r.starts_with("553 5.6.7 "), "{r}");
    // Latin-1 is not UTF-8, SMTPUTF8 or not: 501 5.1.7.
    for line in [
        &b"MAIL FROM:<j\xf6ran@example.net>"[..],
        b"MAIL FROM:<j\xf6ran@example.net> SMTPUTF8",
    ] {
        c.send_raw(line).await;
        c.send_raw(b"\r\n").await;
        let r = c.reply().await;
        assert!(r.starts_with("501 5.1.7 "), "{r}");
    }
    assert_eq!(c.cmd("MAIL FROM:<carol@example.net>").await, "250 2.1.0 Ok");
    let r = c.cmd("RCPT TO:<jöran@example.org>").await;
    assert!(r.starts_with("553 5.6.7 "), "{r}");
    c.send_raw(b"RCPT TO:<j\xf6ran@example.org>\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("501 5.1.3 "), "{r}");
    assert_eq!(c.cmd(&format!("RCPT TO:<{ANN}>")).await, "250 2.1.5 Ok");
    assert!(c.cmd("RSET").await.starts_with("250 "));
    // With SMTPUTF8 a UTF-8 sender is fine.
    let r = c.cmd("MAIL FROM:<jöran@example.net> SMTPUTF8").await;
    assert_eq!(r, "250 2.1.0 Ok");
    c.send_raw(b"RCPT TO:<\xc3\x28@example.org>\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("501 5.1.3 "), "{r}");
    assert_eq!(c.cmd(&format!("RCPT TO:<{ANN}>")).await, "250 2.1.5 Ok");
}

#[tokio::test]
async fn a_long_line_is_refused_and_an_endless_one_cut_off() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, task) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    // Half the skip allowance over the limit: refused, the session goes on.
    c.send_raw(&vec![b'a'; MAX_OVERLONG_SKIP / 2]).await;
    c.send_raw(b"\r\n").await;
    assert!(c.reply().await.starts_with("500 5.5.2 "));
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok");
    // An endless one: 500 at once, then 421 and the end of the connection.
    let writer = tokio::spawn(async move {
        let chunk = vec![b'b'; 64 * 1024];
        for _ in 0..64 {
            // 4 MiB at most; the server stops reading long before.
            if tokio::io::AsyncWriteExt::write_all(&mut c.wr, &chunk)
                .await
                .is_err()
            {
                break;
            }
        }
        c.rd
    });
    let mut rd = writer.await.unwrap();
    let mut said = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut rd, &mut said)
        .await
        .unwrap();
    assert!(said.starts_with("500 5.5.2 "), "{said}");
    assert!(
        said.ends_with(&format!(
            "421 4.7.0 {HOST} line too long, closing connection\r\n"
        )),
        "{said}"
    );
    task.await.unwrap();
}

#[tokio::test]
async fn pipelined_flood_is_held_back_until_replies_are_read() {
    // EHLO is no junk command, so nothing but the output bound holds a client that
    // pipelines thousands of them without reading: the server must stop reading.
    const N: usize = 20_000;
    let env = env().await;
    let server = env.server(config());
    let (c, _task) = connect(&server, REMOTE, Mode::Inbound);
    let Client { mut rd, mut wr } = c;
    let writer = tokio::spawn(async move {
        let flood = b"EHLO a.example\r\n".repeat(N);
        tokio::io::AsyncWriteExt::write_all(&mut wr, &flood)
            .await
            .unwrap();
        wr
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !writer.is_finished(),
        "the server read everything without its replies being taken"
    );
    // Reading the replies lets it go on: every EHLO is answered, in order.
    let mut done = 0;
    let mut line = Vec::new();
    let greeting = {
        tokio::io::AsyncBufReadExt::read_until(&mut rd, b'\n', &mut line)
            .await
            .unwrap();
        String::from_utf8(std::mem::take(&mut line)).unwrap()
    };
    assert!(greeting.starts_with("220 "), "{greeting}");
    while done < N {
        line.clear();
        let n = tokio::io::AsyncBufReadExt::read_until(&mut rd, b'\n', &mut line)
            .await
            .unwrap();
        assert!(n > 0, "closed after {done} replies");
        assert!(
            line.starts_with(b"250"),
            "{:?}",
            String::from_utf8_lossy(&line)
        );
        if line.starts_with(b"250 ") {
            done += 1;
        }
    }
    let wr = writer.await.unwrap();
    let mut c = Client { rd, wr };
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok");
}

#[tokio::test]
async fn endless_message_data_is_cut_off_past_twice_the_limit() {
    let env = env().await;
    let server = env.server(buudien_smtp::SmtpConfig {
        max_message_size: 100_000,
        ..config()
    });
    let (mut c, task) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    // Over the limit but ended: 552, and the session goes on.
    assert_eq!(c.cmd("MAIL FROM:<carol@example.net>").await, "250 2.1.0 Ok");
    assert_eq!(c.cmd(&format!("RCPT TO:<{ANN}>")).await, "250 2.1.5 Ok");
    let body = "y".repeat(200).repeat(1000) + "\r\n";
    assert!(c.data(&body).await.starts_with("552 5.3.4 "));
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok");
    // No end at all: 552 and close once past max(2 x limit, limit + 1 MiB).
    assert_eq!(c.cmd("MAIL FROM:<carol@example.net>").await, "250 2.1.0 Ok");
    assert_eq!(c.cmd(&format!("RCPT TO:<{ANN}>")).await, "250 2.1.5 Ok");
    assert!(c.cmd("DATA").await.starts_with("354 "));
    let Client { mut rd, mut wr } = c;
    let writer = tokio::spawn(async move {
        let chunk = [b'z'; 64 * 1024];
        for _ in 0..64 {
            if tokio::io::AsyncWriteExt::write_all(&mut wr, &chunk)
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let mut said = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut rd, &mut said)
        .await
        .unwrap();
    writer.await.unwrap();
    assert_eq!(
        said,
        "552 5.3.4 message far too big; closing connection\r\n"
    );
    task.await.unwrap();
}
