//! SEARCH and UID SEARCH traces (RFC 9051 §6.4.4, RFC 3501 §6.4.4, RFC 4731 ESEARCH,
//! RFC 5182 SEARCHRES, RFC 7162 §3.1.5 MODSEQ) over an in-memory duplex against a real
//! store (SQLite, or PostgreSQL with the feature `test-postgres`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use buudien_imap::{ImapConfig, ImapServer};
use buudien_imap_proto::Date;
use buudien_store::MailStore;
use common::*;
use std::time::{Duration, SystemTime};
use tokio::task::JoinHandle;

/// `y-m-d h:00:00 UTC`.
fn at(y: u16, m: u8, d: u8, h: u64) -> SystemTime {
    let days = Date::new(y, m, d).unwrap().days_since_epoch();
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(days).unwrap() * 86_400 + h * 3600)
}

impl Env {
    async fn deliver_at(&self, msg: &[u8], received: SystemTime) {
        self.store
            .deliver(&[self.account], msg, received)
            .await
            .unwrap();
    }
}

/// A client over loopback that waits up to 20 s a line (searches read many messages).
fn open(server: &ImapServer<common::TestStore>) -> (Client, JoinHandle<()>) {
    let (mut c, task) = connect(server, LOOPBACK);
    c.wait = Duration::from_secs(20);
    (c, task)
}

/// A default server and a client on it with INBOX selected.
async fn selected(env: &Env) -> (Client, JoinHandle<()>, ImapServer<common::TestStore>) {
    let server = env.server(ImapConfig::default());
    let (mut c, task) = open(&server);
    c.login_select().await;
    (c, task, server)
}

impl Client {
    /// Sends `tag before{n+}CRLF<literal><after>CRLF` (a non-synchronising literal).
    async fn with_literal(
        &mut self,
        tag: &str,
        before: &str,
        literal: &str,
        after: &str,
    ) -> String {
        let n = literal.len();
        self.send(&format!("{tag} {before}{{{n}+}}\r\n{literal}{after}\r\n"))
            .await;
        self.until(tag).await
    }

    /// Runs rev1 SEARCHes in order and checks each whole answer.
    async fn searches(&mut self, cases: &[(&str, &str, &str)]) {
        for (tag, command, expect) in cases {
            self.search(tag, command, expect).await;
        }
    }

    async fn login_select(&mut self) {
        self.login().await;
        let r = self.cmd("s", "SELECT INBOX").await;
        assert!(r.contains("s OK [READ-WRITE]"), "{r}");
    }

    /// Runs a rev1 SEARCH and checks the whole answer.
    async fn search(&mut self, tag: &str, command: &str, expect: &str) {
        let r = self.cmd(tag, command).await;
        let name = if command.starts_with("UID ") {
            "UID SEARCH"
        } else {
            "SEARCH"
        };
        assert_eq!(
            r,
            format!("{expect}\r\n{tag} OK {name} completed\r\n"),
            "{command}"
        );
    }
}

/// Five small messages of growing size.
async fn five(env: &Env) {
    for i in 1..=5u64 {
        let msg = format!(
            "Subject: m{i}\r\n\r\n{}\r\n",
            "x".repeat(usize::try_from(i * 10).unwrap())
        );
        env.deliver_at(msg.as_bytes(), at(2021, 1, 1, i)).await;
    }
}

/// The size of message `i` of [`five`].
fn size_of(i: usize) -> usize {
    format!("Subject: m{i}\r\n\r\n").len() + i * 10 + 2
}

