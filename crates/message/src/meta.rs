//! [`MessageMeta`]: what IMAP needs to know about a message without reading it again —
//! the ENVELOPE fields and the MIME part tree with byte offsets — computed once at
//! delivery by [`MessageMeta::parse`] and stored next to the message.

use crate::address::parse_address_list;
use crate::header::RawField;
use crate::rfc822::{Ret, Rfc822};

/// The bounds [`MessageMeta::parse`] enforces, so that parsing is linear in the size of
/// the message and the stored metadata stays small whatever the input.
pub mod limits {
    /// Deepest MIME nesting: a multipart or message/rfc822 part at this depth is not
    /// opened (it shows as `application/octet-stream`). Dovecot uses 100.
    pub const MAX_DEPTH: usize = 32;
    /// Most MIME parts in one message, the root included; after that no boundary is
    /// recognised and the rest of the message belongs to the part being read.
    /// Dovecot uses 10000.
    pub const MAX_PARTS: usize = 2000;
    /// Header fields interpreted per part; later fields still belong to the header
    /// section (and to `BODY[HEADER]`) but do not feed ENVELOPE or BODYSTRUCTURE.
    pub const MAX_FIELDS: usize = 10_000;
    /// Addresses kept per ENVELOPE address list (group markers count).
    pub const MAX_ADDRESSES: usize = 1000;
    /// Octets kept of one stored header value (subject, date, message-id, ...); a
    /// longer value is cut at a character boundary.
    pub const MAX_VALUE: usize = 16 * 1024;
    /// Parameters kept per `Content-Type` / `Content-Disposition`.
    pub const MAX_PARAMS: usize = 64;
    /// Longest MIME boundary compared (RFC 2046 allows 70; Dovecot takes 80).
    pub const MAX_BOUNDARY: usize = 80;
}

use limits::{MAX_ADDRESSES, MAX_PARAMS, MAX_VALUE};

/// One RFC 9051 §7.5.2 address: `(name adl mailbox host)`. A group start is
/// `(NIL NIL "group name" NIL)`, a group end `(NIL NIL NIL NIL)`. Strings are raw header
/// bytes (encoded-words are not decoded), U+FFFD in place of NUL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Address {
    /// Display name (or the comment after an addr-spec).
    pub name: Option<Vec<u8>>,
    /// Source route (`@a,@b`), obsolete.
    pub adl: Option<Vec<u8>>,
    /// Local part, or the group name of a group start.
    pub mailbox: Option<Vec<u8>>,
    /// Domain; `None` marks a group start or end.
    pub host: Option<Vec<u8>>,
}

/// The ENVELOPE fields of one message (RFC 9051 §7.5.2). String fields hold the header
/// value unfolded the way [`RawField::value`] gives it (line breaks kept as LF; the
/// renderer removes them). Address lists merge repeated header fields; the other
/// fields take the last occurrence (Dovecot does both).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// `Date:`, raw.
    pub date: Option<Vec<u8>>,
    /// `Subject:`, raw (encoded-words kept).
    pub subject: Option<Vec<u8>>,
    /// `From:`.
    pub from: Vec<Address>,
    /// `Sender:`; empty means "same as From" ([`Envelope::sender_or_from`]).
    pub sender: Vec<Address>,
    /// `Reply-To:`; empty means "same as From" ([`Envelope::reply_to_or_from`]).
    pub reply_to: Vec<Address>,
    /// `To:`.
    pub to: Vec<Address>,
    /// `Cc:`.
    pub cc: Vec<Address>,
    /// `Bcc:`.
    pub bcc: Vec<Address>,
    /// `In-Reply-To:`, raw.
    pub in_reply_to: Option<Vec<u8>>,
    /// `Message-ID:`, raw.
    pub message_id: Option<Vec<u8>>,
}

impl Envelope {
    /// The sender as ENVELOPE shows it: `Sender:`, or `From:` when absent (RFC 9051
    /// §7.5.2).
    pub fn sender_or_from(&self) -> &[Address] {
        if self.sender.is_empty() {
            &self.from
        } else {
            &self.sender
        }
    }

