//! A measurement, not a test: fills one mailbox with N messages (default 100,000;
//! `search_bench [N] [DIR]`), then times BODY searches answered by the text index
//! against the same searches done by reading and scanning every message, as SEARCH
//! does without the index. Also times indexing and listing the mailbox (which
//! IMAP SEARCH does besides).
//!
//! `cargo run --release --example search_bench -p buudien-store-sqlite`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use buudien_message::{MessageMeta, text_matches};
use buudien_store::{
    Flags, MailStore, MailboxStore, MessageSource, NewAccount, NewMessage, PasswordRecord, Quota,
};
use buudien_store_sqlite::SqliteStore;
use buudien_types::{Address, Domain};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::AsyncReadExt;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A pseudo-word from a 5,000-word vocabulary (Zipf-like: low numbers are common).
fn word(rng: &mut Rng) -> String {
    const SYL: &[&str] = &[
        "ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "bri", "gan", "dor", "fel", "hu", "jo",
        "pel", "quo", "zi", "wen", "ä", "ß",
    ];
    let r = rng.next() % 5000;
    let n = (r * r) / 5000; // skew towards common words
    let mut w = String::new();
    let mut x = n;
    loop {
        w.push_str(SYL[usize::try_from(x % 20).unwrap()]);
        x /= 20;
        if x == 0 {
            break;
        }
    }
    w
}

fn message(rng: &mut Rng, i: usize) -> Vec<u8> {
    let mut body = String::new();
    for k in 0..220 {
        body.push_str(&word(rng));
        body.push(if k % 12 == 11 { '\n' } else { ' ' });
    }
    let body = body.replace('\n', "\r\n");
    format!(
        "From: sender{i}@example.org\r\nTo: ann@example.org\r\nSubject: message {i} {}\r\n\
         Date: Mon, 2 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{i}@example.org>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        word(rng)
    )
    .into_bytes()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(100_000, |a| a.parse().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let dir = args.next().map_or(tmp.path().to_path_buf(), Into::into);
    let store = SqliteStore::open(&dir).unwrap();
    store.set_min_free_space(0);
    store
        .add_domain(&Domain::parse("example.org").unwrap())
        .await
        .unwrap();
    let account = store
        .add_account(NewAccount {
            address: Address::parse("ann@example.org").unwrap(),
            password: PasswordRecord {
                hash: "x".into(),
                scram_sha256: "x".into(),
            },
            quota: Quota::default(),
        })
        .await
        .unwrap();
    let inbox = store
        .mailboxes(account)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.name == "INBOX")
        .unwrap()
        .id;
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let t = Instant::now();
    let mut octets = 0;
    for start in (0..n).step_by(1000) {
        let batch: Vec<NewMessage> = (start..n.min(start + 1000))
            .map(|i| {
                let m = message(&mut rng, i);
                octets += m.len();
                NewMessage {
                    source: MessageSource::Bytes(m),
                    flags: Flags::default(),
                    keywords: Vec::new(),
                    received: SystemTime::now(),
                }
            })
            .collect();
        store.append_many(inbox, batch).await.unwrap();
    }
    println!(
        "filled {n} messages ({} MiB) in {:.1?}",
        octets >> 20,
        t.elapsed()
    );
    let t = Instant::now();
    let mut indexed = 0;
    loop {
        let k = store.index_text(1000).await.unwrap();
        if k == 0 {
            break;
        }
        indexed += k;
    }
    println!("indexed {indexed} messages in {:.1?}", t.elapsed());
    let t = Instant::now();
    let entries = store.messages(inbox).await.unwrap();
    println!(
        "listing the mailbox (IMAP SEARCH reads it too): {:.1?}",
        t.elapsed()
    );
    // A rare word, a common one, a 3-character key, a phrase, non-ASCII in another case.
    let needles = [
        "message 4242 ",
        "kalo",
        "mi ",
        "pelzi wen",
        "SSÄ",
        "nowhere",
    ];
    for needle in needles {
        let mut best = Duration::MAX;
        let mut hits = None;
        for _ in 0..5 {
            let t = Instant::now();
            let h = store.search_text(inbox, needle, false).await.unwrap();
            best = best.min(t.elapsed());
            hits = h;
        }
        let hits = hits.unwrap();
        assert!(hits.unknown.is_empty());
        let t = Instant::now();
        let mut scanned = Vec::new();
        let uids: Vec<_> = entries.iter().map(|e| e.uid).collect();
        for (chunk, es) in uids.chunks(256).zip(entries.chunks(256)) {
            let metas = store.metas(inbox, chunk).await.unwrap();
            for (m, e) in metas.iter().zip(es) {
                let mut bytes = Vec::new();
                let mut r = store.read_blob(&e.blob).await.unwrap();
                r.read_to_end(&mut bytes).await.unwrap();
                let meta = m
                    .meta
                    .as_deref()
                    .and_then(|b| MessageMeta::from_bytes(b).ok())
                    .unwrap_or_else(|| MessageMeta::parse(&bytes));
                if text_matches(&bytes, &meta, needle, false) {
                    scanned.push(e.uid);
                }
            }
        }
        let scan = t.elapsed();
        assert_eq!(hits.matched, scanned, "{needle:?}");
        println!(
            "TEXT {needle:?}: {} hits; index {:.1?} (best of 5), scan {:.1?}",
            scanned.len(),
            best,
            scan
        );
    }
}
