//! Whole IMAP sessions over an in-memory duplex against a real store: the tests
//! read like protocol traces (what the client sends, what the server answers).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use base64::Engine as _;
use buudien_imap::ImapConfig;
use common::*;
use std::time::Duration;

#[tokio::test]
async fn capability_login_and_logout() {
    let env = env().await;
    let server = env.server(ImapConfig::default());
    let (mut c, task) = connect(&server, LOOPBACK);
    let g = c.line().await;
    assert!(
        g.contains("AUTH=PLAIN") && !g.contains("LOGINDISABLED"),
        "{g}"
    );
    let r = c.cmd("a", "CAPABILITY").await;
    assert!(r.starts_with("* CAPABILITY IMAP4rev2 IMAP4rev1"), "{r}");
    let r = c.cmd("b", "SELECT INBOX").await;
    assert!(r.starts_with("b BAD"), "{r}");
    let r = c.cmd("c", &format!("LOGIN {USER} wrong")).await;
    assert_eq!(r, "c NO [AUTHENTICATIONFAILED] invalid credentials\r\n");
    let r = c.cmd("d", "LOGIN nobody@example.org wrong").await;
    assert!(r.starts_with("d NO [AUTHENTICATIONFAILED]"), "{r}");
    let r = c.cmd("e", &format!("LOGIN {USER} \"{PASSWORD}\"")).await;
    assert!(r.starts_with("e OK"), "{r}");
    let r = c.cmd("f", "LOGOUT").await;
    assert_eq!(r, "* BYE logging out\r\nf OK LOGOUT completed\r\n");
    task.await.unwrap();
}

#[tokio::test]
async fn plaintext_login_refused_remotely() {
    let env = env().await;
    let server = env.server(ImapConfig::default());
    let (mut c, _task) = connect(&server, REMOTE);
    let g = c.line().await;
    assert!(g.contains("LOGINDISABLED"), "{g}");
    let r = c.cmd("a", &format!("LOGIN {USER} \"{PASSWORD}\"")).await;
    assert!(r.starts_with("a NO [PRIVACYREQUIRED]"), "{r}");
}

#[tokio::test]
async fn authenticate_plain() {
    let env = env().await;
    let server = env.server(ImapConfig::default());
    let (mut c, _task) = connect(&server, LOOPBACK);
    c.line().await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("\0{USER}\0{PASSWORD}"));
    c.send("a AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(c.line().await, "+ \r\n");
    c.send(&format!("{b64}\r\n")).await;
    let r = c.until("a").await;
    assert!(r.starts_with("a OK"), "{r}");
}

#[tokio::test]
async fn bad_syntax_and_unimplemented() {
    let env = env().await;
    let (mut c, _task, _s) = session(&env).await;
    let r = c.cmd("a", "FROBNICATE").await;
    assert!(r.starts_with("a BAD"), "{r}");
    let r = c.cmd("b", "SELECT").await;
    assert!(r.starts_with("b BAD"), "{r}");
    let r = c.cmd("c", "SETQUOTA \"\" (STORAGE 1)").await;
    assert_eq!(r, "c NO [NOPERM] quotas are read-only\r\n");
    let r = c.cmd("d", "NOOP").await;
    assert_eq!(r, "d OK NOOP completed\r\n");
}

