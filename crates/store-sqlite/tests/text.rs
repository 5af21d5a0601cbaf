//! The text index behind SEARCH BODY / TEXT: its answers agree with reading the
//! messages (`text_matches`), on decoded and non-ASCII text too; what it does not
//! cover is reported as unknown; a version 6 database gains it on open.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use buudien_message::{MessageMeta, text_matches};
use buudien_store::{MailStore, MailboxId, MailboxStore, NewAccount, PasswordRecord, Quota};
use buudien_store_sqlite::SqliteStore;
use buudien_types::{Address, Domain, Uid};
use std::path::Path;
use std::time::SystemTime;
use tokio::io::AsyncReadExt;

fn pw() -> PasswordRecord {
    PasswordRecord {
        hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        scram_sha256: "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5".into(),
    }
}

/// The messages: plain, base64, quoted-printable Latin-1, encoded-word subjects,
/// multipart with an attachment, an encapsulated message.
const MESSAGES: &[&str] = &[
    "Subject: Hello\r\nFrom: ann@a.example\r\n\r\nThe quick brown fox. Ärger im Büro.\r\n",
    "Subject: =?ISO-8859-1?Q?Stra=DFe?=\r\nContent-Type: text/plain; charset=utf-8\r\n\
     Content-Transfer-Encoding: base64\r\n\r\n\
     R3LDvMOfZSBhdXMgZGVyIFNUUkFTU0UK\r\n",
    "Subject: qp\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
     Content-Transfer-Encoding: quoted-printable\r\n\r\nK=E4se und =C4rger, lange Zei=\r\nle\r\n",
    "Subject: =?UTF-8?B?w4RyZ2VyIG1pdCBkZW0gQ2hlZg==?=\r\nContent-Type: multipart/mixed; \
     boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n\
     Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n\
     aGlkZGVuIGJpbmFyeQ==\r\n--b--\r\n",
    "Subject: fwd\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner secret\r\n\r\n\
     inner body \"quoted\" text\r\n",
    "Subject: two\r\n\r\nab\r\ncd\r\n",
    "Subject: syntax\r\n\r\nf(x) = a*b ^c: NEAR(one two) {col}\r\n",
];

async fn setup(dir: &Path) -> (SqliteStore, MailboxId) {
    setup_with(dir, true).await
}

/// `setup`, with the messages kept in the database (`inline`) or in files.
async fn setup_with(dir: &Path, inline: bool) -> (SqliteStore, MailboxId) {
    let s = SqliteStore::open(dir).unwrap();
    if !inline {
        s.set_inline_max(0);
    }
    s.add_domain(&Domain::parse("a.example").unwrap())
        .await
        .unwrap();
    let id = s
        .add_account(NewAccount {
            address: Address::parse("ann@a.example").unwrap(),
            password: pw(),
            quota: Quota::default(),
        })
        .await
        .unwrap();
    let mut inbox = 0;
    for m in MESSAGES {
        let d = s.deliver(&[id], m.as_bytes(), SystemTime::now()).await;
        inbox = d.unwrap()[0].mailbox;
    }
    (s, inbox)
}

/// What reading every message finds.
async fn scan(s: &SqliteStore, mailbox: MailboxId, needle: &str, body_only: bool) -> Vec<Uid> {
    let mut out = Vec::new();
    for e in s.messages(mailbox).await.unwrap() {
        let mut bytes = Vec::new();
        let mut r = s.read_blob(&e.blob).await.unwrap();
        r.read_to_end(&mut bytes).await.unwrap();
        if text_matches(&bytes, &MessageMeta::parse(&bytes), needle, body_only) {
            out.push(e.uid);
        }
    }
    out
}

const NEEDLES: &[&str] = &[
    "quick",
    "QUICK BROWN",
    "ärger",
    "ÄRGER",
    "Ärger",
    "straße",
    "STRASSE",
    "strasse",
    "Grüße",
    "käse",
    "lange zeile",
    "hidden",
    "inner secret",
    "\"quoted\"",
    "subject: hello",
    "hello",
    "chef",
    "ab\r\ncd",
    "b\r\nc",
    "nothing here",
    "fox. ä",
    "a*b",
    "^c:",
    "f(x)",
    "near(one",
    "{col}",
    "one two",
];

