//! The greeting and EHLO/HELO (RFC 5321 §4.1.1.1, §4.2; RFC 1869 §4 EHLO keywords).

use crate::session::{Flow, Helo, Session};
use buudien_smtp_proto::code;
use buudien_smtp_proto::path::{is_address_literal, is_domain};
use buudien_smtp_proto::reply::{write, write_lines};
use buudien_store::QueueStore;

/// RFC 5321 §4.2, §3.1 — the greeting `220 <hostname> ESMTP buudien` (no enhanced
/// status code: RFC 2034 §3).
pub(crate) fn greeting<S>(session: &Session<'_, S>, out: &mut Vec<u8>) {
    let host = &session.shared.config.hostname;
    write(out, code::READY, None, &format!("{host} ESMTP buudien"));
}

/// RFC 5321 §4.1.1.1 — `EHLO domain` / `HELO domain`: resets any transaction
/// (§4.1.4) and, for EHLO, lists the extensions.
///
/// Keywords: PIPELINING (RFC 2920), SIZE (RFC 1870), 8BITMIME (RFC 6152),
/// ENHANCEDSTATUSCODES (RFC 2034), SMTPUTF8 (RFC 6531), CHUNKING (RFC 3030; no
/// BINARYMIME), DSN (RFC 3461), STARTTLS (RFC 3207, only on a plain connection with
/// a certificate), AUTH PLAIN LOGIN (RFC 4954, only where AUTH may be used).
pub(crate) fn ehlo<S: QueueStore>(
    session: &mut Session<'_, S>,
    out: &mut Vec<u8>,
    domain: String,
    extended: bool,
) -> Flow {
    let verb = if extended { "EHLO" } else { "HELO" };
    if !valid_helo(&domain) {
        write(
            out,
            code::PARAM_SYNTAX_ERROR,
            None,
            &format!("syntax: {verb} hostname (a domain or an address literal)"),
        );
        return Flow::Bad;
    }
    session.txn = None;
    let host = session.shared.config.hostname.clone();
    if !extended {
        write(out, code::OK, None, &host);
        session.helo = Some(Helo {
            name: domain,
            extended,
        });
        return Flow::Next;
    }
    let mut lines = vec![
        format!("{host} greets {domain}"),
        "PIPELINING".to_owned(),
        format!("SIZE {}", session.shared.config.max_message_size),
        "8BITMIME".to_owned(),
        "ENHANCEDSTATUSCODES".to_owned(),
        "SMTPUTF8".to_owned(),
        "CHUNKING".to_owned(),
        "DSN".to_owned(),
    ];
    if session.starttls_offered() {
        lines.push("STARTTLS".to_owned());
    }
    if session.auth_allowed() && session.user.is_none() {
        lines.push("AUTH PLAIN LOGIN".to_owned());
    }
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    write_lines(out, code::OK, None, &refs);
    session.helo = Some(Helo {
        name: domain,
        extended,
    });
    Flow::Next
}

/// An EHLO/HELO argument buudien takes: a domain (RFC 5321 §4.1.2; underscores,
/// which Windows host names carry, are tolerated) or an address literal. Nothing
/// that could break the `Received` field it goes into.
fn valid_helo(s: &str) -> bool {
    if let Some(lit) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return is_address_literal(lit);
    }
    is_domain(s)
        || (s.len() <= 255
            && !s.is_empty()
            && s.chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_')))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn helo_arguments() {
        for ok in [
            "client.example.org",
            "localhost",
            "DESKTOP-AB12",
            "my_host.lan",
            "[192.0.2.1]",
            "[IPv6:2001:db8::1]",
            "bücher.de",
        ] {
            assert!(valid_helo(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "x(y)",
            "[1.2.3]",
            "host;evil",
            "[192.0.2.1",
            "a\u{0}b",
            "<x>",
        ] {
            assert!(!valid_helo(bad), "{bad:?}");
        }
    }
}
