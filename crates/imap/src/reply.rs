//! Small writers of tagged and untagged lines shared by the command handlers.

use buudien_imap_proto::{SequenceSet, Tag};
use buudien_store::StoreError;

/// `1,3:5` for a sorted list of numbers.
pub(crate) fn uid_set(numbers: &[u32]) -> String {
    match SequenceSet::compact(numbers.iter().copied()) {
        Some(set) => set.to_string(),
        None => uid_list(numbers),
    }
}

/// `4,2,9`: numbers in the given order (COPYUID pairs must keep their order).
pub(crate) fn uid_list(numbers: &[u32]) -> String {
    numbers
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// One element of a compiled LIST pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    /// An octet that must match itself.
    Byte(u8),
    /// `*`: zero or more octets.
    Star,
    /// `%`: zero or more octets other than the delimiter `/`.
    Percent,
}

/// A LIST/LSUB pattern (RFC 9051 §6.3.9, RFC 3501 §6.3.9): `*` matches anything,
/// `%` anything but the hierarchy delimiter `/`. Runs of wildcards are collapsed when
/// compiled (`%*` is `*`, `%%` is `%`), and [`Pattern::matches`] walks the name once
/// per pattern element with a row of booleans (no backtracking), so a pattern like
/// `*%*%*%…x` costs at most (pattern length × name length) steps, never exponential
/// time. Names and patterns are UTF-8; matching octets is exact for UTF-8 because the
/// wildcards and the delimiter are ASCII.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    toks: Vec<Tok>,
    /// Octets the name needs at least (the literal octets of the pattern).
    literal: usize,
    /// The pattern ends with `%` (RFC 9051 §6.3.9: matching levels of hierarchy are
    /// then returned too).
    ends_with_percent: bool,
}

impl Pattern {
    /// Compiles `pattern`.
    pub(crate) fn new(pattern: &str) -> Pattern {
        let mut toks: Vec<Tok> = Vec::with_capacity(pattern.len());
        for &b in pattern.as_bytes() {
            let t = match b {
                b'*' => Tok::Star,
                b'%' => Tok::Percent,
                other => Tok::Byte(other),
            };
            match (toks.last_mut(), t) {
                (Some(last @ (Tok::Star | Tok::Percent)), Tok::Star) => *last = Tok::Star,
                (Some(Tok::Star | Tok::Percent), Tok::Percent) => {}
                _ => toks.push(t),
            }
        }
        let literal = toks.iter().filter(|t| matches!(t, Tok::Byte(_))).count();
        Pattern {
            toks,
            literal,
            ends_with_percent: pattern.ends_with('%'),
        }
    }

    /// True when the pattern's last character is `%`.
    pub(crate) fn ends_with_percent(&self) -> bool {
        self.ends_with_percent
    }

    /// Does `name` match? `fold` compares ASCII letters without case (for INBOX,
    /// which matches when the upper-case string `INBOX` matches, RFC 9051 §6.3.9).
    pub(crate) fn matches(&self, name: &str, fold: bool) -> bool {
        let name = name.as_bytes();
        if self.literal > name.len() {
            return false;
        }
        // row[j]: the pattern elements seen so far match name[..j].
        let mut row = vec![false; name.len() + 1];
        let mut next = vec![false; name.len() + 1];
        if let Some(first) = row.first_mut() {
            *first = true;
        }
        for tok in &self.toks {
            match *tok {
                Tok::Byte(c) => {
                    next.fill(false);
                    for (j, &n) in name.iter().enumerate() {
                        let same = if fold {
                            n.eq_ignore_ascii_case(&c)
                        } else {
                            n == c
                        };
                        if same
                            && row.get(j).copied().unwrap_or(false)
                            && let Some(slot) = next.get_mut(j + 1)
                        {
                            *slot = true;
                        }
                    }
                }
                Tok::Star => {
                    let mut seen = false;
                    for (j, slot) in next.iter_mut().enumerate() {
                        seen |= row.get(j).copied().unwrap_or(false);
                        *slot = seen;
                    }
                }
                Tok::Percent => {
                    let mut carry = false;
                    for (j, slot) in next.iter_mut().enumerate() {
                        // Extend the previous position over one non-delimiter octet.
                        let extended =
                            carry && j > 0 && name.get(j - 1).is_some_and(|&b| b != b'/');
                        carry = row.get(j).copied().unwrap_or(false) || extended;
                        *slot = carry;
                    }
                }
            }
            std::mem::swap(&mut row, &mut next);
            if !row.contains(&true) {
                return false;
            }
        }
        row.last().copied().unwrap_or(false)
    }
}

/// LIST pattern matching (RFC 9051 §6.3.9): `*` matches anything, `%` anything but
/// the delimiter `/`. See [`Pattern`].
#[cfg(test)]
pub(crate) fn matches_pattern(pattern: &[u8], name: &[u8]) -> bool {
    Pattern::new(&String::from_utf8_lossy(pattern)).matches(&String::from_utf8_lossy(name), false)
}

