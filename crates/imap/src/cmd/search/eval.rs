//! Evaluation of SEARCH criteria (RFC 9051 §6.4.4, RFC 3501 §6.4.4 for NEW / OLD /
//! RECENT, RFC 7162 §3.1.5 for MODSEQ) against one message of the selected mailbox.
//!
//! A [`SearchKey`] is first compiled against the snapshot ([`compile`]): sequence and
//! UID sets become sorted ranges (`$` the saved UIDs), dates become day numbers. Each
//! compiled [`Node`] then answers with three values ([`eval`]): `Some(true)`,
//! `Some(false)`, or `None` when it needs more of the message than the caller has
//! loaded so far ([`Level`]). AND, OR and NOT combine these the Kleene way, so a
//! message is decided by its flags, sizes and dates alone whenever that is enough and
//! its metadata, header or text is read only when the answer still depends on it.

use crate::selected::Selected;
use buudien_imap_proto::{Date, SearchKey, SequenceSet};
use buudien_message::{MessageMeta, header_value_matches, sent_date, text_matches};
use buudien_store::{Flags, MessageEntry};
use std::time::SystemTime;

/// How much of a message a criterion needs, cheapest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    /// The snapshot entry: flags, keywords, size, INTERNALDATE, UID, MODSEQ.
    Entry,
    /// The stored metadata (the `Date:` header through the envelope).
    Meta,
    /// The header section of the message.
    Header,
    /// The whole message.
    Text,
}

/// A date comparison (BEFORE / ON / SINCE and their SENT forms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    /// Strictly earlier than the date.
    Before,
    /// The same date.
    On,
    /// The date or later.
    Since,
}

impl Cmp {
    fn test(self, day: i64, against: i64) -> bool {
        match self {
            Cmp::Before => day < against,
            Cmp::On => day == against,
            Cmp::Since => day >= against,
        }
    }
}

/// A compiled search key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// `ALL` (and keys that are constant in this mailbox).
    Const(bool),
    /// A system flag is set (`true`) or not set (`false`).
    Flag(Flags, bool),
    /// A keyword is set (`true`) or not (`false`); compared ASCII case-insensitively.
    Keyword(String, bool),
    /// `RECENT` (`true`) or `OLD` (`false`).
    Recent(bool),
    /// `NEW`: recent and not seen.
    New,
    /// `LARGER n`.
    Larger(u64),
    /// `SMALLER n`.
    Smaller(u64),
    /// BEFORE / ON / SINCE on the INTERNALDATE (days since 1970-01-01).
    Internal(Cmp, i64),
    /// SENTBEFORE / SENTON / SENTSINCE on the `Date:` header (days since 1970-01-01).
    Sent(Cmp, i64),
    /// Sequence numbers in these sorted, merged ranges.
    Seq(Vec<(u32, u32)>),
    /// UIDs in these sorted, merged ranges.
    Uid(Vec<(u32, u32)>),
    /// MODSEQ at least this.
    ModSeq(u64),
    /// A header field contains the string (FROM, TO, CC, BCC, SUBJECT, HEADER).
    Header(String, String),
    /// BODY (`true`) or TEXT (`false`) contains the string.
    Text(String, bool),
    /// A BODY / TEXT key the store's text index answered ([`Indexed`]).
    Indexed(Box<Indexed>),
    /// All must match.
    And(Vec<Node>),
    /// Either matches.
    Or(Box<Node>, Box<Node>),
    /// Does not match.
    Not(Box<Node>),
}

/// A BODY / TEXT key answered by the store's text index: the messages it found and
/// those it does not cover, which are read and scanned as for [`Node::Text`]. Any
/// other message does not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Indexed {
    /// The string.
    pub(crate) needle: String,
    /// BODY (`true`) or TEXT (`false`).
    pub(crate) body_only: bool,
    /// UIDs of the messages containing it, ascending.
    pub(crate) hits: Vec<u32>,
    /// UIDs of the messages the index does not cover, ascending.
    pub(crate) unknown: Vec<u32>,
}

/// The distinct BODY / TEXT keys of `n`, for the text index to answer.
pub(crate) fn text_keys(n: &Node, out: &mut Vec<(String, bool)>) {
    match n {
        Node::Text(needle, body_only)
            if !out.iter().any(|(s, b)| s == needle && b == body_only) =>
        {
            out.push((needle.clone(), *body_only));
        }
        Node::Not(k) => text_keys(k, out),
        Node::Or(a, b) => {
            text_keys(a, out);
            text_keys(b, out);
        }
        Node::And(keys) => keys.iter().for_each(|k| text_keys(k, out)),
        _ => {}
    }
}

