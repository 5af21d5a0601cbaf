//! SEARCH BODY / TEXT with the store's text index gives the same answers as without
//! it (RFC 9051 §6.4.4: decoded text, case-insensitive). Many searches — substrings of
//! the messages' text in other cases, short keys, non-ASCII, strings spanning line
//! and field boundaries, under AND / OR / NOT with flags — run against messages in
//! base64, quoted-printable, ISO-8859-1, encoded-word headers, multipart and
//! encapsulated forms, once with the index (fully, partly and not yet indexed) and
//! once with it turned off; the whole replies must be the same.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use buudien_imap::ImapConfig;
use buudien_store::MailStore;
use common::*;
use std::time::{Duration, SystemTime};

/// Words the texts are made of: ASCII, Latin-1, and case-folding traps (`ß`/`SS`,
/// final sigma, dotted `İ`, the `ﬁ` ligature, Kelvin sign).
const WORDS: &[&str] = &[
    "the",
    "quick",
    "Brown",
    "FOX",
    "jumps",
    "over",
    "lazy",
    "dog",
    "profit",
    "Ärger",
    "ärger",
    "Straße",
    "STRASSE",
    "strasse",
    "Grüße",
    "café",
    "naïve",
    "TRÈS",
    "bientôt",
    "Øre",
    "ÆBLE",
    "ΣΊΣΥΦΟΣ",
    "σίσυφος",
    "İstanbul",
    "ﬁle",
    "FILE",
    "\u{212A}elvin",
    "kelvin",
    "日本語",
    "🙂",
    "a",
    "x",
    "ab",
    "mail",
    "=?",
    "\"q\"",
    "tab\there",
];

/// Words that ISO-8859-1 can carry.
fn latin1(w: &str) -> bool {
    w.chars().all(|c| u32::from(c) < 0x100)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }

    fn text(&mut self, words: usize, only_latin1: bool) -> String {
        let mut out = String::new();
        while out.split(' ').count() < words {
            let w = WORDS[self.below(WORDS.len())];
            if only_latin1 && !latin1(w) {
                continue;
            }
            if !out.is_empty() {
                out.push(if self.below(8) == 0 { '\n' } else { ' ' });
            }
            out.push_str(w);
        }
        out.replace('\n', "\r\n")
    }
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * k)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn to_latin1(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap())
        .collect()
}

/// Quoted-printable with soft line breaks every 40 octets.
fn qp(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut line = 0;
    for &b in bytes {
        let piece = if (b.is_ascii_graphic() && b != b'=') || b == b' ' {
            char::from(b).to_string()
        } else if b == b'\r' || b == b'\n' {
            line = 0;
            out.push(char::from(b));
            continue;
        } else {
            format!("={b:02X}")
        };
        if line + piece.len() > 40 {
            out.push_str("=\r\n");
            line = 0;
        }
        line += piece.len();
        out.push_str(&piece);
    }
    out
}

/// One message in form `kind` and the texts a search may look for in it.
fn message(rng: &mut Rng, kind: usize) -> (Vec<u8>, Vec<String>) {
    let latin = kind == 3 || kind == 4;
    let subject = rng.text(3, latin);
    let body = rng.text(12, latin);
    let plain_subject = subject.replace("\r\n", " ");
    let texts = vec![plain_subject.clone(), body.clone()];
    let msg: Vec<u8> = match kind {
        0 => format!("Subject: {plain_subject}\r\nFrom: bob@example.org\r\n\r\n{body}\r\n").into(),
        1 => format!(
            "Subject: =?UTF-8?B?{}?=\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            base64(plain_subject.as_bytes()).replace("\r\n", ""),
            base64(body.as_bytes())
        )
        .into(),
        2 => format!(
            "Subject: =?utf-8?q?{}?=\r\nContent-Type: text/plain; charset=UTF-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n{}\r\n",
            qp(plain_subject.as_bytes())
                .replace("=\r\n", "")
                .replace(' ', "_")
                .replace('?', "=3F"),
            qp(body.as_bytes())
        )
        .into(),
        3 => {
            let mut m = format!(
                "Subject: =?ISO-8859-1?Q?{}?=\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
                 Content-Transfer-Encoding: 8bit\r\n\r\n",
                qp(&to_latin1(&plain_subject))
                    .replace("=\r\n", "")
                    .replace(' ', "_")
                    .replace('?', "=3F")
            )
            .into_bytes();
            m.extend(to_latin1(&body));
            m.extend(b"\r\n");
            m
        }
        4 => format!(
            "Subject: {plain_subject}\r\nContent-Type: text/plain; charset=ISO-8859-1\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n{}\r\n",
            qp(&to_latin1(&body))
        )
        .into_bytes(),
        5 => format!(
            "Subject: {plain_subject}\r\nContent-Type: multipart/alternative; boundary=zz\r\n\
             \r\n--zz\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n{}\r\n--zz\r\n\
             Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\
             \r\n{}\r\n--zz\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\
             \r\n{}\r\n--zz--\r\n",
            qp(body.as_bytes()),
            base64(format!("<p>{body}</p>").as_bytes()),
            base64(b"profit hidden in an image")
        )
        .into(),
        _ => format!(
            "Subject: fwd\r\nContent-Type: message/rfc822\r\n\r\nSubject: {plain_subject}\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
        )
        .into(),
    };
    (msg, texts)
}

