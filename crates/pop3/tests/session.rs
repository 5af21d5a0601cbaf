//! Whole POP3 sessions over an in-memory duplex against a real store: the tests
//! read like protocol traces (C: what the client sends, the asserts what the server
//! answers).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use buudien_auth::{FailureThrottle, ScramCredentials, ThrottleConfig, hash_password};
use buudien_pop3::{Limits, Pop3Config, Pop3Server};
use buudien_store::{AccountId, MailStore, NewAccount, PasswordRecord, Quota};
use buudien_types::{Address, Domain};
use md5::{Digest, Md5};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tempfile::TempDir;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream,
    ReadHalf, WriteHalf,
};
use tokio::task::JoinHandle;

const USER: &str = "ann@example.org";
const PASSWORD: &str = "correct horse";
const LOOPBACK: &str = "127.0.0.1:40000";
const REMOTE: &str = "192.0.2.1:40000";

const MSG1: &str = "From: bob@example.org\r\nSubject: one\r\n\r\nline 1\r\n.dot line\r\nline 3\r\n";
const MSG2: &str = "Subject: two\r\n\r\nbody\r\n";
const UTF8_MSG: &str = "Subject: Grüße\r\n\r\nhi\r\n";

/// A fresh store with one account.
struct Env {
    _dir: TempDir,
    store: common::TestStore,
    account: AccountId,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_store(dir.path()).await;
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
            quota: Quota::default(),
        })
        .await
        .unwrap();
    Env {
        _dir: dir,
        store,
        account,
    }
}

impl Env {
    async fn deliver(&self, msg: &str) {
        self.store
            .deliver(&[self.account], msg.as_bytes(), SystemTime::now())
            .await
            .unwrap();
    }

    fn server(&self, config: Pop3Config) -> Pop3Server<common::TestStore> {
        self.server_with(config, fast_throttle(10))
    }

    fn server_with(
        &self,
        config: Pop3Config,
        throttle: Arc<FailureThrottle>,
    ) -> Pop3Server<common::TestStore> {
        Pop3Server::new(self.store.clone(), config, throttle)
    }

    async fn inbox_count(&self) -> u64 {
        let boxes = self.store.mailboxes(self.account).await.unwrap();
        boxes.iter().find(|b| b.name == "INBOX").unwrap().messages
    }
}

fn fast_throttle(refuse_after: u32) -> Arc<FailureThrottle> {
    Arc::new(FailureThrottle::new(ThrottleConfig {
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        refuse_after,
        ..ThrottleConfig::default()
    }))
}

fn config() -> Pop3Config {
    Pop3Config::default()
}

/// The client end of a session.
struct Client<T> {
    rd: BufReader<ReadHalf<T>>,
    wr: WriteHalf<T>,
}

/// Connects a client to `server` as `peer`; returns it and the session's task.
fn connect(
    server: &Pop3Server<common::TestStore>,
    peer: &str,
) -> (Client<DuplexStream>, JoinHandle<()>) {
    let (client, server_io) = tokio::io::duplex(1 << 16);
    let s = server.clone();
    let peer: SocketAddr = peer.parse().unwrap();
    let task = tokio::spawn(async move { s.serve(server_io, peer, false, None).await });
    (Client::new(client), task)
}

impl<T: AsyncRead + AsyncWrite> Client<T> {
    fn new(io: T) -> Self {
        let (rd, wr) = tokio::io::split(io);
        Client {
            rd: BufReader::new(rd),
            wr,
        }
    }

    /// One line without its CRLF; panics at EOF.
    async fn line(&mut self) -> String {
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

    async fn send(&mut self, line: &str) {
        self.wr.write_all(line.as_bytes()).await.unwrap();
        self.wr.write_all(b"\r\n").await.unwrap();
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(line).await;
        self.line().await
    }

    /// The lines of a multi-line body, up to (without) the final ".".
    async fn body(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self.line().await;
            if l == "." {
                return lines;
            }
            lines.push(l);
        }
    }

    /// A multi-line command: the status line must be +OK; returns the body.
    async fn multi(&mut self, line: &str) -> Vec<String> {
        let status = self.cmd(line).await;
        assert!(status.starts_with("+OK"), "{line}: {status}");
        self.body().await
    }

    /// True when the server closed the connection (nothing more to read).
    async fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(20), self.rd.read_to_end(&mut rest))
            .await
            .expect("server closed in time")
            .unwrap_or(0);
        assert_eq!(n, 0, "more data: {:?}", String::from_utf8_lossy(&rest));
        true
    }

    async fn greeting(&mut self) -> String {
        let g = self.line().await;
        assert!(g.starts_with("+OK buudien ready"), "{g}");
        g
    }

    /// Greeting, USER, PASS; asserts the maildrop opened.
    async fn login(&mut self) -> String {
        self.greeting().await;
        assert!(self.cmd(&format!("USER {USER}")).await.starts_with("+OK"));
        let r = self.cmd(&format!("PASS {PASSWORD}")).await;
        assert!(r.starts_with("+OK maildrop has"), "{r}");
        r
    }
}

