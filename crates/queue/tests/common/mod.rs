//! A scripted SMTP server on 127.0.0.1 for the queue's integration tests, and the
//! store/worker setup they share.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use buudien_queue::{QueueConfig, QueueHandle, QueueWorker, Resolve, Smarthost, SmarthostTls};
use buudien_store::{
    AccountId, Envelope, MailStore, NewAccount, NewRecipient, PasswordRecord, QueueId, QueueStore,
    Quota, Submission,
};
use buudien_types::{Address, Domain};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[cfg(feature = "test-postgres")]
pub use buudien_store_postgres::{PgStore as TestStore, testing};
/// The store the tests run on, and its fault injection (`testing`): SQLite in a temp
/// dir; with the feature `test-postgres`, PostgreSQL on a fresh database of the
/// throwaway test server. Both backends' `testing` modules have one shape.
#[cfg(not(feature = "test-postgres"))]
pub use buudien_store_sqlite::{SqliteStore as TestStore, testing};
pub use testing::open_store;

/// Reply for a RCPT: (connection number from 0, address) → reply line.
pub type RcptFn = Arc<dyn Fn(usize, &str) -> String + Send + Sync>;
/// Reply after the final dot: connection number → reply line.
pub type DataFn = Arc<dyn Fn(usize) -> String + Send + Sync>;

/// How the fake server behaves.
#[derive(Clone)]
pub struct Behaviour {
    /// EHLO keywords after the first line.
    pub extensions: Vec<&'static str>,
    pub rcpt: RcptFn,
    pub data: DataFn,
    /// Wait this long before the reply after the final dot.
    pub data_delay: Duration,
    /// Offer STARTTLS with this configuration (and use it for implicit TLS).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// TLS from the first byte.
    pub implicit_tls: bool,
    /// AUTH PLAIN: the accepted `user`, `password`.
    pub auth: Option<(String, String)>,
    /// Extensions offered only after STARTTLS.
    pub tls_extensions: Vec<&'static str>,
}

impl Behaviour {
    /// Accepts everything; offers PIPELINING, 8BITMIME, DSN, SMTPUTF8, SIZE.
    pub fn accept_all() -> Behaviour {
        Behaviour {
            extensions: vec!["PIPELINING", "8BITMIME", "DSN", "SMTPUTF8", "SIZE 10000000"],
            rcpt: Arc::new(|_, _| "250 2.1.5 ok".into()),
            data: Arc::new(|_| "250 2.0.0 queued as FAKE".into()),
            data_delay: Duration::ZERO,
            tls: None,
            implicit_tls: false,
            auth: None,
            tls_extensions: Vec::new(),
        }
    }

    /// Offers STARTTLS with a fresh self-signed certificate.
    pub fn starttls(mut self) -> Behaviour {
        self.tls = Some(self_signed());
        self
    }

    pub fn extensions(mut self, ext: &[&'static str]) -> Behaviour {
        self.extensions = ext.to_vec();
        self
    }

    pub fn rcpt(mut self, f: impl Fn(usize, &str) -> String + Send + Sync + 'static) -> Behaviour {
        self.rcpt = Arc::new(f);
        self
    }
}

/// One message the fake server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub connection: usize,
    pub mail: String,
    /// The accepted RCPT command lines.
    pub rcpts: Vec<String>,
    /// The message, dot-unstuffed.
    pub data: Vec<u8>,
    /// It came over TLS.
    pub tls: bool,
    /// The EHLO commands of the session, in order.
    pub ehlos: Vec<String>,
    /// The authenticated user.
    pub user: Option<String>,
}

#[derive(Clone)]
pub struct Fake {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub connections: Arc<AtomicUsize>,
    pub active: Arc<AtomicUsize>,
    pub max_active: Arc<AtomicUsize>,
}

impl Fake {
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

pub async fn fake_server(b: Behaviour) -> Fake {
    fake_server_on(b, "127.0.0.1:0").await
}

/// A fake server on a given address (MX tests put several on one port, on
/// different loopback addresses).
pub async fn fake_server_on(b: Behaviour, addr: &str) -> Fake {
    let listener = TcpListener::bind(addr).await.unwrap();
    let fake = Fake {
        addr: listener.local_addr().unwrap(),
        received: Arc::default(),
        connections: Arc::default(),
        active: Arc::default(),
        max_active: Arc::default(),
    };
    let f = fake.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let n = f.connections.fetch_add(1, Ordering::SeqCst);
            let now = f.active.fetch_add(1, Ordering::SeqCst) + 1;
            f.max_active.fetch_max(now, Ordering::SeqCst);
            let (b, f) = (b.clone(), f.clone());
            tokio::spawn(async move {
                let mut st = State {
                    n,
                    quit: false,
                    ehlos: Vec::new(),
                    user: None,
                };
                let _ = serve(sock, &b, &f, &mut st).await;
                if !st.quit {
                    f.active.fetch_sub(1, Ordering::SeqCst);
                }
            });
        }
    });
    fake
}

