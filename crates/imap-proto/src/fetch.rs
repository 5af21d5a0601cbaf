//! FETCH data items (RFC 9051 §6.4.5, §9 `fetch-att`, `section`, `partial`), the
//! rev1 RFC822 items (RFC 3501 §6.4.5), BINARY (RFC 3516 §4.2) and MODSEQ,
//! CHANGEDSINCE, VANISHED (RFC 7162 §3.1.4, §3.2.6).

use crate::command::FetchCommand;
use crate::cursor::{Cursor, Fail, PResult};
use crate::error::{ErrorKind, excerpt};
use crate::sequence::sequence_set;
use crate::string::{TextMode, write_astring};
use buudien_types::ModSeq;

/// `<offset.length>` (RFC 9051 §9 `partial`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    /// First octet, 0-based.
    pub offset: u64,
    /// Number of octets, at least 1.
    pub length: u64,
}

/// The text part of a section (`section-msgtext` / `MIME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    /// `HEADER`.
    Header,
    /// `HEADER.FIELDS (names)`.
    HeaderFields(Vec<String>),
    /// `HEADER.FIELDS.NOT (names)`.
    HeaderFieldsNot(Vec<String>),
    /// `TEXT`.
    Text,
    /// `MIME` (only after a part number).
    Mime,
}

/// `section-spec`: a part path (`1.2.3`, empty for the whole message) and an optional
/// text specifier. `BODY[]` is the default value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    /// Part numbers, outermost first.
    pub part: Vec<u32>,
    /// HEADER, TEXT, MIME...
    pub text: Option<SectionText>,
}

/// One FETCH data item; macros (ALL, FAST, FULL) are expanded by the parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAttr {
    /// `ENVELOPE`.
    Envelope,
    /// `FLAGS`.
    Flags,
    /// `INTERNALDATE`.
    InternalDate,
    /// `RFC822.SIZE`.
    Rfc822Size,
    /// `BODY` (non-extensible BODYSTRUCTURE).
    Body,
    /// `BODYSTRUCTURE`.
    BodyStructure,
    /// `UID`.
    Uid,
    /// `MODSEQ` (RFC 7162 §3.1.4.1).
    ModSeq,
    /// `RFC822` (rev1: `BODY[]`).
    Rfc822,
    /// `RFC822.HEADER` (rev1: `BODY.PEEK[HEADER]`).
    Rfc822Header,
    /// `RFC822.TEXT` (rev1: `BODY[TEXT]`).
    Rfc822Text,
    /// `BODY[section]<partial>` or `BODY.PEEK[...]`.
    BodySection {
        /// `.PEEK`: do not set \Seen.
        peek: bool,
        /// Which part.
        section: Section,
        /// Which octets.
        partial: Option<Partial>,
    },
    /// `BINARY[part]<partial>` or `BINARY.PEEK[...]` (RFC 3516 §4.2).
    Binary {
        /// `.PEEK`.
        peek: bool,
        /// Part numbers (empty: the whole message).
        part: Vec<u32>,
        /// Which octets.
        partial: Option<Partial>,
    },
    /// `BINARY.SIZE[part]`.
    BinarySize {
        /// Part numbers.
        part: Vec<u32>,
    },
}

impl FetchAttr {
    /// True when fetching this item sets `\Seen` (RFC 9051 §6.4.5): BODY[...],
    /// BINARY[...] without PEEK, RFC822 and RFC822.TEXT.
    pub fn sets_seen(&self) -> bool {
        match self {
            FetchAttr::BodySection { peek, .. } | FetchAttr::Binary { peek, .. } => !peek,
            FetchAttr::Rfc822 | FetchAttr::Rfc822Text => true,
            _ => false,
        }
    }

    /// Writes the item's name as the FETCH response names it: `BODY[1.HEADER]<0>`
    /// (PEEK dropped, partial as its origin only), `BINARY.SIZE[2]`, `UID`...
    pub fn write_response_name(&self, out: &mut Vec<u8>) {
        let name: &[u8] = match self {
            FetchAttr::Envelope => b"ENVELOPE",
            FetchAttr::Flags => b"FLAGS",
            FetchAttr::InternalDate => b"INTERNALDATE",
            FetchAttr::Rfc822Size => b"RFC822.SIZE",
            FetchAttr::Body => b"BODY",
            FetchAttr::BodyStructure => b"BODYSTRUCTURE",
            FetchAttr::Uid => b"UID",
            FetchAttr::ModSeq => b"MODSEQ",
            FetchAttr::Rfc822 => b"RFC822",
            FetchAttr::Rfc822Header => b"RFC822.HEADER",
            FetchAttr::Rfc822Text => b"RFC822.TEXT",
            FetchAttr::BodySection {
                section, partial, ..
            } => {
                out.extend_from_slice(b"BODY[");
                write_section(out, section);
                out.push(b']');
                write_origin(out, partial);
                return;
            }
            FetchAttr::Binary { part, partial, .. } => {
                out.extend_from_slice(b"BINARY[");
                write_part(out, part);
                out.push(b']');
                write_origin(out, partial);
                return;
            }
            FetchAttr::BinarySize { part } => {
                out.extend_from_slice(b"BINARY.SIZE[");
                write_part(out, part);
                out.push(b']');
                return;
            }
        };
        out.extend_from_slice(name);
    }
}

