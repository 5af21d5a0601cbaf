//! The protocol crates run unchanged on `PgStore`, and across nodes: an IMAP session
//! on node B in IDLE sees a delivery made on node A (the latency is printed), FETCH
//! and SEARCH BODY answer from PostgreSQL, and a POP3 session on node A is refused
//! with `[IN-USE]` while one on node B holds the maildrop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use buudien_store_postgres::testing;

use buudien_auth::{FailureThrottle, ScramCredentials, ThrottleConfig, hash_password};
use buudien_imap::{ImapConfig, ImapServer};
use buudien_pop3::{Pop3Config, Pop3Server};
use buudien_store::{AccountId, MailStore, NewAccount, PasswordRecord, Quota};
use buudien_store_postgres::PgStore;
use buudien_types::{Address, Domain};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};

const USER: &str = "ann@example.org";
const PASSWORD: &str = "correct horse";

/// Two nodes on one fresh database, and an account.
async fn two_nodes() -> (PgStore, PgStore, AccountId) {
    let url = testing::server().fresh_db().await;
    let a = PgStore::connect(&url, 8).await.unwrap();
    let b = PgStore::connect(&url, 8).await.unwrap();
    a.add_domain(&Domain::parse("example.org").unwrap())
        .await
        .unwrap();
    let account = a
        .add_account(NewAccount {
            address: Address::parse(USER).unwrap(),
            password: PasswordRecord {
                hash: hash_password(PASSWORD.as_bytes()).unwrap(),
                scram_sha256: ScramCredentials::derive(PASSWORD.as_bytes()).encode(),
            },
            quota: Quota::default(),
        })
        .await
        .unwrap();
    (a, b, account)
}

fn throttle() -> Arc<FailureThrottle> {
    Arc::new(FailureThrottle::new(ThrottleConfig::default()))
}

struct Client {
    rd: BufReader<ReadHalf<DuplexStream>>,
    wr: WriteHalf<DuplexStream>,
}

impl Client {
    async fn line(&mut self) -> String {
        let mut l = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), self.rd.read_line(&mut l))
            .await
            .expect("no reply within 10 s")
            .unwrap();
        assert!(n > 0, "unexpected EOF");
        l
    }

    async fn send(&mut self, raw: &str) {
        self.wr.write_all(raw.as_bytes()).await.unwrap();
    }

    /// Sends a command; returns the lines up to the one starting with `end`.
    async fn cmd(&mut self, line: &str, end: &str) -> String {
        self.send(&format!("{line}\r\n")).await;
        let mut all = String::new();
        loop {
            let l = self.line().await;
            all.push_str(&l);
            if l.starts_with(end) {
                return all;
            }
        }
    }
}

fn peer() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn imap(server: &ImapServer<PgStore>) -> Client {
    let (client, io) = tokio::io::duplex(1 << 16);
    let s = server.clone();
    tokio::spawn(async move { s.serve(io, peer(), false, None).await });
    let (rd, wr) = tokio::io::split(client);
    Client {
        rd: BufReader::new(rd),
        wr,
    }
}

fn pop3(server: &Pop3Server<PgStore>) -> Client {
    let (client, io) = tokio::io::duplex(1 << 16);
    let s = server.clone();
    tokio::spawn(async move { s.serve(io, peer(), false, None).await });
    let (rd, wr) = tokio::io::split(client);
    Client {
        rd: BufReader::new(rd),
        wr,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_idle_on_node_b_sees_a_delivery_on_node_a() {
    let (a, b, ann) = two_nodes().await;
    let server = ImapServer::new(b.clone(), ImapConfig::default(), throttle());
    let mut c = imap(&server);
    assert!(c.line().await.starts_with("* OK"));
    let r = c.cmd(&format!("l LOGIN {USER} \"{PASSWORD}\""), "l ").await;
    assert!(r.contains("l OK"), "{r}");
    let r = c.cmd("s SELECT INBOX", "s ").await;
    assert!(r.contains("* 0 EXISTS") && r.contains("s OK"), "{r}");
    c.send("i IDLE\r\n").await;
    assert!(c.line().await.starts_with("+ "));
    let t = Instant::now();
    a.deliver(
        &[ann],
        b"From: bob@example.org\r\nSubject: across\r\n\r\nfrom node A\r\n",
        SystemTime::now(),
    )
    .await
    .unwrap();
    let mut seen = String::new();
    while !seen.contains("* 1 EXISTS") {
        seen = c.line().await;
    }
    eprintln!(
        "IMAP IDLE on node B saw node A's delivery {:?} after it began",
        t.elapsed()
    );
    let r = c.cmd("DONE", "i ").await;
    assert!(r.contains("i OK"), "{r}");
    let r = c.cmd("f FETCH 1 (FLAGS BODY[])", "f ").await;
    assert!(r.contains("from node A") && r.contains("f OK"), "{r}");
    let r = c.cmd("t SEARCH BODY \"node a\"", "t ").await;
    assert!(r.contains("* SEARCH 1\r\n") && r.contains("t OK"), "{r}");
    let r = c.cmd("u SEARCH BODY \"node c\"", "u ").await;
    assert!(r.contains("* SEARCH\r\n") && r.contains("u OK"), "{r}");
    let r = c.cmd("o LOGOUT", "o ").await;
    assert!(r.contains("o OK"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_maildrop_lock_holds_across_nodes() {
    let (a, b, ann) = two_nodes().await;
    a.deliver(&[ann], b"Subject: one\r\n\r\nbody\r\n", SystemTime::now())
        .await
        .unwrap();
    let on_a = Pop3Server::new(a.clone(), Pop3Config::default(), throttle());
    let on_b = Pop3Server::new(b.clone(), Pop3Config::default(), throttle());
    let mut first = pop3(&on_b);
    assert!(first.line().await.starts_with("+OK"));
    assert!(
        first
            .cmd(&format!("USER {USER}"), "")
            .await
            .starts_with("+OK")
    );
    let r = first.cmd(&format!("PASS {PASSWORD}"), "").await;
    assert!(r.starts_with("+OK"), "{r}");
    let mut second = pop3(&on_a);
    assert!(second.line().await.starts_with("+OK"));
    assert!(
        second
            .cmd(&format!("USER {USER}"), "")
            .await
            .starts_with("+OK")
    );
    let r = second.cmd(&format!("PASS {PASSWORD}"), "").await;
    assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
    let r = first.cmd("STAT", "").await;
    assert!(r.starts_with("+OK 1 "), "{r}");
    let r = first.cmd("DELE 1", "").await;
    assert!(r.starts_with("+OK"), "{r}");
    let r = first.cmd("QUIT", "").await;
    assert!(r.starts_with("+OK"), "{r}");
    // Released at QUIT: node A's session gets in now (the release reaches the
    // database from a task, so it may take a moment).
    let start = Instant::now();
    loop {
        let mut again = pop3(&on_a);
        assert!(again.line().await.starts_with("+OK"));
        again.cmd(&format!("USER {USER}"), "").await;
        let r = again.cmd(&format!("PASS {PASSWORD}"), "").await;
        if r.starts_with("+OK") {
            let r = again.cmd("STAT", "").await;
            assert!(r.starts_with("+OK 0 "), "the DELE was committed: {r}");
            break;
        }
        assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "lock never released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
