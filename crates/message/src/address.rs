//! RFC 5322 §3.4 `address-list` parsing for ENVELOPE, lenient the way Dovecot's
//! `message-address.c` is: a missing local part or domain becomes `MISSING_MAILBOX` /
//! `MISSING_DOMAIN`, a broken `<...>` gets the domain `SYNTAX_ERROR`, a broken route
//! `INVALID_ROUTE`, so every address shows as a four-field IMAP address. A group
//! becomes its start marker `(NIL NIL "name" NIL)`, its members, and the end marker
//! `(NIL NIL NIL NIL)` (RFC 9051 §7.5.2). Strings stay raw: encoded-words are not
//! decoded (ENVELOPE carries them as they are).

use crate::meta::Address;
use crate::rfc822::{Ret, Rfc822};

struct Ctx<'a> {
    p: Rfc822<'a>,
    out: Vec<Address>,
    cur: Cur,
    max: usize,
}

#[derive(Default)]
struct Cur {
    name: Option<Vec<u8>>,
    route: Option<Vec<u8>>,
    mailbox: Option<Vec<u8>>,
    domain: Option<Vec<u8>>,
    invalid: bool,
}

/// Parses one address header value (unfolded as [`crate::RawField::value`] gives it),
/// appending at most `max` addresses (groups count their markers) to `out`.
pub(crate) fn parse_address_list(value: &[u8], max: usize, out: &mut Vec<Address>) {
    if max == 0 {
        return;
    }
    let mut ctx = Ctx {
        p: Rfc822::new(value),
        out: std::mem::take(out),
        cur: Cur::default(),
        max,
    };
    ctx.p.last_comment = Some(Vec::new());
    let start_len = ctx.out.len();
    ctx.max = start_len.saturating_add(max);
    if ctx.p.skip_lwsp() == Ret::More {
        ctx.address_list();
    }
    *out = ctx.out;
}

