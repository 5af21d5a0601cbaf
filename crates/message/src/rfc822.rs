//! RFC 5322 / RFC 2045 lexical tokens over one unfolded header value: CFWS, atoms,
//! quoted strings, domains, MIME tokens, `Content-Type` and its parameters (with the
//! RFC 2231 continuation merge).
//!
//! The token rules follow Dovecot's `rfc822-parser.c` so that ENVELOPE and
//! BODYSTRUCTURE come out as Dovecot answers them: every function returns
//! [`Ret::More`] when input remains after the token (and the CFWS after it),
//! [`Ret::End`] when the input is used up, [`Ret::Err`] on a syntax error. Reading past
//! the end yields 0, like the NUL that ends a C string. A NUL inside a quoted string,
//! comment or domain literal becomes U+FFFD.

/// The three outcomes of a token function; ordered so `ret <= Ret::End` reads like C.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Ret {
    /// Invalid input.
    Err,
    /// Token read, input used up.
    End,
    /// Token read, more input follows.
    More,
}

/// U+FFFD, what a NUL octet becomes in collected strings.
pub(crate) const NUL_REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// `atext` of RFC 5322 plus every 8-bit octet (for UTF-8 headers, RFC 6532).
pub(crate) fn is_atext(c: u8) -> bool {
    c >= 0x80
        || c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'/'
                | b'='
                | b'?'
                | b'^'
                | b'_'
                | b'`'
                | b'{'
                | b'|'
                | b'}'
                | b'~'
        )
}

/// RFC 2045 `token` characters other than `.`: atext without `/`, `=`, `?`.
fn is_token_char(c: u8) -> bool {
    is_atext(c) && !matches!(c, b'/' | b'=' | b'?')
}

/// A cursor over one header value.
pub(crate) struct Rfc822<'a> {
    data: &'a [u8],
    pos: usize,
    /// The text of the last comment skipped, when the caller asked to keep it.
    pub(crate) last_comment: Option<Vec<u8>>,
}

