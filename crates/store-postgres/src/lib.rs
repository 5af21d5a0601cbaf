//! The scale-out store: every node of a cluster talks to one PostgreSQL, which holds
//! the index, the blobs, the queue and the leases, so nodes keep no state of their own.
//!
//! # Layout
//! - [`PgStore`] (this file): connecting (pool, migrations), transactions with retry,
//!   the trait impls, which delegate to the modules.
//! - `schema`: tables and versioned, expand-then-contract migrations.
//! - `admin`: domains, accounts, aliases.
//! - `blobs`: message bytes as `bytea` chunks, refcounted; snapshot pins; garbage
//!   collection.
//! - `blobs_s3`: optionally, message bytes in S3-compatible object storage instead
//!   ([`S3Settings`]), PUT before the row commits, deleted after it is collected.
//! - `mail`: delivery and submission, the POP3 maildrop, expunge, the change log.
//! - `folders`: IMAP's mailbox operations.
//! - `sync`: entries, metadata, delta, `\Recent`, and the change watch (LISTEN/NOTIFY
//!   with polling as the fallback).
//! - `queue`: the outbound queue (claims with `FOR UPDATE SKIP LOCKED` and leases).
//! - `text`: the text index behind SEARCH BODY / TEXT (`pg_trgm`, when available).
//! - `tls`: TLS to PostgreSQL (`sslmode=require`, `sslrootcert`), always verified.
//! - `lease`: the POP3 maildrop lock as an expiring lease row, and releases of
//!   guards dropped outside async code.
//! - `auth`: the nodes' login outcomes (`auth_events`), so failed-login throttling
//!   counts across the cluster.
//! - `testing` (feature `testing`, for tests only): a throwaway PostgreSQL server.
//!
//! # Invariants
//! - Every write runs in one transaction (READ COMMITTED) that locks the rows it
//!   derives values from: the account row (quota, UIDVALIDITY) before any mailbox row
//!   of that account, the mailbox row before its entries. UIDNEXT/HIGHESTMODSEQ come
//!   from `UPDATE mailboxes … RETURNING` in the transaction that commits the change,
//!   so they become visible in strictly increasing order. A transaction that fails
//!   with a serialization failure or deadlock is retried ([`RETRIES`] times).
//! - A blob row and its chunks are written in the transaction that first references
//!   the blob; a blob with `refcount <= 0` is garbage unless a live snapshot pins it.
//!   Garbage collection locks each candidate row before it looks at the pins, and a
//!   snapshot locks its blobs (`FOR SHARE`) while it pins them, so the two never miss
//!   each other. With object storage, the object is stored before the row commits
//!   and deleted only after the row's deletion committed (`blob_deletions`).
//! - Every change of a mailbox's UIDNEXT or HIGHESTMODSEQ (and its deletion) sends
//!   `NOTIFY buudien_mailbox` with its id (a trigger), on commit.

mod admin;
mod auth;
mod blobs;
mod blobs_s3;
mod folders;
mod lease;
mod mail;
mod queue;
mod schema;
mod sync;
#[cfg(feature = "testing")]
pub mod testing;
mod text;
mod tls;

pub use auth::{AUTH_BATCH, AuthEvent};
pub use blobs_s3::{S3_CONNECT_TIMEOUT, S3_TIMEOUT, S3Settings};
pub use lease::{LOCK_LEASE, PIN_LEASE};
pub use schema::CODE_VERSION;
pub use text::{DEFAULT_ON_DEMAND, READ_LIMIT, TEXT_LIMIT};
pub use tls::split_root_cert;

use buudien_store::*;
use buudien_types::{Address, Domain, Uid};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql};

/// How often a transaction that hit a serialization failure or a deadlock is tried
/// again before the operation fails as busy.
pub const RETRIES: u32 = 8;

