//! Behaviours Dovecot's imaptest checks (its scripted tests found these differences
//! from Dovecot; each is what the RFC asks for).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;

#[tokio::test]
async fn new_keywords_are_announced_in_flags() {
    let env = env().await;
    env.deliver(MSG1).await;
    let (mut c, _t, _s) = session(&env).await;
    let r = c.cmd("s", "SELECT INBOX").await;
    assert!(
        r.contains("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"),
        "{r}"
    );
    let r = c.cmd("a", "STORE 1 +FLAGS ($Foo)").await;
    // RFC 9051 §7.3.5: the FLAGS update comes before the FETCH that uses it.
    let flags = r.find("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Foo)\r\n");
    let fetch = r.find("* 1 FETCH (FLAGS (\\Recent $Foo))");
    assert!(flags.is_some() && fetch.is_some() && flags < fetch, "{r}");
    assert!(
        r.contains("[PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Foo \\*)]"),
        "{r}"
    );
    let r = c.cmd("b", "STORE 1 +FLAGS ($Foo)").await;
    assert!(!r.contains("* FLAGS"), "announced once: {r}");
    let r = c.cmd("c", "EXAMINE INBOX").await;
    assert!(
        r.contains("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Foo)\r\n"),
        "{r}"
    );
}

#[tokio::test]
async fn create_does_not_subscribe() {
    let env = env().await;
    let (mut c, _t, _s) = session(&env).await;
    assert!(c.cmd("a", "CREATE top/sub").await.contains("a OK"));
    let r = c.cmd("b", "LIST (SUBSCRIBED) \"\" \"top*\"").await;
    assert_eq!(r, "b OK LIST completed\r\n");
    assert!(c.cmd("c", "SUBSCRIBE top/sub").await.contains("c OK"));
    let r = c.cmd("d", "LSUB \"\" \"top/*\"").await;
    assert!(r.contains("\"/\" top/sub\r\n"), "{r}");
}

#[tokio::test]
async fn examine_and_status_show_recent_without_taking_it() {
    let env = env().await;
    env.deliver(MSG1).await;
    env.deliver(MSG2).await;
    let (mut c, _t, _s) = session(&env).await;
    let r = c.cmd("a", "STATUS INBOX (MESSAGES RECENT)").await;
    assert!(r.contains("(MESSAGES 2 RECENT 2)"), "{r}");
    let r = c.cmd("b", "EXAMINE INBOX").await;
    assert!(r.contains("* 2 RECENT\r\n"), "{r}");
    let r = c.cmd("c", "SELECT INBOX").await;
    assert!(
        r.contains("* 2 RECENT\r\n"),
        "EXAMINE left them recent: {r}"
    );
    let r = c.cmd("d", "STATUS INBOX (RECENT)").await;
    assert!(r.contains("(RECENT 0)"), "SELECT took them: {r}");
}

#[tokio::test]
async fn move_within_the_selected_mailbox() {
    let env = env().await;
    env.deliver(MSG1).await;
    let (mut c, _t, _s) = session(&env).await;
    assert!(c.cmd("s", "SELECT INBOX").await.contains("s OK"));
    let r = c.cmd("m", "MOVE 1 INBOX").await;
    assert!(r.contains("* OK [COPYUID "), "{r}");
    assert!(r.contains(" 1 2] moved"), "{r}");
    assert!(r.contains("* 1 EXPUNGE\r\n* 1 EXISTS\r\n"), "{r}");
    assert!(r.ends_with("m OK MOVE completed\r\n"), "{r}");
    let r = c.cmd("f", "FETCH 1 (UID)").await;
    assert!(r.starts_with("* 1 FETCH (UID 2)"), "{r}");
}

#[tokio::test]
async fn search_from_sees_through_address_comments() {
    let env = env().await;
    env.deliver("From: <user-from (comment)@ (comment) domain.org>\r\nSubject: c\r\n\r\nx\r\n")
        .await;
    env.deliver("From: other@domain.org\r\nSubject: d\r\n\r\nx\r\n")
        .await;
    let (mut c, _t, _s) = session(&env).await;
    assert!(c.cmd("s", "SELECT INBOX").await.contains("s OK"));
    let r = c.cmd("a", "SEARCH FROM user-from@domain.org").await;
    assert!(r.contains("* SEARCH 1\r\n"), "{r}");
}

#[tokio::test]
async fn first_modseq_use_reports_highestmodseq() {
    let env = env().await;
    env.deliver(MSG1).await;
    let (mut c, _t, _s) = session(&env).await;
    assert!(c.cmd("s", "SELECT INBOX").await.contains("s OK"));
    let r = c.cmd("a", "FETCH 1 (MODSEQ)").await;
    assert!(
        r.starts_with("* OK [HIGHESTMODSEQ "),
        "RFC 7162 §3.1.2.1: {r}"
    );
    let r = c.cmd("b", "FETCH 1 (MODSEQ)").await;
    assert!(!r.contains("HIGHESTMODSEQ"), "once: {r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_flag_additions_lose_nothing() {
    let env = env().await;
    for _ in 0..20 {
        env.deliver(MSG2).await;
    }
    let (mut a, _ta, server) = session(&env).await;
    let (mut b, _tb) = connect(&server, LOOPBACK);
    b.login().await;
    assert!(a.cmd("s", "SELECT INBOX").await.contains("s OK"));
    assert!(b.cmd("s", "SELECT INBOX").await.contains("s OK"));
    // Two devices add different flags to the same messages at the same time.
    let one = tokio::spawn(async move {
        for i in 1..=20 {
            let r = a
                .cmd("a", &format!("STORE {i} +FLAGS.SILENT (\\Seen $A)"))
                .await;
            assert!(r.contains("a OK"), "{r}");
        }
        a
    });
    for i in (1..=20).rev() {
        let r = b
            .cmd("b", &format!("STORE {i} +FLAGS.SILENT (\\Flagged $B)"))
            .await;
        assert!(r.contains("b OK"), "{r}");
    }
    let mut a = one.await.unwrap();
    // FETCH first reports the other session's changes, then answers with current
    // flags: the last 20 FETCH lines are the answer.
    let r = a.cmd("f", "FETCH 1:* (FLAGS)").await;
    let lines: Vec<&str> = r.lines().filter(|l| l.contains(" FETCH (FLAGS")).collect();
    assert!(lines.len() >= 20, "{r}");
    for l in &lines[lines.len() - 20..] {
        assert!(
            l.contains("\\Seen") && l.contains("\\Flagged") && l.contains("$A") && l.contains("$B"),
            "{l}"
        );
    }
}