impl Ctx<'_> {
    fn add(&mut self) {
        let cur = std::mem::take(&mut self.cur);
        if self.out.len() < self.max {
            self.out.push(Address {
                name: cur.name,
                adl: cur.route,
                mailbox: cur.mailbox,
                host: cur.domain,
            });
        }
    }

    fn full(&self) -> bool {
        self.out.len() >= self.max
    }

    fn address_list(&mut self) {
        loop {
            if self.full() {
                break;
            }
            if self.address() == Ret::End {
                break;
            }
            if !self.p.more() || self.p.peek() != b',' {
                break;
            }
            self.p.advance();
            let ret = self.p.skip_lwsp();
            if ret <= Ret::End {
                if ret == Ret::Err {
                    // Ends with garbage.
                    self.add_fixed();
                }
                break;
            }
        }
    }

    fn address(&mut self) -> Ret {
        let start = self.p.pos();
        match self.group() {
            Some(ret) => ret,
            None => {
                self.p.set_pos(start);
                self.mailbox()
            }
        }
    }

    /// `group`; `None` when the input is not a group.
    fn group(&mut self) -> Option<Ret> {
        let mut name = Vec::new();
        if self.p.parse_phrase(&mut name) <= Ret::End || self.p.peek() != b':' {
            return None;
        }
        self.p.advance();
        let mut ret = self.p.skip_lwsp();
        self.cur.mailbox = Some(name);
        self.add();
        if ret == Ret::More && self.p.peek() != b';' {
            loop {
                let _ = self.mailbox();
                if self.full() || !self.p.more() || self.p.peek() != b',' {
                    break;
                }
                self.p.advance();
                if self.p.skip_lwsp() <= Ret::End {
                    ret = Ret::Err;
                    break;
                }
            }
        }
        if ret >= Ret::End {
            if !self.p.more() || self.p.peek() != b';' {
                ret = Ret::Err;
            } else {
                self.p.advance();
                ret = self.p.skip_lwsp();
            }
        }
        self.add();
        Some(if ret == Ret::End { Ret::End } else { Ret::More })
    }

    /// `mailbox = name-addr / addr-spec`
    fn mailbox(&mut self) -> Ret {
        let start = self.p.pos();
        let mut ret = self.name_addr();
        if ret == Ret::Err {
            self.p.set_pos(start);
            self.cur = Cur::default();
            ret = self.addr_spec();
            if self.cur.invalid
                && self.cur.name.is_none()
                && self.cur.mailbox.is_some()
                && self.cur.domain.is_none()
            {
                self.cur.name = self.cur.mailbox.take();
            }
        }
        if ret == Ret::Err {
            self.cur.invalid = true;
        }
        self.add_fixed();
        ret
    }

    fn add_fixed(&mut self) {
        if self.cur.mailbox.is_none() {
            self.cur.mailbox = Some(b"MISSING_MAILBOX".to_vec());
            self.cur.invalid = true;
        }
        if self.cur.domain.as_ref().is_none_or(|d| d.is_empty()) {
            self.cur.domain = Some(b"MISSING_DOMAIN".to_vec());
            self.cur.invalid = true;
        }
        self.add();
    }

    /// `name-addr = [display-name] angle-addr`
    fn name_addr(&mut self) -> Ret {
        let mut name = Vec::new();
        if self.p.parse_phrase(&mut name) <= Ret::End || self.p.peek() != b'<' {
            return Ret::Err;
        }
        self.cur.name = (!name.is_empty()).then_some(name);
        if self.angle_addr() == Ret::Err {
            self.cur.domain = Some(b"SYNTAX_ERROR".to_vec());
            self.cur.invalid = true;
        }
        self.p.status_more()
    }

    /// `"<" [ "@" route ":" ] local-part "@" domain ">"`
    fn angle_addr(&mut self) -> Ret {
        self.p.advance();
        if self.p.skip_lwsp() <= Ret::End {
            return Ret::Err;
        }
        if self.p.peek() == b'@' {
            if self.domain_list() == Ret::More && self.p.peek() == b':' {
                self.p.advance();
            } else {
                self.cur.route = Some(b"INVALID_ROUTE".to_vec());
                if !self.p.more() {
                    return Ret::Err;
                }
            }
            if self.p.skip_lwsp() <= Ret::End {
                return Ret::Err;
            }
        }
        if self.p.peek() != b'>' {
            if self.local_part() <= Ret::End {
                return Ret::Err;
            }
            if self.p.peek() == b'@' && self.domain() <= Ret::End {
                return Ret::Err;
            }
        }
        if self.p.peek() != b'>' {
            return Ret::Err;
        }
        self.p.advance();
        self.p.skip_lwsp()
    }

    /// `obs-domain-list`, kept as `@a,@b`.
    fn domain_list(&mut self) -> Ret {
        let mut route = Vec::new();
        loop {
            if !self.p.more() {
                return Ret::End;
            }
            if self.p.peek() != b'@' {
                break;
            }
            if !route.is_empty() {
                route.push(b',');
            }
            route.push(b'@');
            let ret = self.p.parse_domain(&mut route);
            if ret <= Ret::End {
                return ret;
            }
            while self.p.skip_lwsp() == Ret::More && self.p.peek() == b',' {
                self.p.advance();
            }
        }
        self.cur.route = Some(route);
        Ret::More
    }

    fn local_part(&mut self) -> Ret {
        let mut s = Vec::new();
        let ret = if self.p.peek() == b'"' {
            self.p.parse_quoted_string(&mut s)
        } else {
            self.nonstrict_dot_atom(&mut s)
        };
        if ret == Ret::Err {
            return Ret::Err;
        }
        self.cur.mailbox = Some(s);
        ret
    }

    /// A dot-atom that tolerates leading, trailing and doubled dots.
    fn nonstrict_dot_atom(&mut self, s: &mut Vec<u8>) -> Ret {
        let mut ret = Ret::Err;
        loop {
            while self.p.peek() == b'.' {
                s.push(b'.');
                self.p.advance();
                if !self.p.more() {
                    return Ret::End;
                }
                ret = Ret::More;
            }
            if self.p.peek() == b'@' {
                break;
            }
            ret = self.p.parse_atom(s);
            if !(ret == Ret::More && self.p.peek() == b'.') {
                break;
            }
        }
        ret
    }

    fn domain(&mut self) -> Ret {
        let mut s = Vec::new();
        let ret = self.p.parse_domain(&mut s);
        if ret == Ret::Err {
            return Ret::Err;
        }
        self.cur.domain = Some(s);
        ret
    }

    /// `addr-spec = local-part "@" domain`, with a trailing comment as the name.
    fn addr_spec(&mut self) -> Ret {
        self.p.last_comment = Some(Vec::new());
        let quoted = self.p.peek() == b'"';
        let mut ret = if self.p.more() {
            self.local_part()
        } else {
            Ret::End
        };
        if ret <= Ret::End {
            self.cur.invalid = true;
        }
        let mut ret2 = None;
        if ret != Ret::End && self.p.more() && self.p.peek() == b'@' {
            let r2 = self.domain();
            if r2 <= Ret::End {
                ret = r2;
            }
            ret2 = Some(r2);
        }
        let comment = self.p.last_comment.take().unwrap_or_default();
        self.p.last_comment = Some(Vec::new());
        if !comment.is_empty() {
            self.cur.name = Some(comment);
        } else if ret2.is_none() {
            // "user" alone is a mailbox; "user more words" is a display name.
            let mut phrase = self.cur.mailbox.clone().unwrap_or_default();
            phrase.push(b' ');
            let before = phrase.len();
            let _ = self.p.parse_phrase(&mut phrase);
            if phrase.len() != before {
                self.cur.mailbox = None;
                self.cur.name = Some(phrase);
            } else if !quoted {
                self.cur.domain = Some(Vec::new());
            }
            self.cur.invalid = true;
            ret = Ret::Err;
        }
        ret
    }
}