/// How long an operation waits for a pooled connection before it fails as busy.
pub const POOL_WAIT: Duration = Duration::from_secs(30);
/// How long opening (or checking) a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pool: Pool,
    config: tokio_postgres::Config,
    /// TLS for new connections, when the URL asks for it.
    tls: Option<tls::MakeRustlsConnect>,
    runtime: tokio::runtime::Handle,
    watch: sync::Watch,
    leases: lease::Leases,
    text: text::TextSettings,
    /// This node's name in the queue's claims (`queue.claimed_by`), if set.
    node: Mutex<Option<String>>,
    /// Object storage for new blobs' bytes, when configured.
    s3: Option<Arc<blobs_s3::S3Blobs>>,
}

/// Locks a mutex, recovering it if a panicking thread poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A pooled transaction.
pub(crate) type Tx<'a> = deadpool_postgres::Transaction<'a>;
/// One statement parameter.
pub(crate) type P<'a> = &'a (dyn ToSql + Sync);

/// Maps PostgreSQL errors to the store's classes: serialization failures, deadlocks
/// and lock timeouts are `Busy` (retried), a full disk `Full`, a unique violation
/// `Exists`, the rest `Database`.
pub(crate) fn pg_err(e: tokio_postgres::Error) -> StoreError {
    let Some(code) = e.code() else {
        return StoreError::Database(e.to_string());
    };
    if *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::LOCK_NOT_AVAILABLE
    {
        StoreError::Busy
    } else if *code == SqlState::DISK_FULL {
        StoreError::Full(e.to_string())
    } else if *code == SqlState::UNIQUE_VIOLATION {
        StoreError::Exists(
            e.as_db_error()
                .and_then(|d| d.detail())
                .unwrap_or("the row")
                .to_string(),
        )
    } else {
        StoreError::Database(e.to_string())
    }
}

