//! SMTP commands (RFC 5321 §4.1.1, RFC 3030 §2 BDAT, RFC 3207 §4 STARTTLS,
//! RFC 4954 §4 AUTH): one line (without its CRLF) in, a typed [`Command`] or a typed
//! [`ParseError`] out. The error kind decides the reply (`500`, `501`, `502`, `555`),
//! see [`ErrorKind`].

use crate::params::{MailParams, ParamError, RcptParams, parse_mail_params, parse_rcpt_params};
use crate::path::{ForwardPath, PathError, ReversePath, parse_forward_path, parse_reverse_path};
use std::fmt;

/// One client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO domain` (RFC 5321 §4.1.1.1); the argument as given.
    Ehlo(String),
    /// `HELO domain` (RFC 5321 §4.1.1.1).
    Helo(String),
    /// `MAIL FROM:<reverse-path> [params]` (RFC 5321 §4.1.1.2).
    Mail {
        /// The sender.
        from: ReversePath,
        /// ESMTP parameters.
        params: MailParams,
    },
    /// `RCPT TO:<forward-path> [params]` (RFC 5321 §4.1.1.3).
    Rcpt {
        /// The recipient.
        to: ForwardPath,
        /// ESMTP parameters.
        params: RcptParams,
    },
    /// `DATA` (RFC 5321 §4.1.1.4).
    Data,
    /// `BDAT size [LAST]` (RFC 3030 §2).
    Bdat {
        /// Octets in the chunk that follows the line.
        size: u64,
        /// `LAST` was given.
        last: bool,
    },
    /// `RSET` (RFC 5321 §4.1.1.5).
    Rset,
    /// `VRFY string` (RFC 5321 §4.1.1.6).
    Vrfy(String),
    /// `EXPN string` (RFC 5321 §4.1.1.7).
    Expn(String),
    /// `HELP [string]` (RFC 5321 §4.1.1.8).
    Help(Option<String>),
    /// `NOOP [string]` (RFC 5321 §4.1.1.9); the argument is ignored.
    Noop,
    /// `QUIT` (RFC 5321 §4.1.1.10).
    Quit,
    /// `STARTTLS` (RFC 3207 §4).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954 §4); the response still base64
    /// (`=` for an empty one).
    Auth {
        /// The SASL mechanism name as given.
        mechanism: String,
        /// The initial response, still encoded.
        initial: Option<String>,
    },
}

impl Command {
    /// The verb in upper case (for logs and the state gate).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Vrfy(_) => "VRFY",
            Command::Expn(_) => "EXPN",
            Command::Help(_) => "HELP",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
        }
    }
}

/// What kind of refusal a [`ParseError`] is; each maps to one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not a command at all, or not UTF-8: `500 5.5.2` (RFC 5321 §4.2.4).
    Unrecognized,
    /// A known SMTP verb buudien does not implement (TURN, ETRN, SEND, …):
    /// `502 5.5.1`.
    NotImplemented,
    /// Bad arguments: `501 5.5.4` (RFC 5321 §4.3.2).
    Syntax,
    /// A bad sender path: `501 5.1.7` (RFC 3463 X.1.7).
    BadSender,
    /// A bad recipient path: `501 5.1.3` (RFC 3463 X.1.3).
    BadRecipient,
    /// An unknown or unoffered MAIL/RCPT parameter: `555 5.5.4` (RFC 5321
    /// §4.1.1.11).
    UnsupportedParam,
    /// `BDAT` whose chunk size cannot be read: `501 5.5.4`, and the connection must be
    /// closed, because the chunk's end cannot be found (RFC 3030 §2).
    BdatSize,
    /// An HTTP request or similar sent to the SMTP port (the cross-protocol attacks
    /// Postfix also stops): `421`, close.
    ForeignProtocol,
}

/// A refused command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Which reply it gets.
    pub kind: ErrorKind,
    /// Why, fit for the reply text (no control characters).
    pub message: String,
}

