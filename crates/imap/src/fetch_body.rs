//! What a FETCH sends for the body items of one message (RFC 9051 §6.4.5,
//! RFC 3516): byte ranges of the stored message, resolved from its stored
//! structure, or bytes prepared in memory where the answer is not a plain range
//! (`HEADER.FIELDS`, `BINARY`, or a message served as its ASCII surrogate to a
//! session without UTF-8, RFC 6855 §7 / RFC 6856 §2.1).

use buudien_imap_proto::{FetchAttr, Partial, SectionText};
use buudien_message::{MessageMeta, Section};
use buudien_store::{MailboxStore, MessageEntry, StoreError, StoredMeta};
use std::ops::Range;

/// The answer to one FETCH item of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Content {
    /// Not a body item (answered from the entry or the structure).
    Nil,
    /// These octets of the stored blob, streamed.
    Range(Range<u64>),
    /// These octets.
    Bytes(Vec<u8>),
    /// `BINARY.SIZE` (RFC 3516 §4.2).
    Size(u64),
    /// A `BINARY` item of a part whose transfer encoding is unknown (RFC 3516 §4.3).
    UnknownCte,
}

/// One message as a FETCH serves it.
pub(crate) struct MessageData {
    /// `RFC822.SIZE`: of the surrogate when it is served.
    pub(crate) size: u64,
    /// Its structure, when an item needs it.
    pub(crate) meta: Option<MessageMeta>,
    /// ENVELOPE/BODYSTRUCTURE may carry raw UTF-8 (a UTF-8 session).
    pub(crate) utf8: bool,
    /// One answer per FETCH item, in order.
    pub(crate) items: Vec<Content>,
}

/// Octets of the stored message read ahead (its header, for a batch's
/// `HEADER.FIELDS`: see `cmd::fetch`), and where they are in it.
pub(crate) type Ahead = (Range<u64>, Vec<u8>);

/// False when a BINARY item met an unknown transfer encoding.
pub(crate) fn binary_check(data: &MessageData, _items: &[FetchAttr]) -> bool {
    !data.items.contains(&Content::UnknownCte)
}

/// The prepared answer to `attr` (its index in the FETCH's item list).
pub(crate) fn item_content(data: &MessageData, index: usize) -> Content {
    data.items.get(index).cloned().unwrap_or(Content::Nil)
}

impl MessageData {
    /// Prepares the body items of `entry` for `items`, reading only what they need.
    pub(crate) async fn load<S: MailboxStore>(
        store: &S,
        entry: &MessageEntry,
        stored: Option<&StoredMeta>,
        utf8_session: bool,
        items: &[FetchAttr],
        ahead: Option<&Ahead>,
    ) -> Result<MessageData, StoreError> {
        let ascii = !utf8_session && entry.ascii_size.is_some();
        let size = if ascii {
            entry.ascii_size.unwrap_or(entry.size)
        } else {
            entry.size
        };
        let needs_body = items.iter().any(is_body_item);
        let needs_meta = items.iter().any(needs_structure);
        // The surrogate is made from the whole message; only such messages are held
        // in memory whole.
        let surrogate = if ascii && (needs_body || needs_meta) {
            let raw = store.read_blob_range(&entry.blob, 0..entry.size).await?;
            Some(buudien_message::downgrade(&raw))
        } else {
            None
        };
        let meta = if needs_meta {
            let bytes = stored.and_then(|s| {
                if ascii {
                    s.ascii_meta.as_ref()
                } else {
                    s.meta.as_ref()
                }
            });
            match bytes.and_then(|b| MessageMeta::from_bytes(b).ok()) {
                Some(m) => Some(m),
                None => {
                    // Stored before structures were kept (or damaged): parse once.
                    let whole = match &surrogate {
                        Some(s) => s.clone(),
                        None => store.read_blob_range(&entry.blob, 0..entry.size).await?,
                    };
                    Some(MessageMeta::parse(&whole))
                }
            }
        } else {
            None
        };
        let mut out = MessageData {
            size,
            meta,
            utf8: utf8_session,
            items: Vec::with_capacity(items.len()),
        };
        for attr in items {
            let c = prepare(store, entry, &out, surrogate.as_deref(), ahead, attr).await?;
            out.items.push(c);
        }
        Ok(out)
    }
}

