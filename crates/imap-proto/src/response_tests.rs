//! Response writer tests, against the examples of the RFCs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::fetch::{Section, SectionText};
use crate::{Date, parse_command};

fn w(f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut out = Vec::new();
    f(&mut out);
    String::from_utf8(out).unwrap()
}

fn tag(s: &str) -> Tag {
    Tag::new(s).unwrap()
}

fn set(s: &str) -> SequenceSet {
    s.parse().unwrap()
}

#[test]
fn status_responses_with_codes() {
    assert_eq!(
        w(|o| tagged(
            o,
            &tag("A142"),
            Status::Ok,
            Some(&Code::ReadWrite),
            "SELECT completed"
        )),
        "A142 OK [READ-WRITE] SELECT completed\r\n"
    );
    assert_eq!(
        w(|o| untagged(
            o,
            Status::Ok,
            Some(&Code::UidValidity(UidValidity(3857529045))),
            "UIDs valid"
        )),
        "* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
    );
    assert_eq!(
        w(|o| untagged(
            o,
            Status::Ok,
            Some(&Code::PermanentFlags {
                flags: vec![Flag::Deleted, Flag::Seen],
                new_keywords: true
            }),
            "Limited"
        )),
        "* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n"
    );
    assert_eq!(
        w(|o| tagged(
            o,
            &tag("A003"),
            Status::Ok,
            Some(&Code::AppendUid {
                validity: UidValidity(38505),
                uids: set("3955")
            }),
            "APPEND completed"
        )),
        "A003 OK [APPENDUID 38505 3955] APPEND completed\r\n"
    );
    assert_eq!(
        w(|o| tagged(
            o,
            &tag("A004"),
            Status::Ok,
            Some(&Code::CopyUid {
                validity: UidValidity(38505),
                from: set("304,319:320"),
                to: set("3956:3958")
            }),
            "Done"
        )),
        "A004 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n"
    );
    assert_eq!(
        w(|o| tagged(
            o,
            &tag("d105"),
            Status::Ok,
            Some(&Code::Modified(set("7,9"))),
            "Conditional STORE failed"
        )),
        "d105 OK [MODIFIED 7,9] Conditional STORE failed\r\n"
    );
    assert_eq!(
        w(|o| untagged(
            o,
            Status::Ok,
            Some(&Code::HighestModSeq(ModSeq(715194045007))),
            "Highest"
        )),
        "* OK [HIGHESTMODSEQ 715194045007] Highest\r\n"
    );
    assert_eq!(
        w(|o| untagged(
            o,
            Status::Ok,
            Some(&Code::Capability(vec![
                "IMAP4rev2".into(),
                "AUTH=PLAIN".into()
            ])),
            "ready"
        )),
        "* OK [CAPABILITY IMAP4rev2 AUTH=PLAIN] ready\r\n"
    );
    assert_eq!(
        w(|o| tagged(
            o,
            &tag("a"),
            Status::No,
            Some(&Code::BadCharset(vec!["UTF-8".into()])),
            ""
        )),
        "a NO [BADCHARSET (UTF-8)] failed\r\n"
    );
    assert_eq!(
        w(|o| untagged(
            o,
            Status::Bye,
            Some(&Code::Other("X-FOO".into(), Some("a]b\r\n".into()))),
            "bye"
        )),
        "* BYE [X-FOO ab] bye\r\n"
    );
    let simple = [
        (Code::Alert, "ALERT"),
        (Code::AlreadyExists, "ALREADYEXISTS"),
        (Code::AuthenticationFailed, "AUTHENTICATIONFAILED"),
        (Code::AuthorizationFailed, "AUTHORIZATIONFAILED"),
        (Code::Cannot, "CANNOT"),
        (Code::ClientBug, "CLIENTBUG"),
        (Code::Closed, "CLOSED"),
        (Code::ContactAdmin, "CONTACTADMIN"),
        (Code::Corruption, "CORRUPTION"),
        (Code::Expired, "EXPIRED"),
        (Code::ExpungeIssued, "EXPUNGEISSUED"),
        (Code::HasChildren, "HASCHILDREN"),
        (Code::InUse, "INUSE"),
        (Code::Limit, "LIMIT"),
        (Code::NoModSeq, "NOMODSEQ"),
        (Code::NonExistent, "NONEXISTENT"),
        (Code::NoPerm, "NOPERM"),
        (Code::NotSaved, "NOTSAVED"),
        (Code::OverQuota, "OVERQUOTA"),
        (Code::Parse, "PARSE"),
        (Code::PrivacyRequired, "PRIVACYREQUIRED"),
        (Code::ReadOnly, "READ-ONLY"),
        (Code::ServerBug, "SERVERBUG"),
        (Code::TooBig, "TOOBIG"),
        (Code::TryCreate, "TRYCREATE"),
        (Code::UidNext(4392), "UIDNEXT 4392"),
        (Code::UidNotSticky, "UIDNOTSTICKY"),
        (Code::Unavailable, "UNAVAILABLE"),
        (Code::UnknownCte, "UNKNOWN-CTE"),
        (Code::Unseen(12), "UNSEEN 12"),
        (Code::UseAttr, "USEATTR"),
    ];
    for (code, text) in simple {
        assert_eq!(w(|o| code.write(o)), text);
    }
}

