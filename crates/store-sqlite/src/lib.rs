//! The embedded store: SQLite in WAL mode for the index and small messages (up to
//! [`DEFAULT_INLINE_MAX`], in `blobs.data`), one file per larger blob, all under
//! `data_dir`, with no setup.
//!
//! # Layout
//! - [`SqliteStore`] (this file): opening, the connection pool, the [`MailStore`] impl.
//! - `schema`: the tables and their migrations (`PRAGMA user_version`).
//! - `blobs`: content-addressed blob files (`blobs/xx/yy/<id hex>`), written to `tmp/`,
//!   fsynced, renamed, directory fsynced.
//! - `admin`: domains, accounts, aliases.
//! - `folders`: IMAP's mailbox operations (CREATE/DELETE/RENAME, flags, APPEND, COPY,
//!   MOVE).
//! - `mail`: delivery, the POP3 maildrop, expunge, the change log, garbage collection.
//! - `quarantine`: damaged blobs (missing or the wrong size on read) set aside under
//!   `quarantine/` and recorded, so reads fail with [`StoreError::Damaged`] at once.
//! - `check`: `buudien check` ([`SqliteStore::check`]): every blob against the index.
//! - `queue`: the outbound queue ([`QueueStore`]): submission's queue rows, claims
//!   (leases), per-recipient results.
//! - `group`: group commit: concurrent deliveries share one transaction (one fsync
//!   of the log), each in its own savepoint.
//! - `text`: the text index behind SEARCH BODY / TEXT (an FTS5 trigram table of each
//!   email's decoded, folded text, indexed in the background and on demand; see
//!   that module for the design and [`SqliteStore::set_text_index`]).
//! - `cached`: `execute`/`query_row` through each connection's statement cache, and
//!   `Tx`, a transaction whose `BEGIN`/`COMMIT` come from that cache too.
//! - `gate`: the in-process write gate writers queue at before `BEGIN IMMEDIATE`
//!   (SQLite's busy handler sleeps; the gate wakes the next writer at once).
//! - `space`: the free-space reserve new messages may not eat into (deletions may).
//! - `testing` (feature `testing`): damaging stored messages, for tests.
//! - `faults`: fault injection for tests. `BUUDIEN_FAULTS=point:n,…` (read once at
//!   open) makes the n-th `blob_write`, `blob_fsync`, `blob_rename`, `dir_fsync` or
//!   `commit` (of a message-storing transaction) fail with `EIO`; unset, it costs one
//!   branch per point.
//!
//! # Invariants
//! - Every write runs in one `BEGIN IMMEDIATE` transaction, so concurrent sessions and
//!   CLI processes serialise on SQLite's write lock; threads of one process queue at
//!   the write gate first (`gate`). A write that stores a message or that anything is
//!   acknowledged on commits `synchronous = FULL` (durable before it returns); flag
//!   changes, `\Recent` marks, expunges and the text index commit light (`NORMAL`:
//!   durable with the next full commit, lost only to a power cut before it), and
//!   garbage collection makes them durable before it unlinks a file they freed.
//! - Deliveries, APPEND, STORE, EXPUNGE and the `\Recent` claim go through the group
//!   commit (`group`): concurrent ones share one transaction, each in its savepoint.
//! - A small message's bytes are written in the row of its blob (`blobs.data`) by the
//!   transaction that first references it, so they are durable with that commit; a
//!   blob has its bytes in the row or in its file, never neither while referenced.
//! - A blob file is renamed into place (and its directory fsynced) while the write lock
//!   is held, before the rows that reference it commit; garbage collection deletes
//!   the rows durably, then unlinks those files still without a row under the lock,
//!   and skips blobs pinned by a live [`Maildrop`]. So a
//!   committed reference always has its file, and a pinned blob survives expunges.
//!   A write that fails after placing files deletes those without a row under a new
//!   write lock (`group`, `mail::remove_rowless`); a file placed by a writer that died before its
//!   commit has no row, and the first garbage collection of a process removes such
//!   files (under the lock). A temporary file is removed when its write fails.
//! - UIDNEXT/HIGHESTMODSEQ are bumped with `UPDATE … RETURNING` in the transaction
//!   that uses them.
//! - Writes, and reads that can take long, run on tokio's blocking pool; only a
//!   session's short reads (`delta`, `entries`, `metas`, opening a message; a WAL
//!   reader never waits for a writer) run on the calling thread
//!   (`SqliteStore::run_here`), on pooled connections of their own that never write
//!   (see `with_conn`). Every connection has the query planner stability
//!   guarantee on, so a cached statement is compiled once per connection.
//! - The text index is derived data: a damaged one is rebuilt empty (`text::rebuild`)
//!   and refilled, never repaired in place.
//! - A queued message holds one reference on its blob, like an email does, so garbage
//!   collection never takes the bytes of a message still in the queue. `submit` stores
//!   the local copies and the queue rows in one transaction.
//! - A claim is `queue.lease_until` written under the write lock: exclusive across
//!   threads and processes, and it runs out by itself when a worker dies.
//! - Blocking SQLite and file calls run on tokio's blocking pool, never on a reactor
//!   thread.

