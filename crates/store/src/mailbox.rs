//! Mailboxes as IMAP (and later JMAP) see them: folders with flags and keywords per
//! message, APPEND, STORE with CONDSTORE's UNCHANGEDSINCE, COPY and MOVE. Every change
//! bumps the mailbox's HIGHESTMODSEQ in the transaction that makes it and is written
//! to the change log (RFC 7162 §3.1), so other sessions and QRESYNC learn of it from
//! the log.

use crate::{BlobId, MailStore, Mailbox, MailboxId, Result, SpecialUse};
use buudien_types::Uid;
use std::future::Future;
use std::time::SystemTime;

/// The longest mailbox name a store accepts, in bytes.
pub const MAX_MAILBOX_NAME: usize = 1000;
/// The deepest mailbox hierarchy a store accepts.
pub const MAX_MAILBOX_DEPTH: usize = 32;

/// A mailbox name as every backend stores it: INBOX is case-insensitive (RFC 9051
/// §5.1), every other name is exact.
pub fn canonical_name(name: &str) -> &str {
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX"
    } else {
        name
    }
}

/// Checks a mailbox name the same way in every backend: not empty, no empty level
/// (`/` is the delimiter), no control characters, at most [`MAX_MAILBOX_NAME`]
/// bytes and [`MAX_MAILBOX_DEPTH`] levels.
pub fn check_mailbox_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > MAX_MAILBOX_NAME
        || name.split('/').any(str::is_empty)
        || name.split('/').count() > MAX_MAILBOX_DEPTH
        || name.chars().any(char::is_control);
    if bad {
        return Err(crate::StoreError::Refused(format!(
            "invalid mailbox name {name:?}"
        )));
    }
    Ok(())
}

/// IMAP system flags (RFC 9051 §2.3.2) as bits; `\Recent` is per session and not
/// stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u8);

impl Flags {
    /// `\Seen`
    pub const SEEN: Flags = Flags(1);
    /// `\Answered`
    pub const ANSWERED: Flags = Flags(2);
    /// `\Flagged`
    pub const FLAGGED: Flags = Flags(4);
    /// `\Deleted`
    pub const DELETED: Flags = Flags(8);
    /// `\Draft`
    pub const DRAFT: Flags = Flags(16);

    /// All of them with their IMAP names, in the order IMAP lists them.
    pub const ALL: [(Flags, &'static str); 5] = [
        (Flags::ANSWERED, "\\Answered"),
        (Flags::FLAGGED, "\\Flagged"),
        (Flags::DELETED, "\\Deleted"),
        (Flags::SEEN, "\\Seen"),
        (Flags::DRAFT, "\\Draft"),
    ];

    /// True when every flag of `other` is set here.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union.
    pub fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// These flags without those of `other`.
    pub fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }

    /// Parses a system flag name (case-insensitive); `None` for anything else.
    pub fn parse(name: &str) -> Option<Flags> {
        Flags::ALL
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(f, _)| *f)
    }
}

/// One message in a mailbox, as SELECT and FETCH need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEntry {
    /// Its UID.
    pub uid: Uid,
    /// Its bytes.
    pub blob: BlobId,
    /// Exact size in octets (RFC822.SIZE).
    pub size: u64,
    /// Size of the ASCII surrogate served to sessions without UTF-8 (RFC 6856 §2.1,
    /// `buudien_message::downgrade`), when the message has raw UTF-8 headers.
    pub ascii_size: Option<u64>,
    /// System flags.
    pub flags: Flags,
    /// Keywords, sorted, each an IMAP atom.
    pub keywords: Vec<String>,
    /// The MODSEQ of its last change (RFC 7162 §3.1.1).
    pub modseq: u64,
    /// INTERNALDATE.
    pub received: SystemTime,
}

/// How STORE changes flags (RFC 9051 §6.4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    /// `FLAGS`: replace.
    Set,
    /// `+FLAGS`: add.
    Add,
    /// `-FLAGS`: remove.
    Remove,
}

/// What a STORE did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagsStored {
    /// The messages whose flags changed, with their new state and MODSEQ.
    pub changed: Vec<MessageEntry>,
    /// UIDs not changed because their MODSEQ was above UNCHANGEDSINCE (RFC 7162
    /// §3.1.3: the `[MODIFIED …]` set).
    pub modified: Vec<Uid>,
}

