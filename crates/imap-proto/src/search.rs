//! SEARCH (RFC 9051 §6.4.4 and RFC 3501 §6.4.4 for the rev1 keys NEW, OLD, RECENT),
//! with ESEARCH return options (RFC 4731 §3.1), SAVE and `$` (RFC 5182) and MODSEQ
//! (RFC 7162 §3.1.5).

use crate::command::SearchCommand;
use crate::cursor::{Cursor, Fail, PResult, is_atom_char};
use crate::datetime::{Date, date};
use crate::error::{ErrorKind, excerpt};
use crate::flag::flag_keyword;
use crate::sequence::{SequenceSet, sequence_set};
use buudien_types::ModSeq;

/// `RETURN (...)` options (RFC 4731 §3.1, RFC 5182 §2). `RETURN ()` means ALL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchReturn {
    /// `MIN`.
    pub min: bool,
    /// `MAX`.
    pub max: bool,
    /// `ALL`.
    pub all: bool,
    /// `COUNT`.
    pub count: bool,
    /// `SAVE`: remember the result for `$`.
    pub save: bool,
}

/// Which metadata a `MODSEQ "/flags/..." type` key looks at (RFC 7162 §3.1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    /// `priv`.
    Private,
    /// `shared`.
    Shared,
    /// `all`.
    All,
}

/// One search key (RFC 9051 §6.4.4, §9 `search-key`). Strings are UTF-8; a list of
/// keys (top level or parenthesised) is [`SearchKey::And`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    /// `ALL`.
    All,
    /// `ANSWERED`.
    Answered,
    /// `BCC string`.
    Bcc(String),
    /// `BEFORE date` (internal date).
    Before(Date),
    /// `BODY string`.
    Body(String),
    /// `CC string`.
    Cc(String),
    /// `DELETED`.
    Deleted,
    /// `DRAFT`.
    Draft,
    /// `FLAGGED`.
    Flagged,
    /// `FROM string`.
    From(String),
    /// `HEADER field-name string`.
    Header(String, String),
    /// `KEYWORD flag`.
    Keyword(String),
    /// `LARGER n`.
    Larger(u64),
    /// `NEW` (rev1: RECENT and UNSEEN).
    New,
    /// `NOT key`.
    Not(Box<SearchKey>),
    /// `OLD` (rev1: not RECENT).
    Old,
    /// `ON date`.
    On(Date),
    /// `OR key key`.
    Or(Box<SearchKey>, Box<SearchKey>),
    /// `RECENT` (rev1).
    Recent,
    /// `SEEN`.
    Seen,
    /// `SENTBEFORE date` (Date: header).
    SentBefore(Date),
    /// `SENTON date`.
    SentOn(Date),
    /// `SENTSINCE date`.
    SentSince(Date),
    /// `SINCE date`.
    Since(Date),
    /// `SMALLER n`.
    Smaller(u64),
    /// `SUBJECT string`.
    Subject(String),
    /// `TEXT string`.
    Text(String),
    /// `TO string`.
    To(String),
    /// `UID set`.
    Uid(SequenceSet),
    /// `UNANSWERED`.
    Unanswered,
    /// `UNDELETED`.
    Undeleted,
    /// `UNDRAFT`.
    Undraft,
    /// `UNFLAGGED`.
    Unflagged,
    /// `UNKEYWORD flag`.
    Unkeyword(String),
    /// `UNSEEN`.
    Unseen,
    /// A message sequence set (or `$`).
    SequenceSet(SequenceSet),
    /// `MODSEQ ["/flags/x" type] n` (RFC 7162 §3.1.5).
    ModSeq {
        /// The per-flag entry and its type, when given.
        entry: Option<(String, EntryType)>,
        /// Messages with a MODSEQ at least this.
        modseq: ModSeq,
    },
    /// A list of keys, all of which must match.
    And(Vec<SearchKey>),
}

