//! Hostile bytes as protocol traces: NUL, control characters and invalid UTF-8 get
//! `-ERR` (RFC 1939 §3, RFC 6856 §2) and the session goes on; a message with 8-bit
//! octets, Latin-1 and NUL comes back byte for byte from RETR; an endless line gets
//! `-ERR` once, then a second `-ERR` and the end of the connection once it runs
//! MAX_OVERLONG_SKIP past the limit.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use buudien_auth::{FailureThrottle, ScramCredentials, ThrottleConfig, hash_password};
use buudien_pop3::{Pop3Config, Pop3Server};
use buudien_pop3_proto::MAX_OVERLONG_SKIP;
use buudien_store::{AccountId, MailStore, NewAccount, PasswordRecord, Quota};
use buudien_types::{Address, Domain};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tempfile::TempDir;
use tokio::io::{
    AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf,
};
use tokio::task::JoinHandle;

const USER: &str = "ann@example.org";
const PASSWORD: &str = "correct horse";

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

struct Client {
    rd: BufReader<ReadHalf<DuplexStream>>,
    wr: WriteHalf<DuplexStream>,
}

fn connect(env: &Env) -> (Client, JoinHandle<()>) {
    let throttle = Arc::new(FailureThrottle::new(ThrottleConfig {
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        ..ThrottleConfig::default()
    }));
    let server = Pop3Server::new(env.store.clone(), Pop3Config::default(), throttle);
    let (client, server_io) = tokio::io::duplex(1 << 16);
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let task = tokio::spawn(async move { server.serve(server_io, peer, false, None).await });
    let (rd, wr) = tokio::io::split(client);
    (
        Client {
            rd: BufReader::new(rd),
            wr,
        },
        task,
    )
}

impl Client {
    /// One line with its CRLF, as bytes.
    async fn line(&mut self) -> Vec<u8> {
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(20), self.rd.read_until(b'\n', &mut buf))
            .await
            .expect("server answered in time")
            .unwrap();
        assert!(n > 0, "unexpected EOF");
        buf
    }

    async fn cmd(&mut self, line: &[u8]) -> Vec<u8> {
        self.wr.write_all(line).await.unwrap();
        self.wr.write_all(b"\r\n").await.unwrap();
        self.line().await
    }

    async fn login(&mut self) {
        assert!(self.line().await.starts_with(b"+OK"));
        assert!(
            self.cmd(format!("USER {USER}").as_bytes())
                .await
                .starts_with(b"+OK")
        );
        let r = self.cmd(format!("PASS {PASSWORD}").as_bytes()).await;
        assert!(r.starts_with(b"+OK"), "{r:?}");
    }
}

#[tokio::test]
async fn nul_controls_and_invalid_utf8_get_err() {
    let env = env().await;
    let (mut c, _task) = connect(&env);
    assert!(c.line().await.starts_with(b"+OK"));
    for (line, want) in [
        (
            &b"NOOP\0"[..],
            &b"-ERR control characters in the command\r\n"[..],
        ),
        (b"USER a\0b", b"-ERR control characters in the command\r\n"),
        (b"\0\x01\x02", b"-ERR control characters in the command\r\n"),
        (b"USER \xff\xfe", b"-ERR command is not valid UTF-8\r\n"),
    ] {
        assert_eq!(c.cmd(line).await, want, "{line:?}");
    }
    assert!(
        c.cmd(format!("USER {USER}").as_bytes())
            .await
            .starts_with(b"+OK")
    );
    let r = c.cmd(format!("PASS {PASSWORD}").as_bytes()).await;
    assert!(r.starts_with(b"+OK"), "{r:?}");
    assert!(c.cmd(b"STAT\0").await.starts_with(b"-ERR"));
    assert!(c.cmd(b"RETR \xff").await.starts_with(b"-ERR"));
    assert_eq!(c.cmd(b"STAT").await, b"+OK 0 0\r\n");
}

#[tokio::test]
async fn eight_bit_latin1_and_nul_come_back_byte_for_byte() {
    let env = env().await;
    let mut msg = b"Subject: =?iso-8859-1?q?Gr=FC=DFe?= =?broken?=\r\n\r\n".to_vec();
    msg.extend_from_slice(b"Gr\xfc\xdfe aus K\xf6ln\r\nNUL: \0 end\r\n.dot\r\n");
    msg.extend((0x80..=0xffu8).chain(1..0x0a));
    msg.extend_from_slice(b"\r\n");
    env.store
        .deliver(&[env.account], &msg, SystemTime::now())
        .await
        .unwrap();
    let (mut c, _task) = connect(&env);
    c.login().await;
    assert!(c.cmd(b"RETR 1").await.starts_with(b"+OK"));
    let mut got = Vec::new();
    loop {
        let l = c.line().await;
        if l == b".\r\n" {
            break;
        }
        // RFC 1939 §3: undo the dot-stuffing.
        got.extend_from_slice(l.strip_prefix(b".").unwrap_or(&l));
    }
    assert_eq!(got, msg);
}

#[tokio::test]
async fn a_long_line_is_refused_and_an_endless_one_cut_off() {
    let env = env().await;
    let (mut c, task) = connect(&env);
    assert!(c.line().await.starts_with(b"+OK"));
    let mut long = b"USER ".to_vec();
    long.extend(std::iter::repeat_n(b'a', MAX_OVERLONG_SKIP / 2));
    assert_eq!(c.cmd(&long).await, b"-ERR line too long\r\n");
    assert!(c.cmd(b"CAPA").await.starts_with(b"+OK"));
    let mut wr = c.wr;
    let writer = tokio::spawn(async move {
        let chunk = vec![b'b'; 64 * 1024];
        for _ in 0..64 {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut said = Vec::new();
    c.rd.read_to_end(&mut said).await.unwrap();
    writer.await.unwrap();
    let said = String::from_utf8(said).unwrap();
    assert!(
        said.ends_with(".\r\n-ERR line too long\r\n-ERR line too long, closing connection\r\n"),
        "{said}"
    );
    task.await.unwrap();
}
