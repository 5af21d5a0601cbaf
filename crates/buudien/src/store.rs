//! The configured store: the embedded SQLite store under `data_dir`, or PostgreSQL
//! (`[store] backend = "postgres"`), shared by every node of a cluster.
//!
//! The commands are generic over the store traits; [`with_store!`] runs one with the
//! concrete store. What only one backend has (SQLite's temporary-file cleanup, its
//! WAL checkpointer, `check`) is behind [`Served`] or asks for [`open_sqlite`].

use crate::cli::{CliError, exit};
use crate::config::{Backend, Blobs, Config};
use buudien_auth::FailureThrottle;
use buudien_store::{MailboxStore, QueueStore, StoreError};
use buudien_store_postgres::{PgStore, S3Settings};
use buudien_store_sqlite::SqliteStore;
use std::future::Future;
use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// The file in `data_dir` that names this node in the PostgreSQL queue's claims.
pub const NODE_FILE: &str = "node-id";
/// The longest node name read from [`NODE_FILE`].
const NODE_NAME_MAX: usize = 64;

/// An open store of either backend.
#[derive(Clone)]
pub enum Store {
    /// The embedded store under `data_dir`.
    Sqlite(SqliteStore),
    /// PostgreSQL, possibly shared with other nodes.
    Postgres(PgStore),
}

/// Runs `$body` with `$s` bound to the concrete store inside a [`Store`] (by value).
macro_rules! with_store {
    ($store:expr, |$s:ident| $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($s) => $body,
            $crate::store::Store::Postgres($s) => $body,
        }
    };
}
pub(crate) use with_store;

/// The exit code for a store that cannot be opened: 75 when trying again may help.
fn open_failed(e: &StoreError) -> u8 {
    if e.is_temporary() {
        exit::TEMPFAIL
    } else {
        exit::SOFTWARE
    }
}

/// Opens the embedded SQLite store in `data_dir` (brings its schema up to date).
pub fn open_sqlite(cfg: &Config) -> Result<SqliteStore, CliError> {
    let store = SqliteStore::open(&cfg.data_dir).map_err(|e| {
        CliError::new(
            open_failed(&e),
            format!("cannot open the store in {}: {e}", cfg.data_dir.display()),
        )
    })?;
    store.set_min_free_space(cfg.limits.min_free_space);
    if let Some(max) = cfg.store.inline_max {
        store.set_inline_max(max);
    }
    Ok(store)
}

/// Connects to the configured PostgreSQL database and brings its schema up to date
/// (migrations serialise on an advisory lock, so nodes may start together). The URL
/// is never printed: it may hold a password.
pub async fn open_postgres(cfg: &Config) -> Result<PgStore, CliError> {
    let url = cfg.store.url.as_deref().ok_or_else(|| {
        CliError::config("[store] backend = \"postgres\" needs url = \"postgres://…\"")
    })?;
    let opened = match s3_settings(cfg)? {
        Some(s3) => PgStore::connect_with_s3(url, cfg.store.pool_size, &s3).await,
        None => PgStore::connect(url, cfg.store.pool_size).await,
    };
    opened.map_err(|e| {
        // An unreachable or starting database is worth another try (an MTA
        // running `deliver` keeps the message and retries on 75).
        let code = match &e {
            StoreError::Refused(_) => exit::CONFIG,
            _ => exit::TEMPFAIL,
        };
        CliError::new(code, format!("cannot open the PostgreSQL store: {e}"))
    })
}

/// The object storage settings of `[store] blobs = "s3"` (`None` otherwise): the
/// secret from `s3_secret_key_file`, or both keys from the environment as the AWS
/// tools name them.
fn s3_settings(cfg: &Config) -> Result<Option<S3Settings>, CliError> {
    let st = &cfg.store;
    if st.blobs != Blobs::S3 {
        return Ok(None);
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (access_key, secret_key, session_token) = match (&st.s3_access_key, &st.s3_secret_key_file)
    {
        (Some(k), Some(f)) => (
            k.clone(),
            crate::secret::from_file(f, "[store] s3_secret_key_file")?,
            None,
        ),
        _ => match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(k), Some(s)) => (k, s, env("AWS_SESSION_TOKEN")),
            _ => {
                return Err(CliError::config(
                    "[store] blobs = \"s3\" needs s3_access_key and s3_secret_key_file, \
                         or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment",
                ));
            }
        },
    };
    Ok(Some(S3Settings {
        endpoint: st.s3_endpoint.clone(),
        bucket: st.s3_bucket.clone().unwrap_or_default(),
        region: st.s3_region.clone().unwrap_or_else(|| "us-east-1".into()),
        prefix: st.s3_prefix.clone().unwrap_or_else(|| "blobs".into()),
        access_key,
        secret_key,
        session_token,
        allow_http: st.s3_allow_http,
    }))
}

