//! Envelope paths (RFC 5321 §4.1.2, with the UTF-8 extensions of RFC 6531 §3.3).
//!
//! ```text
//! Reverse-path   = Path / "<>"
//! Forward-path   = Path
//! Path           = "<" [ A-d-l ":" ] Mailbox ">"
//! A-d-l          = At-domain *( "," At-domain )
//! At-domain      = "@" Domain
//! Mailbox        = Local-part "@" ( Domain / address-literal )
//! Local-part     = Dot-string / Quoted-string
//! Dot-string     = Atom *("."  Atom)
//! Quoted-string  = DQUOTE *QcontentSMTP DQUOTE
//! QcontentSMTP   = qtextSMTP / quoted-pairSMTP
//! quoted-pairSMTP= %d92 %d32-126
//! qtextSMTP      = %d32-33 / %d35-91 / %d93-126
//! Domain         = sub-domain *("." sub-domain)
//! sub-domain     = Let-dig [Ldh-str]
//! address-literal= "[" ( IPv4-address-literal / IPv6-address-literal /
//!                        General-address-literal ) "]"
//! ```
//! RFC 6531 §3.3 adds `UTF8-non-ascii` to `atext`, `qtextSMTP` and `sub-domain`; a
//! parsed [`Mailbox`] says whether it used any ([`Mailbox::is_utf8`]), and the session
//! refuses such a path unless the transaction declared `SMTPUTF8`.

use std::fmt;

/// Longest local part (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;
/// Longest domain (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;
/// Longest path, angle brackets included (RFC 5321 §4.5.3.1.3).
pub const MAX_PATH: usize = 256;

/// Why a path was refused (the text is fit for a reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathError(pub &'static str);

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The host part of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name, as written (case kept).
    Domain(String),
    /// An address literal without its brackets: `1.2.3.4`, `IPv6:…`, or
    /// `tag:content` (RFC 5321 §4.1.3).
    Literal(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Literal(l) => write!(f, "[{l}]"),
        }
    }
}

/// `Mailbox = Local-part "@" ( Domain / address-literal )`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    /// The local part, unquoted (a quoted-string's quotes and backslashes removed;
    /// [`Mailbox::local_wire`] quotes it again where needed, so two spellings of one
    /// local part compare equal).
    pub local: String,
    /// The domain or address literal.
    pub host: Host,
}

impl Mailbox {
    /// True when the local part or the domain holds non-ASCII characters
    /// (RFC 6531 §3.3: only allowed with `SMTPUTF8`).
    pub fn is_utf8(&self) -> bool {
        !self.local.is_ascii()
            || match &self.host {
                Host::Domain(d) => !d.is_ascii(),
                Host::Literal(l) => !l.is_ascii(),
            }
    }

    /// The domain, if the host is not an address literal.
    pub fn domain(&self) -> Option<&str> {
        match &self.host {
            Host::Domain(d) => Some(d),
            Host::Literal(_) => None,
        }
    }

    /// The local part as it must be written on the wire: as is when it is a valid
    /// Dot-string, else as a quoted-string.
    pub fn local_wire(&self) -> String {
        if is_dot_string(&self.local) {
            return self.local.clone();
        }
        let mut q = String::with_capacity(self.local.len() + 2);
        q.push('"');
        for c in self.local.chars() {
            if c == '"' || c == '\\' {
                q.push('\\');
            }
            q.push(c);
        }
        q.push('"');
        q
    }
}

impl fmt::Display for Mailbox {
    /// `local@host` in wire form (no angle brackets).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local_wire(), self.host)
    }
}

/// A `Path`: an optional source route and a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    /// The source route's domains (`<@a,@b:user@c>` gives `["a", "b"]`). RFC 5321
    /// §3.3 and Appendix C: servers SHOULD ignore it; buudien recognises it so that
    /// a route through a local domain cannot be used to relay.
    pub route: Vec<String>,
    /// The mailbox.
    pub mailbox: Mailbox,
}

impl fmt::Display for Path {
    /// `<@a,@b:local@host>` or `<local@host>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<")?;
        if !self.route.is_empty() {
            for (i, d) in self.route.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "@{d}")?;
            }
            f.write_str(":")?;
        }
        write!(f, "{}>", self.mailbox)
    }
}

/// The argument of `MAIL FROM:` (RFC 5321 §4.1.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversePath {
    /// `<>`: the null sender (bounces, receipts).
    Null,
    /// A real sender.
    Path(Path),
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => f.write_str("<>"),
            ReversePath::Path(p) => p.fmt(f),
        }
    }
}

/// The argument of `RCPT TO:` (RFC 5321 §4.1.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardPath {
    /// `<Postmaster>` without a domain, which every server must accept.
    Postmaster,
    /// A recipient.
    Path(Path),
}

impl fmt::Display for ForwardPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardPath::Postmaster => f.write_str("<Postmaster>"),
            ForwardPath::Path(p) => p.fmt(f),
        }
    }
}

