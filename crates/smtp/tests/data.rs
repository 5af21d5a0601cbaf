//! DATA and BDAT over whole sessions: SMTP smuggling (CVE-2023-51764 class) never
//! makes two messages, BDAT chunks are consumed exactly in every error case, and
//! pipelined chunks stay in step.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use buudien_smtp::{Mode, SmtpConfig};
use common::*;

/// Every ending a smuggling attack uses in place of `<CRLF>.<CRLF>`.
const SMUGGLED_ENDINGS: &[&str] = &[
    "\n.\n",
    "\n.\r\n",
    "\r\n.\n",
    "\r.\r",
    "\r.\r\n",
    "\r\n.\r",
    "\n.\r",
    "\r.\n",
    "\r\n\n.\n\r\n",
    "\r\n.\r\r\n",
];

#[tokio::test]
async fn smuggling_never_makes_two_messages() {
    let env = env().await;
    let server = env.server(config());
    for ending in SMUGGLED_ENDINGS {
        let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
        c.hello().await;
        c.cmd("MAIL FROM:<carol@example.net>").await;
        c.cmd(&format!("RCPT TO:<{ANN}>")).await;
        assert!(c.cmd("DATA").await.starts_with("354 "));
        // The smuggled message rides in the data of the first one; the real end
        // follows, then a NOOP to show where the session is.
        let attack = format!(
            "Subject: one\r\n\r\nbody{ending}MAIL FROM:<evil@example.net>\r\n\
             RCPT TO:<bob@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\nNOOP\r\n"
        );
        c.send_raw(attack.as_bytes()).await;
        assert_eq!(
            c.reply().await,
            "550 5.5.2 message refused: bare <CR> or <LF> in the data (RFC 5321 section 2.3.8)",
            "{ending:?}"
        );
        assert_eq!(
            c.reply().await,
            "250 2.0.0 Ok",
            "{ending:?}: NOOP answered next"
        );
        assert_eq!(c.cmd("QUIT").await, "221 2.0.0 mx.example.org Bye");
    }
    assert!(env.inbox(env.ann).await.is_empty());
    assert!(
        env.inbox(env.bob).await.is_empty(),
        "a smuggled message was delivered"
    );
}

#[tokio::test]
async fn bare_newlines_are_refused_even_without_a_dot() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    c.cmd("MAIL FROM:<carol@example.net>").await;
    c.cmd(&format!("RCPT TO:<{ANN}>")).await;
    c.cmd("DATA").await;
    c.send_raw(b"Subject: x\n\nunix line ends\n\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("550 5.5.2 "));
    // Dot-stuffing and a clean message still work in the same session.
    let r = c
        .message("carol@example.net", &[ANN], "Subject: y\r\n\r\n.\r\n..\r\n")
        .await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    assert!(env.inbox(env.ann).await[0].ends_with("Subject: y\r\n\r\n.\r\n..\r\n"));
}

#[tokio::test]
async fn bdat_messages_with_bare_newlines_are_refused() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    for ending in SMUGGLED_ENDINGS {
        c.cmd("MAIL FROM:<carol@example.net>").await;
        c.cmd(&format!("RCPT TO:<{ANN}>")).await;
        let chunk = format!(
            "Subject: one\r\n\r\nbody{ending}MAIL FROM:<evil@example.net>\r\n\
             RCPT TO:<bob@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n"
        );
        c.send_raw(format!("BDAT {} LAST\r\n{chunk}NOOP\r\n", chunk.len()).as_bytes())
            .await;
        assert_eq!(
            c.reply().await,
            "550 5.5.2 message refused: bare <CR> or <LF> in the data (RFC 5321 section 2.3.8)",
            "{ending:?}"
        );
        assert_eq!(c.reply().await, "250 2.0.0 Ok", "{ending:?}: NOOP next");
    }
    // The bare LF may sit in an earlier chunk than LAST.
    c.cmd("MAIL FROM:<carol@example.net>").await;
    c.cmd(&format!("RCPT TO:<{ANN}>")).await;
    c.send_raw(b"BDAT 6\r\nline\n.BDAT 3 LAST\r\n\nx\n").await;
    assert_eq!(c.reply().await, "250 2.0.0 6 octets received");
    assert!(c.reply().await.starts_with("550 5.5.2 "));
    // The transaction is over; a CRLF split between chunks is no bare CR or LF.
    c.send_raw(b"BDAT 1 LAST\r\nx").await;
    assert_eq!(c.reply().await, "503 5.5.1 send MAIL first");
    c.cmd("MAIL FROM:<carol@example.net>").await;
    c.cmd(&format!("RCPT TO:<{ANN}>")).await;
    c.send_raw(b"BDAT 20\r\nSubject: split\r\n\r\nx\rBDAT 1 LAST\r\n\n")
        .await;
    assert_eq!(c.reply().await, "250 2.0.0 20 octets received");
    let r = c.reply().await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    let inbox = env.inbox(env.ann).await;
    assert_eq!(inbox.len(), 1, "only the clean message was stored");
    assert!(inbox[0].ends_with("Subject: split\r\n\r\nx\r\n"));
    assert!(env.inbox(env.bob).await.is_empty());
}

