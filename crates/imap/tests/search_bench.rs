//! A measurement, not a test (ignored by default): `UID SEARCH BODY` over IMAP on a
//! mailbox of `BUUDIEN_BENCH_N` messages (default 100,000) with the text index and
//! with it turned off (a scan, as before the index).
//!
//! `cargo test --release -p buudien-imap --test search_bench -- --ignored --nocapture`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use buudien_imap::ImapConfig;
use buudien_store::{Flags, MailStore, MailboxStore, MessageSource, NewMessage};
use common::*;
use std::time::{Duration, Instant, SystemTime};

fn message(seed: &mut u64, i: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
        "juliett", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
        "sierra", "tango", "Straße", "Ärger", "uniform", "victor", "whiskey", "xray",
    ];
    let mut body = String::new();
    for k in 0..200 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        body.push_str(WORDS[usize::try_from(*seed % 26).unwrap()]);
        body.push_str(if k % 12 == 11 { "\r\n" } else { " " });
    }
    format!(
        "From: s{i}@example.org\r\nSubject: message {i}\r\nMessage-ID: <{i}@x>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: fills a large mailbox"]
async fn uid_search_body_on_a_large_mailbox() {
    let n: usize = std::env::var("BUUDIEN_BENCH_N")
        .ok()
        .map_or(100_000, |v| v.parse().unwrap());
    let env = env().await;
    // SQLite's free-disk-space floor (PostgreSQL has none of its own).
    #[cfg(not(feature = "test-postgres"))]
    env.store.set_min_free_space(0);
    let inbox = env
        .store
        .mailboxes(env.account)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.name == "INBOX")
        .unwrap()
        .id;
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let t = Instant::now();
    for start in (0..n).step_by(1000) {
        let batch = (start..n.min(start + 1000))
            .map(|i| NewMessage {
                source: MessageSource::Bytes(message(&mut seed, i)),
                flags: Flags::default(),
                keywords: Vec::new(),
                received: SystemTime::now(),
            })
            .collect();
        env.store.append_many(inbox, batch).await.unwrap();
    }
    println!("filled {n} messages in {:.1?}", t.elapsed());
    let t = Instant::now();
    while env.store.index_text(1000).await.unwrap() > 0 {}
    println!("indexed in {:.1?}", t.elapsed());
    let server = env.server(ImapConfig::default());
    let (mut c, _task) = connect(&server, LOOPBACK);
    c.wait = Duration::from_secs(600);
    c.login().await;
    let r = c.cmd("s", "SELECT INBOX").await;
    assert!(r.contains("s OK"), "{r}");
    let keys = [
        "TEXT \"message 4242\"",
        "BODY \"sierra tango\"",
        "BODY STRASSE",
        "BODY nowhere",
    ];
    for key in keys {
        let mut best = Duration::MAX;
        let mut answer = String::new();
        for k in 0..5 {
            let t = Instant::now();
            answer = c.cmd(&format!("i{k}"), &format!("UID SEARCH {key}")).await;
            best = best.min(t.elapsed());
        }
        let hits = answer.lines().next().unwrap().split(' ').count() - 2;
        let (body_only, needle) = match key.split_once(' ').unwrap() {
            ("BODY", n) => (true, n.trim_matches('"')),
            (_, n) => (false, n.trim_matches('"')),
        };
        let mut store_best = Duration::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            let found = env.store.search_text(inbox, needle, body_only).await;
            store_best = store_best.min(t.elapsed());
            assert_eq!(found.unwrap().unwrap().matched.len(), hits);
        }
        env.store.set_text_index(false, 0);
        let t = Instant::now();
        let scanned = c.cmd("i0", &format!("UID SEARCH {key}")).await;
        let scan = t.elapsed();
        env.store.set_text_index(true, 512);
        assert_eq!(answer.replace("i4", "i0"), scanned);
        println!(
            "UID SEARCH {key}: {hits} hits; index {best:.1?} (best of 5; the store's lookup {store_best:.1?}), scan {scan:.1?}"
        );
    }
}
