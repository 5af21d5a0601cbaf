//! LIST (RFC 9051 §6.3.9, RFC 5258 LIST-EXTENDED, RFC 6154 SPECIAL-USE, RFC 5819
//! LIST-STATUS), LSUB (RFC 3501 §6.3.9), CREATE with USE (RFC 6154 §3) and mailbox
//! name encodings (RFC 3501 §5.1.3 modified UTF-7, RFC 6855 UTF8=ACCEPT) as protocol
//! traces over an in-memory duplex against a real store.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use std::time::Duration;

/// The six mailboxes of a new account, as a rev1 `LIST "" %` shows them.
const DEFAULT_LIST: &str = "\
* LIST (\\HasNoChildren) \"/\" INBOX\r\n\
* LIST (\\HasNoChildren \\Archive) \"/\" Archive\r\n\
* LIST (\\HasNoChildren \\Drafts) \"/\" Drafts\r\n\
* LIST (\\HasNoChildren \\Junk) \"/\" Junk\r\n\
* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n\
* LIST (\\HasNoChildren \\Trash) \"/\" Trash\r\n";

#[tokio::test]
async fn basic_list_delimiter_reference_and_inbox() {
    let env = env().await;
    let (mut c, _t, _s) = session(&env).await;
    let r = c.cmd("a", "LIST \"\" \"\"").await;
    assert_eq!(
        r,
        "* LIST (\\Noselect) \"/\" \"\"\r\na OK LIST completed\r\n"
    );
    let r = c.cmd("b", "LIST \"\" %").await;
    assert_eq!(r, format!("{DEFAULT_LIST}b OK LIST completed\r\n"));
    assert_eq!(
        c.cmd("c", "CREATE Work/B/C").await,
        "c OK CREATE completed\r\n"
    );
    assert_eq!(
        c.cmd("d", "CREATE Work/A").await,
        "d OK CREATE completed\r\n"
    );
    // The reference prefixes the pattern (RFC 9051 §6.3.9).
    let r = c.cmd("e", "LIST Work/ %").await;
    assert_eq!(
        r,
        "* LIST (\\HasNoChildren) \"/\" Work/A\r\n\
         * LIST (\\HasChildren) \"/\" Work/B\r\n\
         e OK LIST completed\r\n"
    );
    let r = c.cmd("f", "LIST \"\" Work/*").await;
    assert_eq!(
        r,
        "* LIST (\\HasNoChildren) \"/\" Work/A\r\n\
         * LIST (\\HasChildren) \"/\" Work/B\r\n\
         * LIST (\\HasNoChildren) \"/\" Work/B/C\r\n\
         f OK LIST completed\r\n"
    );
    let r = c.cmd("g", "LIST \"\" Work").await;
    assert_eq!(
        r,
        "* LIST (\\HasChildren) \"/\" Work\r\ng OK LIST completed\r\n"
    );
    // INBOX matches whatever its case in the pattern.
    let r = c.cmd("h", "LIST \"\" inB%").await;
    assert_eq!(
        r,
        "* LIST (\\HasNoChildren) \"/\" INBOX\r\nh OK LIST completed\r\n"
    );
    let r = c.cmd("i", "LIST \"\" nothing*").await;
    assert_eq!(r, "i OK LIST completed\r\n");
}

