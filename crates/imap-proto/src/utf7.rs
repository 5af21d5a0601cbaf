//! Modified UTF-7 for mailbox names (RFC 3501 §5.1.3, RFC 9051 Appendix A.1), the form
//! IMAP4rev1 clients that did not enable UTF-8 use for non-ASCII names.
//!
//! Printable US-ASCII except `&` stands for itself; `&` is `&-`; every other run of
//! characters is UTF-16BE in base64 with `,` for `/`, between `&` and `-`. Decoding is
//! strict, as RFC 9051 A.1 asks of names given to CREATE: no superfluous shifts, no
//! printable ASCII in base64, no missing `-`, no stray padding bits, valid UTF-16.

use std::fmt;

/// Why a name is not valid modified UTF-7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Utf7Error {
    /// An octet outside printable US-ASCII (it must be inside base64).
    NotAscii,
    /// A base64 run without its closing `-`.
    Unterminated,
    /// A character that is not in the modified base64 alphabet.
    BadBase64,
    /// The base64 does not end on a UTF-16 boundary or has non-zero padding bits.
    BadPadding,
    /// The UTF-16 is invalid (a lone surrogate).
    BadUtf16,
    /// A printable ASCII character was encoded in base64.
    EncodedAscii,
    /// Two base64 runs back to back (`-&` inside an encoding).
    SuperfluousShift,
}

impl fmt::Display for Utf7Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Utf7Error::NotAscii => "8-bit or control octet outside base64",
            Utf7Error::Unterminated => "base64 run without its closing '-'",
            Utf7Error::BadBase64 => "character outside the modified base64 alphabet",
            Utf7Error::BadPadding => "base64 does not end on a UTF-16 boundary",
            Utf7Error::BadUtf16 => "invalid UTF-16 (lone surrogate)",
            Utf7Error::EncodedAscii => "printable ASCII encoded in base64",
            Utf7Error::SuperfluousShift => "superfluous shift between two base64 runs",
        })
    }
}

impl std::error::Error for Utf7Error {}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn b64_value(b: u8) -> Option<u32> {
    Some(match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b',' => 63,
        _ => return None,
    } as u32)
}

fn is_printable_ascii(c: u32) -> bool {
    (0x20..=0x7e).contains(&c)
}