#[tokio::test]
async fn select_fetch_store_expunge() {
    let env = env().await;
    env.deliver(MSG1).await;
    env.deliver(MSG2).await;
    let (mut c, _task, _s) = session(&env).await;
    let r = c.cmd("s", "SELECT INBOX").await;
    assert!(r.contains("* 2 EXISTS\r\n"), "{r}");
    assert!(r.contains("* OK [UIDVALIDITY "), "{r}");
    assert!(r.contains("* OK [UIDNEXT 3]"), "{r}");
    assert!(r.ends_with("s OK [READ-WRITE] SELECT completed\r\n"), "{r}");

    let r = c.cmd("f", "FETCH 1:* (UID FLAGS RFC822.SIZE)").await;
    assert!(
        r.contains(&format!(
            "* 1 FETCH (UID 1 FLAGS (\\Recent) RFC822.SIZE {})",
            MSG1.len()
        )),
        "{r}"
    );
    assert!(r.contains("* 2 FETCH (UID 2 FLAGS (\\Recent)"), "{r}");

    let r = c.cmd("g", "FETCH 1 BODY.PEEK[]").await;
    assert_eq!(
        r,
        format!(
            "* 1 FETCH (BODY[] {{{}}}\r\n{MSG1})\r\ng OK FETCH completed\r\n",
            MSG1.len()
        )
    );
    let r = c
        .cmd("g2", "FETCH 1 (BODY.PEEK[] UID RFC822.SIZE BODY.PEEK[])")
        .await;
    let n = MSG1.len();
    assert_eq!(
        r,
        format!(
            "* 1 FETCH (BODY[] {{{n}}}\r\n{MSG1} UID 1 RFC822.SIZE {n} BODY[] {{{n}}}\r\n{MSG1})\r\ng2 OK FETCH completed\r\n"
        )
    );
    let r = c.cmd("h", "UID FETCH 2 (FLAGS)").await;
    assert!(r.contains("FLAGS (\\Recent)"), "{r}");
    let r = c.cmd("i", "UID FETCH 2 BODY[]").await;
    assert!(r.contains(MSG2), "{r}");
    let r = c.cmd("j", "FETCH 2 FLAGS").await;
    assert!(r.contains("* 2 FETCH (FLAGS (\\Seen \\Recent))"), "{r}");

    let r = c.cmd("k", "STORE 1 +FLAGS (\\Deleted $Junk)").await;
    assert!(
        r.contains("* 1 FETCH (FLAGS (\\Deleted \\Recent $Junk))"),
        "{r}"
    );
    let r = c.cmd("l", "STORE 2 +FLAGS.SILENT (\\Flagged)").await;
    assert_eq!(r, "l OK STORE completed\r\n");

    let r = c.cmd("m", "EXPUNGE").await;
    assert_eq!(r, "* 1 EXPUNGE\r\nm OK EXPUNGE completed\r\n");
    let r = c.cmd("n", "FETCH 1 (UID FLAGS)").await;
    assert!(
        r.contains("* 1 FETCH (UID 2 FLAGS (\\Flagged \\Seen \\Recent))"),
        "{r}"
    );

    // Another delivery shows up at NOOP.
    env.deliver(MSG1).await;
    let r = c.cmd("o", "NOOP").await;
    assert_eq!(r, "* 2 EXISTS\r\n* 2 RECENT\r\no OK NOOP completed\r\n");

    let r = c.cmd("p", "STATUS INBOX (MESSAGES UNSEEN UIDNEXT)").await;
    assert!(
        r.contains("MESSAGES 2") && r.contains("UNSEEN 1") && r.contains("UIDNEXT 4"),
        "{r}"
    );
}