/// `n` with each BODY / TEXT key the index answered (in `answers`) replaced by its
/// answer; the others stay, to be scanned.
pub(crate) fn with_answers(n: Node, answers: &[Indexed]) -> Node {
    match n {
        Node::Text(needle, body_only) => {
            match answers
                .iter()
                .find(|a| a.needle == needle && a.body_only == body_only)
            {
                Some(a) => Node::Indexed(Box::new(a.clone())),
                None => Node::Text(needle, body_only),
            }
        }
        Node::Not(k) => Node::Not(Box::new(with_answers(*k, answers))),
        Node::Or(a, b) => Node::Or(
            Box::new(with_answers(*a, answers)),
            Box::new(with_answers(*b, answers)),
        ),
        Node::And(keys) => Node::And(keys.into_iter().map(|k| with_answers(k, answers)).collect()),
        other => other,
    }
}

/// A compiled search program.
pub(crate) struct Program {
    /// The root node.
    pub(crate) root: Node,
    /// The MODSEQ key is used somewhere (RFC 7162 §3.1.5: the response carries the
    /// highest MODSEQ and CONDSTORE is enabled).
    pub(crate) uses_modseq: bool,
}

/// Compiles `key` against the snapshot `sel`.
pub(crate) fn compile(key: &SearchKey, sel: &Selected) -> Program {
    let mut uses_modseq = false;
    let root = node(key, sel, &mut uses_modseq);
    Program { root, uses_modseq }
}

fn date_day(d: &Date) -> i64 {
    d.days_since_epoch()
}

/// The ranges of a set: `$` is the saved UIDs, whatever the position.
fn set_node(set: &SequenceSet, uid: bool, sel: &Selected) -> Node {
    if set.is_saved() {
        let mut uids: Vec<u32> = sel.saved.iter().map(|u| u.0).collect();
        uids.sort_unstable();
        uids.dedup();
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for u in uids {
            match ranges.last_mut() {
                Some(last) if last.1.checked_add(1) == Some(u) => last.1 = u,
                _ => ranges.push((u, u)),
            }
        }
        return Node::Uid(ranges);
    }
    if uid {
        Node::Uid(set.resolve(sel.max_uid()))
    } else {
        Node::Seq(set.resolve(sel.len()))
    }
}

fn node(key: &SearchKey, sel: &Selected, modseq: &mut bool) -> Node {
    use SearchKey as K;
    let text = |s: &String| s.clone();
    match key {
        K::All => Node::Const(true),
        K::Answered => Node::Flag(Flags::ANSWERED, true),
        K::Unanswered => Node::Flag(Flags::ANSWERED, false),
        K::Deleted => Node::Flag(Flags::DELETED, true),
        K::Undeleted => Node::Flag(Flags::DELETED, false),
        K::Draft => Node::Flag(Flags::DRAFT, true),
        K::Undraft => Node::Flag(Flags::DRAFT, false),
        K::Flagged => Node::Flag(Flags::FLAGGED, true),
        K::Unflagged => Node::Flag(Flags::FLAGGED, false),
        K::Seen => Node::Flag(Flags::SEEN, true),
        K::Unseen => Node::Flag(Flags::SEEN, false),
        K::Keyword(k) => Node::Keyword(k.clone(), true),
        K::Unkeyword(k) => Node::Keyword(k.clone(), false),
        K::Recent => Node::Recent(true),
        K::Old => Node::Recent(false),
        K::New => Node::New,
        K::Larger(n) => Node::Larger(*n),
        K::Smaller(n) => Node::Smaller(*n),
        K::Before(d) => Node::Internal(Cmp::Before, date_day(d)),
        K::On(d) => Node::Internal(Cmp::On, date_day(d)),
        K::Since(d) => Node::Internal(Cmp::Since, date_day(d)),
        K::SentBefore(d) => Node::Sent(Cmp::Before, date_day(d)),
        K::SentOn(d) => Node::Sent(Cmp::On, date_day(d)),
        K::SentSince(d) => Node::Sent(Cmp::Since, date_day(d)),
        K::SequenceSet(set) => set_node(set, false, sel),
        K::Uid(set) => set_node(set, true, sel),
        K::ModSeq { modseq: m, .. } => {
            // RFC 7162 §3.1.5: a server without per-flag mod-sequences ignores the
            // entry name and type.
            *modseq = true;
            Node::ModSeq(m.0)
        }
        K::From(s) => Node::Header("From".into(), text(s)),
        K::To(s) => Node::Header("To".into(), text(s)),
        K::Cc(s) => Node::Header("Cc".into(), text(s)),
        K::Bcc(s) => Node::Header("Bcc".into(), text(s)),
        K::Subject(s) => Node::Header("Subject".into(), text(s)),
        K::Header(f, s) => Node::Header(f.clone(), text(s)),
        K::Body(s) => Node::Text(text(s), true),
        K::Text(s) => Node::Text(text(s), false),
        K::Not(k) => Node::Not(Box::new(node(k, sel, modseq))),
        K::Or(a, b) => Node::Or(
            Box::new(node(a, sel, modseq)),
            Box::new(node(b, sel, modseq)),
        ),
        K::And(keys) => Node::And(keys.iter().map(|k| node(k, sel, modseq)).collect()),
    }
}

