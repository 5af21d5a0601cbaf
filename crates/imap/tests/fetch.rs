//! FETCH traces (RFC 9051 §6.4.5, RFC 3516, RFC 7162): structure items from the
//! structure stored at delivery, sections and partials streamed from the blob,
//! BINARY decoding, CHANGEDSINCE/VANISHED, and the ASCII surrogate for sessions
//! without UTF-8.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;

const MULTI: &str = "From: Ann <ann@example.org>\r\n\
To: bob@example.org\r\n\
Subject: =?UTF-8?Q?caf=C3=A9?=\r\n\
Date: Tue, 3 Mar 2026 10:00:00 +0100\r\n\
Message-ID: <m1@example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
preamble\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
hello world\r\n\
--b1\r\n\
Content-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AAECAwQ=\r\n\
--b1--\r\n";

async fn selected(env: &Env) -> Client {
    let (mut c, _task, _s) = session(env).await;
    let r = c.cmd("s", "SELECT INBOX").await;
    assert!(r.contains("s OK"), "{r}");
    c
}

#[tokio::test]
async fn envelope_and_bodystructure_come_from_the_stored_structure() {
    let env = env().await;
    env.deliver(MULTI).await;
    let mut c = selected(&env).await;
    let r = c.cmd("a", "FETCH 1 (ENVELOPE)").await;
    assert!(
        r.starts_with(
            "* 1 FETCH (ENVELOPE (\"Tue, 3 Mar 2026 10:00:00 +0100\" \"=?UTF-8?Q?caf=C3=A9?=\" ((\"Ann\" NIL \"ann\" \"example.org\"))"
        ),
        "{r}"
    );
    assert!(r.contains("\"<m1@example.org>\")"), "{r}");
    let r = c.cmd("b", "FETCH 1 (BODYSTRUCTURE)").await;
    assert!(
        r.starts_with(
            "* 1 FETCH (BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 11 0 NIL NIL NIL NIL)(\"application\" \"octet-stream\" NIL NIL NIL \"base64\" 8 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b1\") NIL NIL NIL))"
        ),
        "{r}"
    );
    let r = c.cmd("c", "FETCH 1 (BODY)").await;
    assert!(r.contains("\"mixed\")"), "BODY has no extension data: {r}");
    assert!(!r.contains("boundary"), "{r}");
    // The structure was stored at delivery: FETCH does not need the blob for it.
    assert!(testing::remove_blob_bytes(&env.store).await > 0);
    let r = c
        .cmd("d", "FETCH 1 (ENVELOPE BODYSTRUCTURE RFC822.SIZE)")
        .await;
    assert!(r.ends_with("d OK FETCH completed\r\n"), "{r}");
    assert!(r.contains(&format!("RFC822.SIZE {}", MULTI.len())), "{r}");
}

#[tokio::test]
async fn sections_partials_and_header_fields() {
    let env = env().await;
    env.deliver(MULTI).await;
    let mut c = selected(&env).await;
    let r = c.cmd("a", "FETCH 1 (BODY.PEEK[1])").await;
    assert_eq!(
        r,
        "* 1 FETCH (BODY[1] {11}\r\nhello world)\r\na OK FETCH completed\r\n"
    );
    let r = c.cmd("b", "FETCH 1 (BODY.PEEK[1]<6.100>)").await;
    assert_eq!(
        r,
        "* 1 FETCH (BODY[1]<6> {5}\r\nworld)\r\nb OK FETCH completed\r\n"
    );
    let r = c.cmd("c", "FETCH 1 (BODY.PEEK[1.MIME])").await;
    assert_eq!(
        r,
        "* 1 FETCH (BODY[1.MIME] {43}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n)\r\nc OK FETCH completed\r\n"
    );
    let r = c
        .cmd("d", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (subject TO)])")
        .await;
    assert_eq!(
        r,
        "* 1 FETCH (BODY[HEADER.FIELDS (subject TO)] {55}\r\nTo: bob@example.org\r\nSubject: =?UTF-8?Q?caf=C3=A9?=\r\n\r\n)\r\nd OK FETCH completed\r\n"
    );
    let r = c
        .cmd(
            "e",
            "FETCH 1 (BODY.PEEK[HEADER.FIELDS.NOT (From To Subject Date Message-ID Content-Type)])",
        )
        .await;
    assert!(r.contains("{21}\r\nMIME-Version: 1.0\r\n\r\n)"), "{r}");
    let r = c.cmd("f", "FETCH 1 (RFC822.HEADER)").await;
    let header_len = MULTI.find("\r\n\r\n").unwrap() + 4;
    assert!(
        r.starts_with(&format!(
            "* 1 FETCH (RFC822.HEADER {{{header_len}}}\r\nFrom: Ann"
        )),
        "{r}"
    );
    let r = c.cmd("g", "FETCH 1 (BODY.PEEK[TEXT]<0.8>)").await;
    assert!(r.contains("BODY[TEXT]<0> {8}\r\npreamble)"), "{r}");
    let r = c.cmd("h", "FETCH 1 (BODY.PEEK[7])").await;
    assert!(
        r.contains("BODY[7] \"\")"),
        "no such part: empty string: {r}"
    );
    let r = c.cmd("i", "FETCH 1 (FLAGS)").await;
    assert!(
        r.contains("FLAGS (\\Recent)"),
        "PEEK left \\Seen alone: {r}"
    );
    // Without PEEK, \Seen is set and reported in the same response.
    let r = c.cmd("j", "FETCH 1 (BODY[1]<0.5>)").await;
    assert!(r.contains("FLAGS (\\Seen \\Recent)"), "{r}");
    assert!(r.contains("BODY[1]<0> {5}\r\nhello)"), "{r}");
}