#[tokio::test]
async fn user_pass_stat_list_uidl() {
    let env = env().await;
    env.deliver(MSG1).await;
    env.deliver(MSG2).await;
    let server = env.server(config());
    let (mut c, task) = connect(&server, LOOPBACK);
    let (s1, s2) = (MSG1.len(), MSG2.len());
    assert_eq!(
        c.login().await,
        format!("+OK maildrop has 2 messages ({} octets)", s1 + s2)
    );
    assert_eq!(c.cmd("STAT").await, format!("+OK 2 {}", s1 + s2));
    assert_eq!(c.cmd("LIST 2").await, format!("+OK 2 {s2}"));
    assert_eq!(c.cmd("LIST 3").await, "-ERR no such message");
    assert_eq!(
        c.multi("LIST").await,
        vec![format!("1 {s1}"), format!("2 {s2}")]
    );
    let uidl = c.multi("UIDL").await;
    assert_eq!(uidl.len(), 2);
    let ids: Vec<&str> = uidl.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    for id in &ids {
        assert_eq!(id.len(), 16);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    assert_ne!(ids[0], ids[1]);
    assert!(ids[0].ends_with("00000001") && ids[1].ends_with("00000002"));
    assert_eq!(c.cmd("UIDL 1").await, format!("+OK 1 {}", ids[0]));
    assert_eq!(c.cmd("NOOP").await, "+OK");
    assert_eq!(
        c.cmd("QUIT").await,
        "+OK buudien signing off (0 messages deleted)"
    );
    assert!(c.closed().await);
    task.await.unwrap();

    // The unique-ids are stable across sessions.
    let (mut c, _) = connect(&server, LOOPBACK);
    c.login().await;
    let again = c.multi("UIDL").await;
    assert_eq!(again, uidl);
}

#[tokio::test]
async fn auth_plain_and_login() {
    let env = env().await;
    env.deliver(MSG1).await;
    let server = env.server(config());
    let plain = B64.encode(format!("\0{USER}\0{PASSWORD}"));

    // PLAIN with an initial response.
    let (mut c, _) = connect(&server, LOOPBACK);
    c.greeting().await;
    let r = c.cmd(&format!("AUTH PLAIN {plain}")).await;
    assert!(r.starts_with("+OK maildrop has 1 messages"), "{r}");
    assert_eq!(
        c.cmd("QUIT").await,
        "+OK buudien signing off (0 messages deleted)"
    );

    // PLAIN with the message in a continuation; lower-case mechanism name.
    let (mut c, _) = connect(&server, LOOPBACK);
    c.greeting().await;
    assert_eq!(c.cmd("AUTH plain").await, "+ ");
    assert!(c.cmd(&plain).await.starts_with("+OK maildrop has 1"));
    c.cmd("QUIT").await;

    // PLAIN with authzid equal to the login.
    let (mut c, _) = connect(&server, LOOPBACK);
    c.greeting().await;
    let with_authzid = B64.encode(format!("{USER}\0{USER}\0{PASSWORD}"));
    assert!(
        c.cmd(&format!("AUTH PLAIN {with_authzid}"))
            .await
            .starts_with("+OK maildrop")
    );
    c.cmd("QUIT").await;

    // LOGIN in two continuations.
    let (mut c, _) = connect(&server, LOOPBACK);
    c.greeting().await;
    assert_eq!(
        c.cmd("AUTH LOGIN").await,
        format!("+ {}", B64.encode("Username:"))
    );
    assert_eq!(
        c.cmd(&B64.encode(USER)).await,
        format!("+ {}", B64.encode("Password:"))
    );
    assert!(
        c.cmd(&B64.encode(PASSWORD))
            .await
            .starts_with("+OK maildrop")
    );
    c.cmd("QUIT").await;

    // LOGIN with the user name as initial response.
    let (mut c, _) = connect(&server, LOOPBACK);
    c.greeting().await;
    assert_eq!(
        c.cmd(&format!("AUTH LOGIN {}", B64.encode(USER))).await,
        format!("+ {}", B64.encode("Password:"))
    );
    assert!(
        c.cmd(&B64.encode(PASSWORD))
            .await
            .starts_with("+OK maildrop")
    );
    c.cmd("QUIT").await;
}

#[tokio::test]
async fn auth_listing_cancel_and_refusals() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, LOOPBACK);
    c.greeting().await;
    assert_eq!(c.multi("AUTH").await, vec!["PLAIN", "LOGIN"]);
    assert_eq!(c.cmd("AUTH PLAIN").await, "+ ");
    assert_eq!(c.cmd("*").await, "-ERR authentication cancelled");
    assert_eq!(
        c.cmd("AUTH CRAM-MD5").await,
        "-ERR unsupported SASL mechanism"
    );
    assert!(c.cmd("AUTH PLAIN !!!").await.starts_with("-ERR"));
    // An empty initial response ("=") is not a valid PLAIN message.
    assert!(c.cmd("AUTH PLAIN =").await.starts_with("-ERR"));
    // An authzid other than the login is refused like a wrong password.
    let other = B64.encode(format!("bob@example.org\0{USER}\0{PASSWORD}"));
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {other}")).await,
        "-ERR [AUTH] invalid credentials"
    );
    // Still in AUTHORIZATION and usable.
    assert!(c.cmd(&format!("USER {USER}")).await.starts_with("+OK"));
    assert!(
        c.cmd(&format!("PASS {PASSWORD}"))
            .await
            .starts_with("+OK maildrop")
    );
}

