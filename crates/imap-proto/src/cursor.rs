//! The parse cursor over one assembled command and the terminals of RFC 9051 §9:
//! SP, atom, number, nz-number, number64, quoted, literal, literal8, string, astring,
//! nstring, tag. Every grammar rule of the crate is a function over a [`Cursor`].
//!
//! An assembled command is the command's line text with every literal in place, the
//! way it came off the wire (`{n}` CRLF and then n octets), except that a literal the
//! session streamed is absent: its header is followed directly by the rest of the
//! line. The framer records where each literal's octets start ([`LiteralSpan`]), and
//! the cursor takes a literal only where the framer saw one, so octets of a literal
//! are never read as command text.

use crate::error::{ErrorKind, excerpt};
use crate::string::TextMode;
use std::borrow::Cow;

/// Where one literal's octets sit in an assembled command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LiteralSpan {
    /// Offset of the first octet (just after the header's CRLF).
    pub start: usize,
    /// Announced size.
    pub len: u64,
    /// The octets were streamed to the session and are not in the buffer.
    pub streamed: bool,
}

/// Why a rule failed: where, and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fail {
    pub pos: usize,
    pub kind: ErrorKind,
    pub text: Cow<'static, str>,
}

pub(crate) type PResult<T> = Result<T, Fail>;

/// Deepest nesting of parenthesised search keys, NOT and OR accepted.
pub(crate) const MAX_DEPTH: usize = 64;

/// A literal or literal8 as read: its octets, or `None` when it was streamed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lit<'a> {
    pub data: Option<&'a [u8]>,
    pub len: u64,
    pub binary: bool,
}

/// A cursor over one assembled command.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// `None`: trust every literal header (tests and direct parsing of whole input).
    literals: Option<&'a [LiteralSpan]>,
    /// A literal announced but not yet taken: its octets are not in `buf`.
    pending: Option<LiteralSpan>,
    pub(crate) mode: TextMode,
    pub(crate) depth: usize,
}

/// `ATOM-CHAR` (RFC 9051 §9): any CHAR except atom-specials. 8-bit octets are taken
/// too, as most servers do, so that UTF-8 in atoms is judged by the UTF-8 check that
/// follows rather than refused here.
pub(crate) fn is_atom_char(b: u8) -> bool {
    !matches!(
        b,
        b'(' | b')' | b'{' | b' ' | b'%' | b'*' | b'"' | b'\\' | b']'
    ) && b > 0x1f
        && b != 0x7f
}

