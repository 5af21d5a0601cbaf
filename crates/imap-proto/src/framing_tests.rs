//! Framer tests: literals across reads, LITERAL- limits, streaming, caps and resync.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::append::{AppendData, AppendForm};
use crate::command::Command;
use crate::mailbox::Mailbox;

fn framer() -> CommandFramer {
    CommandFramer::new(Limits::default(), TextMode::Ascii)
}

/// Feeds `input` in pieces of `chunk` octets, accepting every literal with `mode`
/// (streaming only APPEND messages), and returns the events except Incomplete.
fn run(f: &mut CommandFramer, input: &[u8], chunk: usize, mode: LiteralMode) -> Vec<Event> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        loop {
            match f.next_event(&mut buf) {
                Event::Incomplete => {
                    assert!(buf.is_empty());
                    break;
                }
                Event::Literal(info) => {
                    let how = if info.append.is_some() {
                        mode
                    } else {
                        LiteralMode::Buffer
                    };
                    out.push(Event::Literal(info));
                    if let Err(e) = f.accept_literal(how) {
                        out.push(Event::Error(e));
                    }
                }
                ev => out.push(ev),
            }
        }
        if pos >= input.len() {
            return out;
        }
        let end = (pos + chunk).min(input.len());
        buf.extend_from_slice(&input[pos..end]);
        pos = end;
    }
}

fn commands(events: &[Event]) -> Vec<&Command> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Command(r) => Some(&r.command),
            _ => None,
        })
        .collect()
}

#[test]
fn pipelined_commands_and_empty_lines() {
    let mut f = framer();
    let ev = run(
        &mut f,
        b"a NOOP\r\n\r\nb CAPABILITY\nc LOGOUT\r\n",
        100,
        LiteralMode::Buffer,
    );
    assert_eq!(
        commands(&ev),
        [&Command::Noop, &Command::Capability, &Command::Logout]
    );
    assert!(f.at_command_start());
}

#[test]
fn every_chunking_gives_the_same_commands() {
    let input: &[u8] = b"A001 LOGIN {11}\r\nFRED FOOBAR {7}\r\nfat man\r\n\
                         A002 APPEND INBOX (\\Seen) {5+}\r\nhello\r\nA003 NOOP\r\n";
    let whole = {
        let mut f = framer();
        run(&mut f, input, input.len(), LiteralMode::Buffer)
    };
    assert_eq!(commands(&whole).len(), 3);
    for chunk in 1..input.len() {
        let mut f = framer();
        assert_eq!(
            run(&mut f, input, chunk, LiteralMode::Buffer),
            whole,
            "chunk {chunk}"
        );
    }
}

#[test]
fn literal_is_announced_before_its_octets() {
    let mut f = framer();
    let mut buf = b"a LOGIN {5}\r\nhello {3}\r\n".to_vec();
    let info = match f.next_event(&mut buf) {
        Event::Literal(i) => i,
        e => panic!("{e:?}"),
    };
    assert_eq!(info.size, 5);
    assert!(info.sync && !info.binary && info.append.is_none());
    assert_eq!(info.tag.unwrap().as_str(), "a");
    // Nothing of the literal taken, and the event repeats until decided.
    assert_eq!(buf, b"hello {3}\r\n");
    assert!(matches!(f.next_event(&mut buf), Event::Literal(_)));
    assert_eq!(buf, b"hello {3}\r\n");
    f.accept_literal(LiteralMode::Buffer).unwrap();
    assert!(matches!(f.next_event(&mut buf), Event::Literal(i) if i.size == 3));
    f.accept_literal(LiteralMode::Buffer).unwrap();
    buf.extend_from_slice(b"abc\r\n");
    match f.next_event(&mut buf) {
        Event::Command(r) => match r.command {
            Command::Login { username, password } => {
                assert_eq!(username, "hello");
                assert_eq!(password.expose(), b"abc");
            }
            c => panic!("{c:?}"),
        },
        e => panic!("{e:?}"),
    }
}

