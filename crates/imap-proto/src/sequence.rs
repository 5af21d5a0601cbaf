//! Sequence sets (RFC 9051 §9 `sequence-set`, RFC 5182 `$`): kept as the ranges the
//! client wrote, never expanded into every number, so `1:4294967295` costs one entry.
//! The writer side compacts numbers into ranges (`1:5,7`) for VANISHED, ESEARCH and
//! COPYUID (RFC 7162 §3.2.10, RFC 4731 §3.1, RFC 4315 §3).

use crate::cursor::{Cursor, PResult};
use std::fmt;
use std::str::FromStr;

/// `seq-number = nz-number / "*"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeqNumber {
    /// A message sequence number or UID.
    Value(u32),
    /// `*`: the largest number in use.
    Largest,
}

impl SeqNumber {
    /// The number, with `*` standing for `largest`.
    pub fn resolve(self, largest: u32) -> u32 {
        match self {
            SeqNumber::Value(n) => n,
            SeqNumber::Largest => largest,
        }
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeqNumber::Value(n) => write!(f, "{n}"),
            SeqNumber::Largest => f.write_str("*"),
        }
    }
}

/// `seq-range`, or one number when `start == end`. `4:2` is the same as `2:4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeqRange {
    /// First end as written.
    pub start: SeqNumber,
    /// Second end as written (equal to `start` for a single number).
    pub end: SeqNumber,
}

impl SeqRange {
    /// The inclusive bounds, low first, with `*` standing for `largest`.
    pub fn bounds(&self, largest: u32) -> (u32, u32) {
        let a = self.start.resolve(largest);
        let b = self.end.resolve(largest);
        (a.min(b), a.max(b))
    }
}

/// A `sequence-set`, or `$` (the saved SEARCH result, RFC 5182 §2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SequenceSet {
    /// The ranges as written, in order; never empty when parsed.
    Ranges(Vec<SeqRange>),
    /// `$`: substitute the saved search result.
    Saved,
}

impl SequenceSet {
    /// One number.
    pub fn single(n: u32) -> Self {
        SequenceSet::Ranges(vec![SeqRange {
            start: SeqNumber::Value(n),
            end: SeqNumber::Value(n),
        }])
    }

    /// The ranges (empty for `$`).
    pub fn ranges(&self) -> &[SeqRange] {
        match self {
            SequenceSet::Ranges(r) => r,
            SequenceSet::Saved => &[],
        }
    }

    /// True when the set is `$`.
    pub fn is_saved(&self) -> bool {
        matches!(self, SequenceSet::Saved)
    }

    /// True when `*` appears (a UID set used as `known-uids` may not have it,
    /// RFC 7162 §3.2.5.2).
    pub fn has_largest(&self) -> bool {
        self.ranges()
            .iter()
            .any(|r| r.start == SeqNumber::Largest || r.end == SeqNumber::Largest)
    }

    /// Is `n` in the set, with `*` standing for `largest`? Always false for `$`.
    pub fn contains(&self, n: u32, largest: u32) -> bool {
        self.ranges().iter().any(|r| {
            let (lo, hi) = r.bounds(largest);
            lo <= n && n <= hi
        })
    }

    /// The set as sorted, merged, inclusive ranges with `*` standing for `largest`;
    /// zero is dropped (it is what `*` gives in an empty mailbox). Empty for `$`.
    pub fn resolve(&self, largest: u32) -> Vec<(u32, u32)> {
        let mut v: Vec<(u32, u32)> = self
            .ranges()
            .iter()
            .map(|r| r.bounds(largest))
            .filter(|&(_, hi)| hi > 0)
            .map(|(lo, hi)| (lo.max(1), hi))
            .collect();
        v.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(v.len());
        for (lo, hi) in v {
            match out.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        out
    }

    /// Every number of the set in ascending order, without duplicates, computed as it
    /// goes (see [`SequenceSet::resolve`]).
    pub fn iter(&self, largest: u32) -> impl Iterator<Item = u32> + use<> {
        self.resolve(largest)
            .into_iter()
            .flat_map(|(lo, hi)| lo..=hi)
    }

    /// Builds a set from numbers, joining runs of consecutive ascending numbers and
    /// keeping the order otherwise (COPYUID pairs source and destination UIDs by
    /// position, RFC 4315 §3). Sort the input first for the canonical form. Zero is
    /// skipped. `None` when there is no number.
    pub fn compact(numbers: impl IntoIterator<Item = u32>) -> Option<Self> {
        let mut out: Vec<SeqRange> = Vec::new();
        let mut run: Option<(u32, u32)> = None;
        let push = |out: &mut Vec<SeqRange>, (a, b): (u32, u32)| {
            out.push(SeqRange {
                start: SeqNumber::Value(a),
                end: SeqNumber::Value(b),
            })
        };
        for n in numbers.into_iter().filter(|&n| n != 0) {
            run = match run {
                Some((a, b)) if b.checked_add(1) == Some(n) => Some((a, n)),
                Some(r) => {
                    push(&mut out, r);
                    Some((n, n))
                }
                None => Some((n, n)),
            };
        }
        if let Some(r) = run {
            push(&mut out, r);
        }
        if out.is_empty() {
            None
        } else {
            Some(SequenceSet::Ranges(out))
        }
    }

    /// Builds a set from sorted, merged inclusive ranges (as [`SequenceSet::resolve`]
    /// returns). `None` when empty.
    pub fn from_ranges(ranges: impl IntoIterator<Item = (u32, u32)>) -> Option<Self> {
        let v: Vec<SeqRange> = ranges
            .into_iter()
            .filter(|&(a, b)| a != 0 && b != 0)
            .map(|(a, b)| SeqRange {
                start: SeqNumber::Value(a),
                end: SeqNumber::Value(b),
            })
            .collect();
        if v.is_empty() {
            None
        } else {
            Some(SequenceSet::Ranges(v))
        }
    }
}

impl fmt::Display for SequenceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SequenceSet::Saved => f.write_str("$"),
            SequenceSet::Ranges(ranges) => {
                for (i, r) in ranges.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    if r.start == r.end {
                        write!(f, "{}", r.start)?;
                    } else {
                        write!(f, "{}:{}", r.start, r.end)?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// The error of [`SequenceSet::from_str`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSequenceSet;

impl fmt::Display for InvalidSequenceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid sequence set")
    }
}

impl std::error::Error for InvalidSequenceSet {}

impl FromStr for SequenceSet {
    type Err = InvalidSequenceSet;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut c = Cursor::new(s.as_bytes(), None, crate::TextMode::Utf8);
        let set = sequence_set(&mut c).map_err(|_| InvalidSequenceSet)?;
        c.end().map_err(|_| InvalidSequenceSet)?;
        Ok(set)
    }
}