#[tokio::test]
async fn wrong_passwords_then_close() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, task) = connect(&server, LOOPBACK);
    c.greeting().await;
    c.cmd(&format!("USER {USER}")).await;
    assert_eq!(c.cmd("PASS wrong").await, "-ERR [AUTH] invalid credentials");
    // An unknown user gets the same answer.
    c.cmd("USER nobody@example.org").await;
    assert_eq!(c.cmd("PASS wrong").await, "-ERR [AUTH] invalid credentials");
    // PASS without USER is a bad command, not a login failure.
    assert_eq!(c.cmd("PASS wrong").await, "-ERR send USER first");
    let bad = B64.encode(format!("\0{USER}\0nope"));
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {bad}")).await,
        "-ERR [AUTH] invalid credentials"
    );
    // Third failure: the session is over.
    assert!(c.closed().await);
    task.await.unwrap();
}

#[tokio::test]
async fn throttle_refuses_with_sys_temp() {
    let env = env().await;
    let throttle = fast_throttle(2);
    let server = env.server_with(config(), throttle.clone());
    let (mut c, _) = connect(&server, LOOPBACK);
    c.greeting().await;
    for _ in 0..2 {
        c.cmd(&format!("USER {USER}")).await;
        assert_eq!(c.cmd("PASS wrong").await, "-ERR [AUTH] invalid credentials");
    }
    drop(c);

    // The address is now refused, even with the right password.
    let (mut c, _) = connect(&server, LOOPBACK);
    c.greeting().await;
    c.cmd(&format!("USER {USER}")).await;
    assert_eq!(
        c.cmd(&format!("PASS {PASSWORD}")).await,
        "-ERR [SYS/TEMP] too many failed logins, try later"
    );

    // Another address is not.
    let config = Pop3Config {
        allow_plaintext_auth: true,
        ..config()
    };
    let server = env.server_with(config, throttle);
    let (mut c, _) = connect(&server, REMOTE);
    c.login().await;
}

#[tokio::test]
async fn plaintext_refused_from_remote_peer() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, REMOTE);
    c.greeting().await;
    let caps = c.multi("CAPA").await;
    assert!(!caps.iter().any(|l| l == "USER"), "{caps:?}");
    assert!(!caps.iter().any(|l| l.starts_with("SASL")), "{caps:?}");
    assert!(!caps.iter().any(|l| l == "STLS"), "no acceptor: {caps:?}");
    let refused = "-ERR [AUTH] plaintext authentication disallowed, use STLS";
    assert_eq!(c.cmd(&format!("USER {USER}")).await, refused);
    assert_eq!(c.cmd(&format!("PASS {PASSWORD}")).await, refused);
    let plain = B64.encode(format!("\0{USER}\0{PASSWORD}"));
    assert_eq!(c.cmd(&format!("AUTH PLAIN {plain}")).await, refused);
    assert_eq!(c.multi("AUTH").await, Vec::<String>::new());
    assert!(c.cmd("QUIT").await.starts_with("+OK"));

    // allow_plaintext_auth lifts it.
    let server = env.server(Pop3Config {
        allow_plaintext_auth: true,
        ..config()
    });
    let (mut c, _) = connect(&server, REMOTE);
    c.greeting().await;
    let caps = c.multi("CAPA").await;
    assert!(caps.iter().any(|l| l == "USER"), "{caps:?}");
}

#[tokio::test]
async fn capa_lists_by_state() {
    let env = env().await;
    let server = env.server(Pop3Config {
        login_delay: Some(Duration::from_millis(1500)),
        ..config()
    });
    let (mut c, _) = connect(&server, LOOPBACK);
    c.greeting().await;
    let caps = c.multi("CAPA").await;
    for want in [
        "TOP",
        "UIDL",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "EXPIRE NEVER",
        "UTF8",
        "IMPLEMENTATION buudien",
        "USER",
        "SASL PLAIN LOGIN",
        "LOGIN-DELAY 2",
    ] {
        assert!(caps.iter().any(|l| l == want), "{want} missing: {caps:?}");
    }
    c.cmd(&format!("USER {USER}")).await;
    c.cmd(&format!("PASS {PASSWORD}")).await;
    let caps = c.multi("CAPA").await;
    assert!(caps.iter().any(|l| l == "TOP"));
    assert!(!caps.iter().any(|l| l == "USER" || l.starts_with("SASL")));
}