#[tokio::test]
async fn flags_keywords_sizes_and_sets() {
    let env = env().await;
    five(&env).await;
    let (mut c, _t, server) = selected(&env).await;
    for (tag, cmd) in [
        ("a", "STORE 1 +FLAGS.SILENT (\\Seen)"),
        ("b", "STORE 2 +FLAGS.SILENT (\\Answered \\Flagged)"),
        ("c", "STORE 3 +FLAGS.SILENT (\\Deleted $Work)"),
        ("d", "STORE 4 +FLAGS.SILENT (\\Draft \\Seen)"),
    ] {
        let r = c.cmd(tag, cmd).await;
        // A new keyword is announced first (RFC 9051 §7.3.5).
        assert!(r.ends_with(&format!("{tag} OK STORE completed\r\n")), "{r}");
    }
    c.searches(&[
        ("e1", "SEARCH ALL", "* SEARCH 1 2 3 4 5"),
        ("e2", "SEARCH SEEN", "* SEARCH 1 4"),
        ("e3", "SEARCH UNSEEN", "* SEARCH 2 3 5"),
        ("e4", "SEARCH ANSWERED", "* SEARCH 2"),
        ("e5", "SEARCH UNANSWERED", "* SEARCH 1 3 4 5"),
        ("e6", "SEARCH FLAGGED", "* SEARCH 2"),
        ("e7", "SEARCH UNFLAGGED", "* SEARCH 1 3 4 5"),
        ("e8", "SEARCH DELETED", "* SEARCH 3"),
        ("e9", "SEARCH UNDELETED", "* SEARCH 1 2 4 5"),
        ("e10", "SEARCH DRAFT", "* SEARCH 4"),
        ("e11", "SEARCH UNDRAFT", "* SEARCH 1 2 3 5"),
        ("e12", "SEARCH KEYWORD $Work", "* SEARCH 3"),
        ("e13", "SEARCH UNKEYWORD $Work", "* SEARCH 1 2 4 5"),
        ("e14", "SEARCH KEYWORD $Nope", "* SEARCH"),
        // rev1: the first session to select sees every message as \Recent.
        ("e15", "SEARCH RECENT", "* SEARCH 1 2 3 4 5"),
        ("e16", "SEARCH NEW", "* SEARCH 2 3 5"),
        ("e17", "SEARCH OLD", "* SEARCH"),
    ])
    .await;
    // Sizes are strict comparisons (RFC 9051 §6.4.4).
    let s3 = size_of(3);
    c.searches(&[
        ("f1", format!("SEARCH LARGER {s3}").as_str(), "* SEARCH 4 5"),
        (
            "f2",
            format!("SEARCH SMALLER {s3}").as_str(),
            "* SEARCH 1 2",
        ),
        (
            "f3",
            format!("SEARCH LARGER {} SMALLER {}", s3 - 1, s3 + 1).as_str(),
            "* SEARCH 3",
        ),
        // Sequence sets and UID sets.
        ("g1", "SEARCH 2:3", "* SEARCH 2 3"),
        ("g2", "SEARCH 4:*", "* SEARCH 4 5"),
        ("g3", "SEARCH *", "* SEARCH 5"),
        ("g4", "UID SEARCH 1,5", "* SEARCH 1 5"),
        ("g5", "SEARCH UID 2:4 UNSEEN", "* SEARCH 2 3"),
        ("g6", "SEARCH 9:10", "* SEARCH"),
        // Logic: OR, NOT, parentheses, nesting.
        ("h1", "SEARCH OR SEEN FLAGGED", "* SEARCH 1 2 4"),
        ("h2", "SEARCH NOT SEEN", "* SEARCH 2 3 5"),
        (
            "h3",
            "SEARCH (OR SEEN ANSWERED) NOT FLAGGED",
            "* SEARCH 1 4",
        ),
        ("h4", "SEARCH NOT (SEEN DRAFT)", "* SEARCH 1 2 3 5"),
        (
            "h5",
            "SEARCH OR (DELETED KEYWORD $Work) OR DRAFT (NOT OR SEEN 1:4)",
            "* SEARCH 3 4 5",
        ),
        ("h6", "SEARCH NOT NOT 2", "* SEARCH 2"),
    ])
    .await;

    // Expunge message 3: sequence numbers shift, UIDs do not.
    let r = c.cmd("x", "EXPUNGE").await;
    assert!(r.contains("* 3 EXPUNGE\r\n"), "{r}");
    c.searches(&[
        ("i1", "SEARCH 3", "* SEARCH 3"),
        ("i2", "UID SEARCH 3", "* SEARCH 4"),
        ("i3", "UID SEARCH UID 3", "* SEARCH"),
        ("i4", "SEARCH UID 4:*", "* SEARCH 3 4"),
        ("i5", "UID SEARCH UNSEEN", "* SEARCH 2 5"),
    ])
    .await;

    // A second session: nothing is \Recent for it any more.
    let (mut d, _t2) = open(&server);
    d.login_select().await;
    d.searches(&[
        ("j1", "SEARCH RECENT", "* SEARCH"),
        ("j2", "SEARCH OLD", "* SEARCH 1 2 3 4"),
        ("j3", "SEARCH NEW", "* SEARCH"),
    ])
    .await;
}