/// `ASTRING-CHAR = ATOM-CHAR / resp-specials`.
pub(crate) fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// `list-char = ATOM-CHAR / list-wildcards / resp-specials`.
pub(crate) fn is_list_char(b: u8) -> bool {
    is_astring_char(b) || b == b'%' || b == b'*'
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], literals: Option<&'a [LiteralSpan]>, mode: TextMode) -> Self {
        Cursor {
            buf,
            pos: 0,
            literals,
            pending: None,
            mode,
            depth: 0,
        }
    }

    /// A cursor at `pos` over a command whose last literal, announced at the end of
    /// `buf`, has not arrived yet (it reads as streamed).
    pub(crate) fn with_pending(
        buf: &'a [u8],
        literals: &'a [LiteralSpan],
        pending_len: u64,
        pos: usize,
        mode: TextMode,
    ) -> Self {
        let mut c = Cursor::new(buf, Some(literals), mode);
        c.pending = Some(LiteralSpan {
            start: buf.len(),
            len: pending_len,
            streamed: true,
        });
        c.pos = pos.min(buf.len());
        c
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub(crate) fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.buf.get(self.pos + ahead).copied()
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    pub(crate) fn fail<T>(&self, text: impl Into<Cow<'static, str>>) -> PResult<T> {
        Err(Fail {
            pos: self.pos,
            kind: ErrorKind::Syntax,
            text: text.into(),
        })
    }

    /// The command must end here.
    pub(crate) fn end(&self) -> PResult<()> {
        if self.at_end() {
            Ok(())
        } else {
            self.fail(format!(
                "unexpected text at the end: \"{}\"",
                excerpt(self.rest())
            ))
        }
    }

    /// Exactly one SP (RFC 9051 §9 note 2).
    pub(crate) fn sp(&mut self) -> PResult<()> {
        if self.eat(b' ') {
            Ok(())
        } else if self.at_end() {
            self.fail("the command ends too early")
        } else {
            self.fail("expected one space")
        }
    }

    /// Takes `b` if it is next.
    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn expect(&mut self, b: u8, what: &'static str) -> PResult<()> {
        if self.eat(b) { Ok(()) } else { self.fail(what) }
    }

    /// Takes `word` (ASCII, case-insensitive) if it is next, whatever follows.
    pub(crate) fn eat_ci(&mut self, word: &str) -> bool {
        let w = word.as_bytes();
        match self.buf.get(self.pos..self.pos + w.len()) {
            Some(got) if got.eq_ignore_ascii_case(w) => {
                self.pos += w.len();
                true
            }
            _ => false,
        }
    }

    /// Takes `word` if it is next as a whole token (not followed by an atom char).
    pub(crate) fn eat_word(&mut self, word: &str) -> bool {
        let start = self.pos;
        if self.eat_ci(word) && !self.peek().is_some_and(is_atom_char) {
            return true;
        }
        self.pos = start;
        false
    }

    /// `1*ATOM-CHAR`; fails when there is none.
    pub(crate) fn atom(&mut self) -> PResult<&'a [u8]> {
        self.take_while1(is_atom_char, "expected an atom")
    }

    /// An atom, upper-cased (keywords and capability names).
    pub(crate) fn atom_upper(&mut self) -> PResult<String> {
        let a = self.atom()?;
        Ok(String::from_utf8_lossy(a).to_ascii_uppercase())
    }

    pub(crate) fn take_while1(
        &mut self,
        pred: impl Fn(u8) -> bool,
        what: &'static str,
    ) -> PResult<&'a [u8]> {
        let start = self.pos;
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
        if self.pos == start {
            return self.fail(what);
        }
        Ok(&self.buf[start..self.pos])
    }

    fn digits(&mut self) -> PResult<&'a [u8]> {
        self.take_while1(|b| b.is_ascii_digit(), "expected a number")
    }

    /// `number64` (0 ..= 2^63-1).
    pub(crate) fn number64(&mut self) -> PResult<u64> {
        let start = self.pos;
        let d = self.digits()?;
        let mut n: u64 = 0;
        for &b in d {
            n = match n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
            {
                Some(n) if n <= i64::MAX as u64 => n,
                _ => {
                    self.pos = start;
                    return self.fail("number too large");
                }
            };
        }
        Ok(n)
    }

    /// `nz-number64`.
    pub(crate) fn nz_number64(&mut self) -> PResult<u64> {
        let start = self.pos;
        let n = self.number64()?;
        if n == 0 {
            self.pos = start;
            return self.fail("expected a number greater than 0");
        }
        Ok(n)
    }

    /// `number` (32-bit).
    pub(crate) fn number(&mut self) -> PResult<u32> {
        let start = self.pos;
        let n = self.number64()?;
        match u32::try_from(n) {
            Ok(n) => Ok(n),
            Err(_) => {
                self.pos = start;
                self.fail("number larger than 32 bits")
            }
        }
    }

    /// `nz-number`.
    pub(crate) fn nz_number(&mut self) -> PResult<u32> {
        let start = self.pos;
        let n = self.number()?;
        if n == 0 {
            self.pos = start;
            return self.fail("expected a number greater than 0");
        }
        Ok(n)
    }

    /// `quoted = DQUOTE *QUOTED-CHAR DQUOTE`; `\"` and `\\` are the only escapes.
    pub(crate) fn quoted(&mut self) -> PResult<Cow<'a, [u8]>> {
        self.expect(b'"', "expected a quoted string")?;
        let start = self.pos;
        let mut owned: Option<Vec<u8>> = None;
        loop {
            match self.peek() {
                None => return self.fail("unterminated quoted string"),
                Some(b'"') => {
                    let plain = &self.buf[start..self.pos];
                    self.pos += 1;
                    return Ok(match owned {
                        Some(v) => Cow::Owned(v),
                        None => Cow::Borrowed(plain),
                    });
                }
                Some(b'\\') => {
                    let v = owned.get_or_insert_with(|| self.buf[start..self.pos].to_vec());
                    match self.peek_at(1) {
                        Some(c @ (b'"' | b'\\')) => {
                            v.push(c);
                            self.pos += 2;
                        }
                        _ => {
                            return self.fail("a quoted string may only escape '\"' and '\\'");
                        }
                    }
                }
                Some(0 | b'\r' | b'\n') => {
                    return self.fail("a quoted string cannot hold NUL, CR or LF");
                }
                Some(c) => {
                    if let Some(v) = owned.as_mut() {
                        v.push(c);
                    }
                    self.pos += 1;
                }
            }
        }
    }

    /// `literal` or `literal8` (`[~]{n[+]}` CRLF octets), with the octets checked
    /// against where the framer saw them.
    pub(crate) fn literal(&mut self) -> PResult<Lit<'a>> {
        let start = self.pos;
        let binary = self.eat(b'~');
        self.expect(b'{', "expected a literal")?;
        let len = self.number64()?;
        self.eat(b'+');
        self.expect(b'}', "expected '}' after the literal size")?;
        self.eat(b'\r');
        if !self.eat(b'\n') {
            return self.fail("a literal's size must end its line");
        }
        let data_start = self.pos;
        let streamed = match self.literals {
            _ if self
                .pending
                .is_some_and(|p| p.start == data_start && p.len == len) =>
            {
                true
            }
            None => false,
            Some(spans) => match spans.binary_search_by_key(&data_start, |s| s.start) {
                Ok(i) if spans[i].len == len => spans[i].streamed,
                _ => {
                    self.pos = start;
                    return self.fail("literal not where the framer saw one");
                }
            },
        };
        if streamed {
            return Ok(Lit {
                data: None,
                len,
                binary,
            });
        }
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| data_start.checked_add(l))
            .filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            self.pos = start;
            return self.fail("literal longer than the command");
        };
        self.pos = end;
        Ok(Lit {
            data: Some(&self.buf[data_start..end]),
            len,
            binary,
        })
    }

    /// `string = quoted / literal`: the octets of a buffered, non-binary literal
    /// without NUL (CHAR8), or of a quoted string.
    pub(crate) fn string(&mut self) -> PResult<Cow<'a, [u8]>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => {
                let start = self.pos;
                let lit = self.literal()?;
                match lit.data {
                    Some(d) if d.contains(&0) => {
                        self.pos = start;
                        self.fail("a literal cannot hold NUL here (RFC 9051 CHAR8)")
                    }
                    Some(d) => Ok(Cow::Borrowed(d)),
                    None => {
                        self.pos = start;
                        self.fail("only an APPEND message can be streamed")
                    }
                }
            }
            Some(b'~') => self.fail("literal8 is only allowed for APPEND data"),
            _ => self.fail("expected a string"),
        }
    }

    /// `astring = 1*ASTRING-CHAR / string`.
    pub(crate) fn astring(&mut self) -> PResult<Cow<'a, [u8]>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => self
                .take_while1(is_astring_char, "expected an atom or a string")
                .map(Cow::Borrowed),
        }
    }

    /// `nstring = string / nil`.
    pub(crate) fn nstring(&mut self) -> PResult<Option<Cow<'a, [u8]>>> {
        if self.eat_word("NIL") {
            Ok(None)
        } else {
            self.string().map(Some)
        }
    }

    /// An astring that must be UTF-8 text.
    pub(crate) fn astring_utf8(&mut self) -> PResult<String> {
        let start = self.pos;
        let s = self.astring()?;
        self.utf8_at(s, start)
    }

    /// A string that must be UTF-8 text.
    pub(crate) fn string_utf8(&mut self) -> PResult<String> {
        let start = self.pos;
        let s = self.string()?;
        self.utf8_at(s, start)
    }

    pub(crate) fn utf8_at(&self, s: Cow<'a, [u8]>, start: usize) -> PResult<String> {
        match String::from_utf8(s.into_owned()) {
            Ok(s) => Ok(s),
            Err(_) => Err(Fail {
                pos: start,
                kind: ErrorKind::Syntax,
                text: "text is not valid UTF-8".into(),
            }),
        }
    }

    /// Runs `f` one level deeper, refusing past [`MAX_DEPTH`].
    pub(crate) fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        if self.depth >= MAX_DEPTH {
            return self.fail("nested too deeply");
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    /// `"(" item *(SP item) ")"`, or `"(" ")"` when `allow_empty`.
    pub(crate) fn paren_list<T>(
        &mut self,
        allow_empty: bool,
        mut item: impl FnMut(&mut Self) -> PResult<T>,
    ) -> PResult<Vec<T>> {
        self.expect(b'(', "expected '('")?;
        let mut out = Vec::new();
        if self.eat(b')') {
            if allow_empty {
                return Ok(out);
            }
            return self.fail("the list cannot be empty");
        }
        loop {
            out.push(item(self)?);
            if self.eat(b')') {
                return Ok(out);
            }
            if self.at_end() {
                return self.fail("expected ')'");
            }
            self.sp()?;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cur(b: &[u8]) -> Cursor<'_> {
        Cursor::new(b, None, TextMode::Utf8)
    }

    #[test]
    fn numbers() {
        assert_eq!(cur(b"4294967295").number().unwrap(), u32::MAX);
        assert!(cur(b"4294967296").number().is_err());
        assert!(cur(b"0").nz_number().is_err());
        assert_eq!(
            cur(b"9223372036854775807").number64().unwrap(),
            i64::MAX as u64
        );
        assert!(cur(b"9223372036854775808").number64().is_err());
        assert!(cur(b"99999999999999999999999").number64().is_err());
        assert!(cur(b"x").number().is_err());
    }

    #[test]
    fn quoted_strings() {
        let mut c = cur(br#""a\"b\\c" x"#);
        assert_eq!(&*c.quoted().unwrap(), br#"a"b\c"#);
        assert_eq!(c.rest(), b" x");
        assert_eq!(&*cur(br#""""#).quoted().unwrap(), b"");
        assert!(cur(br#""a\nb""#).quoted().is_err());
        assert!(cur(b"\"ab").quoted().is_err());
        assert!(cur(b"\"a\rb\"").quoted().is_err());
        assert_eq!(
            &*cur("\"bj\u{f6}rn\"".as_bytes()).quoted().unwrap(),
            "bj\u{f6}rn".as_bytes()
        );
    }

    #[test]
    fn literals() {
        let mut c = cur(b"{5}\r\nhello rest");
        assert_eq!(&*c.string().unwrap(), b"hello");
        assert_eq!(c.rest(), b" rest");
        assert!(cur(b"{5}\r\nhell").string().is_err());
        assert!(cur(b"{5}hello").string().is_err());
        assert!(cur(b"{2}\r\na\0").string().is_err());
        let mut c = cur(b"~{2}\r\na\0");
        let lit = c.literal().unwrap();
        assert!(lit.binary);
        assert_eq!(lit.data, Some(&b"a\0"[..]));
        assert_eq!(&*cur(b"{3+}\r\nabc").string().unwrap(), b"abc");
    }

    #[test]
    fn literal_spans_are_checked() {
        let buf = b"{3}\r\nabc {2}\r\nxy";
        let spans = [LiteralSpan {
            start: 5,
            len: 3,
            streamed: false,
        }];
        let mut c = Cursor::new(buf, Some(&spans), TextMode::Utf8);
        assert_eq!(&*c.string().unwrap(), b"abc");
        c.sp().unwrap();
        assert!(c.string().is_err(), "a literal the framer did not see");
    }

    #[test]
    fn astrings_and_nstrings() {
        let mut c = cur(b"INBOX] x");
        assert_eq!(&*c.astring().unwrap(), b"INBOX]");
        assert!(cur(b"(x").astring().is_err());
        assert_eq!(cur(b"nil").nstring().unwrap(), None);
        assert_eq!(
            cur(b"\"NIL\"").nstring().unwrap().as_deref(),
            Some(&b"NIL"[..])
        );
        assert!(cur(b"NILS").nstring().is_err());
    }

    #[test]
    fn words_are_case_insensitive_and_whole() {
        let mut c = cur(b"fetch 1");
        assert!(!c.eat_word("FETCHX"));
        assert!(c.eat_word("FETCH"));
        let mut c = cur(b"FETCHES");
        assert!(!c.eat_word("FETCH"));
    }
}
