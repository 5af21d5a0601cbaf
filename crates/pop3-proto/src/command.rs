//! Command lines (RFC 1939 §3: a case-insensitive keyword, then arguments separated by
//! a space) for every command buudien serves.

use buudien_types::Secret;
use std::fmt;

/// One parsed POP3 command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// RFC 1939 §7 — `USER name`.
    User(String),
    /// RFC 1939 §7 — `PASS string`; the whole rest of the line, spaces included.
    Pass(Secret<String>),
    /// RFC 1939 §7 — `APOP name digest`.
    Apop {
        /// The mailbox name (login).
        name: String,
        /// 32 hex digits: MD5 of the greeting timestamp and the shared secret.
        digest: String,
    },
    /// RFC 5034 §4 — `AUTH [mechanism [initial-response]]`; a bare `AUTH` lists the
    /// mechanisms (what Outlook sends).
    Auth {
        /// The SASL mechanism name, as sent.
        mechanism: Option<String>,
        /// The base64 initial response, or `=` for an empty one.
        initial: Option<String>,
    },
    /// RFC 2449 §5 — `CAPA`.
    Capa,
    /// RFC 2595 §4 — `STLS`.
    Stls,
    /// RFC 6856 §2.1 — `UTF8`.
    Utf8,
    /// RFC 1939 §5 — `STAT`.
    Stat,
    /// RFC 1939 §5 — `LIST [msg]`.
    List(Option<u32>),
    /// RFC 1939 §5 — `RETR msg`.
    Retr(u32),
    /// RFC 1939 §5 — `DELE msg`.
    Dele(u32),
    /// RFC 1939 §5 — `NOOP`.
    Noop,
    /// RFC 1939 §5 — `RSET`.
    Rset,
    /// RFC 1939 §7 — `TOP msg n`.
    Top(u32, u32),
    /// RFC 1939 §7 — `UIDL [msg]`.
    Uidl(Option<u32>),
    /// RFC 1939 §4, §6 — `QUIT`.
    Quit,
}

impl Command {
    /// The keyword, upper case, for logs and the command × state table.
    pub fn name(&self) -> &'static str {
        match self {
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Apop { .. } => "APOP",
            Command::Auth { .. } => "AUTH",
            Command::Capa => "CAPA",
            Command::Stls => "STLS",
            Command::Utf8 => "UTF8",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Retr(_) => "RETR",
            Command::Dele(_) => "DELE",
            Command::Noop => "NOOP",
            Command::Rset => "RSET",
            Command::Top(..) => "TOP",
            Command::Uidl(_) => "UIDL",
            Command::Quit => "QUIT",
        }
    }

    /// Parses one command line (without its CRLF).
    pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
        let line = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
        // RFC 1939 §3: keywords and arguments are printable characters; a NUL or
        // other control character (a tab aside) is never part of a command.
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(ParseError::Control);
        }
        let (keyword, rest) = match line.split_once(' ') {
            Some((k, r)) => (k, r),
            None => (line, ""),
        };
        if keyword.is_empty() {
            return Err(ParseError::Empty);
        }
        let kw = keyword.to_ascii_uppercase();
        let args: Vec<&str> = rest.split(' ').filter(|a| !a.is_empty()).collect();
        let none = |c: Command| {
            if args.is_empty() {
                Ok(c)
            } else {
                Err(ParseError::Arguments("takes no arguments"))
            }
        };
        match kw.as_str() {
            "USER" => match args.as_slice() {
                [name] => Ok(Command::User((*name).to_owned())),
                _ => Err(ParseError::Arguments("usage: USER name")),
            },
            "PASS" => {
                if rest.is_empty() {
                    Err(ParseError::Arguments("usage: PASS password"))
                } else {
                    Ok(Command::Pass(Secret::new(rest.to_owned())))
                }
            }
            "APOP" => match args.as_slice() {
                [name, digest] => Ok(Command::Apop {
                    name: (*name).to_owned(),
                    digest: (*digest).to_owned(),
                }),
                _ => Err(ParseError::Arguments("usage: APOP name digest")),
            },
            "AUTH" => match args.as_slice() {
                [] => Ok(Command::Auth {
                    mechanism: None,
                    initial: None,
                }),
                [m] => Ok(Command::Auth {
                    mechanism: Some((*m).to_owned()),
                    initial: None,
                }),
                [m, i] => Ok(Command::Auth {
                    mechanism: Some((*m).to_owned()),
                    initial: Some((*i).to_owned()),
                }),
                _ => Err(ParseError::Arguments(
                    "usage: AUTH [mechanism [initial-response]]",
                )),
            },
            "CAPA" => none(Command::Capa),
            "STLS" => none(Command::Stls),
            "UTF8" => none(Command::Utf8),
            "STAT" => none(Command::Stat),
            "NOOP" => none(Command::Noop),
            "RSET" => none(Command::Rset),
            "QUIT" => none(Command::Quit),
            "LIST" => optional_msg(&args).map(Command::List),
            "UIDL" => optional_msg(&args).map(Command::Uidl),
            "RETR" => one_msg(&args).map(Command::Retr),
            "DELE" => one_msg(&args).map(Command::Dele),
            "TOP" => match args.as_slice() {
                [m, n] => Ok(Command::Top(msg_number(m)?, line_count(n)?)),
                _ => Err(ParseError::Arguments("usage: TOP msg lines")),
            },
            _ => Err(ParseError::Unknown(keyword.chars().take(16).collect())),
        }
    }
}

