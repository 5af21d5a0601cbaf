//! The ASCII surrogate of a message whose header fields carry raw UTF-8 (RFC 6532), for
//! POP3 and IMAP sessions that did not enable UTF-8 (RFC 6856 §2.1, RFC 6855 §7).
//!
//! buudien's policy, a simplified RFC 6857 downgrade: in every header field with
//! non-ASCII octets, each run of words that contain them is rewritten as RFC 2047
//! encoded-words (`=?UTF-8?B?…?=`, or `UNKNOWN-8BIT` for octets that are not UTF-8).
//! ASCII words, such as an ASCII `<addr-spec>`, stay as they are. The body is not
//! touched. The field is refolded so no line passes 78 characters where avoidable.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// True when the header section holds a non-ASCII octet.
pub fn needs_downgrade(msg: &[u8]) -> bool {
    msg[..crate::header_len(msg)].iter().any(|b| !b.is_ascii())
}

/// The surrogate of a normalised (CRLF) message; the message itself when no header
/// needs it.
pub fn downgrade(msg: &[u8]) -> Vec<u8> {
    let hlen = crate::header_len(msg);
    let (header, body) = msg.split_at(hlen);
    let mut out = Vec::with_capacity(msg.len() + 256);
    for field in fields(header) {
        if field.iter().all(u8::is_ascii) {
            out.extend_from_slice(field);
        } else {
            encode_field(field, &mut out);
        }
    }
    out.extend_from_slice(body);
    out
}

/// Splits a header section into fields, each with its continuation lines and CRLF.
fn fields(header: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < header.len() {
        let end = header[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| i + p + 1)
            .unwrap_or(header.len());
        let next_is_continuation = matches!(header.get(end), Some(b' ' | b'\t'));
        if !next_is_continuation {
            out.push(&header[start..end]);
            start = end;
        }
        i = end;
    }
    if start < header.len() {
        out.push(&header[start..]);
    }
    out
}

fn encode_field(field: &[u8], out: &mut Vec<u8>) {
    let Some(colon) = field.iter().position(|&b| b == b':') else {
        // Not a field (a stray line): encode it whole as one unstructured value.
        out.extend_from_slice(b"X-Invalid-Header:");
        push_words(&unfold(field), out, 17);
        out.extend_from_slice(b"\r\n");
        return;
    };
    let (name, value) = field.split_at(colon + 1);
    let name: Vec<u8> = name
        .iter()
        .map(|&b| if b.is_ascii() { b } else { b'_' })
        .collect();
    out.extend_from_slice(&name);
    let value = unfold(value);
    let value = trim_ascii_start(&value);
    push_words(value, out, name.len());
    out.extend_from_slice(b"\r\n");
}

fn trim_ascii_start(v: &[u8]) -> &[u8] {
    let n = v.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &v[n..]
}

/// The field value on one line: folds (CRLF before white space) and the final CRLF go.
fn unfold(value: &[u8]) -> Vec<u8> {
    value
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect()
}

/// Writes `value` with runs of non-ASCII words encoded, each word after a space or a
/// fold, so that lines stay within 76 characters where the words allow it (RFC 2047
/// §2). `col` is where the value starts, just after the field's colon.
fn push_words(value: &[u8], out: &mut Vec<u8>, mut col: usize) {
    let words: Vec<&[u8]> = value
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty())
        .collect();
    let mut pieces: Vec<Vec<u8>> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        if words[i].is_ascii() {
            pieces.push(words[i].to_vec());
            i += 1;
            continue;
        }
        // A run of non-ASCII words, with the single spaces between them kept inside
        // the encoded text (white space between encoded-words is not displayed).
        let mut run = words[i].to_vec();
        i += 1;
        while i < words.len() && !words[i].is_ascii() {
            run.push(b' ');
            run.extend_from_slice(words[i]);
            i += 1;
        }
        pieces.extend(encoded_words(&run));
    }
    for piece in &pieces {
        if col + 1 + piece.len() > 76 && col > 1 {
            out.extend_from_slice(b"\r\n ");
            col = 1;
        } else {
            out.push(b' ');
            col += 1;
        }
        out.extend_from_slice(piece);
        col += piece.len();
    }
}

