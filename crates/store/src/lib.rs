//! The mail model and the traits every storage backend implements, plus the
//! conformance suite each backend runs. No backend code lives here.
//!
//! # Layout
//! - [`model`]: accounts, mailboxes, messages, quota, the POP3 maildrop snapshot.
//! - [`error`]: [`StoreError`], split into temporary and permanent failures.
//! - [`guard`]: [`Guard`], the release-on-drop handle behind locks and blob pins.
//! - [`queue`]: the outbound queue's model and [`QueueStore`].
//! - [`mailbox`]: IMAP's mailbox operations, [`MailboxStore`] (flags, APPEND, STORE,
//!   COPY, MOVE, CREATE/DELETE/RENAME).
//! - [`MailStore`] (this file): the operations protocols and the CLI call.
//! - [`conformance`]: the behaviour suite; each backend's tests call
//!   [`conformance::run_all`].
//! - [`conformance_queue`]: the queue's cases ([`conformance_queue::run_queue`]).
//!
//! # Invariants (every backend keeps them; the suite checks them)
//! - A delivery returns `Ok` only once the message bytes are durable and the index rows
//!   committed; on `Err` nothing of it is visible.
//! - UIDs and MODSEQs are allocated by updating the mailbox row inside the transaction
//!   that commits the change (RFC 9051 §2.3.1.1, RFC 7162 §3.1), so they become visible
//!   in strictly increasing order and are never reused while UIDVALIDITY stays.
//! - Every expunge bumps the mailbox's HIGHESTMODSEQ and is written to the change log.
//! - A blob stays readable while a [`Maildrop`] that lists it is alive, even if the
//!   message is expunged meanwhile.
//! - Message sizes are the exact octet counts of the stored (CRLF) bytes.
//! - A queued message keeps its blob alive until it leaves the queue; its local copies
//!   and its queue rows commit in one transaction ([`QueueStore::submit`]).
//! - A queue claim is exclusive (across processes) until released or its lease ends.

pub mod conformance;
pub mod conformance_mailbox;
pub mod conformance_queue;
pub mod conformance_sync;
pub mod error;
pub mod guard;
pub mod mailbox;
pub mod model;
pub mod queue;

pub use error::StoreError;
pub use guard::Guard;
pub use mailbox::{
    Delta, FlagOp, Flags, FlagsStored, MAX_MAILBOX_DEPTH, MAX_MAILBOX_NAME, MailboxStore,
    MessageEntry, MessageSource, NewMessage, StoredMeta, TextHits, canonical_name,
    check_mailbox_name,
};
pub use model::*;
pub use queue::{
    Envelope, NewRecipient, Notify, Outcome, QueueId, QueueStore, QueuedMessage, QueuedRecipient,
    RcptState, Ret, Submission, Submitted,
};

use buudien_types::{Address, Domain, Uid};
use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;
use tokio::io::AsyncRead;

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A stream of one blob's bytes.
pub type BlobReader = Pin<Box<dyn AsyncRead + Send + Sync>>;

