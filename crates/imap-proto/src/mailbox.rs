//! Mailbox names (RFC 9051 §5.1, §9 `mailbox`, `list-mailbox`): read from the wire in
//! the session's [`TextMode`] (modified UTF-7 for IMAP4rev1, UTF-8 for IMAP4rev2 or
//! UTF8=ACCEPT) and kept as UTF-8, with every case of INBOX folded to [`Mailbox::Inbox`].

use crate::cursor::{Cursor, Fail, PResult, is_list_char};
use crate::error::ErrorKind;
use crate::string::{TextMode, write_astring};
use crate::utf7;
use std::fmt;

/// A mailbox name as the session sees it: UTF-8, INBOX folded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mailbox {
    /// `INBOX` in any case (RFC 9051 §5.1).
    Inbox,
    /// Any other name, UTF-8, as given (never a case variant of INBOX).
    Name(String),
    /// An IMAP4rev1 name that is not valid modified UTF-7 (RFC 3501 §5.1.3), kept as
    /// sent. It names no mailbox: SELECT and STATUS answer NO, CREATE and RENAME
    /// refuse it, as Dovecot does, rather than failing the whole command with BAD.
    Invalid(String),
}

impl Mailbox {
    /// The mailbox called `name` (UTF-8), INBOX folded.
    pub fn new(name: &str) -> Self {
        if name.eq_ignore_ascii_case("INBOX") {
            Mailbox::Inbox
        } else {
            Mailbox::Name(name.to_owned())
        }
    }

    /// The name; `INBOX` for the inbox.
    pub fn as_str(&self) -> &str {
        match self {
            Mailbox::Inbox => "INBOX",
            Mailbox::Name(n) | Mailbox::Invalid(n) => n,
        }
    }

    /// True for a name that was not valid modified UTF-7.
    pub fn is_invalid(&self) -> bool {
        matches!(self, Mailbox::Invalid(_))
    }

    /// True for INBOX.
    pub fn is_inbox(&self) -> bool {
        matches!(self, Mailbox::Inbox)
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Turns the octets of a name into UTF-8 text. In [`TextMode::Ascii`], an all-ASCII
/// name is modified UTF-7 and must decode (RFC 9051 A.1); a name with 8-bit octets is
/// taken as UTF-8 (RFC 6855 §3 asks servers to accept UTF-8 names). In
/// [`TextMode::Utf8`] the name is UTF-8 and `&` is just a character.
pub fn decode_name(raw: &[u8], mode: TextMode) -> Result<String, &'static str> {
    let s = if mode == TextMode::Ascii && raw.is_ascii() {
        utf7::decode(raw).map_err(|_| "mailbox name is not valid modified UTF-7")?
    } else {
        String::from_utf8(raw.to_vec()).map_err(|_| "mailbox name is not valid UTF-8")?
    };
    if s.chars().any(char::is_control) {
        return Err("mailbox name contains control characters");
    }
    Ok(s)
}

/// The wire form of a UTF-8 name in `mode`: modified UTF-7 for [`TextMode::Ascii`].
pub fn encode_name(name: &str, mode: TextMode) -> std::borrow::Cow<'_, str> {
    match mode {
        TextMode::Ascii if !name.is_ascii() || name.contains('&') => utf7::encode(name).into(),
        _ => name.into(),
    }
}

/// Writes a mailbox name as an astring in `mode` (LIST, STATUS, QUOTAROOT responses).
pub fn write_mailbox(out: &mut Vec<u8>, name: &str, mode: TextMode) {
    write_astring(out, encode_name(name, mode).as_bytes(), mode);
}

fn decoded(c: &Cursor<'_>, raw: &[u8], start: usize) -> PResult<String> {
    decode_name(raw, c.mode).map_err(|text| Fail {
        pos: start,
        kind: ErrorKind::Syntax,
        text: text.into(),
    })
}

/// `mailbox = "INBOX" / astring`.
pub(crate) fn mailbox(c: &mut Cursor<'_>) -> PResult<Mailbox> {
    let start = c.pos();
    let raw = c.astring()?;
    if c.mode == TextMode::Ascii
        && raw.is_ascii()
        && utf7::decode(&raw).is_err()
        && !raw.iter().any(u8::is_ascii_control)
    {
        return Ok(Mailbox::Invalid(String::from_utf8_lossy(&raw).into_owned()));
    }
    Ok(Mailbox::new(&decoded(c, &raw, start)?))
}