    /// The reply-to as ENVELOPE shows it: `Reply-To:`, or `From:` when absent.
    pub fn reply_to_or_from(&self) -> &[Address] {
        if self.reply_to.is_empty() {
            &self.from
        } else {
            &self.reply_to
        }
    }

    /// Takes one header field into the envelope when it is one of the ten fields.
    pub(crate) fn apply(&mut self, field: &RawField<'_>) {
        let name = field.name;
        let list = match name.len() {
            2 if name.eq_ignore_ascii_case(b"To") => &mut self.to,
            2 if name.eq_ignore_ascii_case(b"Cc") => &mut self.cc,
            3 if name.eq_ignore_ascii_case(b"Bcc") => &mut self.bcc,
            4 if name.eq_ignore_ascii_case(b"From") => &mut self.from,
            6 if name.eq_ignore_ascii_case(b"Sender") => &mut self.sender,
            8 if name.eq_ignore_ascii_case(b"Reply-To") => &mut self.reply_to,
            _ => {
                let slot = if name.eq_ignore_ascii_case(b"Date") {
                    &mut self.date
                } else if name.eq_ignore_ascii_case(b"Subject") {
                    &mut self.subject
                } else if name.eq_ignore_ascii_case(b"Message-ID") {
                    &mut self.message_id
                } else if name.eq_ignore_ascii_case(b"In-Reply-To") {
                    &mut self.in_reply_to
                } else {
                    return;
                };
                *slot = Some(capped(field.value()));
                return;
            }
        };
        let room = MAX_ADDRESSES.saturating_sub(list.len());
        if room > 0 {
            parse_address_list(&field.value(), room, list);
        }
    }
}

/// `value` cut to [`limits::MAX_VALUE`] octets, at a UTF-8 character boundary.
pub(crate) fn capped(mut value: Vec<u8>) -> Vec<u8> {
    if value.len() > MAX_VALUE {
        let mut cut = MAX_VALUE;
        while cut > 0 && value.get(cut).is_some_and(|&b| b & 0xC0 == 0x80) {
            cut -= 1;
        }
        value.truncate(cut);
    }
    value
}

/// One MIME parameter (`Content-Type` / `Content-Disposition`). RFC 2231 continuations
/// are already merged: `name*0`, `name*1*`, ... arrive as one `name*` whose value is
/// `charset'language'%XX...` (Dovecot's form); [`Param::decoded`] gives UTF-8.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Param {
    /// Attribute as written (case kept).
    pub name: Vec<u8>,
    /// Value, unquoted.
    pub value: Vec<u8>,
}

impl Param {
    /// The parameter with an RFC 2231 extended value decoded: `("filename",
    /// "€.txt")` for `filename*=utf-8''%E2%82%AC.txt`. A plain parameter comes back
    /// as it is (lossy UTF-8); an unknown charset is taken as UTF-8.
    pub fn decoded(&self) -> (String, String) {
        crate::decode::rfc2231_value(&self.name, &self.value)
    }
}

/// The `Content-*` fields of one part that BODYSTRUCTURE shows (RFC 2045, 2183, 3066,
/// 2557). All raw header bytes; each is taken from the first field of its name
/// (a `Content-Disposition` without parameters may be replaced by a later one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MimeFields {
    /// Media type (`text`), case as written; `None` without `Content-Type`. May be
    /// empty for a broken field, which then shows as `""`.
    pub content_type: Option<Vec<u8>>,
    /// Media subtype (`plain`); empty when the field had none.
    pub content_subtype: Vec<u8>,
    /// `Content-Type` parameters.
    pub params: Vec<Param>,
    /// `Content-ID`.
    pub id: Option<Vec<u8>>,
    /// `Content-Description`.
    pub description: Option<Vec<u8>>,
    /// `Content-Transfer-Encoding` token.
    pub encoding: Option<Vec<u8>>,
    /// `Content-MD5`.
    pub md5: Option<Vec<u8>>,
    /// `Content-Disposition` type (`attachment`).
    pub disposition: Option<Vec<u8>>,
    /// `Content-Disposition` parameters.
    pub disposition_params: Vec<Param>,
    /// `Content-Language` tags.
    pub language: Vec<Vec<u8>>,
    /// `Content-Location`.
    pub location: Option<Vec<u8>>,
}

