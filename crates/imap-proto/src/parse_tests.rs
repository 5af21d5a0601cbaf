//! Known-answer tests for every command, mostly the examples of the RFCs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::append::{AppendData, AppendForm, AppendMessage};
use crate::command::FetchCommand;
use crate::fetch::FetchAttr;
use crate::flag::Flag;
use crate::list::StatusItem;
use crate::mailbox::Mailbox;
use crate::search::{SearchKey, SearchReturn};
use crate::sequence::SequenceSet;
use crate::{Date, DateTime};

fn p(s: &str) -> Command {
    match parse_command(s.as_bytes(), TextMode::Ascii) {
        Ok(r) => r.command,
        Err(e) => panic!("{s:?}: {e:?}"),
    }
}

fn perr(s: &str) -> CommandError {
    match parse_command(s.as_bytes(), TextMode::Ascii) {
        Ok(r) => panic!("{s:?} accepted: {r:?}"),
        Err(e) => e,
    }
}

fn set(s: &str) -> SequenceSet {
    s.parse().unwrap()
}

fn name(s: &str) -> Mailbox {
    Mailbox::new(s)
}

#[test]
fn any_state_commands() {
    // RFC 9051 §6.1 examples.
    let r = parse_command(b"abcd CAPABILITY", TextMode::Ascii).unwrap();
    assert_eq!(r.tag.as_str(), "abcd");
    assert_eq!(r.command, Command::Capability);
    assert_eq!(p("a002 NOOP"), Command::Noop);
    assert_eq!(p("A023 LOGOUT"), Command::Logout);
    assert_eq!(p("a002 starttls"), Command::StartTls);
    assert_eq!(p("a NAMESPACE"), Command::Namespace);
    assert_eq!(p("a IDLE"), Command::Idle);
    assert_eq!(p("a CHECK"), Command::Check);
    assert_eq!(p("a CLOSE"), Command::Close);
    assert_eq!(p("a UNSELECT"), Command::Unselect);
    assert_eq!(p("a EXPUNGE"), Command::Expunge);
    assert!(perr("a NOOP now").text.contains("unexpected text"));
    assert!(perr("a CAPABILITY ").text.contains("unexpected"));
}

#[test]
fn authenticate_and_login() {
    match p("a001 AUTHENTICATE gssapi") {
        Command::Authenticate { mechanism, initial } => {
            assert_eq!(mechanism, "GSSAPI");
            assert!(initial.is_none());
        }
        other => panic!("{other:?}"),
    }
    // RFC 4959 §3 example.
    match p("a AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=") {
        Command::Authenticate { initial, .. } => {
            assert_eq!(initial.unwrap().expose(), "dGVzdAB0ZXN0AHRlc3Q=");
        }
        other => panic!("{other:?}"),
    }
    match p("a AUTHENTICATE PLAIN =") {
        Command::Authenticate { initial, .. } => assert_eq!(initial.unwrap().expose(), "="),
        other => panic!("{other:?}"),
    }
    assert!(perr("a AUTHENTICATE PLAIN a b").kind == ErrorKind::Syntax);
    assert!(perr("a AUTHENTICATE").kind == ErrorKind::Syntax);

    match p("a001 LOGIN SMITH SESAME") {
        Command::Login { username, password } => {
            assert_eq!(username, "SMITH");
            assert_eq!(password.expose(), b"SESAME");
        }
        other => panic!("{other:?}"),
    }
    // RFC 7888 §3 example: non-synchronizing literals.
    match p("A001 LOGIN {11+}\r\nFRED FOOBAR {7+}\r\nfat man") {
        Command::Login { username, password } => {
            assert_eq!(username, "FRED FOOBAR");
            assert_eq!(password.expose(), b"fat man");
        }
        other => panic!("{other:?}"),
    }
    match p("a LOGIN \"ann\\\"s\" \"p a\\\\ss\"") {
        Command::Login { username, password } => {
            assert_eq!(username, "ann\"s");
            assert_eq!(password.expose(), b"p a\\ss");
        }
        other => panic!("{other:?}"),
    }
    // The password never shows in Debug.
    let dbg = format!("{:?}", p("a LOGIN u hunter2"));
    assert!(!dbg.contains("hunter2"));
    assert!(perr("a LOGIN onlyuser").text.starts_with("LOGIN: "));
}

#[test]
fn enable() {
    assert_eq!(
        p("t2 ENABLE CONDSTORE X-GOOD-IDEA"),
        Command::Enable(vec!["CONDSTORE".into(), "X-GOOD-IDEA".into()])
    );
    assert_eq!(
        p("t ENABLE imap4rev2 utf8=accept"),
        Command::Enable(vec!["IMAP4REV2".into(), "UTF8=ACCEPT".into()])
    );
    perr("t ENABLE");
    perr("t ENABLE ");
}