/// A name that is not a mailbox but is read like one: LIST's reference name.
pub(crate) fn mailbox_text(c: &mut Cursor<'_>) -> PResult<String> {
    let start = c.pos();
    let raw = c.astring()?;
    decoded(c, &raw, start)
}

/// `list-mailbox = 1*list-char / string` (a LIST/LSUB pattern with `%` and `*`). A
/// rev1 pattern that is not valid modified UTF-7 is kept as sent: it matches no
/// mailbox name (all of which decode), so LIST answers OK with nothing.
pub(crate) fn list_mailbox(c: &mut Cursor<'_>) -> PResult<String> {
    let start = c.pos();
    let raw = match c.peek() {
        Some(b'"' | b'{') => c.string()?,
        _ => std::borrow::Cow::Borrowed(c.take_while1(is_list_char, "expected a mailbox pattern")?),
    };
    if c.mode == TextMode::Ascii
        && raw.is_ascii()
        && utf7::decode(&raw).is_err()
        && !raw.iter().any(u8::is_ascii_control)
    {
        // A name with '&' not followed by valid mUTF-7: "&" plus U+FFFD can never
        // be a stored name, so nothing matches.
        return Ok(format!("\u{fffd}{}", String::from_utf8_lossy(&raw)));
    }
    decoded(c, &raw, start)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn mb(s: &[u8], mode: TextMode) -> PResult<Mailbox> {
        let mut c = Cursor::new(s, None, mode);
        let m = mailbox(&mut c)?;
        c.end()?;
        Ok(m)
    }

    #[test]
    fn inbox_is_case_insensitive() {
        assert_eq!(mb(b"iNbOx", TextMode::Ascii).unwrap(), Mailbox::Inbox);
        assert_eq!(mb(b"\"INBOX\"", TextMode::Utf8).unwrap(), Mailbox::Inbox);
        assert_eq!(mb(b"{5}\r\ninbox", TextMode::Utf8).unwrap(), Mailbox::Inbox);
        assert_eq!(
            mb(b"INBOX/Sub", TextMode::Ascii).unwrap(),
            Mailbox::Name("INBOX/Sub".into())
        );
        assert_eq!(Mailbox::new("Inbox").as_str(), "INBOX");
    }

    #[test]
    fn modes() {
        assert_eq!(
            mb(b"Entw&APw-rfe", TextMode::Ascii).unwrap().as_str(),
            "Entw\u{fc}rfe"
        );
        assert_eq!(
            mb(b"Entw&APw-rfe", TextMode::Utf8).unwrap().as_str(),
            "Entw&APw-rfe"
        );
        assert_eq!(
            mb("\"Entw\u{fc}rfe\"".as_bytes(), TextMode::Ascii)
                .unwrap()
                .as_str(),
            "Entw\u{fc}rfe"
        );
        assert_eq!(
            mb(b"\"Tom & Jerry\"", TextMode::Ascii).unwrap(),
            Mailbox::Invalid("Tom & Jerry".into())
        );
        assert!(mb(b"\"Tom & Jerry\"", TextMode::Utf8).is_ok());
        assert!(mb(b"\"\xff\"", TextMode::Utf8).is_err());
        assert!(mb(b"{3}\r\na\x01b", TextMode::Utf8).is_err());
    }

    #[test]
    fn writing() {
        let mut out = Vec::new();
        write_mailbox(&mut out, "Entw\u{fc}rfe", TextMode::Ascii);
        assert_eq!(out, b"Entw&APw-rfe");
        out.clear();
        write_mailbox(&mut out, "Tom & Jerry", TextMode::Ascii);
        assert_eq!(out, b"\"Tom &- Jerry\"");
        out.clear();
        write_mailbox(&mut out, "Entw\u{fc}rfe", TextMode::Utf8);
        assert_eq!(out, "\"Entw\u{fc}rfe\"".as_bytes());
    }

    #[test]
    fn patterns() {
        let mut c = Cursor::new(b"%/&APw-* x", None, TextMode::Ascii);
        assert_eq!(list_mailbox(&mut c).unwrap(), "%/\u{fc}*");
        let mut c = Cursor::new(b"\"\"", None, TextMode::Ascii);
        assert_eq!(list_mailbox(&mut c).unwrap(), "");
    }
}
