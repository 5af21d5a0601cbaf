//! The typed commands (RFC 9051 §6 and the extensions buudien offers). Parsing is in
//! [`crate::parse`]; the argument types of the bigger commands live beside their
//! grammar ([`crate::search`], [`crate::fetch`], [`crate::list`], [`crate::append`]).

use crate::append::AppendMessage;
use crate::cursor::is_astring_char;
use crate::fetch::FetchAttr;
use crate::flag::Flag;
use crate::list::{ListCommand, StatusItem};
use crate::mailbox::Mailbox;
use crate::search::{SearchKey, SearchReturn};
use crate::sequence::SequenceSet;
use buudien_types::{ModSeq, Secret, UidValidity};
use std::fmt;

/// A command tag (`tag = 1*<any ASTRING-CHAR except "+">`, RFC 9051 §9).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tag(pub(crate) String);

impl Tag {
    /// Longest tag accepted; a longer one is treated as no tag.
    pub const MAX_LEN: usize = 256;

    /// Validates a tag.
    pub fn new(s: &str) -> Result<Tag, InvalidTag> {
        if Self::is_valid(s.as_bytes()) {
            Ok(Tag(s.to_owned()))
        } else {
            Err(InvalidTag)
        }
    }

    pub(crate) fn is_tag_char(b: u8) -> bool {
        b.is_ascii() && is_astring_char(b) && b != b'+'
    }

    pub(crate) fn is_valid(b: &[u8]) -> bool {
        !b.is_empty() && b.len() <= Self::MAX_LEN && b.iter().all(|&c| Self::is_tag_char(c))
    }

    /// The tag.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tag at the start of a command line, if it has a valid one followed by a
    /// space or the end (used to answer a refused command with its tag).
    pub fn from_line_start(line: &[u8]) -> Option<Tag> {
        let end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
        let t = line.get(..end)?;
        Self::is_valid(t).then(|| Tag(String::from_utf8_lossy(t).into_owned()))
    }
}

impl Tag {
    /// The tag of `head` when a space follows it there.
    pub(crate) fn before_space(head: &[u8]) -> Option<Tag> {
        let end = head.iter().position(|&b| b == b' ')?;
        let t = head.get(..end)?;
        Self::is_valid(t).then(|| Tag(String::from_utf8_lossy(t).into_owned()))
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The error of [`Tag::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidTag;

impl fmt::Display for InvalidTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid tag")
    }
}

impl std::error::Error for InvalidTag {}

/// One tagged client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Its tag.
    pub tag: Tag,
    /// The command.
    pub command: Command,
}

/// SELECT / EXAMINE parameters (RFC 4466 §2.1 `select-params`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectParams {
    /// `(CONDSTORE)`: enable CONDSTORE (RFC 7162 §3.1.8).
    pub condstore: bool,
    /// `(QRESYNC (...))` (RFC 7162 §3.2.5).
    pub qresync: Option<QResync>,
}

/// `QRESYNC (uidvalidity modseq [known-uids [(known-seqs known-uid-set)]])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QResync {
    /// The UIDVALIDITY the client last knew.
    pub uid_validity: UidValidity,
    /// The last MODSEQ the client knew.
    pub modseq: ModSeq,
    /// UIDs the client knows (no `*`).
    pub known_uids: Option<SequenceSet>,
    /// `(known-sequence-set known-uid-set)`: message numbers and their UIDs.
    pub seq_match: Option<(SequenceSet, SequenceSet)>,
}

/// RFC 6154 special-use attributes (CREATE `USE`, LIST responses).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    /// `\All`.
    All,
    /// `\Archive`.
    Archive,
    /// `\Drafts`.
    Drafts,
    /// `\Flagged`.
    Flagged,
    /// `\Junk`.
    Junk,
    /// `\Sent`.
    Sent,
    /// `\Trash`.
    Trash,
    /// Another `\`-attribute (`use-attr-ext`), without its backslash.
    Other(String),
}

impl SpecialUse {
    /// From a name without the backslash, case-insensitive.
    pub fn from_name(name: &str) -> SpecialUse {
        match name.to_ascii_lowercase().as_str() {
            "all" => SpecialUse::All,
            "archive" => SpecialUse::Archive,
            "drafts" => SpecialUse::Drafts,
            "flagged" => SpecialUse::Flagged,
            "junk" => SpecialUse::Junk,
            "sent" => SpecialUse::Sent,
            "trash" => SpecialUse::Trash,
            _ => SpecialUse::Other(name.to_owned()),
        }
    }
}

impl fmt::Display for SpecialUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecialUse::All => f.write_str("\\All"),
            SpecialUse::Archive => f.write_str("\\Archive"),
            SpecialUse::Drafts => f.write_str("\\Drafts"),
            SpecialUse::Flagged => f.write_str("\\Flagged"),
            SpecialUse::Junk => f.write_str("\\Junk"),
            SpecialUse::Sent => f.write_str("\\Sent"),
            SpecialUse::Trash => f.write_str("\\Trash"),
            SpecialUse::Other(o) => write!(f, "\\{o}"),
        }
    }
}

