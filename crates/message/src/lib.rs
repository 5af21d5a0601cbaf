//! Message bytes as buudien stores and serves them: line-ending normalisation, the
//! header/body split, and the ASCII surrogate of a message with raw UTF-8 headers.
//!
//! # Layout
//! - [`normalize`]: bare LF → CRLF and a final CRLF, so a reported size is the exact
//!   number of octets the server will send.
//! - [`header_len`]: where the header section ends.
//! - [`downgrade`]: the surrogate for clients that did not enable UTF-8 (RFC 6856 §2.1,
//!   RFC 6855 §7): header fields with raw UTF-8 become RFC 2047 encoded-words.
//!
//! # Invariants
//! - [`normalize`]d bytes contain no LF without a CR before it and end with CRLF
//!   (unless empty).
//! - [`downgrade`] is a pure function of its input: the same bytes always give the same
//!   surrogate, so a size computed at delivery matches what is sent later. Its output
//!   header section is 7-bit; the body is untouched (8-bit bodies are legal MIME).

mod downgrade;

pub use downgrade::{downgrade, needs_downgrade};

/// Returns `raw` with every bare LF turned into CRLF and a CRLF added at the end if the
/// last line had none (RFC 5322 §2.3: lines end in CRLF).
pub fn normalize(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 50 + 2);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Length of the header section including the empty line that ends it (RFC 5322 §2.1);
/// the whole message when it has no body.
pub fn header_len(msg: &[u8]) -> usize {
    if msg.starts_with(b"\r\n") {
        return 2;
    }
    msg.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(msg.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_lf_becomes_crlf() {
        assert_eq!(normalize(b"a\nb\r\nc"), b"a\r\nb\r\nc\r\n");
        assert_eq!(normalize(b""), b"");
        assert_eq!(normalize(b"x\r\n"), b"x\r\n");
        assert_eq!(normalize(b"\n\n"), b"\r\n\r\n");
    }

    #[test]
    fn header_section() {
        let m = b"Subject: x\r\nTo: y\r\n\r\nbody\r\n";
        assert_eq!(header_len(m), 21);
        assert_eq!(&m[header_len(m)..], b"body\r\n");
        assert_eq!(header_len(b"Subject: x\r\n"), 12);
        assert_eq!(header_len(b"\r\nbody\r\n"), 2);
    }
}