impl ParseError {
    /// An error of `kind` with `message`.
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ParseError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

/// Verbs of RFC 821/5321 and common extensions that buudien knows but does not run.
const NOT_IMPLEMENTED: &[&str] = &["TURN", "ETRN", "SEND", "SOML", "SAML", "ATRN", "XCLIENT"];

/// Request lines of other protocols (HTTP) sent to an SMTP port.
const FOREIGN: &[&str] = &["GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS"];

impl Command {
    /// Parses one command line without its CRLF (RFC 5321 §4.1.1: verbs are
    /// case-insensitive; arguments are separated by one space, extra spaces are
    /// tolerated).
    pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
        let line = std::str::from_utf8(line).map_err(|_| not_utf8(line))?;
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(ParseError::new(
                ErrorKind::Unrecognized,
                "control characters in the command",
            ));
        }
        let (verb, rest) = match line.split_once([' ', '\t']) {
            Some((v, r)) => (v, r.trim_matches([' ', '\t'])),
            None => (line, ""),
        };
        let upper = verb.to_ascii_uppercase();
        match upper.as_str() {
            "EHLO" | "HELO" => {
                if rest.is_empty() {
                    return Err(ParseError::new(
                        ErrorKind::Syntax,
                        format!("{upper} needs a domain"),
                    ));
                }
                // RFC 5321 §4.1.1.1: EHLO SP ( Domain / address-literal ); anything
                // after the first word is ignored (old clients add text).
                let domain = rest.split([' ', '\t']).next().unwrap_or(rest).to_owned();
                Ok(if upper == "EHLO" {
                    Command::Ehlo(domain)
                } else {
                    Command::Helo(domain)
                })
            }
            "MAIL" => {
                let arg = strip_keyword(rest, "FROM:").ok_or_else(|| {
                    ParseError::new(ErrorKind::Syntax, "syntax: MAIL FROM:<address>")
                })?;
                let (path, params) = split_path(arg);
                let from = parse_reverse_path(path)
                    .map_err(|PathError(e)| ParseError::new(ErrorKind::BadSender, e))?;
                let params = parse_mail_params(params).map_err(param_error)?;
                Ok(Command::Mail { from, params })
            }
            "RCPT" => {
                let arg = strip_keyword(rest, "TO:").ok_or_else(|| {
                    ParseError::new(ErrorKind::Syntax, "syntax: RCPT TO:<address>")
                })?;
                let (path, params) = split_path(arg);
                let to = parse_forward_path(path)
                    .map_err(|PathError(e)| ParseError::new(ErrorKind::BadRecipient, e))?;
                let params = parse_rcpt_params(params).map_err(param_error)?;
                Ok(Command::Rcpt { to, params })
            }
            "DATA" => no_args(rest, Command::Data),
            "BDAT" => parse_bdat(rest),
            "RSET" => no_args(rest, Command::Rset),
            "QUIT" => no_args(rest, Command::Quit),
            "STARTTLS" => no_args(rest, Command::StartTls),
            "NOOP" => Ok(Command::Noop),
            "VRFY" | "EXPN" => {
                if rest.is_empty() {
                    return Err(ParseError::new(
                        ErrorKind::Syntax,
                        format!("{upper} needs an argument"),
                    ));
                }
                Ok(if upper == "VRFY" {
                    Command::Vrfy(rest.to_owned())
                } else {
                    Command::Expn(rest.to_owned())
                })
            }
            "HELP" => Ok(Command::Help((!rest.is_empty()).then(|| rest.to_owned()))),
            "AUTH" => {
                let mut words = rest.split([' ', '\t']).filter(|w| !w.is_empty());
                let mechanism = words.next().ok_or_else(|| {
                    ParseError::new(ErrorKind::Syntax, "syntax: AUTH mechanism [response]")
                })?;
                let initial = words.next().map(str::to_owned);
                if words.next().is_some() {
                    return Err(ParseError::new(
                        ErrorKind::Syntax,
                        "syntax: AUTH mechanism [response]",
                    ));
                }
                Ok(Command::Auth {
                    mechanism: mechanism.to_owned(),
                    initial,
                })
            }
            v if NOT_IMPLEMENTED.contains(&v) => Err(ParseError::new(
                ErrorKind::NotImplemented,
                "command not implemented",
            )),
            v if FOREIGN.contains(&v) => Err(ParseError::new(
                ErrorKind::ForeignProtocol,
                "this is an SMTP server",
            )),
            _ => Err(ParseError::new(
                ErrorKind::Unrecognized,
                "command unrecognized",
            )),
        }
    }
}