/// `[SEARCH] [RETURN (...)] [CHARSET c] keys` (RFC 9051 §6.4.4, RFC 4731, RFC 5182).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchCommand {
    /// `UID SEARCH`.
    pub uid: bool,
    /// `RETURN (...)`; `None` when absent (rev1 clients then get `* SEARCH`).
    pub ret: Option<SearchReturn>,
    /// The CHARSET given (already checked to be UTF-8 or US-ASCII), upper-cased.
    pub charset: Option<String>,
    /// The criteria; several top-level keys are an [`SearchKey::And`].
    pub key: SearchKey,
}

/// `[UID] FETCH set items [(modifiers)]` (RFC 9051 §6.4.5, RFC 7162 §3.1.4, §3.2.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchCommand {
    /// `UID FETCH`.
    pub uid: bool,
    /// Messages (or UIDs).
    pub set: SequenceSet,
    /// Data items, macros expanded (ALL, FAST, FULL).
    pub items: Vec<FetchAttr>,
    /// `CHANGEDSINCE modseq` (RFC 7162 §3.1.4.1).
    pub changed_since: Option<ModSeq>,
    /// `VANISHED` (UID FETCH only, with CHANGEDSINCE; RFC 7162 §3.2.6).
    pub vanished: bool,
}

/// How STORE changes flags (RFC 9051 §6.4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// `FLAGS`: replace.
    Replace,
    /// `+FLAGS`: add.
    Add,
    /// `-FLAGS`: remove.
    Remove,
}

/// `[UID] STORE set [(UNCHANGEDSINCE n)] [+|-]FLAGS[.SILENT] flags`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreCommand {
    /// `UID STORE`.
    pub uid: bool,
    /// Messages (or UIDs).
    pub set: SequenceSet,
    /// `UNCHANGEDSINCE` (RFC 7162 §3.1.3).
    pub unchanged_since: Option<ModSeq>,
    /// Replace, add or remove.
    pub mode: StoreMode,
    /// `.SILENT`: no untagged FETCH for this session.
    pub silent: bool,
    /// The flags (may be empty for `FLAGS ()`).
    pub flags: Vec<Flag>,
}

/// One client command, its arguments parsed and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `CAPABILITY` (RFC 9051 §6.1.1).
    Capability,
    /// `NOOP` (§6.1.2).
    Noop,
    /// `LOGOUT` (§6.1.3).
    Logout,
    /// `STARTTLS` (§6.2.1).
    StartTls,
    /// `AUTHENTICATE mech [initial-response]` (§6.2.2, RFC 4959 SASL-IR).
    Authenticate {
        /// Mechanism name, upper-cased.
        mechanism: String,
        /// The initial response still in base64; `=` stands for an empty one.
        initial: Option<Secret<String>>,
    },
    /// `LOGIN userid password` (§6.2.3).
    Login {
        /// The user name.
        username: String,
        /// The password octets.
        password: Secret<Vec<u8>>,
    },
    /// `ENABLE cap...` (§6.3.1, RFC 5161); names upper-cased.
    Enable(Vec<String>),
    /// `SELECT mailbox [(params)]` (§6.3.2).
    Select {
        /// The mailbox.
        mailbox: Mailbox,
        /// CONDSTORE / QRESYNC.
        params: SelectParams,
    },
    /// `EXAMINE mailbox [(params)]` (§6.3.3).
    Examine {
        /// The mailbox.
        mailbox: Mailbox,
        /// CONDSTORE / QRESYNC.
        params: SelectParams,
    },
    /// `CREATE mailbox [(USE (attrs))]` (§6.3.4, RFC 6154 §3).
    Create {
        /// The new mailbox.
        mailbox: Mailbox,
        /// Special uses asked for.
        special_use: Vec<SpecialUse>,
    },
    /// `DELETE mailbox` (§6.3.5).
    Delete(Mailbox),
    /// `RENAME from to` (§6.3.6).
    Rename {
        /// Existing name.
        from: Mailbox,
        /// New name.
        to: Mailbox,
    },
    /// `SUBSCRIBE mailbox` (§6.3.7).
    Subscribe(Mailbox),
    /// `UNSUBSCRIBE mailbox` (§6.3.8).
    Unsubscribe(Mailbox),
    /// `LIST ...` (§6.3.9, RFC 5258, RFC 5819, RFC 6154).
    List(ListCommand),
    /// `LSUB reference pattern` (RFC 3501 §6.3.9).
    Lsub {
        /// Reference name.
        reference: String,
        /// Pattern with `%` / `*`.
        pattern: String,
    },
    /// `NAMESPACE` (§6.3.10).
    Namespace,
    /// `STATUS mailbox (items)` (§6.3.11).
    Status {
        /// The mailbox.
        mailbox: Mailbox,
        /// Items asked for.
        items: Vec<StatusItem>,
    },
    /// `APPEND mailbox message...` (§6.3.12, RFC 3502 MULTIAPPEND, RFC 3516, RFC 6855).
    Append {
        /// Destination.
        mailbox: Mailbox,
        /// One or more messages.
        messages: Vec<AppendMessage>,
    },
    /// `IDLE` (§6.3.13); the session then reads `DONE` with
    /// [`crate::CommandFramer::next_line`].
    Idle,
    /// `CHECK` (RFC 3501 §6.4.1).
    Check,
    /// `CLOSE` (§6.4.1).
    Close,
    /// `UNSELECT` (§6.4.2).
    Unselect,
    /// `EXPUNGE` (§6.4.3).
    Expunge,
    /// `UID EXPUNGE set` (§6.4.9, RFC 4315).
    UidExpunge(SequenceSet),
    /// `[UID] SEARCH` (§6.4.4).
    Search(SearchCommand),
    /// `[UID] FETCH` (§6.4.5).
    Fetch(FetchCommand),
    /// `[UID] STORE` (§6.4.6).
    Store(StoreCommand),
    /// `[UID] COPY set mailbox` (§6.4.7).
    Copy {
        /// `UID COPY`.
        uid: bool,
        /// Messages.
        set: SequenceSet,
        /// Destination.
        mailbox: Mailbox,
    },
    /// `[UID] MOVE set mailbox` (§6.4.8, RFC 6851).
    Move {
        /// `UID MOVE`.
        uid: bool,
        /// Messages.
        set: SequenceSet,
        /// Destination.
        mailbox: Mailbox,
    },
    /// `ID (params) / NIL` (RFC 2971 §3.1): field/value pairs.
    Id(Option<Vec<(String, Option<String>)>>),
    /// `GETQUOTA root` (RFC 9208 §4.2).
    GetQuota(String),
    /// `GETQUOTAROOT mailbox` (RFC 9208 §4.3).
    GetQuotaRoot(Mailbox),
    /// `SETQUOTA root (resource limit ...)` (RFC 9208 §4.1); buudien's quotas are
    /// read-only, so the session refuses it.
    SetQuota {
        /// Quota root.
        root: String,
        /// Resource names (upper-cased) and limits.
        limits: Vec<(String, u64)>,
    },
}

