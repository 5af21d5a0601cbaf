//! LIST with LIST-EXTENDED selection and return options (RFC 9051 §6.3.9, RFC 5258
//! §3), SPECIAL-USE (RFC 6154 §5), LIST-STATUS (RFC 5819 §2), LSUB (RFC 3501
//! §6.3.9) and STATUS items (RFC 9051 §6.3.11, RFC 7162 §3.1.2, RFC 7889 §3.1,
//! RFC 9208 §4.4).

use crate::cursor::{Cursor, Fail, PResult};
use crate::error::{ErrorKind, excerpt};
use crate::mailbox::{list_mailbox, mailbox_text};

/// A STATUS data item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusItem {
    /// `MESSAGES`.
    Messages,
    /// `UIDNEXT`.
    UidNext,
    /// `UIDVALIDITY`.
    UidValidity,
    /// `UNSEEN`.
    Unseen,
    /// `DELETED` (RFC 9051).
    Deleted,
    /// `SIZE` (RFC 9051, STATUS=SIZE).
    Size,
    /// `RECENT` (rev1).
    Recent,
    /// `HIGHESTMODSEQ` (RFC 7162 §3.1.2).
    HighestModSeq,
    /// `APPENDLIMIT` (RFC 7889 §3.1).
    AppendLimit,
    /// `DELETED-STORAGE` (RFC 9208 §4.4).
    DeletedStorage,
}

impl StatusItem {
    /// The item's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::Deleted => "DELETED",
            StatusItem::Size => "SIZE",
            StatusItem::Recent => "RECENT",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
            StatusItem::AppendLimit => "APPENDLIMIT",
            StatusItem::DeletedStorage => "DELETED-STORAGE",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "MESSAGES" => StatusItem::Messages,
            "UIDNEXT" => StatusItem::UidNext,
            "UIDVALIDITY" => StatusItem::UidValidity,
            "UNSEEN" => StatusItem::Unseen,
            "DELETED" => StatusItem::Deleted,
            "SIZE" => StatusItem::Size,
            "RECENT" => StatusItem::Recent,
            "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
            "APPENDLIMIT" => StatusItem::AppendLimit,
            "DELETED-STORAGE" => StatusItem::DeletedStorage,
            _ => return None,
        })
    }
}

/// LIST selection options (RFC 5258 §3.1, RFC 6154 §5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListSelect {
    /// `SUBSCRIBED`.
    pub subscribed: bool,
    /// `REMOTE`.
    pub remote: bool,
    /// `RECURSIVEMATCH` (needs SUBSCRIBED).
    pub recursive_match: bool,
    /// `SPECIAL-USE`.
    pub special_use: bool,
}

/// LIST return options (RFC 5258 §3.2, RFC 5819, RFC 6154).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListReturn {
    /// `SUBSCRIBED`.
    pub subscribed: bool,
    /// `CHILDREN`.
    pub children: bool,
    /// `SPECIAL-USE`.
    pub special_use: bool,
    /// `STATUS (items)` (LIST-STATUS).
    pub status: Option<Vec<StatusItem>>,
}

/// `LIST [(select)] reference patterns [RETURN (opts)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCommand {
    /// Selection options.
    pub select: ListSelect,
    /// Reference name (decoded to UTF-8).
    pub reference: String,
    /// One or more patterns (decoded to UTF-8).
    pub patterns: Vec<String>,
    /// Return options.
    pub ret: ListReturn,
    /// True when the command used the extended syntax (selection options, several
    /// patterns in parentheses, or RETURN; RFC 5258 §3): the session then answers
    /// per RFC 5258 (e.g. `\NonExistent`, CHILDINFO).
    pub extended: bool,
}

fn unknown(start: usize, what: &str, word: &str) -> Fail {
    Fail {
        pos: start,
        kind: ErrorKind::Syntax,
        text: format!("unknown {what} {}", excerpt(word.as_bytes())).into(),
    }
}

