//! IDLE traces (RFC 9051 §6.3.13): changes by other sessions and deliveries reach an
//! idling session while it idles, and DONE ends it.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use buudien_imap::ImapConfig;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sees_deliveries_flags_and_expunges_from_others() {
    let env = env().await;
    env.deliver(MSG1).await;
    let server = env.server(ImapConfig::default());
    let (mut a, _ta) = connect(&server, LOOPBACK);
    let (mut b, _tb) = connect(&server, LOOPBACK);
    a.login().await;
    b.login().await;
    let r = a.cmd("s", "SELECT INBOX").await;
    assert!(r.contains("* 1 EXISTS"), "{r}");
    let r = b.cmd("s", "SELECT INBOX").await;
    assert!(r.contains("* 1 EXISTS"), "{r}");

    a.send("i IDLE\r\n").await;
    assert_eq!(a.line().await, "+ idling\r\n");

    env.deliver(MSG2).await;
    assert_eq!(a.line().await, "* 2 EXISTS\r\n");
    assert_eq!(a.line().await, "* 2 RECENT\r\n");

    let r = b.cmd("f", "STORE 1 +FLAGS (\\Flagged)").await;
    assert!(r.contains("f OK"), "{r}");
    assert_eq!(
        a.line().await,
        "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))\r\n"
    );

    let r = b.cmd("d", "STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    assert!(r.contains("d OK"), "{r}");
    assert_eq!(
        a.line().await,
        "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Deleted \\Recent))\r\n"
    );
    let r = b.cmd("e", "EXPUNGE").await;
    assert!(r.contains("* 1 EXPUNGE"), "{r}");
    assert_eq!(a.line().await, "* 1 EXPUNGE\r\n");

    a.send("DONE\r\n").await;
    assert_eq!(a.line().await, "i OK IDLE terminated\r\n");
    let r = a.cmd("n", "FETCH 1 (UID)").await;
    assert!(
        r.starts_with("* 1 FETCH (UID 2)"),
        "numbers shifted at the EXPUNGE: {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_without_a_mailbox_and_bad_continuation() {
    let env = env().await;
    let (mut a, _ta, _s) = session(&env).await;
    a.send("i IDLE\r\n").await;
    assert_eq!(a.line().await, "+ idling\r\n");
    env.deliver(MSG1).await;
    a.send("done\r\n").await;
    assert_eq!(a.line().await, "i OK IDLE terminated\r\n");
    a.send("j IDLE\r\n").await;
    assert_eq!(a.line().await, "+ idling\r\n");
    a.send("NOOP\r\n").await;
    assert_eq!(a.line().await, "j BAD expected DONE\r\n");
    let r = a.cmd("k", "NOOP").await;
    assert_eq!(r, "k OK NOOP completed\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_ends_with_bye_when_the_server_stops() {
    let env = env().await;
    let (mut a, task, server) = session(&env).await;
    a.send("i IDLE\r\n").await;
    assert_eq!(a.line().await, "+ idling\r\n");
    server.stop();
    assert_eq!(a.line().await, "* BYE server shutting down\r\n");
    task.await.unwrap();
}