mod admin;
mod blobs;
mod cached;
mod check;
mod faults;
mod folders;
mod gate;
mod group;
mod mail;
mod quarantine;
mod queue;
mod schema;
mod space;
mod sync;
#[cfg(feature = "testing")]
pub mod testing;
mod text;

pub use check::{CheckOptions, CheckReport, Problem, ProblemKind};
pub use text::{DEFAULT_ON_DEMAND, READ_LIMIT, TEXT_LIMIT};

use crate::cached::Cached;
use buudien_store::*;
use buudien_types::{Address, Domain, Uid};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// How long a writer waits for SQLite's lock before the operation fails as busy.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// The default free-space reserve: 64 MiB.
pub const DEFAULT_MIN_FREE: u64 = 64 << 20;
/// The default size up to which messages are kept in the database: 128 KiB (most
/// mail; see [`SqliteStore::set_inline_max`]).
pub const DEFAULT_INLINE_MAX: u64 = 128 << 10;
/// Log pages (256 MiB) after which a committing writer checkpoints by itself
/// (SQLite's default is 1,000): a safety net only, since
/// [`SqliteStore::run_checkpointer`] checkpoints in the background, outside the
/// write gate, long before. At 64 MiB a stream of 100 KiB deliveries crossed it: the
/// group-commit thread then copied the log after its commit while every delivery
/// waited (the SMTP benchmark's p99).
const AUTOCHECKPOINT_PAGES: u32 = 65_536;
/// How often the background checkpointer runs while nothing is written.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// How often it runs while the log grows: smaller copies, each with a shorter fsync
/// of the database file for commits to queue behind.
const CHECKPOINT_BUSY: Duration = Duration::from_millis(100);
/// Idle connections kept for reuse.
const POOL_IDLE: usize = 64;

/// The embedded SQLite + blob-file store.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    dir: PathBuf,
    db_path: PathBuf,
    pool: Mutex<Vec<Connection>>,
    /// Idle connections of the session's short reads ([`SqliteStore::run_here`]),
    /// kept apart from those that write: see `with_conn`.
    readers: Mutex<Vec<Connection>>,
    /// Blobs pinned by live maildrop snapshots, with their pin counts. Held while a
    /// snapshot is read and while garbage is collected, so the two never interleave.
    pins: Mutex<HashMap<BlobId, usize>>,
    /// Accounts whose POP3 maildrop is locked in this process.
    locks: Mutex<HashSet<AccountId>>,
    /// The change counter IDLE sessions wait on.
    watch: sync::Watch,
    /// Blob files without a row were looked for (once per process).
    swept: AtomicBool,
    /// The fault-injection plan (none unless `BUUDIEN_FAULTS` is set).
    faults: faults::Faults,
    /// Free space (octets) new messages may not eat into; 0: no reserve.
    min_free: AtomicU64,
    /// Messages of at most this many octets are kept in the database (`blobs.data`)
    /// instead of a file of their own; 0: every message in a file.
    inline_max: AtomicU64,
    /// Deliveries waiting to share a transaction (group commit).
    group: group::Group,
    /// SEARCH uses the text index (see `text`).
    text_enabled: AtomicBool,
    /// Unindexed emails a SEARCH indexes before it answers.
    text_on_demand: AtomicUsize,
    /// A statement found the text index damaged: the indexer rebuilds it.
    text_damaged: AtomicBool,
    /// When the text index was last rebuilt (rebuilds are spaced out).
    text_rebuilt: Mutex<Option<std::time::Instant>>,
    /// When the store was opened: the clock `last_write` counts from.
    opened: std::time::Instant,
    /// Milliseconds after `opened` of the last group commit (0: none yet).
    last_write: AtomicU64,
}