/// Opens the configured store. Must run inside a tokio runtime (PostgreSQL's
/// background tasks run on it).
pub async fn open_store(cfg: &Config) -> Result<Store, CliError> {
    match cfg.store.backend {
        Backend::Sqlite => open_sqlite(cfg).map(Store::Sqlite),
        Backend::Postgres => open_postgres(cfg).await.map(Store::Postgres),
    }
}

/// `buudien migrate`: opens the store, which brings its schema up to date, and says
/// which version it is at.
pub async fn migrate(cfg: &Config) -> Result<(), CliError> {
    match open_store(cfg).await? {
        Store::Sqlite(_) => println!(
            "the SQLite store in {} is up to date",
            cfg.data_dir.display()
        ),
        Store::Postgres(_) => println!(
            "the PostgreSQL store is up to date (schema version {})",
            PgStore::schema_version()
        ),
    }
    Ok(())
}

/// This node's name in the shared queue's claims (PostgreSQL): read from
/// `data_dir/node-id`, made at random at the first start. Every node has a data_dir of
/// its own, so the name is unique in the cluster and the same after a restart, when
/// the node takes back the claims its stopped process held.
pub fn node_name(data_dir: &Path) -> Result<String, CliError> {
    let path = data_dir.join(NODE_FILE);
    let bad = |what: String| CliError::config(format!("{}: {what}", path.display()));
    match std::fs::File::open(&path) {
        Ok(f) => {
            let mut text = String::new();
            f.take(NODE_NAME_MAX as u64 + 2)
                .read_to_string(&mut text)
                .map_err(|e| bad(format!("cannot read: {e}")))?;
            let name = text.trim();
            if name.is_empty()
                || name.len() > NODE_NAME_MAX
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(bad(format!(
                    "expected a node name (1 to {NODE_NAME_MAX} letters, digits, '-', '_', \
                     '.'); remove the file to get a new one"
                )));
            }
            Ok(name.to_string())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            // Written aside and linked into place: never a half-written name, and
            // of two processes starting at once, both end up with the one linked.
            let name = format!("{:032x}", rand::random::<u128>());
            let tmp = data_dir.join(format!("{NODE_FILE}.{}.tmp", std::process::id()));
            let made = std::fs::File::create(&tmp)
                .and_then(|mut f| {
                    f.write_all(format!("{name}\n").as_bytes())?;
                    f.sync_all()
                })
                .and_then(|()| std::fs::hard_link(&tmp, &path));
            let _ = std::fs::remove_file(&tmp);
            match made {
                Ok(()) => Ok(name),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => node_name_existing(&path),
                Err(e) => Err(bad(format!("cannot write: {e}"))),
            }
        }
        Err(e) => Err(bad(format!("cannot read: {e}"))),
    }
}

/// [`node_name`] when another process made the file first.
fn node_name_existing(path: &Path) -> Result<String, CliError> {
    match path.parent() {
        Some(dir) if path.exists() => node_name(dir),
        _ => Err(CliError::config(format!(
            "{}: cannot make the node name",
            path.display()
        ))),
    }
}