/// ```text
/// list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]
/// mbox-or-pat = list-mailbox / patterns
/// patterns = "(" list-mailbox *(SP list-mailbox) ")"
/// ```
pub(crate) fn list(c: &mut Cursor<'_>) -> PResult<ListCommand> {
    c.sp()?;
    let mut extended = false;
    let mut select = ListSelect::default();
    if c.peek() == Some(b'(') {
        extended = true;
        let at = c.pos();
        c.paren_list(true, |c| {
            let start = c.pos();
            let w = c.atom_upper()?;
            match w.as_str() {
                "SUBSCRIBED" => select.subscribed = true,
                "REMOTE" => select.remote = true,
                "RECURSIVEMATCH" => select.recursive_match = true,
                "SPECIAL-USE" => select.special_use = true,
                _ => return Err(unknown(start, "LIST selection option", &w)),
            }
            Ok(())
        })?;
        // RFC 5258 §3.1: RECURSIVEMATCH needs a base option (SUBSCRIBED).
        if select.recursive_match && !select.subscribed {
            return Err(Fail {
                pos: at,
                kind: ErrorKind::Syntax,
                text: "RECURSIVEMATCH needs SUBSCRIBED (RFC 5258 §3.1)".into(),
            });
        }
        c.sp()?;
    }
    let reference = mailbox_text(c)?;
    c.sp()?;
    let patterns = if c.peek() == Some(b'(') {
        extended = true;
        c.paren_list(false, list_mailbox)?
    } else {
        vec![list_mailbox(c)?]
    };
    let mut ret = ListReturn::default();
    if !c.at_end() {
        c.sp()?;
        if !c.eat_word("RETURN") {
            return c.fail("expected RETURN");
        }
        extended = true;
        c.sp()?;
        c.paren_list(true, |c| {
            let start = c.pos();
            let w = c.atom_upper()?;
            match w.as_str() {
                "SUBSCRIBED" => ret.subscribed = true,
                "CHILDREN" => ret.children = true,
                "SPECIAL-USE" => ret.special_use = true,
                "STATUS" if ret.status.is_none() => {
                    c.sp()?;
                    ret.status = Some(status_items(c)?);
                }
                _ => return Err(unknown(start, "LIST return option", &w)),
            }
            Ok(())
        })?;
    }
    Ok(ListCommand {
        select,
        reference,
        patterns,
        ret,
        extended,
    })
}

/// `"LSUB" SP mailbox SP list-mailbox` (RFC 3501 §9).
pub(crate) fn lsub(c: &mut Cursor<'_>) -> PResult<(String, String)> {
    c.sp()?;
    let reference = mailbox_text(c)?;
    c.sp()?;
    Ok((reference, list_mailbox(c)?))
}

/// `"(" status-att *(SP status-att) ")"`.
pub(crate) fn status_items(c: &mut Cursor<'_>) -> PResult<Vec<StatusItem>> {
    c.paren_list(false, |c| {
        let start = c.pos();
        let w = c.atom_upper()?;
        StatusItem::from_name(&w).ok_or_else(|| unknown(start, "STATUS item", &w))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::TextMode;

    fn l(input: &str) -> PResult<ListCommand> {
        let mut c = Cursor::new(input.as_bytes(), None, TextMode::Ascii);
        let r = list(&mut c)?;
        c.end()?;
        Ok(r)
    }

    #[test]
    fn basic_list() {
        let r = l(" \"\" %").unwrap();
        assert_eq!(r.reference, "");
        assert_eq!(r.patterns, ["%"]);
        assert!(!r.extended);
        let r = l(" ~/Mail/ \"foo*\"").unwrap();
        assert_eq!(r.reference, "~/Mail/");
        assert_eq!(r.patterns, ["foo*"]);
        assert_eq!(l(" \"\" \"\"").unwrap().patterns, [""]);
        // RFC 9051 §6.3.9 example with a modified UTF-7 pattern.
        assert_eq!(l(" \"\" &AOQ-*").unwrap().patterns, ["\u{e4}*"]);
    }

    #[test]
    fn rfc5258_examples() {
        let r = l(" (SUBSCRIBED) \"\" \"*\"").unwrap();
        assert!(r.select.subscribed && r.extended);
        let r = l(" (SUBSCRIBED RECURSIVEMATCH) \"\" % RETURN (CHILDREN)").unwrap();
        assert!(r.select.recursive_match && r.ret.children);
        let r = l(" \"\" (\"foo\" \"foo/*\")").unwrap();
        assert_eq!(r.patterns, ["foo", "foo/*"]);
        assert!(r.extended);
        let r = l(" () \"\" %").unwrap();
        assert_eq!(r.select, ListSelect::default());
        assert!(r.extended);
        let r = l(" \"\" % RETURN ()").unwrap();
        assert!(r.extended);
        let r = l(" (REMOTE SPECIAL-USE) \"\" * RETURN (SUBSCRIBED SPECIAL-USE)").unwrap();
        assert!(r.select.remote && r.select.special_use);
        assert!(r.ret.subscribed && r.ret.special_use);
    }

    #[test]
    fn list_status() {
        // RFC 5819 §2 example.
        let r = l(" \"\" % RETURN (STATUS (MESSAGES UNSEEN))").unwrap();
        assert_eq!(
            r.ret.status,
            Some(vec![StatusItem::Messages, StatusItem::Unseen])
        );
        assert!(l(" \"\" % RETURN (STATUS ())").is_err());
        assert!(l(" \"\" % RETURN (STATUS (MESSAGES) STATUS (UNSEEN))").is_err());
    }

    #[test]
    fn refusals() {
        for bad in [
            " (RECURSIVEMATCH) \"\" %",
            " (REMOTE RECURSIVEMATCH) \"\" %",
            " (FOO) \"\" %",
            " \"\" % RETURN (FOO)",
            " \"\" % FOO",
            " \"\" ()",
            " \"\"",
            " \"\" % RETURN",
        ] {
            assert!(l(bad).is_err(), "{bad:?} accepted");
        }
        // Not modified UTF-7: kept, marked so that it matches no mailbox.
        assert_eq!(
            l(" \"\" Tom&Jerry").unwrap().patterns,
            ["\u{fffd}Tom&Jerry"]
        );
    }
}
