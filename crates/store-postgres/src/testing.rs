//! A throwaway PostgreSQL for the tests of one test binary (feature `testing`; this
//! crate's own tests and the protocol crates' `test-postgres` runs share it): `initdb`
//! into a temporary directory, `pg_ctl start` on a free loopback port (socket in that
//! directory), stopped and removed by a watchdog when the test process ends, however it
//! ends. With `BUUDIEN_TEST_PG_URL` set (a superuser's URL), that server is used
//! instead.
//!
//! Missing PostgreSQL binaries fail the tests: they are never skipped. Everything here
//! panics on failure, as test set-up does.

use crate::PgStore;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The server this test process uses.
pub struct TestPg {
    /// `key=value` connection string of the superuser, without `dbname`.
    base: String,
    /// Databases made so far (for unique names).
    made: AtomicUsize,
    /// A server of its own (else `BUUDIEN_TEST_PG_URL`'s, where earlier runs' test
    /// databases are dropped first).
    own: bool,
    swept: std::sync::atomic::AtomicBool,
}

static SERVER: OnceLock<TestPg> = OnceLock::new();

/// The test server, started on first use.
pub fn server() -> &'static TestPg {
    SERVER.get_or_init(start)
}

/// The directory holding `initdb` and `pg_ctl`: the newest
/// `/usr/lib/postgresql/*/bin`, else `initdb` on `PATH`.
fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return bin;
    }
    let which = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok());
    if let Some(p) = which
        && let Some(dir) = Path::new(p.trim()).parent()
        && dir.join("pg_ctl").exists()
    {
        return dir.to_path_buf();
    }
    panic!(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin \
         or on PATH: install Debian's `postgresql` package (test.sh does), or set \
         BUUDIEN_TEST_PG_URL to a superuser URL of a running server"
    );
}

fn id_of(args: &[&str]) -> Option<u32> {
    let o = Command::new("id").args(args).output().ok()?;
    String::from_utf8(o.stdout).ok()?.trim().parse().ok()
}

/// A command run as `user` (through `runuser` when we are root), else as we are.
fn as_user(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn run(mut c: Command, what: &str) {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start() -> TestPg {
    if let Ok(url) = std::env::var("BUUDIEN_TEST_PG_URL") {
        let base = url_without_db(&url);
        return TestPg {
            base,
            made: AtomicUsize::new(0),
            own: false,
            swept: std::sync::atomic::AtomicBool::new(false),
        };
    }
    let bin = bin_dir();
    let root = id_of(&["-u"]) == Some(0);
    // initdb refuses to run as root: run the server as `postgres` (or `nobody`).
    let user = if !root {
        None
    } else if id_of(&["-u", "postgres"]).is_some() {
        Some("postgres")
    } else {
        Some("nobody")
    };
    let dir = std::env::temp_dir().join(format!(
        "buudien-pg-{}-{:08x}",
        std::process::id(),
        rand_u32()
    ));
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    if let Some(u) = user {
        let uid = id_of(&["-u", u]).unwrap_or_else(|| panic!("no uid for {u}"));
        let gid = id_of(&["-g", u]).unwrap_or_else(|| panic!("no gid for {u}"));
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", dir.display()));
    }
    let data = dir.join("data");
    let mut initdb = as_user(user, &bin.join("initdb"));
    initdb.current_dir(&dir).arg("-D").arg(&data).args([
        "-A",
        "trust",
        "-U",
        "postgres",
        "-E",
        "UTF8",
        "--locale=C",
        "-N",
    ]);
    run(initdb, "initdb");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"));
    let opts = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off \
         -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
        dir.display()
    );
    let mut pg_ctl = as_user(user, &bin.join("pg_ctl"));
    pg_ctl
        .current_dir(&dir)
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("log"))
        .args(["-w", "-o", &opts, "start"]);
    run(pg_ctl, "pg_ctl start");
    // The watchdog: stops the server and removes its directory once this process is
    // gone (statics are never dropped, and a failed test may not unwind).
    let stop = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {runuser}'{pg_ctl}' -D '{data}' \
         -m immediate stop >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        runuser = user.map_or(String::new(), |u| format!("runuser -u {u} -- ")),
        pg_ctl = bin.join("pg_ctl").display(),
        data = data.display(),
        dir = dir.display(),
    );
    // Never waited for: it outlives this process on purpose.
    #[allow(clippy::zombie_processes)]
    let _watchdog = Command::new("setsid")
        .args(["sh", "-c", &stop])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the watchdog: {e}"));
    TestPg {
        base: format!("host=127.0.0.1 port={port} user=postgres"),
        made: AtomicUsize::new(0),
        own: true,
        swept: std::sync::atomic::AtomicBool::new(true),
    }
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t ^ std::process::id().rotate_left(16)
}