impl MimeFields {
    /// Takes one `Content-*` header field; returns the parsed `type/subtype` string
    /// and whether it parsed cleanly when the field is `Content-Type`.
    pub(crate) fn apply(&mut self, field: &RawField<'_>) -> Option<(Vec<u8>, bool)> {
        let name = field.name;
        let rest = name.get(8..)?;
        if !name.get(..8)?.eq_ignore_ascii_case(b"Content-") {
            return None;
        }
        let value = || field.value();
        if rest.eq_ignore_ascii_case(b"Type") {
            if self.content_type.is_none() {
                return Some(self.parse_content_type(&value()));
            }
        } else if rest.eq_ignore_ascii_case(b"Transfer-Encoding") {
            if self.encoding.is_none() {
                let v = value();
                let mut p = Rfc822::new(&v);
                p.skip_lwsp();
                let mut token = Vec::new();
                if p.parse_mime_token(&mut token) != Ret::Err
                    && p.skip_lwsp() == Ret::End
                    && !token.is_empty()
                {
                    self.encoding = Some(token);
                }
            }
        } else if rest.eq_ignore_ascii_case(b"Disposition") {
            if self.disposition_params.is_empty() {
                let v = value();
                let mut p = Rfc822::new(&v);
                p.skip_lwsp();
                let mut token = Vec::new();
                if p.parse_mime_token(&mut token) != Ret::Err {
                    self.disposition = Some(token);
                    self.disposition_params = params(p.parse_params(MAX_PARAMS));
                }
            }
        } else if rest.eq_ignore_ascii_case(b"Language") {
            if self.language.is_empty() {
                let v = value();
                let mut p = Rfc822::new(&v);
                p.skip_lwsp();
                let mut tag = Vec::new();
                while self.language.len() < MAX_PARAMS && p.parse_atom(&mut tag) != Ret::Err {
                    self.language.push(std::mem::take(&mut tag));
                    if !p.more() || p.peek() != b',' {
                        break;
                    }
                    p.advance();
                    p.skip_lwsp();
                }
            }
        } else {
            let slot = if rest.eq_ignore_ascii_case(b"ID") {
                &mut self.id
            } else if rest.eq_ignore_ascii_case(b"Description") {
                &mut self.description
            } else if rest.eq_ignore_ascii_case(b"MD5") {
                &mut self.md5
            } else if rest.eq_ignore_ascii_case(b"Location") {
                &mut self.location
            } else {
                return None;
            };
            if slot.is_none() {
                *slot = Some(capped(value()));
            }
        }
        None
    }

    fn parse_content_type(&mut self, value: &[u8]) -> (Vec<u8>, bool) {
        let mut p = Rfc822::new(value);
        p.skip_lwsp();
        let mut full = Vec::new();
        let ok = p.parse_content_type(&mut full) != Ret::Err;
        match full.iter().position(|&b| b == b'/') {
            Some(slash) => {
                self.content_type = Some(full.get(..slash).unwrap_or_default().to_vec());
                self.content_subtype = full.get(slash + 1..).unwrap_or_default().to_vec();
            }
            None => {
                self.content_type = Some(full.clone());
                self.content_subtype = Vec::new();
            }
        }
        if ok {
            self.params = params(p.parse_params(MAX_PARAMS));
        }
        (full, ok)
    }

    /// The first `Content-Type` parameter named `name` (ASCII case-insensitive).
    pub fn param(&self, name: &str) -> Option<&[u8]> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|p| p.value.as_slice())
    }
}