#[tokio::test]
async fn create_list_append_copy_move() {
    let env = env().await;
    env.deliver(MSG1).await;
    let (mut c, _task, _s) = session(&env).await;
    let r = c.cmd("a", "CREATE Projects").await;
    assert_eq!(r, "a OK CREATE completed\r\n");
    let r = c.cmd("b", "CREATE Projects").await;
    assert!(r.starts_with("b NO [ALREADYEXISTS]"), "{r}");
    let r = c.cmd("c", "LIST \"\" *").await;
    assert!(r.contains("\"/\" INBOX\r\n"), "{r}");
    assert!(r.contains("\"/\" Projects\r\n"), "{r}");
    let r = c.cmd("c2", "LIST \"\" \"\"").await;
    assert!(r.starts_with("* LIST (\\Noselect) \"/\" \"\""), "{r}");

    c.send(&format!(
        "d APPEND Projects (\\Seen) {{{}}}\r\n",
        MSG2.len()
    ))
    .await;
    assert!(c.line().await.starts_with("+ "));
    c.send(&format!("{MSG2}\r\n")).await;
    let r = c.until("d").await;
    assert!(
        r.starts_with("d OK [APPENDUID ") && r.contains(" 1] APPEND"),
        "{r}"
    );
    let r = c.cmd("d2", "APPEND Nowhere {3+}\r\nabc").await;
    assert!(r.starts_with("d2 NO [TRYCREATE]"), "{r}");

    let r = c.cmd("e", "SELECT INBOX").await;
    assert!(r.contains("* 1 EXISTS"), "{r}");
    let r = c.cmd("f", "COPY 1 Projects").await;
    assert!(
        r.starts_with("f OK [COPYUID ") && r.contains(" 1 2] COPY"),
        "{r}"
    );
    let r = c.cmd("g", "UID MOVE 1 Projects").await;
    assert!(r.contains(" 1 3] moved"), "{r}");
    assert!(r.contains("* 1 EXPUNGE\r\n"), "{r}");
    assert!(r.ends_with("g OK UID MOVE completed\r\n"), "{r}");
    let r = c.cmd("h", "EXAMINE Projects").await;
    assert!(r.contains("* 3 EXISTS"), "{r}");
    assert!(r.ends_with("h OK [READ-ONLY] EXAMINE completed\r\n"), "{r}");
    let r = c.cmd("i", "STORE 1 +FLAGS (\\Deleted)").await;
    assert!(r.starts_with("i NO"), "{r}");
    let r = c.cmd("j", "RENAME Projects Old").await;
    assert_eq!(r, "j OK RENAME completed\r\n");
    let r = c.cmd("k", "SELECT Projects").await;
    assert!(r.starts_with("k NO [NONEXISTENT]"), "{r}");
    let r = c.cmd("l", "DELETE Old").await;
    assert_eq!(r, "l OK DELETE completed\r\n");
}

#[tokio::test]
async fn append_limit_enable_and_unchangedsince() {
    let env = env().await;
    env.deliver(MSG1).await;
    let server = env.server(ImapConfig {
        max_append: 10,
        ..ImapConfig::default()
    });
    let (mut c, _task) = connect(&server, LOOPBACK);
    c.login().await;
    c.send("a APPEND INBOX {100}\r\n").await;
    let r = c.until("a").await;
    assert_eq!(r, "a NO [TOOBIG] message exceeds APPENDLIMIT\r\n");
    let r = c.cmd("b", "NOOP").await;
    assert_eq!(r, "b OK NOOP completed\r\n");

    let r = c.cmd("c", "ENABLE IMAP4rev2").await;
    assert_eq!(r, "* ENABLED IMAP4rev2\r\nc OK ENABLE completed\r\n");
    let r = c.cmd("d", "SELECT inbox").await;
    assert!(r.contains("* LIST () \"/\" INBOX\r\n"), "{r}");
    let r = c.cmd("e", "FETCH 1 (MODSEQ)").await;
    let modseq: u64 = r
        .split("MODSEQ (")
        .nth(1)
        .and_then(|t| t.split(')').next())
        .unwrap()
        .parse()
        .unwrap();
    let r = c
        .cmd(
            "f",
            &format!("STORE 1 (UNCHANGEDSINCE {modseq}) +FLAGS (\\Answered)"),
        )
        .await;
    assert!(r.contains("* 1 FETCH (FLAGS (\\Answered) MODSEQ ("), "{r}");
    let r = c
        .cmd(
            "g",
            &format!("STORE 1 (UNCHANGEDSINCE {modseq}) +FLAGS (\\Flagged)"),
        )
        .await;
    assert_eq!(r, "g OK [MODIFIED 1] conditional STORE failed\r\n");
    let r = c.cmd("h", "UNSELECT").await;
    assert_eq!(r, "h OK UNSELECT completed\r\n");
    let r = c.cmd("i", "FETCH 1 FLAGS").await;
    assert!(r.starts_with("i BAD"), "{r}");
}