/// What is known of one message while it is evaluated.
pub(crate) struct Msg<'a> {
    /// Its sequence number.
    pub(crate) seq: u32,
    /// Its snapshot entry.
    pub(crate) entry: &'a MessageEntry,
    /// `\Recent` in this session.
    pub(crate) recent: bool,
    /// Its metadata, once loaded.
    pub(crate) meta: Option<&'a MessageMeta>,
    /// Its header section, once read.
    pub(crate) header: Option<&'a [u8]>,
    /// The whole message, once read.
    pub(crate) whole: Option<&'a [u8]>,
}

fn in_ranges(ranges: &[(u32, u32)], n: u32) -> bool {
    let i = ranges.partition_point(|&(lo, _)| lo <= n);
    i.checked_sub(1)
        .and_then(|i| ranges.get(i))
        .is_some_and(|&(_, hi)| n <= hi)
}

/// The INTERNALDATE as days since 1970-01-01 in UTC, the zone FETCH shows it in
/// (`+0000`), so that ON matches the date the client sees.
fn internal_day(t: SystemTime) -> i64 {
    let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    };
    secs.div_euclid(86_400)
}

/// Evaluates `n` for `m`: `None` when the answer needs data `m` does not have yet.
pub(crate) fn eval(n: &Node, m: &Msg<'_>) -> Option<bool> {
    Some(match n {
        Node::Const(b) => *b,
        Node::Flag(f, want) => m.entry.flags.contains(*f) == *want,
        Node::Keyword(k, want) => {
            m.entry
                .keywords
                .iter()
                .any(|have| have.eq_ignore_ascii_case(k))
                == *want
        }
        Node::Recent(want) => m.recent == *want,
        Node::New => m.recent && !m.entry.flags.contains(Flags::SEEN),
        Node::Larger(n) => m.entry.size > *n,
        Node::Smaller(n) => m.entry.size < *n,
        Node::Internal(cmp, day) => cmp.test(internal_day(m.entry.received), *day),
        Node::Seq(r) => in_ranges(r, m.seq),
        Node::Uid(r) => in_ranges(r, m.entry.uid.0),
        Node::ModSeq(min) => m.entry.modseq >= *min,
        Node::Sent(cmp, day) => {
            // RFC 9051 §6.4.4: the Date: header "disregarding time and timezone", so
            // the date as written; a message without a usable Date: never matches.
            let meta = m.meta?;
            sent_date(meta)
                .and_then(|s| Date::new(s.year, s.month, s.day))
                .is_some_and(|d| cmp.test(d.days_since_epoch(), *day))
        }
        Node::Header(field, needle) => {
            header_value_matches(m.header?, field, needle)
                || m.meta
                    .is_some_and(|meta| address_matches(meta, field, needle))
        }
        Node::Text(needle, body_only) => text_matches(m.whole?, m.meta?, needle, *body_only),
        Node::Indexed(ix) => {
            let uid = m.entry.uid.0;
            if ix.unknown.binary_search(&uid).is_ok() {
                text_matches(m.whole?, m.meta?, &ix.needle, ix.body_only)
            } else {
                ix.hits.binary_search(&uid).is_ok()
            }
        }
        Node::Not(k) => !eval(k, m)?,
        Node::Or(a, b) => match (eval(a, m), eval(b, m)) {
            (Some(true), _) | (_, Some(true)) => true,
            (Some(false), Some(false)) => false,
            _ => return None,
        },
        Node::And(keys) => {
            let mut unknown = false;
            for k in keys {
                match eval(k, m) {
                    Some(false) => return Some(false),
                    Some(true) => {}
                    None => unknown = true,
                }
            }
            if unknown {
                return None;
            }
            true
        }
    })
}

