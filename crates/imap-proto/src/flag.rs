//! Message flags (RFC 9051 §2.3.2, §9 `flag`, `flag-list`).

use crate::cursor::{Cursor, PResult, is_atom_char};
use std::fmt;

/// A system flag, a keyword or a flag extension. System flags and extensions compare
/// case-insensitively on the wire; the parser folds system flag names to their variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    /// `\Answered`.
    Answered,
    /// `\Flagged`.
    Flagged,
    /// `\Deleted`.
    Deleted,
    /// `\Seen`.
    Seen,
    /// `\Draft`.
    Draft,
    /// `\Recent` (IMAP4rev1 only; a client cannot set it, RFC 3501 §2.3.2).
    Recent,
    /// A keyword (`$Forwarded`, `NonJunk`), as the client spelled it.
    Keyword(String),
    /// Another `\`-flag, stored without its backslash (`flag-extension`).
    Extension(String),
}

impl Flag {
    /// A flag from its wire name (`\Seen`, `$Junk`); `None` when it is not one.
    pub fn parse(name: &str) -> Option<Flag> {
        let mut c = Cursor::new(name.as_bytes(), None, crate::TextMode::Ascii);
        let f = flag(&mut c).ok()?;
        c.end().ok()?;
        Some(f)
    }

    /// True for the flags of RFC 9051 §2.3.2 that start with `\`.
    pub fn is_system(&self) -> bool {
        !matches!(self, Flag::Keyword(_) | Flag::Extension(_))
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Flag::Answered => f.write_str("\\Answered"),
            Flag::Flagged => f.write_str("\\Flagged"),
            Flag::Deleted => f.write_str("\\Deleted"),
            Flag::Seen => f.write_str("\\Seen"),
            Flag::Draft => f.write_str("\\Draft"),
            Flag::Recent => f.write_str("\\Recent"),
            Flag::Keyword(k) => f.write_str(k),
            Flag::Extension(e) => write!(f, "\\{e}"),
        }
    }
}

/// ASCII atom octets as text.
fn ascii_atom(c: &mut Cursor<'_>) -> PResult<String> {
    let start = c.pos();
    let a = c.atom()?;
    if !a.is_ascii() {
        return Err(crate::cursor::Fail {
            pos: start,
            kind: crate::ErrorKind::Syntax,
            text: "flags are ASCII atoms".into(),
        });
    }
    Ok(String::from_utf8_lossy(a).into_owned())
}

/// ```text
/// flag = "\Answered" / "\Flagged" / "\Deleted" / "\Seen" / "\Draft" /
///        flag-keyword / flag-extension
/// flag-extension = "\" atom
/// ```
/// `\Recent` parses too (rev1 `flag-fetch`); the session decides what STORE does with it.
pub(crate) fn flag(c: &mut Cursor<'_>) -> PResult<Flag> {
    if c.eat(b'\\') {
        if !c.peek().is_some_and(is_atom_char) {
            return c.fail("expected a flag name after '\\'");
        }
        let name = ascii_atom(c)?;
        Ok(match name.to_ascii_lowercase().as_str() {
            "answered" => Flag::Answered,
            "flagged" => Flag::Flagged,
            "deleted" => Flag::Deleted,
            "seen" => Flag::Seen,
            "draft" => Flag::Draft,
            "recent" => Flag::Recent,
            _ => Flag::Extension(name),
        })
    } else {
        ascii_atom(c).map(Flag::Keyword)
    }
}

/// `flag-keyword = atom` (SEARCH KEYWORD/UNKEYWORD).
pub(crate) fn flag_keyword(c: &mut Cursor<'_>) -> PResult<String> {
    ascii_atom(c)
}

/// `flag-list = "(" [flag *(SP flag)] ")"`.
pub(crate) fn flag_list(c: &mut Cursor<'_>) -> PResult<Vec<Flag>> {
    c.paren_list(true, flag)
}

/// Writes `(\Seen $Forwarded)`; with `any_keyword`, `\*` is added (PERMANENTFLAGS,
/// RFC 9051 §7.1).
pub fn write_flag_list(out: &mut Vec<u8>, flags: &[Flag], any_keyword: bool) {
    out.push(b'(');
    for (i, f) in flags.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(f.to_string().as_bytes());
    }
    if any_keyword {
        if !flags.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(b"\\*");
    }
    out.push(b')');
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        assert_eq!(Flag::parse("\\SEEN"), Some(Flag::Seen));
        assert_eq!(Flag::parse("\\recent"), Some(Flag::Recent));
        assert_eq!(
            Flag::parse("$Forwarded"),
            Some(Flag::Keyword("$Forwarded".into()))
        );
        assert_eq!(
            Flag::parse("\\Important"),
            Some(Flag::Extension("Important".into()))
        );
        assert_eq!(Flag::parse("\\"), None);
        assert_eq!(Flag::parse("a b"), None);
        assert_eq!(Flag::parse("\\*"), None);
        assert_eq!(Flag::parse("caf\u{e9}"), None);
        assert_eq!(Flag::Extension("X".into()).to_string(), "\\X");
    }

    #[test]
    fn flag_lists() {
        let mut c = Cursor::new(b"(\\Seen $Junk)", None, crate::TextMode::Ascii);
        assert_eq!(
            flag_list(&mut c).unwrap(),
            [Flag::Seen, Flag::Keyword("$Junk".into())]
        );
        let mut c = Cursor::new(b"()", None, crate::TextMode::Ascii);
        assert!(flag_list(&mut c).unwrap().is_empty());
        let mut c = Cursor::new(b"(\\Seen  x)", None, crate::TextMode::Ascii);
        assert!(flag_list(&mut c).is_err());
        let mut out = Vec::new();
        write_flag_list(&mut out, &[Flag::Seen, Flag::Deleted], true);
        assert_eq!(out, b"(\\Seen \\Deleted \\*)");
        out.clear();
        write_flag_list(&mut out, &[], false);
        assert_eq!(out, b"()");
    }
}