/// RFC 5322 `atext`, plus any non-ASCII character (RFC 6531 §3.3).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// `Dot-string = Atom *("." Atom)`.
pub fn is_dot_string(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// `Domain = sub-domain *("." sub-domain)`, `sub-domain = Let-dig [Ldh-str]`, with
/// U-labels allowed (RFC 6531 §3.3). Lengths per RFC 5321 §4.5.3.1.2 and RFC 1035.
pub fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_DOMAIN
        && s.split('.').all(|label| {
            let letdig = |c: char| c.is_ascii_alphanumeric() || !c.is_ascii();
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| letdig(c) || c == '-')
                && label.chars().next().is_some_and(letdig)
                && label.chars().last().is_some_and(letdig)
        })
}

/// The content of an address literal (RFC 5321 §4.1.3), without brackets:
/// `IPv4-address-literal`, `IPv6:` + IPv6 address, or `tag:dcontent`.
pub fn is_address_literal(s: &str) -> bool {
    if s.parse::<std::net::Ipv4Addr>().is_ok() && s.split('.').count() == 4 {
        return true;
    }
    if let Some(v6) = s
        .strip_prefix("IPv6:")
        .or_else(|| s.strip_prefix("ipv6:"))
        .or_else(|| s.strip_prefix("IPV6:"))
    {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    // General-address-literal = Standardized-tag ":" 1*dcontent
    match s.split_once(':') {
        Some((tag, content)) => {
            let tag_ok = !tag.is_empty()
                && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && tag
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric())
                && tag
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_ascii_alphanumeric());
            let content_ok = !content.is_empty()
                && content
                    .bytes()
                    .all(|b| (33..=90).contains(&b) || (94..=126).contains(&b));
            tag_ok && content_ok
        }
        None => false,
    }
}

/// Parses `Reverse-path` (`<>` or a `Path`).
pub fn parse_reverse_path(s: &str) -> Result<ReversePath, PathError> {
    if s == "<>" {
        return Ok(ReversePath::Null);
    }
    parse_path(s).map(ReversePath::Path)
}

/// Parses `Forward-path`, including the special `<Postmaster>` (RFC 5321 §4.1.1.3).
pub fn parse_forward_path(s: &str) -> Result<ForwardPath, PathError> {
    if s.eq_ignore_ascii_case("<postmaster>") {
        return Ok(ForwardPath::Postmaster);
    }
    parse_path(s).map(ForwardPath::Path)
}

/// Parses `Path = "<" [ A-d-l ":" ] Mailbox ">"`.
pub fn parse_path(s: &str) -> Result<Path, PathError> {
    if s.len() > MAX_PATH {
        return Err(PathError("path too long"));
    }
    let inner = s
        .strip_prefix('<')
        .and_then(|r| r.strip_suffix('>'))
        .ok_or(PathError("the path must be enclosed in <>"))?;
    let (route, mailbox) = if inner.starts_with('@') {
        // The route ends at the first ':' (no ':' can occur in an At-domain).
        let (adl, rest) = inner
            .split_once(':')
            .ok_or(PathError("source route without ':'"))?;
        let mut route = Vec::new();
        for at_domain in adl.split(',') {
            let d = at_domain
                .strip_prefix('@')
                .ok_or(PathError("source route element without '@'"))?;
            if !is_domain(d) {
                return Err(PathError("invalid domain in the source route"));
            }
            route.push(d.to_owned());
        }
        (route, rest)
    } else {
        (Vec::new(), inner)
    };
    Ok(Path {
        route,
        mailbox: parse_mailbox(mailbox)?,
    })
}

/// Parses `Mailbox = Local-part "@" ( Domain / address-literal )`.
pub fn parse_mailbox(s: &str) -> Result<Mailbox, PathError> {
    let (local, quoted, rest) = if let Some(after) = s.strip_prefix('"') {
        let (local, used) = quoted_string(after)?;
        let rest = after
            .get(used..)
            .ok_or(PathError("bad quoted local part"))?;
        (local, true, rest)
    } else {
        let at = s.rfind('@').ok_or(PathError("no '@' in the address"))?;
        let (local, rest) = s.split_at(at);
        if !is_dot_string(local) {
            return Err(PathError("invalid local part"));
        }
        (local.to_owned(), false, rest)
    };
    let host = rest
        .strip_prefix('@')
        .ok_or(PathError("no '@' after the local part"))?;
    if local.is_empty() && !quoted {
        return Err(PathError("empty local part"));
    }
    if local.len() > MAX_LOCAL_PART {
        return Err(PathError("local part longer than 64 octets"));
    }
    let host = if let Some(lit) = host.strip_prefix('[') {
        let lit = lit
            .strip_suffix(']')
            .ok_or(PathError("unterminated address literal"))?;
        if !is_address_literal(lit) {
            return Err(PathError("invalid address literal"));
        }
        Host::Literal(lit.to_owned())
    } else {
        if !is_domain(host) {
            return Err(PathError("invalid domain"));
        }
        Host::Domain(host.to_owned())
    };
    Ok(Mailbox { local, host })
}

