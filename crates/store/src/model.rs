//! The mail model (DESIGN.md "The mail model"): accounts own mailboxes; an email is one
//! immutable message whose bytes are a content-addressed blob; a mailbox entry puts an
//! email in a mailbox under a UID with flags and a MODSEQ; the change log records flag
//! changes and expunges.

use crate::Guard;
use buudien_types::{Address, Secret, Uid, UidValidity};
use std::fmt;
use std::time::SystemTime;

/// An account's id within one store.
pub type AccountId = i64;
/// A mailbox's id within one store.
pub type MailboxId = i64;
/// An email's id within one store.
pub type EmailId = i64;

/// A blob's identity: the BLAKE3 hash of its bytes ([`BlobId::of`]). Stores written
/// before BLAKE3 hold blobs named by the SHA-256 of their bytes: those ids stay as
/// they are (they are only names), and `check` accepts either hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    /// The id of the concatenation of `parts`.
    pub fn of(parts: &[&[u8]]) -> BlobId {
        let mut h = BlobHasher::new();
        for p in parts {
            h.update(p);
        }
        h.finish()
    }

    /// Lower-case hex, as blob file names use it.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<BlobId> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(BlobId(out))
    }
}

/// Computes a [`BlobId`] over bytes given piece by piece. BLAKE3, not SHA-256: hashing
/// a 100 KiB message with SHA-256 was over a third of the server's CPU while it stored it
/// (CPUs without the SHA extensions), and BLAKE3's SIMD code runs at over ten times
/// that speed.
pub struct BlobHasher(blake3::Hasher);

impl BlobHasher {
    /// A hasher over no bytes yet.
    pub fn new() -> BlobHasher {
        BlobHasher(blake3::Hasher::new())
    }

    /// Adds `bytes` to what is hashed.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The id of every byte given.
    pub fn finish(self) -> BlobId {
        BlobId(*self.0.finalize().as_bytes())
    }
}

impl Default for BlobHasher {
    fn default() -> Self {
        BlobHasher::new()
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", self.to_hex())
    }
}

/// Per-account limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    /// Most bytes of mail the account may hold.
    pub bytes: Option<u64>,
    /// Most messages the account may hold.
    pub messages: Option<u64>,
}

/// A password as stored: an Argon2id PHC string and the SCRAM-SHA-256 keys (RFC 5803
/// text form). Never the password itself.
#[derive(Debug, Clone)]
pub struct PasswordRecord {
    /// Argon2id PHC string.
    pub hash: String,
    /// SCRAM-SHA-256 keys, RFC 5803 style.
    pub scram_sha256: String,
}

/// What `add_account` needs.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// The login and primary address.
    pub address: Address,
    /// The password, hashed.
    pub password: PasswordRecord,
    /// Limits.
    pub quota: Quota,
}

/// An account as listed.
#[derive(Debug, Clone)]
pub struct Account {
    /// Its id.
    pub id: AccountId,
    /// Login and primary address.
    pub address: Address,
    /// Limits.
    pub quota: Quota,
    /// Bytes of mail held.
    pub used_bytes: u64,
    /// Messages held.
    pub used_messages: u64,
}

/// What a login checks.
#[derive(Debug, Clone)]
pub struct AuthRecord {
    /// The account.
    pub account_id: AccountId,
    /// Its canonical address.
    pub address: Address,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// SCRAM-SHA-256 keys in the RFC 5803 text form of [`PasswordRecord::scram_sha256`].
    pub scram_sha256: String,
    /// The separate APOP secret, when one is set.
    pub apop_secret: Option<Secret<String>>,
}

/// An alias and where it delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// The alias address.
    pub address: Address,
    /// Its targets (accounts or other aliases).
    pub targets: Vec<Address>,
}

/// RFC 6154 special-use attributes of the default mailboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialUse {
    /// `\Drafts`
    Drafts,
    /// `\Sent`
    Sent,
    /// `\Junk`
    Junk,
    /// `\Trash`
    Trash,
    /// `\Archive`
    Archive,
}

