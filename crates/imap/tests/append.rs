//! APPEND traces (RFC 9051 §6.3.12, RFC 3502 MULTIAPPEND, RFC 4315 APPENDUID, RFC 7889
//! APPENDLIMIT): literals spooled (large ones to a temporary file), all-or-none.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use buudien_imap::ImapConfig;
use buudien_store::{MailStore, Quota};
use buudien_types::Address;
use common::*;

fn big_message(n: usize) -> String {
    let mut m = String::from("Subject: big\r\n\r\n");
    while m.len() < n {
        m.push_str("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrs\r\n");
    }
    m
}

#[tokio::test]
async fn multiappend_stores_all_byte_exact() {
    let env = env().await;
    let spool = tempfile::tempdir().unwrap();
    let server = env.server(ImapConfig {
        spool_dir: Some(spool.path().to_path_buf()),
        ..ImapConfig::default()
    });
    let (mut c, _task) = connect(&server, LOOPBACK);
    c.login().await;
    let r = c.cmd("s", "SELECT INBOX").await;
    assert!(r.contains("* 0 EXISTS"), "{r}");
    let big = big_message(300_000);
    c.send(&format!(
        "a APPEND INBOX (\\Seen) \"05-Mar-2026 10:00:00 +0000\" {{{}}}\r\n",
        MSG1.len()
    ))
    .await;
    assert_eq!(c.line().await, "+ Ready\r\n");
    c.send(&format!("{MSG1} {{{}}}\r\n", big.len())).await;
    assert_eq!(c.line().await, "+ Ready\r\n");
    c.send(&format!("{big} (\\Flagged $Work) {{{}}}\r\n", MSG2.len()))
        .await;
    assert_eq!(c.line().await, "+ Ready\r\n");
    c.send(&format!("{MSG2}\r\n")).await;
    let r = c.until("a").await;
    assert!(r.contains("* 3 EXISTS"), "{r}");
    assert!(r.contains("a OK [APPENDUID "), "{r}");
    assert!(r.contains(" 1:3] APPEND completed"), "{r}");

    let r = c
        .cmd("f", "FETCH 1:3 (FLAGS INTERNALDATE RFC822.SIZE)")
        .await;
    assert!(
        r.contains(
            "* 1 FETCH (FLAGS (\\Seen \\Recent) INTERNALDATE \" 5-Mar-2026 10:00:00 +0000\""
        ),
        "{r}"
    );
    assert!(r.contains(&format!("RFC822.SIZE {}", big.len())), "{r}");
    assert!(
        r.contains("* 3 FETCH (FLAGS (\\Flagged \\Recent $Work)"),
        "{r}"
    );
    let r = c.cmd("g", "FETCH 2 BODY.PEEK[]").await;
    assert!(r.contains(&big), "large message byte-exact");
    // The spool file is unnamed: nothing is left behind.
    assert_eq!(std::fs::read_dir(spool.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn multiappend_over_quota_stores_none() {
    let env = env().await;
    env.store
        .set_quota(
            &Address::parse(USER).unwrap(),
            Quota {
                bytes: None,
                messages: Some(2),
            },
        )
        .await
        .unwrap();
    let (mut c, _task, _s) = session(&env).await;
    let msgs = [MSG1, MSG2, MSG1];
    let mut cmd = String::from("a APPEND INBOX");
    for m in msgs {
        cmd.push_str(&format!(" {{{}+}}\r\n{m}", m.len()));
    }
    cmd.push_str("\r\n");
    c.send(&cmd).await;
    let r = c.until("a").await;
    assert!(r.contains("a NO [OVERQUOTA]"), "{r}");
    let r = c.cmd("s", "STATUS INBOX (MESSAGES)").await;
    assert!(r.contains("(MESSAGES 0)"), "all or none: {r}");
}

#[tokio::test]
async fn appendlimit_trycreate_and_bad_date() {
    let env = env().await;
    let server = env.server(ImapConfig {
        max_append: 1000,
        ..ImapConfig::default()
    });
    let (mut c, _task) = connect(&server, LOOPBACK);
    c.login().await;
    c.send("a APPEND INBOX {1001}\r\n").await;
    assert_eq!(
        c.line().await,
        "a NO [TOOBIG] message exceeds APPENDLIMIT\r\n",
        "refused before any +"
    );
    let r = c.cmd("b", "NOOP").await;
    assert_eq!(
        r, "b OK NOOP completed\r\n",
        "the literal was not read as commands"
    );
    c.send(&format!("c APPEND Nowhere {{{}}}\r\n", MSG1.len()))
        .await;
    assert_eq!(c.line().await, "+ Ready\r\n");
    c.send(&format!("{MSG1}\r\n")).await;
    assert_eq!(c.line().await, "c NO [TRYCREATE] no such mailbox\r\n");
    let r = c.cmd("d", "STATUS INBOX (MESSAGES)").await;
    assert!(r.contains("(MESSAGES 0)"), "{r}");
}
