//! The response writer (RFC 9051 §7): status responses with response codes (§7.1 and
//! the codes of CONDSTORE/QRESYNC, UIDPLUS, QUOTA, SEARCHRES, SPECIAL-USE, TOOBIG),
//! continuation requests (§7.5), and the untagged data the session sends. Everything
//! appends to a `Vec<u8>`; every line ends CRLF; response text never carries CR, LF
//! or other control characters, so client-supplied text cannot forge a response.

use crate::command::{SpecialUse, Tag};
use crate::datetime::DateTime;
use crate::error::sanitize;
use crate::fetch::FetchAttr;
use crate::flag::{Flag, write_flag_list};
use crate::list::StatusItem;
use crate::mailbox::write_mailbox;
use crate::sequence::SequenceSet;
use crate::string::{
    TextMode, write_astring, write_binary, write_literal_header, write_nstring, write_string,
};
use buudien_types::{ModSeq, UidValidity};
use std::fmt;

/// Longest response text written; longer text is cut.
pub const MAX_TEXT: usize = 4096;

/// The condition of a status response (RFC 9051 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `OK`.
    Ok,
    /// `NO`: the command failed.
    No,
    /// `BAD`: protocol or syntax error.
    Bad,
    /// `PREAUTH` (greeting only).
    PreAuth,
    /// `BYE`: the server closes the connection.
    Bye,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
            Status::PreAuth => "PREAUTH",
            Status::Bye => "BYE",
        }
    }
}

/// A response code (`resp-text-code`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// `ALERT`.
    Alert,
    /// `ALREADYEXISTS`.
    AlreadyExists,
    /// `APPENDUID uidvalidity uid-set` (RFC 4315 §3, RFC 3502 for several).
    AppendUid {
        /// Destination UIDVALIDITY.
        validity: UidValidity,
        /// UIDs given to the messages, in order.
        uids: SequenceSet,
    },
    /// `AUTHENTICATIONFAILED`.
    AuthenticationFailed,
    /// `AUTHORIZATIONFAILED`.
    AuthorizationFailed,
    /// `BADCHARSET (charsets)`.
    BadCharset(Vec<String>),
    /// `CANNOT`.
    Cannot,
    /// `CAPABILITY caps` (names as they go on the wire).
    Capability(Vec<String>),
    /// `CLIENTBUG`.
    ClientBug,
    /// `CLOSED` (RFC 7162 §3.2.11).
    Closed,
    /// `CONTACTADMIN`.
    ContactAdmin,
    /// `COPYUID uidvalidity source-uids dest-uids` (RFC 4315 §3).
    CopyUid {
        /// Destination UIDVALIDITY.
        validity: UidValidity,
        /// Source UIDs, in the order matching `to`.
        from: SequenceSet,
        /// Destination UIDs.
        to: SequenceSet,
    },
    /// `CORRUPTION`.
    Corruption,
    /// `EXPIRED`.
    Expired,
    /// `EXPUNGEISSUED`.
    ExpungeIssued,
    /// `HASCHILDREN`.
    HasChildren,
    /// `HIGHESTMODSEQ n` (RFC 7162 §3.1.2.1).
    HighestModSeq(ModSeq),
    /// `INUSE`.
    InUse,
    /// `LIMIT`.
    Limit,
    /// `MODIFIED set` (RFC 7162 §3.1.3).
    Modified(SequenceSet),
    /// `NOMODSEQ` (RFC 7162 §3.1.2.2).
    NoModSeq,
    /// `NONEXISTENT`.
    NonExistent,
    /// `NOPERM`.
    NoPerm,
    /// `NOTSAVED` (RFC 5182 §2.1).
    NotSaved,
    /// `OVERQUOTA` (RFC 9208 §4.1... RFC 9051 §7.1).
    OverQuota,
    /// `PARSE`.
    Parse,
    /// `PERMANENTFLAGS (flags [\*])`.
    PermanentFlags {
        /// Flags that can be changed permanently.
        flags: Vec<Flag>,
        /// `\*`: new keywords can be created.
        new_keywords: bool,
    },
    /// `PRIVACYREQUIRED`.
    PrivacyRequired,
    /// `READ-ONLY`.
    ReadOnly,
    /// `READ-WRITE`.
    ReadWrite,
    /// `SERVERBUG`.
    ServerBug,
    /// `TOOBIG` (RFC 4469 §4, RFC 7888 §5).
    TooBig,
    /// `TRYCREATE`.
    TryCreate,
    /// `UIDNEXT n`.
    UidNext(u32),
    /// `UIDNOTSTICKY`.
    UidNotSticky,
    /// `UIDVALIDITY n`.
    UidValidity(UidValidity),
    /// `UNAVAILABLE`.
    Unavailable,
    /// `UNKNOWN-CTE` (RFC 3516 §4.3).
    UnknownCte,
    /// `UNSEEN n` (IMAP4rev1 SELECT: first unseen message).
    Unseen(u32),
    /// `USEATTR` (RFC 6154 §5).
    UseAttr,
    /// Any other code: an atom and optional text (`]` and controls are dropped).
    Other(String, Option<String>),
}

