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
pub fn text_matches(msg: &[u8], meta: &MessageMeta, needle: &str, body_only: bool) -> bool {
    let needle = fold(needle);
    if needle.is_empty() {
        return true;
    }
    let header = msg.get(meta.root.header_range()).unwrap_or_default();
    (!body_only && header_matches(header, &needle)) || part_matches(msg, &meta.root, &needle)
}

fn header_matches(header: &[u8], needle: &str) -> bool {
    fields(header).any(|f| field_matches(&f, needle))
}

fn field_matches(f: &RawField<'_>, needle: &str) -> bool {
    let mut text = String::from_utf8_lossy(f.name).into_owned();
    text.push_str(": ");
    text.push_str(&header_text(&f.value()));
    contains(&text, needle)
}

fn part_matches(msg: &[u8], part: &Part, needle: &str) -> bool {
    match &part.body {
        Body::Multipart(children) => children.iter().any(|c| part_matches(msg, c, needle)),
        Body::Message(_, root) => {
            let header = msg.get(root.header_range()).unwrap_or_default();
            header_matches(header, needle) || part_matches(msg, root, needle)
        }
        Body::Text => {
            let raw = msg.get(part.body_range()).unwrap_or_default();
            let bytes = match Cte::of(part.encoding()) {
                Cte::Identity | Cte::Unknown => std::borrow::Cow::Borrowed(raw),
                _ => std::borrow::Cow::Owned(decode_part(raw, part.encoding()).unwrap_or_default()),
            };
            contains(&to_utf8(&bytes, part.fields.param("charset")), needle)
        }
        Body::Basic | Body::Truncated => false,
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