/// Reads a quoted-string's content after its opening quote; returns the unquoted text
/// and how many bytes of `s` were used (closing quote included).
fn quoted_string(s: &str) -> Result<(String, usize), PathError> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\\' => match chars.next() {
                Some((_, q)) if (' '..='~').contains(&q) => out.push(q),
                _ => return Err(PathError("invalid quoted-pair in the local part")),
            },
            c if (' '..='~').contains(&c) || !c.is_ascii() => out.push(c),
            _ => return Err(PathError("invalid character in the quoted local part")),
        }
    }
    Err(PathError("unterminated quoted local part"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn mb(s: &str) -> Mailbox {
        parse_mailbox(s).unwrap()
    }

    #[test]
    fn plain_paths() {
        assert_eq!(parse_reverse_path("<>").unwrap(), ReversePath::Null);
        let ReversePath::Path(p) = parse_reverse_path("<Ann.Lee@Example.org>").unwrap() else {
            panic!()
        };
        assert!(p.route.is_empty());
        assert_eq!(p.mailbox.local, "Ann.Lee");
        assert_eq!(p.mailbox.domain(), Some("Example.org"));
        assert_eq!(p.to_string(), "<Ann.Lee@Example.org>");
        assert_eq!(
            parse_forward_path("<POSTMASTER>").unwrap(),
            ForwardPath::Postmaster
        );
        assert!(matches!(
            parse_forward_path("<postmaster@example.org>").unwrap(),
            ForwardPath::Path(_)
        ));
    }

    #[test]
    fn source_routes_are_recognised() {
        let p = parse_path("<@a.example,@b.example:user@c.example>").unwrap();
        assert_eq!(p.route, vec!["a.example", "b.example"]);
        assert_eq!(p.mailbox.to_string(), "user@c.example");
        assert_eq!(p.to_string(), "<@a.example,@b.example:user@c.example>");
        assert!(parse_path("<@a.example user@c.example>").is_err());
        assert!(parse_path("<@:user@c.example>").is_err());
        assert!(parse_path("<a.example:user@c.example>").is_err());
    }

    #[test]
    fn quoted_local_parts() {
        let m = mb(r#""john doe"@example.org"#);
        assert_eq!(m.local, "john doe");
        assert_eq!(m.to_string(), r#""john doe"@example.org"#);
        let m = mb(r#""a\"b@c"@example.org"#);
        assert_eq!(m.local, "a\"b@c");
        assert_eq!(m.to_string(), r#""a\"b@c"@example.org"#);
        // A quoted local part that is a valid dot-string is written plainly.
        assert_eq!(mb(r#""ann"@example.org"#).to_string(), "ann@example.org");
        assert_eq!(mb(r#""ann"@example.org"#), mb("ann@example.org"));
        assert_eq!(mb(r#"""@example.org"#).to_string(), r#"""@example.org"#);
        assert!(parse_mailbox(r#""unterminated@example.org"#).is_err());
        assert!(parse_mailbox("\"a\u{1}\"@example.org").is_err());
    }

    #[test]
    fn address_literals() {
        assert_eq!(mb("u@[192.0.2.1]").host, Host::Literal("192.0.2.1".into()));
        assert_eq!(
            mb("u@[IPv6:2001:db8::1]").host,
            Host::Literal("IPv6:2001:db8::1".into())
        );
        assert!(parse_mailbox("u@[300.1.1.1]").is_err());
        assert!(parse_mailbox("u@[1.2.3]").is_err());
        assert!(parse_mailbox("u@[IPv6:zz]").is_err());
        assert!(parse_mailbox("u@[x-tag:stuff]").is_ok());
        assert!(parse_mailbox("u@[192.0.2.1").is_err());
    }

    #[test]
    fn utf8_is_flagged() {
        assert!(mb("jöran@example.org").is_utf8());
        assert!(mb("joran@bücher.de").is_utf8());
        assert!(!mb("joran@example.org").is_utf8());
    }

    #[test]
    fn bad_mailboxes() {
        for s in [
            "",
            "ann",
            "@example.org",
            "ann@",
            "a..b@example.org",
            ".a@example.org",
            "a b@example.org",
            "a@-example.org",
            "a@exa mple.org",
            "a@example..org",
            "a(b)@example.org",
        ] {
            assert!(parse_mailbox(s).is_err(), "{s:?} accepted");
        }
        let long = format!("{}@example.org", "a".repeat(65));
        assert!(parse_mailbox(&long).is_err());
        assert!(parse_path("ann@example.org").is_err());
        assert!(parse_path(&format!("<{}@example.org>", "a".repeat(300))).is_err());
    }

    #[test]
    fn percent_and_bang_stay_in_the_local_part() {
        let m = mb("user%other.example@example.org");
        assert_eq!(m.local, "user%other.example");
        assert_eq!(m.domain(), Some("example.org"));
        let m = mb("other!user@example.org");
        assert_eq!(m.local, "other!user");
    }
}