#[tokio::test]
async fn not_selected_and_bad_syntax() {
    let env = env().await;
    let server = env.server(ImapConfig::default());
    let (mut c, _t) = open(&server);
    let _ = c.line().await;
    let r = c.cmd("l", &format!("LOGIN {USER} \"{PASSWORD}\"")).await;
    assert!(r.starts_with("l OK "), "{r}");
    let r = c.cmd("a", "SEARCH ALL").await;
    assert!(r.starts_with("a BAD"), "{r}");
    let r = c.cmd("s", "SELECT INBOX").await;
    assert!(r.contains("s OK"), "{r}");
    let r = c.cmd("b", "SEARCH FROBNICATE").await;
    assert!(r.starts_with("b BAD"), "{r}");
    // An empty mailbox: nothing matches, `*` means nothing.
    c.searches(&[
        ("c", "SEARCH ALL", "* SEARCH"),
        ("d", "SEARCH 1:*", "* SEARCH"),
        ("e", "UID SEARCH UID *", "* SEARCH"),
    ])
    .await;
}

const M1: &str = "From: Alice Example <alice@example.org>\r\n\
To: bob@example.org\r\n\
Cc: carol@example.net\r\n\
Subject: Quarterly report\r\n\
Date: Mon, 1 Feb 2021 10:00:00 +0000\r\n\
X-Priority: 1\r\n\
\r\n\
The numbers are in. Profit is up.\r\n";

const M2: &str = "From: bob@example.org\r\n\
To: alice@example.org\r\n\
Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\r\n\
Date: Wed, 3 Mar 2021 23:30:00 -0800\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
VGhlIHNlY3JldCB0cmVhc3VyZSBpcyBidXJpZWQgdW5kZXIgdGhlIG9sZCBvYWsuDQo=\r\n";

const M3: &str = "From: Dave <dave@example.com>\r\n\
To: alice@example.org\r\n\
Subject: drinks\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
One caf=C3=A9 au lait, s'il vous pla=C3=AEt, and a soft=\r\n\
\x20line break.\r\n";

const M4_HEAD: &str = "From: eve@example.net\r\n\
To: alice@example.org\r\n\
Bcc: mallory@example.net\r\n\
Subject: voyage\r\n\
Date: Fri, 5 Mar 2021 08:00:00 +0100\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n";

const M5: &str = "From: frank@example.com\r\n\
To: alice@example.org\r\n\
Subject: multipart\r\n\
Date: Thu, 1 Apr 2021 09:00:00 +0000\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\
\r\n\
--XX\r\n\
Content-Type: text/plain\r\n\
\r\n\
hello world\r\n\
--XX\r\n\
Content-Type: text/html\r\n\
\r\n\
<p>Hello <b>HTML</b></p>\r\n\
--XX--\r\n";

/// M1..M5 received 1 Feb, 4 Mar 07:00, 4 Mar 23:00, 5 Mar 00:00 and 1 Apr 2021 UTC.
async fn rich() -> Env {
    let env = env().await;
    env.deliver_at(M1.as_bytes(), at(2021, 2, 1, 12)).await;
    env.deliver_at(M2.as_bytes(), at(2021, 3, 4, 7)).await;
    env.deliver_at(M3.as_bytes(), at(2021, 3, 4, 23)).await;
    let mut m4 = M4_HEAD.as_bytes().to_vec();
    // Latin-1: "Très bien, à bientôt."
    m4.extend_from_slice(b"Tr\xe8s bien, \xe0 bient\xf4t.\r\n");
    env.deliver_at(&m4, at(2021, 3, 5, 0)).await;
    env.deliver_at(M5.as_bytes(), at(2021, 4, 1, 0)).await;
    env
}