#[tokio::test]
async fn login_delay_is_enforced() {
    let env = env().await;
    let server = env.server(Pop3Config {
        login_delay: Some(Duration::from_secs(300)),
        ..config()
    });
    let (mut c, _) = connect(&server, LOOPBACK);
    c.login().await;
    assert!(c.cmd("QUIT").await.starts_with("+OK"));
    let (mut c, _) = connect(&server, LOOPBACK);
    c.greeting().await;
    c.cmd(&format!("USER {USER}")).await;
    assert_eq!(
        c.cmd(&format!("PASS {PASSWORD}")).await,
        "-ERR [LOGIN-DELAY] minimum time between logins not reached"
    );
}

#[tokio::test]
async fn retr_is_dot_stuffed() {
    let env = env().await;
    env.deliver(MSG1).await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, LOOPBACK);
    c.login().await;
    assert_eq!(c.cmd("RETR 1").await, format!("+OK {} octets", MSG1.len()));
    assert_eq!(
        c.body().await,
        vec![
            "From: bob@example.org",
            "Subject: one",
            "",
            "line 1",
            "..dot line",
            "line 3"
        ]
    );
    assert_eq!(c.cmd("RETR 2").await, "-ERR no such message");
    assert!(c.cmd("RETR 0").await.starts_with("-ERR"));
}

#[tokio::test]
async fn retr_of_a_large_message_streams() {
    let env = env().await;
    let mut big = String::from("Subject: big\r\n\r\n");
    for i in 0..20_000 {
        big.push_str(&format!(
            ".line {i} of a message that is larger than the chunks\r\n"
        ));
    }
    env.deliver(&big).await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, LOOPBACK);
    c.login().await;
    assert_eq!(c.cmd("RETR 1").await, format!("+OK {} octets", big.len()));
    let body = c.body().await;
    assert_eq!(body.len(), 20_002);
    assert_eq!(
        body[2],
        "..line 0 of a message that is larger than the chunks"
    );
    assert_eq!(
        body[20_001],
        "..line 19999 of a message that is larger than the chunks"
    );
    assert_eq!(c.cmd("NOOP").await, "+OK");
}

#[tokio::test]
async fn top_zero_and_one() {
    let env = env().await;
    env.deliver(MSG1).await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, LOOPBACK);
    c.login().await;
    assert_eq!(
        c.multi("TOP 1 0").await,
        vec!["From: bob@example.org", "Subject: one", ""]
    );
    assert_eq!(
        c.multi("TOP 1 1").await,
        vec!["From: bob@example.org", "Subject: one", "", "line 1"]
    );
    assert_eq!(
        c.multi("TOP 1 2").await,
        vec![
            "From: bob@example.org",
            "Subject: one",
            "",
            "line 1",
            "..dot line"
        ]
    );
    assert_eq!(c.multi("TOP 1 99999999999").await.len(), 6);
    assert_eq!(c.cmd("TOP 2 0").await, "-ERR no such message");
}

#[tokio::test]
async fn dele_quit_expunges() {
    let env = env().await;
    env.deliver(MSG1).await;
    env.deliver(MSG2).await;
    let server = env.server(config());
    let (mut c, task) = connect(&server, LOOPBACK);
    c.login().await;
    assert_eq!(c.cmd("DELE 1").await, "+OK message 1 deleted");
    assert_eq!(c.cmd("DELE 1").await, "-ERR message 1 already deleted");
    assert_eq!(c.cmd("RETR 1").await, "-ERR message 1 already deleted");
    assert_eq!(c.cmd("DELE 3").await, "-ERR no such message");
    assert_eq!(c.cmd("STAT").await, format!("+OK 1 {}", MSG2.len()));
    assert_eq!(c.multi("LIST").await, vec![format!("2 {}", MSG2.len())]);
    assert_eq!(
        c.cmd("QUIT").await,
        "+OK buudien signing off (1 messages deleted)"
    );
    assert!(c.closed().await);
    task.await.unwrap();
    assert_eq!(env.inbox_count().await, 1);

    let (mut c, _) = connect(&server, LOOPBACK);
    assert_eq!(
        c.login().await,
        format!("+OK maildrop has 1 messages ({} octets)", MSG2.len())
    );
    assert_eq!(c.multi("TOP 1 0").await, vec!["Subject: two", ""]);
}