#[test]
fn text_cannot_forge_responses() {
    let s = w(|o| tagged(o, &tag("a"), Status::No, None, "x\r\n* OK [ALERT] pwned"));
    assert_eq!(s, "a NO x  * OK [ALERT] pwned\r\n");
    assert_eq!(s.matches("\r\n").count(), 1);
    let s = w(|o| tagged(o, &tag("a"), Status::No, None, "[ALERT] not a code"));
    assert!(!s.starts_with("a NO ["));
    assert_eq!(w(|o| continuation(o, "Ready\r\nx")), "+ Ready  x\r\n");
    assert_eq!(w(|o| continuation_base64(o, "")), "+ \r\n");
    assert_eq!(w(|o| continuation_base64(o, "YWJj\r\n")), "+ YWJj\r\n");
    let long = "x".repeat(10_000);
    assert!(w(|o| untagged(o, Status::Ok, None, &long)).len() < MAX_TEXT + 10);
}

#[test]
fn untagged_data() {
    assert_eq!(
        w(|o| capability(
            o,
            &["IMAP4rev2", "STARTTLS", "AUTH=GSSAPI", "LOGINDISABLED"]
        )),
        "* CAPABILITY IMAP4rev2 STARTTLS AUTH=GSSAPI LOGINDISABLED\r\n"
    );
    assert_eq!(w(|o| enabled(o, &["CONDSTORE"])), "* ENABLED CONDSTORE\r\n");
    assert_eq!(w(|o| enabled(o, &[])), "* ENABLED\r\n");
    assert_eq!(
        w(|o| flags(
            o,
            &[
                Flag::Answered,
                Flag::Flagged,
                Flag::Deleted,
                Flag::Seen,
                Flag::Draft
            ]
        )),
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
    );
    assert_eq!(w(|o| exists(o, 172)), "* 172 EXISTS\r\n");
    assert_eq!(w(|o| recent(o, 1)), "* 1 RECENT\r\n");
    assert_eq!(w(|o| expunge(o, 3)), "* 3 EXPUNGE\r\n");
    assert_eq!(
        w(|o| vanished(o, true, &set("41,43:116,118,120:211,214:540"))),
        "* VANISHED (EARLIER) 41,43:116,118,120:211,214:540\r\n"
    );
    assert_eq!(w(|o| vanished(o, false, &set("405"))), "* VANISHED 405\r\n");
    assert_eq!(
        w(|o| search(o, &[2, 84, 882], None)),
        "* SEARCH 2 84 882\r\n"
    );
    assert_eq!(w(|o| search(o, &[], Some(ModSeq(5)))), "* SEARCH\r\n");
    assert_eq!(
        w(|o| search(
            o,
            &[2, 5, 6, 7, 11, 12, 18, 19, 20, 23],
            Some(ModSeq(917162500))
        )),
        "* SEARCH 2 5 6 7 11 12 18 19 20 23 (MODSEQ 917162500)\r\n"
    );
}