/// Why a line is not a command; the text is fit for an `-ERR` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// An empty line.
    Empty,
    /// The line is not valid UTF-8 (RFC 6856 §2.2: servers reject it).
    NotUtf8,
    /// The line holds a NUL or another control character (RFC 1939 §3).
    Control,
    /// Not a command buudien knows (the first 16 characters of the keyword).
    Unknown(String),
    /// The keyword is known but its arguments are wrong.
    Arguments(&'static str),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => f.write_str("empty command"),
            ParseError::NotUtf8 => f.write_str("command is not valid UTF-8"),
            ParseError::Control => f.write_str("control characters in the command"),
            ParseError::Unknown(k) => write!(f, "unknown command {}", printable(k)),
            ParseError::Arguments(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ParseError {}

fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// RFC 1939 §3: a message number is a positive decimal (no sign, no zero).
fn msg_number(s: &str) -> Result<u32, ParseError> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Arguments(
            "message number must be a positive number",
        ));
    }
    match s.parse::<u32>() {
        Ok(0) => Err(ParseError::Arguments(
            "message number must be a positive number",
        )),
        Ok(n) => Ok(n),
        Err(_) => Err(ParseError::Arguments("no such message")),
    }
}

/// RFC 1939 §7: the TOP line count is a non-negative number; a huge one means "all".
fn line_count(s: &str) -> Result<u32, ParseError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Arguments(
            "line count must be a non-negative number",
        ));
    }
    Ok(s.parse::<u32>().unwrap_or(u32::MAX))
}

fn one_msg(args: &[&str]) -> Result<u32, ParseError> {
    match args {
        [m] => msg_number(m),
        _ => Err(ParseError::Arguments("usage: command msg")),
    }
}