#[tokio::test]
async fn dele_then_drop_deletes_nothing() {
    let env = env().await;
    env.deliver(MSG1).await;
    let server = env.server(config());
    let (mut c, task) = connect(&server, LOOPBACK);
    c.login().await;
    assert!(c.cmd("DELE 1").await.starts_with("+OK"));
    drop(c);
    task.await.unwrap();
    assert_eq!(env.inbox_count().await, 1);
    // The lock died with the session.
    let (mut c, _) = connect(&server, LOOPBACK);
    c.login().await;
}

#[tokio::test]
async fn rset_unmarks() {
    let env = env().await;
    env.deliver(MSG1).await;
    env.deliver(MSG2).await;
    let server = env.server(config());
    let (mut c, task) = connect(&server, LOOPBACK);
    c.login().await;
    c.cmd("DELE 1").await;
    c.cmd("DELE 2").await;
    assert_eq!(c.cmd("STAT").await, "+OK 0 0");
    assert_eq!(
        c.cmd("RSET").await,
        format!(
            "+OK maildrop has 2 messages ({} octets)",
            MSG1.len() + MSG2.len()
        )
    );
    assert_eq!(
        c.cmd("QUIT").await,
        "+OK buudien signing off (0 messages deleted)"
    );
    task.await.unwrap();
    assert_eq!(env.inbox_count().await, 2);
}

#[tokio::test]
async fn maildrop_lock() {
    let env = env().await;
    env.deliver(MSG1).await;
    let server = env.server(config());
    let (mut first, task) = connect(&server, LOOPBACK);
    first.login().await;
    let (mut second, _) = connect(&server, LOOPBACK);
    second.greeting().await;
    second.cmd(&format!("USER {USER}")).await;
    assert_eq!(
        second.cmd(&format!("PASS {PASSWORD}")).await,
        "-ERR [IN-USE] maildrop already locked"
    );
    // Still in AUTHORIZATION.
    assert!(second.cmd("STAT").await.starts_with("-ERR"));
    assert!(first.cmd("QUIT").await.starts_with("+OK"));
    task.await.unwrap();
    second.cmd(&format!("USER {USER}")).await;
    assert!(
        second
            .cmd(&format!("PASS {PASSWORD}"))
            .await
            .starts_with("+OK maildrop")
    );
}

#[tokio::test]
async fn without_lock_two_sessions_share_the_maildrop() {
    let env = env().await;
    env.deliver(MSG1).await;
    env.deliver(MSG2).await;
    let server = env.server(Pop3Config {
        lock_session: false,
        ..config()
    });
    let (mut a, task_a) = connect(&server, LOOPBACK);
    a.login().await;
    let (mut b, _) = connect(&server, LOOPBACK);
    b.login().await;

    // A expunges message 1; B, whose snapshot predates it, can still read it.
    a.cmd("DELE 1").await;
    assert!(a.cmd("QUIT").await.starts_with("+OK"));
    task_a.await.unwrap();
    assert_eq!(env.inbox_count().await, 1);
    assert_eq!(b.cmd("RETR 1").await, format!("+OK {} octets", MSG1.len()));
    assert_eq!(b.body().await.len(), 6);

    // B deletes both; the already-gone one is skipped by the store.
    b.cmd("DELE 1").await;
    b.cmd("DELE 2").await;
    assert_eq!(
        b.cmd("QUIT").await,
        "+OK buudien signing off (2 messages deleted)"
    );
    assert!(b.closed().await);
    assert_eq!(env.inbox_count().await, 0);
}

#[tokio::test]
async fn snapshot_is_fixed_for_the_session() {
    let env = env().await;
    env.deliver(MSG1).await;
    let server = env.server(config());
    let (mut c, task) = connect(&server, LOOPBACK);
    c.login().await;
    env.deliver(MSG2).await;
    assert_eq!(c.cmd("STAT").await, format!("+OK 1 {}", MSG1.len()));
    assert_eq!(c.cmd("LIST 2").await, "-ERR no such message");
    c.cmd("QUIT").await;
    task.await.unwrap();

    let (mut c, _) = connect(&server, LOOPBACK);
    c.login().await;
    assert_eq!(
        c.cmd("STAT").await,
        format!("+OK 2 {}", MSG1.len() + MSG2.len())
    );
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let env = env().await;
    env.deliver(MSG2).await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, LOOPBACK);
    c.greeting().await;
    c.wr.write_all(
        format!("USER {USER}\r\nPASS {PASSWORD}\r\nSTAT\r\nLIST\r\nRETR 1\r\nNOOP\r\nQUIT\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    assert!(c.line().await.starts_with("+OK"));
    assert!(c.line().await.starts_with("+OK maildrop has 1"));
    assert_eq!(c.line().await, format!("+OK 1 {}", MSG2.len()));
    assert!(c.line().await.starts_with("+OK"));
    assert_eq!(c.body().await, vec![format!("1 {}", MSG2.len())]);
    assert!(c.line().await.starts_with("+OK"));
    assert_eq!(c.body().await, vec!["Subject: two", "", "body"]);
    assert_eq!(c.line().await, "+OK");
    assert!(c.line().await.starts_with("+OK buudien signing off"));
    assert!(c.closed().await);
}

#[tokio::test]
async fn long_line_is_refused_and_session_goes_on() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, LOOPBACK);
    c.greeting().await;
    // 254 octets + CRLF = 256 octets: one too many.
    let long = format!("USER {}", "a".repeat(249));
    assert_eq!(long.len(), 254);
    assert_eq!(c.cmd(&long).await, "-ERR line too long");
    // 253 + CRLF = 255 is fine.
    let ok = format!("USER {}", "a".repeat(248));
    assert!(c.cmd(&ok).await.starts_with("+OK"));
    // A much longer one, split over several writes.
    let huge = format!("NOOP {}", "b".repeat(100_000));
    assert_eq!(c.cmd(&huge).await, "-ERR line too long");
    assert!(c.multi("CAPA").await.len() > 3);
}