#[tokio::test]
async fn special_use_in_list_and_recent_for_rev1() {
    let env = env().await;
    let (mut c, _task, _s) = session(&env).await;
    let r = c.cmd("a", "LIST \"\" %").await;
    assert!(r.contains("\\Archive"), "{r}");
    let r = c.cmd("b", "SELECT INBOX").await;
    assert!(r.contains("* 0 EXISTS\r\n* 0 RECENT\r\n"), "{r}");
}

#[tokio::test]
async fn stop_and_idle_timeout_say_bye() {
    let env = env().await;
    let (mut c, task, server) = session(&env).await;
    server.stop();
    assert_eq!(c.line().await, "* BYE server shutting down\r\n");
    task.await.unwrap();

    let server = env.server(ImapConfig {
        idle_timeout: Duration::from_millis(100),
        ..ImapConfig::default()
    });
    let (mut c, task) = connect(&server, LOOPBACK);
    c.line().await;
    assert_eq!(c.line().await, "* BYE autologout, idle too long\r\n");
    task.await.unwrap();
}

/// SELECT of the mailbox already selected brings the session's snapshot up to date
/// from the change log: it answers exactly as a fresh session's SELECT does, after
/// another session changed flags, expunged, and new mail came.
#[tokio::test]
async fn reselect_answers_as_a_fresh_select() {
    let env = env().await;
    for _ in 0..3 {
        env.deliver(MSG1).await;
    }
    let server = env.server(ImapConfig::default());
    let (mut a, _ta) = connect(&server, LOOPBACK);
    a.login().await;
    let r = a.cmd("a1", "SELECT INBOX").await;
    assert!(r.contains("* 3 EXISTS"), "{r}");
    let r = a.cmd("a2", "STORE 1 +FLAGS (\\Seen)").await;
    assert!(r.ends_with("a2 OK STORE completed\r\n"), "{r}");

    let (mut b, _tb) = connect(&server, LOOPBACK);
    b.login().await;
    b.cmd("b1", "SELECT INBOX").await;
    let r = b.cmd("b2", "STORE 2 +FLAGS ($Junk \\Flagged)").await;
    assert!(r.ends_with("b2 OK STORE completed\r\n"), "{r}");
    let r = b.cmd("b3", "STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    assert!(r.ends_with("b3 OK STORE completed\r\n"), "{r}");
    let r = b.cmd("b4", "EXPUNGE").await;
    assert!(r.contains("* 1 EXPUNGE"), "{r}");
    env.deliver(MSG2).await;

    let again = a.cmd("t", "SELECT INBOX").await;
    let (mut c, _tc) = connect(&server, LOOPBACK);
    c.login().await;
    let fresh = c.cmd("t", "SELECT INBOX").await;
    // The new message is \Recent in the session that selected first (RFC 3501
    // §2.3.2), and only there.
    assert!(
        again.contains("* 1 RECENT") && fresh.contains("* 0 RECENT"),
        "{again}"
    );
    assert_eq!(again.replace("* 1 RECENT", "* 0 RECENT"), fresh);
    assert!(
        again.contains("* 3 EXISTS") && again.contains(" $Junk"),
        "{again}"
    );
    // The re-selected snapshot serves commands like a fresh one.
    let r = a.cmd("a3", "FETCH 1:* (UID FLAGS)").await;
    let f = c.cmd("a3", "FETCH 1:* (UID FLAGS)").await;
    assert_eq!(r.replace(" (\\Recent)", " ()"), f);
    assert!(
        r.contains("* 1 FETCH (UID 2 FLAGS (\\Flagged $Junk))"),
        "{r}"
    );
    assert!(r.contains("* 3 FETCH (UID 4 FLAGS (\\Recent))"), "{r}");
}