#[tokio::test]
async fn answers_agree_with_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let (s, inbox) = setup(dir.path()).await;
    for needle in NEEDLES {
        for body_only in [true, false] {
            let hits = s.search_text(inbox, needle, body_only).await.unwrap();
            let hits = hits.unwrap_or_else(|| panic!("no answer for {needle:?}"));
            assert!(hits.unknown.is_empty(), "{needle:?}: {hits:?}");
            let want = scan(&s, inbox, needle, body_only).await;
            assert_eq!(hits.matched, want, "{needle:?} body_only={body_only}");
        }
    }
    // Some of those are found at all (the comparison is not vacuous).
    let hit = |n: &'static str, b: bool| {
        let s = s.clone();
        async move { s.search_text(inbox, n, b).await.unwrap().unwrap().matched }
    };
    assert_eq!(hit("STRASSE", false).await, vec![Uid(2)]);
    assert_eq!(
        hit("straße", true).await,
        vec![Uid(2)],
        "base64 body, ß = SS"
    );
    assert_eq!(hit("ärger", false).await, vec![Uid(1), Uid(3), Uid(4)]);
    assert_eq!(hit("ärger", true).await, vec![Uid(1), Uid(3)]);
    assert_eq!(hit("hidden", false).await, Vec::<Uid>::new(), "not text");
    assert_eq!(hit("inner secret", true).await, vec![Uid(5)]);
    assert_eq!(hit("lange zeile", true).await, vec![Uid(3)], "soft break");
    assert_eq!(
        hit("a*b ^c: near(", true).await,
        vec![Uid(7)],
        "syntax is text"
    );
}

#[tokio::test]
async fn short_needles_and_a_disabled_index_are_not_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (s, inbox) = setup(dir.path()).await;
    assert_eq!(s.search_text(inbox, "ab", true).await.unwrap(), None);
    assert_eq!(s.search_text(inbox, "", false).await.unwrap(), None);
    assert_eq!(
        s.search_text(inbox, "a\u{FFFF}b", false).await.unwrap(),
        None
    );
    // `ß` folds to two characters: "ßa" is three.
    assert!(s.search_text(inbox, "ßa", true).await.unwrap().is_some());
    s.set_text_index(false, 0);
    assert_eq!(s.search_text(inbox, "quick", true).await.unwrap(), None);
}

