//! A throwaway S3-compatible server for the tests: moto's `moto_server` on a free
//! loopback port, killed when its [`Moto`] is dropped and, by a watchdog, when the
//! test process ends however it ends. The binary is `BUUDIEN_TEST_MOTO` (test.sh
//! installs moto in a venv and sets it), else `moto_server` on `PATH`.
//!
//! A missing binary fails the tests: they are never skipped.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use buudien_store_postgres::S3Settings;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One running moto server.
pub struct Moto {
    child: Child,
    /// Its loopback port.
    pub port: u16,
}

static SHARED: OnceLock<Moto> = OnceLock::new();
static BUCKETS: AtomicUsize = AtomicUsize::new(0);

/// The server most tests share (started on first use; buckets keep them apart).
pub fn shared() -> &'static Moto {
    SHARED.get_or_init(Moto::start)
}

fn binary() -> String {
    if let Ok(b) = std::env::var("BUUDIEN_TEST_MOTO") {
        assert!(
            std::path::Path::new(&b).exists(),
            "BUUDIEN_TEST_MOTO={b} does not exist"
        );
        return b;
    }
    let found = Command::new("sh")
        .args(["-c", "command -v moto_server"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    found.unwrap_or_else(|| {
        panic!(
            "moto_server not found: the S3 blob tests need it (test.sh installs \
             `moto[server]` in a venv and sets BUUDIEN_TEST_MOTO; or pip install \
             'moto[server]')"
        )
    })
}

impl Moto {
    /// Starts a server of its own (for tests that stop it).
    pub fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        let child = Command::new(binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto_server: {e}"));
        // The watchdog: kills the server once this process is gone (statics are
        // never dropped, and a failed test may not unwind).
        let stop = format!(
            "while kill -0 {me} 2>/dev/null && kill -0 {it} 2>/dev/null; do sleep 0.5; done; \
             kill {it} 2>/dev/null",
            me = std::process::id(),
            it = child.id(),
        );
        #[allow(clippy::zombie_processes)]
        let _watchdog = Command::new("setsid")
            .args(["sh", "-c", &stop])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the watchdog: {e}"));
        let mut moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not start in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Makes a bucket (moto takes unsigned requests); returns its name.
    pub fn bucket(&self, name: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 200"), "bucket {name}: {reply}");
        name.to_string()
    }

    /// A new bucket with a unique name.
    pub fn fresh_bucket(&self) -> String {
        let n = BUCKETS.fetch_add(1, Ordering::Relaxed);
        self.bucket(&format!("buudien-{}-{n}", std::process::id()))
    }

    /// Store settings for `bucket` on this server.
    pub fn settings(&self, bucket: &str) -> S3Settings {
        S3Settings {
            endpoint: Some(self.endpoint()),
            bucket: bucket.to_string(),
            region: "us-east-1".into(),
            prefix: "blobs".into(),
            access_key: "test".into(),
            secret_key: "test".into(),
            session_token: None,
            allow_http: true,
        }
    }

    /// A client of `bucket` of its own, to look behind the store's back.
    pub fn client(&self, bucket: &str) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_allow_http(true)
            .build()
            .unwrap()
    }

    /// Stops the server (an outage).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}