#[test]
fn esearch_responses() {
    // RFC 4731 §3.1 / RFC 9051 §6.4.4 examples.
    let t = tag("A282");
    assert_eq!(
        w(|o| esearch(
            o,
            &Esearch {
                tag: Some(&t),
                min: Some(2),
                count: Some(3),
                ..Default::default()
            }
        )),
        "* ESEARCH (TAG \"A282\") MIN 2 COUNT 3\r\n"
    );
    let all = set("1:3,5");
    assert_eq!(
        w(|o| esearch(
            o,
            &Esearch {
                tag: Some(&t),
                uid: true,
                all: Some(&all),
                modseq: Some(ModSeq(1236)),
                ..Default::default()
            }
        )),
        "* ESEARCH (TAG \"A282\") UID ALL 1:3,5 MODSEQ 1236\r\n"
    );
    assert_eq!(
        w(|o| esearch(
            o,
            &Esearch {
                tag: Some(&t),
                ..Default::default()
            }
        )),
        "* ESEARCH (TAG \"A282\")\r\n"
    );
    // ALL from sorted numbers, compacted.
    let all = SequenceSet::compact([2, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]).unwrap();
    assert_eq!(
        w(|o| esearch(
            o,
            &Esearch {
                all: Some(&all),
                max: Some(21),
                ..Default::default()
            }
        )),
        "* ESEARCH MAX 21 ALL 2,10:21\r\n"
    );
}

#[test]
fn list_responses() {
    let item = ListItem {
        attrs: &[
            MailboxAttr::HasNoChildren,
            MailboxAttr::SpecialUse(SpecialUse::Drafts),
        ],
        delimiter: Some('/'),
        name: "Entw\u{fc}rfe",
        childinfo_subscribed: false,
        old_name: None,
    };
    assert_eq!(
        w(|o| list(o, &item, TextMode::Ascii, false)),
        "* LIST (\\HasNoChildren \\Drafts) \"/\" Entw&APw-rfe\r\n"
    );
    assert_eq!(
        w(|o| list(o, &item, TextMode::Utf8, false)),
        "* LIST (\\HasNoChildren \\Drafts) \"/\" \"Entw\u{fc}rfe\"\r\n"
    );
    let item = ListItem {
        attrs: &[],
        delimiter: Some('/'),
        name: "Foo",
        childinfo_subscribed: true,
        old_name: None,
    };
    assert_eq!(
        w(|o| list(o, &item, TextMode::Ascii, false)),
        "* LIST () \"/\" Foo (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"
    );
    let item = ListItem {
        attrs: &[MailboxAttr::NoSelect],
        delimiter: None,
        name: "INBOX",
        childinfo_subscribed: false,
        old_name: Some("Old Name"),
    };
    assert_eq!(
        w(|o| list(o, &item, TextMode::Ascii, true)),
        "* LSUB (\\Noselect) NIL INBOX (\"OLDNAME\" (\"Old Name\"))\r\n"
    );
    let item = ListItem {
        attrs: &[],
        delimiter: Some('\\'),
        name: "",
        childinfo_subscribed: false,
        old_name: None,
    };
    assert_eq!(
        w(|o| list(o, &item, TextMode::Ascii, false)),
        "* LIST () \"\\\\\" \"\"\r\n"
    );
}