/// `search = "SEARCH" [search-return-opts] SP search-program` (after `SEARCH`).
pub(crate) fn search(c: &mut Cursor<'_>, uid: bool) -> PResult<SearchCommand> {
    c.sp()?;
    let mut ret = None;
    if c.eat_word("RETURN") {
        c.sp()?;
        ret = Some(return_opts(c)?);
        c.sp()?;
    }
    let mut charset = None;
    if c.eat_word("CHARSET") {
        c.sp()?;
        let start = c.pos();
        let cs = match c.peek() {
            Some(b'"') => c.quoted()?,
            _ => c.atom()?.into(),
        };
        let cs = String::from_utf8_lossy(&cs).to_ascii_uppercase();
        if !matches!(cs.as_str(), "UTF-8" | "US-ASCII" | "UTF8") {
            return Err(Fail {
                pos: start,
                kind: ErrorKind::BadCharset,
                text: format!("charset {} is not supported", excerpt(cs.as_bytes())).into(),
            });
        }
        charset = Some(cs);
        c.sp()?;
    }
    let mut keys = vec![search_key(c)?];
    while !c.at_end() {
        c.sp()?;
        keys.push(search_key(c)?);
    }
    let key = if keys.len() == 1 {
        keys.pop().unwrap_or(SearchKey::All)
    } else {
        SearchKey::And(keys)
    };
    Ok(SearchCommand {
        uid,
        ret,
        charset,
        key,
    })
}

/// `"(" [search-return-opt *(SP search-return-opt)] ")"`.
fn return_opts(c: &mut Cursor<'_>) -> PResult<SearchReturn> {
    let mut r = SearchReturn::default();
    let opts = c.paren_list(true, |c| {
        let start = c.pos();
        let w = c.atom_upper()?;
        match w.as_str() {
            "MIN" => r.min = true,
            "MAX" => r.max = true,
            "ALL" => r.all = true,
            "COUNT" => r.count = true,
            "SAVE" => r.save = true,
            _ => {
                return Err(Fail {
                    pos: start,
                    kind: ErrorKind::Syntax,
                    text: format!("unknown SEARCH return option {}", excerpt(w.as_bytes())).into(),
                });
            }
        }
        Ok(())
    })?;
    if opts.is_empty() {
        r.all = true;
    }
    Ok(r)
}

fn string(c: &mut Cursor<'_>) -> PResult<String> {
    c.sp()?;
    c.astring_utf8()
}

fn date_arg(c: &mut Cursor<'_>) -> PResult<Date> {
    c.sp()?;
    date(c)
}

fn key_arg(c: &mut Cursor<'_>) -> PResult<Box<SearchKey>> {
    c.sp()?;
    search_key(c).map(Box::new)
}

