//! Validated newtypes shared by every buudien crate. No I/O.
//!
//! # Layout
//! - [`Domain`], [`Address`]: mail domains and addresses, validated and normalised
//!   (lower case, so a login or a recipient matches however the client spelled it).
//! - [`Secret`]: a value that never prints (passwords, keys).
//! - [`Uid`], [`UidValidity`], [`ModSeq`]: IMAP/POP3 message identities.
//! - [`parse_size`], [`parse_duration`]: human forms used in config and CLI (`10M`, `10m`).
//! - [`Load`] (`load.rs`): the shared "near the connection limit" flag that shortens
//!   pre-authentication waits.
//!
//! # Invariants
//! - A constructed [`Domain`] or [`Address`] is valid ASCII or UTF-8 text with no control
//!   characters, at most 255 (domain) or 320 (address) octets, already lower-cased.
//! - `Debug` and `Display` of a [`Secret`] never show its content.

mod load;

pub use load::Load;

use std::fmt;
use std::time::Duration;

/// Why a value was refused at construction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    /// The domain is not a valid mail domain.
    #[error("invalid domain {0:?}: {1}")]
    Domain(String, &'static str),
    /// The address is not a valid mail address.
    #[error("invalid address {0:?}: {1}")]
    Address(String, &'static str),
    /// A size such as `10M` could not be read.
    #[error("invalid size {0:?}: use a number with an optional K, M, G or T suffix")]
    Size(String),
    /// A duration such as `10m` could not be read.
    #[error("invalid duration {0:?}: use a number with an s, m, h or d suffix")]
    Duration(String),
}

/// A mail domain (RFC 5321 §4.1.2 `Domain`, or a UTF-8 U-label), lower-cased.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    /// Longest domain accepted (RFC 5321 §4.5.3.1.2).
    pub const MAX_LEN: usize = 255;

    /// Validates and lower-cases `s`; a trailing dot is dropped.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let err = |why| InvalidValue::Domain(s.to_owned(), why);
        let d = s.trim().trim_end_matches('.').to_lowercase();
        if d.is_empty() {
            return Err(err("empty"));
        }
        if d.len() > Self::MAX_LEN {
            return Err(err("longer than 255 octets"));
        }
        for label in d.split('.') {
            if label.is_empty() {
                return Err(err("empty label"));
            }
            if label.len() > 63 {
                return Err(err("label longer than 63 octets"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(err("label starts or ends with '-'"));
            }
            if !label.chars().all(|c| {
                c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && !c.is_control())
            }) {
                return Err(err("only letters, digits, '-' and '.' are allowed"));
            }
        }
        Ok(Domain(d))
    }

    /// The domain as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Domain({})", self.0)
    }
}

/// A mail address `local@domain`, lower-cased as a whole.
///
/// RFC 5321 §2.4 lets the local part be case-sensitive; like Dovecot and Postfix in
/// their usual setups, buudien treats it as case-insensitive so that `Ann@x` and
/// `ann@x` are the same mailbox.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    full: String,
    at: usize,
}

impl Address {
    /// Longest address accepted (RFC 5321 §4.5.3.1.1 and .2: 64 + 1 + 255).
    pub const MAX_LEN: usize = 320;

