//! The few IMAP string forms ENVELOPE and BODYSTRUCTURE need (RFC 9051 §4.3), written
//! the way Dovecot's `imap-quote.c` writes them. Kept here, small and self-contained,
//! so this crate does not depend on the IMAP codec.
//!
//! - `quoted` when the string has no CR, LF or 8-bit octet and at most four `"` / `\`;
//! - a literal `{n}\r\n...` otherwise. With `utf8` (IMAP4rev2 or `UTF8=ACCEPT`,
//!   RFC 9051 §4.3 / RFC 6855 §3) valid UTF-8 may stay quoted.

/// Most `"` and `\` a quoted string may escape before a literal is shorter (Dovecot's
/// choice).
const MAX_ESCAPES: usize = 4;

/// `NIL`.
pub(crate) fn nil(out: &mut Vec<u8>) {
    out.extend_from_slice(b"NIL");
}

/// `nstring`: `NIL` for `None`.
pub(crate) fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>, utf8: bool) {
    match s {
        None => nil(out),
        Some(s) => string(out, s, utf8),
    }
}

/// `string`, quoted when it can be, else a literal.
pub(crate) fn string(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    if s.contains(&0) {
        let clean: Vec<u8> = s
            .iter()
            .flat_map(|&b| {
                if b == 0 {
                    "\u{FFFD}".as_bytes().to_vec()
                } else {
                    vec![b]
                }
            })
            .collect();
        return string(out, &clean, utf8);
    }
    let mut escapes = 0;
    let mut literal = false;
    for &b in s {
        match b {
            b'"' | b'\\' => {
                escapes += 1;
                if escapes > MAX_ESCAPES {
                    literal = true;
                    break;
                }
            }
            b'\r' | b'\n' => {
                literal = true;
                break;
            }
            _ if b >= 0x80 && !utf8 => {
                literal = true;
                break;
            }
            _ => {}
        }
    }
    if !literal && utf8 && !s.is_ascii() && std::str::from_utf8(s).is_err() {
        literal = true;
    }
    if literal {
        self::literal(out, s);
    } else {
        quoted(out, s);
    }
}

fn quoted(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &b in s {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

fn literal(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'{');
    out.extend_from_slice(s.len().to_string().as_bytes());
    out.extend_from_slice(b"}\r\n");
    out.extend_from_slice(s);
}

/// `nstring` of a header value with its line breaks removed (a space is put in where
/// the next line does not start with white space), as Dovecot's
/// `imap_append_nstring_nolf`.
pub(crate) fn nstring_nolf(out: &mut Vec<u8>, s: Option<&[u8]>, utf8: bool) {
    let Some(s) = s else {
        return nil(out);
    };
    if !s.iter().any(|&b| b == b'\r' || b == b'\n') {
        return string(out, s, utf8);
    }
    let mut clean = Vec::with_capacity(s.len());
    for (i, &b) in s.iter().enumerate() {
        if b != b'\r' && b != b'\n' {
            clean.push(b);
        } else if !matches!(s.get(i + 1), None | Some(b' ' | b'\t' | b'\r' | b'\n')) {
            clean.push(b' ');
        }
    }
    string(out, &clean, utf8)
}

/// A string meant for people (subject, display name): runs of white space and line
/// breaks become one space, leading and trailing white space goes. Without `utf8`
/// exactly Dovecot's `imap_append_string_for_humans`: quoted as is when nothing needed
/// changing, else a literal of the cleaned text.
pub(crate) fn string_for_humans(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    let mut modify = false;
    let mut last_lwsp = true;
    let mut ws_prefix = true;
    let mut removed = 0usize;
    for &b in s {
        match b {
            0 => {
                last_lwsp = false;
                modify = true;
            }
            b'\r' | b'\n' | b'\t' | b' ' => {
                if b != b' ' {
                    modify = true;
                }
                if last_lwsp {
                    modify = true;
                    removed += 1;
                }
                last_lwsp = true;
            }
            b'"' | b'\\' => {
                modify = true;
                last_lwsp = false;
            }
            _ => {
                if b >= 0x80 {
                    modify = true;
                }
                last_lwsp = false;
            }
        }
        if !last_lwsp {
            ws_prefix = false;
        }
    }
    if last_lwsp && !s.is_empty() && !ws_prefix {
        modify = true;
        removed += 1;
    }
    if !modify {
        return quoted(out, s);
    }
    if s.len() == removed {
        out.extend_from_slice(b"\"\"");
        return;
    }
    let mut clean = Vec::with_capacity(s.len());
    let mut last_lwsp = true;
    for &b in s {
        match b {
            0 => {
                clean.extend_from_slice(if utf8 { "\u{FFFD}".as_bytes() } else { &[0x80] });
                last_lwsp = false;
            }
            b'\r' | b'\n' | b'\t' | b' ' => {
                if !last_lwsp {
                    clean.push(b' ');
                }
                last_lwsp = true;
            }
            _ => {
                clean.push(b);
                last_lwsp = false;
            }
        }
    }
    if clean.last() == Some(&b' ') {
        clean.pop();
    }
    if utf8 {
        string(out, &clean, true);
    } else {
        literal(out, &clean);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(f: impl Fn(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn strings() {
        assert_eq!(w(|o| string(o, b"plain", false)), "\"plain\"");
        assert_eq!(w(|o| string(o, b"a\"b\\c", false)), "\"a\\\"b\\\\c\"");
        assert_eq!(w(|o| string(o, b"\"\"\"\"\"", false)), "{5}\r\n\"\"\"\"\"");
        assert_eq!(w(|o| string(o, "é".as_bytes(), false)), "{2}\r\né");
        assert_eq!(w(|o| string(o, "é".as_bytes(), true)), "\"é\"");
        assert_eq!(w(|o| string(o, b"\xff", true)), "{1}\r\n\u{FFFD}");
        assert_eq!(w(|o| nstring(o, None, false)), "NIL");
        assert_eq!(
            w(|o| nstring_nolf(o, Some(b"a\n b\nc"), false)),
            "\"a b c\""
        );
    }

    #[test]
    fn for_humans() {
        assert_eq!(
            w(|o| string_for_humans(o, b"hello world", false)),
            "\"hello world\""
        );
        assert_eq!(
            w(|o| string_for_humans(o, b"hello\n  world", false)),
            "{11}\r\nhello world"
        );
        assert_eq!(w(|o| string_for_humans(o, b" x ", false)), "{1}\r\nx");
        assert_eq!(w(|o| string_for_humans(o, b"  ", false)), "\"\"");
        assert_eq!(
            w(|o| string_for_humans(o, b"say \"hi\"", false)),
            "{8}\r\nsay \"hi\""
        );
        assert_eq!(
            w(|o| string_for_humans(o, b"say \"hi\"", true)),
            "\"say \\\"hi\\\"\""
        );
        assert_eq!(
            w(|o| string_for_humans(o, "né\n x".as_bytes(), true)),
            "\"né x\""
        );
    }
}
