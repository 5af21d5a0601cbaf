//! Header fields of one header section: splitting into fields, the unfolded value,
//! and the `HEADER.FIELDS` subset (RFC 9051 §6.4.5).

use crate::rfc822::NUL_REPLACEMENT;

/// Longest field name taken as a name (RFC 5322 §2.1.1 line limit); a longer "name"
/// makes the whole line a nameless value, as Dovecot does.
const MAX_NAME_LEN: usize = 1000;

/// One header field as it stands in the message: its name and all its lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawField<'a> {
    /// The field name without the white space before the colon; empty for a line
    /// without a colon.
    pub name: &'a [u8],
    /// The whole field: name, colon, value and every continuation line, each line
    /// with its line ending.
    pub raw: &'a [u8],
}

impl<'a> RawField<'a> {
    /// Splits one raw field (all its lines).
    pub fn parse(raw: &'a [u8]) -> Self {
        let first_line = raw
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw, |i| raw.get(..i).unwrap_or_default());
        let name = match first_line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let name = first_line.get(..colon).unwrap_or_default();
                let trimmed = trim_end_lwsp(name);
                if trimmed.len() > MAX_NAME_LEN {
                    &[][..]
                } else {
                    trimmed
                }
            }
            None => &[][..],
        };
        RawField { name, raw }
    }

    /// True when the field is named `name` (ASCII case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        !self.name.is_empty() && self.name.eq_ignore_ascii_case(name.as_bytes())
    }

    /// The value as Dovecot keeps it: white space after the colon skipped (one octet
    /// when the line holds nothing else), CRs dropped, each continuation line joined
    /// with a LF and its leading white space kept, NUL turned into U+FFFD.
    pub fn value(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.raw.len());
        let mut first = true;
        for line in lines(self.raw) {
            let line = strip_eol(line);
            if first {
                first = false;
                let after_name = match line.iter().position(|&b| b == b':') {
                    Some(c)
                        if trim_end_lwsp(line.get(..c).unwrap_or_default()).len()
                            <= MAX_NAME_LEN =>
                    {
                        line.get(c + 1..)
                    }
                    // A line without a usable name is all value.
                    _ => None,
                };
                let (value, skip) = match after_name {
                    Some(value) => {
                        let skip = value.iter().take_while(|&&b| is_lwsp(b)).count();
                        let skip = if skip == value.len() {
                            usize::from(!value.is_empty())
                        } else {
                            skip
                        };
                        (value, skip)
                    }
                    None => (line, 0),
                };
                push_no_nul(&mut out, value.get(skip..).unwrap_or_default());
            } else {
                out.push(b'\n');
                push_no_nul(&mut out, line);
            }
        }
        out
    }
}

fn push_no_nul(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b == 0 {
            out.extend_from_slice(NUL_REPLACEMENT);
        } else {
            out.push(b);
        }
    }
}

/// Space or tab.
pub(crate) fn is_lwsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_end_lwsp(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., last] = s {
        if !is_lwsp(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// A line without its LF and the CR before it.
pub(crate) fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The lines of `bytes`, each with its LF (the last may have none).
pub(crate) fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        rest = tail;
        Some(line)
    })
}

/// True for the empty line that ends a header section.
pub(crate) fn is_blank_line(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

/// The fields of a header section (the blank line that ends it, and anything after
/// it, is not a field). A line that starts with white space continues the field
/// before it.
pub fn fields(header: &[u8]) -> impl Iterator<Item = RawField<'_>> {
    let mut rest = header;
    std::iter::from_fn(move || {
        let first_end = line_end(rest)?;
        let first = rest.get(..first_end).unwrap_or_default();
        if is_blank_line(first) {
            rest = &[];
            return None;
        }
        let mut end = first_end;
        while let Some(next) = rest.get(end..) {
            match next.first() {
                Some(&b) if is_lwsp(b) => match line_end(next) {
                    Some(n) => end += n,
                    None => break,
                },
                _ => break,
            }
        }
        let (raw, tail) = rest.split_at(end.min(rest.len()));
        rest = tail;
        Some(RawField::parse(raw))
    })
}

/// Length of the first line of `bytes` with its LF; `None` when `bytes` is empty.
fn line_end(bytes: &[u8]) -> Option<usize> {
    if bytes.is_empty() {
        return None;
    }
    Some(
        bytes
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| i + 1),
    )
}

/// RFC 9051 §6.4.5 `HEADER.FIELDS` (`not` = false) and `HEADER.FIELDS.NOT` (`not` =
/// true): the fields of `header` whose name matches one of `names` (ASCII
/// case-insensitive, otherwise exact), in message order and byte for byte, then the
/// blank line that ended the header section when it had one.
pub fn filter_header<S: AsRef<str>>(header: &[u8], names: &[S], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut consumed = 0;
    for field in fields(header) {
        consumed += field.raw.len();
        let hit = names.iter().any(|n| field.is(n.as_ref()));
        if hit != not {
            out.extend_from_slice(field.raw);
            if !field.raw.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    let rest = header.get(consumed..).unwrap_or_default();
    let blank = line_end(rest).and_then(|n| rest.get(..n));
    if let Some(blank) = blank.filter(|l| is_blank_line(l)) {
        out.extend_from_slice(blank);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_like_dovecot() {
        let f = RawField::parse(b"Subject :  a\r\n\tb \r\n");
        assert_eq!(f.name, b"Subject");
        assert_eq!(f.value(), b"a\n\tb ");
        assert_eq!(RawField::parse(b"X: \r\n").value(), b"");
        assert_eq!(RawField::parse(b"X:  \r\n").value(), b" ");
        assert_eq!(
            RawField::parse(b"garbage line\r\n").value(),
            b"garbage line"
        );
        assert_eq!(RawField::parse(b"X:\r\n y\r\n").value(), b"\n y");
    }

    #[test]
    fn fields_and_filter() {
        let h = b"From: a\r\nSubject: x\r\n y\r\nTo: b\r\n\r\n";
        let names: Vec<_> = fields(h).map(|f| f.name).collect();
        assert_eq!(names, vec![&b"From"[..], b"Subject", b"To"]);
        assert_eq!(
            filter_header(h, &["subject", "TO"], false),
            b"Subject: x\r\n y\r\nTo: b\r\n\r\n"
        );
        assert_eq!(
            filter_header(h, &["subject"], true),
            b"From: a\r\nTo: b\r\n\r\n"
        );
        assert_eq!(filter_header(b"From: a\r\n", &["x"], false), b"");
        assert_eq!(filter_header(b"From: a", &["from"], false), b"From: a\r\n");
    }
}