/// One untagged line.
pub(crate) fn line(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `tag OK text`.
pub(crate) fn ok(out: &mut Vec<u8>, tag: &Tag, text: &str) {
    out.extend_from_slice(format!("{tag} OK {text}\r\n").as_bytes());
}

/// `tag NO text`.
pub(crate) fn no(out: &mut Vec<u8>, tag: &Tag, text: &str) {
    out.extend_from_slice(format!("{tag} NO {text}\r\n").as_bytes());
}

/// `tag BAD text`.
pub(crate) fn bad(out: &mut Vec<u8>, tag: &Tag, text: &str) {
    out.extend_from_slice(format!("{tag} BAD {text}\r\n").as_bytes());
}

/// `tag NO [NONEXISTENT] ...`.
pub(crate) fn nonexistent(out: &mut Vec<u8>, tag: &Tag) {
    out.extend_from_slice(format!("{tag} NO [NONEXISTENT] no such mailbox\r\n").as_bytes());
}

/// OK, or the store error as NO with its response code.
pub(crate) fn done(out: &mut Vec<u8>, tag: &Tag, name: &str, r: Result<(), StoreError>) {
    match r {
        Ok(()) => ok(out, tag, &format!("{name} completed")),
        Err(e) => store_error(out, tag, &e),
    }
}

/// A store error as `NO` with the response code of RFC 9051 §7.1: an I/O failure
/// (a full disk, above all) is `UNAVAILABLE` ("temporary failure because a subsystem
/// is down"), so the client keeps its data and retries; only a database that failed
/// or holds something it should not is `SERVERBUG`.
pub(crate) fn store_error(out: &mut Vec<u8>, tag: &Tag, e: &StoreError) {
    let (code, text) = match e {
        StoreError::NotFound(_) => ("NONEXISTENT", "operation failed"),
        StoreError::Exists(_) => ("ALREADYEXISTS", "operation failed"),
        StoreError::Refused(_) => ("CANNOT", "operation failed"),
        StoreError::OverQuota(_) => ("OVERQUOTA", "operation failed"),
        StoreError::Busy => ("INUSE", "operation failed"),
        StoreError::Full(_) | StoreError::Io(_) => {
            tracing::warn!(error = %e, "store I/O error");
            ("UNAVAILABLE", "storage unavailable, try again later")
        }
        StoreError::Database(_) => {
            tracing::warn!(error = %e, "store error");
            ("SERVERBUG", "operation failed")
        }
        // RFC 9051 §7.1: SERVERBUG, the server violated one of its own invariants
        // (a stored message's bytes are gone); retrying will not help.
        StoreError::Damaged(_) => {
            tracing::warn!(error = %e, "damaged record");
            ("SERVERBUG", "a message is damaged in storage")
        }
    };
    out.extend_from_slice(format!("{tag} NO [{code}] {text}\r\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_carry_rfc9051_codes() -> Result<(), buudien_imap_proto::command::InvalidTag> {
        let tag = Tag::new("a1")?;
        let cases = [
            (
                StoreError::Io("No space left on device (os error 28)".into()),
                "a1 NO [UNAVAILABLE] storage unavailable, try again later\r\n",
            ),
            (
                StoreError::OverQuota("ann@example.test".into()),
                "a1 NO [OVERQUOTA] operation failed\r\n",
            ),
            (StoreError::Busy, "a1 NO [INUSE] operation failed\r\n"),
            (
                StoreError::Database("bad row".into()),
                "a1 NO [SERVERBUG] operation failed\r\n",
            ),
            (
                StoreError::Damaged("blob 00".into()),
                "a1 NO [SERVERBUG] a message is damaged in storage\r\n",
            ),
            (
                StoreError::NotFound("x".into()),
                "a1 NO [NONEXISTENT] operation failed\r\n",
            ),
        ];
        for (e, want) in cases {
            let mut out = Vec::new();
            store_error(&mut out, &tag, &e);
            assert_eq!(String::from_utf8_lossy(&out), want, "{e}");
        }
        Ok(())
    }

    #[test]
    fn patterns() {
        assert!(matches_pattern(b"*", b"a/b"));
        assert!(!matches_pattern(b"%", b"a/b"));
        assert!(matches_pattern(b"%", b"INBOX"));
        assert!(matches_pattern(b"a/%", b"a/b"));
        assert!(matches_pattern(b"a*", b"a/b/c"));
        assert!(!matches_pattern(b"b*", b"a"));
        assert!(matches_pattern(b"", b""));
        assert!(!matches_pattern(b"", b"a"));
        assert!(matches_pattern(b"%/%", b"a/b"));
        assert!(!matches_pattern(b"%/%", b"a/b/c"));
        assert!(matches_pattern(b"%/*", b"a/b/c"));
        assert!(matches_pattern(b"*2", b"foo2/bar2"));
        assert!(!matches_pattern(b"*2", b"foo2/bar1"));
        assert!(matches_pattern(b"a%*%b", b"a/x/b"));
        assert!(matches_pattern(b"%%", b"ab"));
        assert!(!matches_pattern(b"%%", b"a/b"));
        assert!(matches_pattern(b"a%b%c", b"axbyc"));
        assert!(!matches_pattern(b"a%b%c", b"axb/c"));
        assert!(matches_pattern(
            "%/\u{e4}*".as_bytes(),
            "x/\u{e4}y".as_bytes()
        ));
        assert!(Pattern::new("inbox").matches("INBOX", true));
        assert!(!Pattern::new("inbox").matches("INBOX", false));
        assert!(Pattern::new("a/%").ends_with_percent());
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let pattern = "*%".repeat(5000) + "x";
        let name = "a".repeat(1000);
        let start = std::time::Instant::now();
        assert!(!matches_pattern(pattern.as_bytes(), name.as_bytes()));
        let pattern = "a*".repeat(500) + "b";
        assert!(!matches_pattern(pattern.as_bytes(), name.as_bytes()));
        let pattern = "%a".repeat(400) + "%";
        assert!(matches_pattern(pattern.as_bytes(), name.as_bytes()));
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }
}