#[tokio::test]
async fn unindexed_messages_are_reported_and_indexed_later() {
    let dir = tempfile::tempdir().unwrap();
    let (s, inbox) = setup(dir.path()).await;
    s.set_text_index(true, 0);
    let all: Vec<Uid> = (1..=7).map(Uid).collect();
    let hits = s.search_text(inbox, "quick", true).await.unwrap().unwrap();
    assert!(hits.matched.is_empty());
    assert_eq!(hits.unknown, all);
    assert_eq!(s.text_backlog().await.unwrap(), 7);
    // More unindexed emails than the mailbox has messages: looked up from the mailbox.
    let acct = s
        .account(&Address::parse("ann@a.example").unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    let small = s.create_mailbox(acct, "Small", None).await.unwrap().id;
    s.copy(inbox, &[Uid(1)], small).await.unwrap();
    let hits = s.search_text(small, "quick", true).await.unwrap().unwrap();
    assert_eq!((hits.matched, hits.unknown), (vec![], vec![Uid(1)]));
    assert_eq!(s.index_text(2).await.unwrap(), 2);
    let hits = s.search_text(small, "quick", true).await.unwrap().unwrap();
    assert_eq!((hits.matched, hits.unknown), (vec![Uid(1)], vec![]));
    let hits = s.search_text(inbox, "quick", true).await.unwrap().unwrap();
    assert_eq!(hits.matched, vec![Uid(1)]);
    assert_eq!(hits.unknown, all[2..].to_vec());
    assert_eq!(s.index_text(100).await.unwrap(), 5);
    assert_eq!(s.text_backlog().await.unwrap(), 0);
    let hits = s.search_text(inbox, "inner", true).await.unwrap().unwrap();
    assert_eq!((hits.matched, hits.unknown), (vec![Uid(5)], vec![]));
    // A copy in another mailbox shares the email and its entry.
    let other = s.create_mailbox(acct, "Other", None).await.unwrap().id;
    s.copy(inbox, &[Uid(5), Uid(1)], other).await.unwrap();
    let hits = s.search_text(other, "inner", true).await.unwrap().unwrap();
    assert_eq!((hits.matched, hits.unknown), (vec![Uid(2)], vec![]));
    // Expunged and collected, the email's entry is noted as gone, answers no search
    // meanwhile, and goes in the indexer's next round.
    s.expunge(inbox, &all).await.unwrap();
    s.expunge(other, &[Uid(2)]).await.unwrap();
    s.collect_garbage().await.unwrap();
    let db = rusqlite::Connection::open(dir.path().join("buudien.sqlite")).unwrap();
    let inner = |db: &rusqlite::Connection| -> i64 {
        db.query_row(
            "SELECT count(*) FROM email_text WHERE email_text MATCH '\"inner\"'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(inner(&db), 1);
    let gone: i64 = db
        .query_row("SELECT count(*) FROM text_gone", [], |r| r.get(0))
        .unwrap();
    assert_eq!(gone, 6, "all emails but the copy of Uid(1)");
    let hits = s.search_text(other, "inner", true).await.unwrap().unwrap();
    assert_eq!((hits.matched, hits.unknown), (vec![], vec![]));
    assert_eq!(s.index_text(100).await.unwrap(), 6);
    assert_eq!(inner(&db), 0);
    let left: i64 = db
        .query_row("SELECT count(*) FROM text_gone", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
    let hits = s.search_text(other, "quick", true).await.unwrap().unwrap();
    assert_eq!((hits.matched, hits.unknown), (vec![Uid(1)], vec![]));
}

/// SQLite gives the id of the newest email, once it went, to the next email: the
/// old entry (not yet removed) must never answer for the new email.
#[tokio::test]
async fn an_email_id_given_again_is_not_answered_by_the_old_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (s, inbox) = setup(dir.path()).await;
    s.set_text_index(true, 0);
    let acct = s
        .account(&Address::parse("ann@a.example").unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    let db = rusqlite::Connection::open(dir.path().join("buudien.sqlite")).unwrap();
    let newest = |db: &rusqlite::Connection| -> i64 {
        db.query_row("SELECT max(id) FROM emails", [], |r| r.get(0))
            .unwrap()
    };
    s.deliver(
        &[acct],
        b"Subject: a\r\n\r\nzebrafish\r\n",
        SystemTime::now(),
    )
    .await
    .unwrap();
    let id = newest(&db);
    assert_eq!(s.index_text(100).await.unwrap(), 8);
    s.expunge(inbox, &[Uid(8)]).await.unwrap();
    s.deliver(&[acct], b"Subject: b\r\n\r\nwalrus\r\n", SystemTime::now())
        .await
        .unwrap();
    assert_eq!(newest(&db), id, "SQLite gave the id again");
    // Not indexed yet: the old entry says zebrafish, but the message is unknown.
    let hits = s
        .search_text(inbox, "zebrafish", true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((hits.matched, hits.unknown), (vec![], vec![Uid(9)]));
    // Indexed (here by the SEARCH itself, before the indexer's removal round): the
    // old entry went first.
    s.set_text_index(true, 512);
    let hits = s
        .search_text(inbox, "zebrafish", true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((hits.matched, hits.unknown), (vec![], vec![]));
    let hits = s.search_text(inbox, "walrus", true).await.unwrap().unwrap();
    assert_eq!((hits.matched, hits.unknown), (vec![Uid(9)], vec![]));
    let gone: i64 = db
        .query_row("SELECT count(*) FROM text_gone", [], |r| r.get(0))
        .unwrap();
    assert_eq!(gone, 0);
    assert_eq!(s.index_text(100).await.unwrap(), 0);
}

#[tokio::test]
async fn text_over_the_limit_is_left_to_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let (s, inbox) = setup(dir.path()).await;
    let acct = s
        .account(&Address::parse("ann@a.example").unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    let mut big = String::from("Subject: big\r\n\r\n");
    while big.len() <= buudien_store_sqlite::TEXT_LIMIT + 10 {
        big.push_str("lorem ipsum dolor sit amet\r\n");
    }
    s.deliver(&[acct], big.as_bytes(), SystemTime::now())
        .await
        .unwrap();
    let hits = s.search_text(inbox, "lorem", true).await.unwrap().unwrap();
    assert!(hits.matched.is_empty());
    assert_eq!(hits.unknown, vec![Uid(8)]);
    assert_eq!(s.text_backlog().await.unwrap(), 0, "marked, not pending");
}

#[tokio::test]
async fn a_version_6_database_gains_the_index() {
    let dir = tempfile::tempdir().unwrap();
    // A version 6 database keeps every message in a file.
    let (s, inbox) = setup_with(dir.path(), false).await;
    drop(s);
    let db = rusqlite::Connection::open(dir.path().join("buudien.sqlite")).unwrap();
    db.execute_batch(
        "DROP TRIGGER email_text_gone; DROP TABLE text_gone; DROP TABLE email_text; DROP INDEX emails_text_pending;
         ALTER TABLE emails DROP COLUMN text_state; DROP INDEX emails_blob;
         DROP INDEX queue_blob; ALTER TABLE blobs DROP COLUMN data;
         DROP INDEX changes_uid;
         PRAGMA user_version = 6;",
    )
    .unwrap();
    drop(db);
    let s = SqliteStore::open(dir.path()).unwrap();
    let db = rusqlite::Connection::open(dir.path().join("buudien.sqlite")).unwrap();
    let v: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 11);
    assert_eq!(s.text_backlog().await.unwrap(), 7);
    let hits = s
        .search_text(inbox, "STRASSE", false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((hits.matched, hits.unknown), (vec![Uid(2)], vec![]));
    assert_eq!(s.text_backlog().await.unwrap(), 0);
}

#[tokio::test]
async fn the_background_indexer_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let (s, inbox) = setup(dir.path()).await;
    assert_eq!(s.text_backlog().await.unwrap(), 7);
    let task = tokio::spawn(s.clone().run_text_indexer());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while s.text_backlog().await.unwrap() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "indexer did not catch up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    task.abort();
    // Nothing left for a SEARCH to index or scan.
    s.set_text_index(true, 0);
    let hits = s.search_text(inbox, "quick", true).await.unwrap().unwrap();
    assert_eq!((hits.matched, hits.unknown), (vec![Uid(1)], vec![]));
}

/// Writes garbage over FTS5's structure record (row 10 of `email_text_data`), as the
/// damage seen once on a large store looked: FTS5 can then not even open the table.
fn damage_the_index(dir: &Path) {
    let db = rusqlite::Connection::open(dir.join("buudien.sqlite")).unwrap();
    let n = db
        .execute(
            "UPDATE email_text_data SET block = x'ffffffffffffffff' WHERE id = 10",
            [],
        )
        .unwrap();
    assert_eq!(n, 1, "no structure record to damage");
}

#[tokio::test]
async fn a_damaged_index_is_rebuilt_and_meanwhile_expunge_and_search_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let (s, inbox) = setup(dir.path()).await;
    assert_eq!(s.index_text(100).await.unwrap(), 7);
    drop(s);
    damage_the_index(dir.path());

    let s = SqliteStore::open(dir.path()).unwrap();
    s.set_text_index(true, 0);
    assert!(
        s.check_text_index(false).unwrap().is_some(),
        "check must see the damage"
    );
    let e = s.search_text(inbox, "quick", true).await.unwrap_err();
    assert!(e.to_string().contains("text index damaged"), "{e}");
    // EXPUNGE of an indexed message does not touch the index (its entry goes
    // later): it works while the index is damaged.
    assert_eq!(s.expunge(inbox, &[Uid(7)]).await.unwrap(), 1);
    assert_eq!(s.messages(inbox).await.unwrap().len(), 6);

    // The indexer's next round rebuilds the index and indexes every email again.
    assert_eq!(s.index_text(100).await.unwrap(), 6);
    assert_eq!(s.text_backlog().await.unwrap(), 0);
    assert_eq!(s.check_text_index(false).unwrap(), None);
    for needle in NEEDLES {
        for body_only in [false, true] {
            let hits = s
                .search_text(inbox, needle, body_only)
                .await
                .unwrap()
                .map(|h| (h.matched, h.unknown));
            if let Some((matched, unknown)) = hits {
                assert_eq!(unknown, vec![], "{needle:?}");
                assert_eq!(
                    matched,
                    scan(&s, inbox, needle, body_only).await,
                    "{needle:?} body_only={body_only}"
                );
            }
        }
    }

    // Damage again within the spacing: no second rebuild, the error stays.
    drop(s);
    damage_the_index(dir.path());
    let s2 = SqliteStore::open(dir.path()).unwrap();
    s2.set_text_index(true, 0);
    assert!(s2.search_text(inbox, "quick", true).await.is_err());
    assert_eq!(
        s2.index_text(100).await.unwrap(),
        6,
        "first rebuild of this store"
    );
    damage_the_index(dir.path());
    assert!(s2.search_text(inbox, "quick", true).await.is_err());
    assert_eq!(
        s2.index_text(100).await.unwrap(),
        0,
        "rebuilds are spaced out"
    );
    assert!(s2.search_text(inbox, "quick", true).await.is_err());

    // `buudien check --quarantine` rebuilds it at once.
    assert!(s2.check_text_index(true).unwrap().is_some());
    assert_eq!(s2.check_text_index(false).unwrap(), None);
    assert_eq!(s2.index_text(100).await.unwrap(), 6);
    let hits = s2.search_text(inbox, "quick", true).await.unwrap().unwrap();
    assert_eq!((hits.matched, hits.unknown), (vec![Uid(1)], vec![]));
}
