//! Message bytes as buudien stores and serves them: line-ending normalisation, the
//! header/body split, the ASCII surrogate of a message with raw UTF-8 headers, and the
//! IMAP metadata of a message (ENVELOPE, BODYSTRUCTURE, sections, search matching).
//!
//! # Layout
//! - [`normalize`]: bare LF → CRLF and a final CRLF, so a reported size is the exact
//!   number of octets the server will send.
//! - [`header_len`]: where the header section ends.
//! - [`downgrade`]: the surrogate for clients that did not enable UTF-8 (RFC 6856 §2.1,
//!   RFC 6855 §7): header fields with raw UTF-8 become RFC 2047 encoded-words.
//! - `meta`: [`MessageMeta`] — the ENVELOPE fields and the MIME part tree with byte
//!   offsets, computed once at delivery ([`MessageMeta::parse`], built by `mime` on the
//!   token rules of `rfc822`, `header` and `address`); [`limits`] bounds it.
//! - `codec`: [`MessageMeta::to_bytes`] / [`MessageMeta::from_bytes`], the compact
//!   versioned form stored next to each message.
//! - `render`: [`render_envelope`], [`render_bodystructure`] (BODY and BODYSTRUCTURE),
//!   over the small IMAP string writer in `wire`.
//! - `section`: [`Section`] and [`section_range`] for `BODY[...]`; `header`:
//!   [`filter_header`] for `HEADER.FIELDS[.NOT]`; `decode`: [`decode_part`] for
//!   `BINARY[...]` (mail-parser's charset decoders for text).
//! - `search`: [`header_value_matches`], [`text_matches`], [`sent_date`] for SEARCH.
//!
//! # Invariants
//! - [`normalize`]d bytes contain no LF without a CR before it and end with CRLF
//!   (unless empty).
//! - [`downgrade`] is a pure function of its input: the same bytes always give the same
//!   surrogate, so a size computed at delivery matches what is sent later. Its output
//!   header section is 7-bit; the body is untouched (8-bit bodies are legal MIME).
//! - [`MessageMeta::parse`] never fails and never panics: broken MIME gets the
//!   structure Dovecot 2.3 gives it. It reads the message in one pass plus one
//!   line-count pass, with MIME nesting, part count, interpreted header fields,
//!   addresses and stored value sizes capped by [`limits`], so time is linear in the
//!   message size and the metadata stays small.
//! - Every offset in a [`MessageMeta`] lies within the bytes it was parsed from, and
//!   parts nest: `header_start <= body_start <= end`, children inside their parent's
//!   body, in order. The metadata belongs to those exact bytes: parse the surrogate
//!   separately if a session serves [`downgrade`]d bytes.
//! - Rendering is a pure function of the metadata: ENVELOPE and BODYSTRUCTURE never
//!   re-read the message. Without `utf8` the output matches Dovecot 2.3 byte for byte
//!   for the corpus in `tests/corpus/` (differences are listed there).
//! - `from_bytes(to_bytes(m)) == m`; `from_bytes` rejects corrupt input with an error.

#![forbid(unsafe_code)]

mod address;
mod codec;
mod decode;
mod downgrade;
mod header;
mod meta;
mod mime;
mod render;
mod rfc822;
mod search;
mod section;
mod wire;

pub use codec::DecodeError;
pub use decode::{Cte, UnknownCte, decode_part};
pub use downgrade::{downgrade, needs_downgrade};
pub use header::{RawField, fields, filter_header};
pub use meta::{Address, Body, Envelope, MessageMeta, MimeFields, Param, Part, limits};
pub use render::{render_bodystructure, render_envelope};
pub use search::{
    PIECE_SEPARATOR, SearchableText, SentDate, fold_needle, for_each_piece, header_value_matches,
    parse_date, searchable_text, sent_date, text_matches,
};
pub use section::{Section, section_range};

/// Returns `raw` with every bare LF turned into CRLF and a CRLF added at the end if the
/// last line had none (RFC 5322 §2.3: lines end in CRLF).
pub fn normalize(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 50 + 2);
    // Spans between bare LFs are copied whole.
    let mut start = 0;
    for i in memchr::memchr_iter(b'\n', raw) {
        let bare = i == 0 || raw.get(i - 1) != Some(&b'\r');
        if bare {
            out.extend_from_slice(raw.get(start..i).unwrap_or_default());
            out.extend_from_slice(b"\r\n");
            start = i + 1;
        }
    }
    out.extend_from_slice(raw.get(start..).unwrap_or_default());
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// [`normalize`] for a message the caller owns: returned as it is, without a copy,
/// when it has no bare LF and ends in CRLF (or is empty), as most messages do.
pub fn normalize_owned(raw: Vec<u8>) -> Vec<u8> {
    let ends_right = raw.is_empty() || raw.ends_with(b"\r\n");
    let bare_lf =
        || memchr::memchr_iter(b'\n', &raw).any(|i| i == 0 || raw.get(i - 1) != Some(&b'\r'));
    if ends_right && !bare_lf() {
        raw
    } else {
        normalize(&raw)
    }
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
    fn normalize_owned_agrees_with_normalize() {
        for raw in [
            &b""[..],
            b"x\r\n",
            b"a\nb\r\nc",
            b"\n\n",
            b"a\r\nb",
            b"\nx\r\n",
            b"a\r\r\n",
            b"a\r",
            b"Subject: x\r\n\r\nbody\r\n",
        ] {
            assert_eq!(normalize_owned(raw.to_vec()), normalize(raw), "{raw:?}");
        }
    }

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