#[test]
fn literal_octets_are_never_commands() {
    // The password literal holds what looks like two commands.
    let mut f = framer();
    let ev = run(
        &mut f,
        b"a LOGIN joe {24}\r\nb LOGOUT\r\nc DELETE INBOX\r\nd NOOP\r\n",
        3,
        LiteralMode::Buffer,
    );
    let cmds = commands(&ev);
    assert_eq!(cmds.len(), 2);
    match cmds[0] {
        Command::Login { password, .. } => {
            assert_eq!(password.expose(), b"b LOGOUT\r\nc DELETE INBOX")
        }
        c => panic!("{c:?}"),
    }
    assert_eq!(cmds[1], &Command::Noop);
}

#[test]
fn nonsync_literal_over_literal_minus_limit() {
    let mut f = framer();
    let mut input = b"A1 APPEND INBOX {5000+}\r\n".to_vec();
    // The octets look like commands; they must be skipped, not run.
    input.extend(b"x DELETE INBOX\r\n".iter().cycle().take(5000));
    input.extend_from_slice(b" rest of the line\r\nA2 NOOP\r\n");
    for chunk in [1, 7, 4096, input.len()] {
        let ev = run(&mut f, &input, chunk, LiteralMode::Buffer);
        assert_eq!(ev.len(), 2, "{ev:?}");
        match &ev[0] {
            Event::Error(e) => {
                assert_eq!(e.kind, ErrorKind::LiteralTooBig { sync: false });
                let mut out = Vec::new();
                e.write_response(&mut out);
                assert!(out.starts_with(b"A1 BAD [TOOBIG] "), "{out:?}");
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(commands(&ev), [&Command::Noop]);
    }
    // Exactly 4096 is allowed.
    let mut input = b"A1 LOGIN u {4096+}\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'p', 4096));
    input.extend_from_slice(b"\r\n");
    let ev = run(&mut f, &input, 1000, LiteralMode::Buffer);
    assert!(matches!(commands(&ev)[..], [Command::Login { .. }]));
}

#[test]
fn literal_plus_allows_big_nonsync() {
    let limits = Limits {
        max_nonsync_literal: u64::MAX,
        ..Limits::default()
    };
    let mut f = CommandFramer::new(limits, TextMode::Ascii);
    let mut input = b"A1 LOGIN u {5000+}\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'p', 5000));
    input.extend_from_slice(b"\r\n");
    let ev = run(&mut f, &input, 999, LiteralMode::Buffer);
    assert!(matches!(commands(&ev)[..], [Command::Login { .. }]));
}

#[test]
fn rejected_sync_literal_ends_the_command() {
    let mut f = framer();
    let mut buf = b"A1 APPEND INBOX {99999999}\r\n".to_vec();
    match f.next_event(&mut buf) {
        Event::Literal(i) => {
            assert_eq!(i.size, 99_999_999);
            assert_eq!(
                i.append,
                Some(AppendTarget {
                    mailbox: Mailbox::Inbox,
                    index: 0,
                    form: AppendForm::Literal
                })
            );
        }
        e => panic!("{e:?}"),
    }
    f.reject_literal();
    // The client got NO [TOOBIG] and goes on with its next command.
    buf.extend_from_slice(b"A2 NOOP\r\n");
    assert!(matches!(f.next_event(&mut buf), Event::Command(r) if r.command == Command::Noop));
}

#[test]
fn rejected_nonsync_literal_is_skipped_with_its_command() {
    let mut f = framer();
    let mut buf = b"A1 APPEND Nope {10+}\r\n0123456789 {3+}\r\nabc\r\nA2 NOOP\r\n".to_vec();
    assert!(matches!(f.next_event(&mut buf), Event::Literal(i) if !i.sync));
    f.reject_literal();
    assert!(matches!(f.next_event(&mut buf), Event::Command(r) if r.command == Command::Noop));
}

#[test]
fn buffered_literal_cap() {
    let limits = Limits {
        max_buffered_literals: 10,
        ..Limits::default()
    };
    let mut f = CommandFramer::new(limits, TextMode::Ascii);
    let mut buf = b"a LOGIN {6}\r\n".to_vec();
    assert!(matches!(f.next_event(&mut buf), Event::Literal(_)));
    f.accept_literal(LiteralMode::Buffer).unwrap();
    buf.extend_from_slice(b"abcdef {5}\r\n");
    assert!(matches!(f.next_event(&mut buf), Event::Literal(_)));
    let e = f.accept_literal(LiteralMode::Buffer).unwrap_err();
    assert_eq!(e.kind, ErrorKind::LiteralTooBig { sync: true });
    let mut out = Vec::new();
    e.write_response(&mut out);
    assert!(out.starts_with(b"a NO [TOOBIG] "));
    buf.extend_from_slice(b"b NOOP\r\n");
    assert!(matches!(f.next_event(&mut buf), Event::Command(r) if r.command == Command::Noop));
    assert_eq!(f.held(), 0);

    // A non-synchronizing one over the cap is skipped.
    let mut buf = b"a LOGIN {20+}\r\n".to_vec();
    assert!(matches!(f.next_event(&mut buf), Event::Literal(_)));
    let e = f.accept_literal(LiteralMode::Buffer).unwrap_err();
    assert_eq!(e.kind, ErrorKind::LiteralTooBig { sync: false });
    buf.extend_from_slice(b"01234567890123456789 x\r\nb NOOP\r\n");
    assert!(matches!(f.next_event(&mut buf), Event::Command(r) if r.command == Command::Noop));
}

#[test]
fn append_literal_streams() {
    let body = vec![b'x'; 50_000];
    let mut input = b"A3 APPEND \"Sent Items\" (\\Seen) {50000}\r\n".to_vec();
    input.extend_from_slice(&body);
    input.extend_from_slice(b" (\\Draft) UTF8 (~{3}\r\nabc)\r\n");
    let mut f = framer();
    let ev = run(&mut f, &input, 4096, LiteralMode::Stream);
    let mut streamed = Vec::new();
    let mut ends = 0;
    let mut targets = Vec::new();
    for e in &ev {
        match e {
            Event::LiteralChunk(c) => {
                assert!(c.len() <= 4096);
                streamed.extend_from_slice(c)
            }
            Event::LiteralEnd => ends += 1,
            Event::Literal(i) => targets.push(i.append.clone().unwrap()),
            _ => {}
        }
    }
    assert_eq!(ends, 2);
    assert_eq!(streamed.len(), 50_003);
    assert_eq!(targets[0].index, 0);
    assert_eq!(targets[0].mailbox, Mailbox::new("Sent Items"));
    assert_eq!(targets[1].index, 1);
    assert_eq!(targets[1].form, AppendForm::Utf8);
    // The framer never held the message.
    assert!(f.held() < 100);
    match commands(&ev)[..] {
        [Command::Append { mailbox, messages }] => {
            assert_eq!(mailbox.as_str(), "Sent Items");
            assert_eq!(messages[0].data, AppendData::Streamed { size: 50_000 });
            assert_eq!(messages[1].data, AppendData::Streamed { size: 3 });
            assert_eq!(messages[1].form, AppendForm::Utf8);
        }
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn zero_length_streamed_literal() {
    let mut f = framer();
    let ev = run(
        &mut f,
        b"a APPEND INBOX {0}\r\n\r\n",
        5,
        LiteralMode::Stream,
    );
    assert!(ev.contains(&Event::LiteralEnd));
    assert!(!ev.iter().any(|e| matches!(e, Event::LiteralChunk(_))));
    assert!(matches!(commands(&ev)[..], [Command::Append { .. }]));
}

#[test]
fn streaming_a_non_append_literal_fails_the_command() {
    let mut f = framer();
    let mut buf = b"a LOGIN {3}\r\n".to_vec();
    assert!(matches!(f.next_event(&mut buf), Event::Literal(i) if i.append.is_none()));
    f.accept_literal(LiteralMode::Stream).unwrap();
    buf.extend_from_slice(b"joe pw\r\n");
    assert!(matches!(f.next_event(&mut buf), Event::LiteralChunk(c) if c == b"joe"));
    assert_eq!(f.next_event(&mut buf), Event::LiteralEnd);
    assert!(matches!(f.next_event(&mut buf), Event::Error(e) if e.kind == ErrorKind::Syntax));
}

#[test]
fn append_target_only_for_message_literals() {
    let mut f = framer();
    // The mailbox name itself as a literal is not a message.
    let mut buf = b"a APPEND {5}\r\n".to_vec();
    assert!(matches!(f.next_event(&mut buf), Event::Literal(i) if i.append.is_none()));
    f.accept_literal(LiteralMode::Buffer).unwrap();
    buf.extend_from_slice(b"INBOX \"1-Jan-2020 00:00:00 +0000\" ~{4}\r\n");
    match f.next_event(&mut buf) {
        Event::Literal(i) => {
            assert!(i.binary);
            let t = i.append.unwrap();
            assert_eq!(
                (t.mailbox, t.index, t.form),
                (Mailbox::Inbox, 0, AppendForm::Binary)
            );
        }
        e => panic!("{e:?}"),
    }
    f.accept_literal(LiteralMode::Stream).unwrap();
    buf.extend_from_slice(b"a\0b\0\r\n");
    assert!(matches!(f.next_event(&mut buf), Event::LiteralChunk(_)));
    assert_eq!(f.next_event(&mut buf), Event::LiteralEnd);
    assert!(matches!(f.next_event(&mut buf), Event::Command(_)));
    // SEARCH literals are never APPEND messages.
    let mut buf = b"a SEARCH TEXT {3}\r\n".to_vec();
    assert!(matches!(f.next_event(&mut buf), Event::Literal(i) if i.append.is_none()));
}

#[test]
fn command_text_limit() {
    let limits = Limits {
        max_line: 100,
        ..Limits::default()
    };
    // Exactly at the limit (CRLF counted) passes.
    let mut f = CommandFramer::new(limits, TextMode::Ascii);
    let mut line = b"a LOGIN u ".to_vec();
    line.resize(98, b'p');
    line.extend_from_slice(b"\r\n");
    let ev = run(&mut f, &line, 7, LiteralMode::Buffer);
    assert!(
        matches!(commands(&ev)[..], [Command::Login { .. }]),
        "{ev:?}"
    );
    // One more octet is refused, once, and the line skipped.
    let mut line = b"a LOGIN u ".to_vec();
    line.resize(99, b'p');
    line.extend_from_slice(b"\r\nb NOOP\r\n");
    for chunk in [1, 13, 200] {
        let ev = run(&mut f, &line, chunk, LiteralMode::Buffer);
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert!(
            matches!(&ev[0], Event::Error(e) if e.kind == ErrorKind::LineTooLong && e.tag.as_ref().is_some_and(|t| t.as_str() == "a"))
        );
        assert_eq!(commands(&ev), [&Command::Noop]);
    }
    // The limit counts every line of the command, not literal octets.
    let mut input = b"a LOGIN {200}\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'u', 200));
    input.extend_from_slice(b" pw\r\n");
    let ev = run(&mut f, &input, 50, LiteralMode::Buffer);
    assert!(matches!(commands(&ev)[..], [Command::Login { .. }]));
    let mut input = b"a LOGIN {2}\r\nab ".to_vec();
    input.extend(std::iter::repeat_n(b'p', 100));
    input.extend_from_slice(b"\r\nb NOOP\r\n");
    let ev = run(&mut f, &input, 50, LiteralMode::Buffer);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::Error(e) if e.kind == ErrorKind::LineTooLong))
    );
    assert_eq!(commands(&ev), [&Command::Noop]);
}

#[test]
fn over_long_line_with_a_trailing_nonsync_literal_skips_it() {
    let limits = Limits {
        max_line: 64,
        ..Limits::default()
    };
    let mut f = CommandFramer::new(limits, TextMode::Ascii);
    let mut input = b"a SEARCH TEXT ".to_vec();
    input.extend(std::iter::repeat_n(b'x', 100));
    input.extend_from_slice(b" BODY {16+}\r\nz DELETE INBOX\r\n\r\nb NOOP\r\n");
    let ev = run(&mut f, &input, 10, LiteralMode::Buffer);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(commands(&ev), [&Command::Noop]);
}

#[test]
fn the_default_limit_is_64k() {
    let mut f = framer();
    let mut input = b"a SEARCH TEXT ".to_vec();
    input.extend(std::iter::repeat_n(b'x', 70_000));
    input.extend_from_slice(b"\r\nb NOOP\r\n");
    let mut buf = Vec::new();
    let mut max_held = 0;
    let mut events = Vec::new();
    for piece in input.chunks(8192) {
        buf.extend_from_slice(piece);
        loop {
            let ev = f.next_event(&mut buf);
            max_held = max_held.max(f.held());
            match ev {
                Event::Incomplete => break,
                e => events.push(e),
            }
        }
    }
    assert!(max_held <= 64 * 1024);
    assert!(matches!(&events[0], Event::Error(e) if e.kind == ErrorKind::LineTooLong));
    assert_eq!(commands(&events), [&Command::Noop]);
}

#[test]
fn parse_errors_resync_at_the_next_command() {
    let mut f = framer();
    let ev = run(
        &mut f,
        b"a FETCH 1 (FLAGS\r\n\x00\x01\x02\r\nb NOOP\r\n* bogus\r\nc LOGOUT\r\n",
        4,
        LiteralMode::Buffer,
    );
    let errors: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Error(e) => Some(e.tag.as_ref().map(|t| t.as_str().to_owned())),
            _ => None,
        })
        .collect();
    assert_eq!(errors, [Some("a".to_owned()), None, None]);
    assert_eq!(commands(&ev), [&Command::Noop, &Command::Logout]);
}