fn write_origin(out: &mut Vec<u8>, partial: &Option<Partial>) {
    if let Some(p) = partial {
        out.extend_from_slice(format!("<{}>", p.offset).as_bytes());
    }
}

fn write_part(out: &mut Vec<u8>, part: &[u32]) {
    for (i, n) in part.iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        out.extend_from_slice(n.to_string().as_bytes());
    }
}

/// Writes a `section-spec` (without brackets) as the client gave it.
pub fn write_section(out: &mut Vec<u8>, section: &Section) {
    write_part(out, &section.part);
    let Some(text) = &section.text else { return };
    if !section.part.is_empty() {
        out.push(b'.');
    }
    let (word, fields): (&[u8], Option<&[String]>) = match text {
        SectionText::Header => (b"HEADER", None),
        SectionText::HeaderFields(f) => (b"HEADER.FIELDS", Some(f)),
        SectionText::HeaderFieldsNot(f) => (b"HEADER.FIELDS.NOT", Some(f)),
        SectionText::Text => (b"TEXT", None),
        SectionText::Mime => (b"MIME", None),
    };
    out.extend_from_slice(word);
    if let Some(fields) = fields {
        out.extend_from_slice(b" (");
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            write_astring(out, f.as_bytes(), TextMode::Ascii);
        }
        out.push(b')');
    }
}

/// `fetch` after the word FETCH: `SP sequence-set SP items [SP "(" modifiers ")"]`.
pub(crate) fn fetch(c: &mut Cursor<'_>, uid: bool) -> PResult<FetchCommand> {
    c.sp()?;
    let set = sequence_set(c)?;
    c.sp()?;
    let items = if c.peek() == Some(b'(') {
        c.paren_list(false, fetch_att)?
    } else if c.eat_word("ALL") {
        vec![
            FetchAttr::Flags,
            FetchAttr::InternalDate,
            FetchAttr::Rfc822Size,
            FetchAttr::Envelope,
        ]
    } else if c.eat_word("FAST") {
        vec![
            FetchAttr::Flags,
            FetchAttr::InternalDate,
            FetchAttr::Rfc822Size,
        ]
    } else if c.eat_word("FULL") {
        vec![
            FetchAttr::Flags,
            FetchAttr::InternalDate,
            FetchAttr::Rfc822Size,
            FetchAttr::Envelope,
            FetchAttr::Body,
        ]
    } else {
        vec![fetch_att(c)?]
    };
    let mut cmd = FetchCommand {
        uid,
        set,
        items,
        changed_since: None,
        vanished: false,
    };
    if c.at_end() {
        return Ok(cmd);
    }
    c.sp()?;
    let mods_at = c.pos();
    c.paren_list(false, |c| {
        let start = c.pos();
        let w = c.atom_upper()?;
        match w.as_str() {
            "CHANGEDSINCE" if cmd.changed_since.is_none() => {
                c.sp()?;
                cmd.changed_since = Some(ModSeq(c.number64()?));
            }
            "VANISHED" if !cmd.vanished => cmd.vanished = true,
            _ => {
                return Err(Fail {
                    pos: start,
                    kind: ErrorKind::Syntax,
                    text: format!(
                        "unknown or repeated FETCH modifier {}",
                        excerpt(w.as_bytes())
                    )
                    .into(),
                });
            }
        }
        Ok(())
    })?;
    // RFC 7162 §3.2.6: VANISHED only in UID FETCH, and only with CHANGEDSINCE.
    if cmd.vanished && (!uid || cmd.changed_since.is_none()) {
        return Err(Fail {
            pos: mods_at,
            kind: ErrorKind::Syntax,
            text: "VANISHED needs UID FETCH and CHANGEDSINCE (RFC 7162 §3.2.6)".into(),
        });
    }
    Ok(cmd)
}