#[tokio::test]
async fn internal_and_sent_dates() {
    let env = rich().await;
    let (mut c, _t, _s) = selected(&env).await;
    // INTERNALDATE, in the zone FETCH shows it in (+0000).
    c.searches(&[
        ("a1", "SEARCH ON 4-Mar-2021", "* SEARCH 2 3"),
        ("a2", "SEARCH BEFORE 5-Mar-2021", "* SEARCH 1 2 3"),
        ("a3", "SEARCH SINCE 5-Mar-2021", "* SEARCH 4 5"),
        (
            "a4",
            "SEARCH SINCE 1-Feb-2021 BEFORE 2-Feb-2021",
            "* SEARCH 1",
        ),
        ("a5", "SEARCH on 1-apr-2021", "* SEARCH 5"),
        // Date: header as written, disregarding time and zone: M2 was sent on 3 Mar
        // -0800 (4 Mar in UTC); M3 has no Date: and never matches.
        ("b1", "SEARCH SENTON 3-Mar-2021", "* SEARCH 2"),
        ("b2", "SEARCH SENTON 4-Mar-2021", "* SEARCH"),
        ("b3", "SEARCH SENTBEFORE 4-Mar-2021", "* SEARCH 1 2"),
        ("b4", "SEARCH SENTSINCE 4-Mar-2021", "* SEARCH 4 5"),
        ("b5", "SEARCH NOT SENTON 3-Mar-2021", "* SEARCH 1 3 4 5"),
        (
            "b6",
            "SEARCH SENTSINCE 1-Jan-2021 SINCE 4-Mar-2021",
            "* SEARCH 2 4 5",
        ),
    ])
    .await;
}

#[tokio::test]
async fn header_keys() {
    let env = rich().await;
    let (mut c, _t, _s) = selected(&env).await;
    c.searches(&[
        ("a1", "SEARCH FROM alice", "* SEARCH 1"),
        ("a2", "SEARCH FROM \"alice EXAMPLE\"", "* SEARCH 1"),
        ("a3", "SEARCH TO alice", "* SEARCH 2 3 4 5"),
        ("a4", "SEARCH TO bob", "* SEARCH 1"),
        ("a5", "SEARCH CC carol", "* SEARCH 1"),
        ("a6", "SEARCH BCC mallory", "* SEARCH 4"),
        ("a7", "SEARCH SUBJECT REPORT", "* SEARCH 1"),
        ("a8", "SEARCH FROM example.com", "* SEARCH 3 5"),
        // HEADER with an empty string: every message that has the field.
        ("b1", "SEARCH HEADER X-Priority \"\"", "* SEARCH 1"),
        ("b2", "SEARCH HEADER x-priority 1", "* SEARCH 1"),
        ("b3", "SEARCH HEADER X-Missing \"\"", "* SEARCH"),
        ("b4", "SEARCH HEADER Content-Type multipart", "* SEARCH 5"),
        ("b5", "SEARCH HEADER Date \"\"", "* SEARCH 1 2 4 5"),
    ])
    .await;
    // An RFC 2047 encoded-word subject, matched decoded, with an 8-bit UTF-8
    // literal and Unicode case folding.
    let r = c
        .with_literal("c1", "SEARCH CHARSET UTF-8 SUBJECT ", "GRÜSSE aus köln", "")
        .await;
    assert_eq!(r, "* SEARCH 2\r\nc1 OK SEARCH completed\r\n");
    c.searches(&[
        ("c2", "SEARCH SUBJECT R3LDvMOfZSBhdXMgS8O2bG4", "* SEARCH"),
        // Header keys combine with cheap keys and with each other.
        ("d1", "SEARCH OR FROM alice BCC mallory", "* SEARCH 1 4"),
        ("d2", "SEARCH NOT TO alice 2:5", "* SEARCH"),
        ("d3", "UID SEARCH TO alice NOT FROM eve", "* SEARCH 2 3 5"),
    ])
    .await;
}

