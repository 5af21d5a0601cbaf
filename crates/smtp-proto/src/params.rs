//! ESMTP parameters of `MAIL` and `RCPT` (RFC 5321 §4.1.2) and the ones buudien
//! understands: `SIZE` (RFC 1870), `BODY` (RFC 6152), `SMTPUTF8` (RFC 6531),
//! `RET`/`ENVID`/`NOTIFY`/`ORCPT` (RFC 3461) and `AUTH` (RFC 4954 §5).
//!
//! ```text
//! esmtp-param   = esmtp-keyword ["=" esmtp-value]
//! esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
//! esmtp-value   = 1*(%d33-60 / %d62-126)   ; RFC 6531 adds UTF8-non-ascii
//! xtext         = *( xchar / hexchar )     ; RFC 3461 §4
//! xchar         = %d33-42 / %d44-60 / %d62-126
//! hexchar       = "+" 2(%x30-39 / %x41-46)
//! ```

use std::fmt;

/// Longest `ENVID` value, decoded (RFC 3461 §4.4).
pub const MAX_ENVID: usize = 100;
/// Longest `ORCPT` address, decoded (RFC 3461 §4.2).
pub const MAX_ORCPT: usize = 500;

/// Why a parameter was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamError {
    /// A parameter buudien does not know or does not offer (`555 5.5.4`,
    /// RFC 5321 §4.1.1.11).
    Unsupported(String),
    /// A known parameter with a bad value, or a duplicate (`501 5.5.4`).
    Invalid(&'static str),
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::Unsupported(k) => write!(f, "parameter {k} not supported"),
            ParamError::Invalid(why) => f.write_str(why),
        }
    }
}

/// `BODY=` (RFC 6152 §2; RFC 3030 §3 `BINARYMIME` is not offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `7BIT`
    SevenBit,
    /// `8BITMIME`
    EightBitMime,
}

/// `RET=` (RFC 3461 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// `FULL`: return the whole message in a DSN.
    Full,
    /// `HDRS`: only its headers.
    Headers,
}

/// `NOTIFY=` (RFC 3461 §4.1): `NEVER`, or a set of `SUCCESS`, `FAILURE`, `DELAY`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notify {
    /// `SUCCESS`
    pub success: bool,
    /// `FAILURE`
    pub failure: bool,
    /// `DELAY`
    pub delay: bool,
}

/// The parameters of `MAIL FROM:`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=n`; a number too big for `u64` reads as `u64::MAX`.
    pub size: Option<u64>,
    /// `BODY=`.
    pub body: Option<Body>,
    /// `SMTPUTF8` was given.
    pub smtputf8: bool,
    /// `RET=`.
    pub ret: Option<Ret>,
    /// `ENVID=`, decoded from xtext.
    pub envid: Option<String>,
    /// `AUTH=`, decoded from xtext (`<>` kept as is). Accepted and ignored
    /// (RFC 4954 §5: buudien does not trust another server's claim).
    pub auth: Option<String>,
}

/// The parameters of `RCPT TO:`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// `NOTIFY=`; `Some(Notify::default())` means `NEVER`.
    pub notify: Option<Notify>,
    /// `ORCPT=` exactly as given: `addr-type ";" xtext`.
    pub orcpt: Option<String>,
}

/// Splits `esmtp-param`s at spaces into `(keyword, value)`, checking the grammar.
fn split_params(s: &str) -> Result<Vec<(&str, Option<&str>)>, ParamError> {
    let mut out = Vec::new();
    for p in s.split(' ').filter(|p| !p.is_empty()) {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (p, None),
        };
        let keyword_ok = k.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !keyword_ok {
            return Err(ParamError::Invalid("invalid parameter keyword"));
        }
        if let Some(v) = v {
            let value_ok = !v.is_empty()
                && v.chars()
                    .all(|c| (c > ' ' && c != '=' && c != '\u{7f}') || !c.is_ascii());
            if !value_ok {
                return Err(ParamError::Invalid("invalid parameter value"));
            }
        }
        if out
            .iter()
            .any(|(seen, _): &(&str, Option<&str>)| seen.eq_ignore_ascii_case(k))
        {
            return Err(ParamError::Invalid("duplicate parameter"));
        }
        out.push((k, v));
    }
    Ok(out)
}