#[test]
fn select_and_examine() {
    assert_eq!(
        p("A142 SELECT INBOX"),
        Command::Select {
            mailbox: Mailbox::Inbox,
            params: SelectParams::default()
        }
    );
    assert_eq!(
        p("A932 EXAMINE blurdybloop"),
        Command::Examine {
            mailbox: name("blurdybloop"),
            params: SelectParams::default()
        }
    );
    match p("a SELECT inbox (CONDSTORE)") {
        Command::Select { params, .. } => assert!(params.condstore),
        other => panic!("{other:?}"),
    }
    // RFC 7162 §3.2.5.2 examples.
    match p("A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))") {
        Command::Select { params, .. } => {
            let q = params.qresync.unwrap();
            assert_eq!(q.uid_validity.0, 67890007);
            assert_eq!(q.modseq.0, 20050715194045000);
            assert_eq!(q.known_uids, Some(set("41,43:211,214:541")));
            assert_eq!(q.seq_match, None);
        }
        other => panic!("{other:?}"),
    }
    match p(
        "B02 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 \
             (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))",
    ) {
        Command::Select { params, .. } => {
            let q = params.qresync.unwrap();
            let (seqs, uids) = q.seq_match.unwrap();
            assert_eq!(seqs, set("5000,7500,9000,9990:9999"));
            assert_eq!(uids.ranges().len(), 13);
        }
        other => panic!("{other:?}"),
    }
    match p("a SELECT INBOX (QRESYNC (1 2 (1:2 3:4)) CONDSTORE)") {
        Command::Select { params, .. } => {
            assert!(params.condstore);
            let q = params.qresync.unwrap();
            assert!(q.known_uids.is_none() && q.seq_match.is_some());
        }
        other => panic!("{other:?}"),
    }
    for bad in [
        "a SELECT",
        "a SELECT INBOX ()",
        "a SELECT INBOX (FOO)",
        "a SELECT INBOX (CONDSTORE CONDSTORE)",
        "a SELECT INBOX (QRESYNC (0 1))",
        "a SELECT INBOX (QRESYNC (1 2 1:*))",
        "a SELECT INBOX (QRESYNC (1 2 $))",
        "a SELECT INBOX (QRESYNC (1))",
        "a SELECT INBOX CONDSTORE",
    ] {
        perr(bad);
    }
}

#[test]
fn mailbox_management() {
    assert_eq!(
        p("A003 CREATE owatagusiam/"),
        Command::Create {
            mailbox: name("owatagusiam/"),
            special_use: vec![]
        }
    );
    // RFC 6154 §5.2 example.
    assert_eq!(
        p("t1 CREATE MySpecialArchive (USE (\\Archive))"),
        Command::Create {
            mailbox: name("MySpecialArchive"),
            special_use: vec![SpecialUse::Archive]
        }
    );
    assert_eq!(
        p("t1 CREATE x (USE (\\Drafts \\Sent \\Flagged \\Important))"),
        Command::Create {
            mailbox: name("x"),
            special_use: vec![
                SpecialUse::Drafts,
                SpecialUse::Sent,
                SpecialUse::Flagged,
                SpecialUse::Other("Important".into())
            ]
        }
    );
    perr("t1 CREATE x (USE (Drafts))");
    perr("t1 CREATE x (FOO (\\Drafts))");
    assert_eq!(
        p("A683 DELETE blurdybloop"),
        Command::Delete(name("blurdybloop"))
    );
    assert_eq!(
        p("A683 RENAME blurdybloop sarasoop"),
        Command::Rename {
            from: name("blurdybloop"),
            to: name("sarasoop")
        }
    );
    assert_eq!(
        p("A002 SUBSCRIBE #news.comp.mail.mime"),
        Command::Subscribe(name("#news.comp.mail.mime"))
    );
    assert_eq!(
        p("A002 UNSUBSCRIBE \"#news.comp.mail.mime\""),
        Command::Unsubscribe(name("#news.comp.mail.mime"))
    );
    // Modified UTF-7 for rev1, UTF-8 after ENABLE.
    assert_eq!(
        p("a CREATE Entw&APw-rfe"),
        Command::Create {
            mailbox: name("Entw\u{fc}rfe"),
            special_use: vec![]
        }
    );
    let r = parse_command(b"a CREATE \"Entw\xc3\xbcrfe\"", TextMode::Utf8).unwrap();
    assert_eq!(
        r.command,
        Command::Create {
            mailbox: name("Entw\u{fc}rfe"),
            special_use: vec![]
        }
    );
    assert_eq!(
        p("a CREATE &Jjo!"),
        Command::Create {
            mailbox: Mailbox::Invalid("&Jjo!".into()),
            special_use: vec![]
        }
    );
    perr("a RENAME onlyone");
}