/// Where the bytes of an appended message are.
#[derive(Debug)]
pub enum MessageSource {
    /// In memory.
    Bytes(Vec<u8>),
    /// `len` octets at `offset` of a (temporary) file, which several messages of one
    /// APPEND may share.
    File {
        /// The file.
        file: std::sync::Arc<std::fs::File>,
        /// Where the message starts.
        offset: u64,
        /// Its size.
        len: u64,
    },
}

/// One message of an APPEND (RFC 9051 §6.3.12, RFC 3502 MULTIAPPEND).
#[derive(Debug)]
pub struct NewMessage {
    /// Its bytes (CRLF lines).
    pub source: MessageSource,
    /// System flags.
    pub flags: Flags,
    /// Keywords.
    pub keywords: Vec<String>,
    /// INTERNALDATE.
    pub received: SystemTime,
}

/// The parsed structure of one message as stored at delivery (the bytes of
/// `buudien_message::MessageMeta::to_bytes`), so FETCH and SEARCH never re-parse it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMeta {
    /// The message.
    pub uid: Uid,
    /// The metadata of the message as stored; `None` for a message stored before
    /// metadata was kept (the reader parses the blob then).
    pub meta: Option<Vec<u8>>,
    /// The metadata of its ASCII surrogate, when it has one.
    pub ascii_meta: Option<Vec<u8>>,
}

/// What changed in a mailbox after a MODSEQ (RFC 7162 §3.2.5.2), read in one
/// transaction so that nothing between `since` and `highestmodseq` is missed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    /// The mailbox's HIGHESTMODSEQ at the time of the read.
    pub highestmodseq: u64,
    /// Its UIDNEXT at the time of the read.
    pub uidnext: u32,
    /// Messages (new or with changed flags) whose MODSEQ is above `since`, in UID
    /// order.
    pub changed: Vec<MessageEntry>,
    /// UIDs expunged after `since`, ascending.
    pub expunged: Vec<Uid>,
}

/// What a text index answers for a BODY or TEXT search key (RFC 9051 §6.4.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextHits {
    /// Messages whose indexed text contains the string, ascending.
    pub matched: Vec<Uid>,
    /// Messages the index does not cover (not indexed yet, or too large to index),
    /// ascending: the caller scans them. Any other message does not match.
    pub unknown: Vec<Uid>,
}

/// The mailbox operations of IMAP. Names are full paths with `/` as the delimiter;
/// `INBOX` matches case-insensitively.
pub trait MailboxStore: MailStore {
    /// One mailbox by name.
    fn mailbox(
        &self,
        account: crate::AccountId,
        name: &str,
    ) -> impl Future<Output = Result<Option<Mailbox>>> + Send;

