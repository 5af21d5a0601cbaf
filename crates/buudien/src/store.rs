//! The configured store: the embedded SQLite store under `data_dir`, or PostgreSQL
//! (`[store] backend = "postgres"`), shared by every node of a cluster.
//!
//! The commands are generic over the store traits; [`with_store!`] runs one with the
//! concrete store. What only one backend has (SQLite's temporary-file cleanup, its
//! WAL checkpointer, `check`) is behind [`Served`] or asks for [`open_sqlite`].

use crate::cli::{CliError, exit};
use crate::config::{Backend, Blobs, Config};
use buudien_store::{MailboxStore, QueueStore, StoreError};
use buudien_store_postgres::{PgStore, S3Settings};
use buudien_store_sqlite::SqliteStore;
use std::future::Future;
use tokio::task::JoinHandle;

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

/// What `serve` needs of a store beyond the protocol traits: recovery at start and
/// the backend's own background tasks.
pub trait Served: MailboxStore + QueueStore + Clone {
    /// What `serve` logs at start: which store it runs on.
    fn describe(&self) -> String;
    /// Tidies what a stopped server of this node left behind, before serving.
    fn recover(&self) -> impl Future<Output = ()> + Send;
    /// Starts the backend's background tasks; `serve` aborts them at shutdown.
    fn background(&self) -> Vec<JoinHandle<()>>;
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

    fn background(&self) -> Vec<JoinHandle<()>> {
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
        // Nothing: queue claims may belong to other live nodes; a dead node's claims
        // and maildrop leases expire on their own.
    }

    fn background(&self) -> Vec<JoinHandle<()>> {
        // The trigram text index behind SEARCH BODY/TEXT (when pg_trgm is there).
        vec![tokio::spawn(self.clone().run_text_indexer())]
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
}