#[tokio::test]
async fn body_and_text() {
    let env = rich().await;
    let (mut c, _t, _s) = selected(&env).await;
    // TEXT covers the header, BODY does not.
    c.searches(&[
        ("a1", "SEARCH TEXT quarterly", "* SEARCH 1"),
        ("a2", "SEARCH BODY quarterly", "* SEARCH"),
        ("a3", "SEARCH BODY PROFIT", "* SEARCH 1"),
        ("a4", "SEARCH TEXT eve@example", "* SEARCH 4"),
        // base64 and quoted-printable bodies are decoded; the encoded form is not matched.
        ("b1", "SEARCH BODY \"secret treasure\"", "* SEARCH 2"),
        ("b2", "SEARCH BODY VGhlIHNlY3JldC", "* SEARCH"),
        ("b3", "SEARCH BODY \"soft line break\"", "* SEARCH 3"),
    ])
    .await;
    let r = c
        .with_literal("b4", "SEARCH CHARSET UTF-8 BODY ", "café au lait", "")
        .await;
    assert_eq!(r, "* SEARCH 3\r\nb4 OK SEARCH completed\r\n");
    c.search("b5", "SEARCH BODY C3=A9", "* SEARCH").await;
    // A Latin-1 body, found with a UTF-8 string (upper case, without CHARSET).
    let r = c.with_literal("c1", "SEARCH BODY ", "TRÈS BIEN", "").await;
    assert_eq!(r, "* SEARCH 4\r\nc1 OK SEARCH completed\r\n");
    let r = c
        .with_literal("c2", "UID SEARCH CHARSET UTF-8 TEXT ", "bientôt", " UNSEEN")
        .await;
    assert_eq!(r, "* SEARCH 4\r\nc2 OK UID SEARCH completed\r\n");
    // Each text part of a multipart.
    c.searches(&[
        ("d1", "SEARCH BODY \"hello world\"", "* SEARCH 5"),
        ("d2", "SEARCH BODY html", "* SEARCH 5"),
        // CHARSET: UTF-8 and US-ASCII are accepted, others refused.
        ("e1", "SEARCH CHARSET US-ASCII BODY profit", "* SEARCH 1"),
    ])
    .await;
    let r = c.cmd("e2", "SEARCH CHARSET ISO-8859-1 BODY profit").await;
    assert!(r.starts_with("e2 NO [BADCHARSET (UTF-8"), "{r}");
    assert_eq!(r.lines().count(), 1, "{r}");
    // Short-circuit: a cheap key that is false skips the body.
    c.searches(&[
        ("f1", "SEARCH 1 OR BODY treasure BODY profit", "* SEARCH 1"),
        ("f2", "SEARCH NOT BODY E", "* SEARCH"),
        ("f3", "SEARCH BODY \"\"", "* SEARCH 1 2 3 4 5"),
    ])
    .await;
}

#[tokio::test]
async fn esearch_forms() {
    let env = env().await;
    five(&env).await;
    let (mut c, _t, _s) = selected(&env).await;
    let r = c.cmd("z", "STORE 1,3 +FLAGS.SILENT (\\Seen)").await;
    assert!(r.starts_with("z OK"), "{r}");
    // rev1 with RETURN: ESEARCH (RFC 4731).
    c.searches(&[
        (
            "a",
            "SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN",
            "* ESEARCH (TAG \"a\") MIN 2 MAX 5 ALL 2,4:5 COUNT 3",
        ),
        (
            "b",
            "UID SEARCH RETURN (COUNT) SEEN",
            "* ESEARCH (TAG \"b\") UID COUNT 2",
        ),
        (
            "c",
            "SEARCH RETURN (MIN MAX ALL COUNT) KEYWORD nope",
            "* ESEARCH (TAG \"c\") COUNT 0",
        ),
        ("d", "SEARCH RETURN () ALL", "* ESEARCH (TAG \"d\") ALL 1:5"),
        (
            "e",
            "SEARCH RETURN (MIN) KEYWORD nope",
            "* ESEARCH (TAG \"e\")",
        ),
        (
            "f",
            "UID SEARCH RETURN (MAX) 1:4",
            "* ESEARCH (TAG \"f\") UID MAX 4",
        ),
    ])
    .await;
    // rev2: every SEARCH answers ESEARCH, ALL by default.
    let r = c.cmd("g", "ENABLE IMAP4rev2").await;
    assert!(r.contains("* ENABLED IMAP4rev2"), "{r}");
    c.searches(&[
        ("h", "SEARCH UNSEEN", "* ESEARCH (TAG \"h\") ALL 2,4:5"),
        (
            "i",
            "UID SEARCH 1,3:4",
            "* ESEARCH (TAG \"i\") UID ALL 1,3:4",
        ),
        ("j", "SEARCH KEYWORD nope", "* ESEARCH (TAG \"j\")"),
        (
            "k",
            "SEARCH RETURN (COUNT MIN) SEEN",
            "* ESEARCH (TAG \"k\") MIN 1 COUNT 2",
        ),
    ])
    .await;
}

