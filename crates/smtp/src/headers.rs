//! The header section of a received message (RFC 5322 §2.2, §3.6): field lookup,
//! the address-list reader behind the submission From check, message ids, and the
//! `Received` trace field (RFC 5321 §4.4). RFC 5322 dates come from the queue's
//! [`rfc5322_date`](buudien_queue::dsn::rfc5322_date), the one formatter of both.

use std::net::IpAddr;

/// One header field: its name and its value with folding undone (CRLFs removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field<'m> {
    /// The field name, as written.
    pub(crate) name: &'m [u8],
    /// The unfolded value (after the colon).
    pub(crate) value: Vec<u8>,
}

/// The header fields of a CRLF message, in order. Lines that are neither a field nor
/// a continuation (no colon) are skipped.
pub(crate) fn fields(msg: &[u8]) -> Vec<Field<'_>> {
    let header = msg
        .get(..buudien_message::header_len(msg))
        .unwrap_or_default();
    let mut out: Vec<Field<'_>> = Vec::new();
    for line in header.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            if let Some(last) = out.last_mut() {
                last.value.extend_from_slice(line);
            }
            continue;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = line.get(..colon).unwrap_or_default();
            let value = line.get(colon + 1..).unwrap_or_default().to_vec();
            out.push(Field { name, value });
        }
    }
    out
}

/// How many fields are named `name` (case-insensitive).
pub(crate) fn count(fields: &[Field<'_>], name: &str) -> usize {
    fields
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
        .count()
}

/// The values of the fields named `name`, as text (invalid UTF-8 replaced).
pub(crate) fn values(fields: &[Field<'_>], name: &str) -> Vec<String> {
    fields
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|f| String::from_utf8_lossy(&f.value).into_owned())
        .collect()
}

/// The addr-specs of an RFC 5322 §3.4 `address-list` (or `mailbox-list`): display
/// names, comments and group syntax are dropped, angle addresses and bare
/// addr-specs kept (a route in an angle address is dropped, RFC 5322 §4.4).
/// `None` when the value is malformed (unbalanced quotes, comments or brackets).
///
/// ```text
/// address-list = address *("," address)
/// address      = mailbox / group
/// mailbox      = name-addr / addr-spec
/// name-addr    = [display-name] angle-addr
/// group        = display-name ":" [group-list] ";" [CFWS]
/// ```
pub(crate) fn address_list(value: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut plain = String::new();
    let mut angle: Option<String> = None;
    let mut in_angle = false;
    let mut in_quote = false;
    let mut comment = 0usize;
    let mut chars = value.chars();
    let finish = |plain: &mut String, angle: &mut Option<String>, out: &mut Vec<String>| {
        let addr = match angle.take() {
            Some(a) => {
                let a = a.trim();
                // obs-route: "@a,@b:" before the addr-spec.
                let a = if a.starts_with('@') {
                    a.split_once(':').map_or(a, |(_, rest)| rest)
                } else {
                    a
                };
                a.trim().to_owned()
            }
            None => plain.trim().to_owned(),
        };
        plain.clear();
        if !addr.is_empty() {
            out.push(addr);
        }
    };
    while let Some(c) = chars.next() {
        if in_quote {
            let target = if in_angle {
                angle.get_or_insert_with(String::new)
            } else {
                &mut plain
            };
            target.push(c);
            match c {
                '\\' => target.push(chars.next()?),
                '"' => in_quote = false,
                _ => {}
            }
            continue;
        }
        if comment > 0 {
            match c {
                '(' => comment += 1,
                ')' => comment -= 1,
                '\\' => {
                    chars.next()?;
                }
                _ => {}
            }
            continue;
        }
        match c {
            '(' => comment = 1,
            ')' => return None,
            '"' => {
                in_quote = true;
                if in_angle {
                    angle.get_or_insert_with(String::new).push(c);
                } else {
                    plain.push(c);
                }
            }
            '<' if !in_angle => {
                in_angle = true;
                angle = Some(String::new());
                // The text before it was a display name.
                plain.clear();
            }
            '<' => return None,
            '>' if in_angle => in_angle = false,
            '>' => return None,
            ',' | ';' if !in_angle => finish(&mut plain, &mut angle, &mut out),
            // A group's display name ends at ':'.
            ':' if !in_angle && angle.is_none() => plain.clear(),
            c if in_angle => angle.get_or_insert_with(String::new).push(c),
            // Text after an angle address (before the comma) is not allowed.
            c if angle.is_some() && !c.is_whitespace() => return None,
            c if !c.is_whitespace() || !plain.trim().is_empty() => plain.push(c),
            _ => {}
        }
    }
    if in_quote || in_angle || comment > 0 {
        return None;
    }
    finish(&mut plain, &mut angle, &mut out);
    // A bare addr-spec cannot hold spaces outside quotes (that would be a display
    // name without an angle address).
    if out
        .iter()
        .any(|a| !a.starts_with('"') && a.chars().any(char::is_whitespace))
    {
        return None;
    }
    Some(out)
}

/// A new transaction id: 16 characters from a 80-bit random value (base 32,
/// Crockford's alphabet). Used in `Received`, the `250` reply and `Message-ID`s.
pub(crate) fn new_id() -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let hi: u64 = rand::random();
    let lo: u16 = rand::random();
    let mut bits = (u128::from(hi) << 16) | u128::from(lo);
    let mut id = String::with_capacity(16);
    for _ in 0..16 {
        let i = usize::try_from(bits & 31).unwrap_or(0);
        id.push(char::from(ALPHABET.get(i).copied().unwrap_or(b'0')));
        bits >>= 5;
    }
    id
}