#[tokio::test]
async fn bad_commands_close_the_session() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, task) = connect(&server, LOOPBACK);
    c.greeting().await;
    assert_eq!(c.cmd("FOO").await, "-ERR unknown command FOO");
    assert!(c.cmd("STAT").await.starts_with("-ERR STAT not allowed"));
    // A good command resets the count.
    assert!(c.multi("CAPA").await.len() > 3);
    for i in 0..9 {
        let r = c.cmd(&format!("BAD{i}")).await;
        assert!(r.starts_with("-ERR unknown command"), "{r}");
    }
    assert_eq!(c.cmd("BAD9").await, "-ERR too many bad commands");
    assert!(c.closed().await);
    task.await.unwrap();
}

#[tokio::test]
async fn utf8_mode_and_surrogates() {
    let env = env().await;
    env.deliver(UTF8_MSG).await;
    let server = env.server(config());
    let surrogate = buudien_message::downgrade(UTF8_MSG.as_bytes());
    assert_ne!(surrogate.len(), UTF8_MSG.len());

    // Without UTF8: the surrogate, ASCII only, and its size.
    let (mut c, _) = connect(&server, LOOPBACK);
    c.login().await;
    assert_eq!(c.cmd("LIST 1").await, format!("+OK 1 {}", surrogate.len()));
    assert_eq!(c.cmd("STAT").await, format!("+OK 1 {}", surrogate.len()));
    assert_eq!(
        c.cmd("RETR 1").await,
        format!("+OK {} octets", surrogate.len())
    );
    let body = c.body().await;
    assert!(body.iter().all(|l| l.is_ascii()), "{body:?}");
    let mut joined: Vec<u8> = body.join("\r\n").into_bytes();
    joined.extend_from_slice(b"\r\n");
    assert_eq!(joined, surrogate);
    assert!(body[0].starts_with("Subject: =?UTF-8?"), "{body:?}");
    c.cmd("QUIT").await;

    // With UTF8: the message as stored.
    let (mut c, _) = connect(&server, LOOPBACK);
    c.greeting().await;
    assert_eq!(c.cmd("UTF8").await, "+OK UTF8 enabled");
    c.cmd(&format!("USER {USER}")).await;
    c.cmd(&format!("PASS {PASSWORD}")).await;
    assert_eq!(c.cmd("LIST 1").await, format!("+OK 1 {}", UTF8_MSG.len()));
    assert_eq!(
        c.cmd("RETR 1").await,
        format!("+OK {} octets", UTF8_MSG.len())
    );
    assert_eq!(c.body().await, vec!["Subject: Grüße", "", "hi"]);
    assert_eq!(c.multi("TOP 1 0").await, vec!["Subject: Grüße", ""]);
    // UTF8 is an AUTHORIZATION command.
    assert!(c.cmd("UTF8").await.starts_with("-ERR"));
}

#[tokio::test]
async fn utf8_credentials_need_utf8_mode() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, _) = connect(&server, LOOPBACK);
    c.greeting().await;
    assert!(c.cmd("USER jürgen@example.org").await.starts_with("-ERR"));
    c.cmd("UTF8").await;
    assert!(c.cmd("USER jürgen@example.org").await.starts_with("+OK"));
    assert_eq!(
        c.cmd("PASS pässword").await,
        "-ERR [AUTH] invalid credentials"
    );
}