/// FROM/TO/CC/BCC also match the parsed addresses as `mailbox@host`, so comments
/// and folding inside an address (`<user (c)@ (c) example.org>`) do not hide it, as
/// Dovecot matches them.
fn address_matches(meta: &MessageMeta, field: &str, needle: &str) -> bool {
    let e = &meta.envelope;
    let list = match field.to_ascii_lowercase().as_str() {
        "from" => &e.from,
        "to" => &e.to,
        "cc" => &e.cc,
        "bcc" => &e.bcc,
        _ => return false,
    };
    let needle = needle.to_lowercase();
    list.iter().any(|a| {
        let (Some(mailbox), Some(host)) = (&a.mailbox, &a.host) else {
            return false;
        };
        let spec = format!(
            "{}@{}",
            String::from_utf8_lossy(mailbox),
            String::from_utf8_lossy(host)
        );
        spec.to_lowercase().contains(&needle)
    })
}

/// True when the node looks beyond a session's snapshot (UID, flags, keywords,
/// MODSEQ, `\\Recent`, numbers): sizes, dates, headers or text.
pub(crate) fn beyond_snapshot(n: &Node) -> bool {
    match n {
        Node::Larger(_)
        | Node::Smaller(_)
        | Node::Internal(..)
        | Node::Sent(..)
        | Node::Header(..)
        | Node::Text(..) => true,
        // Messages the index covers are decided by their UID alone.
        Node::Indexed(ix) => !ix.unknown.is_empty(),
        Node::Not(k) => beyond_snapshot(k),
        Node::Or(a, b) => beyond_snapshot(a) || beyond_snapshot(b),
        Node::And(keys) => keys.iter().any(beyond_snapshot),
        _ => false,
    }
}

/// True when a key is answered by the text index.
pub(crate) fn uses_index(n: &Node) -> bool {
    match n {
        Node::Indexed(_) => true,
        Node::Not(k) => uses_index(k),
        Node::Or(a, b) => uses_index(a) || uses_index(b),
        Node::And(keys) => keys.iter().any(uses_index),
        _ => false,
    }
}