#[tokio::test]
async fn binary_decodes_and_sizes() {
    let env = env().await;
    env.deliver(MULTI).await;
    env.deliver("Content-Type: text/plain\r\nContent-Transfer-Encoding: x-unknown\r\n\r\nzzz\r\n")
        .await;
    let mut c = selected(&env).await;
    let r = c.cmd("a", "FETCH 1 (BINARY.SIZE[2] BINARY.PEEK[2])").await;
    assert_eq!(
        r,
        "* 1 FETCH (BINARY.SIZE[2] 5 BINARY[2] ~{5}\r\n\x00\x01\x02\x03\x04)\r\na OK FETCH completed\r\n"
    );
    let r = c.cmd("b", "FETCH 1 (BINARY.PEEK[1]<6.5>)").await;
    assert!(r.contains("BINARY[1]<6> \"world\")"), "{r}");
    let r = c.cmd("c", "FETCH 2 (BINARY.PEEK[1])").await;
    assert!(r.starts_with("c NO [UNKNOWN-CTE]"), "{r}");
}

#[tokio::test]
async fn changedsince_and_vanished() {
    let env = env().await;
    for _ in 0..3 {
        env.deliver(MSG2).await;
    }
    let mut c = selected(&env).await;
    let r = c.cmd("a", "ENABLE QRESYNC").await;
    assert!(r.contains("* ENABLED QRESYNC"), "{r}");
    let r = c.cmd("b", "FETCH 1:* (UID MODSEQ)").await;
    let modseq: u64 = r
        .lines()
        .filter_map(|l| l.split("MODSEQ (").nth(1))
        .filter_map(|v| v.trim_end_matches("))").parse().ok())
        .max()
        .unwrap();
    let r = c.cmd("c", "STORE 2 +FLAGS.SILENT (\\Flagged)").await;
    assert!(r.contains("c OK"), "{r}");
    let r = c.cmd("d", "STORE 3 +FLAGS.SILENT (\\Deleted)").await;
    assert!(r.contains("d OK"), "{r}");
    let r = c.cmd("e", "EXPUNGE").await;
    assert!(
        r.starts_with("* VANISHED 3\r\n"),
        "QRESYNC reports VANISHED: {r}"
    );
    let r = c
        .cmd(
            "f",
            &format!("UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)"),
        )
        .await;
    assert!(r.starts_with("* VANISHED (EARLIER) 3\r\n"), "{r}");
    assert!(r.contains("* 2 FETCH (UID 2 MODSEQ ("), "{r}");
    assert!(r.contains("FLAGS (\\Flagged \\Recent)"), "{r}");
    assert!(!r.contains("* 1 FETCH"), "unchanged message left out: {r}");
    let r = c
        .cmd("g", "FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
        .await;
    assert!(r.starts_with("g BAD"), "VANISHED needs UID FETCH: {r}");
}

#[tokio::test]
async fn raw_utf8_headers_reach_rev1_sessions_as_the_ascii_surrogate() {
    let env = env().await;
    let msg = "From: J\u{fc}rgen <j@example.org>\r\nSubject: gr\u{fc}\u{df}e\r\n\r\nbody\r\n";
    env.deliver(msg).await;
    let mut c = selected(&env).await;
    let r = c
        .cmd("a", "FETCH 1 (RFC822.SIZE ENVELOPE BODY.PEEK[HEADER])")
        .await;
    assert!(r.is_ascii(), "rev1 session got raw UTF-8: {r}");
    assert!(r.contains("=?utf-8?") || r.contains("=?UTF-8?"), "{r}");
    let size: usize = r
        .split("RFC822.SIZE ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(size > msg.len(), "the surrogate's size is announced");
    let r = c.cmd("b", "FETCH 1 (BODY.PEEK[])").await;
    assert!(r.contains(&format!("BODY[] {{{size}}}\r\n")), "{r}");
    // A rev2 session gets the message as it is.
    let r = c.cmd("c", "ENABLE IMAP4rev2").await;
    assert!(r.contains("ENABLED IMAP4rev2"), "{r}");
    let r = c.cmd("d", "FETCH 1 (RFC822.SIZE BODY.PEEK[])").await;
    assert!(r.contains(&format!("RFC822.SIZE {}", msg.len())), "{r}");
    assert!(r.contains("gr\u{fc}\u{df}e"), "{r}");
}

/// The blob file of a message delivered as-is (`blobs/xx/yy/<id hex>`).
#[cfg(not(feature = "test-postgres"))]
fn blob_file(env: &Env, msg: &str) -> std::path::PathBuf {
    let hex = buudien_store::BlobId::of(&[msg.as_bytes()]).to_hex();
    env.dir
        .path()
        .join("blobs")
        .join(&hex[..2])
        .join(&hex[2..4])
        .join(hex)
}

#[tokio::test]
async fn a_damaged_message_gets_serverbug_and_the_others_are_served() {
    let env = env().await;
    env.deliver(MSG1).await;
    env.deliver(MSG2).await;
    env.deliver(MULTI).await;
    let cut = testing::truncate_blobs(&env.store, Some(MSG2.as_bytes()), 5).await;
    assert_eq!(cut, 1);
    let mut c = selected(&env).await;
    // RFC 9051 §6.4.5 (NO: can't fetch that data), §7.1 SERVERBUG: the messages that
    // can be read are answered; the damaged one gets no FETCH response.
    let r = c.cmd("a", "FETCH 1:3 (UID BODY.PEEK[])").await;
    let n1 = MSG1.len();
    let n3 = MULTI.len();
    assert_eq!(
        r,
        format!(
            "* 1 FETCH (UID 1 BODY[] {{{n1}}}\r\n{MSG1})\r\n\
             * 3 FETCH (UID 3 BODY[] {{{n3}}}\r\n{MULTI})\r\n\
             a NO [SERVERBUG] a message is damaged in storage; FETCH partly done\r\n"
        )
    );
    // SQLite only: it moves a damaged message file aside (PostgreSQL keeps the rows).
    #[cfg(not(feature = "test-postgres"))]
    assert!(
        !blob_file(&env, MSG2).exists(),
        "the damaged blob was quarantined"
    );
    // Known now: read into memory (HEADER.FIELDS) or streamed, the same answer.
    let r = c
        .cmd("b", "FETCH 2 BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
        .await;
    assert_eq!(
        r,
        "b NO [SERVERBUG] a message is damaged in storage; FETCH partly done\r\n"
    );
    let r = c.cmd("c", "UID FETCH 2 BODY.PEEK[TEXT]").await;
    assert!(r.starts_with("c NO [SERVERBUG]"), "{r}");
    // What needs no blob is still served, and so are the other messages.
    let r = c.cmd("d", "FETCH 2 (UID RFC822.SIZE)").await;
    assert_eq!(
        r,
        format!(
            "* 2 FETCH (UID 2 RFC822.SIZE {})\r\nd OK FETCH completed\r\n",
            MSG2.len()
        )
    );
    let r = c.cmd("e", "FETCH 1 BODY.PEEK[]").await;
    assert!(
        r.ends_with("e OK FETCH completed\r\n") && r.contains(MSG1),
        "{r}"
    );
    // A body search cannot decide it: it fails the same way (as a search of a
    // missing message file always did), and the session goes on.
    let r = c.cmd("f", "SEARCH TEXT \"e\"").await;
    assert_eq!(r, "f NO [SERVERBUG] a message is damaged in storage\r\n");
    let r = c.cmd("g", "SEARCH TEXT \"line 1\" UID 1").await;
    assert!(r.starts_with("* SEARCH 1\r\ng OK"), "{r}");
}

/// A FETCH of header fields over many messages reads their headers ahead in one go
/// (within a budget): the answers are those of each message fetched alone, for
/// small messages, a message in a file, one whose header alone is over the budget,
/// and one a rev1 session gets as its ASCII surrogate.
#[tokio::test]
async fn header_fields_of_a_batch_agree_with_one_message_at_a_time() {
    let env = env().await;
    let big_header = format!(
        "Subject: big\r\nX-Big: {}\r\n\r\nbody\r\n",
        "abcdefgh ".repeat(130_000)
    );
    let in_file = format!("Subject: in a file\r\n\r\n{}\r\n", "y".repeat(300 << 10));
    let msgs = [
        MSG1.to_string(),
        big_header,
        MSG2.to_string(),
        in_file,
        "Subject: gr\u{fc}\u{df}e\r\n\r\nbody\r\n".to_string(),
        MULTI.to_string(),
    ];
    for m in &msgs {
        env.deliver(m).await;
    }
    let mut c = selected(&env).await;
    let items = "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT TO)] BODY.PEEK[HEADER.FIELDS.NOT (X-BIG)])";
    let all = c.cmd("a", &format!("FETCH 1:* {items}")).await;
    assert!(all.ends_with("a OK FETCH completed\r\n"), "{all}");
    let mut alone = String::new();
    for n in 1..=msgs.len() {
        let r = c.cmd("b", &format!("FETCH {n} {items}")).await;
        let (responses, status) = r.split_at(r.find("b OK").unwrap());
        assert_eq!(status, "b OK FETCH completed\r\n");
        alone.push_str(responses);
    }
    assert_eq!(all, format!("{alone}a OK FETCH completed\r\n"));
    assert!(all.contains("Subject: big\r\n\r\n"), "{all}");
    assert!(all.contains("Subject: in a file\r\n"), "{all}");
    assert!(all.is_ascii(), "a rev1 session gets the surrogate");
}
