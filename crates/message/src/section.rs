//! `BODY[section]` / `BINARY[section]` as byte ranges of the stored message
//! (RFC 9051 §6.4.5, RFC 3516).

use std::ops::Range;

use crate::meta::{Body, MessageMeta, Part};

/// A `section-spec` of RFC 9051 §6.4.5.
///
/// ```text
/// section-spec    = section-msgtext / (section-part ["." section-text])
/// section-msgtext = "HEADER" / "HEADER.FIELDS" [".NOT"] SP header-list / "TEXT"
/// section-text    = section-msgtext / "MIME"
/// section-part    = nz-number *("." nz-number)
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Section {
    /// `BODY[]`: the whole message.
    Full,
    /// `HEADER`: the header section with its blank line.
    Header,
    /// `HEADER.FIELDS (...)`: the header range, to be narrowed by
    /// [`crate::filter_header`].
    HeaderFields(Vec<String>),
    /// `HEADER.FIELDS.NOT (...)`: likewise.
    HeaderFieldsNot(Vec<String>),
    /// `TEXT`: the body of the message.
    Text,
    /// `MIME`: the MIME header of a part (valid only inside [`Section::Part`]).
    Mime,
    /// `1.2.3` with an optional `HEADER`, `HEADER.FIELDS[.NOT]`, `TEXT` or `MIME` after
    /// it. `HEADER`/`TEXT`/`HEADER.FIELDS` need a message/rfc822 part.
    Part(Vec<u32>, Option<Box<Section>>),
}

impl Section {
    /// Builds a section from a part number (empty for the message itself) and what
    /// follows it, the shape an IMAP parser produces: `([], None)` is `BODY[]`,
    /// `([], Some(Text))` is `BODY[TEXT]`, `([1, 2], Some(Mime))` is `BODY[1.2.MIME]`.
    pub fn new(part: Vec<u32>, text: Option<Section>) -> Section {
        match (part.is_empty(), text) {
            (true, None) => Section::Full,
            (true, Some(text)) => text,
            (false, text) => Section::Part(part, text.map(Box::new)),
        }
    }
}

/// The bytes of the stored message that answer `section`, or `None` when the message
/// has no such section (no such part, `HEADER`/`TEXT` of a part that is not
/// message/rfc822, or a malformed spec); Dovecot answers those with an empty string.
/// For `HEADER.FIELDS[.NOT]` this is the whole header section: pass its bytes to
/// [`crate::filter_header`].
pub fn section_range(meta: &MessageMeta, section: &Section) -> Option<Range<usize>> {
    match section {
        Section::Full => Some(0..meta.size),
        Section::Header | Section::HeaderFields(_) | Section::HeaderFieldsNot(_) => {
            Some(meta.root.header_range())
        }
        Section::Text => Some(meta.root.body_range()),
        Section::Mime => None,
        Section::Part(path, sub) => {
            let part = find_part(&meta.root, path)?;
            match sub.as_deref() {
                None => Some(part.body_range()),
                Some(Section::Mime) => Some(part.header_range()),
                Some(Section::Header | Section::HeaderFields(_) | Section::HeaderFieldsNot(_)) => {
                    message_root(part).map(Part::header_range)
                }
                Some(Section::Text) => message_root(part).map(Part::body_range),
                Some(Section::Full | Section::Part(..)) => None,
            }
        }
    }
}

fn message_root(part: &Part) -> Option<&Part> {
    match &part.body {
        Body::Message(_, root) => Some(root),
        _ => None,
    }
}

/// RFC 9051 §6.4.5 part numbering, as Dovecot's `imap_msgpart_find`: a multipart's
/// parts are numbered from 1; any other part has only part 1 (itself); a number that
/// goes on past a message/rfc822 part continues inside its encapsulated message.
pub(crate) fn find_part<'a>(root: &'a Part, path: &[u32]) -> Option<&'a Part> {
    if path.is_empty() {
        return None;
    }
    let mut part = root;
    for (i, &num) in path.iter().enumerate() {
        let more = i + 1 < path.len();
        if let Body::Multipart(children) = &part.body {
            part = children.get(usize::try_from(num.checked_sub(1)?).ok()?)?;
        } else if num != 1 || (more && !matches!(part.body, Body::Message(..))) {
            return None;
        }
        if let (true, Body::Message(_, child)) = (more, &part.body) {
            part = child;
        }
    }
    Some(part)
}