/// `seq-number = nz-number / "*"`.
fn seq_number(c: &mut Cursor<'_>) -> PResult<SeqNumber> {
    if c.eat(b'*') {
        Ok(SeqNumber::Largest)
    } else {
        c.nz_number().map(SeqNumber::Value)
    }
}

/// ```text
/// sequence-set = (seq-number / seq-range) ["," sequence-set]
/// sequence-set =/ seq-last-command        ; "$", RFC 5182
/// seq-range    = seq-number ":" seq-number
/// ```
pub(crate) fn sequence_set(c: &mut Cursor<'_>) -> PResult<SequenceSet> {
    if c.eat(b'$') {
        return Ok(SequenceSet::Saved);
    }
    if !matches!(c.peek(), Some(b'0'..=b'9' | b'*')) {
        return c.fail("expected a sequence set");
    }
    let mut ranges = Vec::new();
    loop {
        let start = seq_number(c)?;
        let end = if c.eat(b':') { seq_number(c)? } else { start };
        ranges.push(SeqRange { start, end });
        if !c.eat(b',') {
            return Ok(SequenceSet::Ranges(ranges));
        }
    }
}

/// A sequence set that may not use `*` or `$` (QRESYNC `known-uids`,
/// `known-sequence-set`, `known-uid-set`; RFC 7162 §7).
pub(crate) fn known_set(c: &mut Cursor<'_>) -> PResult<SequenceSet> {
    let set = sequence_set(c)?;
    if set.is_saved() || set.has_largest() {
        return c.fail("'*' and '$' are not allowed in QRESYNC sets");
    }
    Ok(set)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn set(s: &str) -> SequenceSet {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_display() {
        for s in [
            "1",
            "1:5",
            "2,4:7,9,12:*",
            "*:4,5:7",
            "*",
            "$",
            "4294967295",
        ] {
            assert_eq!(set(s).to_string(), s);
        }
        for bad in [
            "",
            "0",
            "1:0",
            "1,",
            ",1",
            "1::2",
            "a",
            "1:*:2",
            "4294967296",
            "$,1",
            "1 ",
        ] {
            assert!(bad.parse::<SequenceSet>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn rfc_examples_resolve() {
        // RFC 9051 §9: 2,4:7,9,12:* with 15 messages.
        let s = set("2,4:7,9,12:*");
        assert_eq!(
            s.iter(15).collect::<Vec<_>>(),
            [2, 4, 5, 6, 7, 9, 12, 13, 14, 15]
        );
        // *:4,5:7 with 10 messages is 4..=10.
        assert_eq!(set("*:4,5:7").resolve(10), [(4, 10)]);
        // 3291:* includes the last UID even when it is lower.
        assert!(set("3291:*").contains(100, 100));
        assert_eq!(set("3291:*").resolve(100), [(100, 3291)]);
        // Reversed ranges.
        assert_eq!(set("4:2").resolve(0), [(2, 4)]);
    }

    #[test]
    fn huge_ranges_stay_small() {
        let s = set("1:4294967295");
        assert_eq!(s.ranges().len(), 1);
        assert!(s.contains(4_000_000_000, 5));
        assert_eq!(s.resolve(1), [(1, u32::MAX)]);
        assert_eq!(s.iter(1).nth(10), Some(11));
        // Merging at the top of the range does not overflow.
        assert_eq!(set("4294967295,1:4294967294").resolve(1), [(1, u32::MAX)]);
    }

    #[test]
    fn star_in_empty_mailbox_is_nothing() {
        assert!(set("*").resolve(0).is_empty());
        assert_eq!(set("1:*").resolve(0), [(1, 1)]);
        assert!(set("$").resolve(10).is_empty());
        assert!(!set("$").contains(1, 1));
    }

    #[test]
    fn compaction() {
        let c = SequenceSet::compact([1, 2, 3, 4, 5, 7, 9, 10]).unwrap();
        assert_eq!(c.to_string(), "1:5,7,9:10");
        // Order is kept for COPYUID.
        let c = SequenceSet::compact([5, 6, 1, 2]).unwrap();
        assert_eq!(c.to_string(), "5:6,1:2");
        assert_eq!(SequenceSet::compact([]), None);
        assert_eq!(SequenceSet::compact([0]), None);
        assert_eq!(
            SequenceSet::compact([u32::MAX - 1, u32::MAX])
                .unwrap()
                .to_string(),
            "4294967294:4294967295"
        );
        let r = set("3,1:2,9").resolve(9);
        assert_eq!(SequenceSet::from_ranges(r).unwrap().to_string(), "1:3,9");
    }
}