/// What `serve` needs of a store beyond the protocol traits: recovery at start and
/// the backend's own background tasks.
pub trait Served: MailboxStore + QueueStore + Clone {
    /// What `serve` logs at start: which store it runs on.
    fn describe(&self) -> String;
    /// Tidies what a stopped server of this node left behind, before serving.
    fn recover(&self) -> impl Future<Output = ()> + Send;
    /// Starts the backend's background tasks; `serve` aborts them at shutdown.
    /// `throttle` is the server's failed-login throttle, which a shared backend
    /// shares with the other nodes; `node` names this server among them.
    fn background(&self, throttle: &Arc<FailureThrottle>, node: &str) -> Vec<JoinHandle<()>>;
    /// The last step of a shutdown, once the sessions ended: what they left to do
    /// in the background is done before the process exits.
    fn shutdown(&self) -> impl Future<Output = ()> + Send;
}

impl Served for SqliteStore {
    fn describe(&self) -> String {
        format!("the SQLite store in {}", self.data_dir().display())
    }

    async fn recover(&self) {
        match self.clean_tmp() {
            Ok(0) => {}
            Ok(n) => tracing::info!("removed {n} temporary files of an interrupted delivery"),
            Err(e) => tracing::warn!("cannot clean the temporary directory: {e}"),
        }
        // One server per SQLite store: every claim left is a stopped server's.
        match self.clear_leases().await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(
                    "{n} queued messages were claimed by a stopped server; retrying them"
                )
            }
            Err(e) => tracing::warn!("cannot release old queue claims: {e}"),
        }
    }

    fn background(&self, _: &Arc<FailureThrottle>, _: &str) -> Vec<JoinHandle<()>> {
        vec![
            // New emails enter SEARCH's text index in the background
            // (buudien_store_sqlite's `text` module); a SEARCH scans what it has not
            // reached yet.
            tokio::spawn(self.clone().run_text_indexer()),
            // The log is copied into the database in the background, not inside
            // commits.
            tokio::spawn(self.clone().run_checkpointer()),
        ]
    }

    async fn shutdown(&self) {
        // Nothing: a maildrop lock is in-process, gone with the process.
    }
}

impl Served for PgStore {
    fn describe(&self) -> String {
        let search = if self.has_text_index() {
            "trigram index"
        } else {
            "no pg_trgm: scans"
        };
        let blobs = match self.object_storage() {
            Some(at) => format!("blobs in {at}"),
            None => "blobs in the database".into(),
        };
        format!(
            "PostgreSQL (schema version {}, SEARCH text: {search}, {blobs})",
            PgStore::schema_version()
        )
    }