/// A certificate for "fake.test" that no client trusts.
pub fn self_signed() -> Arc<rustls::ServerConfig> {
    let ck = rcgen::generate_simple_self_signed(vec!["fake.test".to_string()]).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::try_from(ck.key_pair.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    Arc::new(cfg)
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

struct State {
    n: usize,
    /// QUIT arrived: the connection was counted inactive then (the client still
    /// holds its slot until the 221).
    quit: bool,
    ehlos: Vec<String>,
    user: Option<String>,
}

async fn serve(
    sock: tokio::net::TcpStream,
    b: &Behaviour,
    f: &Fake,
    st: &mut State,
) -> std::io::Result<()> {
    let mut io: Box<dyn Io> = Box::new(sock);
    let mut tls = false;
    if b.implicit_tls {
        let acceptor = tokio_rustls::TlsAcceptor::from(b.tls.clone().unwrap());
        io = Box::new(acceptor.accept(io).await?);
        tls = true;
    }
    io.write_all(b"220 fake.test ESMTP\r\n").await?;
    loop {
        match session(io, tls, b, f, st).await? {
            Some(plain) => {
                // STARTTLS: RFC 3207 §4.2, a fresh session over TLS.
                let acceptor = tokio_rustls::TlsAcceptor::from(b.tls.clone().unwrap());
                io = Box::new(acceptor.accept(plain).await?);
                tls = true;
            }
            None => return Ok(()),
        }
    }
}

/// Runs commands until QUIT/EOF (`None`), or returns the stream after STARTTLS.
async fn session(
    io: Box<dyn Io>,
    tls: bool,
    b: &Behaviour,
    f: &Fake,
    st: &mut State,
) -> std::io::Result<Option<Box<dyn Io>>> {
    let n = st.n;
    let mut r = BufReader::new(io);
    let mut mail = String::new();
    let mut rcpts = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            st.ehlos.push(cmd.clone());
            let mut s = String::from("250-fake.test\r\n");
            let mut ext = b.extensions.clone();
            if tls {
                ext.extend(b.tls_extensions.iter().copied());
            } else if b.tls.is_some() {
                ext.push("STARTTLS");
            }
            if b.auth.is_some() {
                ext.push("AUTH PLAIN");
            }
            for e in ext {
                s.push_str(&format!("250-{e}\r\n"));
            }
            s.push_str("250 HELP");
            s
        } else if upper == "STARTTLS" && !tls && b.tls.is_some() {
            r.get_mut().write_all(b"220 2.0.0 ready\r\n").await?;
            return Ok(Some(r.into_inner()));
        } else if let Some(token) = upper
            .strip_prefix("AUTH PLAIN ")
            .map(|_| cmd["AUTH PLAIN ".len()..].to_string())
        {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(token)
                .unwrap_or_default();
            let parts: Vec<&[u8]> = raw.split(|c| *c == 0).collect();
            let ok = b.auth.as_ref().is_some_and(|(u, p)| {
                parts.len() == 3 && parts[1] == u.as_bytes() && parts[2] == p.as_bytes()
            });
            if ok {
                st.user = b.auth.as_ref().map(|(u, _)| u.clone());
                "235 2.7.0 ok".into()
            } else {
                "535 5.7.8 bad credentials".into()
            }
        } else if upper.starts_with("HELO")
            || upper.starts_with("RSET")
            || upper.starts_with("NOOP")
        {
            "250 ok".into()
        } else if upper.starts_with("MAIL FROM:") {
            if b.auth.is_some() && st.user.is_none() {
                "530 5.7.0 authentication required".into()
            } else {
                mail = cmd.clone();
                rcpts.clear();
                "250 2.1.0 ok".into()
            }
        } else if upper.starts_with("RCPT TO:") {
            let addr = cmd
                .split_once('<')
                .and_then(|(_, a)| a.split_once('>'))
                .map(|(a, _)| a.to_string())
                .unwrap_or_default();
            let reply = (b.rcpt)(n, &addr);
            if reply.starts_with('2') {
                rcpts.push(cmd.clone());
            }
            reply
        } else if upper == "DATA" {
            if rcpts.is_empty() {
                "554 5.5.1 no valid recipients".into()
            } else {
                r.get_mut().write_all(b"354 go ahead\r\n").await?;
                let mut data = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if r.read_until(b'\n', &mut l).await? == 0 {
                        return Ok(None);
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    let l = l.strip_prefix(b".").map(<[u8]>::to_vec).unwrap_or(l);
                    data.extend_from_slice(&l);
                }
                tokio::time::sleep(b.data_delay).await;
                let reply = (b.data)(n);
                if reply.starts_with('2') {
                    f.received.lock().unwrap().push(Received {
                        connection: n,
                        mail: mail.clone(),
                        rcpts: rcpts.clone(),
                        data,
                        tls,
                        ehlos: st.ehlos.clone(),
                        user: st.user.clone(),
                    });
                }
                reply
            }
        } else if upper == "QUIT" {
            st.quit = true;
            f.active.fetch_sub(1, Ordering::SeqCst);
            r.get_mut().write_all(b"221 bye\r\n").await?;
            let mut rest = Vec::new();
            let _ = r.read_to_end(&mut rest).await;
            return Ok(None);
        } else {
            "500 5.5.2 what?".into()
        };
        r.get_mut()
            .write_all(format!("{reply}\r\n").as_bytes())
            .await?;
    }
}