#[tokio::test]
async fn save_and_dollar() {
    let env = env().await;
    five(&env).await;
    let (mut c, _t, _s) = selected(&env).await;
    let r = c.cmd("z", "STORE 1,3 +FLAGS.SILENT (\\Seen)").await;
    assert!(r.starts_with("z OK"), "{r}");
    // `$` before any SAVE is empty.
    c.search("a0", "SEARCH $", "* SEARCH").await;
    // SAVE alone: no ESEARCH response (RFC 5182 §2.1).
    let r = c.cmd("a", "SEARCH RETURN (SAVE) UNSEEN").await;
    assert_eq!(r, "a OK SEARCH completed\r\n");
    let r = c.cmd("b", "FETCH $ (UID)").await;
    assert_eq!(
        r,
        "* 2 FETCH (UID 2)\r\n* 4 FETCH (UID 4)\r\n* 5 FETCH (UID 5)\r\nb OK FETCH completed\r\n"
    );
    c.searches(&[
        ("c1", "UID SEARCH $", "* SEARCH 2 4 5"),
        ("c2", "SEARCH NOT $", "* SEARCH 1 3"),
        ("c3", "UID SEARCH UID $ 1:4", "* SEARCH 2 4"),
        // SAVE with MIN and/or MAX only saves those (RFC 5182 §2.4).
        (
            "d1",
            "SEARCH RETURN (SAVE MIN) UNSEEN",
            "* ESEARCH (TAG \"d1\") MIN 2",
        ),
        ("d2", "UID SEARCH $", "* SEARCH 2"),
        (
            "d3",
            "SEARCH RETURN (MAX SAVE MIN) UNSEEN",
            "* ESEARCH (TAG \"d3\") MIN 2 MAX 5",
        ),
        ("d4", "UID SEARCH $", "* SEARCH 2 5"),
        (
            "d5",
            "SEARCH RETURN (MAX SAVE MIN COUNT) UNSEEN",
            "* ESEARCH (TAG \"d5\") MIN 2 MAX 5 COUNT 3",
        ),
        ("d6", "UID SEARCH $", "* SEARCH 2 4 5"),
    ])
    .await;
    // A SAVE that finds nothing empties `$`.
    let r = c.cmd("e1", "UID SEARCH RETURN (SAVE) KEYWORD nope").await;
    assert_eq!(r, "e1 OK UID SEARCH completed\r\n");
    c.search("e2", "UID SEARCH $", "* SEARCH").await;
    // Expunged messages leave `$`; SAVE can refer to `$` itself.
    let r = c.cmd("f1", "UID SEARCH RETURN (SAVE) 2:4").await;
    assert_eq!(r, "f1 OK UID SEARCH completed\r\n");
    let r = c.cmd("f2", "STORE 3 +FLAGS.SILENT (\\Deleted)").await;
    assert!(r.starts_with("f2 OK"), "{r}");
    let r = c.cmd("f3", "EXPUNGE").await;
    assert!(r.contains("* 3 EXPUNGE"), "{r}");
    c.searches(&[
        ("f4", "UID SEARCH $", "* SEARCH 2 4"),
        ("f5", "SEARCH $", "* SEARCH 2 3"),
    ])
    .await;
    let r = c.cmd("f6", "SEARCH RETURN (SAVE) $ UNSEEN").await;
    assert_eq!(r, "f6 OK SEARCH completed\r\n");
    c.search("f7", "UID SEARCH $", "* SEARCH 2 4").await;
    // COPY and STORE take `$` too.
    let r = c.cmd("g1", "UID STORE $ +FLAGS (\\Flagged)").await;
    assert!(r.contains("* 2 FETCH") && r.contains("* 3 FETCH"), "{r}");
    c.search("g2", "UID SEARCH FLAGGED", "* SEARCH 2 4").await;
}