/// `search-key` (RFC 9051 §9, plus rev1 NEW/OLD/RECENT and RFC 7162 MODSEQ).
pub(crate) fn search_key(c: &mut Cursor<'_>) -> PResult<SearchKey> {
    c.nested(|c| {
        match c.peek() {
            Some(b'(') => return c.paren_list(false, search_key).map(SearchKey::And),
            Some(b'0'..=b'9' | b'*' | b'$') => {
                return sequence_set(c).map(SearchKey::SequenceSet);
            }
            Some(b) if is_atom_char(b) => {}
            _ => return c.fail("expected a search key"),
        }
        let start = c.pos();
        let word = c.atom_upper()?;
        Ok(match word.as_str() {
            "ALL" => SearchKey::All,
            "ANSWERED" => SearchKey::Answered,
            "BCC" => SearchKey::Bcc(string(c)?),
            "BEFORE" => SearchKey::Before(date_arg(c)?),
            "BODY" => SearchKey::Body(string(c)?),
            "CC" => SearchKey::Cc(string(c)?),
            "DELETED" => SearchKey::Deleted,
            "DRAFT" => SearchKey::Draft,
            "FLAGGED" => SearchKey::Flagged,
            "FROM" => SearchKey::From(string(c)?),
            "HEADER" => {
                let name = string(c)?;
                SearchKey::Header(name, string(c)?)
            }
            "KEYWORD" => {
                c.sp()?;
                SearchKey::Keyword(flag_keyword(c)?)
            }
            "LARGER" => {
                c.sp()?;
                SearchKey::Larger(c.number64()?)
            }
            "NEW" => SearchKey::New,
            "NOT" => SearchKey::Not(key_arg(c)?),
            "OLD" => SearchKey::Old,
            "ON" => SearchKey::On(date_arg(c)?),
            "OR" => {
                let a = key_arg(c)?;
                SearchKey::Or(a, key_arg(c)?)
            }
            "RECENT" => SearchKey::Recent,
            "SEEN" => SearchKey::Seen,
            "SENTBEFORE" => SearchKey::SentBefore(date_arg(c)?),
            "SENTON" => SearchKey::SentOn(date_arg(c)?),
            "SENTSINCE" => SearchKey::SentSince(date_arg(c)?),
            "SINCE" => SearchKey::Since(date_arg(c)?),
            "SMALLER" => {
                c.sp()?;
                SearchKey::Smaller(c.number64()?)
            }
            "SUBJECT" => SearchKey::Subject(string(c)?),
            "TEXT" => SearchKey::Text(string(c)?),
            "TO" => SearchKey::To(string(c)?),
            "UID" => {
                c.sp()?;
                SearchKey::Uid(sequence_set(c)?)
            }
            "UNANSWERED" => SearchKey::Unanswered,
            "UNDELETED" => SearchKey::Undeleted,
            "UNDRAFT" => SearchKey::Undraft,
            "UNFLAGGED" => SearchKey::Unflagged,
            "UNKEYWORD" => {
                c.sp()?;
                SearchKey::Unkeyword(flag_keyword(c)?)
            }
            "UNSEEN" => SearchKey::Unseen,
            "MODSEQ" => modseq_key(c)?,
            _ => {
                return Err(Fail {
                    pos: start,
                    kind: ErrorKind::Syntax,
                    text: format!("unknown search key {}", excerpt(word.as_bytes())).into(),
                });
            }
        })
    })
}