pub struct Env {
    pub store: TestStore,
    pub ann: AccountId,
    _dir: tempfile::TempDir,
}

impl Env {
    /// The store's data directory.
    #[allow(dead_code)]
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }
}

/// A store with local.example and ann@local.example.
pub async fn store() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    store
        .add_domain(&Domain::parse("local.example").unwrap())
        .await
        .unwrap();
    let ann = store
        .add_account(NewAccount {
            address: Address::parse("ann@local.example").unwrap(),
            password: PasswordRecord {
                hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
                scram_sha256: "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5".into(),
            },
            quota: Quota::default(),
        })
        .await
        .unwrap();
    Env {
        store,
        ann,
        _dir: dir,
    }
}

/// Test settings: retry after 100 ms, then 200 ms; quick polling; short timeouts.
pub fn config(smarthost: Option<SocketAddr>) -> QueueConfig {
    let mut c = QueueConfig {
        hostname: "mail.local.example".into(),
        smarthost: smarthost.map(|a| Smarthost {
            host: a.ip().to_string(),
            port: a.port(),
            tls: SmarthostTls::None,
            auth: None,
        }),
        retry: vec![Duration::from_millis(100), Duration::from_millis(200)],
        poll_interval: Duration::from_millis(50),
        lease: Duration::from_secs(3),
        shutdown_grace: Duration::from_secs(2),
        ..QueueConfig::default()
    };
    c.timeouts.connect = Duration::from_secs(2);
    c.timeouts.greeting = Duration::from_secs(5);
    c.timeouts.command = Duration::from_secs(5);
    c.timeouts.mail = Duration::from_secs(5);
    c.timeouts.rcpt = Duration::from_secs(5);
    c.timeouts.data_init = Duration::from_secs(5);
    c.timeouts.data_block = Duration::from_secs(5);
    c.timeouts.data_end = Duration::from_secs(5);
    c
}

pub struct Running {
    pub handle: QueueHandle,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

pub fn start(store: TestStore, config: QueueConfig, resolver: Option<Arc<dyn Resolve>>) -> Running {
    let worker = match resolver {
        Some(r) => QueueWorker::with_resolver(store, config, r).unwrap(),
        None => QueueWorker::new(store, config).unwrap(),
    };
    let handle = worker.handle();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(worker.run(rx));
    Running { handle, stop, task }
}

pub fn envelope(sender: &str) -> Envelope {
    Envelope {
        sender: sender.into(),
        envid: None,
        ret: None,
        eight_bit: false,
        smtputf8: false,
    }
}

pub fn rcpt(address: &str) -> NewRecipient {
    NewRecipient {
        address: address.into(),
        orcpt: None,
        notify: None,
    }
}

pub async fn queue(
    store: &TestStore,
    msg: &[u8],
    env: &Envelope,
    rcpts: &[NewRecipient],
) -> QueueId {
    store
        .submit(Submission {
            message: msg,
            local_prefix: &[],
            received: SystemTime::now(),
            local: &[],
            outbound: Some((env, rcpts)),
        })
        .await
        .unwrap()
        .queued
        .unwrap()
}

/// Waits until `f` holds (polling every 20 ms), or panics after `secs`.
pub async fn until<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn queue_empty(store: &TestStore) -> bool {
    store.queue_list().await.unwrap().is_empty()
}

/// The messages in an account's INBOX.
pub async fn inbox(store: &TestStore, account: AccountId) -> Vec<String> {
    let drop = store.open_maildrop(account).await.unwrap();
    let mut out = Vec::new();
    for e in &drop.entries {
        let mut r = store.read_blob(&e.blob).await.unwrap();
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes).await.unwrap();
        out.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    out
}

pub const MESSAGE: &[u8] =
    b"From: ann@local.example\r\nTo: bob@remote.example\r\nSubject: test\r\n\r\nHello Bob.\r\n.leading dot\r\n";