/// Parses the parameters after `MAIL FROM:<path>`.
pub fn parse_mail_params(s: &str) -> Result<MailParams, ParamError> {
    let mut p = MailParams::default();
    for (k, v) in split_params(s)? {
        match (k.to_ascii_uppercase().as_str(), v) {
            // RFC 1870 §3: size-value = 1*20DIGIT
            ("SIZE", Some(v)) => {
                if v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ParamError::Invalid("SIZE must be a number"));
                }
                p.size = Some(v.parse().unwrap_or(u64::MAX));
            }
            ("BODY", Some(v)) => {
                p.body = Some(if v.eq_ignore_ascii_case("7BIT") {
                    Body::SevenBit
                } else if v.eq_ignore_ascii_case("8BITMIME") {
                    Body::EightBitMime
                } else if v.eq_ignore_ascii_case("BINARYMIME") {
                    return Err(ParamError::Unsupported("BODY=BINARYMIME".to_owned()));
                } else {
                    return Err(ParamError::Invalid("BODY must be 7BIT or 8BITMIME"));
                });
            }
            ("SMTPUTF8", None) => p.smtputf8 = true,
            ("RET", Some(v)) => {
                p.ret = Some(if v.eq_ignore_ascii_case("FULL") {
                    Ret::Full
                } else if v.eq_ignore_ascii_case("HDRS") {
                    Ret::Headers
                } else {
                    return Err(ParamError::Invalid("RET must be FULL or HDRS"));
                });
            }
            ("ENVID", Some(v)) => {
                let id = xtext_decode(v).ok_or(ParamError::Invalid("ENVID is not valid xtext"))?;
                if id.len() > MAX_ENVID {
                    return Err(ParamError::Invalid("ENVID longer than 100 characters"));
                }
                p.envid = Some(id);
            }
            // RFC 4954 §5: AUTH=<> or AUTH=xtext(mailbox); accepted and ignored.
            ("AUTH", Some(v)) => {
                let who = if v == "<>" {
                    v.to_owned()
                } else {
                    xtext_decode(v).ok_or(ParamError::Invalid("AUTH is not valid xtext"))?
                };
                p.auth = Some(who);
            }
            ("SIZE" | "BODY" | "RET" | "ENVID" | "AUTH", None) => {
                return Err(ParamError::Invalid("parameter needs a value"));
            }
            ("SMTPUTF8", Some(_)) => {
                return Err(ParamError::Invalid("SMTPUTF8 takes no value"));
            }
            _ => return Err(ParamError::Unsupported(k.to_ascii_uppercase())),
        }
    }
    Ok(p)
}

/// Parses the parameters after `RCPT TO:<path>`.
pub fn parse_rcpt_params(s: &str) -> Result<RcptParams, ParamError> {
    let mut p = RcptParams::default();
    for (k, v) in split_params(s)? {
        match (k.to_ascii_uppercase().as_str(), v) {
            // RFC 3461 §4.1: "NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" )
            ("NOTIFY", Some(v)) => {
                let mut n = Notify::default();
                if v.eq_ignore_ascii_case("NEVER") {
                    p.notify = Some(n);
                    continue;
                }
                for item in v.split(',') {
                    let flag = if item.eq_ignore_ascii_case("SUCCESS") {
                        &mut n.success
                    } else if item.eq_ignore_ascii_case("FAILURE") {
                        &mut n.failure
                    } else if item.eq_ignore_ascii_case("DELAY") {
                        &mut n.delay
                    } else {
                        return Err(ParamError::Invalid(
                            "NOTIFY must be NEVER or SUCCESS, FAILURE, DELAY",
                        ));
                    };
                    if *flag {
                        return Err(ParamError::Invalid("NOTIFY lists a value twice"));
                    }
                    *flag = true;
                }
                p.notify = Some(n);
            }
            // RFC 3461 §4.2: ORCPT=addr-type ";" xtext
            ("ORCPT", Some(v)) => {
                let (kind, addr) = v
                    .split_once(';')
                    .ok_or(ParamError::Invalid("ORCPT must be addr-type;address"))?;
                let kind_ok =
                    !kind.is_empty() && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                if !kind_ok {
                    return Err(ParamError::Invalid("invalid ORCPT address type"));
                }
                // RFC 6533 §3 utf-8-addr-xtext uses \x{...}; both are xtext-shaped.
                let decoded =
                    xtext_decode(addr).ok_or(ParamError::Invalid("ORCPT is not valid xtext"))?;
                if decoded.is_empty() || decoded.len() > MAX_ORCPT {
                    return Err(ParamError::Invalid("invalid ORCPT address length"));
                }
                p.orcpt = Some(v.to_owned());
            }
            ("NOTIFY" | "ORCPT", None) => {
                return Err(ParamError::Invalid("parameter needs a value"));
            }
            _ => return Err(ParamError::Unsupported(k.to_ascii_uppercase())),
        }
    }
    Ok(p)
}