/// A needle: mostly a substring of a message's text in a changed case, else a word,
/// a short key, or something spanning two words.
fn needle(rng: &mut Rng, texts: &[String]) -> String {
    let pick = rng.below(10);
    if pick < 6 {
        let t = &texts[rng.below(texts.len())];
        let chars: Vec<char> = t.chars().collect();
        let start = rng.below(chars.len());
        let len = 1 + rng.below(12);
        let s: String = chars[start..(start + len).min(chars.len())]
            .iter()
            .collect();
        match rng.below(3) {
            0 => s.to_uppercase(),
            1 => s.to_lowercase(),
            _ => s,
        }
    } else if pick < 8 {
        WORDS[rng.below(WORDS.len())].to_string()
    } else if pick < 9 {
        ["ss", "SS", "ß", "ä", "Ä", "e", "ab", "σ", "ς", "fi"][rng.below(10)].to_string()
    } else {
        [
            "subject: ",
            "SUBJECT",
            "from: bob",
            "ject: t",
            "q\"",
            "\r\n",
            "x\r\nxy",
        ][rng.below(7)]
        .to_string()
    }
}

/// The search keys around a needle literal (`{}`).
const FORMS: &[&str] = &[
    "BODY {}",
    "TEXT {}",
    "NOT BODY {}",
    "NOT TEXT {}",
    "OR BODY {} SEEN",
    "UNSEEN TEXT {}",
    "OR NOT BODY {} FLAGGED",
    "NOT OR TEXT {} BODY profit",
    "BODY {} TEXT the",
];