impl Code {
    /// Writes the code without brackets.
    pub fn write(&self, out: &mut Vec<u8>) {
        let word = match self {
            Code::Alert => "ALERT",
            Code::AlreadyExists => "ALREADYEXISTS",
            Code::AuthenticationFailed => "AUTHENTICATIONFAILED",
            Code::AuthorizationFailed => "AUTHORIZATIONFAILED",
            Code::Cannot => "CANNOT",
            Code::ClientBug => "CLIENTBUG",
            Code::Closed => "CLOSED",
            Code::ContactAdmin => "CONTACTADMIN",
            Code::Corruption => "CORRUPTION",
            Code::Expired => "EXPIRED",
            Code::ExpungeIssued => "EXPUNGEISSUED",
            Code::HasChildren => "HASCHILDREN",
            Code::InUse => "INUSE",
            Code::Limit => "LIMIT",
            Code::NoModSeq => "NOMODSEQ",
            Code::NonExistent => "NONEXISTENT",
            Code::NoPerm => "NOPERM",
            Code::NotSaved => "NOTSAVED",
            Code::OverQuota => "OVERQUOTA",
            Code::Parse => "PARSE",
            Code::PrivacyRequired => "PRIVACYREQUIRED",
            Code::ReadOnly => "READ-ONLY",
            Code::ReadWrite => "READ-WRITE",
            Code::ServerBug => "SERVERBUG",
            Code::TooBig => "TOOBIG",
            Code::TryCreate => "TRYCREATE",
            Code::UidNotSticky => "UIDNOTSTICKY",
            Code::Unavailable => "UNAVAILABLE",
            Code::UnknownCte => "UNKNOWN-CTE",
            Code::UseAttr => "USEATTR",
            Code::AppendUid { validity, uids } => {
                out.extend_from_slice(format!("APPENDUID {} {uids}", validity.0).as_bytes());
                return;
            }
            Code::CopyUid { validity, from, to } => {
                out.extend_from_slice(format!("COPYUID {} {from} {to}", validity.0).as_bytes());
                return;
            }
            Code::BadCharset(sets) => {
                out.extend_from_slice(b"BADCHARSET");
                if !sets.is_empty() {
                    out.extend_from_slice(b" (");
                    for (i, s) in sets.iter().enumerate() {
                        if i > 0 {
                            out.push(b' ');
                        }
                        write_astring(out, s.as_bytes(), TextMode::Ascii);
                    }
                    out.push(b')');
                }
                return;
            }
            Code::Capability(caps) => {
                out.extend_from_slice(b"CAPABILITY");
                for c in caps {
                    out.push(b' ');
                    out.extend_from_slice(atom_only(c).as_bytes());
                }
                return;
            }
            Code::HighestModSeq(m) => {
                out.extend_from_slice(format!("HIGHESTMODSEQ {}", m.0).as_bytes());
                return;
            }
            Code::Modified(set) => {
                out.extend_from_slice(format!("MODIFIED {set}").as_bytes());
                return;
            }
            Code::PermanentFlags {
                flags,
                new_keywords,
            } => {
                out.extend_from_slice(b"PERMANENTFLAGS ");
                write_flag_list(out, flags, *new_keywords);
                return;
            }
            Code::UidNext(n) => {
                out.extend_from_slice(format!("UIDNEXT {n}").as_bytes());
                return;
            }
            Code::UidValidity(v) => {
                out.extend_from_slice(format!("UIDVALIDITY {}", v.0).as_bytes());
                return;
            }
            Code::Unseen(n) => {
                out.extend_from_slice(format!("UNSEEN {n}").as_bytes());
                return;
            }
            Code::Other(atom, text) => {
                let atom = atom_only(atom);
                out.extend_from_slice(if atom.is_empty() { "X" } else { &atom }.as_bytes());
                if let Some(t) = text {
                    let t: String = sanitize(t, 256).chars().filter(|&c| c != ']').collect();
                    let t = t.trim();
                    if !t.is_empty() {
                        out.push(b' ');
                        out.extend_from_slice(t.as_bytes());
                    }
                }
                return;
            }
        };
        out.extend_from_slice(word.as_bytes());
    }
}

