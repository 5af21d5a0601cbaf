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

/// LIST pattern matching (RFC 9051 §6.3.9): `*` matches anything, `%` anything but
/// the delimiter `/`.
pub(crate) fn matches_pattern(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| {
            name.get(i..)
                .is_some_and(|tail| matches_pattern(rest, tail))
        }),
        Some((b'%', rest)) => (0..=name.len())
            .take_while(|&i| i == 0 || name.get(i - 1) != Some(&b'/'))
            .any(|i| {
                name.get(i..)
                    .is_some_and(|tail| matches_pattern(rest, tail))
            }),
        Some((c, rest)) => match name.split_first() {
            Some((n, tail)) if n == c => matches_pattern(rest, tail),
            _ => false,
        },
    }
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

/// A store error as `NO` with the response code of RFC 9051 §7.1.
pub(crate) fn store_error(out: &mut Vec<u8>, tag: &Tag, e: &StoreError) {
    let code = match e {
        StoreError::NotFound(_) => "NONEXISTENT",
        StoreError::Exists(_) => "ALREADYEXISTS",
        StoreError::Refused(_) => "CANNOT",
        StoreError::OverQuota(_) => "OVERQUOTA",
        StoreError::Busy => "INUSE",
        _ => {
            tracing::warn!(error = %e, "store error");
            "SERVERBUG"
        }
    };
    out.extend_from_slice(format!("{tag} NO [{code}] operation failed\r\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches_pattern(b"*", b"a/b"));
        assert!(!matches_pattern(b"%", b"a/b"));
        assert!(matches_pattern(b"%", b"INBOX"));
        assert!(matches_pattern(b"a/%", b"a/b"));
        assert!(matches_pattern(b"a*", b"a/b/c"));
        assert!(!matches_pattern(b"b*", b"a"));
    }
}