#[tokio::test]
async fn index_answers_equal_scans() {
    let env = env().await;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut texts = Vec::new();
    for i in 0..42 {
        let (msg, t) = message(&mut rng, i % 7);
        env.store
            .deliver(&[env.account], &msg, SystemTime::now())
            .await
            .unwrap();
        texts.extend(t);
    }
    let server = env.server(ImapConfig::default());
    let (mut c, _task) = connect(&server, LOOPBACK);
    c.wait = Duration::from_secs(30);
    c.login().await;
    let r = c.cmd("s", "SELECT INBOX").await;
    assert!(r.contains("s OK"), "{r}");
    let every = |from: usize, step: usize| {
        (from..=42)
            .step_by(step)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let r = c
        .cmd("f1", &format!("STORE {} +FLAGS (\\Seen)", every(1, 3)))
        .await;
    assert!(r.contains("f1 OK"), "{r}");
    let r = c
        .cmd("f2", &format!("STORE {} +FLAGS (\\Flagged)", every(2, 5)))
        .await;
    assert!(r.contains("f2 OK"), "{r}");
    let (mut nonempty, mut runs) = (0, 0);
    for round in 0..300 {
        // None, then some (20 of 42), then all messages are indexed; then new ones
        // arrive and each SEARCH indexes only 5 of those it finds unindexed.
        let on_demand = match round {
            0..150 => 0,
            150..200 => 10_000,
            _ => 5,
        };
        match round {
            50 => assert_eq!(env.store.index_text(20).await.unwrap(), 20),
            150 => assert_eq!(env.store.text_backlog().await.unwrap(), 22),
            200 => {
                assert_eq!(env.store.text_backlog().await.unwrap(), 0);
                for i in 0..14 {
                    let (msg, t) = message(&mut rng, i % 7);
                    env.store
                        .deliver(&[env.account], &msg, SystemTime::now())
                        .await
                        .unwrap();
                    texts.extend(t);
                }
                let r = c.cmd("n", "NOOP").await;
                assert!(r.starts_with("* 56 EXISTS"), "{r}");
            }
            _ => {}
        }
        let n = needle(&mut rng, &texts);
        let form = FORMS[rng.below(FORMS.len())];
        let (before, after) = form.split_once("{}").unwrap();
        let len = n.len();
        let command = format!("UID SEARCH CHARSET UTF-8 {before}{{{len}+}}\r\n{n}{after}");
        env.store.set_text_index(false, 0);
        c.send(&format!("x{round} {command}\r\n")).await;
        let scanned = c.until(&format!("x{round}")).await;
        env.store.set_text_index(true, on_demand);
        c.send(&format!("i{round} {command}\r\n")).await;
        let indexed = c.until(&format!("i{round}")).await;
        assert!(scanned.starts_with("* SEARCH"), "{scanned}");
        assert!(scanned.contains("OK UID SEARCH completed"), "{scanned}");
        assert_eq!(
            indexed.replace(&format!("i{round}"), "T"),
            scanned.replace(&format!("x{round}"), "T"),
            "{form} with {n:?}"
        );
        if !scanned.starts_with("* SEARCH\r\n") {
            nonempty += 1;
        }
        runs += 1;
    }
    assert_eq!(runs, 300);
    assert!(nonempty > 150, "only {nonempty} searches found something");
}

#[tokio::test]
async fn indexed_searches_do_not_read_messages() {
    let env = env().await;
    env.deliver("Subject: a\r\n\r\nthe quick brown fox\r\n")
        .await;
    env.deliver("Subject: b\r\n\r\nGrüße aus der STRASSE\r\n")
        .await;
    env.deliver("Subject: c\r\n\r\nnothing\r\n").await;
    assert_eq!(env.store.index_text(10).await.unwrap(), 3);
    // With the message files gone, only the index can answer.
    assert_eq!(testing::remove_blob_bytes(&env.store).await, 3);
    let server = env.server(ImapConfig::default());
    let (mut c, _task) = connect(&server, LOOPBACK);
    c.login().await;
    let r = c.cmd("s", "SELECT INBOX").await;
    assert!(r.contains("s OK"), "{r}");
    let r = c.cmd("a", "UID SEARCH BODY QUICK").await;
    assert_eq!(r, "* SEARCH 1\r\na OK UID SEARCH completed\r\n");
    let r = c.cmd("b", "UID SEARCH NOT TEXT straße").await;
    assert_eq!(r, "* SEARCH 1 3\r\nb OK UID SEARCH completed\r\n");
    let r = c.cmd("c", "UID SEARCH OR BODY fox SUBJECT c").await;
    assert!(r.starts_with("c NO"), "a header key reads the message: {r}");
    // A key too short for the index is scanned: the missing files show.
    let r = c.cmd("d", "UID SEARCH BODY ox").await;
    assert!(r.starts_with("d NO"), "{r}");
    env.store.set_text_index(false, 0);
    let r = c.cmd("e", "UID SEARCH BODY quick").await;
    assert!(r.starts_with("e NO"), "{r}");
}

#[tokio::test]
async fn a_message_expunged_elsewhere_matches_nothing_either_way() {
    let env = env().await;
    for body in ["fox one", "fox two", "dog three"] {
        env.deliver(&format!("Subject: s\r\n\r\n{body}\r\n")).await;
    }
    let server = env.server(ImapConfig::default());
    let (mut a, _ta) = connect(&server, LOOPBACK);
    let (mut b, _tb) = connect(&server, LOOPBACK);
    for (c, t) in [(&mut a, "s"), (&mut b, "t")] {
        c.login().await;
        let r = c.cmd(t, "SELECT INBOX").await;
        assert!(r.contains(&format!("{t} OK")), "{r}");
    }
    let r = b.cmd("x", "UID STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    assert!(r.contains("x OK"), "{r}");
    let r = b.cmd("y", "EXPUNGE").await;
    assert!(r.contains("y OK"), "{r}");
    // The flag change is reported first; the expunge waits (RFC 9051 §7.5.1).
    let r = a.cmd("a0", "UID SEARCH ALL").await;
    assert!(
        r.ends_with("* SEARCH 1 2 3\r\na0 OK UID SEARCH completed\r\n"),
        "{r}"
    );
    for key in [
        "BODY fox",
        "NOT BODY fox",
        "NOT TEXT three",
        "OR BODY dog DELETED",
    ] {
        env.store.set_text_index(true, 100);
        let indexed = a.cmd("a1", &format!("UID SEARCH {key}")).await;
        env.store.set_text_index(false, 0);
        let scanned = a.cmd("a1", &format!("UID SEARCH {key}")).await;
        assert_eq!(indexed, scanned, "{key}");
        assert!(!indexed.contains(" 2"), "{key}: {indexed}");
    }
}