impl Command {
    /// The command's name in upper case, `UID ` included (for logs and the state
    /// gate).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Capability => "CAPABILITY",
            Command::Noop => "NOOP",
            Command::Logout => "LOGOUT",
            Command::StartTls => "STARTTLS",
            Command::Authenticate { .. } => "AUTHENTICATE",
            Command::Login { .. } => "LOGIN",
            Command::Enable(_) => "ENABLE",
            Command::Select { .. } => "SELECT",
            Command::Examine { .. } => "EXAMINE",
            Command::Create { .. } => "CREATE",
            Command::Delete(_) => "DELETE",
            Command::Rename { .. } => "RENAME",
            Command::Subscribe(_) => "SUBSCRIBE",
            Command::Unsubscribe(_) => "UNSUBSCRIBE",
            Command::List(_) => "LIST",
            Command::Lsub { .. } => "LSUB",
            Command::Namespace => "NAMESPACE",
            Command::Status { .. } => "STATUS",
            Command::Append { .. } => "APPEND",
            Command::Idle => "IDLE",
            Command::Check => "CHECK",
            Command::Close => "CLOSE",
            Command::Unselect => "UNSELECT",
            Command::Expunge => "EXPUNGE",
            Command::UidExpunge(_) => "UID EXPUNGE",
            Command::Search(s) if s.uid => "UID SEARCH",
            Command::Search(_) => "SEARCH",
            Command::Fetch(f) if f.uid => "UID FETCH",
            Command::Fetch(_) => "FETCH",
            Command::Store(s) if s.uid => "UID STORE",
            Command::Store(_) => "STORE",
            Command::Copy { uid: true, .. } => "UID COPY",
            Command::Copy { .. } => "COPY",
            Command::Move { uid: true, .. } => "UID MOVE",
            Command::Move { .. } => "MOVE",
            Command::Id(_) => "ID",
            Command::GetQuota(_) => "GETQUOTA",
            Command::GetQuotaRoot(_) => "GETQUOTAROOT",
            Command::SetQuota { .. } => "SETQUOTA",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert!(Tag::new("a001").is_ok());
        assert!(Tag::new("A.1]").is_ok());
        for bad in ["", "a+1", "a b", "a{", "a*", "a%", "a\"", "a(", "t\u{e9}"] {
            assert!(Tag::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Tag::from_line_start(b"x12 FETCH").map(|t| t.0),
            Some("x12".into())
        );
        assert_eq!(Tag::from_line_start(b"+ x"), None);
        assert_eq!(Tag::from_line_start(b"abc"), Some(Tag("abc".into())));
    }
}