impl<'a> Rfc822<'a> {
    /// A cursor at the start of `data`.
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Rfc822 {
            data,
            pos: 0,
            last_comment: None,
        }
    }

    /// The current octet, or 0 at the end.
    pub(crate) fn peek(&self) -> u8 {
        self.data.get(self.pos).copied().unwrap_or(0)
    }

    /// True while input remains.
    pub(crate) fn more(&self) -> bool {
        self.pos < self.data.len()
    }

    /// Current position.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Moves back to `pos` (a value from [`Self::pos`]).
    pub(crate) fn set_pos(&mut self, pos: usize) {
        self.pos = pos.min(self.data.len());
    }

    /// Skips one octet.
    pub(crate) fn advance(&mut self) {
        if self.pos < self.data.len() {
            self.pos += 1;
        }
    }

    fn slice(&self, from: usize, to: usize) -> &'a [u8] {
        self.data.get(from..to).unwrap_or_default()
    }

    fn status(&self) -> Ret {
        if self.more() { Ret::More } else { Ret::End }
    }

    /// `comment` (nested); the cursor is on `(`.
    fn skip_comment(&mut self) -> Ret {
        let mut level = 1u32;
        let keep = self.last_comment.is_some();
        let mut text = Vec::new();
        self.pos += 1;
        let mut start = self.pos;
        while self.pos < self.data.len() {
            let c = self.peek();
            match c {
                0 if keep => {
                    text.extend_from_slice(self.slice(start, self.pos));
                    text.extend_from_slice(NUL_REPLACEMENT);
                    start = self.pos + 1;
                }
                b'(' => level += 1,
                b')' => {
                    level -= 1;
                    if level == 0 {
                        if keep {
                            text.extend_from_slice(self.slice(start, self.pos));
                            self.last_comment = Some(text);
                        }
                        self.pos += 1;
                        return self.status();
                    }
                }
                b'\n' if keep => {
                    let mut end = self.pos;
                    if end > start && self.data.get(end - 1) == Some(&b'\r') {
                        end -= 1;
                    }
                    text.extend_from_slice(self.slice(start, end));
                    start = self.pos + 1;
                }
                b'\\' => {
                    self.pos += 1;
                    if self.pos >= self.data.len() {
                        return Ret::Err;
                    }
                    if matches!(self.peek(), b'\r' | b'\n' | 0) {
                        self.pos -= 1;
                    } else if keep {
                        text.extend_from_slice(self.slice(start, self.pos - 1));
                        start = self.pos;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        if keep {
            self.last_comment = Some(text);
        }
        Ret::Err
    }

    /// `CFWS`: white space, line breaks and comments.
    pub(crate) fn skip_lwsp(&mut self) -> Ret {
        while self.pos < self.data.len() {
            match self.peek() {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'(' => {
                    if self.skip_comment() == Ret::Err {
                        return Ret::Err;
                    }
                }
                _ => break,
            }
        }
        self.status()
    }

    /// `atom`, appended to `out`.
    pub(crate) fn parse_atom(&mut self, out: &mut Vec<u8>) -> Ret {
        if !self.more() || !is_atext(self.peek()) {
            return Ret::Err;
        }
        let start = self.pos;
        while self.more() && is_atext(self.peek()) {
            self.pos += 1;
        }
        out.extend_from_slice(self.slice(start, self.pos));
        if self.more() {
            self.skip_lwsp()
        } else {
            Ret::End
        }
    }

    /// `dot-atom`, allowing CFWS around the dots as RFC 822 did.
    pub(crate) fn parse_dot_atom(&mut self, out: &mut Vec<u8>) -> Ret {
        if !self.more() || !is_atext(self.peek()) {
            return Ret::Err;
        }
        let mut start = self.pos;
        self.pos += 1;
        while self.more() {
            if is_atext(self.peek()) {
                self.pos += 1;
                continue;
            }
            if start == self.pos {
                return Ret::Err;
            }
            out.extend_from_slice(self.slice(start, self.pos));
            let ret = self.skip_lwsp();
            if ret <= Ret::End {
                return ret;
            }
            if self.peek() != b'.' {
                return Ret::More;
            }
            self.pos += 1;
            out.push(b'.');
            if self.skip_lwsp() <= Ret::End {
                return Ret::Err;
            }
            start = self.pos;
        }
        out.extend_from_slice(self.slice(start, self.pos));
        Ret::End
    }

    /// RFC 2045 `token` (dots allowed, as Dovecot does).
    pub(crate) fn parse_mime_token(&mut self, out: &mut Vec<u8>) -> Ret {
        let start = self.pos;
        while self.more() {
            let c = self.peek();
            if is_token_char(c) || c == b'.' {
                self.pos += 1;
                continue;
            }
            out.extend_from_slice(self.slice(start, self.pos));
            return self.skip_lwsp();
        }
        out.extend_from_slice(self.slice(start, self.pos));
        Ret::End
    }

    /// `quoted-string`, unquoted into `out`; the cursor is on `"`.
    pub(crate) fn parse_quoted_string(&mut self, out: &mut Vec<u8>) -> Ret {
        self.pos += 1;
        let mut start = self.pos;
        while self.pos < self.data.len() {
            match self.peek() {
                0 => {
                    out.extend_from_slice(self.slice(start, self.pos));
                    out.extend_from_slice(NUL_REPLACEMENT);
                    start = self.pos + 1;
                }
                b'"' => {
                    out.extend_from_slice(self.slice(start, self.pos));
                    self.pos += 1;
                    return self.skip_lwsp();
                }
                b'\n' => {
                    let mut end = self.pos;
                    if end > start && self.data.get(end - 1) == Some(&b'\r') {
                        end -= 1;
                    }
                    out.extend_from_slice(self.slice(start, end));
                    start = self.pos + 1;
                }
                b'\\' => {
                    self.pos += 1;
                    if self.pos >= self.data.len() {
                        return Ret::Err;
                    }
                    if matches!(self.peek(), b'\r' | b'\n' | 0) {
                        self.pos -= 1;
                    } else {
                        out.extend_from_slice(self.slice(start, self.pos - 1));
                        start = self.pos;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        Ret::Err
    }

    /// An atom that may contain dots, without skipping CFWS inside it.
    fn parse_atom_or_dot(&mut self, out: &mut Vec<u8>) -> Ret {
        let start = self.pos;
        while self.more() {
            let c = self.peek();
            if is_atext(c) || c == b'.' {
                self.pos += 1;
                continue;
            }
            out.extend_from_slice(self.slice(start, self.pos));
            return self.skip_lwsp();
        }
        out.extend_from_slice(self.slice(start, self.pos));
        Ret::End
    }

    /// `phrase` (and `obs-phrase`): words joined by one space.
    pub(crate) fn parse_phrase(&mut self, out: &mut Vec<u8>) -> Ret {
        if !self.more() {
            return Ret::End;
        }
        if self.peek() == b'.' {
            return Ret::Err;
        }
        loop {
            let ret = if self.peek() == b'"' {
                self.parse_quoted_string(out)
            } else {
                self.parse_atom_or_dot(out)
            };
            if ret <= Ret::End {
                return ret;
            }
            let c = self.peek();
            if !is_atext(c) && c != b'"' && c != b'.' {
                break;
            }
            out.push(b' ');
        }
        self.skip_lwsp()
    }

    /// `domain-literal`, brackets and backslashes kept; the cursor is on `[`.
    fn parse_domain_literal(&mut self, out: &mut Vec<u8>) -> Ret {
        let mut start = self.pos;
        self.pos += 1;
        while self.pos < self.data.len() {
            match self.peek() {
                0 => {
                    out.extend_from_slice(self.slice(start, self.pos));
                    out.extend_from_slice(NUL_REPLACEMENT);
                    start = self.pos + 1;
                }
                b'[' => return Ret::Err,
                b']' => {
                    out.extend_from_slice(self.slice(start, self.pos + 1));
                    self.pos += 1;
                    return self.skip_lwsp();
                }
                b'\n' => {
                    let mut end = self.pos;
                    if end > start && self.data.get(end - 1) == Some(&b'\r') {
                        end -= 1;
                    }
                    out.extend_from_slice(self.slice(start, end));
                    start = self.pos + 1;
                }
                b'\\' => {
                    self.pos += 1;
                    if self.pos >= self.data.len() {
                        return Ret::Err;
                    }
                    if matches!(self.peek(), b'\r' | b'\n' | 0) {
                        out.extend_from_slice(self.slice(start, self.pos));
                        start = self.pos;
                        self.pos -= 1;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        Ret::Err
    }

    /// `"@" domain`; the cursor is on `@`.
    pub(crate) fn parse_domain(&mut self, out: &mut Vec<u8>) -> Ret {
        self.pos += 1;
        if self.skip_lwsp() <= Ret::End {
            return Ret::Err;
        }
        if self.peek() == b'[' {
            self.parse_domain_literal(out)
        } else {
            self.parse_dot_atom(out)
        }
    }

    /// `type "/" subtype` of RFC 2045 into `out` as `type/subtype`. On `Err` `out`
    /// keeps what could be read (Dovecot still shows a broken type).
    pub(crate) fn parse_content_type(&mut self, out: &mut Vec<u8>) -> Ret {
        let start_len = out.len();
        if self.skip_lwsp() <= Ret::End {
            return Ret::Err;
        }
        if self.parse_mime_token(out) <= Ret::End || out.len() == start_len {
            return Ret::Err;
        }
        if self.peek() != b'/' {
            out.truncate(start_len);
            return Ret::Err;
        }
        self.pos += 1;
        if self.skip_lwsp() <= Ret::End {
            out.truncate(start_len);
            return Ret::Err;
        }
        out.push(b'/');
        let sub_start = out.len();
        let ret = self.parse_mime_token(out);
        if ret == Ret::Err || out.len() == sub_start || (self.more() && self.peek() != b';') {
            out.truncate(start_len);
            return Ret::Err;
        }
        ret
    }

    /// One `";" attribute "=" value`; `None` at the end of input.
    fn parse_content_param(&mut self) -> Option<ParamItem> {
        if !self.more() {
            return None;
        }
        if self.peek() != b';' {
            return Some(ParamItem::Broken);
        }
        self.pos += 1;
        if self.skip_lwsp() <= Ret::End {
            return Some(ParamItem::Broken);
        }
        let mut key = Vec::new();
        if self.parse_mime_token(&mut key) <= Ret::End {
            return Some(ParamItem::Broken);
        }
        if self.peek() != b'=' {
            return Some(ParamItem::Broken);
        }
        self.pos += 1;
        let mut value = Vec::new();
        let mut ret = self.skip_lwsp();
        if ret <= Ret::End {
            // Broken or empty value: keep the key with an empty value.
        } else if self.peek() == b'"' {
            ret = self.parse_quoted_string(&mut value);
        } else if self.peek() == b'=' {
            // Broken input such as name==?utf-8?b?...?=: take up to the next separator.
            while self.more() && !matches!(self.peek(), b';' | b' ' | b'\t' | b'\r' | b'\n') {
                value.push(self.peek());
                self.pos += 1;
            }
        } else {
            ret = self.parse_mime_token(&mut value);
        }
        if ret == Ret::Err {
            return Some(ParamItem::Broken);
        }
        Some(ParamItem::Param(key, value))
    }

    /// The parameter list after a `Content-Type` or `Content-Disposition` value, with
    /// RFC 2231 continuations (`name*0`, `name*1*`, ...) merged into one `name` or
    /// `name*` parameter the way Dovecot does: the value keeps its
    /// `charset'language'%XX` form, so it stays 7-bit. At most `max` parameters.
    pub(crate) fn parse_params(&mut self, max: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut plain: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut ext: Vec<Rfc2231Piece> = Vec::new();
        while let Some(item) = self.parse_content_param() {
            match item {
                ParamItem::Broken => {
                    if !self.more() {
                        break;
                    }
                    self.pos += 1;
                    continue;
                }
                ParamItem::Param(key, value) => {
                    if plain.len() + ext.len() >= max {
                        continue;
                    }
                    match split_rfc2231_key(&key) {
                        Some((name, idx, extended)) => ext.push(Rfc2231Piece {
                            key: name.to_vec(),
                            idx,
                            extended,
                            value,
                        }),
                        None => plain.push((key, value)),
                    }
                }
            }
        }
        merge_rfc2231(plain, ext)
    }
}

/// What one `;`-separated parameter turned out to be.
enum ParamItem {
    /// `attribute=value`.
    Param(Vec<u8>, Vec<u8>),
    /// Not a parameter: skip one octet and try again.
    Broken,
}

struct Rfc2231Piece {
    key: Vec<u8>,
    idx: u32,
    extended: bool,
    value: Vec<u8>,
}

/// `name*`, `name*N` or `name*N*` → (name, N, extended); `None` for anything else.
/// (Dovecot reuses the previous index for a bare `name*`; here it is 0.)
fn split_rfc2231_key(key: &[u8]) -> Option<(&[u8], u32, bool)> {
    let star = key.iter().position(|&b| b == b'*')?;
    let name = key.get(..star)?;
    let mut rest = key.get(star..)?;
    let mut idx = 0u32;
    if rest.len() > 1 {
        rest = rest.get(1..)?;
        while let Some((&d, tail)) = rest.split_first() {
            if !d.is_ascii_digit() {
                break;
            }
            idx = idx.wrapping_mul(10).wrapping_add(u32::from(d - b'0'));
            rest = tail;
        }
    }
    let extended = match rest {
        [] => false,
        [b'*'] => true,
        _ => return None,
    };
    Some((name, idx, extended))
}

fn merge_rfc2231(
    mut out: Vec<(Vec<u8>, Vec<u8>)>,
    mut pieces: Vec<Rfc2231Piece>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    if pieces.is_empty() {
        return out;
    }
    // Stable sort by (key, index); keys compare case-sensitively like strcmp.
    pieces.sort_by(|a, b| a.key.cmp(&b.key).then(a.idx.cmp(&b.idx)));
    let mut i = 0;
    while i < pieces.len() {
        let Some(first) = pieces.get(i) else { break };
        let mut j = i;
        let mut ok = true;
        let mut have_extended = false;
        let mut next_idx = 0u32;
        while let Some(p) = pieces.get(j) {
            if !p.key.eq_ignore_ascii_case(&first.key) {
                break;
            }
            if p.idx != next_idx {
                ok = false;
            }
            have_extended |= p.extended;
            next_idx = next_idx.wrapping_add(1);
            j += 1;
        }
        let group = pieces.get(i..j).unwrap_or_default();
        if !ok {
            for p in group {
                let mut key = p.key.clone();
                key.push(b'*');
                key.extend_from_slice(p.idx.to_string().as_bytes());
                if p.extended {
                    key.push(b'*');
                }
                out.push((key, p.value.clone()));
            }
        } else {
            let mut value = Vec::new();
            if !first.extended && have_extended {
                value.extend_from_slice(b"''");
            }
            for p in group {
                if !p.extended && have_extended {
                    for &b in &p.value {
                        if b == b'%' {
                            value.extend_from_slice(b"%25");
                        } else {
                            value.push(b);
                        }
                    }
                } else {
                    value.extend_from_slice(&p.value);
                }
            }
            let mut key = first.key.clone();
            if have_extended {
                key.push(b'*');
            }
            out.push((key, value));
        }
        i = j.max(i + 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_and_params() {
        let mut p = Rfc822::new(b"text/plain; charset=\"utf-8\" (c); format=flowed");
        let mut ct = Vec::new();
        assert_eq!(p.parse_content_type(&mut ct), Ret::More);
        assert_eq!(ct, b"text/plain");
        let params = p.parse_params(64);
        assert_eq!(
            params,
            vec![
                (b"charset".to_vec(), b"utf-8".to_vec()),
                (b"format".to_vec(), b"flowed".to_vec())
            ]
        );
    }

    #[test]
    fn rfc2231_merge() {
        let mut p = Rfc822::new(b"; a*1*=%41; a*0*=utf-8''%42; b*0=x; b*2=y; c*=us-ascii'en'z");
        let params = p.parse_params(64);
        assert_eq!(
            params,
            vec![
                (b"a*".to_vec(), b"utf-8''%42%41".to_vec()),
                (b"b*0".to_vec(), b"x".to_vec()),
                (b"b*2".to_vec(), b"y".to_vec()),
                (b"c*".to_vec(), b"us-ascii'en'z".to_vec()),
            ]
        );
    }

    #[test]
    fn phrase_and_comment() {
        let mut p = Rfc822::new(b"\"Joe Q.\" Public (x) <a@b>");
        let mut out = Vec::new();
        assert_eq!(p.parse_phrase(&mut out), Ret::More);
        assert_eq!(out, b"Joe Q. Public");
        assert_eq!(p.peek(), b'<');
    }
}
