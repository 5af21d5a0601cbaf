//! Undoing encodings: Content-Transfer-Encoding (RFC 2045 §6, for BINARY and search),
//! charsets (via mail-parser's decoders), RFC 2047 encoded-words and RFC 2231
//! parameter values.
//!
//! The transfer decoders are lenient, as mail readers are: base64 skips every octet
//! outside its alphabet, quoted-printable keeps an `=` that starts no valid escape.
//! Both run in one pass with no look-back, so they are linear, and [`decoded_len`]
//! counts without allocating.

use std::fmt;

/// A Content-Transfer-Encoding, as far as decoding is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cte {
    /// `7bit`, `8bit`, `binary`, or no field: the body is its own content.
    Identity,
    /// `base64`.
    Base64,
    /// `quoted-printable`.
    QuotedPrintable,
    /// Anything else: BINARY must answer `NO [UNKNOWN-CTE]` (RFC 3516 §4.3).
    Unknown,
}

impl Cte {
    /// The encoding named by a `Content-Transfer-Encoding` token (`None`: no field).
    pub fn of(token: Option<&[u8]>) -> Cte {
        let Some(token) = token else {
            return Cte::Identity;
        };
        let is = |name: &str| token.eq_ignore_ascii_case(name.as_bytes());
        if is("7bit") || is("8bit") || is("binary") {
            Cte::Identity
        } else if is("base64") {
            Cte::Base64
        } else if is("quoted-printable") {
            Cte::QuotedPrintable
        } else {
            Cte::Unknown
        }
    }
}

/// The part uses a Content-Transfer-Encoding that buudien cannot undo; IMAP answers
/// `NO [UNKNOWN-CTE]` (RFC 3516 §4.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownCte {
    /// The encoding token as the message names it.
    pub encoding: String,
}

impl fmt::Display for UnknownCte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown Content-Transfer-Encoding {:?}", self.encoding)
    }
}

impl std::error::Error for UnknownCte {}

/// RFC 3516 BINARY: `body` (a part's body range) with its Content-Transfer-Encoding
/// (`encoding`, the token from [`crate::Part::encoding`]) undone.
pub fn decode_part(body: &[u8], encoding: Option<&[u8]>) -> Result<Vec<u8>, UnknownCte> {
    let cte = Cte::of(encoding);
    match cte {
        Cte::Identity => Ok(body.to_vec()),
        Cte::Unknown => Err(UnknownCte {
            encoding: String::from_utf8_lossy(encoding.unwrap_or_default()).into_owned(),
        }),
        Cte::Base64 | Cte::QuotedPrintable => {
            let mut out = Vec::with_capacity(body.len());
            decode_into(body, cte, &mut out);
            Ok(out)
        }
    }
}

/// Size of `body` decoded with `cte` (identity and unknown: unchanged).
pub(crate) fn decoded_len(body: &[u8], cte: Cte) -> u64 {
    let mut n = Count(0);
    match cte {
        Cte::Identity | Cte::Unknown => body.len() as u64,
        _ => {
            decode_into(body, cte, &mut n);
            n.0
        }
    }
}

trait Sink {
    fn put(&mut self, b: u8);
    fn put_all(&mut self, s: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, b: u8) {
        self.push(b);
    }
    fn put_all(&mut self, s: &[u8]) {
        self.extend_from_slice(s);
    }
}

struct Count(u64);

impl Sink for Count {
    fn put(&mut self, _: u8) {
        self.0 += 1;
    }
    fn put_all(&mut self, s: &[u8]) {
        self.0 += s.len() as u64;
    }
}

fn decode_into(body: &[u8], cte: Cte, out: &mut impl Sink) {
    match cte {
        Cte::Base64 => base64(body, out),
        Cte::QuotedPrintable => quoted_printable(body, out),
        Cte::Identity | Cte::Unknown => out.put_all(body),
    }
}