    /// Validates and lower-cases `s` (no angle brackets, no display name).
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let err = |why| InvalidValue::Address(s.to_owned(), why);
        let s2 = s.trim();
        if s2.len() > Self::MAX_LEN {
            return Err(err("longer than 320 octets"));
        }
        let at = s2.rfind('@').ok_or_else(|| err("no '@'"))?;
        let (local, domain) = (&s2[..at], &s2[at + 1..]);
        if local.is_empty() {
            return Err(err("empty local part"));
        }
        if local.len() > 64 {
            return Err(err("local part longer than 64 octets"));
        }
        if local.chars().any(|c| {
            c.is_control()
                || c.is_whitespace()
                || matches!(
                    c,
                    '<' | '>' | '(' | ')' | ',' | ';' | ':' | '\\' | '"' | '[' | ']' | '@'
                )
        }) {
            return Err(err("the local part has characters that need quoting"));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(err("misplaced '.' in the local part"));
        }
        let domain = Domain::parse(domain).map_err(|_| err("invalid domain"))?;
        let local = local.to_lowercase();
        let full = format!("{local}@{domain}");
        Ok(Address {
            at: local.len(),
            full,
        })
    }

    /// The local part (before the `@`).
    pub fn local(&self) -> &str {
        &self.full[..self.at]
    }

    /// The domain part (after the `@`), as text.
    pub fn domain_str(&self) -> &str {
        &self.full[self.at + 1..]
    }

    /// The domain part as a validated [`Domain`].
    pub fn domain(&self) -> Domain {
        Domain(self.domain_str().to_owned())
    }

    /// The whole address.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.full)
    }
}

/// A value that must never be printed or logged (a password, a key).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret itself; call only where it is used, never to print it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

/// A message's unique identifier within one mailbox (RFC 9051 §2.3.1.1): never reused
/// for another message while the mailbox's [`UidValidity`] stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(pub u32);

/// The UIDVALIDITY of a mailbox (RFC 9051 §2.3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UidValidity(pub u32);

/// A modification sequence number (RFC 7162 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModSeq(pub u64);

/// Reads a size such as `1024`, `10K`, `25M`, `2G` or `1T` (powers of 1024; a trailing
/// `B` or `iB` is allowed).
pub fn parse_size(s: &str) -> Result<u64, InvalidValue> {
    let err = || InvalidValue::Size(s.to_owned());
    let t = s.trim().to_ascii_uppercase();
    let t = t
        .strip_suffix("IB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: u64 = num.trim().parse().map_err(|_| err())?;
    n.checked_mul(mult).ok_or_else(err)
}

/// Reads a duration such as `30s`, `10m`, `2h`, `1d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, InvalidValue> {
    let err = || InvalidValue::Duration(s.to_owned());
    let t = s.trim();
    if let Some(ms) = t.strip_suffix("ms") {
        let n: u64 = ms.trim().parse().map_err(|_| err())?;
        return Ok(Duration::from_millis(n));
    }
    let (num, mult) = match t.chars().last() {
        Some('s') => (&t[..t.len() - 1], 1u64),
        Some('m') => (&t[..t.len() - 1], 60),
        Some('h') => (&t[..t.len() - 1], 3600),
        Some('d') => (&t[..t.len() - 1], 86400),
        _ => (t, 1),
    };
    let n: u64 = num.trim().parse().map_err(|_| err())?;
    Ok(Duration::from_secs(n.checked_mul(mult).ok_or_else(err)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_is_lowercased_and_split() {
        let a = Address::parse("Ann.Lee@Example.COM").unwrap();
        assert_eq!(a.as_str(), "ann.lee@example.com");
        assert_eq!(a.local(), "ann.lee");
        assert_eq!(a.domain_str(), "example.com");
    }

    #[test]
    fn bad_addresses_are_refused() {
        for s in [
            "",
            "ann",
            "@x.com",
            "ann@",
            "a b@x.com",
            "ann@x..com",
            ".a@x.com",
            "a<b@x.com",
        ] {
            assert!(Address::parse(s).is_err(), "{s:?} accepted");
        }
        assert!(Address::parse(&format!("{}@x.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn domains() {
        assert_eq!(
            Domain::parse("Mail.Example.org.").unwrap().as_str(),
            "mail.example.org"
        );
        assert!(Domain::parse("-x.org").is_err());
        assert!(Domain::parse("x_y.org").is_err());
        assert!(Domain::parse("bücher.de").is_ok());
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2".to_string());
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("10M").unwrap(), 10 << 20);
        assert_eq!(parse_size("1gib").unwrap(), 1 << 30);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("15").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("x").is_err());
    }
}