fn params(raw: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<Param> {
    raw.into_iter()
        .map(|(name, value)| Param {
            name,
            value: capped(value),
        })
        .collect()
}

/// What a part holds, as the MIME parser understood it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// A `text/*` leaf, or a part without a (MIME) `Content-Type` (RFC 2045 §5.2
    /// default `text/plain; charset=us-ascii`).
    Text,
    /// Any other leaf.
    Basic,
    /// A multipart or message/rfc822 part not opened because a limit was reached (or a
    /// part without `Content-Type` in a too-deep `multipart/digest`, or a
    /// `Content-Type: multipart` without subtype); shown as `application/octet-stream`,
    /// as Dovecot does.
    Truncated,
    /// `multipart/*` and its parts in order (none when the boundary was missing).
    Multipart(Vec<Part>),
    /// `message/rfc822` (or a part of `multipart/digest` without `Content-Type`): the
    /// envelope and root part of the encapsulated message.
    Message(Box<Envelope>, Box<Part>),
}

/// One MIME part: where it lies in the message, its `Content-*` fields and its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// Offset of the first header octet (`BODY[n.MIME]` starts here).
    pub header_start: usize,
    /// Offset of the first body octet: the header section, with the blank line that
    /// ends it, is `header_start..body_start`.
    pub body_start: usize,
    /// Offset after the last body octet. Inside a multipart, the line break before a
    /// boundary line belongs to the boundary, not to the part (RFC 2046 §5.1.1).
    pub end: usize,
    /// Line feeds in the body (`body-fld-lines` for text and message/rfc822).
    pub lines: u64,
    /// Size of the body after undoing its `Content-Transfer-Encoding`
    /// (`BINARY.SIZE`, RFC 3516); `None` for an encoding not known to buudien.
    pub binary_size: Option<u64>,
    /// The `Content-*` fields.
    pub fields: MimeFields,
    /// The body's shape.
    pub body: Body,
}

impl Part {
    /// `header_start..body_start`.
    pub fn header_range(&self) -> std::ops::Range<usize> {
        self.header_start..self.body_start
    }

    /// `body_start..end`.
    pub fn body_range(&self) -> std::ops::Range<usize> {
        self.body_start..self.end
    }

    /// Body size in octets (`body-fld-octets`).
    pub fn size(&self) -> usize {
        self.end.saturating_sub(self.body_start)
    }

    /// The `Content-Transfer-Encoding` token, if any.
    pub fn encoding(&self) -> Option<&[u8]> {
        self.fields.encoding.as_deref()
    }

    /// The subparts: those of a multipart, or the encapsulated message of a
    /// message/rfc822 part.
    pub fn children(&self) -> &[Part] {
        match &self.body {
            Body::Multipart(parts) => parts,
            Body::Message(_, root) => std::slice::from_ref(root.as_ref()),
            _ => &[],
        }
    }
}

/// The IMAP metadata of one stored message. Build it with [`MessageMeta::parse`] at
/// delivery, keep [`MessageMeta::to_bytes`] next to the message, and answer ENVELOPE,
/// BODYSTRUCTURE and section fetches from [`MessageMeta::from_bytes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageMeta {
    /// Size of the message in octets (`RFC822.SIZE`).
    pub size: usize,
    /// The message's ENVELOPE.
    pub envelope: Envelope,
    /// The root part: the message itself (header = the message header).
    pub root: Part,
}

impl MessageMeta {
    /// Parses a stored message. Never fails: broken MIME gives the structure Dovecot
    /// would show for it; [`limits`] bound the work and the result.
    pub fn parse(msg: &[u8]) -> MessageMeta {
        crate::mime::parse(msg)
    }

    /// The part of a (non-empty) IMAP part number such as `[1, 2]` for `1.2`, RFC 9051
    /// §6.4.5: in a non-multipart part only `1` exists; a number that continues into a
    /// message/rfc822 part continues in its encapsulated message.
    pub fn part(&self, path: &[u32]) -> Option<&Part> {
        crate::section::find_part(&self.root, path)
    }
}