#[tokio::test]
async fn apop_login() {
    let env = env().await;
    env.deliver(MSG1).await;
    env.store
        .set_apop_secret(&Address::parse(USER).unwrap(), Some("tanstaaf".into()))
        .await
        .unwrap();
    let server = env.server(Pop3Config {
        apop: true,
        hostname: "pop.example.org".into(),
        ..config()
    });
    let digest = |ts: &str, secret: &str| {
        let mut h = Md5::new();
        h.update(ts.as_bytes());
        h.update(secret.as_bytes());
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let timestamp = |g: &str| {
        let start = g.find('<').unwrap();
        g[start..].to_owned()
    };

    // APOP is allowed where plaintext is not.
    let (mut c, _) = connect(&server, REMOTE);
    let g = c.greeting().await;
    let ts = timestamp(&g);
    assert!(ts.ends_with("@pop.example.org>"), "{g}");
    assert_eq!(
        c.cmd(&format!("APOP {USER} {}", digest(&ts, "wrong")))
            .await,
        "-ERR [AUTH] invalid credentials"
    );
    // The login password is not the APOP secret.
    assert_eq!(
        c.cmd(&format!("APOP {USER} {}", digest(&ts, PASSWORD)))
            .await,
        "-ERR [AUTH] invalid credentials"
    );
    assert!(
        c.cmd(&format!("APOP {USER} {}", digest(&ts, "tanstaaf")))
            .await
            .starts_with("+OK maildrop has 1")
    );
    c.cmd("QUIT").await;

    // Every greeting has its own timestamp.
    let (mut c2, _) = connect(&server, REMOTE);
    let ts2 = timestamp(&c2.greeting().await);
    assert_ne!(ts, ts2);
    // A replayed digest does not work.
    assert_eq!(
        c2.cmd(&format!("APOP {USER} {}", digest(&ts, "tanstaaf")))
            .await,
        "-ERR [AUTH] invalid credentials"
    );

    // Without apop: no timestamp, and APOP is refused.
    let server = env.server(config());
    let (mut c, _) = connect(&server, LOOPBACK);
    assert_eq!(c.greeting().await, "+OK buudien ready");
    assert_eq!(
        c.cmd(&format!("APOP {USER} {}", digest(&ts, "tanstaaf")))
            .await,
        "-ERR APOP not enabled"
    );
}

#[tokio::test]
async fn idle_timeout_closes_without_update() {
    let env = env().await;
    env.deliver(MSG1).await;
    let server = env.server(Pop3Config {
        idle_timeout: Duration::from_millis(200),
        ..config()
    });
    let (mut c, task) = connect(&server, LOOPBACK);
    c.login().await;
    assert!(c.cmd("DELE 1").await.starts_with("+OK"));
    assert_eq!(c.line().await, "-ERR idle timeout");
    assert!(c.closed().await);
    task.await.unwrap();
    assert_eq!(env.inbox_count().await, 1);
}

#[tokio::test]
async fn a_client_that_never_logs_in_is_cut_off_sooner() {
    let env = env().await;
    let server = env.server(Pop3Config {
        preauth_timeout: Duration::from_millis(200),
        ..config()
    });
    let (mut c, task) = connect(&server, LOOPBACK);
    assert!(c.greeting().await.starts_with("+OK"));
    assert_eq!(c.line().await, "-ERR idle timeout");
    assert!(c.closed().await);
    task.await.unwrap();
    // Once logged in, the longer idle timer applies.
    let (mut c, _task) = connect(&server, LOOPBACK);
    c.login().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(c.cmd("NOOP").await.starts_with("+OK"));
}

#[tokio::test]
async fn stop_closes_waiting_sessions_without_update() {
    let env = env().await;
    env.deliver(MSG1).await;
    let server = env.server(config());
    let (mut c, task) = connect(&server, LOOPBACK);
    c.login().await;
    assert!(c.cmd("DELE 1").await.starts_with("+OK"));
    server.stop();
    assert_eq!(c.line().await, "-ERR [SYS/TEMP] server shutting down");
    assert!(c.closed().await);
    task.await.unwrap();
    assert_eq!(env.inbox_count().await, 1);
    // A connection made after the stop is told at once too.
    let (mut c, task) = connect(&server, LOOPBACK);
    assert!(c.greeting().await.starts_with("+OK"));
    assert_eq!(c.line().await, "-ERR [SYS/TEMP] server shutting down");
    task.await.unwrap();
}

#[tokio::test]
async fn quit_in_authorization() {
    let env = env().await;
    let server = env.server(config());
    let (mut c, task) = connect(&server, LOOPBACK);
    c.greeting().await;
    assert_eq!(c.cmd("QUIT").await, "+OK buudien signing off");
    assert!(c.closed().await);
    task.await.unwrap();
}

mod tls {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    fn pair() -> (TlsAcceptor, TlsConnector) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["pop.example.org".to_owned()])
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

    /// Reads one CRLF line byte by byte, so nothing after it is consumed.
    async fn raw_line(io: &mut DuplexStream) -> String {
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            let mut b = [0u8; 1];
            assert_eq!(io.read(&mut b).await.unwrap(), 1, "EOF");
            line.push(b[0]);
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line).unwrap()
    }

    fn start(
        server: &Pop3Server<common::TestStore>,
        acceptor: TlsAcceptor,
        peer: &str,
    ) -> (DuplexStream, JoinHandle<()>) {
        let (client, server_io) = tokio::io::duplex(1 << 16);
        let s = server.clone();
        let peer: SocketAddr = peer.parse().unwrap();
        let task =
            tokio::spawn(async move { s.serve(server_io, peer, false, Some(acceptor)).await });
        (client, task)
    }

    #[tokio::test]
    async fn stls_discards_pipelined_bytes() {
        let env = env().await;
        env.deliver(MSG1).await;
        let server = env.server(config());
        let (acceptor, connector) = pair();
        let (mut raw, _) = start(&server, acceptor, REMOTE);
        assert!(raw_line(&mut raw).await.starts_with("+OK buudien ready"));
        raw.write_all(b"CAPA\r\n").await.unwrap();
        let mut caps = Vec::new();
        loop {
            let l = raw_line(&mut raw).await;
            if l == "." {
                break;
            }
            caps.push(l);
        }
        assert!(caps.iter().any(|l| l == "STLS"), "{caps:?}");
        assert!(!caps.iter().any(|l| l == "USER"), "{caps:?}");
        // The injected USER travels in the same write as STLS: it must be dropped.
        raw.write_all(format!("STLS\r\nUSER {USER}\r\n").as_bytes())
            .await
            .unwrap();
        assert_eq!(raw_line(&mut raw).await, "+OK begin TLS");
        let name = ServerName::try_from("pop.example.org").unwrap();
        let tls = connector.connect(name, raw).await.unwrap();
        let mut c = Client::new(tls);
        let caps = c.multi("CAPA").await;
        assert!(!caps.iter().any(|l| l == "STLS"), "{caps:?}");
        assert!(caps.iter().any(|l| l == "USER"), "{caps:?}");
        assert_eq!(
            c.cmd(&format!("PASS {PASSWORD}")).await,
            "-ERR send USER first"
        );
        assert!(c.cmd("STLS").await.starts_with("-ERR"));
        assert!(c.cmd(&format!("USER {USER}")).await.starts_with("+OK"));
        assert!(
            c.cmd(&format!("PASS {PASSWORD}"))
                .await
                .starts_with("+OK maildrop has 1")
        );
        assert_eq!(c.cmd("RETR 1").await, format!("+OK {} octets", MSG1.len()));
        assert_eq!(c.body().await.len(), 6);
        assert!(c.cmd("QUIT").await.starts_with("+OK"));
    }

    #[tokio::test]
    async fn failed_handshake_closes() {
        let env = env().await;
        let server = env.server(config());
        let (acceptor, _) = pair();
        let (mut raw, task) = start(&server, acceptor, LOOPBACK);
        raw_line(&mut raw).await;
        raw.write_all(b"STLS\r\n").await.unwrap();
        assert_eq!(raw_line(&mut raw).await, "+OK begin TLS");
        raw.write_all(b"USER not a handshake\r\n").await.unwrap();
        task.await.unwrap();
        let mut rest = Vec::new();
        raw.read_to_end(&mut rest).await.unwrap();
        assert!(!rest.starts_with(b"+OK"), "{rest:?}");
    }
}

