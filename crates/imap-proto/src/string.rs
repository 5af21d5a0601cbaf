//! Writing IMAP strings (RFC 9051 §4.3): the writer picks the form each value can
//! take, atom when an astring allows it, quoted when the octets fit, literal otherwise,
//! and `~{n}` literal8 for BINARY data with NUL (RFC 3516 §4.3).

/// What 8-bit text a session may exchange, chosen at ENABLE time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextMode {
    /// IMAP4rev1 without UTF8=ACCEPT: mailbox names travel in modified UTF-7 (RFC 3501
    /// §5.1.3) and 8-bit strings are sent as literals.
    #[default]
    Ascii,
    /// IMAP4rev2 (RFC 9051 §5.1) or `ENABLE UTF8=ACCEPT` (RFC 6855 §3): mailbox names
    /// and quoted strings are UTF-8.
    Utf8,
}

/// Longest value written as a quoted string; longer ones go as literals.
pub const MAX_QUOTED: usize = 1024;

/// Can `s` be sent as a quoted string in `mode`?
fn quotable(s: &[u8], mode: TextMode) -> bool {
    if s.len() > MAX_QUOTED || s.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n')) {
        return false;
    }
    match mode {
        TextMode::Ascii => s.is_ascii(),
        TextMode::Utf8 => std::str::from_utf8(s).is_ok(),
    }
}

/// `quoted` (caller checked it can be).
fn write_quoted(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &b in s {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// `literal`: `{n}` CRLF and the octets. A server never sends the `+` form.
pub fn write_literal(out: &mut Vec<u8>, s: &[u8]) {
    write_literal_header(out, s.len() as u64, false);
    out.extend_from_slice(s);
}

/// The `{n}` CRLF (or `~{n}` CRLF) before `n` octets the caller writes itself, e.g. a
/// message streamed from its blob.
pub fn write_literal_header(out: &mut Vec<u8>, len: u64, binary: bool) {
    if binary {
        out.push(b'~');
    }
    out.push(b'{');
    out.extend_from_slice(len.to_string().as_bytes());
    out.extend_from_slice(b"}\r\n");
}

/// `string`: quoted when possible, else a literal.
pub fn write_string(out: &mut Vec<u8>, s: &[u8], mode: TextMode) {
    if quotable(s, mode) {
        write_quoted(out, s);
    } else {
        write_literal(out, s);
    }
}

/// `nstring`: `NIL` for `None`.
pub fn write_nstring(out: &mut Vec<u8>, s: Option<&[u8]>, mode: TextMode) {
    match s {
        Some(s) => write_string(out, s, mode),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// `astring`: an atom when every octet is an ASTRING-CHAR (and it is not `NIL`, which
/// a reader expecting an nstring would misread), else a string.
pub fn write_astring(out: &mut Vec<u8>, s: &[u8], mode: TextMode) {
    let atom_ok = !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii() && crate::cursor::is_astring_char(b))
        && !s.eq_ignore_ascii_case(b"NIL");
    if atom_ok {
        out.extend_from_slice(s);
    } else {
        write_string(out, s, mode);
    }
}

/// BINARY data (RFC 3516 §4.3): `~{n}` literal8 when it holds NUL, else as
/// [`write_nstring`] would.
pub fn write_binary(out: &mut Vec<u8>, s: &[u8], mode: TextMode) {
    if s.contains(&0) {
        write_literal_header(out, s.len() as u64, true);
        out.extend_from_slice(s);
    } else {
        write_string(out, s, mode);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        f(&mut out);
        out
    }

    #[test]
    fn astring_forms() {
        assert_eq!(w(|o| write_astring(o, b"INBOX", TextMode::Ascii)), b"INBOX");
        assert_eq!(w(|o| write_astring(o, b"a b", TextMode::Ascii)), b"\"a b\"");
        assert_eq!(w(|o| write_astring(o, b"", TextMode::Ascii)), b"\"\"");
        assert_eq!(w(|o| write_astring(o, b"nil", TextMode::Ascii)), b"\"nil\"");
        assert_eq!(
            w(|o| write_astring(o, b"a\"b\\", TextMode::Ascii)),
            b"\"a\\\"b\\\\\""
        );
        assert_eq!(w(|o| write_astring(o, b"x]y", TextMode::Ascii)), b"x]y");
        assert_eq!(w(|o| write_astring(o, b"%", TextMode::Ascii)), b"\"%\"");
    }

    #[test]
    fn literal_when_needed() {
        assert_eq!(
            w(|o| write_string(o, b"a\r\nb", TextMode::Ascii)),
            b"{4}\r\na\r\nb"
        );
        let utf8 = "K\u{e4}se".as_bytes();
        assert_eq!(
            w(|o| write_string(o, utf8, TextMode::Ascii)),
            [b"{5}\r\n".as_slice(), utf8].concat()
        );
        assert_eq!(
            w(|o| write_string(o, utf8, TextMode::Utf8)),
            [b"\"".as_slice(), utf8, b"\""].concat()
        );
        // Invalid UTF-8 is never quoted.
        assert_eq!(
            w(|o| write_string(o, b"\xff", TextMode::Utf8)),
            b"{1}\r\n\xff"
        );
        let long = vec![b'a'; MAX_QUOTED + 1];
        assert!(w(|o| write_string(o, &long, TextMode::Utf8)).starts_with(b"{1025}\r\n"));
        assert_eq!(w(|o| write_nstring(o, None, TextMode::Utf8)), b"NIL");
    }

    #[test]
    fn binary_uses_literal8_for_nul() {
        assert_eq!(
            w(|o| write_binary(o, b"a\0b", TextMode::Utf8)),
            b"~{3}\r\na\0b"
        );
        assert_eq!(w(|o| write_binary(o, b"ab", TextMode::Utf8)), b"\"ab\"");
    }
}
