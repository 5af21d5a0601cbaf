//! Session limits: a client sending garbage is cut off; CONDSTORE STORE replies.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use buudien_imap::ImapConfig;
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

#[tokio::test]
async fn fetch_of_a_message_expunged_elsewhere_keeps_numbers_until_noop() {
    let env = env().await;
    env.deliver(MSG1).await;
    env.deliver(MSG2).await;
    let server = env.server(ImapConfig::default());
    let (mut a, _ta) = connect(&server, LOOPBACK);
    let (mut b, _tb) = connect(&server, LOOPBACK);
    a.login().await;
    b.login().await;
    assert!(a.cmd("s", "SELECT INBOX").await.contains("* 2 EXISTS"));
    assert!(b.cmd("s", "SELECT INBOX").await.contains("* 2 EXISTS"));
    let r = b.cmd("d", "STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    assert!(r.contains("d OK"), "{r}");
    let r = b.cmd("e", "EXPUNGE").await;
    assert!(r.contains("* 1 EXPUNGE"), "{r}");
    // RFC 9051 §7.5.1: no EXPUNGE during FETCH; message 2 keeps its number.
    let r = a.cmd("f", "FETCH 1:2 (UID RFC822.SIZE)").await;
    assert!(!r.contains("EXPUNGE"), "{r}");
    assert!(
        r.contains(&format!("* 2 FETCH (UID 2 RFC822.SIZE {})", MSG2.len())),
        "{r}"
    );
    assert!(r.ends_with("f OK FETCH completed\r\n"), "{r}");
    // RFC 2180 §4.3: a SEARCH may or may not include a message expunged elsewhere
    // that this session was not told of yet; buudien answers flag-only keys from the
    // session's view (it is there) and content keys from the store (it is gone).
    let r = a.cmd("u", "UID SEARCH ALL").await;
    assert!(r.contains("* SEARCH 1 2\r\n"), "{r}");
    let r = a.cmd("v", "UID SEARCH LARGER 1").await;
    assert!(r.contains("* SEARCH 2\r\n"), "{r}");
    let r = a.cmd("n", "NOOP").await;
    assert!(r.starts_with("* 1 EXPUNGE\r\n"), "{r}");
    let r = a.cmd("g", "FETCH 1 (UID)").await;
    assert!(r.starts_with("* 1 FETCH (UID 2)"), "{r}");
}

#[tokio::test]
async fn subscriptions_outlive_their_mailbox() {
    let env = env().await;
    let server = env.server(ImapConfig::default());
    let (mut c, _task) = connect(&server, LOOPBACK);
    c.login().await;
    assert!(c.cmd("a", "CREATE Old").await.contains("a OK"));
    assert!(c.cmd("b", "SUBSCRIBE Old").await.contains("b OK"));
    assert!(c.cmd("c", "DELETE Old").await.contains("c OK"));
    assert!(c.cmd("d", "SUBSCRIBE Future").await.contains("d OK"));
    let r = c.cmd("e", "LIST (SUBSCRIBED) \"\" \"*\"").await;
    let old = r
        .lines()
        .find(|l| l.ends_with("\"/\" Old"))
        .unwrap_or_else(|| panic!("{r}"));
    assert!(
        old.contains("\\NonExistent") && old.contains("\\Subscribed"),
        "{r}"
    );
    assert!(r.contains("\"/\" Future\r\n"), "{r}");
    let r = c.cmd("f", "LSUB \"\" \"*\"").await;
    assert!(
        r.contains("\"/\" Old\r\n") && r.contains("\"/\" Future\r\n"),
        "{r}"
    );
    let r = c.cmd("g", "LIST \"\" \"*\"").await;
    assert!(
        !r.contains("Old") && !r.contains("Future"),
        "plain LIST: {r}"
    );
    assert!(c.cmd("h", "UNSUBSCRIBE Old").await.contains("h OK"));
    let r = c.cmd("i", "LSUB \"\" \"*\"").await;
    assert!(!r.contains("Old"), "{r}");
}

#[tokio::test]
async fn a_client_that_never_logs_in_is_cut_off_sooner() {
    let env = env().await;
    let server = env.server(ImapConfig {
        preauth_timeout: std::time::Duration::from_millis(300),
        ..ImapConfig::default()
    });
    let (mut c, task) = connect(&server, LOOPBACK);
    assert!(c.line().await.starts_with("* OK"));
    let r = c.cmd("a", "NOOP").await;
    assert_eq!(r, "a OK NOOP completed\r\n");
    assert_eq!(c.line().await, "* BYE autologout, idle too long\r\n");
    task.await.unwrap();
    // After login the longer idle timer applies.
    let (mut c, _task) = connect(&server, LOOPBACK);
    c.login().await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let r = c.cmd("b", "NOOP").await;
    assert_eq!(r, "b OK NOOP completed\r\n");
}

#[tokio::test]
async fn guessing_one_account_from_many_addresses_does_not_lock_out_its_owner() {
    use buudien_auth::{FailureThrottle, ThrottleConfig};
    use std::sync::Arc;
    use std::time::Duration;
    let env = env().await;
    let throttle = Arc::new(FailureThrottle::new(ThrottleConfig {
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        account_refuse_after: 3,
        ..ThrottleConfig::default()
    }));
    let config = ImapConfig {
        allow_plaintext_auth: true,
        ..ImapConfig::default()
    };
    let server = buudien_imap::ImapServer::new(env.store.clone(), config, throttle);
    let owner = "192.0.2.10:1000";
    let (mut c, _t) = connect(&server, owner);
    c.login().await;
    for n in 1..=3 {
        let (mut c, _t) = connect(&server, &format!("198.51.100.{n}:1000"));
        assert!(c.line().await.starts_with("* OK"));
        let r = c.cmd("a", &format!("LOGIN {USER} wrong")).await;
        assert!(r.starts_with("a NO [AUTHENTICATIONFAILED]"), "{r}");
    }
    // A fourth stranger is refused before any password check...
    let (mut c, _t) = connect(&server, "203.0.113.7:1000");
    assert!(c.line().await.starts_with("* OK"));
    let r = c.cmd("a", &format!("LOGIN {USER} \"{PASSWORD}\"")).await;
    assert!(r.starts_with("a NO [UNAVAILABLE]"), "{r}");
    // ...while the owner's address, trusted by its earlier login, still gets in.
    let (mut c, _t) = connect(&server, owner);
    c.login().await;
}