    async fn recover(&self) {
        // Only this node's own queue claims (by its name, `node-id` in data_dir): they
        // belong to a stopped process of it. Other nodes' may be live; a dead node's
        // claims and maildrop leases expire on their own.
        match self.release_own_claims().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                "{n} queued messages were claimed by this node before it stopped; retrying them"
            ),
            Err(e) => tracing::warn!("cannot release this node's old queue claims: {e}"),
        }
    }

    fn background(&self, throttle: &Arc<FailureThrottle>, node: &str) -> Vec<JoinHandle<()>> {
        vec![
            // The trigram text index behind SEARCH BODY/TEXT (when pg_trgm is there).
            tokio::spawn(self.clone().run_text_indexer()),
            // Failed logins count across the nodes.
            tokio::spawn(crate::auth_share::run(
                self.clone(),
                throttle.clone(),
                node.to_string(),
            )),
        ]
    }

    async fn shutdown(&self) {
        // The maildrop leases of the sessions that ended are released by spawned
        // tasks; the runtime would drop them on exit, leaving the leases to lapse
        // (30 s of `[IN-USE]` for the account after a restart).
        self.release_leases().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("runtime: {e}"),
        }
    }

    #[test]
    fn an_unreachable_postgres_fails_with_one_line_and_no_sqlite_store() -> Result<(), String> {
        let dir = std::env::temp_dir().join(format!("buudien-store-{}", std::process::id()));
        // Port 1 on loopback: refused at once.
        let cfg = Config::parse(&format!(
            "hostname = \"h\"\ndata_dir = {:?}\n[store]\nbackend = \"postgres\"\n\
             url = \"postgres://u:hunter2@127.0.0.1:1/mail\"\n",
            dir.display().to_string()
        ))?;
        let e = runtime()
            .block_on(open_store(&cfg))
            .err()
            .ok_or("opened a store")?;
        assert_eq!(e.code, exit::TEMPFAIL, "{}", e.message);
        assert!(e.message.contains("PostgreSQL"), "{}", e.message);
        assert!(!e.message.contains("hunter2"), "no password: {}", e.message);
        assert!(!e.message.contains('\n'), "one line: {}", e.message);
        assert!(!dir.exists(), "no SQLite store was made instead");
        Ok(())
    }

    #[test]
    fn migrate_makes_the_sqlite_store() -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        let cfg = Config::parse(&format!(
            "hostname = \"h\"\ndata_dir = {:?}\n",
            data.display().to_string()
        ))?;
        runtime().block_on(migrate(&cfg)).map_err(|e| e.message)?;
        assert!(data.is_dir(), "the store was made in data_dir");
        // Again: nothing left to do, still fine.
        runtime().block_on(migrate(&cfg)).map_err(|e| e.message)?;
        Ok(())
    }

    #[test]
    fn check_refuses_postgres_in_one_line() -> Result<(), String> {
        let cfg = Config::parse(
            "hostname = \"h\"\ndata_dir = \"/nonexistent\"\n[store]\nbackend = \"postgres\"\n\
             url = \"postgres://db.invalid/mail\"\n",
        )?;
        let e = crate::check_cmd::run(&cfg, false)
            .err()
            .ok_or("check ran on postgres")?;
        assert_eq!(e.code, exit::USAGE);
        assert!(
            e.message.contains("SQLite") && !e.message.contains('\n'),
            "{}",
            e.message
        );
        Ok(())
    }

    #[test]
    fn a_missing_s3_secret_file_is_a_configuration_error() -> Result<(), String> {
        let cfg = Config::parse(
            "hostname = \"h\"\ndata_dir = \"/nonexistent\"\n[store]\nbackend = \"postgres\"\n\
             url = \"postgres://u@127.0.0.1:1/mail\"\nblobs = \"s3\"\ns3_bucket = \"b12\"\n\
             s3_access_key = \"k\"\ns3_secret_key_file = \"/nonexistent/s3.key\"\n",
        )?;
        let e = runtime()
            .block_on(open_store(&cfg))
            .err()
            .ok_or("opened a store")?;
        assert_eq!(e.code, exit::CONFIG, "{}", e.message);
        assert!(
            e.message.contains("/nonexistent/s3.key") && !e.message.contains('\n'),
            "{}",
            e.message
        );
        Ok(())
    }

    #[test]
    fn a_bad_url_is_a_configuration_error() -> Result<(), String> {
        let cfg = Config::parse(
            "hostname = \"h\"\ndata_dir = \"/nonexistent\"\n[store]\nbackend = \"postgres\"\n\
             url = \"postgres://a:b@host:notaport/db\"\n",
        )?;
        let e = runtime()
            .block_on(open_store(&cfg))
            .err()
            .ok_or("opened a store")?;
        assert_eq!(e.code, exit::CONFIG, "{}", e.message);
        Ok(())
    }

    #[test]
    fn the_node_name_is_made_once_and_kept() -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let first = node_name(dir.path()).map_err(|e| e.message)?;
        assert_eq!(first.len(), 32, "{first}");
        // A restart reads the same name; no temporary file is left.
        assert_eq!(node_name(dir.path()).map_err(|e| e.message)?, first);
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(files, vec![std::ffi::OsString::from(NODE_FILE)]);
        // An operator's own name is taken as it is.
        std::fs::write(dir.path().join(NODE_FILE), "mx-1.example\n").map_err(|e| e.to_string())?;
        assert_eq!(
            node_name(dir.path()).map_err(|e| e.message)?,
            "mx-1.example"
        );
        // Nonsense is a one-line config error that names the file.
        for bad in ["", "two words\n", &"x".repeat(NODE_NAME_MAX + 1)] {
            std::fs::write(dir.path().join(NODE_FILE), bad).map_err(|e| e.to_string())?;
            let e = node_name(dir.path()).err().ok_or("a bad name was taken")?;
            assert_eq!(e.code, exit::CONFIG, "{}", e.message);
            assert!(e.message.contains(NODE_FILE) && !e.message.contains('\n'));
        }
        Ok(())
    }
}