/// The most a node can need.
pub(crate) fn level(n: &Node) -> Level {
    match n {
        Node::Sent(..) => Level::Meta,
        Node::Header(..) => Level::Header,
        Node::Text(..) => Level::Text,
        Node::Indexed(ix) if !ix.unknown.is_empty() => Level::Text,
        Node::Not(k) => level(k),
        Node::Or(a, b) => level(a).max(level(b)),
        Node::And(keys) => keys.iter().map(level).max().unwrap_or(Level::Entry),
        _ => Level::Entry,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use buudien_store::{BlobId, MailboxId};
    use buudien_types::Uid;
    use std::time::Duration;

    fn entry(uid: u32, flags: Flags, size: u64, day: u64) -> MessageEntry {
        MessageEntry {
            uid: Uid(uid),
            blob: BlobId([0; 32]),
            size,
            ascii_size: None,
            flags,
            keywords: vec!["$Junk".into()],
            modseq: u64::from(uid) * 10,
            received: SystemTime::UNIX_EPOCH + Duration::from_secs(day * 86_400 + 3600),
        }
    }

    fn messages() -> Vec<MessageEntry> {
        vec![
            entry(3, Flags::SEEN, 100, 10),
            entry(7, Flags::default(), 2000, 11),
            entry(9, Flags::FLAGGED, 50, 12),
        ]
    }

    fn sel() -> Selected {
        let mut s = Selected::new(
            MailboxId::default(),
            false,
            &messages(),
            90,
            vec![Uid(7), Uid(9)],
        );
        s.saved = vec![Uid(9), Uid(3)];
        s
    }

    fn run(key: SearchKey) -> Vec<u32> {
        let s = sel();
        let p = compile(&key, &s);
        messages()
            .iter()
            .enumerate()
            .filter(|(i, e)| {
                let m = Msg {
                    seq: u32::try_from(*i).unwrap() + 1,
                    entry: e,
                    recent: s.is_recent(e.uid),
                    meta: None,
                    header: None,
                    whole: None,
                };
                eval(&p.root, &m).unwrap()
            })
            .map(|(_, e)| e.uid.0)
            .collect()
    }

    #[test]
    fn cheap_keys() {
        assert_eq!(run(SearchKey::Unseen), vec![7, 9]);
        assert_eq!(run(SearchKey::New), vec![7, 9]);
        assert_eq!(run(SearchKey::Old), vec![3]);
        assert_eq!(run(SearchKey::Larger(100)), vec![7]);
        assert_eq!(run(SearchKey::Smaller(100)), vec![9]);
        let d = Date::from_days_since_epoch(11).unwrap();
        assert_eq!(run(SearchKey::On(d)), vec![7]);
        assert_eq!(run(SearchKey::Before(d)), vec![3]);
        assert_eq!(run(SearchKey::Since(d)), vec![7, 9]);
        assert_eq!(run(SearchKey::Keyword("$junk".into())), vec![3, 7, 9]);
        assert_eq!(run(SearchKey::Unkeyword("$Junk".into())), Vec::<u32>::new());
        assert_eq!(
            run(SearchKey::SequenceSet("2:*".parse().unwrap())),
            vec![7, 9]
        );
        assert_eq!(run(SearchKey::Uid("4:8,*".parse().unwrap())), vec![7, 9]);
        assert_eq!(run(SearchKey::Uid(SequenceSet::Saved)), vec![3, 9]);
        assert_eq!(
            run(SearchKey::SequenceSet(SequenceSet::Saved)),
            vec![3, 9],
            "$ is UIDs in both positions"
        );
    }

    #[test]
    fn logic_is_three_valued() {
        let s = sel();
        let all = messages();
        let e = &all[0];
        let m = Msg {
            seq: 1,
            entry: e,
            recent: false,
            meta: None,
            header: None,
            whole: None,
        };
        let body = || Box::new(Node::Text("x".into(), true));
        let seen = || Box::new(Node::Flag(Flags::SEEN, true));
        let unseen = || Box::new(Node::Flag(Flags::SEEN, false));
        assert_eq!(eval(&Node::Or(seen(), body()), &m), Some(true));
        assert_eq!(eval(&Node::Or(unseen(), body()), &m), None);
        assert_eq!(eval(&Node::And(vec![*unseen(), *body()]), &m), Some(false));
        assert_eq!(eval(&Node::And(vec![*seen(), *body()]), &m), None);
        assert_eq!(eval(&Node::Not(body()), &m), None);
        assert_eq!(level(&Node::Or(seen(), body())), Level::Text);
        let p = compile(
            &SearchKey::ModSeq {
                entry: None,
                modseq: buudien_types::ModSeq(40),
            },
            &s,
        );
        assert!(p.uses_modseq);
        assert_eq!(p.root, Node::ModSeq(40));
    }

    #[test]
    fn indexed_keys_answer_without_the_message() {
        let all = messages();
        let at = |i: usize| Msg {
            seq: u32::try_from(i).unwrap() + 1,
            entry: &all[i],
            recent: false,
            meta: None,
            header: None,
            whole: None,
        };
        let ix = Node::Indexed(Box::new(Indexed {
            needle: "fox".into(),
            body_only: true,
            hits: vec![3],
            unknown: vec![9],
        }));
        assert_eq!(eval(&ix, &at(0)), Some(true));
        assert_eq!(eval(&ix, &at(1)), Some(false));
        assert_eq!(eval(&ix, &at(2)), None, "not indexed: needs the message");
        let not = Node::Not(Box::new(ix.clone()));
        assert_eq!(eval(&not, &at(1)), Some(true));
        assert_eq!(level(&not), Level::Text);
        let root = Node::And(vec![
            Node::Text("fox".into(), true),
            Node::Not(Box::new(Node::Text("dog".into(), false))),
            Node::Text("fox".into(), true),
        ]);
        let mut keys = Vec::new();
        text_keys(&root, &mut keys);
        assert_eq!(keys, vec![("fox".into(), true), ("dog".into(), false)]);
        let Node::Indexed(answer) = ix else { panic!() };
        let swapped = with_answers(root, &[*answer]);
        assert!(
            matches!(&swapped, Node::And(k) if matches!(k[0], Node::Indexed(_))
            && matches!(&k[1], Node::Not(t) if matches!(**t, Node::Text(..))))
        );
    }
}