impl SpecialUse {
    /// The attribute as IMAP writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Archive => "\\Archive",
        }
    }

    /// Parses the attribute.
    pub fn parse(s: &str) -> Option<SpecialUse> {
        Some(match s {
            "\\Drafts" => SpecialUse::Drafts,
            "\\Sent" => SpecialUse::Sent,
            "\\Junk" => SpecialUse::Junk,
            "\\Trash" => SpecialUse::Trash,
            "\\Archive" => SpecialUse::Archive,
            _ => return None,
        })
    }
}

/// The mailboxes every new account gets.
pub const DEFAULT_MAILBOXES: [(&str, Option<SpecialUse>); 6] = [
    ("INBOX", None),
    ("Drafts", Some(SpecialUse::Drafts)),
    ("Sent", Some(SpecialUse::Sent)),
    ("Junk", Some(SpecialUse::Junk)),
    ("Trash", Some(SpecialUse::Trash)),
    ("Archive", Some(SpecialUse::Archive)),
];

/// A mailbox's state.
#[derive(Debug, Clone)]
pub struct Mailbox {
    /// Its id.
    pub id: MailboxId,
    /// Full name, hierarchy delimiter `/`.
    pub name: String,
    /// Special use, if any.
    pub special_use: Option<SpecialUse>,
    /// Subscribed (IMAP LSUB/LIST-EXTENDED).
    pub subscribed: bool,
    /// UIDVALIDITY.
    pub uidvalidity: UidValidity,
    /// The UID the next message will get.
    pub uidnext: Uid,
    /// The highest MODSEQ given out in this mailbox.
    pub highestmodseq: u64,
    /// Messages in it.
    pub messages: u64,
}

/// One delivered copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// The account it went to.
    pub account: AccountId,
    /// The mailbox (INBOX).
    pub mailbox: MailboxId,
    /// Its UID there.
    pub uid: Uid,
}

/// A change-log row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The MODSEQ the change got.
    pub modseq: u64,
    /// The message.
    pub uid: Uid,
    /// What happened.
    pub kind: ChangeKind,
}

/// What a change-log row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Flags or keywords changed.
    Flags,
    /// The message left the mailbox.
    Expunge,
}

/// One message of a POP3 maildrop snapshot.
#[derive(Debug, Clone)]
pub struct MaildropEntry {
    /// Its UID in INBOX.
    pub uid: Uid,
    /// Its blob.
    pub blob: BlobId,
    /// Exact size in octets.
    pub size: u64,
    /// Size of the ASCII surrogate (RFC 6856 §2.1) when the message has raw UTF-8
    /// headers; `None` when it needs none.
    pub surrogate_size: Option<u64>,
    /// When it arrived.
    pub received: SystemTime,
}

/// A POP3 maildrop: INBOX as it was when the session opened it. Its blobs stay
/// readable until it is dropped.
#[derive(Debug)]
pub struct Maildrop {
    /// INBOX's id.
    pub mailbox: MailboxId,
    /// INBOX's UIDVALIDITY (part of every UIDL).
    pub uidvalidity: UidValidity,
    /// The messages, in UID order.
    pub entries: Vec<MaildropEntry>,
    /// Keeps the blobs pinned.
    pub pin: Guard,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_ids_are_blake3_in_any_pieces() {
        // The BLAKE3 paper's and reference implementation's values.
        assert_eq!(
            BlobId::of(&[]).to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        let abc = BlobId::of(&[b"abc"]).to_hex();
        assert_eq!(
            abc,
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        // Any split gives the same id, also across BLAKE3's 1 KiB chunks.
        let long: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let want = BlobId::of(&[&long]);
        for cut in [0, 1, 63, 64, 1023, 1024, 1025, 4999, 5000] {
            let (a, b) = long.split_at(cut);
            assert_eq!(BlobId::of(&[a, &[], b]), want, "cut at {cut}");
        }
        assert_ne!(BlobId::of(&[&long[1..]]), want);
        assert_eq!(BlobId::from_hex(&want.to_hex()), Some(want));
        assert_eq!(BlobHasher::default().finish(), BlobId::of(&[]));
    }
}