    /// Creates a mailbox (RFC 9051 §6.3.4) with a fresh UIDVALIDITY;
    /// [`crate::StoreError::Exists`] if it is there.
    fn create_mailbox(
        &self,
        account: crate::AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> impl Future<Output = Result<Mailbox>> + Send;

    /// Deletes a mailbox and its messages (RFC 9051 §6.3.5). INBOX cannot be deleted;
    /// a mailbox with inferiors is refused.
    fn delete_mailbox(
        &self,
        account: crate::AccountId,
        name: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Renames a mailbox and its inferiors (RFC 9051 §6.3.6). Renaming INBOX moves its
    /// messages to a new mailbox and leaves INBOX empty.
    fn rename_mailbox(
        &self,
        account: crate::AccountId,
        from: &str,
        to: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Subscribed names that have no mailbox (deleted after they were subscribed, or
    /// subscribed before they existed), sorted (RFC 9051 §6.3.7; LIST shows them as
    /// `\NonExistent`, RFC 5258 §3.4).
    fn orphan_subscriptions(
        &self,
        account: crate::AccountId,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// Sets the subscribed state (RFC 9051 §6.3.7, §6.3.8). A name without a mailbox
    /// can be subscribed too, and a mailbox's subscription outlives it.
    fn subscribe(
        &self,
        account: crate::AccountId,
        name: &str,
        subscribed: bool,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The messages of a mailbox in UID order.
    fn messages(
        &self,
        mailbox: MailboxId,
    ) -> impl Future<Output = Result<Vec<MessageEntry>>> + Send;

    /// APPEND (RFC 9051 §6.3.12): stores a message (CRLF lines) with flags, keywords
    /// and INTERNALDATE; quota checked as for delivery.
    fn append(
        &self,
        mailbox: MailboxId,
        message: &[u8],
        flags: Flags,
        keywords: &[String],
        received: SystemTime,
    ) -> impl Future<Output = Result<MessageEntry>> + Send;

    /// APPEND of several messages (RFC 3502 MULTIAPPEND) in one transaction: all are
    /// stored or none (quota checked for all of them together). Returns their
    /// entries in order.
    fn append_many(
        &self,
        mailbox: MailboxId,
        messages: Vec<NewMessage>,
    ) -> impl Future<Output = Result<Vec<MessageEntry>>> + Send;

    /// STORE (RFC 9051 §6.4.6) with CONDSTORE's UNCHANGEDSINCE (RFC 7162 §3.1.3).
    /// Messages whose flags end up the same are not changed and get no new MODSEQ.
    fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        op: FlagOp,
        flags: Flags,
        keywords: &[String],
        unchanged_since: Option<u64>,
    ) -> impl Future<Output = Result<FlagsStored>> + Send;

    /// COPY (RFC 9051 §6.4.7): the same emails (no new blob) get new UIDs in `to`, with
    /// their flags. Returns (source UID, new UID) pairs for COPYUID (RFC 4315).
    fn copy(
        &self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> impl Future<Output = Result<Vec<(Uid, Uid)>>> + Send;

    /// These messages (those that exist), in UID order: what a command needs beyond a
    /// session's compact snapshot (blob, size, INTERNALDATE).
    fn entries(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
    ) -> impl Future<Output = Result<Vec<MessageEntry>>> + Send;

    /// The stored metadata of these messages (those that exist), in UID order.
    fn metas(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
    ) -> impl Future<Output = Result<Vec<StoredMeta>>> + Send;

    /// [`MailboxStore::entries`] and, with `metas`, [`MailboxStore::metas`] of the
    /// same messages, read together: FETCH asks for both for every batch. A store
    /// that can reads them in one read transaction.
    fn entries_and_metas(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        metas: bool,
    ) -> impl Future<Output = Result<(Vec<MessageEntry>, Vec<StoredMeta>)>> + Send {
        async move {
            let entries = self.entries(mailbox, uids).await?;
            let metas = if metas {
                self.metas(mailbox, uids).await?
            } else {
                Vec::new()
            };
            Ok((entries, metas))
        }
    }

    /// The changes after `since` (flag changes and new messages by MODSEQ, expunges
    /// from the change log), for a session's resync, CHANGEDSINCE and QRESYNC (RFC
    /// 7162 §3.1.4, §3.2.5). Costs what changed, not the size of the mailbox.
    fn delta(&self, mailbox: MailboxId, since: u64) -> impl Future<Output = Result<Delta>> + Send;

    /// Claims the `\Recent` messages of a mailbox (RFC 3501 §2.3.2): returns the UID
    /// up to which messages were already claimed by an earlier session and moves the
    /// mark to the newest message, so only one session sees each message as recent.
    fn claim_recent(&self, mailbox: MailboxId) -> impl Future<Output = Result<Uid>> + Send;

    /// Where the `\\Recent` mark is, without moving it (EXAMINE and STATUS, RFC 3501
    /// §6.3.2, §6.3.10): messages above it are recent.
    fn recent_mark(&self, mailbox: MailboxId) -> impl Future<Output = Result<Uid>> + Send;

    /// A counter that goes up after `mailbox` changed — a new message, a flag
    /// change, an expunge, or the mailbox went — here or, noticed within a fraction
    /// of a second, in another process on the same store. It may also go up when
    /// nothing changed (a first look), never stays put after a change. IDLE waits
    /// on it, then asks [`MailboxStore::delta`] what changed.
    fn watch_mailbox(&self, mailbox: MailboxId) -> tokio::sync::watch::Receiver<u64>;

    /// BODY (`body_only`) or TEXT `needle` (RFC 9051 §6.4.4) answered from a text
    /// index: the same messages as `buudien_message::text_matches` finds by reading
    /// them, for those the index covers. `None` when the index cannot answer (no
    /// index, or a needle it cannot look up, such as one under three characters):
    /// the caller scans every message. The default has no index.
    fn search_text(
        &self,
        mailbox: MailboxId,
        needle: &str,
        body_only: bool,
    ) -> impl Future<Output = Result<Option<TextHits>>> + Send {
        let _ = (mailbox, needle, body_only);
        async { Ok(None) }
    }

    /// MOVE (RFC 6851): COPY and expunge from `from` in one transaction.
    fn move_messages(
        &self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> impl Future<Output = Result<Vec<(Uid, Uid)>>> + Send;
}