/// `BDAT SP chunk-size [SP end-marker]` (RFC 3030 §2):
/// `chunk-size = 1*DIGIT`, `end-marker = "LAST"`.
/// The refusal of a line that is not UTF-8. Even with SMTPUTF8 the arguments must be
/// UTF-8 (RFC 6531 §3.3 `UTF8-non-ascii` is RFC 3629 UTF-8), so a known verb gets the
/// `501` of its argument (RFC 5321 §4.3.2; X.1.7 / X.1.3 for the paths, RFC 3463),
/// and a line whose verb is unreadable the `500 5.5.2` of RFC 5321 §4.2.4. BDAT keeps
/// its own kind: its chunk's end is unknown, so the session closes.
fn not_utf8(line: &[u8]) -> ParseError {
    let verb = line
        .split(|&b| b == b' ' || b == b'\t')
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    let kind = match verb.as_slice() {
        b"MAIL" => ErrorKind::BadSender,
        b"RCPT" => ErrorKind::BadRecipient,
        b"BDAT" => ErrorKind::BdatSize,
        b"EHLO" | b"HELO" | b"VRFY" | b"EXPN" | b"HELP" | b"NOOP" | b"AUTH" | b"DATA" | b"RSET"
        | b"QUIT" | b"STARTTLS" => ErrorKind::Syntax,
        _ => ErrorKind::Unrecognized,
    };
    let message = match kind {
        ErrorKind::BadSender => "sender address is not valid UTF-8",
        ErrorKind::BadRecipient => "recipient address is not valid UTF-8",
        ErrorKind::BdatSize => "BDAT chunk size is not valid",
        ErrorKind::Syntax => "argument is not valid UTF-8",
        _ => "command is not UTF-8",
    };
    ParseError::new(kind, message)
}

fn parse_bdat(rest: &str) -> Result<Command, ParseError> {
    let mut words = rest.split([' ', '\t']).filter(|w| !w.is_empty());
    let bad = || ParseError::new(ErrorKind::BdatSize, "syntax: BDAT size [LAST]");
    let size = words.next().ok_or_else(bad)?;
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // More than 20 digits or more than u64: the chunk cannot be skipped either.
    let size: u64 = size.parse().map_err(|_| bad())?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(bad()),
    };
    if words.next().is_some() {
        return Err(bad());
    }
    Ok(Command::Bdat { size, last })
}

/// `Ok(command)` when there is no argument, else a syntax error.
fn no_args(rest: &str, command: Command) -> Result<Command, ParseError> {
    if rest.is_empty() {
        Ok(command)
    } else {
        Err(ParseError::new(
            ErrorKind::Syntax,
            format!("{} takes no parameters", command.name()),
        ))
    }
}

/// Strips `FROM:` / `TO:` (any case) and the spaces some clients put after it
/// (RFC 5321 has none; Postfix and most servers accept them).
fn strip_keyword<'a>(rest: &'a str, keyword: &str) -> Option<&'a str> {
    let head = rest.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    rest.get(keyword.len()..).map(|r| r.trim_start_matches(' '))
}

/// Splits `<path> params` at the `>` that closes the path: the first `>` outside a
/// quoted local part. Without a closing `>`, everything is the path (the path parser
/// refuses it).
fn split_path(arg: &str) -> (&str, &str) {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in arg.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '>' if !in_quotes => {
                let end = i + 1;
                let path = arg.get(..end).unwrap_or(arg);
                let params = arg.get(end..).unwrap_or("");
                // Parameters are separated from the path by a space.
                if !params.is_empty() && !params.starts_with(' ') {
                    return (arg, "");
                }
                return (path, params);
            }
            _ => {}
        }
    }
    (arg, "")
}

