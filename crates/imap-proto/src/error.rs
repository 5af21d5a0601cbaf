//! Refused commands, typed so that the session answers at one place (STYLE §9): a
//! syntax error is `tag BAD` (RFC 9051 §7.1.3), an unsupported SEARCH charset is
//! `tag NO [BADCHARSET]` (RFC 9051 §6.4.4), an oversized literal is `[TOOBIG]`
//! (RFC 7888 §5, RFC 7889 §4).

use crate::command::Tag;
use crate::response::{Code, Status};
use std::fmt;

/// What kind of refusal a [`CommandError`] is; each maps to one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The arguments do not follow RFC 9051 §9: `tag BAD`.
    Syntax,
    /// Not a command buudien knows: `tag BAD`.
    UnknownCommand,
    /// SEARCH with a charset other than UTF-8 / US-ASCII: `tag NO [BADCHARSET (UTF-8 US-ASCII)]`
    /// (RFC 9051 §6.4.4: "NO", not "BAD").
    BadCharset,
    /// The command's text (literals not counted) passed the line limit: `tag BAD`; the
    /// rest of the command was skipped (DESIGN: IMAP 64 KiB).
    LineTooLong,
    /// A literal the framer will not take. `sync: false` is a non-synchronizing
    /// literal over the LITERAL- limit or the command's literal cap: `tag BAD [TOOBIG]`,
    /// its octets are discarded (RFC 7888 §5). `sync: true` is a synchronizing literal
    /// refused before `+` was sent: `tag NO [TOOBIG]`; the client sends nothing more.
    LiteralTooBig {
        /// The literal was synchronizing (`{n}`), so no octet of it will come.
        sync: bool,
    },
}

/// A refused command: the tag (when one could be read), the kind, and a text fit for
/// the response (printable, no CR or LF, at most [`CommandError::MAX_TEXT`] octets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    /// The command's tag, when the line started with a valid one; `None` means the
    /// answer is untagged (`* BAD`).
    pub tag: Option<Tag>,
    /// Which response it gets.
    pub kind: ErrorKind,
    /// Why, for the response text.
    pub text: String,
}

impl CommandError {
    /// Longest error text.
    pub const MAX_TEXT: usize = 200;

    /// A refusal with `text` made safe for a response line.
    pub fn new(tag: Option<Tag>, kind: ErrorKind, text: &str) -> Self {
        CommandError {
            tag,
            kind,
            text: sanitize(text, Self::MAX_TEXT),
        }
    }

    /// `BAD` or `NO`.
    pub fn status(&self) -> Status {
        match self.kind {
            ErrorKind::BadCharset | ErrorKind::LiteralTooBig { sync: true } => Status::No,
            _ => Status::Bad,
        }
    }

    /// The response code that goes with it.
    pub fn code(&self) -> Option<Code> {
        match self.kind {
            ErrorKind::BadCharset => {
                Some(Code::BadCharset(vec!["UTF-8".into(), "US-ASCII".into()]))
            }
            ErrorKind::LiteralTooBig { .. } => Some(Code::TooBig),
            ErrorKind::Syntax | ErrorKind::UnknownCommand | ErrorKind::LineTooLong => None,
        }
    }

    /// Writes the whole response line: `tag BAD text` or `* BAD text` when the tag
    /// is unknown.
    pub fn write_response(&self, out: &mut Vec<u8>) {
        let code = self.code();
        match &self.tag {
            Some(tag) => {
                crate::response::tagged(out, tag, self.status(), code.as_ref(), &self.text)
            }
            None => crate::response::untagged(out, self.status(), code.as_ref(), &self.text),
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for CommandError {}

/// Keeps printable characters (control characters become spaces), cut at `max` octets
/// on a character boundary.
pub(crate) fn sanitize(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// Client bytes shown in an error text: printable ASCII only, at most 40 characters.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let mut s: String = bytes
        .iter()
        .take(40)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    if bytes.len() > 40 {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_cleaned_and_cut() {
        let e = CommandError::new(None, ErrorKind::Syntax, "a\r\nb");
        assert_eq!(e.text, "a  b");
        let e = CommandError::new(None, ErrorKind::Syntax, &"é".repeat(300));
        assert!(e.text.len() <= CommandError::MAX_TEXT);
        assert_eq!(excerpt(b"ab\x00c"), "ab?c");
    }

    #[test]
    fn responses_by_kind() {
        let tag = Tag::new("a1").ok();
        let mut out = Vec::new();
        CommandError::new(tag.clone(), ErrorKind::BadCharset, "no such charset")
            .write_response(&mut out);
        assert_eq!(
            out,
            b"a1 NO [BADCHARSET (UTF-8 US-ASCII)] no such charset\r\n"
        );
        out.clear();
        CommandError::new(tag, ErrorKind::LiteralTooBig { sync: false }, "too big")
            .write_response(&mut out);
        assert_eq!(out, b"a1 BAD [TOOBIG] too big\r\n");
        out.clear();
        CommandError::new(None, ErrorKind::Syntax, "what?").write_response(&mut out);
        assert_eq!(out, b"* BAD what?\r\n");
    }
}