impl Rfc822<'_> {
    /// `More` while input remains, else `End`.
    fn status_more(&self) -> Ret {
        if self.more() { Ret::More } else { Ret::End }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Quad = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );

    fn parse(v: &str) -> Vec<Quad> {
        let mut out = Vec::new();
        parse_address_list(v.as_bytes(), 100, &mut out);
        let s = |b: &Option<Vec<u8>>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
        out.iter()
            .map(|a| (s(&a.name), s(&a.adl), s(&a.mailbox), s(&a.host)))
            .collect()
    }

    fn t(a: Option<&str>, b: Option<&str>, c: Option<&str>, d: Option<&str>) -> Quad {
        let o = |x: Option<&str>| x.map(str::to_owned);
        (o(a), o(b), o(c), o(d))
    }

    #[test]
    fn common_shapes() {
        assert_eq!(
            parse("\"Joe Q. Public\" <john.q.public@example.com>"),
            vec![t(
                Some("Joe Q. Public"),
                None,
                Some("john.q.public"),
                Some("example.com")
            )]
        );
        assert_eq!(
            parse("a@b (Comment Name), <c@d>, e"),
            vec![
                t(Some("Comment Name"), None, Some("a"), Some("b")),
                t(None, None, Some("c"), Some("d")),
                t(None, None, Some("e"), Some("MISSING_DOMAIN")),
            ]
        );
        assert_eq!(
            parse("undisclosed-recipients:;"),
            vec![
                t(None, None, Some("undisclosed-recipients"), None),
                t(None, None, None, None)
            ]
        );
        assert_eq!(
            parse("A Group:Ed Jones <c@a.test>,joe@where.test;"),
            vec![
                t(None, None, Some("A Group"), None),
                t(Some("Ed Jones"), None, Some("c"), Some("a.test")),
                t(None, None, Some("joe"), Some("where.test")),
                t(None, None, None, None),
            ]
        );
        assert_eq!(
            parse("<@route.a,@route.b:user@dom>"),
            vec![t(
                None,
                Some("@route.a,@route.b"),
                Some("user"),
                Some("dom")
            )]
        );
    }

    #[test]
    fn cap_is_kept() {
        let v = "a@b, ".repeat(50);
        let mut out = Vec::new();
        parse_address_list(v.as_bytes(), 10, &mut out);
        assert_eq!(out.len(), 10);
    }
}