#[tokio::test]
async fn custom_limits() {
    let env = env().await;
    let server = env.server(Pop3Config {
        limits: Limits {
            max_bad_commands: 2,
            max_auth_failures: 1,
        },
        ..config()
    });
    let (mut c, task) = connect(&server, LOOPBACK);
    c.greeting().await;
    assert!(c.cmd("XYZZY").await.starts_with("-ERR unknown command"));
    assert_eq!(c.cmd("RETR 1").await, "-ERR too many bad commands");
    assert!(c.closed().await);
    task.await.unwrap();

    let (mut c, task) = connect(&server, LOOPBACK);
    c.greeting().await;
    c.cmd(&format!("USER {USER}")).await;
    assert_eq!(c.cmd("PASS nope").await, "-ERR [AUTH] invalid credentials");
    assert!(c.closed().await);
    task.await.unwrap();
}

#[tokio::test]
async fn retr_and_top_of_a_damaged_message_answer_sys_perm() {
    let env = env().await;
    env.deliver(MSG1).await;
    env.deliver(MSG2).await;
    // Cut MSG2's stored bytes to "Subj".
    let cut = common::testing::truncate_blobs(&env.store, Some(MSG2.as_bytes()), 4).await;
    assert_eq!(cut, 1);
    let server = env.server(config());
    let (mut c, _) = connect(&server, LOOPBACK);
    c.login().await;
    // RFC 3206 §4: SYS/PERM, retrying cannot help; the session goes on.
    assert_eq!(
        c.cmd("RETR 2").await,
        "-ERR [SYS/PERM] message damaged in storage"
    );
    assert_eq!(
        c.cmd("TOP 2 0").await,
        "-ERR [SYS/PERM] message damaged in storage"
    );
    assert_eq!(c.cmd("RETR 1").await, format!("+OK {} octets", MSG1.len()));
    assert_eq!(c.body().await.len(), 6);
    assert_eq!(c.cmd("NOOP").await, "+OK");
}