fn modseqs(fetch: &str) -> Vec<u64> {
    fetch
        .lines()
        .filter_map(|l| l.split("MODSEQ (").nth(1))
        .map(|rest| rest.split(')').next().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn modseq_key() {
    let env = env().await;
    five(&env).await;
    let (mut c, _t, server) = selected(&env).await;
    let r = c.cmd("z", "STORE 2 +FLAGS.SILENT (\\Seen)").await;
    assert!(r.starts_with("z OK"), "{r}");
    let r = c.cmd("y", "STORE 4 +FLAGS.SILENT (\\Flagged)").await;
    assert!(r.starts_with("y OK"), "{r}");
    let m = modseqs(&c.cmd("x", "FETCH 1:* (MODSEQ)").await);
    assert_eq!(m.len(), 5);
    let top = m[3];
    assert!(top > m[1] && m[1] > m[4], "{m:?}");
    // rev1: `* SEARCH ... (MODSEQ highest)`, nothing when empty (RFC 7162 §3.1.5).
    c.searches(&[
        (
            "a",
            format!("SEARCH MODSEQ {}", m[1]).as_str(),
            format!("* SEARCH 2 4 (MODSEQ {top})").as_str(),
        ),
        (
            "b",
            format!("SEARCH MODSEQ {}", top + 1).as_str(),
            "* SEARCH",
        ),
        (
            "c",
            format!(
                "UID SEARCH MODSEQ \"/flags/\\\\seen\" all {} UNFLAGGED",
                m[1]
            )
            .as_str(),
            format!("* SEARCH 2 (MODSEQ {})", m[1]).as_str(),
        ),
        // ESEARCH: the MIN/MAX message's MODSEQ when only those are asked, else the
        // highest (RFC 4731 §3.2).
        (
            "d",
            "SEARCH RETURN (MIN) MODSEQ 1",
            format!("* ESEARCH (TAG \"d\") MIN 1 MODSEQ {}", m[0]).as_str(),
        ),
        (
            "e",
            "SEARCH RETURN (ALL) MODSEQ 1",
            format!("* ESEARCH (TAG \"e\") ALL 1:5 MODSEQ {top}").as_str(),
        ),
        (
            "f",
            format!("SEARCH RETURN (COUNT) MODSEQ {}", top + 1).as_str(),
            "* ESEARCH (TAG \"f\") COUNT 0",
        ),
    ])
    .await;
    // MODSEQ in SEARCH enabled CONDSTORE (RFC 7162 §3.1): ENABLE has nothing to add.
    let r = c.cmd("g", "ENABLE CONDSTORE").await;
    assert_eq!(r, "* ENABLED\r\ng OK ENABLE completed\r\n");
    let (mut d, _t2) = open(&server);
    d.login_select().await;
    let r = d.cmd("g", "ENABLE CONDSTORE").await;
    assert_eq!(r, "* ENABLED CONDSTORE\r\ng OK ENABLE completed\r\n");
}

#[tokio::test]
async fn flag_searches_never_read_blobs() {
    let env = env().await;
    let n = 300u32;
    for i in 1..=n {
        let msg = format!(
            "From: sender{i}@example.net\r\nSubject: number {i}\r\n\
             Date: Mon, 1 Feb 2021 10:00:00 +0000\r\n\r\nbody {i}\r\n"
        );
        env.deliver_at(msg.as_bytes(), at(2021, 2, 1, 12)).await;
    }
    let (mut c, _t, _s) = selected(&env).await;
    let r = c.cmd("a", "STORE 1:100 +FLAGS.SILENT (\\Seen)").await;
    assert!(r.starts_with("a OK"), "{r}");
    // Before: a body search works.
    c.search("b", "SEARCH BODY \"body 150\"", "* SEARCH 150")
        .await;
    // Take every message file away.
    assert_eq!(testing::remove_blob_bytes(&env.store).await, n as usize);
    // Flags, sets and sizes answer from the snapshot alone.
    let unseen: Vec<String> = (101..=n).map(|u| u.to_string()).collect();
    c.searches(&[
        (
            "c",
            "UID SEARCH UNSEEN",
            format!("* SEARCH {}", unseen.join(" ")).as_str(),
        ),
        (
            "d",
            "SEARCH RETURN (COUNT MIN MAX) UNSEEN UNDELETED",
            "* ESEARCH (TAG \"d\") MIN 101 MAX 300 COUNT 200",
        ),
        // A false cheap key spares the body read.
        ("e", "SEARCH SEEN UNSEEN BODY x", "* SEARCH"),
        ("f", "SEARCH 5 OR SEEN BODY x", "* SEARCH 5"),
        // The Date: header comes from the stored metadata, not the message.
        (
            "g",
            "SEARCH RETURN (COUNT) SENTON 1-Feb-2021",
            "* ESEARCH (TAG \"g\") COUNT 300",
        ),
    ])
    .await;
    // A search that does need the messages fails, and a failed SAVE empties `$`.
    let r = c.cmd("h", "UID SEARCH RETURN (SAVE) 1:3").await;
    assert_eq!(r, "h OK UID SEARCH completed\r\n");
    let r = c.cmd("i", "SEARCH RETURN (SAVE) UNSEEN BODY x").await;
    assert!(r.starts_with("i NO "), "{r}");
    c.search("j", "UID SEARCH $", "* SEARCH").await;
}