fn b64_value(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Base64 ignoring everything outside the alphabet (line breaks, junk); padding ends
/// a quantum, so separately encoded pieces one after the other decode as such.
fn base64(input: &[u8], out: &mut impl Sink) {
    let mut acc = 0u32;
    let mut bits = 0u32;
    for &c in input {
        let Some(v) = b64_value(c) else {
            if c == b'=' {
                acc = 0;
                bits = 0;
            }
            continue;
        };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.put(((acc >> bits) & 0xFF) as u8);
            acc &= (1 << bits) - 1;
        }
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Quoted-printable (RFC 2045 §6.7): `=XX` escapes, `=` at the end of a line joins it
/// to the next, white space before a line break is dropped, line breaks are kept as
/// they are (CRLF or LF).
fn quoted_printable(input: &[u8], out: &mut impl Sink) {
    for line in crate::header::lines(input) {
        let (content, eol): (&[u8], &[u8]) = if let Some(c) = line.strip_suffix(b"\r\n") {
            (c, b"\r\n")
        } else if let Some(c) = line.strip_suffix(b"\n") {
            (c, b"\n")
        } else {
            (line, b"")
        };
        let mut content = content;
        if !eol.is_empty() {
            while let [rest @ .., b' ' | b'\t'] = content {
                content = rest;
            }
        }
        let soft = content.last() == Some(&b'=') && !eol.is_empty();
        if soft {
            content = content.get(..content.len() - 1).unwrap_or_default();
        }
        let mut i = 0;
        while let Some(&c) = content.get(i) {
            if c == b'=' {
                let h = content.get(i + 1).copied().and_then(hex);
                let l = content.get(i + 2).copied().and_then(hex);
                if let (Some(h), Some(l)) = (h, l) {
                    out.put((h << 4) | l);
                    i += 3;
                    continue;
                }
            }
            out.put(c);
            i += 1;
        }
        if !soft {
            out.put_all(eol);
        }
    }
}

/// `bytes` in `charset` as UTF-8: mail-parser's decoders for the charsets it knows,
/// UTF-8 (invalid sequences replaced) for the rest and for no charset.
pub(crate) fn to_utf8(bytes: &[u8], charset: Option<&[u8]>) -> String {
    match charset {
        Some(cs)
            if !cs.eq_ignore_ascii_case(b"utf-8")
                && !cs.eq_ignore_ascii_case(b"us-ascii")
                && !cs.eq_ignore_ascii_case(b"utf8") =>
        {
            match mail_parser::decoders::charsets::map::charset_decoder(cs) {
                Some(decoder) => decoder(bytes),
                None => String::from_utf8_lossy(bytes).into_owned(),
            }
        }
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// An unstructured header value with RFC 2047 encoded-words decoded and line breaks
/// unfolded (mail-parser's unstructured-field parser); raw 8-bit text is taken as
/// UTF-8.
pub(crate) fn header_text(value: &[u8]) -> String {
    if !value.windows(2).any(|w| w == b"=?") {
        let unfolded: Vec<u8> = value
            .iter()
            .copied()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect();
        return String::from_utf8_lossy(&unfolded).into_owned();
    }
    let mut buf = Vec::with_capacity(value.len() + 1);
    buf.extend_from_slice(value);
    buf.push(b'\n');
    match mail_parser::parsers::MessageStream::new(&buf).parse_unstructured() {
        mail_parser::HeaderValue::Text(t) => t.into_owned(),
        _ => String::new(),
    }
}

/// RFC 2231 §4: `name*` = `charset'language'%XX...` → (`name`, UTF-8 text).
pub(crate) fn rfc2231_value(name: &[u8], value: &[u8]) -> (String, String) {
    let Some(base) = name.strip_suffix(b"*") else {
        return (
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        );
    };
    let mut pieces = value.splitn(3, |&b| b == b'\'');
    let (charset, encoded) = match (pieces.next(), pieces.next(), pieces.next()) {
        (Some(cs), Some(_lang), Some(rest)) => (Some(cs).filter(|c| !c.is_empty()), rest),
        _ => (None, value),
    };
    let mut raw = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while let Some(&c) = encoded.get(i) {
        if c == b'%' {
            let h = encoded.get(i + 1).copied().and_then(hex);
            let l = encoded.get(i + 2).copied().and_then(hex);
            if let (Some(h), Some(l)) = (h, l) {
                raw.push((h << 4) | l);
                i += 3;
                continue;
            }
        }
        raw.push(c);
        i += 1;
    }
    (
        String::from_utf8_lossy(base).into_owned(),
        to_utf8(&raw, charset),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_lenient() {
        assert_eq!(
            decode_part(b"aGVsbG8=\r\n", Some(b"base64")).unwrap(),
            b"hello"
        );
        assert_eq!(
            decode_part(b"aGVs\r\nbG8gd29y\r\nbGQ=", Some(b"BASE64")).unwrap(),
            b"hello world"
        );
        assert_eq!(
            decode_part(b"aG!!VsbG8", Some(b"base64")).unwrap(),
            b"hello"
        );
        assert_eq!(decoded_len(b"aGVsbG8=\r\n", Cte::Base64), 5);
        assert_eq!(
            decode_part(b"YQ==\r\nYg==\r\n", Some(b"base64")).unwrap(),
            b"ab"
        );
    }

    #[test]
    fn quoted_printable_rules() {
        let qp = b"caf=C3=A9 =\r\nsoft  \r\nx=3d=ZZ=\r\n";
        assert_eq!(
            decode_part(qp, Some(b"quoted-printable")).unwrap(),
            "café soft\r\nx==ZZ".as_bytes()
        );
        assert_eq!(decoded_len(qp, Cte::QuotedPrintable), 17);
    }

    #[test]
    fn unknown_cte() {
        assert_eq!(decode_part(b"x", Some(b"7BIT")).unwrap(), b"x");
        assert_eq!(decode_part(b"x", None).unwrap(), b"x");
        let e = decode_part(b"x", Some(b"x-uuencode")).unwrap_err();
        assert_eq!(e.encoding, "x-uuencode");
    }

    #[test]
    fn charsets_and_words() {
        assert_eq!(to_utf8(b"caf\xe9", Some(b"iso-8859-1")), "café");
        assert_eq!(
            header_text(b"=?utf-8?q?caf=C3=A9?= au\n lait"),
            "café au lait"
        );
        assert_eq!(header_text(b"plain\n text"), "plain text");
        assert_eq!(
            rfc2231_value(b"filename*", b"utf-8''%E2%82%AC%20rates.txt"),
            ("filename".to_owned(), "€ rates.txt".to_owned())
        );
        assert_eq!(
            rfc2231_value(b"title*", b"iso-8859-1'en'caf%E9"),
            ("title".to_owned(), "café".to_owned())
        );
    }
}