/// `fetch-att` (RFC 9051 §9, RFC 3501 §9, RFC 3516 §4.2, RFC 7162 §7).
fn fetch_att(c: &mut Cursor<'_>) -> PResult<FetchAttr> {
    let start = c.pos();
    let word = c.take_while1(
        |b| b.is_ascii_alphanumeric() || b == b'.',
        "expected a FETCH data item",
    )?;
    let word = String::from_utf8_lossy(word).to_ascii_uppercase();
    let bracket = c.peek() == Some(b'[');
    let attr = match (word.as_str(), bracket) {
        ("ENVELOPE", false) => FetchAttr::Envelope,
        ("FLAGS", false) => FetchAttr::Flags,
        ("INTERNALDATE", false) => FetchAttr::InternalDate,
        ("RFC822.SIZE", false) => FetchAttr::Rfc822Size,
        ("BODY", false) => FetchAttr::Body,
        ("BODYSTRUCTURE", false) => FetchAttr::BodyStructure,
        ("UID", false) => FetchAttr::Uid,
        ("MODSEQ", false) => FetchAttr::ModSeq,
        ("RFC822", false) => FetchAttr::Rfc822,
        ("RFC822.HEADER", false) => FetchAttr::Rfc822Header,
        ("RFC822.TEXT", false) => FetchAttr::Rfc822Text,
        ("BODY" | "BODY.PEEK", true) => {
            let section = section(c)?;
            FetchAttr::BodySection {
                peek: word == "BODY.PEEK",
                section,
                partial: partial(c)?,
            }
        }
        ("BINARY" | "BINARY.PEEK", true) => {
            let part = section_binary(c)?;
            FetchAttr::Binary {
                peek: word == "BINARY.PEEK",
                part,
                partial: partial(c)?,
            }
        }
        ("BINARY.SIZE", true) => FetchAttr::BinarySize {
            part: section_binary(c)?,
        },
        _ => {
            return Err(Fail {
                pos: start,
                kind: ErrorKind::Syntax,
                text: format!("unknown FETCH data item {}", excerpt(word.as_bytes())).into(),
            });
        }
    };
    Ok(attr)
}

/// `section-part = nz-number *("." nz-number)`; stops before a `.` not followed by a
/// digit (the start of a section-text).
fn section_part(c: &mut Cursor<'_>) -> PResult<Vec<u32>> {
    let mut part = vec![c.nz_number()?];
    while c.peek() == Some(b'.') && c.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
        c.eat(b'.');
        part.push(c.nz_number()?);
    }
    Ok(part)
}

/// `section-binary = "[" [section-part] "]"`.
fn section_binary(c: &mut Cursor<'_>) -> PResult<Vec<u32>> {
    c.expect(b'[', "expected '['")?;
    let part = if c.eat(b']') {
        return Ok(Vec::new());
    } else {
        section_part(c)?
    };
    c.expect(b']', "expected ']' after the part number")?;
    Ok(part)
}

/// ```text
/// section         = "[" [section-spec] "]"
/// section-spec    = section-msgtext / (section-part ["." section-text])
/// section-msgtext = "HEADER" / "HEADER.FIELDS" [".NOT"] SP header-list / "TEXT"
/// section-text    = section-msgtext / "MIME"
/// ```
fn section(c: &mut Cursor<'_>) -> PResult<Section> {
    c.expect(b'[', "expected '['")?;
    let mut s = Section::default();
    if c.eat(b']') {
        return Ok(s);
    }
    if c.peek().is_some_and(|b| b.is_ascii_digit()) {
        s.part = section_part(c)?;
        if c.eat(b']') {
            return Ok(s);
        }
        c.expect(b'.', "expected '.' or ']' after the part number")?;
    }
    let text = if c.eat_ci("HEADER.FIELDS.NOT") {
        c.sp()?;
        SectionText::HeaderFieldsNot(header_list(c)?)
    } else if c.eat_ci("HEADER.FIELDS") {
        c.sp()?;
        SectionText::HeaderFields(header_list(c)?)
    } else if c.eat_ci("HEADER") {
        SectionText::Header
    } else if c.eat_ci("TEXT") {
        SectionText::Text
    } else if !s.part.is_empty() && c.eat_ci("MIME") {
        SectionText::Mime
    } else {
        return c.fail("expected HEADER, HEADER.FIELDS, TEXT or MIME in the section");
    };
    s.text = Some(text);
    c.expect(b']', "expected ']' after the section")?;
    Ok(s)
}

/// `header-list = "(" header-fld-name *(SP header-fld-name) ")"`.
fn header_list(c: &mut Cursor<'_>) -> PResult<Vec<String>> {
    c.paren_list(false, |c| {
        let start = c.pos();
        let name = c.astring_utf8()?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(Fail {
                pos: start,
                kind: ErrorKind::Syntax,
                text: "header field names are printable ASCII without ':'".into(),
            });
        }
        Ok(name)
    })
}