#[test]
fn status_namespace_id_quota() {
    assert_eq!(
        w(|o| status(
            o,
            "blurdybloop",
            &[
                (StatusItem::Messages, Some(231)),
                (StatusItem::UidNext, Some(44292))
            ],
            TextMode::Ascii
        )),
        "* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n"
    );
    assert_eq!(
        w(|o| status(
            o,
            "INBOX",
            &[(StatusItem::AppendLimit, None)],
            TextMode::Ascii
        )),
        "* STATUS INBOX (APPENDLIMIT NIL)\r\n"
    );
    assert_eq!(
        w(|o| namespace(o, [&[("", Some('/'))], &[], &[]], TextMode::Ascii)),
        "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n"
    );
    assert_eq!(
        w(|o| namespace(
            o,
            [
                &[("", Some('/'))],
                &[("~", Some('/'))],
                &[("#shared/", Some('/')), ("#public/", Some('/'))]
            ],
            TextMode::Ascii
        )),
        "* NAMESPACE ((\"\" \"/\")) ((\"~\" \"/\")) ((\"#shared/\" \"/\")(\"#public/\" \"/\"))\r\n"
    );
    assert_eq!(w(|o| id(o, None)), "* ID NIL\r\n");
    assert_eq!(
        w(|o| id(o, Some(&[("name", Some("buudien")), ("os", None)]))),
        "* ID (\"name\" \"buudien\" \"os\" NIL)\r\n"
    );
    assert_eq!(
        w(|o| quota(o, "", &[("STORAGE", 10, 512), ("MESSAGE", 1, 100)])),
        "* QUOTA \"\" (STORAGE 10 512 MESSAGE 1 100)\r\n"
    );
    assert_eq!(
        w(|o| quotaroot(o, "INBOX", &[""], TextMode::Ascii)),
        "* QUOTAROOT INBOX \"\"\r\n"
    );
    assert_eq!(
        w(|o| quotaroot(o, "comp.mail.mime", &[], TextMode::Ascii)),
        "* QUOTAROOT comp.mail.mime\r\n"
    );
}

#[test]
fn fetch_responses() {
    let dt = DateTime {
        date: Date::new(1996, 7, 17).unwrap(),
        hour: 2,
        minute: 44,
        second: 25,
        zone_minutes: -420,
    };
    let s = w(|o| {
        let mut f = FetchResponse::start(o, 12, TextMode::Ascii);
        f.uid(4827313);
        f.flags(&[Flag::Seen]);
        f.internal_date(&dt);
        f.rfc822_size(44827);
        f.modseq(ModSeq(65402));
        f.raw("ENVELOPE", b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
        f.finish();
    });
    assert_eq!(
        s,
        "* 12 FETCH (UID 4827313 FLAGS (\\Seen) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" \
         RFC822.SIZE 44827 MODSEQ (65402) ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL))\r\n"
    );
    let hdr = FetchAttr::BodySection {
        peek: true,
        section: Section {
            part: vec![],
            text: Some(SectionText::HeaderFields(vec![
                "DATE".into(),
                "FROM".into(),
            ])),
        },
        partial: None,
    };
    let bin = FetchAttr::Binary {
        peek: false,
        part: vec![1],
        partial: Some(crate::Partial {
            offset: 0,
            length: 3,
        }),
    };
    let s = w(|o| {
        let mut f = FetchResponse::start(o, 1, TextMode::Ascii);
        f.section(&hdr, Some(b"Date: x\r\n\r\n"));
        f.section(&bin, Some(b"a\0b"));
        f.section(&FetchAttr::Rfc822Text, None);
        f.binary_size(&FetchAttr::BinarySize { part: vec![2] }, 42);
        f.section_header(&FetchAttr::Rfc822, 5, false);
        f.buffer().extend_from_slice(b"hello");
        f.finish();
    });
    assert_eq!(
        s,
        "* 1 FETCH (BODY[HEADER.FIELDS (DATE FROM)] {11}\r\nDate: x\r\n\r\n \
         BINARY[1]<0> ~{3}\r\na\0b RFC822.TEXT NIL BINARY.SIZE[2] 42 RFC822 {5}\r\nhello)\r\n"
    );
}

#[test]
fn parse_error_response_round_trip() {
    let e = parse_command(b"x1 SEARCH CHARSET BIG5 ALL", TextMode::Ascii).unwrap_err();
    assert_eq!(
        w(|o| e.write_response(o)),
        "x1 NO [BADCHARSET (UTF-8 US-ASCII)] SEARCH: charset BIG5 is not supported (at octet 18)\r\n"
    );
}
