//! Hostile bytes as protocol traces: NUL and invalid UTF-8 get `BAD` (RFC 9051 §9,
//! RFC 6855 §3), a name that is not modified UTF-7 gets `NO` on CREATE and SELECT
//! (RFC 3501 §5.1.3), commands refused for the state count towards the bad commands
//! in a row, and an endless line is cut off with `* BYE`. The session goes on after
//! every refusal short of those limits.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use buudien_imap_proto::MAX_OVERLONG_SKIP;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn nul_invalid_utf8_and_invalid_mutf7() {
    let env = env().await;
    let (mut c, _task, _s) = session(&env).await;
    let cases: [(&[u8], &str); 8] = [
        (b"a NOOP\0", "a BAD"),
        (b"b CREATE \"x\0y\"", "b BAD"),
        (b"c CREATE \"b\xe4d\"", "c BAD"),
        (b"d SELECT \xff\xfe", "d BAD"),
        (b"e CREATE &Jjo", "e NO"),
        (b"f SELECT &Jjo", "f NO"),
        (b"g SELECT \"&-&\"", "g NO"),
        (b"h STATUS &Jjo (MESSAGES)", "h NO"),
    ];
    for (line, want) in cases {
        c.wr.write_all(line).await.unwrap();
        c.wr.write_all(b"\r\n").await.unwrap();
        let r = c.line().await;
        assert!(r.starts_with(want), "{line:?}: {r}");
    }
    // A line without a usable tag: untagged BAD.
    c.wr.write_all(b"\xff\0\r\n").await.unwrap();
    assert!(c.line().await.starts_with("* BAD"));
    let r = c.cmd("i", "CREATE &AMk-t&AOk-").await;
    assert_eq!(r, "i OK CREATE completed\r\n");
    let r = c.cmd("j", "SELECT &AMk-t&AOk-").await;
    assert!(r.ends_with("j OK [READ-WRITE] SELECT completed\r\n"), "{r}");
}

#[tokio::test]
async fn commands_refused_for_the_state_count_as_bad() {
    let env = env().await;
    let (mut c, task, _s) = session(&env).await;
    for i in 0..9 {
        let r = c.cmd(&format!("x{i}"), "FETCH 1 FLAGS").await;
        assert_eq!(r, format!("x{i} BAD no mailbox selected\r\n"));
    }
    c.send("z FETCH 1 FLAGS\r\n").await;
    assert!(c.line().await.starts_with("z BAD"));
    assert_eq!(c.line().await, "* BYE too many invalid commands\r\n");
    task.await.unwrap();
}

#[tokio::test]
async fn a_long_line_is_refused_and_an_endless_one_cut_off() {
    let env = env().await;
    let (mut c, task, _s) = session(&env).await;
    // Half the skip allowance over the 64 KiB limit: BAD, and the session goes on.
    c.wr.write_all(b"a LOGIN ").await.unwrap();
    c.wr.write_all(&vec![b'a'; MAX_OVERLONG_SKIP / 2])
        .await
        .unwrap();
    c.wr.write_all(b"\r\n").await.unwrap();
    assert!(c.line().await.starts_with("a BAD"));
    assert_eq!(c.cmd("b", "NOOP").await, "b OK NOOP completed\r\n");
    // An endless one: BAD at once, then BYE and the end of the connection.
    let mut wr = c.wr;
    let writer = tokio::spawn(async move {
        let chunk = vec![b'c'; 64 * 1024];
        wr.write_all(b"c LOGIN ").await.unwrap();
        for _ in 0..64 {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut said = String::new();
    c.rd.read_to_string(&mut said).await.unwrap();
    writer.await.unwrap();
    assert!(said.starts_with("c BAD"), "{said}");
    assert!(
        said.ends_with("* BYE [TOOBIG] command too long\r\n"),
        "{said}"
    );
    task.await.unwrap();
}

#[tokio::test]
async fn a_huge_refused_nonsync_literal_is_not_read() {
    // LITERAL- (the default): over 4096 octets is refused; over MAX_OVERLONG_SKIP it
    // is not even read (RFC 7888 §4): BAD [TOOBIG], then BYE.
    let env = env().await;
    let (mut c, task, _s) = session(&env).await;
    c.send("a APPEND INBOX {5000+}\r\n").await;
    c.wr.write_all(&[b'x'; 5000]).await.unwrap();
    c.send("\r\n").await;
    assert!(c.line().await.starts_with("a BAD [TOOBIG]"));
    assert_eq!(c.cmd("b", "NOOP").await, "b OK NOOP completed\r\n");
    c.send("c APPEND INBOX {99999999999+}\r\n").await;
    assert!(c.line().await.starts_with("c BAD [TOOBIG]"));
    assert_eq!(c.line().await, "* BYE [TOOBIG] command too long\r\n");
    task.await.unwrap();
}

#[tokio::test]
async fn literal_plus_append_before_login_is_not_read_when_huge() {
    let env = env().await;
    let server = env.server(buudien_imap::ImapConfig {
        literal_plus: true,
        ..buudien_imap::ImapConfig::default()
    });
    let (mut c, task) = connect(&server, LOOPBACK);
    c.line().await;
    c.send("a APPEND INBOX {10+}\r\n0123456789\r\n").await;
    assert_eq!(c.line().await, "a BAD not authenticated\r\n");
    assert!(
        c.cmd("b", "CAPABILITY")
            .await
            .ends_with("b OK CAPABILITY completed\r\n")
    );
    c.send("c APPEND INBOX {99999999999+}\r\n").await;
    assert_eq!(c.line().await, "c BAD not authenticated\r\n");
    assert_eq!(c.line().await, "* BYE [TOOBIG] command too long\r\n");
    task.await.unwrap();
}
