//! Shared set-up for the session tests: a real store (SQLite in a TempDir, or
//! PostgreSQL with the feature `test-postgres`) with accounts and aliases, a server,
//! and a client that reads replies as a protocol trace.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, dead_code)]

use buudien_auth::{FailureThrottle, ScramCredentials, ThrottleConfig, hash_password};
use buudien_smtp::{Mode, SmtpConfig, SmtpServer};
use buudien_store::{AccountId, MailStore, NewAccount, PasswordRecord, QueueStore, Quota};
use buudien_types::{Address, Domain};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream,
    ReadHalf, WriteHalf,
};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

#[cfg(feature = "test-postgres")]
pub use buudien_store_postgres::{PgStore as TestStore, testing};
/// The store the tests run on, and its fault injection (`testing`): SQLite in a temp
/// dir; with the feature `test-postgres`, PostgreSQL on a fresh database of the
/// throwaway test server. Both backends' `testing` modules have one shape.
#[cfg(not(feature = "test-postgres"))]
pub use buudien_store_sqlite::{SqliteStore as TestStore, testing};
pub use testing::open_store;

pub const ANN: &str = "ann@example.org";
pub const BOB: &str = "bob@example.org";
pub const PASSWORD: &str = "correct horse";
pub const LOOPBACK: &str = "127.0.0.1:40000";
pub const REMOTE: &str = "192.0.2.1:40000";
pub const HOST: &str = "mx.example.org";

/// A fresh store: domain example.org, accounts ann and bob, aliases
/// team@ (ann, bob) and sales@ (ann).
pub struct Env {
    _dir: TempDir,
    pub store: TestStore,
    pub ann: AccountId,
    pub bob: AccountId,
}

pub async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    store
        .add_domain(&Domain::parse("example.org").unwrap())
        .await
        .unwrap();
    let ann = add_account(&store, ANN).await;
    let bob = add_account(&store, BOB).await;
    store
        .add_alias(&addr("team@example.org"), &[addr(ANN), addr(BOB)])
        .await
        .unwrap();
    store
        .add_alias(&addr("sales@example.org"), &[addr(ANN)])
        .await
        .unwrap();
    Env {
        _dir: dir,
        store,
        ann,
        bob,
    }
}

pub fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

pub async fn add_account(store: &TestStore, address: &str) -> AccountId {
    store
        .add_account(NewAccount {
            address: addr(address),
            password: PasswordRecord {
                hash: hash_password(PASSWORD.as_bytes()).unwrap(),
                scram_sha256: ScramCredentials::derive(PASSWORD.as_bytes()).encode(),
            },
            quota: Quota::default(),
        })
        .await
        .unwrap()
}

pub fn fast_throttle(refuse_after: u32) -> Arc<FailureThrottle> {
    Arc::new(FailureThrottle::new(ThrottleConfig {
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        refuse_after,
        ..ThrottleConfig::default()
    }))
}

pub fn config() -> SmtpConfig {
    SmtpConfig {
        hostname: HOST.to_owned(),
        ..SmtpConfig::default()
    }
}

impl Env {
    pub fn server(&self, config: SmtpConfig) -> SmtpServer<TestStore> {
        SmtpServer::new(self.store.clone(), config, fast_throttle(10))
    }

    /// The messages in an account's INBOX, oldest first.
    pub async fn inbox(&self, account: AccountId) -> Vec<String> {
        let drop = self.store.open_maildrop(account).await.unwrap();
        let mut out = Vec::new();
        for e in &drop.entries {
            out.push(self.blob(&e.blob).await);
        }
        out
    }

    pub async fn blob(&self, blob: &buudien_store::BlobId) -> String {
        let mut r = self.store.read_blob(blob).await.unwrap();
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes).await.unwrap();
        String::from_utf8(bytes).unwrap()
    }

    pub async fn queue(&self) -> Vec<buudien_store::QueuedMessage> {
        self.store.queue_list().await.unwrap()
    }

    pub async fn set_quota(&self, address: &str, bytes: Option<u64>) {
        self.store
            .set_quota(
                &addr(address),
                Quota {
                    bytes,
                    messages: None,
                },
            )
            .await
            .unwrap();
    }
}

/// The client end of a session.
pub struct Client<T> {
    pub rd: BufReader<ReadHalf<T>>,
    pub wr: WriteHalf<T>,
}

/// Connects a client to `server` as `peer` in `mode`; returns it and the session task.
pub fn connect(
    server: &SmtpServer<TestStore>,
    peer: &str,
    mode: Mode,
) -> (Client<DuplexStream>, JoinHandle<()>) {
    let (client, server_io) = tokio::io::duplex(1 << 16);
    let s = server.clone();
    let peer: SocketAddr = peer.parse().unwrap();
    let task = tokio::spawn(async move { s.serve(server_io, peer, mode, false, None).await });
    (Client::new(client), task)
}

impl<T: AsyncRead + AsyncWrite> Client<T> {
    pub fn new(io: T) -> Self {
        let (rd, wr) = tokio::io::split(io);
        Client {
            rd: BufReader::new(rd),
            wr,
        }
    }