/// ```text
/// search-modsequence = "MODSEQ" [search-modseq-ext] SP mod-sequence-valzer
/// search-modseq-ext  = SP entry-name SP entry-type-req
/// ```
fn modseq_key(c: &mut Cursor<'_>) -> PResult<SearchKey> {
    c.sp()?;
    let mut entry = None;
    if c.peek() == Some(b'"') {
        let start = c.pos();
        let name = c.quoted()?;
        let name = c.utf8_at(name, start)?;
        if !name.to_ascii_lowercase().starts_with("/flags/") {
            return Err(Fail {
                pos: start,
                kind: ErrorKind::Syntax,
                text: "MODSEQ entry names start with \"/flags/\"".into(),
            });
        }
        c.sp()?;
        let t = match c.atom_upper()?.as_str() {
            "PRIV" => EntryType::Private,
            "SHARED" => EntryType::Shared,
            "ALL" => EntryType::All,
            _ => return c.fail("expected priv, shared or all"),
        };
        entry = Some((name, t));
        c.sp()?;
    }
    Ok(SearchKey::ModSeq {
        entry,
        modseq: ModSeq(c.number64()?),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::TextMode;

    fn s(input: &str) -> PResult<SearchCommand> {
        let mut c = Cursor::new(input.as_bytes(), None, TextMode::Utf8);
        let r = search(&mut c, false)?;
        c.end()?;
        Ok(r)
    }

    fn key(input: &str) -> SearchKey {
        s(input).unwrap().key
    }

    fn d(y: u16, m: u8, day: u8) -> Date {
        Date::new(y, m, day).unwrap()
    }

    #[test]
    fn rfc9051_examples() {
        // §6.4.4: SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"
        assert_eq!(
            key(" FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\""),
            SearchKey::And(vec![
                SearchKey::Flagged,
                SearchKey::Since(d(1994, 2, 1)),
                SearchKey::Not(Box::new(SearchKey::From("Smith".into()))),
            ])
        );
        // SEARCH TEXT "string not in mailbox"
        assert_eq!(
            key(" TEXT \"string not in mailbox\""),
            SearchKey::Text("string not in mailbox".into())
        );
        // SEARCH CHARSET UTF-8 TEXT {12} with a literal.
        let r =
            s(" CHARSET UTF-8 TEXT {12}\r\n\u{445}\u{43e}\u{440}\u{43e}\u{448}\u{43e}").unwrap();
        assert_eq!(r.charset.as_deref(), Some("UTF-8"));
        assert_eq!(
            r.key,
            SearchKey::Text("\u{445}\u{43e}\u{440}\u{43e}\u{448}\u{43e}".into())
        );
        // SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"
        let r = s(" RETURN (MIN COUNT) FLAGGED").unwrap();
        assert_eq!(
            r.ret,
            Some(SearchReturn {
                min: true,
                count: true,
                ..Default::default()
            })
        );
        // OR / NOT / parentheses.
        assert_eq!(
            key(" OR SEEN (FLAGGED DELETED)"),
            SearchKey::Or(
                Box::new(SearchKey::Seen),
                Box::new(SearchKey::And(vec![SearchKey::Flagged, SearchKey::Deleted]))
            )
        );
    }

    #[test]
    fn every_key() {
        let all = " ALL ANSWERED BCC a BEFORE 1-Jan-2000 BODY b CC c DELETED DRAFT FLAGGED \
                   FROM d HEADER X-Y e KEYWORD $Junk LARGER 10 NEW NOT SEEN OLD ON 2-Jan-2000 \
                   OR RECENT SEEN SEEN SENTBEFORE 3-Jan-2000 SENTON 4-Jan-2000 SENTSINCE \
                   5-Jan-2000 SINCE 6-Jan-2000 SMALLER 20 SUBJECT f TEXT g TO h UID 1:* \
                   UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNKEYWORD $Junk UNSEEN 1,3:5 $ \
                   MODSEQ 5 MODSEQ \"/flags/\\\\seen\" all 0 (SEEN)";
        let SearchKey::And(keys) = key(all) else {
            panic!("not a list")
        };
        assert_eq!(keys.len(), 39);
        assert_eq!(keys[10], SearchKey::Header("X-Y".into(), "e".into()));
        assert_eq!(keys[34], SearchKey::SequenceSet("1,3:5".parse().unwrap()));
        assert_eq!(keys[35], SearchKey::SequenceSet(SequenceSet::Saved));
        assert_eq!(
            keys[37],
            SearchKey::ModSeq {
                entry: Some(("/flags/\\seen".into(), EntryType::All)),
                modseq: ModSeq(0)
            }
        );
    }

    #[test]
    fn keys_are_case_insensitive() {
        assert_eq!(key(" uid 5 unseen").to_owned(), key(" UID 5 UNSEEN"));
        assert_eq!(key(" since 1-feb-1994"), SearchKey::Since(d(1994, 2, 1)));
    }

    #[test]
    fn returns() {
        assert_eq!(
            s(" RETURN () ALL").unwrap().ret,
            Some(SearchReturn {
                all: true,
                ..Default::default()
            })
        );
        let r = s(" RETURN (SAVE MIN MAX ALL COUNT) $").unwrap();
        assert_eq!(
            r.ret,
            Some(SearchReturn {
                min: true,
                max: true,
                all: true,
                count: true,
                save: true
            })
        );
        assert!(s(" RETURN (PARTIAL 1:5) ALL").is_err());
        assert!(s(" RETURN ALL").is_err());
    }

    #[test]
    fn charsets() {
        let e = s(" CHARSET ISO-8859-1 TEXT x").unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadCharset);
        assert!(s(" CHARSET \"us-ascii\" ALL").is_ok());
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            " ",
            " FOO",
            " SINCE",
            " SINCE 1-Feb",
            " OR SEEN",
            " NOT",
            " (SEEN",
            " ()",
            " SEEN  UNSEEN",
            " LARGER x",
            " UID",
            " MODSEQ \"/x\" all 5",
            " MODSEQ \"/flags/x\" none 5",
            " KEYWORD \\Seen",
        ] {
            assert!(s(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = format!(" {}SEEN{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(s(&deep).is_err());
        let nots = format!("{} SEEN", " NOT".repeat(100_000));
        assert!(s(&nots).is_err());
        let ok = format!(" {}SEEN{}", "(".repeat(20), ")".repeat(20));
        assert!(s(&ok).is_ok());
    }
}