/// Encodes a UTF-8 mailbox name in modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    let mut run: Vec<u16> = Vec::new();
    for c in name.chars() {
        if is_printable_ascii(c as u32) {
            flush(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut run, &mut out);
    out
}

fn flush(run: &mut Vec<u16>, out: &mut String) {
    if run.is_empty() {
        return;
    }
    out.push('&');
    let mut bits: u32 = 0;
    let mut nbits = 0;
    for unit in run.drain(..) {
        bits = (bits << 16) | u32::from(unit);
        nbits += 16;
        while nbits >= 6 {
            nbits -= 6;
            out.push(char::from(ALPHABET[((bits >> nbits) & 63) as usize]));
        }
        bits &= (1 << nbits) - 1;
    }
    if nbits > 0 {
        out.push(char::from(ALPHABET[((bits << (6 - nbits)) & 63) as usize]));
    }
    out.push('-');
}

/// Decodes a modified UTF-7 name into UTF-8, refusing anything RFC 9051 A.1 rules out.
pub fn decode(input: &[u8]) -> Result<String, Utf7Error> {
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    // True right after a base64 run closed: another one may not start at once.
    let mut after_run = false;
    while let Some(&b) = input.get(i) {
        if b != b'&' {
            if !is_printable_ascii(u32::from(b)) {
                return Err(Utf7Error::NotAscii);
            }
            out.push(char::from(b));
            i += 1;
            after_run = false;
            continue;
        }
        // A shift.
        let end = input[i + 1..]
            .iter()
            .position(|&c| c == b'-')
            .map(|p| i + 1 + p);
        let Some(end) = end else {
            // Say which rule the run breaks: a foreign character before the end, or
            // simply no end.
            return Err(if input[i + 1..].iter().all(|&c| b64_value(c).is_some()) {
                Utf7Error::Unterminated
            } else {
                Utf7Error::BadBase64
            });
        };
        let run = &input[i + 1..end];
        if run.is_empty() {
            out.push('&');
            after_run = false;
        } else {
            if after_run {
                return Err(Utf7Error::SuperfluousShift);
            }
            decode_run(run, &mut out)?;
            after_run = true;
        }
        i = end + 1;
    }
    Ok(out)
}

fn decode_run(run: &[u8], out: &mut String) -> Result<(), Utf7Error> {
    let mut units: Vec<u16> = Vec::with_capacity(run.len() * 6 / 16);
    let mut bits: u32 = 0;
    let mut nbits = 0;
    for &c in run {
        let v = b64_value(c).ok_or(Utf7Error::BadBase64)?;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 16 {
            nbits -= 16;
            units.push(((bits >> nbits) & 0xffff) as u16);
            bits &= (1 << nbits) - 1;
        }
    }
    // Leftover: fewer than 6 bits, all zero (a whole spare character is not allowed).
    if nbits >= 6 || bits != 0 {
        return Err(Utf7Error::BadPadding);
    }
    for c in char::decode_utf16(units) {
        let c = c.map_err(|_| Utf7Error::BadUtf16)?;
        if is_printable_ascii(c as u32) {
            return Err(Utf7Error::EncodedAscii);
        }
        out.push(c);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rfc_examples() {
        // RFC 9051 A.1: English, Chinese and Japanese.
        let name = "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}";
        assert_eq!(encode(name), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        assert_eq!(decode(b"~peter/mail/&U,BTFw-/&ZeVnLIqe-").unwrap(), name);
        assert_eq!(decode(b"&Jjo!"), Err(Utf7Error::BadBase64));
        assert_eq!(decode(b"&Jjo-!").unwrap(), "\u{263a}!");
        assert_eq!(
            decode(b"&U,BTFw-&ZeVnLIqe-"),
            Err(Utf7Error::SuperfluousShift)
        );
        assert_eq!(
            decode(b"&U,BTF2XlZyyKng-").unwrap(),
            "\u{53f0}\u{5317}\u{65e5}\u{672c}\u{8a9e}"
        );
    }

    #[test]
    fn ampersand() {
        assert_eq!(encode("Tom & Jerry"), "Tom &- Jerry");
        assert_eq!(decode(b"Tom &- Jerry").unwrap(), "Tom & Jerry");
        assert_eq!(decode(b"&-&-").unwrap(), "&&");
        assert_eq!(decode(b"&U,BTFw-&-").unwrap(), "\u{53f0}\u{5317}&");
        assert_eq!(decode(b"Tom & Jerry"), Err(Utf7Error::BadBase64));
        assert_eq!(decode(b"a&"), Err(Utf7Error::Unterminated));
        assert_eq!(decode(b"&AAA"), Err(Utf7Error::Unterminated));
    }

    #[test]
    fn round_trips() {
        for name in [
            "",
            "INBOX",
            "Entw\u{fc}rfe",
            "Gel\u{f6}schte Elemente",
            "\u{1f600} emoji",
            "a\u{7f}b",
            "tab\there",
            "\u{e9}&\u{e9}",
            "\u{10ffff}",
            "caf\u{e9}",
            "&",
            "-&-",
        ] {
            let enc = encode(name);
            assert!(enc.bytes().all(|b| (0x20..0x7f).contains(&b)), "{enc:?}");
            assert_eq!(decode(enc.as_bytes()).unwrap(), name, "{enc}");
        }
        assert_eq!(encode("Entw\u{fc}rfe"), "Entw&APw-rfe");
        assert_eq!(encode("\u{1f600}"), "&2D3eAA-");
    }

    #[test]
    fn invalid_inputs() {
        // 'a' (U+0061) encoded in base64.
        assert_eq!(decode(b"&AGE-"), Err(Utf7Error::EncodedAscii));
        // Raw 8-bit.
        assert_eq!(decode("caf\u{e9}".as_bytes()), Err(Utf7Error::NotAscii));
        assert_eq!(decode(b"a\tb"), Err(Utf7Error::NotAscii));
        // Lone high surrogate U+D83D.
        assert_eq!(decode(b"&2D0-"), Err(Utf7Error::BadUtf16));
        // Non-zero padding bits / spare character.
        assert_eq!(decode(b"&APx-"), Err(Utf7Error::BadPadding));
        assert_eq!(decode(b"&APwA-"), Err(Utf7Error::BadPadding));
        // Standard base64 '/' is not the modified alphabet.
        assert_eq!(decode(b"&U/BTFw-"), Err(Utf7Error::BadBase64));
        // Odd number of octets.
        assert_eq!(decode(b"&AP-"), Err(Utf7Error::BadPadding));
    }
}