    /// One line without its CRLF; panics at EOF.
    pub async fn line(&mut self) -> String {
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(20), self.rd.read_until(b'\n', &mut buf))
            .await
            .expect("server answered in time")
            .unwrap();
        assert!(n > 0, "unexpected EOF");
        assert!(buf.ends_with(b"\r\n"), "line without CRLF: {buf:?}");
        buf.truncate(buf.len() - 2);
        String::from_utf8(buf).unwrap()
    }

    /// One whole reply (all lines of a multi-line one), joined with "\n".
    pub async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let l = self.line().await;
            let last = l.as_bytes().get(3) != Some(&b'-');
            lines.push(l);
            if last {
                return lines.join("\n");
            }
        }
    }

    pub async fn send(&mut self, text: &str) {
        self.send_raw(text.as_bytes()).await;
        self.send_raw(b"\r\n").await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.wr.write_all(bytes).await.unwrap();
    }

    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(line).await;
        self.reply().await
    }

    /// Greeting and EHLO; returns the EHLO reply.
    pub async fn hello(&mut self) -> String {
        let g = self.reply().await;
        assert_eq!(g, format!("220 {HOST} ESMTP buudien"));
        self.ehlo().await
    }

    pub async fn ehlo(&mut self) -> String {
        let r = self.cmd("EHLO client.example.net").await;
        assert!(
            r.starts_with(&format!("250-{HOST} greets client.example.net")),
            "{r}"
        );
        r
    }

    /// MAIL, RCPTs (each must be accepted), DATA with `body` (dot-stuffed here);
    /// returns the reply after the data.
    pub async fn message(&mut self, from: &str, to: &[&str], body: &str) -> String {
        let r = self.cmd(&format!("MAIL FROM:<{from}>")).await;
        assert_eq!(r, "250 2.1.0 Ok");
        for t in to {
            let r = self.cmd(&format!("RCPT TO:<{t}>")).await;
            assert_eq!(r, "250 2.1.5 Ok", "RCPT {t}");
        }
        self.data(body).await
    }

    /// DATA, the body (dot-stuffed, CRLF), the terminator; the final reply.
    pub async fn data(&mut self, body: &str) -> String {
        let r = self.cmd("DATA").await;
        assert!(r.starts_with("354 "), "{r}");
        let mut stuffed = String::new();
        for line in body.split_inclusive("\r\n") {
            if line.starts_with('.') {
                stuffed.push('.');
            }
            stuffed.push_str(line);
        }
        self.send_raw(stuffed.as_bytes()).await;
        self.send_raw(b".\r\n").await;
        self.reply().await
    }

    /// True when the server closed the connection (nothing more to read).
    pub async fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(20), self.rd.read_to_end(&mut rest))
            .await
            .expect("server closed in time")
            .unwrap_or(0);
        assert_eq!(n, 0, "more data: {:?}", String::from_utf8_lossy(&rest));
        true
    }
}

/// A TLS acceptor and a connector that trusts it (certificate for mx.example.org).
pub fn tls_pair() -> (TlsAcceptor, TlsConnector) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![HOST.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert_der: CertificateDer<'static> = cert.der().clone();
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert_der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        TlsAcceptor::from(Arc::new(server)),
        TlsConnector::from(Arc::new(client)),
    )
}

/// Starts a session with a TLS acceptor; returns the raw client stream.
pub fn start_tls_capable(
    server: &SmtpServer<TestStore>,
    acceptor: TlsAcceptor,
    peer: &str,
    mode: Mode,
) -> (DuplexStream, JoinHandle<()>) {
    let (client, server_io) = tokio::io::duplex(1 << 16);
    let s = server.clone();
    let peer: SocketAddr = peer.parse().unwrap();
    let task =
        tokio::spawn(async move { s.serve(server_io, peer, mode, false, Some(acceptor)).await });
    (client, task)
}

/// Reads one CRLF line byte by byte, so nothing after it is consumed.
pub async fn raw_line(io: &mut DuplexStream) -> String {
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(20), io.read(&mut b))
            .await
            .expect("server answered in time")
            .unwrap();
        assert_eq!(n, 1, "EOF after {:?}", String::from_utf8_lossy(&line));
        line.push(b[0]);
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).unwrap()
}

/// Reads one whole reply byte by byte.
pub async fn raw_reply(io: &mut DuplexStream) -> String {
    let mut lines = Vec::new();
    loop {
        let l = raw_line(io).await;
        let last = l.as_bytes().get(3) != Some(&b'-');
        lines.push(l);
        if last {
            return lines.join("\n");
        }
    }
}

/// Completes a TLS handshake as a client over `raw`.
pub async fn client_tls(
    connector: &TlsConnector,
    raw: DuplexStream,
) -> Client<tokio_rustls::client::TlsStream<DuplexStream>> {
    let name = ServerName::try_from(HOST).unwrap();
    Client::new(connector.connect(name, raw).await.unwrap())
}