/// `url` as a `key=value` string without its database (so one can be appended).
fn url_without_db(url: &str) -> String {
    let cfg: tokio_postgres::Config = url
        .parse()
        .unwrap_or_else(|e| panic!("BUUDIEN_TEST_PG_URL: {e}"));
    let mut out = Vec::new();
    for h in cfg.get_hosts() {
        match h {
            tokio_postgres::config::Host::Tcp(h) => out.push(format!("host={h}")),
            tokio_postgres::config::Host::Unix(p) => out.push(format!("host={}", p.display())),
        }
    }
    if let Some(p) = cfg.get_ports().first() {
        out.push(format!("port={p}"));
    }
    if let Some(u) = cfg.get_user() {
        out.push(format!("user={u}"));
    }
    if let Some(pw) = cfg.get_password() {
        out.push(format!("password={}", String::from_utf8_lossy(pw)));
    }
    out.join(" ")
}

impl TestPg {
    /// The connection string of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("{} dbname={db}", self.base)
    }

    /// A new, empty database; returns its connection string.
    pub async fn fresh_db(&self) -> String {
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "buudien_t{}_{}_{n}",
            std::process::id(),
            rand_u32() % 10_000
        );
        let (client, conn) = tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to the test server: {e}"));
        let driver = tokio::spawn(conn);
        if !self.own && !self.swept.swap(true, Ordering::SeqCst) {
            sweep(&client).await;
        }
        client
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE template0"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE: {e}"));
        drop(client);
        let _ = driver.await;
        self.url(&name)
    }

    /// A store on a new database.
    pub async fn store(&self) -> PgStore {
        let url = self.fresh_db().await;
        PgStore::connect(&url, 8)
            .await
            .unwrap_or_else(|e| panic!("PgStore::connect: {e}"))
    }
}

/// Drops the test databases (`buudien_t<pid>_…`) of test processes that are gone, so
/// runs against `BUUDIEN_TEST_PG_URL` do not pile them up.
async fn sweep(client: &tokio_postgres::Client) {
    let rows = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'buudien\\_t%'",
            &[],
        )
        .await
        .unwrap_or_default();
    for r in rows {
        let name: String = r.get(0);
        let pid = name
            .strip_prefix("buudien_t")
            .and_then(|rest| rest.split('_').next())
            .and_then(|p| p.parse::<u32>().ok());
        let gone = pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists());
        if gone {
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

/// A store on a new database of the test server (`_dir` is unused: the SQLite
/// backend's `testing::open_store` keeps its files there; the two have one shape, so a
/// test picks a backend by its import alone).
pub async fn open_store(_dir: &std::path::Path) -> PgStore {
    server().store().await
}

/// Fault injection: cuts the stored bytes of the blob holding `content` (every blob
/// when `None`) to their first `keep` octets, leaving the blob's recorded size as it
/// was, so reading it fails as damaged. Returns how many blobs were cut.
pub async fn truncate_blobs(store: &PgStore, content: Option<&[u8]>, keep: usize) -> usize {
    let client = store
        .inner
        .client()
        .await
        .unwrap_or_else(|e| panic!("a connection: {e}"));
    let ids: Vec<Vec<u8>> = match content {
        Some(c) => vec![crate::mail::blob_id(&[c]).0.to_vec()],
        None => client
            .query("SELECT id FROM blobs", &[])
            .await
            .unwrap_or_else(|e| panic!("listing blobs: {e}"))
            .iter()
            .map(|r| r.get(0))
            .collect(),
    };
    let keep = i32::try_from(keep).unwrap_or(i32::MAX);
    let mut cut = 0;
    for id in &ids {
        // Only the first chunk stays, cut to `keep` octets.
        client
            .execute(
                "DELETE FROM blob_chunks WHERE blob_id = $1 \
                 AND seq > (SELECT min(seq) FROM blob_chunks WHERE blob_id = $1)",
                &[id],
            )
            .await
            .unwrap_or_else(|e| panic!("cutting a blob: {e}"));
        cut += client
            .execute(
                "UPDATE blob_chunks SET data = substring(data FROM 1 FOR $2) WHERE blob_id = $1",
                &[id, &keep],
            )
            .await
            .unwrap_or_else(|e| panic!("cutting a blob: {e}"));
    }
    usize::try_from(cut).unwrap_or(usize::MAX)
}

/// Fault injection: deletes the bytes of every blob (their rows stay), so any read
/// of a message fails. Returns how many blobs lost their bytes.
pub async fn remove_blob_bytes(store: &PgStore) -> usize {
    let client = store
        .inner
        .client()
        .await
        .unwrap_or_else(|e| panic!("a connection: {e}"));
    let n: i64 = client
        .query_one(
            "WITH d AS (DELETE FROM blob_chunks RETURNING blob_id) \
             SELECT count(DISTINCT blob_id) FROM d",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("removing blob bytes: {e}"))
        .get(0);
    usize::try_from(n).unwrap_or(0)
}