/// The address literal of a peer (RFC 5321 §4.1.3), IPv4-mapped IPv6 shown as IPv4.
pub(crate) fn address_literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("[{v4}]"),
            None => format!("[IPv6:{v6}]"),
        },
    }
}

/// What goes into a `Received` field.
#[derive(Debug)]
pub(crate) struct Trace<'a> {
    /// The EHLO/HELO argument.
    pub(crate) helo: &'a str,
    /// The client's address.
    pub(crate) peer: IpAddr,
    /// This server's name.
    pub(crate) hostname: &'a str,
    /// `SMTP`, `ESMTP`, `ESMTPSA`, `UTF8SMTPS`… (RFC 3848, RFC 6531 §3.7.3).
    pub(crate) protocol: String,
    /// TLS version and cipher suite, when TLS is in use.
    pub(crate) tls: Option<(&'a str, &'a str)>,
    /// The authenticated user, if any.
    pub(crate) user: Option<&'a str>,
    /// The transaction id.
    pub(crate) id: &'a str,
    /// The recipient, when there is exactly one.
    pub(crate) for_rcpt: Option<&'a str>,
    /// When.
    pub(crate) date: String,
}

/// RFC 5321 §4.4 `Stamp`:
/// `from <helo> (<literal>) by <hostname> with <protocol> id <id> [for <rcpt>]; <date>`,
/// with the TLS details and the authenticated user as comments, folded over lines.
pub(crate) fn received(t: &Trace<'_>) -> String {
    let mut s = format!("Received: from {} ({})", t.helo, address_literal(t.peer));
    if let Some((version, cipher)) = t.tls {
        s.push_str(&format!("\r\n\t(using {version} with cipher {cipher})"));
    }
    if let Some(user) = t.user {
        s.push_str(&format!("\r\n\t(authenticated sender: {user})"));
    }
    s.push_str(&format!(
        "\r\n\tby {} (buudien) with {} id {}",
        t.hostname, t.protocol, t.id
    ));
    if let Some(rcpt) = t.for_rcpt {
        s.push_str(&format!("\r\n\tfor <{rcpt}>"));
    }
    s.push_str(&format!(";\r\n\t{}\r\n", t.date));
    s
}

/// What the session was like, for the `with` keyword of `Received`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Via {
    /// EHLO (not HELO).
    pub(crate) extended: bool,
    /// An SMTPUTF8 transaction.
    pub(crate) utf8: bool,
    /// Over TLS.
    pub(crate) tls: bool,
    /// Authenticated.
    pub(crate) auth: bool,
}