/// Locks a mutex, recovering it if a panicking thread poisoned it (the data is plain
/// bookkeeping that stays consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SqliteStore {
    /// Opens (creating if needed) the store under `data_dir`: `buudien.sqlite`,
    /// `blobs/` and `tmp/`. Stale temporary files of a crashed process are removed.
    /// `BUUDIEN_FAULTS`, when set, is a fault-injection plan (see `faults`).
    pub fn open(data_dir: &Path) -> Result<SqliteStore> {
        SqliteStore::open_faulty(data_dir, faults::Faults::from_env()?)
    }

    /// Sets the free-space reserve: new messages are refused ([`StoreError::Full`])
    /// while the file system has less than `bytes` free besides them, so deletions
    /// still find room (default [`DEFAULT_MIN_FREE`]; 0 turns it off).
    pub fn set_min_free_space(&self, bytes: u64) {
        self.inner.min_free.store(bytes, Ordering::Relaxed);
    }

    /// Sets the size up to which a message is kept in the database instead of a file
    /// of its own (default [`DEFAULT_INLINE_MAX`]; 0: always a file). Such a message
    /// costs no fsync of its own: the commit's log fsync makes it durable, shared by
    /// every delivery of a group commit. Larger ones stream from their files.
    pub fn set_inline_max(&self, bytes: u64) {
        self.inner.inline_max.store(bytes, Ordering::Relaxed);
    }

    /// Like [`SqliteStore::open`], with the fault-injection plan `plan` (the syntax of
    /// `BUUDIEN_FAULTS`, e.g. `"blob_fsync:1,commit:2"`) instead of the environment's.
    /// For tests.
    pub fn open_with_faults(data_dir: &Path, plan: &str) -> Result<SqliteStore> {
        SqliteStore::open_faulty(data_dir, faults::Faults::parse(plan)?)
    }

    fn open_faulty(data_dir: &Path, faults: faults::Faults) -> Result<SqliteStore> {
        std::fs::create_dir_all(data_dir.join("blobs"))?;
        std::fs::create_dir_all(data_dir.join("tmp"))?;
        let inner = Inner {
            dir: data_dir.to_path_buf(),
            db_path: data_dir.join("buudien.sqlite"),
            pool: Mutex::new(Vec::new()),
            readers: Mutex::new(Vec::new()),
            pins: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashSet::new()),
            watch: sync::Watch::new(),
            swept: AtomicBool::new(false),
            faults,
            min_free: AtomicU64::new(DEFAULT_MIN_FREE),
            inline_max: AtomicU64::new(DEFAULT_INLINE_MAX),
            group: group::Group::default(),
            text_enabled: AtomicBool::new(true),
            text_on_demand: AtomicUsize::new(text::DEFAULT_ON_DEMAND),
            text_damaged: AtomicBool::new(false),
            text_rebuilt: Mutex::new(None),
            opened: std::time::Instant::now(),
            last_write: AtomicU64::new(0),
        };
        let mut conn = inner.connect()?;
        schema::migrate(&mut conn)?;
        lock(&inner.pool).push(conn);
        Ok(SqliteStore {
            inner: Arc::new(inner),
        })
    }

    /// Removes temporary files left by a crashed writer: those whose writing process
    /// is gone, and any older than an hour (a `buudien deliver` running beside the
    /// server keeps its own).
    pub fn clean_tmp(&self) -> Result<usize> {
        blobs::clean_tmp(&self.inner.dir)
    }

    /// Ends every queue claim. The embedded store serves one `buudien serve` per data
    /// directory, so when it starts no claim can be live: a claim left by a killed
    /// server is released at once instead of when its lease runs out.
    pub async fn clear_leases(&self) -> Result<usize> {
        self.run(|_, c| {
            let n = c
                .exec_c("UPDATE queue SET lease_until = 0 WHERE lease_until > 0", [])
                .map_err(db_err)?;
            Ok(n)
        })
        .await
    }

    /// Copies the log into the database file every [`CHECKPOINT_EVERY`], for ever (a
    /// task of `buudien serve`). A passive checkpoint runs beside readers and writers
    /// and holds no write lock, so commits no longer stop for one: a writer that
    /// crossed SQLite's threshold would checkpoint inside its commit, holding every
    /// other writer up for tens of milliseconds.
    ///
    /// It looks again after [`CHECKPOINT_BUSY`] while the log grows between looks,
    /// after [`CHECKPOINT_EVERY`] otherwise.
    pub async fn run_checkpointer(self) {
        let mut last_frames = 0i64;
        let mut pause = CHECKPOINT_EVERY;
        loop {
            tokio::time::sleep(pause).await;
            let r = self
                .run(|_, c| {
                    // (busy, frames in the log, frames copied)
                    c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1))
                        .map_err(db_err)
                })
                .await;
            pause = match r {
                Ok(frames) => {
                    let grew = frames != last_frames;
                    last_frames = frames;
                    if grew {
                        CHECKPOINT_BUSY
                    } else {
                        CHECKPOINT_EVERY
                    }
                }
                Err(e) => {
                    tracing::warn!("checkpoint failed: {e}");
                    CHECKPOINT_EVERY
                }
            };
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Runs `f` with a pooled connection on the blocking pool.
    async fn run<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Arc<Inner>, &mut Connection) -> Result<R> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || with_conn(&inner, &inner.pool, f))
            .await
            .map_err(|e| StoreError::Database(format!("store task failed: {e}")))?
    }

    /// Runs `f` with a pooled connection on the calling thread, for the short reads
    /// a session makes around nearly every command (what changed, the entries and
    /// structure of a few messages, a small message's bytes). A WAL reader never
    /// waits for a writer, and these touch a bounded few rows, so the hand-off to the
    /// blocking pool cost more than the query: a quarter of the server's CPU under
    /// the IMAP benchmark went to waking and parking pool threads.
    ///
    /// Each call spends a unit of the task's cooperative budget, so a session that
    /// makes many in a row (a FETCH over a large mailbox, in batches) still yields
    /// the thread to the other sessions now and then. A delta after a mass change
    /// of a large mailbox is the longest of these: its rows are the changed
    /// messages, at most the mailbox.
    async fn run_here<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&Arc<Inner>, &mut Connection) -> Result<R>,
    {
        let r = with_conn(&self.inner, &self.inner.readers, f);
        tokio::task::consume_budget().await;
        r
    }
}