/// An error and its causes on one line (`a: b: c`): a TLS handshake's reason (an
/// unknown issuer, a wrong name) is a cause, not the error's own text.
pub(crate) fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    // Bounded: error chains are short, but nothing here trusts that.
    for _ in 0..8 {
        let Some(cause) = next else { break };
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// Runs a prepared (cached) statement, returning its rows.
pub(crate) async fn rows(
    tx: &Tx<'_>,
    sql: &str,
    params: &[P<'_>],
) -> Result<Vec<tokio_postgres::Row>> {
    let st = tx.prepare_cached(sql).await.map_err(pg_err)?;
    tx.query(&st, params).await.map_err(pg_err)
}

/// Runs a prepared (cached) statement that returns at most one row.
pub(crate) async fn row_opt(
    tx: &Tx<'_>,
    sql: &str,
    params: &[P<'_>],
) -> Result<Option<tokio_postgres::Row>> {
    let st = tx.prepare_cached(sql).await.map_err(pg_err)?;
    tx.query_opt(&st, params).await.map_err(pg_err)
}

/// Runs a prepared (cached) statement that returns exactly one row.
pub(crate) async fn row_one(
    tx: &Tx<'_>,
    sql: &str,
    params: &[P<'_>],
) -> Result<tokio_postgres::Row> {
    let st = tx.prepare_cached(sql).await.map_err(pg_err)?;
    tx.query_one(&st, params).await.map_err(pg_err)
}

/// Runs a prepared (cached) statement; returns how many rows it touched.
pub(crate) async fn exec(tx: &Tx<'_>, sql: &str, params: &[P<'_>]) -> Result<u64> {
    let st = tx.prepare_cached(sql).await.map_err(pg_err)?;
    tx.execute(&st, params).await.map_err(pg_err)
}

/// Column `i` of a row.
pub(crate) fn get<'a, T: FromSql<'a>>(row: &'a tokio_postgres::Row, i: usize) -> Result<T> {
    row.try_get(i).map_err(pg_err)
}

/// Runs `$body` (a future using the transaction `$tx`) in a transaction of a pooled
/// connection and commits it; retries the whole transaction on `Busy`
/// (serialization failure, deadlock), after a short, growing pause.
macro_rules! in_tx {
    ($inner:expr, |$tx:ident| $body:expr) => {{
        let inner: &$crate::Inner = &$inner;
        let mut attempt = 0u32;
        loop {
            let mut client = inner.client().await?;
            let txn = client.transaction().await.map_err($crate::pg_err)?;
            let r = {
                let $tx = &txn;
                $body.await
            };
            let r = match r {
                Ok(v) => txn.commit().await.map_err($crate::pg_err).map(|()| v),
                Err(e) => {
                    let _ = txn.rollback().await;
                    Err(e)
                }
            };
            match r {
                Err(buudien_store::StoreError::Busy) if attempt < $crate::RETRIES => {
                    attempt += 1;
                    tokio::time::sleep($crate::backoff(attempt)).await;
                }
                r => break r,
            }
        }
    }};
}
pub(crate) use in_tx;

/// The pause before retry `attempt`: 2, 4, 8 … ms plus up to as much again at random.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = 1u64 << attempt.min(8);
    Duration::from_millis(base + rand::random::<u64>() % base.max(1))
}

impl Inner {
    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| match e {
            // Every connection busy for POOL_WAIT: the store is busy (retry later).
            deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => {
                StoreError::Busy
            }
            e => StoreError::Database(format!("PostgreSQL connection: {}", causes(&e))),
        })
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db`, or the
    /// `key=value` form; `sslmode=require` and `sslrootcert` as libpq has them, see
    /// `tls`) with at most `pool_size` connections, and brings its schema
    /// up to date (see `schema`). Must be called inside a tokio runtime: background
    /// tasks (the change watch, lease renewals) run on it.
    pub async fn connect(url: &str, pool_size: usize) -> Result<PgStore> {
        PgStore::open(url, pool_size, CODE_VERSION, None).await
    }

    /// [`PgStore::connect`] with new blobs' bytes in object storage (`s3`) instead of
    /// PostgreSQL; the bucket is checked first (a temporary error when it does not
    /// answer). Blobs already in PostgreSQL stay readable.
    pub async fn connect_with_s3(url: &str, pool_size: usize, s3: &S3Settings) -> Result<PgStore> {
        PgStore::open(url, pool_size, CODE_VERSION, Some(s3)).await
    }

    /// [`PgStore::connect`] as if this were code version `code` (for upgrade tests).
    pub async fn connect_as(url: &str, pool_size: usize, code: i64) -> Result<PgStore> {
        PgStore::open(url, pool_size, code, None).await
    }

    async fn open(
        url: &str,
        pool_size: usize,
        code: i64,
        s3: Option<&S3Settings>,
    ) -> Result<PgStore> {
        let s3 = match s3 {
            Some(s) => Some(Arc::new(blobs_s3::S3Blobs::connect(s).await?)),
            None => None,
        };
        let (url, root) = tls::split_root_cert(url)?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Refused(format!("bad PostgreSQL URL: {e}")))?;
        let tls = tls::connector(&config, root.as_ref())?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("buudien");
        }
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls {
            Some(tls) => Manager::from_config(config.clone(), tls.clone(), manager_config),
            None => Manager::from_config(config.clone(), NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Database(format!("PostgreSQL pool: {e}")))?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| StoreError::Refused(format!("PgStore needs a tokio runtime: {e}")))?;
        let inner = Inner {
            pool,
            config,
            tls,
            runtime,
            watch: sync::Watch::new(),
            leases: lease::Leases::default(),
            text: text::TextSettings::new(),
            node: Mutex::new(None),
            s3,
        };
        schema::migrate_as(&inner, code).await?;
        let trgm = text::available(&inner).await?;
        inner.text.available.store(trgm, Ordering::Relaxed);
        inner.text.enabled.store(trgm, Ordering::Relaxed);
        if !trgm {
            tracing::info!("pg_trgm is not available: SEARCH BODY/TEXT reads the messages");
        }
        Ok(PgStore {
            inner: Arc::new(inner),
        })
    }

    /// Where new blobs' bytes go when not in the database: `bucket B, prefix P`.
    pub fn object_storage(&self) -> Option<String> {
        self.inner.s3.as_ref().map(|s| s.describe())
    }

    /// The newest schema version this code knows.
    pub fn schema_version() -> i64 {
        schema::latest()
    }

    /// Sets how long a POP3 maildrop lease and a snapshot pin last without renewal
    /// (defaults: [`LOCK_LEASE`], [`PIN_LEASE`]); the holder renews at a
    /// third of it. For tests of a holder that dies.
    pub fn set_leases(&self, lock: Duration, pin: Duration) {
        self.inner.leases.set(lock, pin);
    }

    /// Runs the releases that dropped lease guards queued (POP3 maildrop locks,
    /// snapshot pins) and waits for them: a stopping server calls it after its
    /// sessions ended, so that it leaves no lease to lapse behind it (a restarted
    /// server would refuse the maildrop with `[IN-USE]` until then).
    pub async fn release_leases(&self) {
        lease::flush(&self.inner).await;
    }

    /// Names this node in the queue claims it makes from now on, so that the node,
    /// restarted after a crash under the same name, can take back what it held
    /// ([`PgStore::release_own_claims`]) instead of waiting for the leases to run
    /// out. The name must be stable across restarts and unique in the cluster.
    pub fn set_node(&self, name: &str) {
        *lock(&self.inner.node) = Some(name.to_string());
    }

    /// Ends the queue claims made under this node's name ([`PgStore::set_node`]):
    /// at the start of `serve`, every such claim belongs to a stopped process of this
    /// node (other nodes' claims are left alone). The number released; 0 without a
    /// name.
    pub async fn release_own_claims(&self) -> Result<usize> {
        let Some(node) = lock(&self.inner.node).clone() else {
            return Ok(0);
        };
        in_tx!(self.inner, |tx| queue::release_claims_of(tx, &node))
    }

    /// Ends every queue claim (after a restart of a single-node setup, as the SQLite
    /// backend does; in a cluster, claims of live nodes would be lost: do not call).
    pub async fn clear_leases(&self) -> Result<usize> {
        in_tx!(self.inner, |tx| async move {
            let n = exec(
                tx,
                "UPDATE queue SET lease_until = 0 WHERE lease_until > 0",
                &[],
            )
            .await?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }
}

impl MailStore for PgStore {
    async fn add_domain(&self, domain: &Domain) -> Result<()> {
        in_tx!(self.inner, |tx| admin::add_domain(tx, domain))
    }

    async fn remove_domain(&self, domain: &Domain) -> Result<()> {
        in_tx!(self.inner, |tx| admin::remove_domain(tx, domain))
    }

    async fn list_domains(&self) -> Result<Vec<Domain>> {
        in_tx!(self.inner, |tx| admin::list_domains(tx))
    }

    async fn add_account(&self, new: NewAccount) -> Result<AccountId> {
        in_tx!(self.inner, |tx| admin::add_account(tx, &new))
    }

    async fn set_password(&self, address: &Address, password: PasswordRecord) -> Result<()> {
        in_tx!(self.inner, |tx| admin::set_password(tx, address, &password))
    }

    async fn set_apop_secret(&self, address: &Address, secret: Option<String>) -> Result<()> {
        in_tx!(self.inner, |tx| admin::set_apop_secret(
            tx,
            address,
            secret.as_deref()
        ))
    }

    async fn set_quota(&self, address: &Address, quota: Quota) -> Result<()> {
        in_tx!(self.inner, |tx| admin::set_quota(tx, address, quota))
    }

    async fn remove_account(&self, address: &Address) -> Result<()> {
        in_tx!(self.inner, |tx| admin::remove_account(tx, address))
    }

    async fn list_accounts(&self) -> Result<Vec<Account>> {
        in_tx!(self.inner, |tx| admin::list_accounts(tx))
    }

    async fn account(&self, address: &Address) -> Result<Option<Account>> {
        in_tx!(self.inner, |tx| admin::account(tx, address))
    }

    async fn auth_record(&self, address: &Address) -> Result<Option<AuthRecord>> {
        in_tx!(self.inner, |tx| admin::auth_record(tx, address))
    }

    async fn add_alias(&self, address: &Address, targets: &[Address]) -> Result<()> {
        in_tx!(self.inner, |tx| admin::add_alias(tx, address, targets))
    }

    async fn remove_alias(&self, address: &Address) -> Result<()> {
        in_tx!(self.inner, |tx| admin::remove_alias(tx, address))
    }

    async fn list_aliases(&self) -> Result<Vec<Alias>> {
        in_tx!(self.inner, |tx| admin::list_aliases(tx))
    }

    async fn resolve_recipient(&self, address: &Address) -> Result<Vec<AccountId>> {
        in_tx!(self.inner, |tx| admin::resolve_recipient(tx, address))
    }

    async fn deliver(
        &self,
        accounts: &[AccountId],
        message: &[u8],
        received: SystemTime,
    ) -> Result<Vec<Delivered>> {
        if accounts.is_empty() {
            return Err(StoreError::Refused(
                "a delivery needs at least one recipient".into(),
            ));
        }
        let sub = Submission {
            message,
            local_prefix: &[],
            received,
            local: accounts,
            outbound: None,
        };
        self.submit(sub).await.map(|s| s.delivered)
    }

    async fn mailboxes(&self, account: AccountId) -> Result<Vec<Mailbox>> {
        in_tx!(self.inner, |tx| mail::mailboxes(tx, account))
    }

    async fn open_maildrop(&self, account: AccountId) -> Result<Maildrop> {
        let (mailbox, uidvalidity, entries, snapshot) =
            in_tx!(self.inner, |tx| mail::open_maildrop(
                tx,
                account,
                &self.inner.leases
            ))?;
        let pin = lease::pin_guard(&self.inner, snapshot);
        Ok(Maildrop {
            mailbox,
            uidvalidity,
            entries,
            pin,
        })
    }

    async fn read_blob(&self, blob: &BlobId) -> Result<BlobReader> {
        blobs::open(&self.inner, blob).await
    }

    async fn expunge(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<usize> {
        in_tx!(self.inner, |tx| mail::expunge(tx, mailbox, uids))
    }

    async fn lock_maildrop(&self, account: AccountId) -> Result<Option<Guard>> {
        lease::lock_maildrop(&self.inner, account).await
    }

    async fn changes_since(&self, mailbox: MailboxId, since: u64) -> Result<Vec<Change>> {
        in_tx!(self.inner, |tx| mail::changes_since(tx, mailbox, since))
    }

    async fn collect_garbage(&self) -> Result<usize> {
        lease::flush(&self.inner).await;
        let s3 = self.inner.s3.as_deref();
        let n = in_tx!(self.inner, |tx| blobs::collect_garbage(tx, s3.is_some()))?;
        if let Some(s3) = s3 {
            blobs_s3::delete_pending(&self.inner, s3).await?;
        }
        Ok(n)
    }
}

impl QueueStore for PgStore {
    async fn submit(&self, submission: Submission<'_>) -> Result<Submitted> {
        let prepared = mail::Prepared::new(&submission)?;
        let s3 = self.inner.s3.as_deref();
        in_tx!(self.inner, |tx| mail::store(tx, s3, &prepared))
    }

    async fn claim(
        &self,
        now: SystemTime,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<QueuedMessage>> {
        let node = lock(&self.inner.node).clone();
        in_tx!(self.inner, |tx| queue::claim(
            tx,
            now,
            lease,
            limit,
            node.as_deref()
        ))
    }

    async fn record(&self, id: QueueId, results: &[(u32, Outcome)]) -> Result<()> {
        in_tx!(self.inner, |tx| queue::record(tx, id, results))
    }

    async fn mark_reported(&self, id: QueueId, indexes: &[u32]) -> Result<()> {
        in_tx!(self.inner, |tx| queue::mark_reported(tx, id, indexes))
    }

    async fn release(&self, id: QueueId) -> Result<()> {
        in_tx!(self.inner, |tx| queue::release(tx, id))
    }

    async fn queue_list(&self) -> Result<Vec<QueuedMessage>> {
        in_tx!(self.inner, |tx| queue::list(tx))
    }

    async fn queue_flush(&self, id: Option<QueueId>) -> Result<usize> {
        in_tx!(self.inner, |tx| queue::flush(tx, id))
    }

    async fn queue_remove(&self, id: QueueId) -> Result<()> {
        in_tx!(self.inner, |tx| queue::remove(tx, id))
    }

    async fn queue_bounce(&self, id: QueueId, reason: &str) -> Result<usize> {
        in_tx!(self.inner, |tx| queue::bounce(tx, id, reason))
    }
}

impl MailboxStore for PgStore {
    async fn mailbox(&self, account: AccountId, name: &str) -> Result<Option<Mailbox>> {
        in_tx!(self.inner, |tx| folders::find(tx, account, name))
    }

    async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<Mailbox> {
        in_tx!(self.inner, |tx| folders::create(
            tx,
            account,
            name,
            special_use
        ))
    }

    async fn delete_mailbox(&self, account: AccountId, name: &str) -> Result<()> {
        in_tx!(self.inner, |tx| folders::delete(tx, account, name))
    }

    async fn rename_mailbox(&self, account: AccountId, from: &str, to: &str) -> Result<()> {
        in_tx!(self.inner, |tx| folders::rename(tx, account, from, to))
    }

    async fn orphan_subscriptions(&self, account: AccountId) -> Result<Vec<String>> {
        in_tx!(self.inner, |tx| folders::orphan_subscriptions(tx, account))
    }

    async fn subscribe(&self, account: AccountId, name: &str, subscribed: bool) -> Result<()> {
        in_tx!(self.inner, |tx| folders::subscribe(
            tx, account, name, subscribed
        ))
    }

    async fn messages(&self, mailbox: MailboxId) -> Result<Vec<MessageEntry>> {
        in_tx!(self.inner, |tx| folders::messages(tx, mailbox))
    }

    async fn append(
        &self,
        mailbox: MailboxId,
        message: &[u8],
        flags: Flags,
        keywords: &[String],
        received: SystemTime,
    ) -> Result<MessageEntry> {
        let one = NewMessage {
            source: MessageSource::Bytes(message.to_vec()),
            flags,
            keywords: keywords.to_vec(),
            received,
        };
        self.append_many(mailbox, vec![one])
            .await?
            .pop()
            .ok_or_else(|| StoreError::Database("appended message not found".into()))
    }

    async fn append_many(
        &self,
        mailbox: MailboxId,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<MessageEntry>> {
        let prepared = folders::prepare(messages).await?;
        let s3 = self.inner.s3.as_deref();
        in_tx!(self.inner, |tx| folders::append_many(
            tx, s3, mailbox, &prepared
        ))
    }

    async fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        op: FlagOp,
        flags: Flags,
        keywords: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<FlagsStored> {
        in_tx!(self.inner, |tx| folders::store_flags(
            tx,
            mailbox,
            uids,
            op,
            flags,
            keywords,
            unchanged_since
        ))
    }

    async fn copy(&self, from: MailboxId, uids: &[Uid], to: MailboxId) -> Result<Vec<(Uid, Uid)>> {
        in_tx!(self.inner, |tx| folders::copy(tx, from, uids, to))
    }

    async fn entries(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<MessageEntry>> {
        in_tx!(self.inner, |tx| sync::entries(tx, mailbox, uids))
    }

    async fn metas(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<StoredMeta>> {
        in_tx!(self.inner, |tx| sync::metas(tx, mailbox, uids))
    }

    async fn delta(&self, mailbox: MailboxId, since: u64) -> Result<Delta> {
        in_tx!(self.inner, |tx| sync::delta(tx, mailbox, since))
    }

    async fn claim_recent(&self, mailbox: MailboxId) -> Result<Uid> {
        in_tx!(self.inner, |tx| sync::claim_recent(tx, mailbox))
    }

    async fn recent_mark(&self, mailbox: MailboxId) -> Result<Uid> {
        in_tx!(self.inner, |tx| sync::recent_mark(tx, mailbox))
    }

    fn watch_mailbox(&self, mailbox: MailboxId) -> tokio::sync::watch::Receiver<u64> {
        sync::subscribe(&self.inner, mailbox)
    }

    async fn search_text(
        &self,
        mailbox: MailboxId,
        needle: &str,
        body_only: bool,
    ) -> Result<Option<TextHits>> {
        self.search_text_index(mailbox, needle, body_only).await
    }

    async fn move_messages(
        &self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> Result<Vec<(Uid, Uid)>> {
        in_tx!(self.inner, |tx| folders::move_messages(tx, from, uids, to))
    }
}