/// True for items whose answer is message octets.
fn is_body_item(attr: &FetchAttr) -> bool {
    matches!(
        attr,
        FetchAttr::Rfc822
            | FetchAttr::Rfc822Header
            | FetchAttr::Rfc822Text
            | FetchAttr::BodySection { .. }
            | FetchAttr::Binary { .. }
    )
}

/// True for the items that need the message's structure.
pub(crate) fn needs_structure(attr: &FetchAttr) -> bool {
    match attr {
        FetchAttr::Envelope
        | FetchAttr::Body
        | FetchAttr::BodyStructure
        | FetchAttr::Rfc822Header
        | FetchAttr::Rfc822Text => true,
        FetchAttr::BodySection { section, .. } => {
            !section.part.is_empty() || section.text.is_some()
        }
        FetchAttr::Binary { part, .. } | FetchAttr::BinarySize { part } => !part.is_empty(),
        _ => false,
    }
}

/// The message-crate section of an IMAP section.
fn section_of(part: &[u32], text: Option<&SectionText>) -> Section {
    let text = text.map(|t| match t {
        SectionText::Header => Section::Header,
        SectionText::HeaderFields(f) => Section::HeaderFields(f.clone()),
        SectionText::HeaderFieldsNot(f) => Section::HeaderFieldsNot(f.clone()),
        SectionText::Text => Section::Text,
        SectionText::Mime => Section::Mime,
    });
    Section::new(part.to_vec(), text)
}

/// `<offset.length>` applied to a range (RFC 9051 §6.4.5: an origin past the end
/// gives an empty string).
fn narrow(r: Range<u64>, p: Option<Partial>) -> Range<u64> {
    let Some(p) = p else { return r };
    let len = r.end.saturating_sub(r.start);
    let start = r.start.saturating_add(p.offset.min(len));
    let end = start.saturating_add(p.length).min(r.end);
    start..end
}

/// `<offset.length>` applied to bytes.
fn narrow_bytes(mut b: Vec<u8>, p: Option<Partial>) -> Vec<u8> {
    let r = narrow(0..b.len() as u64, p);
    let (Ok(start), Ok(end)) = (usize::try_from(r.start), usize::try_from(r.end)) else {
        return Vec::new();
    };
    b.truncate(end);
    b.drain(..start.min(b.len()));
    b
}

/// The answer to one item.
async fn prepare<S: MailboxStore>(
    store: &S,
    entry: &MessageEntry,
    data: &MessageData,
    surrogate: Option<&[u8]>,
    ahead: Option<&Ahead>,
    attr: &FetchAttr,
) -> Result<Content, StoreError> {
    let (section, partial) = match attr {
        FetchAttr::Rfc822 => (Section::Full, None),
        FetchAttr::Rfc822Header => (Section::Header, None),
        FetchAttr::Rfc822Text => (Section::Text, None),
        FetchAttr::BodySection {
            section, partial, ..
        } => (section_of(&section.part, section.text.as_ref()), *partial),
        FetchAttr::Binary { part, partial, .. } => {
            return binary(store, entry, data, surrogate, ahead, part, *partial).await;
        }
        FetchAttr::BinarySize { part } => {
            if part.is_empty() {
                return Ok(Content::Size(data.size));
            }
            let Some(p) = data.meta.as_ref().and_then(|m| m.part(part)) else {
                return Ok(Content::Size(0));
            };
            return Ok(p.binary_size.map_or(Content::UnknownCte, Content::Size));
        }
        _ => return Ok(Content::Nil),
    };
    let range = match (&section, &data.meta) {
        (Section::Full, _) => Some(0..data.size),
        (_, Some(meta)) => {
            buudien_message::section_range(meta, &section).map(|r| r.start as u64..r.end as u64)
        }
        (_, None) => None,
    };
    let Some(range) = range else {
        // No such part: an empty string, as Dovecot answers.
        return Ok(Content::Bytes(Vec::new()));
    };
    let fields = match &section {
        Section::HeaderFields(f) => Some((f, false)),
        Section::HeaderFieldsNot(f) => Some((f, true)),
        Section::Part(_, Some(sub)) => match sub.as_ref() {
            Section::HeaderFields(f) => Some((f, false)),
            Section::HeaderFieldsNot(f) => Some((f, true)),
            _ => None,
        },
        _ => None,
    };
    if let Some((names, not)) = fields {
        let header = bytes_of(store, entry, surrogate, ahead, range).await?;
        let kept = buudien_message::filter_header(&header, names, not);
        return Ok(Content::Bytes(narrow_bytes(kept, partial)));
    }
    let range = narrow(range, partial);
    match surrogate {
        Some(s) => Ok(Content::Bytes(slice(s, range))),
        None => Ok(Content::Range(range)),
    }
}