/// The operations on the one store of truth. Protocol crates and the CLI call only
/// these; only the binary names a backend.
///
/// Futures are `Send` so sessions can run on any runtime thread.
pub trait MailStore: Send + Sync + 'static {
    // ---- domains -------------------------------------------------------------
    /// Adds a local domain; [`StoreError::Exists`] if it is there already.
    fn add_domain(&self, domain: &Domain) -> impl Future<Output = Result<()>> + Send;
    /// Removes a local domain; refused while accounts or aliases use it.
    fn remove_domain(&self, domain: &Domain) -> impl Future<Output = Result<()>> + Send;
    /// The local domains, sorted.
    fn list_domains(&self) -> impl Future<Output = Result<Vec<Domain>>> + Send;

    // ---- accounts ------------------------------------------------------------
    /// Creates an account with its default mailboxes (INBOX, Drafts, Sent, Junk,
    /// Trash, Archive). The domain must be local.
    fn add_account(&self, new: NewAccount) -> impl Future<Output = Result<AccountId>> + Send;
    /// Replaces an account's password hash and SCRAM keys.
    fn set_password(
        &self,
        address: &Address,
        password: PasswordRecord,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Sets (or with `None` clears) the separate APOP secret (RFC 1939 §7).
    fn set_apop_secret(
        &self,
        address: &Address,
        secret: Option<String>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Sets an account's quota.
    fn set_quota(&self, address: &Address, quota: Quota)
    -> impl Future<Output = Result<()>> + Send;
    /// Removes an account with all its mail.
    fn remove_account(&self, address: &Address) -> impl Future<Output = Result<()>> + Send;
    /// All accounts, sorted by address.
    fn list_accounts(&self) -> impl Future<Output = Result<Vec<Account>>> + Send;
    /// One account, or `None`.
    fn account(&self, address: &Address) -> impl Future<Output = Result<Option<Account>>> + Send;
    /// What a login needs to check credentials; `None` for an unknown login.
    fn auth_record(
        &self,
        address: &Address,
    ) -> impl Future<Output = Result<Option<AuthRecord>>> + Send;

    // ---- aliases -------------------------------------------------------------
    /// Adds or replaces an alias; its address must be in a local domain and must not be
    /// an account.
    fn add_alias(
        &self,
        address: &Address,
        targets: &[Address],
    ) -> impl Future<Output = Result<()>> + Send;
    /// Removes an alias.
    fn remove_alias(&self, address: &Address) -> impl Future<Output = Result<()>> + Send;
    /// All aliases with their targets, sorted.
    fn list_aliases(&self) -> impl Future<Output = Result<Vec<Alias>>> + Send;
    /// The accounts a recipient address delivers to (aliases expanded, at most
    /// [`MAX_ALIAS_DEPTH`] levels). [`StoreError::NotFound`] for an unknown address.
    fn resolve_recipient(
        &self,
        address: &Address,
    ) -> impl Future<Output = Result<Vec<AccountId>>> + Send;

    // ---- mail ----------------------------------------------------------------
    /// Stores one message (already normalised to CRLF) into the INBOX of each account,
    /// in one transaction: all or nothing. Checks each account's quota first
    /// ([`StoreError::OverQuota`]).
    fn deliver(
        &self,
        accounts: &[AccountId],
        message: &[u8],
        received: SystemTime,
    ) -> impl Future<Output = Result<Vec<Delivered>>> + Send;
    /// The account's mailboxes, sorted by name (INBOX first).
    fn mailboxes(&self, account: AccountId) -> impl Future<Output = Result<Vec<Mailbox>>> + Send;
    /// A snapshot of the INBOX for POP3: messages in UID order with their blobs pinned
    /// until the snapshot is dropped.
    fn open_maildrop(&self, account: AccountId) -> impl Future<Output = Result<Maildrop>> + Send;
    /// Streams a blob's bytes. A blob whose stored bytes are missing or not of its
    /// recorded size fails here with [`StoreError::Damaged`], before any byte is read
    /// (the protocols answer for it before they start sending).
    fn read_blob(&self, blob: &BlobId) -> impl Future<Output = Result<BlobReader>> + Send;
    /// The octets `range` of a blob, in memory (clamped to the blob's end); fails as
    /// [`MailStore::read_blob`] does. For a header or one MIME part: a store may
    /// read just that range (the default reads up to its end through `read_blob`).
    fn read_blob_range(
        &self,
        blob: &BlobId,
        range: std::ops::Range<u64>,
    ) -> impl Future<Output = Result<Vec<u8>>> + Send {
        async move {
            use tokio::io::AsyncReadExt;
            let mut reader = self.read_blob(blob).await?;
            if range.start > 0 {
                let mut skip = (&mut reader).take(range.start);
                tokio::io::copy(&mut skip, &mut tokio::io::sink()).await?;
            }
            let len = range.end.saturating_sub(range.start);
            let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(1 << 20));
            reader.take(len).read_to_end(&mut out).await?;
            Ok(out)
        }
    }
    /// The octets `range` of each of these blobs, read together where the store can
    /// (one read transaction): a FETCH of header fields asks for a batch of
    /// messages' headers. `None` for any it did not read here (by default all of
    /// them; a blob in a file, a damaged one): [`MailStore::read_blob_range`] then
    /// reads it, or reports what is wrong.
    fn read_blob_ranges(
        &self,
        wants: &[(BlobId, std::ops::Range<u64>)],
    ) -> impl Future<Output = Result<Vec<Option<Vec<u8>>>>> + Send {
        let none = vec![None; wants.len()];
        async move { Ok(none) }
    }
    /// Expunges these UIDs from a mailbox in one transaction; UIDs already gone are
    /// skipped. Returns how many were expunged.
    fn expunge(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
    ) -> impl Future<Output = Result<usize>> + Send;
    /// Takes the exclusive POP3 maildrop lock (RFC 1939 §8); `None` when another
    /// session holds it. The lock is released when the guard drops.
    fn lock_maildrop(
        &self,
        account: AccountId,
    ) -> impl Future<Output = Result<Option<Guard>>> + Send;
    /// The change log of a mailbox after `since` (for CONDSTORE/QRESYNC and tests).
    fn changes_since(
        &self,
        mailbox: MailboxId,
        since: u64,
    ) -> impl Future<Output = Result<Vec<Change>>> + Send;
    /// Deletes blobs no message and no live snapshot refers to; returns how many.
    fn collect_garbage(&self) -> impl Future<Output = Result<usize>> + Send;
}

/// How deep alias expansion goes before it is treated as a loop.
pub const MAX_ALIAS_DEPTH: usize = 8;