/// Runs `f` with a connection from `pool` (a new one when none is idle), and gives
/// it back unless it was left inside a transaction.
///
/// Two pools: the session's short reads never take a connection that wrote. A
/// write transaction lets its connection's page cache grow to `cache_spill`'s 8,192
/// pages, and SQLite's page cache never shrinks its hash table again; every read
/// transaction that follows another connection's commit empties the cache by
/// walking that whole table (`pcache1TruncateUnsafe`: 2 % of the server's CPU under
/// the IMAP benchmark, most of it in `delta`).
fn with_conn<R, F>(inner: &Arc<Inner>, pool: &Mutex<Vec<Connection>>, f: F) -> Result<R>
where
    F: FnOnce(&Arc<Inner>, &mut Connection) -> Result<R>,
{
    let mut conn = match lock(pool).pop() {
        Some(c) => c,
        None => inner.connect()?,
    };
    let r = f(inner, &mut conn);
    if let Err(StoreError::Database(m)) = &r
        && m.starts_with(text::DAMAGED)
    {
        // The text indexer rebuilds it (see `text::repair`).
        inner.text_damaged.store(true, Ordering::Relaxed);
    }
    // A connection left inside a failed transaction is not reused.
    if conn.is_autocommit() {
        let mut pool = lock(pool);
        if pool.len() < POOL_IDLE {
            pool.push(conn);
        }
    }
    r
}

impl Inner {
    /// Notes that mail was just written (a group commit), for
    /// [`Inner::written_within`].
    pub(crate) fn note_write(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_write.store(ms.max(1), Ordering::Relaxed);
    }

    /// True when a group commit happened in the last `window`.
    pub(crate) fn written_within(&self, window: Duration) -> bool {
        let last = self.last_write.load(Ordering::Relaxed);
        let now = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        last != 0 && now.saturating_sub(last) < u64::try_from(window.as_millis()).unwrap_or(0)
    }

    /// A new connection. `journal_size_limit`: the log holds small messages until
    /// they are checkpointed, so a burst can grow it far; when it starts over, it is
    /// cut back to 256 MiB instead of keeping the burst's size for ever. Below that
    /// size the log's file is kept and written over: appending to it instead
    /// allocated new blocks, which the kernel zeroes around every 4,120-octet frame
    /// and which every commit's sync then records in the file system's journal (with
    /// 64 MiB, SMTP of 100 KiB messages spent a tenth of its samples in that
    /// `memset`; 256 MiB took 8 senders from 1,410 to 1,600 msg/s).
    /// `cache_spill`: a write transaction keeps up to 32 MiB of changed pages in
    /// memory (the cache itself stays at 512 KiB of clean pages); with the cache's
    /// own bound, a group commit of 32 messages of 100 KiB wrote its pages to the log
    /// mid-transaction, and each delivery's savepoint copied the free pages it reused
    /// to a temporary file (together a sixth of the server's samples). `temp_store`:
    /// those savepoint journals, and sorts, in memory, not in temporary files.
    fn connect(&self) -> Result<Connection> {
        let conn = Connection::open(&self.db_path).map_err(db_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
        conn.set_prepared_statement_cache_capacity(cached::CAPACITY);
        // Plans that never depend on bound values. Without this, SQLite marks a
        // statement whose plan looked at a parameter's value (`col = ?` weighed as 0/1
        // or not, `LIMIT ?`) for recompiling whenever that value changes, and the
        // statement cache clears the bindings of every statement it takes back, which
        // SQLite treats as such a change: delta's statements were compiled anew on
        // every call (a ninth of the server's CPU in the IMAP benchmark).
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
            .map_err(db_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA cache_size = -512;
             PRAGMA cache_spill = 8192;
             PRAGMA temp_store = MEMORY;
             PRAGMA journal_size_limit = 268435456;",
        )
        .map_err(db_err)?;
        conn.pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_PAGES)
            .map_err(db_err)?;
        Ok(conn)
    }
}