/// Maps a parameter error to its command error.
fn param_error(e: ParamError) -> ParseError {
    match e {
        ParamError::Unsupported(_) => ParseError::new(ErrorKind::UnsupportedParam, e.to_string()),
        ParamError::Invalid(why) => ParseError::new(ErrorKind::Syntax, why),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::params::{Body, Notify};
    use crate::path::Host;

    fn parse(s: &str) -> Result<Command, ParseError> {
        Command::parse(s.as_bytes())
    }

    fn kind(s: &str) -> ErrorKind {
        parse(s).unwrap_err().kind
    }

    #[test]
    fn simple_verbs() {
        assert_eq!(
            parse("ehlo client.example").unwrap(),
            Command::Ehlo("client.example".into())
        );
        assert_eq!(
            parse("HELO [192.0.2.1] extra words").unwrap(),
            Command::Helo("[192.0.2.1]".into())
        );
        assert_eq!(parse("DATA").unwrap(), Command::Data);
        assert_eq!(parse("rset").unwrap(), Command::Rset);
        assert_eq!(parse("NOOP anything at all").unwrap(), Command::Noop);
        assert_eq!(parse("QUIT").unwrap(), Command::Quit);
        assert_eq!(parse("StartTLS").unwrap(), Command::StartTls);
        assert_eq!(parse("HELP").unwrap(), Command::Help(None));
        assert_eq!(
            parse("HELP MAIL").unwrap(),
            Command::Help(Some("MAIL".into()))
        );
        assert_eq!(parse("VRFY ann").unwrap(), Command::Vrfy("ann".into()));
        assert_eq!(parse("EXPN list").unwrap(), Command::Expn("list".into()));
    }

    #[test]
    fn mail_and_rcpt() {
        let Command::Mail { from, params } =
            parse("MAIL FROM:<ann@example.org> SIZE=100 BODY=8BITMIME").unwrap()
        else {
            panic!()
        };
        assert_eq!(from.to_string(), "<ann@example.org>");
        assert_eq!(params.size, Some(100));
        assert_eq!(params.body, Some(Body::EightBitMime));
        assert_eq!(
            parse("mail from: <>").unwrap(),
            Command::Mail {
                from: ReversePath::Null,
                params: MailParams::default()
            }
        );
        let Command::Rcpt { to, params } =
            parse(r#"RCPT TO:<"a b>c"@[192.0.2.1]> NOTIFY=FAILURE"#).unwrap()
        else {
            panic!()
        };
        let ForwardPath::Path(p) = to else { panic!() };
        assert_eq!(p.mailbox.local, "a b>c");
        assert_eq!(p.mailbox.host, Host::Literal("192.0.2.1".into()));
        assert_eq!(
            params.notify,
            Some(Notify {
                failure: true,
                ..Notify::default()
            })
        );
        assert_eq!(
            parse("RCPT TO:<postmaster>").unwrap(),
            Command::Rcpt {
                to: ForwardPath::Postmaster,
                params: RcptParams::default()
            }
        );
    }

    #[test]
    fn error_kinds() {
        assert_eq!(kind("XYZZY"), ErrorKind::Unrecognized);
        assert_eq!(kind(""), ErrorKind::Unrecognized);
        assert_eq!(kind("ETRN example.org"), ErrorKind::NotImplemented);
        assert_eq!(kind("GET / HTTP/1.1"), ErrorKind::ForeignProtocol);
        assert_eq!(kind("EHLO"), ErrorKind::Syntax);
        assert_eq!(kind("MAIL TO:<a@b.c>"), ErrorKind::Syntax);
        assert_eq!(kind("MAIL FROM:a@b.c"), ErrorKind::BadSender);
        assert_eq!(kind("MAIL FROM:<a@b.c>SIZE=1"), ErrorKind::BadSender);
        assert_eq!(kind("RCPT TO:<a@>"), ErrorKind::BadRecipient);
        assert_eq!(kind("RCPT TO:<a@b.c> FOO"), ErrorKind::UnsupportedParam);
        assert_eq!(
            kind("MAIL FROM:<a@b.c> BODY=BINARYMIME"),
            ErrorKind::UnsupportedParam
        );
        assert_eq!(kind("MAIL FROM:<a@b.c> SIZE=x"), ErrorKind::Syntax);
        assert_eq!(kind("DATA now"), ErrorKind::Syntax);
        assert_eq!(kind("RSET x"), ErrorKind::Syntax);
        assert_eq!(kind("STARTTLS x"), ErrorKind::Syntax);
        assert_eq!(kind("VRFY"), ErrorKind::Syntax);
        assert_eq!(kind("AUTH"), ErrorKind::Syntax);
        assert_eq!(kind("AUTH PLAIN a b"), ErrorKind::Syntax);
        assert_eq!(kind("NOOP\r"), ErrorKind::Unrecognized);
        assert_eq!(
            Command::parse(b"NOOP \xff").unwrap_err().kind,
            ErrorKind::Syntax
        );
    }

    #[test]
    fn bad_bytes() {
        let k = |b: &[u8]| Command::parse(b).unwrap_err().kind;
        // NUL or other controls anywhere: 500 5.5.2 (RFC 5321 §4.2.4).
        assert_eq!(k(b"NOOP\0"), ErrorKind::Unrecognized);
        assert_eq!(k(b"MAIL FROM:<a\0b@example.org>"), ErrorKind::Unrecognized);
        assert_eq!(k(b"\0\0\0\0"), ErrorKind::Unrecognized);
        assert_eq!(k(b"EHLO x\x1b[2J"), ErrorKind::Unrecognized);
        // Garbage without a verb: 500.
        assert_eq!(k(b"\xff\xfe\xfd"), ErrorKind::Unrecognized);
        assert_eq!(k(b"\x80 FROM:<a@b>"), ErrorKind::Unrecognized);
        // Invalid UTF-8 in a known command's argument, SMTPUTF8 or not: 501.
        assert_eq!(
            k(b"MAIL FROM:<j\xf6ran@example.org> SMTPUTF8"),
            ErrorKind::BadSender
        );
        assert_eq!(
            k(b"rcpt TO:<j\xf6ran@example.org>"),
            ErrorKind::BadRecipient
        );
        assert_eq!(k(b"EHLO b\xfccher.de"), ErrorKind::Syntax);
        assert_eq!(k(b"BDAT \xff"), ErrorKind::BdatSize);
        // Valid UTF-8 parses; SMTPUTF8 is then the session's question (RFC 6531 §3.5).
        let Command::Mail { from, params } =
            Command::parse("MAIL FROM:<jöran@example.org>".as_bytes()).unwrap()
        else {
            panic!("not MAIL");
        };
        assert!(!params.smtputf8);
        assert!(matches!(from, ReversePath::Path(p) if p.mailbox.is_utf8()));
    }

    #[test]
    fn bdat() {
        assert_eq!(
            parse("BDAT 100").unwrap(),
            Command::Bdat {
                size: 100,
                last: false
            }
        );
        assert_eq!(
            parse("bdat 0 last").unwrap(),
            Command::Bdat {
                size: 0,
                last: true
            }
        );
        for bad in [
            "BDAT",
            "BDAT x",
            "BDAT -1",
            "BDAT 1 FIRST",
            "BDAT 1 LAST x",
            "BDAT 99999999999999999999999",
        ] {
            assert_eq!(kind(bad), ErrorKind::BdatSize, "{bad}");
        }
    }

    #[test]
    fn auth() {
        assert_eq!(
            parse("AUTH PLAIN AGFubgBw").unwrap(),
            Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGFubgBw".into())
            }
        );
        assert_eq!(
            parse("auth login").unwrap(),
            Command::Auth {
                mechanism: "login".into(),
                initial: None
            }
        );
    }

    #[test]
    fn names() {
        assert_eq!(parse("mail from:<>").unwrap().name(), "MAIL");
        assert_eq!(parse("bdat 1").unwrap().name(), "BDAT");
    }
}