#[tokio::test]
async fn bdat_chunks_are_data() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    c.cmd("MAIL FROM:<carol@example.net>").await;
    c.cmd(&format!("RCPT TO:<{ANN}>")).await;
    let part1 = "Subject: chunks\r\n\r\nfirst\r\n.\r\nMAIL FROM:<evil@example.net>\r\n";
    c.send_raw(format!("BDAT {}\r\n{part1}", part1.len()).as_bytes())
        .await;
    assert_eq!(
        c.reply().await,
        format!("250 2.0.0 {} octets received", part1.len())
    );
    let part2 = "last line\r\n";
    c.send_raw(format!("BDAT {} LAST\r\n{part2}", part2.len()).as_bytes())
        .await;
    let r = c.reply().await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    let m = &env.inbox(env.ann).await[0];
    assert!(m.ends_with(&format!("{part1}{part2}")), "{m}");
    // BDAT after LAST: the transaction is over.
    c.send_raw(b"BDAT 3 LAST\r\nabc").await;
    assert_eq!(c.reply().await, "503 5.5.1 send MAIL first");
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok");
}

#[tokio::test]
async fn bdat_fully_pipelined() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    let body = "Subject: p\r\n\r\nbody\r\n";
    c.send_raw(
        format!(
            "MAIL FROM:<carol@example.net>\r\nRCPT TO:<{ANN}>\r\nRCPT TO:<{BOB}>\r\n\
             BDAT 5\r\n{}BDAT {} LAST\r\n{}QUIT\r\n",
            &body[..5],
            body.len() - 5,
            &body[5..]
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(c.reply().await, "250 2.1.0 Ok");
    assert_eq!(c.reply().await, "250 2.1.5 Ok");
    assert_eq!(c.reply().await, "250 2.1.5 Ok");
    assert_eq!(c.reply().await, "250 2.0.0 5 octets received");
    assert!(c.reply().await.starts_with("250 2.0.0 Ok: queued as "));
    assert!(c.reply().await.starts_with("221 "));
    assert!(c.closed().await);
    assert!(env.inbox(env.ann).await[0].ends_with(body));
    assert!(env.inbox(env.bob).await[0].ends_with(body));
}

#[tokio::test]
async fn bdat_errors_still_consume_the_chunk() {
    let env = env().await;
    let server = env.server(SmtpConfig {
        max_message_size: 100,
        ..config()
    });
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    // No transaction: refused, and the chunk (which looks like commands) is skipped.
    let chunk = "RCPT TO:<x@example.net>\r\n";
    c.send_raw(format!("BDAT {}\r\n{chunk}NOOP\r\n", chunk.len()).as_bytes())
        .await;
    assert_eq!(c.reply().await, "503 5.5.1 send MAIL first");
    assert_eq!(c.reply().await, "250 2.0.0 Ok");
    // No valid recipient.
    c.cmd("MAIL FROM:<carol@example.net>").await;
    c.cmd("RCPT TO:<nobody@example.org>").await;
    c.send_raw(b"BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n").await;
    assert_eq!(c.reply().await, "554 5.5.1 no valid recipients");
    assert_eq!(c.reply().await, "250 2.0.0 Ok");
    // Too big: 552, and the chunks already pipelined behind it are discarded.
    c.cmd("MAIL FROM:<carol@example.net>").await;
    c.cmd(&format!("RCPT TO:<{ANN}>")).await;
    let x60 = "x".repeat(60);
    c.send_raw(
        format!("BDAT 60\r\n{x60}BDAT 60\r\n{x60}BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n").as_bytes(),
    )
    .await;
    assert_eq!(c.reply().await, "250 2.0.0 60 octets received");
    assert_eq!(
        c.reply().await,
        "552 5.3.4 message size exceeds fixed maximum message size"
    );
    assert_eq!(
        c.reply().await,
        "503 5.5.1 BDAT sequence failed earlier; chunk discarded, send RSET"
    );
    assert_eq!(c.reply().await, "250 2.0.0 Ok");
    assert!(env.inbox(env.ann).await.is_empty());
    // DATA after BDAT, and BDAT then RSET.
    c.cmd("MAIL FROM:<carol@example.net>").await;
    c.cmd(&format!("RCPT TO:<{ANN}>")).await;
    c.send_raw(b"BDAT 2\r\nab").await;
    assert_eq!(c.reply().await, "250 2.0.0 2 octets received");
    assert_eq!(c.cmd("DATA").await, "503 5.5.1 DATA not allowed after BDAT");
    assert_eq!(
        c.cmd(&format!("RCPT TO:<{BOB}>")).await,
        "503 5.5.1 RCPT not allowed after BDAT"
    );
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Ok");
    assert!(
        c.message("carol@example.net", &[ANN], "Subject: ok\r\n\r\n")
            .await
            .starts_with("250 2.0.0")
    );
}

#[tokio::test]
async fn absurd_or_unreadable_bdat_sizes_close_the_connection() {
    let env = env().await;
    let server = env.server(SmtpConfig {
        max_message_size: 1000,
        ..config()
    });
    for (line, reply) in [
        (
            "BDAT 2001",
            "552 5.3.4 BDAT chunk too big; closing connection",
        ),
        (
            "BDAT 99999999999",
            "552 5.3.4 BDAT chunk too big; closing connection",
        ),
        (
            "BDAT 999999999999999999999999",
            "501 5.5.4 BDAT needs a chunk size; closing connection",
        ),
        (
            "BDAT",
            "501 5.5.4 BDAT needs a chunk size; closing connection",
        ),
        (
            "BDAT ten LAST",
            "501 5.5.4 BDAT needs a chunk size; closing connection",
        ),
    ] {
        let (mut c, task) = connect(&server, REMOTE, Mode::Inbound);
        c.hello().await;
        c.cmd("MAIL FROM:<carol@example.net>").await;
        c.cmd(&format!("RCPT TO:<{ANN}>")).await;
        c.send_raw(format!("{line}\r\nRSET\r\nMAIL FROM:<x@example.net>\r\n").as_bytes())
            .await;
        assert_eq!(c.reply().await, reply, "{line}");
        assert!(c.closed().await, "{line}");
        task.await.unwrap();
    }
    assert!(env.inbox(env.ann).await.is_empty());
}

#[tokio::test]
async fn data_then_bdat_is_refused_and_vice_versa() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, REMOTE, Mode::Inbound);
    c.hello().await;
    // BDAT before RCPT: the chunk is consumed and refused.
    c.cmd("MAIL FROM:<carol@example.net>").await;
    c.send_raw(b"BDAT 4\r\nDATA").await;
    assert_eq!(c.reply().await, "554 5.5.1 no valid recipients");
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Ok");
    let r = c
        .message("carol@example.net", &[ANN], "Subject: d\r\n\r\nd\r\n")
        .await;
    assert!(r.starts_with("250 2.0.0"));
    assert_eq!(env.inbox(env.ann).await.len(), 1);
}