#[test]
fn list_lsub_status() {
    match p("A101 LIST \"\" \"\"") {
        Command::List(l) => assert_eq!(l.patterns, [""]),
        other => panic!("{other:?}"),
    }
    match p("A102 LIST #news.comp.mail.misc \"\"") {
        Command::List(l) => assert_eq!(l.reference, "#news.comp.mail.misc"),
        other => panic!("{other:?}"),
    }
    match p(
        "A02 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"%\" \"*\") RETURN (CHILDREN STATUS (MESSAGES SIZE))",
    ) {
        Command::List(l) => {
            assert!(l.select.subscribed && l.select.recursive_match && l.extended);
            assert_eq!(l.patterns, ["%", "*"]);
            assert_eq!(
                l.ret.status,
                Some(vec![StatusItem::Messages, StatusItem::Size])
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        p("A002 LSUB \"#news.\" \"comp.mail.*\""),
        Command::Lsub {
            reference: "#news.".into(),
            pattern: "comp.mail.*".into()
        }
    );
    assert_eq!(
        p("A042 STATUS blurdybloop (UIDNEXT MESSAGES)"),
        Command::Status {
            mailbox: name("blurdybloop"),
            items: vec![StatusItem::UidNext, StatusItem::Messages]
        }
    );
    match p(
        "a STATUS INBOX (messages uidnext uidvalidity unseen deleted size recent highestmodseq appendlimit deleted-storage)",
    ) {
        Command::Status { items, .. } => assert_eq!(items.len(), 10),
        other => panic!("{other:?}"),
    }
    perr("a STATUS INBOX ()");
    perr("a STATUS INBOX (FOO)");
    perr("a STATUS INBOX MESSAGES");
}

fn msg(flags: Vec<Flag>, date: Option<DateTime>, form: AppendForm, data: &[u8]) -> AppendMessage {
    AppendMessage {
        flags,
        date,
        form,
        data: AppendData::Buffered(data.to_vec()),
    }
}

#[test]
fn append() {
    let body = "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nFrom: Fred Foobar <foobar@Blurdybloop.example>\r\n\r\nHello Joe, do you think we can meet at 3:30 tomorrow?\r\n";
    let cmd = format!(
        "A003 APPEND saved-messages (\\Seen) {{{}}}\r\n{body}",
        body.len()
    );
    assert_eq!(
        p(&cmd),
        Command::Append {
            mailbox: name("saved-messages"),
            messages: vec![msg(
                vec![Flag::Seen],
                None,
                AppendForm::Literal,
                body.as_bytes()
            )]
        }
    );
    // With a date-time, no flags.
    let cmd = format!(
        "a APPEND INBOX \"17-Jul-1996 02:44:25 -0700\" {{{}}}\r\n{body}",
        body.len()
    );
    match p(&cmd) {
        Command::Append { messages, .. } => {
            assert_eq!(
                messages[0].date.unwrap().to_string(),
                "17-Jul-1996 02:44:25 -0700"
            );
            assert!(messages[0].flags.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // RFC 3502 §6 MULTIAPPEND example (shortened bodies).
    let cmd = "A003 APPEND saved-messages (\\Seen) {5}\r\nfirst (\\Seen) \" 1-Jul-2002 22:35:00 +0000\" {6}\r\nsecond";
    match p(cmd) {
        Command::Append { messages, .. } => {
            assert_eq!(messages.len(), 2);
            assert_eq!(messages[1].data, AppendData::Buffered(b"second".to_vec()));
            let want = DateTime {
                date: Date::new(2002, 7, 1).unwrap(),
                hour: 22,
                minute: 35,
                second: 0,
                zone_minutes: 0,
            };
            assert_eq!(messages[1].date, Some(want));
        }
        other => panic!("{other:?}"),
    }
    // BINARY literal8 with NUL (RFC 3516 §4.4).
    match p("a APPEND INBOX ~{3}\r\na\0b") {
        Command::Append { messages, .. } => {
            assert_eq!(messages[0], msg(vec![], None, AppendForm::Binary, b"a\0b"));
        }
        other => panic!("{other:?}"),
    }
    // RFC 6855 §4 UTF8 data extension.
    match p("a APPEND INBOX (\\Seen) UTF8 (~{2+}\r\nhi)") {
        Command::Append { messages, .. } => {
            assert_eq!(
                messages[0],
                msg(vec![Flag::Seen], None, AppendForm::Utf8, b"hi")
            );
        }
        other => panic!("{other:?}"),
    }
    // Empty message.
    match p("a APPEND INBOX {0}\r\n") {
        Command::Append { messages, .. } => assert!(messages[0].data.is_empty()),
        other => panic!("{other:?}"),
    }
    for bad in [
        "a APPEND INBOX",
        "a APPEND INBOX hello",
        "a APPEND INBOX \"hello\"",
        "a APPEND INBOX (\\Seen)",
        "a APPEND INBOX {3}\r\nabc extra",
        "a APPEND INBOX {3}\r\nabc ",
        "a APPEND INBOX UTF8 {3}\r\nabc",
        "a APPEND INBOX UTF8 ({3}\r\nabc",
        "a APPEND INBOX \"31-Feb-2020 00:00:00 +0000\" {1}\r\na",
    ] {
        perr(bad);
    }
}

#[test]
fn search() {
    // RFC 9051 §6.4.4 example.
    match p("A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"") {
        Command::Search(s) => {
            assert!(!s.uid);
            assert_eq!(
                s.ret,
                Some(SearchReturn {
                    min: true,
                    count: true,
                    ..Default::default()
                })
            );
            assert!(matches!(s.key, SearchKey::And(ref v) if v.len() == 3));
        }
        other => panic!("{other:?}"),
    }
    match p("A285 uid search charset utf-8 text {6}\r\nXXXXXX") {
        Command::Search(s) => {
            assert!(s.uid);
            assert_eq!(s.key, SearchKey::Text("XXXXXX".into()));
        }
        other => panic!("{other:?}"),
    }
    // RFC 5182 examples.
    match p("A282 SEARCH RETURN (SAVE) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"") {
        Command::Search(s) => assert!(s.ret.unwrap().save),
        other => panic!("{other:?}"),
    }
    match p("A283 UID SEARCH UID $ SMALLER 4096") {
        Command::Search(s) => assert_eq!(
            s.key,
            SearchKey::And(vec![
                SearchKey::Uid(SequenceSet::Saved),
                SearchKey::Smaller(4096)
            ])
        ),
        other => panic!("{other:?}"),
    }
    let e = perr("a SEARCH CHARSET KOI8-R TEXT x");
    assert_eq!(e.kind, ErrorKind::BadCharset);
    assert_eq!(e.tag.unwrap().as_str(), "a");
    perr("a SEARCH");
    assert!(perr("a SEARCH BOGUS").text.contains("unknown search key"));
}

#[test]
fn fetch_store_copy_move() {
    match p("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])") {
        Command::Fetch(FetchCommand {
            uid, set: s, items, ..
        }) => {
            assert!(!uid);
            assert_eq!(s, set("2:4"));
            assert_eq!(items.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    match p("A999 UID FETCH 4827313:4828442 FLAGS") {
        Command::Fetch(f) => {
            assert!(f.uid);
            assert_eq!(f.items, [FetchAttr::Flags]);
        }
        other => panic!("{other:?}"),
    }
    match p("s100 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)") {
        Command::Fetch(f) => assert!(f.vanished && f.changed_since.is_some()),
        other => panic!("{other:?}"),
    }
    match p("a fetch $ (body.peek[1.2.mime] binary.size[1])") {
        Command::Fetch(f) => {
            assert!(f.set.is_saved());
            assert_eq!(f.items.len(), 2);
        }
        other => panic!("{other:?}"),
    }

    assert_eq!(
        p("A003 STORE 2:4 +FLAGS (\\Deleted)"),
        Command::Store(StoreCommand {
            uid: false,
            set: set("2:4"),
            unchanged_since: None,
            mode: StoreMode::Add,
            silent: false,
            flags: vec![Flag::Deleted]
        })
    );
    assert_eq!(
        p("a UID STORE 1 -flags.silent \\Seen $Junk"),
        Command::Store(StoreCommand {
            uid: true,
            set: set("1"),
            unchanged_since: None,
            mode: StoreMode::Remove,
            silent: true,
            flags: vec![Flag::Seen, Flag::Keyword("$Junk".into())]
        })
    );
    // RFC 7162 §3.1.3 example.
    match p("d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)") {
        Command::Store(s) => {
            assert_eq!(s.unchanged_since.unwrap().0, 320162338);
            assert!(s.silent);
        }
        other => panic!("{other:?}"),
    }
    match p("a STORE 1 FLAGS ()") {
        Command::Store(s) => assert!(s.flags.is_empty() && s.mode == StoreMode::Replace),
        other => panic!("{other:?}"),
    }
    for bad in [
        "a STORE 1 FLAGS",
        "a STORE 1 FLAGS.LOUD (\\Seen)",
        "a STORE 1 *FLAGS (\\Seen)",
        "a STORE 1 (FOO 1) FLAGS (\\Seen)",
        "a STORE 1 (UNCHANGEDSINCE 1 UNCHANGEDSINCE 2) FLAGS (\\Seen)",
        "a STORE 1 FLAGS (\\Seen",
        "a STORE 0 FLAGS (\\Seen)",
    ] {
        perr(bad);
    }

    assert_eq!(
        p("A003 COPY 2:4 MEETING"),
        Command::Copy {
            uid: false,
            set: set("2:4"),
            mailbox: name("MEETING")
        }
    );
    assert_eq!(
        p("a UID MOVE 42:69 foo"),
        Command::Move {
            uid: true,
            set: set("42:69"),
            mailbox: name("foo")
        }
    );
    assert_eq!(p("a move 1 INBOX").name(), "MOVE");
    assert_eq!(p("a uid copy 1 INBOX").name(), "UID COPY");
    assert_eq!(
        p("A202 UID EXPUNGE 3000:3002"),
        Command::UidExpunge(set("3000:3002"))
    );
    perr("a UID EXPUNGE");
    assert_eq!(perr("a UID FOO 1").kind, ErrorKind::UnknownCommand);
    perr("a UID");
    perr("a COPY 1");
}

#[test]
fn id_and_quota() {
    assert_eq!(p("a023 ID NIL"), Command::Id(None));
    // RFC 2971 §3.3 example.
    assert_eq!(
        p(
            "a023 ID (\"name\" \"sodr\" \"version\" \"19.34\" \"vendor\" \"Pink Floyd Music Limited\")"
        ),
        Command::Id(Some(vec![
            ("name".into(), Some("sodr".into())),
            ("version".into(), Some("19.34".into())),
            ("vendor".into(), Some("Pink Floyd Music Limited".into())),
        ]))
    );
    assert_eq!(
        p("a ID (\"os\" NIL)"),
        Command::Id(Some(vec![("os".into(), None)]))
    );
    assert_eq!(p("a ID ()"), Command::Id(Some(vec![])));
    perr("a ID (\"name\")");
    perr("a ID (name \"x\")");

    // RFC 9208 §4 examples.
    assert_eq!(
        p("G0001 GETQUOTA \"!partition/sda4\""),
        Command::GetQuota("!partition/sda4".into())
    );
    assert_eq!(
        p("G0002 GETQUOTAROOT INBOX"),
        Command::GetQuotaRoot(Mailbox::Inbox)
    );
    assert_eq!(
        p("S0000 SETQUOTA \"User quota\" (STORAGE 512)"),
        Command::SetQuota {
            root: "User quota".into(),
            limits: vec![("STORAGE".into(), 512)]
        }
    );
}

#[test]
fn tags_and_unknown_commands() {
    let e = perr("a1 FROBNICATE x");
    assert_eq!(e.kind, ErrorKind::UnknownCommand);
    assert_eq!(e.tag.as_ref().unwrap().as_str(), "a1");
    let mut out = Vec::new();
    e.write_response(&mut out);
    assert_eq!(out, b"a1 BAD unknown command FROBNICATE\r\n");

    for (line, tagged) in [
        ("", false),
        ("+ NOOP", false),
        ("a+ NOOP", false),
        ("a", true),
        ("a ", true),
        ("(a NOOP", false),
        (" NOOP", false),
        ("a  NOOP", true),
        ("a (NOOP", true),
    ] {
        let e = perr(line);
        assert_eq!(e.tag.is_some(), tagged, "{line:?}: {e:?}");
        assert_eq!(e.kind, ErrorKind::Syntax, "{line:?}");
    }
    // Case-insensitive names, and a helpful text naming the command and the place.
    assert!(matches!(p("x uId FeTcH 1 (FlAgS)"), Command::Fetch(_)));
    let e = perr("x FETCH 1 (FLAGS");
    assert!(e.text.starts_with("FETCH: "), "{}", e.text);
    assert!(e.text.contains("at octet"), "{}", e.text);
    // NUL is refused everywhere outside literal8.
    perr("a LOGIN \"a\0\" b");
    perr("a LOGIN {1}\r\n\0 b");
}