fn optional_msg(args: &[&str]) -> Result<Option<u32>, ParseError> {
    match args {
        [] => Ok(None),
        [m] => msg_number(m).map(Some),
        _ => Err(ParseError::Arguments("usage: command [msg]")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, ParseError> {
        Command::parse(s.as_bytes())
    }

    #[test]
    fn rfc1939_commands() {
        assert_eq!(p("user mrose").unwrap(), Command::User("mrose".into()));
        assert_eq!(
            p("PASS secret with spaces").unwrap(),
            Command::Pass(Secret::new("secret with spaces".into()))
        );
        assert_eq!(
            p("APOP mrose c4c9334bac560ecc979e58001b3e22fb").unwrap(),
            Command::Apop {
                name: "mrose".into(),
                digest: "c4c9334bac560ecc979e58001b3e22fb".into()
            }
        );
        assert_eq!(p("STAT").unwrap(), Command::Stat);
        assert_eq!(p("list").unwrap(), Command::List(None));
        assert_eq!(p("LIST 2").unwrap(), Command::List(Some(2)));
        assert_eq!(p("RETR 1").unwrap(), Command::Retr(1));
        assert_eq!(p("DELE 1").unwrap(), Command::Dele(1));
        assert_eq!(p("NOOP").unwrap(), Command::Noop);
        assert_eq!(p("RSET").unwrap(), Command::Rset);
        assert_eq!(p("TOP 1 10").unwrap(), Command::Top(1, 10));
        assert_eq!(p("TOP 1 0").unwrap(), Command::Top(1, 0));
        assert_eq!(p("UIDL").unwrap(), Command::Uidl(None));
        assert_eq!(p("UIDL 3").unwrap(), Command::Uidl(Some(3)));
        assert_eq!(p("QUIT").unwrap(), Command::Quit);
    }

    #[test]
    fn extension_commands() {
        assert_eq!(p("CAPA").unwrap(), Command::Capa);
        assert_eq!(p("stls").unwrap(), Command::Stls);
        assert_eq!(p("UTF8").unwrap(), Command::Utf8);
        assert_eq!(
            p("AUTH").unwrap(),
            Command::Auth {
                mechanism: None,
                initial: None
            }
        );
        assert_eq!(
            p("AUTH PLAIN AGFubgBzZWNyZXQ=").unwrap(),
            Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: Some("AGFubgBzZWNyZXQ=".into())
            }
        );
        assert_eq!(
            p("AUTH PLAIN =").unwrap(),
            Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: Some("=".into())
            }
        );
    }

    #[test]
    fn bad_lines() {
        assert_eq!(p(""), Err(ParseError::Empty));
        assert!(matches!(p("FOO"), Err(ParseError::Unknown(_))));
        assert!(matches!(p("RETR"), Err(ParseError::Arguments(_))));
        assert!(matches!(p("RETR 0"), Err(ParseError::Arguments(_))));
        assert!(matches!(p("RETR -1"), Err(ParseError::Arguments(_))));
        assert!(matches!(p("RETR x"), Err(ParseError::Arguments(_))));
        assert!(matches!(
            p("RETR 99999999999"),
            Err(ParseError::Arguments(_))
        ));
        assert!(matches!(p("TOP 1"), Err(ParseError::Arguments(_))));
        assert!(matches!(p("STAT 1"), Err(ParseError::Arguments(_))));
        assert!(matches!(p("USER"), Err(ParseError::Arguments(_))));
        assert!(matches!(p("PASS"), Err(ParseError::Arguments(_))));
        assert_eq!(Command::parse(b"USER \xff"), Err(ParseError::NotUtf8));
        assert_eq!(p("TOP 1 99999999999").unwrap(), Command::Top(1, u32::MAX));
    }

    #[test]
    fn unknown_keyword_is_cut_and_cleaned() {
        let e = p("XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX").unwrap_err();
        assert_eq!(e.to_string(), "unknown command XXXXXXXXXXXXXXXX");
        let e = p("XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\u{7}").unwrap_err();
        assert_eq!(e, ParseError::Control);
    }

    #[test]
    fn nul_and_control_characters_are_refused() {
        // RFC 1939 §3: commands are printable characters.
        for line in [
            &b"NOOP\0"[..],
            b"USER a\0b",
            b"PASS se\0cret",
            b"\0",
            b"STAT\x1b[2J",
            b"LIST 1\x7f",
        ] {
            assert_eq!(Command::parse(line), Err(ParseError::Control), "{line:?}");
        }
        for line in [&b"USER \xc3"[..], b"\xff\xfe", b"PASS \x80abc"] {
            assert_eq!(Command::parse(line), Err(ParseError::NotUtf8), "{line:?}");
        }
        // A tab inside a password is kept; UTF-8 is fine.
        assert_eq!(
            p("PASS a\tb").unwrap(),
            Command::Pass(Secret::new("a\tb".to_owned()))
        );
        assert_eq!(p("USER jöran").unwrap(), Command::User("jöran".to_owned()));
    }
}