/// RFC 2047 §2, §5: encoded-words of at most 75 characters, each holding whole
/// characters.
fn encoded_words(text: &[u8]) -> Vec<Vec<u8>> {
    const MAX_RAW: usize = 39; // 52 base64 characters + 12 of frame: 64 < 75
    let utf8 = std::str::from_utf8(text).is_ok();
    let charset = if utf8 { "UTF-8" } else { "UNKNOWN-8BIT" };
    let mut words = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + MAX_RAW).min(text.len());
        if utf8 {
            // Back off to a character boundary (never past the start).
            while end > start + 1 && end < text.len() && (text[end] & 0xC0) == 0x80 {
                end -= 1;
            }
        }
        let enc = STANDARD.encode(&text[start..end]);
        words.push(format!("=?{charset}?B?{enc}?=").into_bytes());
        start = end;
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_word(w: &str) -> Vec<u8> {
        let inner = w.trim_start_matches("=?UTF-8?B?").trim_end_matches("?=");
        STANDARD.decode(inner).unwrap()
    }

    #[test]
    fn ascii_message_is_unchanged() {
        let m = b"Subject: hi\r\n\r\nbody \xc3\xa9\r\n";
        assert!(!needs_downgrade(m));
        assert_eq!(downgrade(m), m);
    }

    #[test]
    fn utf8_subject_becomes_encoded_words() {
        let m = "Subject: Grüße aus Köln\r\nFrom: Jörg Ä <jorg@example.com>\r\n\r\nbody ü\r\n";
        assert!(needs_downgrade(m.as_bytes()));
        let d = downgrade(m.as_bytes());
        let (head, body) = d.split_at(crate::header_len(&d));
        assert!(head.is_ascii());
        assert_eq!(body, "body ü\r\n".as_bytes());
        let text = String::from_utf8(d.clone()).unwrap();
        let subject = text.lines().next().unwrap();
        assert!(subject.starts_with("Subject: =?UTF-8?B?"), "{subject}");
        assert!(subject.ends_with(" aus =?UTF-8?B?S8O2bG4=?="), "{subject}");
        let from = text.lines().nth(1).unwrap();
        assert!(from.ends_with(" <jorg@example.com>"), "{from}");
        let word = from.split(' ').nth(1).unwrap();
        assert_eq!(decode_word(word), "Jörg Ä".as_bytes());
        assert_eq!(downgrade(m.as_bytes()), d, "deterministic");
    }

    #[test]
    fn long_values_fold_and_keep_whole_characters() {
        let subject = "ü".repeat(100);
        let m = format!("Subject: {subject}\r\n\r\nx\r\n");
        let d = String::from_utf8(downgrade(m.as_bytes())).unwrap();
        let head = &d[..crate::header_len(d.as_bytes())];
        let mut decoded = Vec::new();
        for line in head.lines() {
            assert!(line.len() <= 76, "{line}");
            for w in line.split(' ').filter(|w| w.starts_with("=?")) {
                assert!(w.len() <= 75);
                let part = decode_word(w);
                assert!(std::str::from_utf8(&part).is_ok(), "split a character");
                decoded.extend(part);
            }
        }
        assert_eq!(decoded, subject.as_bytes());
    }

    #[test]
    fn folded_fields_and_bad_utf8() {
        let m = b"Subject: a\r\n \xff\xfe b\r\nTo: x@y\r\n\r\n";
        let d = downgrade(m);
        assert!(d.is_ascii());
        let text = String::from_utf8(d).unwrap();
        assert!(
            text.starts_with("Subject: a =?UNKNOWN-8BIT?B?//4=?= b\r\nTo: x@y\r\n\r\n"),
            "{text}"
        );
    }
}