/// Decodes xtext (RFC 3461 §4): `+XX` is the octet XX (upper- or lower-case hex
/// accepted), every other character stands for itself; `=`, controls and space are
/// refused. `None` when the input is not xtext or decodes to invalid UTF-8.
pub fn xtext_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => {
                let hi = hex_digit(bytes.next()?)?;
                let lo = hex_digit(bytes.next()?)?;
                out.push(hi << 4 | lo);
            }
            b'=' => return None,
            33..=126 => out.push(b),
            // RFC 6531 §3.3: UTF-8 in esmtp-value.
            128..=255 => out.push(b),
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes text as xtext (RFC 3461 §4): `+`, `=`, and octets outside 33–126 as
/// `+XX`.
pub fn xtext_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// The value of one hex digit.
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for MailParams {
    /// The parameters in wire form, each preceded by a space.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(size) = self.size {
            write!(f, " SIZE={size}")?;
        }
        match self.body {
            Some(Body::SevenBit) => f.write_str(" BODY=7BIT")?,
            Some(Body::EightBitMime) => f.write_str(" BODY=8BITMIME")?,
            None => {}
        }
        if self.smtputf8 {
            f.write_str(" SMTPUTF8")?;
        }
        match self.ret {
            Some(Ret::Full) => f.write_str(" RET=FULL")?,
            Some(Ret::Headers) => f.write_str(" RET=HDRS")?,
            None => {}
        }
        if let Some(envid) = &self.envid {
            write!(f, " ENVID={}", xtext_encode(envid))?;
        }
        if let Some(auth) = &self.auth {
            if auth == "<>" {
                f.write_str(" AUTH=<>")?;
            } else {
                write!(f, " AUTH={}", xtext_encode(auth))?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for RcptParams {
    /// The parameters in wire form, each preceded by a space.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.notify {
            if n == Notify::default() {
                f.write_str(" NOTIFY=NEVER")?;
            } else {
                let items: Vec<&str> = [
                    (n.success, "SUCCESS"),
                    (n.failure, "FAILURE"),
                    (n.delay, "DELAY"),
                ]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, name)| *name)
                .collect();
                write!(f, " NOTIFY={}", items.join(","))?;
            }
        }
        if let Some(orcpt) = &self.orcpt {
            write!(f, " ORCPT={orcpt}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn mail_params() {
        let p = parse_mail_params("SIZE=1000 BODY=8bitmime SMTPUTF8 RET=HDRS ENVID=QQ+2B1 AUTH=<>")
            .unwrap();
        assert_eq!(p.size, Some(1000));
        assert_eq!(p.body, Some(Body::EightBitMime));
        assert!(p.smtputf8);
        assert_eq!(p.ret, Some(Ret::Headers));
        assert_eq!(p.envid.as_deref(), Some("QQ+1"));
        assert_eq!(p.auth.as_deref(), Some("<>"));
        assert_eq!(
            p.to_string(),
            " SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ+2B1 AUTH=<>"
        );
        assert_eq!(parse_mail_params("").unwrap(), MailParams::default());
        assert_eq!(
            parse_mail_params("SIZE=99999999999999999999").unwrap().size,
            Some(u64::MAX)
        );
    }

    #[test]
    fn mail_param_errors() {
        assert_eq!(
            parse_mail_params("BODY=BINARYMIME"),
            Err(ParamError::Unsupported("BODY=BINARYMIME".into()))
        );
        assert_eq!(
            parse_mail_params("FOO=1"),
            Err(ParamError::Unsupported("FOO".into()))
        );
        for bad in [
            "SIZE=abc",
            "SIZE=",
            "SIZE",
            "SIZE=123456789012345678901",
            "BODY=9BIT",
            "SIZE=1 SIZE=2",
            "size=1 SIZE=2",
            "SMTPUTF8=yes",
            "RET=ALL",
            "ENVID=a=b",
            "ENVID=+4",
            "ENVID=+ZZ",
            "-X=1",
            "X_Y=1",
        ] {
            assert!(
                matches!(parse_mail_params(bad), Err(ParamError::Invalid(_))),
                "{bad:?}"
            );
        }
        let long = format!("ENVID={}", "a".repeat(101));
        assert!(parse_mail_params(&long).is_err());
    }

    #[test]
    fn rcpt_params() {
        let p = parse_rcpt_params("NOTIFY=SUCCESS,DELAY ORCPT=rfc822;ann+40example.org").unwrap();
        assert_eq!(
            p.notify,
            Some(Notify {
                success: true,
                failure: false,
                delay: true
            })
        );
        assert_eq!(p.orcpt.as_deref(), Some("rfc822;ann+40example.org"));
        assert_eq!(
            p.to_string(),
            " NOTIFY=SUCCESS,DELAY ORCPT=rfc822;ann+40example.org"
        );
        assert_eq!(
            parse_rcpt_params("notify=never").unwrap().notify,
            Some(Notify::default())
        );
        for bad in [
            "NOTIFY=NEVER,SUCCESS",
            "NOTIFY=SUCCESS,SUCCESS",
            "NOTIFY=",
            "ORCPT=ann@example.org",
            "ORCPT=;ann",
            "ORCPT=rfc822;",
            "ORCPT=rfc822;a+4",
        ] {
            assert!(
                matches!(parse_rcpt_params(bad), Err(ParamError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_rcpt_params("SIZE=1"),
            Err(ParamError::Unsupported(_))
        ));
    }

    #[test]
    fn xtext_round_trip() {
        for s in ["", "plain", "a+b=c d", "ünï", "\u{1}"] {
            assert_eq!(xtext_decode(&xtext_encode(s)).as_deref(), Some(s));
        }
        assert_eq!(xtext_decode("+2b+2B").as_deref(), Some("++"));
        assert_eq!(xtext_decode("a b"), None);
        assert_eq!(xtext_decode("+FF"), None); // not UTF-8
    }
}
