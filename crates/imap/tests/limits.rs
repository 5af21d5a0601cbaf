//! Session limits: a client sending garbage is cut off; CONDSTORE STORE replies.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;

#[tokio::test]
async fn ten_bad_commands_in_a_row_end_the_session() {
    let env = env().await;
    let (mut c, task, _s) = session(&env).await;
    for i in 0..9 {
        let r = c.cmd(&format!("x{i}"), "FROB").await;
        assert!(r.starts_with(&format!("x{i} BAD")), "{r}");
    }
    // A good command resets the count.
    let r = c.cmd("n", "NOOP").await;
    assert_eq!(r, "n OK NOOP completed\r\n");
    for i in 0..9 {
        let r = c.cmd(&format!("y{i}"), "FROB").await;
        assert!(r.starts_with(&format!("y{i} BAD")), "{r}");
    }
    c.send("z FROB\r\n").await;
    assert!(c.line().await.starts_with("z BAD"));
    assert_eq!(c.line().await, "* BYE too many invalid commands\r\n");
    task.await.unwrap();
}

#[tokio::test]
async fn store_under_condstore_reports_modseq() {
    let env = env().await;
    env.deliver(MSG1).await;
    env.deliver(MSG2).await;
    let (mut c, _task, _s) = session(&env).await;
    let r = c.cmd("s", "SELECT INBOX (CONDSTORE)").await;
    let hms: u64 = r
        .split("[HIGHESTMODSEQ ")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .unwrap()
        .parse()
        .unwrap();
    let r = c.cmd("a", "STORE 1 +FLAGS (\\Seen)").await;
    assert!(
        r.contains(&format!("FLAGS (\\Seen \\Recent) MODSEQ ({})", hms + 1)),
        "{r}"
    );
    let r = c
        .cmd(
            "b",
            &format!("STORE 1,2 (UNCHANGEDSINCE {hms}) +FLAGS (\\Flagged)"),
        )
        .await;
    assert!(
        r.contains("* 2 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ ("),
        "{r}"
    );
    assert!(
        r.contains("b OK [MODIFIED 1] conditional STORE failed"),
        "{r}"
    );
}