impl Via {
    /// The `with` keyword (RFC 3848 §2, RFC 6531 §3.7.3): `SMTP` after HELO, else
    /// `ESMTP`, plus `S` for TLS and `A` for an authenticated session; `UTF8SMTP…`
    /// for an SMTPUTF8 transaction.
    pub(crate) fn protocol(self) -> String {
        let mut p = String::from(match (self.extended, self.utf8) {
            (_, true) => "UTF8SMTP",
            (true, false) => "ESMTP",
            (false, false) => "SMTP",
        });
        if self.tls {
            p.push('S');
        }
        if self.auth {
            p.push('A');
        }
        p
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn fields_unfold() {
        let m =
            b"Received: from a\r\n\tby b\r\nSubject: hi\r\nreceived: x\r\n\r\nReceived: body\r\n";
        let f = fields(m);
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].value, b" from a\tby b");
        assert_eq!(count(&f, "Received"), 2);
        assert_eq!(values(&f, "subject"), vec![" hi".to_owned()]);
        assert!(fields(b"").is_empty());
        assert_eq!(fields(b"no colon here\r\n\r\n").len(), 0);
    }

    #[test]
    fn address_lists() {
        let ok = |s: &str| address_list(s).unwrap();
        assert_eq!(ok(" ann@example.org"), vec!["ann@example.org"]);
        assert_eq!(
            ok(r#" "Lee, Ann" <ann@example.org>, bob@example.org (Bob)"#),
            vec!["ann@example.org", "bob@example.org"]
        );
        assert_eq!(
            ok("=?utf-8?q?J=C3=B6?= <jo@example.org>"),
            vec!["jo@example.org"]
        );
        assert_eq!(ok("team: a@x.org, b@x.org;"), vec!["a@x.org", "b@x.org"]);
        assert_eq!(ok("undisclosed-recipients:;"), Vec::<String>::new());
        assert_eq!(ok("<@route.org:ann@example.org>"), vec!["ann@example.org"]);
        assert_eq!(
            ok(r#"Ann (the <real> one) <ann@example.org>"#),
            vec!["ann@example.org"]
        );
        assert_eq!(ok(r#""a b"@example.org"#), vec![r#""a b"@example.org"#]);
        for bad in [
            "<ann@example.org",
            "ann@example.org>",
            "\"unterminated <a@b.c>",
            "(open <a@b.c>",
            "<a@b.c> trailing",
            "Ann ann@example.org",
            "<<a@b.c>>",
        ] {
            assert_eq!(address_list(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ids_are_unique_and_plain() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|i| i.len() == 16 && i.is_ascii()));
    }

    #[test]
    fn received_field() {
        let t = Trace {
            helo: "client.example",
            peer: "::ffff:192.0.2.7".parse().unwrap(),
            hostname: "mx.example.org",
            protocol: Via {
                extended: true,
                tls: true,
                auth: true,
                ..Via::default()
            }
            .protocol(),
            tls: Some(("TLSv1.3", "TLS13_AES_256_GCM_SHA384")),
            user: Some("ann@example.org"),
            id: "ABC",
            for_rcpt: Some("bob@example.org"),
            date: "Thu, 1 Jan 1970 00:00:00 +0000".into(),
        };
        assert_eq!(
            received(&t),
            "Received: from client.example ([192.0.2.7])\r\n\
             \t(using TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384)\r\n\
             \t(authenticated sender: ann@example.org)\r\n\
             \tby mx.example.org (buudien) with ESMTPSA id ABC\r\n\
             \tfor <bob@example.org>;\r\n\
             \tThu, 1 Jan 1970 00:00:00 +0000\r\n"
        );
        assert_eq!(
            address_literal("2001:db8::1".parse().unwrap()),
            "[IPv6:2001:db8::1]"
        );
        assert_eq!(Via::default().protocol(), "SMTP");
        let via = Via {
            extended: true,
            utf8: true,
            tls: true,
            auth: false,
        };
        assert_eq!(via.protocol(), "UTF8SMTPS");
    }
}