#[test]
fn oversized_literal_size_is_refused() {
    let mut f = framer();
    let ev = run(
        &mut f,
        b"a LOGIN {99999999999999999999999+}\r\n",
        100,
        LiteralMode::Buffer,
    );
    // Refused, and not read: the connection ends (RFC 7888 §4).
    assert!(
        matches!(&ev[..], [Event::Error(e), Event::Endless] if e.kind == ErrorKind::LiteralTooBig { sync: false })
    );
    let mut f = framer();
    let mut buf = b"a LOGIN {99999999999999999999999}\r\n".to_vec();
    assert!(matches!(f.next_event(&mut buf), Event::Literal(i) if i.size == u64::MAX));
    assert!(f.accept_literal(LiteralMode::Buffer).is_err());
}

#[test]
fn idle_done_and_sasl_lines() {
    let mut f = framer();
    let mut buf = b"a IDLE\r\nDONE\r\nb NOOP\r\n".to_vec();
    assert!(matches!(f.next_event(&mut buf), Event::Command(r) if r.command == Command::Idle));
    match f.next_line(&mut buf, 100) {
        LineFrame::Line(l) => assert!(is_idle_done(&l)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(f.next_event(&mut buf), Event::Command(r) if r.command == Command::Noop));
    assert!(is_idle_done(b"done"));
    assert!(!is_idle_done(b"DONE "));

    let mut buf = vec![b'A'; 50];
    assert_eq!(f.next_line(&mut buf, 20), LineFrame::TooLong);
    assert!(buf.is_empty());
    buf.extend_from_slice(b"AAA\r\nZGF0YQ==\r\n");
    assert_eq!(
        f.next_line(&mut buf, 20),
        LineFrame::Line(b"ZGF0YQ==".to_vec())
    );
    assert_eq!(f.next_line(&mut buf, 20), LineFrame::Incomplete);
}

#[test]
fn text_mode_switch_and_reset() {
    let mut f = framer();
    let mut buf = b"a SELECT &APw-\r\n".to_vec();
    assert!(
        matches!(f.next_event(&mut buf), Event::Command(r) if r.command == Command::Select { mailbox: Mailbox::new("\u{fc}"), params: Default::default() })
    );
    f.set_text_mode(TextMode::Utf8);
    assert_eq!(f.text_mode(), TextMode::Utf8);
    let mut buf = b"a SELECT &APw-\r\n".to_vec();
    assert!(
        matches!(f.next_event(&mut buf), Event::Command(r) if r.command == Command::Select { mailbox: Mailbox::new("&APw-"), params: Default::default() })
    );
    let mut buf = b"a LOGIN {5}\r\n".to_vec();
    assert!(matches!(f.next_event(&mut buf), Event::Literal(_)));
    f.reset();
    assert!(f.at_command_start());
    let mut buf = b"b NOOP\r\n".to_vec();
    assert!(matches!(f.next_event(&mut buf), Event::Command(_)));
}

#[test]
fn literal_headers() {
    let h = |s: &[u8]| literal_header(s);
    assert_eq!(
        h(b"a {5}"),
        Some(Header {
            size: 5,
            sync: true,
            binary: false
        })
    );
    assert_eq!(
        h(b"a {5+}"),
        Some(Header {
            size: 5,
            sync: false,
            binary: false
        })
    );
    assert_eq!(
        h(b"a ~{5}"),
        Some(Header {
            size: 5,
            sync: true,
            binary: true
        })
    );
    assert_eq!(
        h(b"{0}"),
        Some(Header {
            size: 0,
            sync: true,
            binary: false
        })
    );
    assert_eq!(h(b"a {}"), None);
    assert_eq!(h(b"a {+}"), None);
    assert_eq!(h(b"a 5}"), None);
    assert_eq!(h(b"a {5} "), None);
    assert_eq!(h(b"a {x5}"), None);
    assert_eq!(h(b"a {5++}"), None);
    assert_eq!(h(b"}"), None);
}

#[test]
fn many_append_messages_cost_linear_time() {
    // 4,000 small messages in one MULTIAPPEND; each announcement reads only the
    // text since the previous message.
    let mut input = b"a APPEND {5}\r\nINBOX".to_vec();
    for i in 0..4_000 {
        if i % 2 == 0 {
            input.extend_from_slice(b" (\\Seen) {0}\r\n");
        } else {
            input.extend_from_slice(b" UTF8 (~{1}\r\nx)");
        }
    }
    input.extend_from_slice(b"\r\n");
    let mut f = framer();
    let start = std::time::Instant::now();
    let ev = run(&mut f, &input, 65_536, LiteralMode::Stream);
    assert!(start.elapsed().as_secs() < 20);
    let targets: Vec<usize> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Literal(i) => Some(i.append.as_ref().map_or(usize::MAX, |t| t.index)),
            _ => None,
        })
        .collect();
    assert_eq!(targets.len(), 4_001);
    assert_eq!(
        targets[0],
        usize::MAX,
        "the mailbox literal is not a message"
    );
    assert!(targets[1..].iter().enumerate().all(|(i, &t)| t == i));
    match commands(&ev)[..] {
        [Command::Append { messages, .. }] => assert_eq!(messages.len(), 4_000),
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn append_messages_buffered_then_streamed() {
    let mut f = framer();
    let mut buf = b"a APPEND INBOX {3}\r\n".to_vec();
    assert!(
        matches!(f.next_event(&mut buf), Event::Literal(i) if i.append.as_ref().unwrap().index == 0)
    );
    f.accept_literal(LiteralMode::Buffer).unwrap();
    buf.extend_from_slice(b"abc \"1-Jan-2000 00:00:00 +0100\" {4}\r\n");
    assert!(
        matches!(f.next_event(&mut buf), Event::Literal(i) if i.append.as_ref().unwrap().index == 1)
    );
    f.accept_literal(LiteralMode::Stream).unwrap();
    buf.extend_from_slice(b"defg (\\Seen) {1+}\r\nh\r\n");
    assert!(matches!(f.next_event(&mut buf), Event::LiteralChunk(c) if c == b"defg"));
    assert_eq!(f.next_event(&mut buf), Event::LiteralEnd);
    assert!(
        matches!(f.next_event(&mut buf), Event::Literal(i) if i.append.as_ref().unwrap().index == 2 && !i.sync)
    );
    f.accept_literal(LiteralMode::Buffer).unwrap();
    match f.next_event(&mut buf) {
        Event::Command(r) => match r.command {
            Command::Append { messages, .. } => {
                assert_eq!(messages[0].data, AppendData::Buffered(b"abc".to_vec()));
                assert_eq!(messages[1].data, AppendData::Streamed { size: 4 });
                assert_eq!(messages[2].data, AppendData::Buffered(b"h".to_vec()));
                assert_eq!(messages[2].flags, [crate::Flag::Seen]);
            }
            c => panic!("{c:?}"),
        },
        e => panic!("{e:?}"),
    }
}

#[test]
fn endless_command_line_is_cut_off_past_the_skip_bound() {
    let mut f = framer();
    let max = f.limits().max_line;
    let mut buf = b"a LOGIN ".to_vec();
    buf.extend(std::iter::repeat_n(b'A', max));
    assert!(matches!(f.next_event(&mut buf), Event::Error(e) if e.kind == ErrorKind::LineTooLong));
    let mut fed = 0usize;
    let ev = loop {
        let ev = f.next_event(&mut buf);
        assert!(buf.is_empty());
        assert!(f.held() <= max);
        if ev != Event::Incomplete {
            break ev;
        }
        assert!(fed <= MAX_OVERLONG_SKIP + 8192, "never cut off after {fed}");
        buf.extend(std::iter::repeat_n(b'B', 4096));
        fed += 4096;
    };
    assert_eq!(ev, Event::Endless);
    assert!(fed >= MAX_OVERLONG_SKIP - 4096 - max, "{fed}");
    // Nothing more is framed.
    buf.extend_from_slice(b"\r\nb NOOP\r\n");
    assert_eq!(f.next_event(&mut buf), Event::Incomplete);
}

#[test]
fn a_long_line_under_the_skip_bound_resynchronises() {
    let mut f = framer();
    let mut input = b"a LOGIN ".to_vec();
    input.extend(std::iter::repeat_n(b'A', MAX_OVERLONG_SKIP / 2));
    input.extend_from_slice(b"\r\nb NOOP\r\n");
    let ev = run(&mut f, &input, 4096, LiteralMode::Buffer);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(matches!(&ev[0], Event::Error(e) if e.kind == ErrorKind::LineTooLong));
    assert!(matches!(&ev[1], Event::Command(r) if r.tag.as_str() == "b"));
}

#[test]
fn endless_plain_line_is_cut_off() {
    let mut f = framer();
    let mut buf = vec![b'A'; 100];
    assert_eq!(f.next_line(&mut buf, 50), LineFrame::TooLong);
    let mut fed = 50usize;
    let got = loop {
        buf.extend(std::iter::repeat_n(b'B', 4096));
        fed += 4096;
        match f.next_line(&mut buf, 50) {
            LineFrame::Incomplete => assert!(fed <= MAX_OVERLONG_SKIP + 4096),
            other => break other,
        }
    };
    assert_eq!(got, LineFrame::Endless);
    assert!(fed > MAX_OVERLONG_SKIP, "{fed}");
}

#[test]
fn a_refused_nonsync_literal_is_skipped_up_to_the_bound_only() {
    // Up to MAX_OVERLONG_SKIP: BAD [TOOBIG], the octets are skipped, the session goes on.
    let size = MAX_OVERLONG_SKIP;
    let mut input = format!("a LOGIN u {{{size}+}}\r\n").into_bytes();
    input.extend(std::iter::repeat_n(b'p', size));
    input.extend_from_slice(b"\r\nb NOOP\r\n");
    let ev = run(&mut framer(), &input, 65536, LiteralMode::Buffer);
    assert_eq!(ev.len(), 2, "{:?}", &ev[..ev.len().min(3)]);
    assert!(
        matches!(&ev[0], Event::Error(e) if e.kind == ErrorKind::LiteralTooBig { sync: false })
    );
    assert_eq!(commands(&ev), [&Command::Noop]);
    // One octet more: BAD [TOOBIG], then the end, and nothing of it is read.
    let mut f = framer();
    let mut buf = format!("a LOGIN u {{{}+}}\r\npppp", size + 1).into_bytes();
    assert!(
        matches!(f.next_event(&mut buf), Event::Error(e) if e.kind == ErrorKind::LiteralTooBig { sync: false })
    );
    assert_eq!(f.next_event(&mut buf), Event::Endless);
    assert!(buf.is_empty());
    buf.extend_from_slice(b"b NOOP\r\n");
    assert_eq!(f.next_event(&mut buf), Event::Incomplete);
}