/// Keeps only ASCII atom characters (capability names, code atoms).
fn atom_only(s: &str) -> String {
    s.bytes()
        .filter(|&b| b.is_ascii() && crate::cursor::is_atom_char(b))
        .map(char::from)
        .collect()
}

fn resp_text(out: &mut Vec<u8>, status: Status, code: Option<&Code>, text: &str) {
    out.extend_from_slice(status.word().as_bytes());
    out.push(b' ');
    if let Some(code) = code {
        out.push(b'[');
        code.write(out);
        out.extend_from_slice(b"] ");
    }
    let mut t = sanitize(text, MAX_TEXT).trim().to_owned();
    // A text starting with '[' would read as a response code.
    if t.starts_with('[') && code.is_none() {
        t.replace_range(..1, "(");
    }
    let t = if t.is_empty() {
        match status {
            Status::Ok | Status::PreAuth => "completed",
            _ => "failed",
        }
    } else {
        &t
    };
    out.extend_from_slice(t.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `tag OK/NO/BAD [code] text` (RFC 9051 §7.1).
pub fn tagged(out: &mut Vec<u8>, tag: &Tag, status: Status, code: Option<&Code>, text: &str) {
    out.extend_from_slice(tag.as_str().as_bytes());
    out.push(b' ');
    resp_text(out, status, code, text);
}

/// `* OK/NO/BAD/PREAUTH/BYE [code] text`.
pub fn untagged(out: &mut Vec<u8>, status: Status, code: Option<&Code>, text: &str) {
    out.extend_from_slice(b"* ");
    resp_text(out, status, code, text);
}

/// `+ text` (RFC 9051 §7.5): ready for a literal, or IDLE accepted.
pub fn continuation(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"+ ");
    out.extend_from_slice(sanitize(text, MAX_TEXT).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `+ base64` (a SASL challenge, already encoded; an empty one is `+ `).
pub fn continuation_base64(out: &mut Vec<u8>, b64: &str) {
    out.extend_from_slice(b"+ ");
    out.extend(
        b64.bytes()
            .filter(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')),
    );
    out.extend_from_slice(b"\r\n");
}

fn atoms_line(out: &mut Vec<u8>, word: &str, items: &[&str]) {
    out.extend_from_slice(b"* ");
    out.extend_from_slice(word.as_bytes());
    for c in items {
        out.push(b' ');
        out.extend_from_slice(atom_only(c).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// `* CAPABILITY caps` (RFC 9051 §7.2.2).
pub fn capability(out: &mut Vec<u8>, caps: &[&str]) {
    atoms_line(out, "CAPABILITY", caps);
}

/// `* ENABLED caps` (RFC 5161 §3.2).
pub fn enabled(out: &mut Vec<u8>, caps: &[&str]) {
    atoms_line(out, "ENABLED", caps);
}

/// `* FLAGS (flags)` (RFC 9051 §7.3.5).
pub fn flags(out: &mut Vec<u8>, flags: &[Flag]) {
    out.extend_from_slice(b"* FLAGS ");
    write_flag_list(out, flags, false);
    out.extend_from_slice(b"\r\n");
}

/// `* n EXISTS` (§7.4.1).
pub fn exists(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(format!("* {n} EXISTS\r\n").as_bytes());
}

/// `* n RECENT` (RFC 3501 §7.3.2; rev1 only).
pub fn recent(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(format!("* {n} RECENT\r\n").as_bytes());
}

/// `* n EXPUNGE` (§7.5.1).
pub fn expunge(out: &mut Vec<u8>, seq: u32) {
    out.extend_from_slice(format!("* {seq} EXPUNGE\r\n").as_bytes());
}

/// `* VANISHED [(EARLIER)] uids` (RFC 7162 §3.2.10).
pub fn vanished(out: &mut Vec<u8>, earlier: bool, uids: &SequenceSet) {
    let e = if earlier { " (EARLIER)" } else { "" };
    out.extend_from_slice(format!("* VANISHED{e} {uids}\r\n").as_bytes());
}

/// `* SEARCH n...` [` (MODSEQ m)`] (rev1, RFC 3501 §7.2.5; RFC 7162 §3.1.5).
pub fn search(out: &mut Vec<u8>, numbers: &[u32], modseq: Option<ModSeq>) {
    out.extend_from_slice(b"* SEARCH");
    for n in numbers {
        out.extend_from_slice(format!(" {n}").as_bytes());
    }
    if let (Some(m), false) = (modseq, numbers.is_empty()) {
        out.extend_from_slice(format!(" (MODSEQ {})", m.0).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// The data of an ESEARCH response (RFC 4731 §3.1, RFC 9051 §7.3.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Esearch<'a> {
    /// The command's tag (`(TAG "a1")`).
    pub tag: Option<&'a Tag>,
    /// `UID`: the numbers are UIDs.
    pub uid: bool,
    /// `MIN n`.
    pub min: Option<u32>,
    /// `MAX n`.
    pub max: Option<u32>,
    /// `ALL set` (absent when no message matched).
    pub all: Option<&'a SequenceSet>,
    /// `COUNT n`.
    pub count: Option<u32>,
    /// `MODSEQ n` (RFC 7162 §3.1.5).
    pub modseq: Option<ModSeq>,
}

/// `* ESEARCH [(TAG "t")] [UID] [MIN n] [MAX n] [ALL set] [COUNT n] [MODSEQ m]`.
pub fn esearch(out: &mut Vec<u8>, e: &Esearch<'_>) {
    out.extend_from_slice(b"* ESEARCH");
    if let Some(tag) = e.tag {
        out.extend_from_slice(b" (TAG ");
        write_string(out, tag.as_str().as_bytes(), TextMode::Ascii);
        out.push(b')');
    }
    if e.uid {
        out.extend_from_slice(b" UID");
    }
    if let Some(n) = e.min {
        out.extend_from_slice(format!(" MIN {n}").as_bytes());
    }
    if let Some(n) = e.max {
        out.extend_from_slice(format!(" MAX {n}").as_bytes());
    }
    if let Some(set) = e.all {
        out.extend_from_slice(format!(" ALL {set}").as_bytes());
    }
    if let Some(n) = e.count {
        out.extend_from_slice(format!(" COUNT {n}").as_bytes());
    }
    if let Some(m) = e.modseq {
        out.extend_from_slice(format!(" MODSEQ {}", m.0).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// A mailbox attribute in a LIST response (RFC 9051 §7.3.1, RFC 5258, RFC 6154).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxAttr {
    /// `\Noinferiors`.
    NoInferiors,
    /// `\Noselect`.
    NoSelect,
    /// `\Marked`.
    Marked,
    /// `\Unmarked`.
    Unmarked,
    /// `\NonExistent`.
    NonExistent,
    /// `\HasChildren`.
    HasChildren,
    /// `\HasNoChildren`.
    HasNoChildren,
    /// `\Subscribed`.
    Subscribed,
    /// `\Remote`.
    Remote,
    /// A special use (`\Sent`, `\Trash`...).
    SpecialUse(SpecialUse),
}

impl fmt::Display for MailboxAttr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MailboxAttr::NoInferiors => "\\Noinferiors",
            MailboxAttr::NoSelect => "\\Noselect",
            MailboxAttr::Marked => "\\Marked",
            MailboxAttr::Unmarked => "\\Unmarked",
            MailboxAttr::NonExistent => "\\NonExistent",
            MailboxAttr::HasChildren => "\\HasChildren",
            MailboxAttr::HasNoChildren => "\\HasNoChildren",
            MailboxAttr::Subscribed => "\\Subscribed",
            MailboxAttr::Remote => "\\Remote",
            MailboxAttr::SpecialUse(u) => return write!(f, "{}", atom_or_slash(u)),
        })
    }
}

fn atom_or_slash(u: &SpecialUse) -> String {
    let s = u.to_string();
    let name = atom_only(s.trim_start_matches('\\'));
    format!("\\{name}")
}

/// One LIST (or LSUB) response line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListItem<'a> {
    /// Attributes.
    pub attrs: &'a [MailboxAttr],
    /// Hierarchy delimiter (`None`: flat, written NIL).
    pub delimiter: Option<char>,
    /// The name, UTF-8 (encoded for the session's mode).
    pub name: &'a str,
    /// `("CHILDINFO" ("SUBSCRIBED"))` (RFC 5258 §3.5, RECURSIVEMATCH).
    pub childinfo_subscribed: bool,
    /// `("OLDNAME" (name))` (RFC 9051 §7.3.1).
    pub old_name: Option<&'a str>,
}

fn write_delimiter(out: &mut Vec<u8>, delimiter: Option<char>) {
    match delimiter {
        Some(d) => {
            let mut b = [0u8; 4];
            write_string(out, d.encode_utf8(&mut b).as_bytes(), TextMode::Ascii);
        }
        None => out.extend_from_slice(b"NIL"),
    }
}

/// `* LIST (attrs) "/" name [extended items]`, or `* LSUB ...` with `lsub`.
pub fn list(out: &mut Vec<u8>, item: &ListItem<'_>, mode: TextMode, lsub: bool) {
    out.extend_from_slice(if lsub { b"* LSUB (" } else { b"* LIST (" });
    for (i, a) in item.attrs.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(a.to_string().as_bytes());
    }
    out.extend_from_slice(b") ");
    write_delimiter(out, item.delimiter);
    out.push(b' ');
    write_mailbox(out, item.name, mode);
    if item.childinfo_subscribed || item.old_name.is_some() {
        out.extend_from_slice(b" (");
        let mut first = true;
        if item.childinfo_subscribed {
            out.extend_from_slice(b"\"CHILDINFO\" (\"SUBSCRIBED\")");
            first = false;
        }
        if let Some(old) = item.old_name {
            if !first {
                out.push(b' ');
            }
            out.extend_from_slice(b"\"OLDNAME\" (");
            write_mailbox(out, old, mode);
            out.push(b')');
        }
        out.push(b')');
    }
    out.extend_from_slice(b"\r\n");
}

/// `* STATUS name (item value ...)` (RFC 9051 §7.2.4); a `None` value is written
/// `NIL` (APPENDLIMIT without a limit, RFC 7889 §3).
pub fn status(out: &mut Vec<u8>, name: &str, items: &[(StatusItem, Option<u64>)], mode: TextMode) {
    out.extend_from_slice(b"* STATUS ");
    write_mailbox(out, name, mode);
    out.extend_from_slice(b" (");
    for (i, (item, value)) in items.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(item.name().as_bytes());
        match value {
            Some(v) => out.extend_from_slice(format!(" {v}").as_bytes()),
            None => out.extend_from_slice(b" NIL"),
        }
    }
    out.extend_from_slice(b")\r\n");
}

/// `* NAMESPACE personal other shared` (RFC 9051 §7.3.2): each a list of (prefix,
/// delimiter), or NIL when empty.
pub fn namespace(out: &mut Vec<u8>, spaces: [&[(&str, Option<char>)]; 3], mode: TextMode) {
    out.extend_from_slice(b"* NAMESPACE");
    for space in spaces {
        out.push(b' ');
        if space.is_empty() {
            out.extend_from_slice(b"NIL");
            continue;
        }
        out.push(b'(');
        for (prefix, delim) in space {
            out.push(b'(');
            let enc = crate::mailbox::encode_name(prefix, mode);
            write_string(out, enc.as_bytes(), mode);
            out.push(b' ');
            write_delimiter(out, *delim);
            out.push(b')');
        }
        out.push(b')');
    }
    out.extend_from_slice(b"\r\n");
}

/// `* ID (field value ...)` or `* ID NIL` (RFC 2971 §3.2).
pub fn id(out: &mut Vec<u8>, params: Option<&[(&str, Option<&str>)]>) {
    out.extend_from_slice(b"* ID ");
    match params {
        None => out.extend_from_slice(b"NIL"),
        Some(p) => {
            out.push(b'(');
            for (i, (k, v)) in p.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                write_string(out, k.as_bytes(), TextMode::Ascii);
                out.push(b' ');
                write_nstring(out, v.map(str::as_bytes), TextMode::Ascii);
            }
            out.push(b')');
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// `* QUOTA root (resource usage limit ...)` (RFC 9208 §5.1).
pub fn quota(out: &mut Vec<u8>, root: &str, resources: &[(&str, u64, u64)]) {
    out.extend_from_slice(b"* QUOTA ");
    write_astring(out, root.as_bytes(), TextMode::Utf8);
    out.extend_from_slice(b" (");
    for (i, (name, usage, limit)) in resources.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(format!("{} {usage} {limit}", atom_only(name)).as_bytes());
    }
    out.extend_from_slice(b")\r\n");
}

/// `* QUOTAROOT mailbox root...` (RFC 9208 §5.2).
pub fn quotaroot(out: &mut Vec<u8>, mailbox: &str, roots: &[&str], mode: TextMode) {
    out.extend_from_slice(b"* QUOTAROOT ");
    write_mailbox(out, mailbox, mode);
    for r in roots {
        out.push(b' ');
        write_astring(out, r.as_bytes(), mode);
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes one `* n FETCH (...)` response item by item (RFC 9051 §7.5.2). A large
/// section can be streamed: [`FetchResponse::section_header`] writes its name and
/// literal header, the session sends the octets itself, then goes on.
pub struct FetchResponse<'a> {
    out: &'a mut Vec<u8>,
    mode: TextMode,
    first: bool,
}

impl<'a> FetchResponse<'a> {
    /// Starts `* seq FETCH (`.
    pub fn start(out: &'a mut Vec<u8>, seq: u32, mode: TextMode) -> Self {
        out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
        FetchResponse {
            out,
            mode,
            first: true,
        }
    }

    fn item(&mut self, name: &str) {
        if !self.first {
            self.out.push(b' ');
        }
        self.first = false;
        self.out.extend_from_slice(name.as_bytes());
    }

    fn attr(&mut self, attr: &FetchAttr) {
        if !self.first {
            self.out.push(b' ');
        }
        self.first = false;
        attr.write_response_name(self.out);
        self.out.push(b' ');
    }

    /// `UID n`.
    pub fn uid(&mut self, uid: u32) {
        self.item(&format!("UID {uid}"));
    }

    /// `FLAGS (...)`.
    pub fn flags(&mut self, flags: &[Flag]) {
        self.item("FLAGS ");
        write_flag_list(self.out, flags, false);
    }

    /// `MODSEQ (n)` (RFC 7162 §3.1.4.1).
    pub fn modseq(&mut self, m: ModSeq) {
        self.item(&format!("MODSEQ ({})", m.0));
    }

    /// `INTERNALDATE "..."`.
    pub fn internal_date(&mut self, dt: &DateTime) {
        self.item(&format!("INTERNALDATE \"{dt}\""));
    }

    /// `RFC822.SIZE n`.
    pub fn rfc822_size(&mut self, n: u64) {
        self.item(&format!("RFC822.SIZE {n}"));
    }

    /// An item whose value is already IMAP syntax: `ENVELOPE (...)`, `BODY (...)`,
    /// `BODYSTRUCTURE (...)` as computed at delivery.
    pub fn raw(&mut self, name: &str, value: &[u8]) {
        self.item(name);
        self.out.push(b' ');
        self.out.extend_from_slice(value);
    }

    /// A section's content (`BODY[...]`, `RFC822*`, `BINARY[...]`), `None` for NIL.
    /// BINARY content with NUL goes as literal8.
    pub fn section(&mut self, attr: &FetchAttr, data: Option<&[u8]>) {
        self.attr(attr);
        match (attr, data) {
            (FetchAttr::Binary { .. }, Some(d)) => write_binary(self.out, d, self.mode),
            (_, d) => write_nstring(self.out, d, self.mode),
        }
    }

    /// A section's name and literal header (`~{n}` when `binary`); the caller sends
    /// exactly `len` octets next, then continues with this writer (after flushing
    /// what it holds).
    pub fn section_header(&mut self, attr: &FetchAttr, len: u64, binary: bool) {
        self.attr(attr);
        write_literal_header(self.out, len, binary);
    }

    /// `BINARY.SIZE[part] n`.
    pub fn binary_size(&mut self, attr: &FetchAttr, n: u64) {
        self.attr(attr);
        self.out.extend_from_slice(n.to_string().as_bytes());
    }

    /// The buffer, for writing streamed octets between items.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        self.out
    }

    /// Ends the response: `)` CRLF.
    pub fn finish(self) {
        self.out.extend_from_slice(b")\r\n");
    }
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
