//! What RFC 9051 §6.4.4 SEARCH needs from a message: header, body and text substring
//! matching on decoded text, and the `Date:` header as a date.
//!
//! Matching is case-insensitive on Unicode lower case, after decoding: RFC 2047
//! encoded-words in header fields, base64 / quoted-printable and the charset of text
//! parts (mail-parser's charset decoders). One part is decoded at a time and dropped
//! before the next, so memory follows the largest text part, not the message; every
//! step is linear in the octets it reads. Non-text leaves (images, archives, ...) are
//! not searched.

use crate::decode::{Cte, decode_part, header_text, to_utf8};
use crate::header::{RawField, fields};
use crate::meta::{Body, MessageMeta, Part};
use std::ops::ControlFlow;

/// `HEADER <field> <needle>` (and FROM, TO, CC, BCC, SUBJECT): true when a field of
/// the message header named `field` contains `needle` once decoded. An empty
/// `needle` matches every message that has the field.
pub fn header_value_matches(msg: &[u8], field: &str, needle: &str) -> bool {
    let needle = fold(needle);
    fields(msg)
        .filter(|f| f.is(field))
        .any(|f| needle.is_empty() || contains(&header_text(&f.value()), &needle))
}

/// `BODY <needle>` (`body_only`) or `TEXT <needle>`: true when the decoded text of
/// the message contains `needle`. BODY looks at the text parts and at the header of
/// every encapsulated message; TEXT looks at the message header too.
///
/// The needle must lie within one piece of text ([`for_each_piece`]): one header
/// field or one text part. A text index built with [`searchable_text`] answers the
/// same.
pub fn text_matches(msg: &[u8], meta: &MessageMeta, needle: &str, body_only: bool) -> bool {
    let needle = fold(needle);
    if needle.is_empty() {
        return true;
    }
    for_each_piece(msg, meta, body_only, &mut |piece| {
        if contains(piece, &needle) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_break()
}

/// Separates the pieces in [`SearchableText`]: a needle without it can only match
/// within one piece, as [`text_matches`] does. A needle containing it cannot be
/// answered from the joined text.
pub const PIECE_SEPARATOR: char = '\u{FFFF}';

/// The searchable text of a message for a text index: each piece
/// ([`for_each_piece`]) case-folded as [`fold_needle`] folds a needle, and joined
/// with [`PIECE_SEPARATOR`]. A needle folded with [`fold_needle`] that does not
/// contain the separator is a substring of `header` or `body` exactly when
/// [`text_matches`] says TEXT matches, and of `body` exactly when BODY matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchableText {
    /// The pieces of the message header (TEXT only).
    pub header: String,
    /// The pieces BODY searches.
    pub body: String,
}

/// The [`SearchableText`] of a message; `None` when it would exceed `limit` octets
/// (header and body together; decoding stops there), so an index leaves the message
/// to a scan.
pub fn searchable_text(msg: &[u8], meta: &MessageMeta, limit: usize) -> Option<SearchableText> {
    let mut left = limit;
    let mut body = String::new();
    part_pieces(msg, &meta.root, &mut |p| join(&mut body, p, &mut left))
        .is_continue()
        .then_some(())?;
    let mut header = String::new();
    for_header(msg, meta, &mut |p| join(&mut header, p, &mut left))
        .is_continue()
        .then_some(())?;
    Some(SearchableText { header, body })
}

/// Appends a folded piece to `into` (after a separator), or breaks when that would
/// take more than `left` octets.
fn join(into: &mut String, piece: &str, left: &mut usize) -> ControlFlow<()> {
    let piece = fold(piece);
    let sep = if into.is_empty() {
        0
    } else {
        PIECE_SEPARATOR.len_utf8()
    };
    let need = piece.len().saturating_add(sep);
    if need > *left {
        return ControlFlow::Break(());
    }
    *left -= need;
    if sep > 0 {
        into.push(PIECE_SEPARATOR);
    }
    into.push_str(&piece);
    ControlFlow::Continue(())
}

/// The case folding [`text_matches`] applies to a needle (and to each piece of text).
pub fn fold_needle(needle: &str) -> String {
    fold(needle)
}

/// Calls `f` with each piece of the message's decoded text SEARCH looks at, in order,
/// until it breaks: unless `body_only`, each field of the message header as
/// `Name: decoded value`; then, through the MIME tree, the decoded text (transfer
/// encoding undone, charset converted to UTF-8) of each text part and each field of
/// each encapsulated message's header. Non-text leaves are skipped.
pub fn for_each_piece(
    msg: &[u8],
    meta: &MessageMeta,
    body_only: bool,
    f: &mut dyn FnMut(&str) -> ControlFlow<()>,
) -> ControlFlow<()> {
    if !body_only {
        for_header(msg, meta, f)?;
    }
    part_pieces(msg, &meta.root, f)
}

fn for_header(
    msg: &[u8],
    meta: &MessageMeta,
    f: &mut dyn FnMut(&str) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let header = msg.get(meta.root.header_range()).unwrap_or_default();
    header_pieces(header, f)
}

fn header_pieces(header: &[u8], f: &mut dyn FnMut(&str) -> ControlFlow<()>) -> ControlFlow<()> {
    for field in fields(header) {
        f(&field_text(&field))?;
    }
    ControlFlow::Continue(())
}

fn field_text(f: &RawField<'_>) -> String {
    let mut text = String::from_utf8_lossy(f.name).into_owned();
    text.push_str(": ");
    text.push_str(&header_text(&f.value()));
    text
}

fn part_pieces(
    msg: &[u8],
    part: &Part,
    f: &mut dyn FnMut(&str) -> ControlFlow<()>,
) -> ControlFlow<()> {
    match &part.body {
        Body::Multipart(children) => {
            for c in children {
                part_pieces(msg, c, f)?;
            }
            ControlFlow::Continue(())
        }
        Body::Message(_, root) => {
            let header = msg.get(root.header_range()).unwrap_or_default();
            header_pieces(header, f)?;
            part_pieces(msg, root, f)
        }
        Body::Text => {
            let raw = msg.get(part.body_range()).unwrap_or_default();
            let bytes = match Cte::of(part.encoding()) {
                Cte::Identity | Cte::Unknown => std::borrow::Cow::Borrowed(raw),
                _ => std::borrow::Cow::Owned(decode_part(raw, part.encoding()).unwrap_or_default()),
            };
            f(&to_utf8(&bytes, part.fields.param("charset")))
        }
        Body::Basic | Body::Truncated => ControlFlow::Continue(()),
    }
}

/// Case-insensitive substring test (`needle` already [`fold`]ed): folds the haystack
/// once, then a linear substring search.
fn contains(haystack: &str, needle: &str) -> bool {
    needle.is_empty() || fold(haystack).contains(needle)
}

/// Case folding close to Unicode full folding (`ß` and `SS` both become `ss`):
/// upper case, then lower case; ASCII takes the short path.
fn fold(s: &str) -> String {
    if s.is_ascii() {
        s.to_ascii_lowercase()
    } else {
        s.to_uppercase().to_lowercase()
    }
}

/// The date of a `Date:` header, for SENTBEFORE / SENTON / SENTSINCE (which compare
/// the date as written, "disregarding time and timezone", RFC 9051 §6.4.4) and for
/// sorting by sent time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentDate {
    /// Year as written.
    pub year: u16,
    /// Month, 1-12.
    pub month: u8,
    /// Day of the month, 1-31.
    pub day: u8,
    /// The instant, seconds since 1970-01-01 UTC (time zone applied).
    pub timestamp: i64,
}

/// The message's sent date, from the ENVELOPE's `Date:`; `None` when absent or not a
/// date.
pub fn sent_date(meta: &MessageMeta) -> Option<SentDate> {
    parse_date(meta.envelope.date.as_deref()?)
}

/// An RFC 5322 §3.3 date-time (obsolete forms and common mistakes tolerated, via
/// mail-parser).
pub fn parse_date(value: &[u8]) -> Option<SentDate> {
    let text = String::from_utf8_lossy(value);
    let dt = mail_parser::DateTime::parse_rfc822(&text)?;
    if !(1..=12).contains(&dt.month) || !(1..=31).contains(&dt.day) || !dt.is_valid() {
        return None;
    }
    Some(SentDate {
        year: dt.year,
        month: dt.month,
        day: dt.day,
        timestamp: dt.to_timestamp(),
    })
}