/// Maps SQLite errors to the store's classes: lock waits that ran out are `Busy`, a
/// full disk is `Full`, other I/O failures `Io`, the rest is `Database`.
pub(crate) fn db_err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy,
        Some(ErrorCode::DiskFull) => StoreError::Full(e.to_string()),
        Some(ErrorCode::SystemIoFailure | ErrorCode::CannotOpen) => StoreError::Io(e.to_string()),
        _ if text::is_damage(&e) => StoreError::Database(format!("{}{e}", text::DAMAGED)),
        _ => StoreError::Database(e.to_string()),
    }
}

impl MailStore for SqliteStore {
    async fn add_domain(&self, domain: &Domain) -> Result<()> {
        let d = domain.clone();
        self.run(move |_, c| admin::add_domain(c, &d)).await
    }

    async fn remove_domain(&self, domain: &Domain) -> Result<()> {
        let d = domain.clone();
        self.run(move |_, c| admin::remove_domain(c, &d)).await
    }

    async fn list_domains(&self) -> Result<Vec<Domain>> {
        self.run(|_, c| admin::list_domains(c)).await
    }

    async fn add_account(&self, new: NewAccount) -> Result<AccountId> {
        self.run(move |_, c| admin::add_account(c, &new)).await
    }

    async fn set_password(&self, address: &Address, password: PasswordRecord) -> Result<()> {
        let a = address.clone();
        self.run(move |_, c| admin::set_password(c, &a, &password))
            .await
    }

    async fn set_apop_secret(&self, address: &Address, secret: Option<String>) -> Result<()> {
        let a = address.clone();
        self.run(move |_, c| admin::set_apop_secret(c, &a, secret.as_deref()))
            .await
    }

    async fn set_quota(&self, address: &Address, quota: Quota) -> Result<()> {
        let a = address.clone();
        self.run(move |_, c| admin::set_quota(c, &a, quota)).await
    }

    async fn remove_account(&self, address: &Address) -> Result<()> {
        let a = address.clone();
        self.run(move |_, c| admin::remove_account(c, &a)).await
    }

    async fn list_accounts(&self) -> Result<Vec<Account>> {
        self.run(|_, c| admin::list_accounts(c)).await
    }

    async fn account(&self, address: &Address) -> Result<Option<Account>> {
        let a = address.clone();
        self.run(move |_, c| admin::account(c, &a)).await
    }

    async fn auth_record(&self, address: &Address) -> Result<Option<AuthRecord>> {
        let a = address.clone();
        self.run(move |_, c| admin::auth_record(c, &a)).await
    }

    async fn add_alias(&self, address: &Address, targets: &[Address]) -> Result<()> {
        let a = address.clone();
        let t = targets.to_vec();
        self.run(move |_, c| admin::add_alias(c, &a, &t)).await
    }

    async fn remove_alias(&self, address: &Address) -> Result<()> {
        let a = address.clone();
        self.run(move |_, c| admin::remove_alias(c, &a)).await
    }

    async fn list_aliases(&self) -> Result<Vec<Alias>> {
        self.run(|_, c| admin::list_aliases(c)).await
    }

    async fn resolve_recipient(&self, address: &Address) -> Result<Vec<AccountId>> {
        let a = address.clone();
        self.run(move |_, c| admin::resolve_recipient(c, &a)).await
    }

    async fn deliver(
        &self,
        accounts: &[AccountId],
        message: &[u8],
        received: SystemTime,
    ) -> Result<Vec<Delivered>> {
        let accounts = accounts.to_vec();
        let message = message.to_vec();
        self.run(move |inner, c| mail::deliver(inner, c, &accounts, &message, received))
            .await
    }