/// `partial = "<" number64 "." nz-number64 ">"`.
fn partial(c: &mut Cursor<'_>) -> PResult<Option<Partial>> {
    if !c.eat(b'<') {
        return Ok(None);
    }
    let offset = c.number64()?;
    c.expect(b'.', "expected '.' in <offset.length>")?;
    let length = c.nz_number64()?;
    c.expect(b'>', "expected '>' after <offset.length>")?;
    Ok(Some(Partial { offset, length }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn f(input: &str, uid: bool) -> PResult<FetchCommand> {
        let mut c = Cursor::new(input.as_bytes(), None, TextMode::Utf8);
        let r = fetch(&mut c, uid)?;
        c.end()?;
        Ok(r)
    }

    fn items(input: &str) -> Vec<FetchAttr> {
        f(input, false).unwrap().items
    }

    fn name(a: &FetchAttr) -> String {
        let mut out = Vec::new();
        a.write_response_name(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rfc9051_examples() {
        // §6.4.5: FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])
        let r = f(" 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])", false).unwrap();
        assert_eq!(r.set.to_string(), "2:4");
        assert_eq!(
            r.items,
            [
                FetchAttr::Flags,
                FetchAttr::BodySection {
                    peek: false,
                    section: Section {
                        part: vec![],
                        text: Some(SectionText::HeaderFields(vec![
                            "DATE".into(),
                            "FROM".into()
                        ]))
                    },
                    partial: None
                }
            ]
        );
        assert_eq!(name(&r.items[1]), "BODY[HEADER.FIELDS (DATE FROM)]");
    }

    #[test]
    fn macros_and_simple_items() {
        assert_eq!(items(" 1 ALL").len(), 4);
        assert_eq!(items(" 1 fast").len(), 3);
        assert_eq!(items(" 1 FULL")[4], FetchAttr::Body);
        assert_eq!(
            items(" 1 (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE MODSEQ RFC822 RFC822.HEADER RFC822.TEXT)").len(),
            11
        );
        assert_eq!(items(" 1 uid"), [FetchAttr::Uid]);
        assert!(f(" 1 (ALL)", false).is_err(), "macros stand alone");
        assert!(f(" 1 ()", false).is_err());
        assert!(f(" 1 (FLAGS  UID)", false).is_err());
        assert!(f(" 1 EMAILID", false).is_err());
    }

    #[test]
    fn sections() {
        let cases = [
            ("BODY[]", "BODY[]"),
            ("BODY.PEEK[]<0.100>", "BODY[]<0>"),
            ("body[1.2.3]", "BODY[1.2.3]"),
            ("BODY[1.2.MIME]", "BODY[1.2.MIME]"),
            ("BODY[3.HEADER]", "BODY[3.HEADER]"),
            ("BODY[4.2.TEXT]<5.10>", "BODY[4.2.TEXT]<5>"),
            ("BODY[TEXT]", "BODY[TEXT]"),
            (
                "BODY.PEEK[HEADER.FIELDS.NOT (Received \"X-Spam\")]",
                "BODY[HEADER.FIELDS.NOT (Received X-Spam)]",
            ),
            ("BINARY[1]", "BINARY[1]"),
            ("BINARY.PEEK[]<0.1>", "BINARY[]<0>"),
            ("BINARY.SIZE[1.2]", "BINARY.SIZE[1.2]"),
        ];
        for (input, response) in cases {
            let it = items(&format!(" 1 ({input})"));
            assert_eq!(name(&it[0]), response, "{input}");
        }
        let it = items(" 1 BODY.PEEK[1.HEADER.FIELDS (a b)]");
        assert!(!it[0].sets_seen());
        assert!(items(" 1 BODY[1]")[0].sets_seen());
        for bad in [
            "BODY[MIME]",
            "BODY[0]",
            "BODY[1.]",
            "BODY[1.FOO]",
            "BODY[HEADER.FIELDS]",
            "BODY[HEADER.FIELDS ()]",
            "BODY[]<0.0>",
            "BODY[]<1>",
            "BODY[",
            "BINARY[TEXT]",
            "BINARY.SIZE",
            "BODYSTRUCTURE[]",
            "BODY.PEEK",
            "BODY[HEADER.FIELDS (a:b)]",
        ] {
            assert!(f(&format!(" 1 ({bad})"), false).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn modifiers() {
        let r = f(" 1:* (FLAGS) (CHANGEDSINCE 12345)", false).unwrap();
        assert_eq!(r.changed_since, Some(ModSeq(12345)));
        // RFC 7162 §3.2.6 example.
        let r = f(" 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)", true).unwrap();
        assert!(r.vanished);
        assert!(f(" 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)", false).is_err());
        assert!(f(" 1 (FLAGS) (VANISHED)", true).is_err());
        assert!(f(" 1 (FLAGS) (CHANGEDSINCE 1 CHANGEDSINCE 2)", true).is_err());
        assert!(f(" 1 (FLAGS) (FOO)", true).is_err());
        assert!(f(" 1 (FLAGS) ()", true).is_err());
    }
}
