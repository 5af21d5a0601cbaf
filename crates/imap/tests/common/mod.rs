//! The harness shared by the IMAP session tests: a real store (SQLite in a temp dir, or
//! PostgreSQL with the feature `test-postgres`), an account, and a client over an
//! in-memory duplex that reads replies line by line.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, dead_code)]

use buudien_auth::{FailureThrottle, ScramCredentials, ThrottleConfig, hash_password};
use buudien_imap::{ImapConfig, ImapServer};
use buudien_store::{AccountId, MailStore, NewAccount, PasswordRecord, Quota};
use buudien_types::{Address, Domain};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;

#[cfg(feature = "test-postgres")]
pub use buudien_store_postgres::{PgStore as TestStore, testing};
/// The store the tests run on, and its fault injection (`testing`): SQLite in a temp
/// dir; with the feature `test-postgres`, PostgreSQL on a fresh database of the
/// throwaway test server. Both backends' `testing` modules have one shape.
#[cfg(not(feature = "test-postgres"))]
pub use buudien_store_sqlite::{SqliteStore as TestStore, testing};
pub use testing::open_store;

pub const USER: &str = "ann@example.org";
pub const PASSWORD: &str = "correct horse";
pub const LOOPBACK: &str = "127.0.0.1:40000";
pub const REMOTE: &str = "192.0.2.1:40000";
pub const MSG1: &str = "From: bob@example.org\r\nSubject: one\r\n\r\nline 1\r\n";
pub const MSG2: &str = "Subject: two\r\n\r\nbody\r\n";

pub struct Env {
    pub dir: TempDir,
    pub store: TestStore,
    pub account: AccountId,
}

pub async fn env() -> Env {
    env_with(Quota::default()).await
}

/// An account with the given quota.
pub async fn env_with(quota: Quota) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    store
        .add_domain(&Domain::parse("example.org").unwrap())
        .await
        .unwrap();
    let account = store
        .add_account(NewAccount {
            address: Address::parse(USER).unwrap(),
            password: PasswordRecord {
                hash: hash_password(PASSWORD.as_bytes()).unwrap(),
                scram_sha256: ScramCredentials::derive(PASSWORD.as_bytes()).encode(),
            },
            quota,
        })
        .await
        .unwrap();
    Env {
        dir,
        store,
        account,
    }
}

impl Env {
    pub async fn deliver(&self, msg: &str) {
        self.store
            .deliver(&[self.account], msg.as_bytes(), SystemTime::now())
            .await
            .unwrap();
    }

    pub fn server(&self, config: ImapConfig) -> ImapServer<TestStore> {
        self.server_with(config, ThrottleConfig::default().refuse_after)
    }

    /// A server whose throttle refuses an address after `refuse_after` failures.
    pub fn server_with(&self, config: ImapConfig, refuse_after: u32) -> ImapServer<TestStore> {
        let throttle = Arc::new(FailureThrottle::new(ThrottleConfig {
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            refuse_after,
            ..ThrottleConfig::default()
        }));
        ImapServer::new(self.store.clone(), config, throttle)
    }
}

pub struct Client {
    pub rd: BufReader<ReadHalf<DuplexStream>>,
    pub wr: WriteHalf<DuplexStream>,
    /// How long [`Client::line`] waits for a line.
    pub wait: Duration,
}

pub fn connect(server: &ImapServer<TestStore>, peer: &str) -> (Client, JoinHandle<()>) {
    let (client, server_io) = tokio::io::duplex(1 << 16);
    let s = server.clone();
    let peer: SocketAddr = peer.parse().unwrap();
    let task = tokio::spawn(async move { s.serve(server_io, peer, false, None).await });
    let (rd, wr) = tokio::io::split(client);
    (
        Client {
            rd: BufReader::new(rd),
            wr,
            wait: Duration::from_secs(10),
        },
        task,
    )
}

/// A default server and a client logged in to it over loopback.
pub async fn session(env: &Env) -> (Client, JoinHandle<()>, ImapServer<TestStore>) {
    let server = env.server(ImapConfig::default());
    let (mut c, task) = connect(&server, LOOPBACK);
    c.login().await;
    (c, task, server)
}

impl Client {
    pub async fn line(&mut self) -> String {
        let mut l = String::new();
        let n = tokio::time::timeout(self.wait, self.rd.read_line(&mut l))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "unexpected EOF");
        l
    }

    pub async fn send(&mut self, raw: &str) {
        self.wr.write_all(raw.as_bytes()).await.unwrap();
    }

    /// Sends `tag command` and returns everything up to and including the tagged line.
    pub async fn cmd(&mut self, tag: &str, command: &str) -> String {
        self.send(&format!("{tag} {command}\r\n")).await;
        self.until(tag).await
    }

    pub async fn until(&mut self, tag: &str) -> String {
        let mut all = String::new();
        loop {
            let l = self.line().await;
            all.push_str(&l);
            if l.starts_with(&format!("{tag} ")) {
                return all;
            }
        }
    }

    pub async fn login(&mut self) {
        let greeting = self.line().await;
        assert!(
            greeting.starts_with("* OK [CAPABILITY IMAP4rev2"),
            "{greeting}"
        );
        let r = self.cmd("l", &format!("LOGIN {USER} \"{PASSWORD}\"")).await;
        assert!(r.starts_with("l OK [CAPABILITY "), "{r}");
    }
}