#[tokio::test]
async fn extended_patterns_and_subscriptions() {
    let env = env().await;
    let (mut c, _t, _s) = session(&env).await;
    // Several patterns (RFC 5258 §3); empty ones are ignored in the extended syntax.
    let r = c.cmd("a", "LIST \"\" (INBOX \"\" Sent)").await;
    assert_eq!(
        r,
        "* LIST (\\HasNoChildren) \"/\" INBOX\r\n\
         * LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n\
         a OK LIST completed\r\n"
    );
    let r = c.cmd("a2", "LIST () \"\" \"\"").await;
    assert_eq!(r, "a2 OK LIST completed\r\n");
    assert_eq!(
        c.cmd("b", "UNSUBSCRIBE Junk").await,
        "b OK UNSUBSCRIBE completed\r\n"
    );
    // SUBSCRIBED selection: only subscribed names, all flagged \Subscribed.
    let r = c.cmd("c", "LIST (SUBSCRIBED) \"\" *").await;
    assert_eq!(
        r,
        "* LIST (\\HasNoChildren \\Subscribed) \"/\" INBOX\r\n\
         * LIST (\\HasNoChildren \\Subscribed \\Archive) \"/\" Archive\r\n\
         * LIST (\\HasNoChildren \\Subscribed \\Drafts) \"/\" Drafts\r\n\
         * LIST (\\HasNoChildren \\Subscribed \\Sent) \"/\" Sent\r\n\
         * LIST (\\HasNoChildren \\Subscribed \\Trash) \"/\" Trash\r\n\
         c OK LIST completed\r\n"
    );
    // SUBSCRIBED return option: every name, \Subscribed where it is.
    let r = c
        .cmd("d", "LIST \"\" (Junk Sent) RETURN (SUBSCRIBED CHILDREN)")
        .await;
    assert_eq!(
        r,
        "* LIST (\\HasNoChildren \\Junk) \"/\" Junk\r\n\
         * LIST (\\HasNoChildren \\Subscribed \\Sent) \"/\" Sent\r\n\
         d OK LIST completed\r\n"
    );
    // RECURSIVEMATCH: an unsubscribed parent of a subscribed child gets CHILDINFO.
    assert_eq!(
        c.cmd("e", "CREATE Work/A").await,
        "e OK CREATE completed\r\n"
    );
    // CREATE does not subscribe (RFC 9051 §6.3.4); this test wants both subscribed.
    assert!(c.cmd("e1", "SUBSCRIBE Work").await.contains("e1 OK"));
    assert!(c.cmd("e2", "SUBSCRIBE Work/A").await.contains("e2 OK"));
    assert_eq!(
        c.cmd("f", "UNSUBSCRIBE Work").await,
        "f OK UNSUBSCRIBE completed\r\n"
    );
    let r = c.cmd("g", "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" W%").await;
    assert_eq!(
        r,
        "* LIST (\\HasChildren) \"/\" Work (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n\
         g OK LIST completed\r\n"
    );
    let r = c.cmd("h", "LIST (SUBSCRIBED) \"\" W%").await;
    assert_eq!(r, "h OK LIST completed\r\n");
    let r = c.cmd("i", "LIST (RECURSIVEMATCH) \"\" %").await;
    assert!(r.starts_with("i BAD"), "{r}");
    let r = c.cmd("j", "LIST (SUBSCRIBED) \"\" % RETURN (BOGUS)").await;
    assert!(r.starts_with("j BAD"), "{r}");
    // REMOTE is accepted; buudien has no remote mailboxes.
    let r = c.cmd("k", "LIST (REMOTE) \"\" Sent").await;
    assert_eq!(
        r,
        "* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\nk OK LIST completed\r\n"
    );
}

#[tokio::test]
async fn special_use_selection_and_create_use() {
    let env = env().await;
    let (mut c, _t, _s) = session(&env).await;
    let r = c
        .cmd("a", "LIST (SPECIAL-USE) \"\" * RETURN (SPECIAL-USE)")
        .await;
    assert_eq!(
        r,
        DEFAULT_LIST
            .split_inclusive("\r\n")
            .skip(1)
            .collect::<String>()
            + "a OK LIST completed\r\n"
    );
    // RFC 6154 §3: CREATE with USE.
    let r = c.cmd("b", "CREATE Outbox (USE (\\Sent))").await;
    assert_eq!(r, "b OK CREATE completed\r\n");
    let r = c.cmd("c", "LIST \"\" Outbox").await;
    assert_eq!(
        r,
        "* LIST (\\HasNoChildren \\Sent) \"/\" Outbox\r\nc OK LIST completed\r\n"
    );
    let r = c.cmd("d", "CREATE Everything (USE (\\All))").await;
    assert_eq!(r, "d NO [USEATTR] special use not supported\r\n");
    let r = c.cmd("e", "CREATE Two (USE (\\Sent \\Trash))").await;
    assert_eq!(r, "e NO [USEATTR] special use not supported\r\n");
    let r = c.cmd("f", "LIST \"\" (Everything Two)").await;
    assert_eq!(r, "f OK LIST completed\r\n");
    let r = c.cmd("g", "CREATE Plain (USE ())").await;
    assert_eq!(r, "g OK CREATE completed\r\n");
    let r = c.cmd("h", "LIST \"\" Plain/").await;
    assert_eq!(r, "h OK LIST completed\r\n");
}

#[tokio::test]
async fn list_status() {
    let env = env().await;
    env.deliver(MSG1).await;
    env.deliver(MSG2).await;
    let (mut c, _t, _s) = session(&env).await;
    // RFC 5819 §2: a STATUS line after each selectable mailbox's LIST line.
    let r = c
        .cmd(
            "a",
            "LIST \"\" (INBOX Sent) RETURN (STATUS (MESSAGES UNSEEN))",
        )
        .await;
    assert_eq!(
        r,
        "* LIST (\\HasNoChildren) \"/\" INBOX\r\n\
         * STATUS INBOX (MESSAGES 2 UNSEEN 2)\r\n\
         * LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n\
         * STATUS Sent (MESSAGES 0 UNSEEN 0)\r\n\
         a OK LIST completed\r\n"
    );
    // Not for a name listed only for CHILDINFO.
    assert_eq!(
        c.cmd("b", "CREATE Work/A").await,
        "b OK CREATE completed\r\n"
    );
    assert!(c.cmd("b1", "SUBSCRIBE Work/A").await.contains("b1 OK"));
    assert_eq!(
        c.cmd("c", "UNSUBSCRIBE Work").await,
        "c OK UNSUBSCRIBE completed\r\n"
    );
    let r = c
        .cmd(
            "d",
            "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" Work RETURN (STATUS (MESSAGES))",
        )
        .await;
    assert_eq!(
        r,
        "* LIST (\\HasChildren) \"/\" Work (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n\
         d OK LIST completed\r\n"
    );
}

#[tokio::test]
async fn rev2_list_attributes() {
    let env = env().await;
    let (mut c, _t, _s) = session(&env).await;
    let r = c.cmd("a", "ENABLE IMAP4rev2").await;
    assert_eq!(r, "* ENABLED IMAP4rev2\r\na OK ENABLE completed\r\n");
    assert_eq!(
        c.cmd("b", "CREATE Work/A").await,
        "b OK CREATE completed\r\n"
    );
    // RFC 9051 §6.3.9: \HasChildren / \HasNoChildren on every response; \Subscribed
    // only when asked for.
    let r = c.cmd("c", "LIST \"\" %").await;
    assert!(r.contains("* LIST (\\HasChildren) \"/\" Work\r\n"), "{r}");
    assert!(
        r.contains("* LIST (\\HasNoChildren) \"/\" INBOX\r\n"),
        "{r}"
    );
    assert!(!r.contains("\\Subscribed"), "{r}");
    let r = c.cmd("d", "LIST \"\" \"\"").await;
    assert_eq!(
        r,
        "* LIST (\\Noselect) \"/\" \"\"\r\nd OK LIST completed\r\n"
    );
}

#[tokio::test]
async fn lsub_for_rev1() {
    let env = env().await;
    let (mut c, _t, _s) = session(&env).await;
    assert_eq!(
        c.cmd("a", "CREATE Work/A").await,
        "a OK CREATE completed\r\n"
    );
    assert!(c.cmd("a1", "SUBSCRIBE Work/A").await.contains("a1 OK"));
    assert_eq!(
        c.cmd("b", "UNSUBSCRIBE Work").await,
        "b OK UNSUBSCRIBE completed\r\n"
    );
    assert_eq!(
        c.cmd("c", "UNSUBSCRIBE Junk").await,
        "c OK UNSUBSCRIBE completed\r\n"
    );
    let r = c.cmd("d", "LSUB \"\" *").await;
    assert_eq!(
        r,
        "* LSUB () \"/\" INBOX\r\n\
         * LSUB () \"/\" Archive\r\n\
         * LSUB () \"/\" Drafts\r\n\
         * LSUB () \"/\" Sent\r\n\
         * LSUB () \"/\" Trash\r\n\
         * LSUB () \"/\" Work/A\r\n\
         d OK LSUB completed\r\n"
    );
    // RFC 3501 §6.3.9: `%` returns the unsubscribed parent, flagged \Noselect.
    let r = c.cmd("e", "LSUB \"\" W%").await;
    assert_eq!(
        r,
        "* LSUB (\\Noselect) \"/\" Work\r\ne OK LSUB completed\r\n"
    );
    let r = c.cmd("f", "LSUB Work/ %").await;
    assert_eq!(r, "* LSUB () \"/\" Work/A\r\nf OK LSUB completed\r\n");
    let r = c.cmd("g", "LSUB \"\" Junk").await;
    assert_eq!(r, "g OK LSUB completed\r\n");
}

#[tokio::test]
async fn modified_utf7_names_for_rev1() {
    let env = env().await;
    let (mut c, _t, _s) = session(&env).await;
    // RFC 3501 §5.1.3: a rev1 client names 日本語 in modified UTF-7.
    let r = c.cmd("a", "CREATE &ZeVnLIqe-").await;
    assert_eq!(r, "a OK CREATE completed\r\n");
    let r = c.cmd("a1", "SUBSCRIBE &ZeVnLIqe-").await;
    assert_eq!(r, "a1 OK SUBSCRIBE completed\r\n");
    let r = c.cmd("b", "LIST \"\" &ZeVnLIqe-*").await;
    assert_eq!(
        r,
        "* LIST (\\HasNoChildren) \"/\" &ZeVnLIqe-\r\nb OK LIST completed\r\n"
    );
    let r = c.cmd("c", "STATUS &ZeVnLIqe- (MESSAGES)").await;
    assert_eq!(
        r,
        "* STATUS &ZeVnLIqe- (MESSAGES 0)\r\nc OK STATUS completed\r\n"
    );
    let r = c.cmd("d", "LSUB \"\" &ZeVnLIqe-").await;
    assert_eq!(r, "* LSUB () \"/\" &ZeVnLIqe-\r\nd OK LSUB completed\r\n");
    let r = c.cmd("e", "SELECT &ZeVnLIqe-").await;
    assert!(r.ends_with("e OK [READ-WRITE] SELECT completed\r\n"), "{r}");
    // Invalid modified UTF-7 names nothing (as Dovecot answers): CREATE and SELECT
    // get NO, LIST matches nothing.
    let r = c.cmd("f", "CREATE &Jjo").await;
    assert!(r.starts_with("f NO [CANNOT]"), "{r}");
    let r = c.cmd("g", "CREATE \"Tom & Jerry\"").await;
    assert!(r.starts_with("g NO [CANNOT]"), "{r}");
    let r = c.cmd("g1", "SELECT \"Tom & Jerry\"").await;
    assert!(r.starts_with("g1 NO [NONEXISTENT]"), "{r}");
    let r = c.cmd("g2", "LIST \"\" \"Tom & Jerry*\"").await;
    assert_eq!(r, "g2 OK LIST completed\r\n");
    let r = c.cmd("g3", "SUBSCRIBE &Jjo").await;
    assert!(r.starts_with("g3 NO [CANNOT]"), "{r}");
    let r = c.cmd("h", "CREATE \"Tom &- Jerry\"").await;
    assert_eq!(r, "h OK CREATE completed\r\n");
    let r = c.cmd("i", "LIST \"\" Tom*").await;
    assert_eq!(
        r,
        "* LIST (\\HasNoChildren) \"/\" \"Tom &- Jerry\"\r\ni OK LIST completed\r\n"
    );
}

#[tokio::test]
async fn utf8_names_after_enable() {
    let env = env().await;
    let (mut c, _t, _s) = session(&env).await;
    assert_eq!(
        c.cmd("a", "CREATE &ZeVnLIqe-").await,
        "a OK CREATE completed\r\n"
    );
    // RFC 6855 §3: after ENABLE UTF8=ACCEPT names are UTF-8 both ways.
    let r = c.cmd("b", "ENABLE UTF8=ACCEPT").await;
    assert_eq!(r, "* ENABLED UTF8=ACCEPT\r\nb OK ENABLE completed\r\n");
    let r = c.cmd("c", "LIST \"\" \"日*\"").await;
    assert_eq!(
        r,
        "* LIST (\\HasNoChildren) \"/\" \"日本語\"\r\nc OK LIST completed\r\n"
    );
    // `&` is an ordinary character now.
    let r = c.cmd("d", "CREATE \"Tom & Jerry\"").await;
    assert_eq!(r, "d OK CREATE completed\r\n");
    let r = c.cmd("e", "STATUS \"Tom & Jerry\" (MESSAGES)").await;
    assert_eq!(
        r,
        "* STATUS \"Tom & Jerry\" (MESSAGES 0)\r\ne OK STATUS completed\r\n"
    );
    let r = c.cmd("f", "LIST \"\" &ZeVnLIqe-").await;
    assert_eq!(r, "f OK LIST completed\r\n");

    // A rev1 session sees both names in modified UTF-7.
    let (mut c2, _t2, server) = session(&env).await;
    let r = c2.cmd("g", "LIST \"\" (&ZeVnLIqe- Tom*)").await;
    assert_eq!(
        r,
        "* LIST (\\HasNoChildren) \"/\" \"Tom &- Jerry\"\r\n\
         * LIST (\\HasNoChildren) \"/\" &ZeVnLIqe-\r\n\
         g OK LIST completed\r\n"
    );

    // IMAP4rev2 implies UTF-8 names, also in SELECT's LIST response.
    let (mut c3, _t3) = connect(&server, LOOPBACK);
    c3.login().await;
    let r = c3.cmd("h", "ENABLE IMAP4rev2").await;
    assert_eq!(r, "* ENABLED IMAP4rev2\r\nh OK ENABLE completed\r\n");
    let r = c3.cmd("i", "SELECT \"日本語\"").await;
    assert!(r.contains("* LIST () \"/\" \"日本語\"\r\n"), "{r}");
    let r = c3.cmd("j", "SELECT \"Tom & Jerry\"").await;
    assert!(r.contains("* LIST () \"/\" \"Tom & Jerry\"\r\n"), "{r}");
}

#[tokio::test]
async fn pathological_patterns_answer_quickly() {
    let env = env().await;
    let (mut c, _t, _s) = session(&env).await;
    let long = "a".repeat(200);
    for i in 0..20 {
        let r = c.cmd("c", &format!("CREATE {long}/{long}{i}")).await;
        assert_eq!(r, "c OK CREATE completed\r\n");
    }
    // A backtracking matcher takes exponential time on these.
    let started = std::time::Instant::now();
    let pattern = "%a".repeat(150) + "%b";
    let r = c.cmd("d", &format!("LIST \"\" \"{pattern}\"")).await;
    assert_eq!(r, "d OK LIST completed\r\n");
    let pattern = "*%".repeat(3000) + "*z";
    let r = c
        .cmd("e", &format!("LIST \"\" ({pattern} {pattern}a)"))
        .await;
    assert_eq!(r, "e OK LIST completed\r\n");
    let pattern = "*a".repeat(300) + "9";
    let r = c.cmd("f", &format!("LIST \"\" \"{pattern}\"")).await;
    assert_eq!(
        r,
        format!("* LIST (\\HasNoChildren) \"/\" {long}/{long}9\r\nf OK LIST completed\r\n")
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}