    async fn mailboxes(&self, account: AccountId) -> Result<Vec<Mailbox>> {
        self.run(move |_, c| mail::mailboxes(c, account)).await
    }

    async fn open_maildrop(&self, account: AccountId) -> Result<Maildrop> {
        self.run(move |inner, c| mail::open_maildrop(inner, c, account))
            .await
    }

    /// A small message comes from the database in one piece; a file's length is
    /// checked against the index (not its hash: see `quarantine`); a missing or wrong-size file of a referenced blob is quarantined
    /// and answered with [`StoreError::Damaged`].
    async fn read_blob(&self, blob: &BlobId) -> Result<BlobReader> {
        let blob = *blob;
        let opened = self
            .run_here(|inner, c| quarantine::open_checked(inner, c, &blob))
            .await?;
        Ok(match opened {
            quarantine::Opened::Inline(bytes) => Box::pin(std::io::Cursor::new(bytes)),
            quarantine::Opened::File(f) => Box::pin(blobs::HereFile(f)),
        })
    }

    /// See `quarantine::read_range`: a header or part of a large message in the
    /// database is read without the rest of it.
    async fn read_blob_range(&self, blob: &BlobId, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
        let blob = *blob;
        self.run_here(move |inner, c| quarantine::read_range(inner, c, &blob, range))
            .await
    }

    /// See `quarantine::read_ranges`: the blobs kept in the database, in one read
    /// transaction.
    async fn read_blob_ranges(
        &self,
        wants: &[(BlobId, std::ops::Range<u64>)],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        self.run_here(|_, c| quarantine::read_ranges(c, wants))
            .await
    }

    async fn expunge(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<usize> {
        let uids = uids.to_vec();
        self.run(move |inner, c| mail::expunge(inner, c, mailbox, uids))
            .await
    }

    async fn lock_maildrop(&self, account: AccountId) -> Result<Option<Guard>> {
        let inner = self.inner.clone();
        if !lock(&inner.locks).insert(account) {
            return Ok(None);
        }
        Ok(Some(Guard::new(move || {
            lock(&inner.locks).remove(&account);
        })))
    }

    async fn changes_since(&self, mailbox: MailboxId, since: u64) -> Result<Vec<Change>> {
        self.run(move |_, c| mail::changes_since(c, mailbox, since))
            .await
    }

    /// Also, on the first call in a process, removes blob files without a row (left
    /// by a writer killed between placing a file and committing; see
    /// `mail::remove_orphans`), so the space a crash left behind comes back.
    async fn collect_garbage(&self) -> Result<usize> {
        let sweep = !self.inner.swept.load(Ordering::Relaxed);
        self.run(move |inner, c| {
            let mut n = 0;
            if sweep {
                n += mail::remove_orphans(inner, c)?;
                inner.swept.store(true, Ordering::Relaxed);
            }
            Ok(n + mail::collect_garbage(inner, c)?)
        })
        .await
    }
}

impl QueueStore for SqliteStore {
    async fn submit(&self, submission: Submission<'_>) -> Result<Submitted> {
        let accounts = submission.local.to_vec();
        let message = submission.message.to_vec();
        let prefix = submission.local_prefix.to_vec();
        let received = submission.received;
        let outbound = submission.outbound.map(|(e, r)| (e.clone(), r.to_vec()));
        self.run(move |inner, c| {
            let outbound = outbound.as_ref().map(|(e, r)| (e, r.as_slice()));
            let parts = mail::Parts {
                prefix: &prefix,
                message: &message,
            };
            mail::store(inner, c, &accounts, parts, received, outbound)
        })
        .await
    }

    async fn claim(
        &self,
        now: SystemTime,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<QueuedMessage>> {
        self.run(move |_, c| queue::claim(c, now, lease, limit))
            .await
    }

    async fn record(&self, id: QueueId, results: &[(u32, Outcome)]) -> Result<()> {
        let results = results.to_vec();
        self.run(move |_, c| queue::record(c, id, &results)).await
    }

    async fn mark_reported(&self, id: QueueId, indexes: &[u32]) -> Result<()> {
        let indexes = indexes.to_vec();
        self.run(move |_, c| queue::mark_reported(c, id, &indexes))
            .await
    }

    async fn release(&self, id: QueueId) -> Result<()> {
        self.run(move |_, c| queue::release(c, id)).await
    }

    async fn queue_list(&self) -> Result<Vec<QueuedMessage>> {
        self.run(|_, c| queue::list(c)).await
    }

    async fn queue_flush(&self, id: Option<QueueId>) -> Result<usize> {
        self.run(move |_, c| queue::flush(c, id)).await
    }

    async fn queue_remove(&self, id: QueueId) -> Result<()> {
        self.run(move |_, c| queue::remove(c, id)).await
    }

    async fn queue_bounce(&self, id: QueueId, reason: &str) -> Result<usize> {
        let reason = reason.to_string();
        self.run(move |_, c| queue::bounce(c, id, &reason)).await
    }
}

impl MailboxStore for SqliteStore {
    async fn orphan_subscriptions(&self, account: AccountId) -> Result<Vec<String>> {
        self.run(move |_, c| folders::orphan_subscriptions(c, account))
            .await
    }