/// `BINARY[part]<partial>`: the part's body with its transfer encoding undone.
async fn binary<S: MailboxStore>(
    store: &S,
    entry: &MessageEntry,
    data: &MessageData,
    surrogate: Option<&[u8]>,
    ahead: Option<&Ahead>,
    part: &[u32],
    partial: Option<Partial>,
) -> Result<Content, StoreError> {
    if part.is_empty() {
        let whole = bytes_of(store, entry, surrogate, ahead, 0..data.size).await?;
        return Ok(Content::Bytes(narrow_bytes(whole, partial)));
    }
    let Some(p) = data.meta.as_ref().and_then(|m| m.part(part)) else {
        return Ok(Content::Bytes(Vec::new()));
    };
    let r = p.body_range();
    let body = bytes_of(store, entry, surrogate, ahead, r.start as u64..r.end as u64).await?;
    match buudien_message::decode_part(&body, p.encoding()) {
        Ok(decoded) => Ok(Content::Bytes(narrow_bytes(decoded, partial))),
        Err(_) => Ok(Content::UnknownCte),
    }
}

/// The octets `range` of the served message: from the surrogate, from what was
/// read ahead when it holds them, else from the store.
async fn bytes_of<S: MailboxStore>(
    store: &S,
    entry: &MessageEntry,
    surrogate: Option<&[u8]>,
    ahead: Option<&Ahead>,
    range: Range<u64>,
) -> Result<Vec<u8>, StoreError> {
    if let Some(s) = surrogate {
        return Ok(slice(s, range));
    }
    match ahead {
        Some((at, bytes))
            if at.start <= range.start
                && range.end <= at.end
                && bytes.len() as u64 == at.end - at.start =>
        {
            Ok(slice(bytes, range.start - at.start..range.end - at.start))
        }
        _ => store.read_blob_range(&entry.blob, range).await,
    }
}

/// `s[range]`, clamped.
fn slice(s: &[u8], range: Range<u64>) -> Vec<u8> {
    let start = usize::try_from(range.start)
        .unwrap_or(usize::MAX)
        .min(s.len());
    let end = usize::try_from(range.end)
        .unwrap_or(usize::MAX)
        .clamp(start, s.len());
    s.get(start..end).map(<[u8]>::to_vec).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partials() {
        assert_eq!(narrow(10..20, None), 10..20);
        assert_eq!(
            narrow(
                10..20,
                Some(Partial {
                    offset: 2,
                    length: 3
                })
            ),
            12..15
        );
        assert_eq!(
            narrow(
                10..20,
                Some(Partial {
                    offset: 50,
                    length: 3
                })
            ),
            20..20
        );
        assert_eq!(
            narrow_bytes(
                b"abcdef".to_vec(),
                Some(Partial {
                    offset: 4,
                    length: 10
                })
            ),
            b"ef"
        );
        assert_eq!(slice(b"abc", 2..9), b"c");
    }
}