    async fn entries(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<MessageEntry>> {
        self.run_here(|_, c| sync::entries(c, mailbox, uids)).await
    }

    async fn metas(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<StoredMeta>> {
        self.run_here(|_, c| sync::metas(c, mailbox, uids)).await
    }

    async fn entries_and_metas(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        metas: bool,
    ) -> Result<(Vec<MessageEntry>, Vec<StoredMeta>)> {
        self.run_here(|_, c| sync::entries_and_metas(c, mailbox, uids, metas))
            .await
    }

    async fn delta(&self, mailbox: MailboxId, since: u64) -> Result<Delta> {
        self.run_here(|_, c| sync::delta(c, mailbox, since)).await
    }

    async fn recent_mark(&self, mailbox: MailboxId) -> Result<Uid> {
        self.run(move |_, c| sync::recent_mark(c, mailbox)).await
    }

    async fn claim_recent(&self, mailbox: MailboxId) -> Result<Uid> {
        self.run(move |inner, c| sync::claim_recent(inner, c, mailbox))
            .await
    }

    fn watch_mailbox(&self, mailbox: MailboxId) -> tokio::sync::watch::Receiver<u64> {
        sync::subscribe(&self.inner, mailbox)
    }

    async fn mailbox(&self, account: AccountId, name: &str) -> Result<Option<Mailbox>> {
        let name = name.to_string();
        self.run(move |_, c| folders::mailbox(c, account, &name))
            .await
    }

    async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<Mailbox> {
        let name = name.to_string();
        self.run(move |_, c| folders::create(c, account, &name, special_use))
            .await
    }

    async fn delete_mailbox(&self, account: AccountId, name: &str) -> Result<()> {
        let name = name.to_string();
        self.run(move |_, c| folders::delete(c, account, &name))
            .await
    }

    async fn rename_mailbox(&self, account: AccountId, from: &str, to: &str) -> Result<()> {
        let (from, to) = (from.to_string(), to.to_string());
        self.run(move |_, c| folders::rename(c, account, &from, &to))
            .await
    }

    async fn subscribe(&self, account: AccountId, name: &str, subscribed: bool) -> Result<()> {
        let name = name.to_string();
        self.run(move |_, c| folders::subscribe(c, account, &name, subscribed))
            .await
    }

    async fn messages(&self, mailbox: MailboxId) -> Result<Vec<MessageEntry>> {
        self.run(move |_, c| folders::messages(c, mailbox)).await
    }

    async fn append(
        &self,
        mailbox: MailboxId,
        message: &[u8],
        flags: Flags,
        keywords: &[String],
        received: SystemTime,
    ) -> Result<MessageEntry> {
        let message = message.to_vec();
        let keywords = keywords.to_vec();
        self.run(move |inner, c| {
            folders::append(inner, c, mailbox, message, flags, &keywords, received)
        })
        .await
    }

    async fn append_many(
        &self,
        mailbox: MailboxId,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<MessageEntry>> {
        self.run(move |inner, c| folders::append_many(inner, c, mailbox, messages))
            .await
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
        let s = folders::StoreFlags {
            uids: uids.to_vec(),
            op,
            flags,
            keywords: keywords.to_vec(),
            unchanged_since,
        };
        self.run(move |inner, c| folders::store_flags(inner, c, mailbox, s))
            .await
    }

    async fn copy(&self, from: MailboxId, uids: &[Uid], to: MailboxId) -> Result<Vec<(Uid, Uid)>> {
        let uids = uids.to_vec();
        self.run(move |_, c| folders::copy(c, from, &uids, to))
            .await
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
        let uids = uids.to_vec();
        self.run(move |_, c| folders::move_messages(c, from, &uids, to))
            .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The hot statements of a selected mailbox find their rows through the index
    /// meant for them, not by walking the mailbox (or its whole change log).
    #[test]
    fn hot_statements_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let conn = s.inner.connect().unwrap();
        for (sql, index) in [
            (folders::DROP_FLAG_CHANGE, "changes_uid"),
            (sync::ENTRIES_CHANGED, "entries_modseq"),
        ] {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(rusqlite::params![1, 1], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert!(
                plan.iter()
                    .any(|p| p.contains(&format!("USING INDEX {index}"))),
                "{sql}: {plan:?}"
            );
        }
    }

    /// A cached statement is not compiled again when it is reused with other values
    /// (see `connect`): delta's and entries' statements, each run with values that
    /// SQLite's planner weighs differently (0/1 and larger numbers).
    #[test]
    fn cached_statements_are_not_recompiled_for_new_values() {
        use rusqlite::StatementStatus;
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let conn = s.inner.connect().unwrap();
        for sql in [
            format!(
                "{} WHERE e.mailbox_id = ?1 AND e.uid = ?2",
                folders::ENTRY_QUERY
            ),
            format!(
                "{} WHERE e.mailbox_id = ?1 AND e.modseq > ?2 ORDER BY e.uid",
                folders::ENTRY_QUERY
            ),
            "SELECT id FROM emails WHERE text_state <> 1 AND text_state = 0 \
             ORDER BY id LIMIT ?1"
                .to_string(),
        ] {
            let vars = if sql.contains("?2") { 2 } else { 1 };
            for v in [1i64, 7, 0, 1000, 1] {
                let mut stmt = conn.prepare_cached(&sql).unwrap();
                let mut rows = if vars == 2 {
                    stmt.query(rusqlite::params![v, v]).unwrap()
                } else {
                    stmt.query([v]).unwrap()
                };
                while rows.next().unwrap().is_some() {}
                drop(rows);
                assert_eq!(
                    stmt.get_status(StatementStatus::RePrepare),
                    0,
                    "recompiled for value {v}: {sql}"
                );
            }
        }
    }

    /// Adds `a@example.org` to a fresh store.
    async fn account(s: &SqliteStore) -> AccountId {
        s.add_domain(&Domain::parse("example.org").unwrap())
            .await
            .unwrap();
        s.add_account(NewAccount {
            address: Address::parse("a@example.org").unwrap(),
            password: PasswordRecord {
                hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
                scram_sha256: "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5".into(),
            },
            quota: Quota::default(),
        })
        .await
        .unwrap()
    }

    /// The background indexer holds back while mail is written: a group commit marks
    /// the store busy for the window, a fresh store is not.
    #[tokio::test]
    async fn group_commits_mark_the_store_busy() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        assert!(!s.inner.written_within(Duration::from_secs(3600)));
        let id = account(&s).await;
        // Admin writes are not mail.
        assert!(!s.inner.written_within(Duration::from_secs(3600)));
        s.deliver(&[id], b"Subject: x\r\n\r\nbody\r\n", SystemTime::now())
            .await
            .unwrap();
        assert!(s.inner.written_within(Duration::from_secs(3600)));
    }

    /// Blobs kept in the database are read together (one read transaction, on a
    /// reader connection); one in a file is left to `read_blob_range`. Writes never
    /// go through the readers' pool.
    #[tokio::test]
    async fn ranges_of_database_blobs_are_read_together() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        s.set_inline_max(64 << 10);
        let id = account(&s).await;
        let mut messages = Vec::new();
        for size in [200usize, 40 << 10, 100 << 10] {
            let mut m = format!("Subject: {size}\r\n\r\n").into_bytes();
            m.resize(size, b'x');
            s.deliver(&[id], &m, SystemTime::now()).await.unwrap();
            messages.push(m);
        }
        let drop = s.open_maildrop(id).await.unwrap();
        let blobs: Vec<_> = drop.entries.iter().map(|e| e.blob).zip(messages).collect();
        let readers_before = lock(&s.inner.readers).len();
        let wants: Vec<_> = blobs.iter().map(|(b, _)| (*b, 5..300)).collect();
        let got = s.read_blob_ranges(&wants).await.unwrap();
        assert_eq!(got[0].as_deref(), Some(&blobs[0].1[5..200]));
        assert_eq!(got[1].as_deref(), Some(&blobs[1].1[5..300]));
        assert_eq!(got[2], None, "a blob in a file is read on its own");
        assert_eq!(lock(&s.inner.readers).len(), readers_before.max(1));
        // The deliveries' connection went back to the other pool.
        assert!(!lock(&s.inner.pool).is_empty());
    }
}
