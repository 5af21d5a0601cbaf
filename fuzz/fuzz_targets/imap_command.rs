//! Fuzzes the IMAP input path: `CommandFramer` over a byte stream cut into arbitrary
//! chunks, with literals accepted (held or streamed) or rejected at random, and
//! `parse_command` on the raw input.
//!
//! Input layout: byte 0 picks the limits and the text mode, byte 1 seeds the chunk
//! sizes, byte 2 seeds the literal decisions, the rest is the stream a client sends.
//!
//! Invariants checked:
//! - Nothing panics; after `Incomplete` the receive buffer is empty; the framer never
//!   holds more than `max_line + max_buffered_literals` octets (bounded memory).
//! - A literal is announced before its octets; a non-synchronizing one is only
//!   announced within `max_nonsync_literal`; a streamed literal yields exactly its
//!   announced size, then `LiteralEnd`; an APPEND carries the streamed sizes.
//! - The events (chunks joined) do not depend on how the stream is cut.
//! - Error texts have no control characters and make one response line.
//! - Mailbox names and sequence sets of parsed commands round-trip through the
//!   response writer and the parser.

#![no_main]

use buudien_imap_proto::{
    AppendData, Command, CommandFramer, Event, Limits, LiteralMode, Mailbox, SequenceSet, TextMode,
    mailbox::write_mailbox, parse_command,
};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
enum Seen {
    Command(String),
    Error(Option<String>, String),
    Literal(u64, bool),
    Streamed(Vec<u8>),
    End,
    Endless,
}

fuzz_target!(|data: &[u8]| {
    for mode in [TextMode::Ascii, TextMode::Utf8] {
        if let Err(e) = parse_command(data, mode) {
            check_error_text(&e.text);
        }
    }
    let [opts, chunk_seed, decide_seed, stream @ ..] = data else {
        return;
    };
    let limits = if opts & 1 == 0 {
        Limits::default()
    } else {
        // Small limits reach the edges quickly.
        Limits {
            max_line: 16 + usize::from(opts >> 2),
            max_nonsync_literal: u64::from(opts >> 4),
            max_buffered_literals: u64::from(opts >> 3),
        }
    };
    let mode = if opts & 2 == 0 {
        TextMode::Ascii
    } else {
        TextMode::Utf8
    };
    let whole = run(stream, limits, mode, usize::MAX, 0, *decide_seed);
    let chunked = run(stream, limits, mode, 64, *chunk_seed, *decide_seed);
    assert_eq!(whole, chunked, "events depend on chunking");
});

fn xorshift(x: &mut u32) -> u32 {
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    *x
}

fn run(
    stream: &[u8],
    limits: Limits,
    mode: TextMode,
    max_chunk: usize,
    chunk_seed: u8,
    decide_seed: u8,
) -> Vec<Seen> {
    let mut f = CommandFramer::new(limits, mode);
    let mut buf = Vec::new();
    let mut out: Vec<Seen> = Vec::new();
    let mut rng = u32::from(chunk_seed) | 0x9e37_0000;
    let mut literal_no: u32 = 0;
    // (announced size, octets seen) of the literal being streamed.
    let mut streaming: Option<(u64, u64)> = None;
    // Sizes streamed for the command in progress.
    let mut streamed_sizes: Vec<u64> = Vec::new();
    let mut pos = 0;
    loop {
        loop {
            let ev = f.next_event(&mut buf);
            let cap = limits.max_line as u64 + limits.max_buffered_literals;
            assert!(f.held() as u64 <= cap, "holds {} > {cap}", f.held());
            match ev {
                Event::Incomplete => {
                    assert!(buf.is_empty());
                    break;
                }
                Event::Literal(info) => {
                    assert!(streaming.is_none());
                    assert!(info.sync || info.size <= limits.max_nonsync_literal);
                    out.push(Seen::Literal(info.size, info.sync));
                    literal_no += 1;
                    let mut d = u32::from(decide_seed) ^ literal_no.wrapping_mul(0x2545_f491);
                    let choice = xorshift(&mut d) % 4;
                    match choice {
                        0 => {
                            // The session answers the command itself (NO) and drops
                            // whatever of it was streamed already.
                            f.reject_literal();
                            streamed_sizes.clear();
                        }
                        1 if info.append.is_some() => {
                            f.accept_literal(LiteralMode::Stream).expect("stream");
                            streaming = Some((info.size, 0));
                        }
                        _ => {
                            if let Err(e) = f.accept_literal(LiteralMode::Buffer) {
                                check_error_text(&e.text);
                                out.push(Seen::Error(e.tag.map(|t| t.to_string()), e.text));
                            }
                        }
                    }
                }
                Event::LiteralChunk(c) => {
                    let Some((size, got)) = streaming.as_mut() else {
                        panic!("chunk without a streamed literal");
                    };
                    *got += c.len() as u64;
                    assert!(*got <= *size);
                    match out.last_mut() {
                        Some(Seen::Streamed(v)) => v.extend_from_slice(&c),
                        _ => out.push(Seen::Streamed(c)),
                    }
                }
                Event::Endless => {
                    // Past MAX_OVERLONG_SKIP (1 MiB) of one refused line.
                    assert!(buf.is_empty());
                    out.push(Seen::Endless);
                    break;
                }
                Event::LiteralEnd => {
                    let (size, got) = streaming.take().expect("end without a literal");
                    assert_eq!(size, got);
                    streamed_sizes.push(size);
                    out.push(Seen::End);
                }
                Event::Command(req) => {
                    assert!(streaming.is_none());
                    check_command(&req.command, mode, &std::mem::take(&mut streamed_sizes));
                    out.push(Seen::Command(format!("{req:?}")));
                }
                Event::Error(e) => {
                    check_error_text(&e.text);
                    let mut line = Vec::new();
                    e.write_response(&mut line);
                    assert!(line.ends_with(b"\r\n"));
                    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
                    streamed_sizes.clear();
                    out.push(Seen::Error(e.tag.map(|t| t.to_string()), e.text));
                }
            }
        }
        if pos >= stream.len() {
            return out;
        }
        let take = if max_chunk == usize::MAX {
            stream.len()
        } else {
            1 + xorshift(&mut rng) as usize % max_chunk
        };
        let end = pos.saturating_add(take).min(stream.len());
        buf.extend_from_slice(&stream[pos..end]);
        pos = end;
    }
}

fn check_error_text(text: &str) {
    assert!(
        !text.chars().any(char::is_control),
        "control char in {text:?}"
    );
    assert!(text.len() <= 200, "error text of {} octets", text.len());
}

fn check_command(cmd: &Command, mode: TextMode, streamed: &[u64]) {
    let _ = cmd.name();
    let mut boxes: Vec<&Mailbox> = Vec::new();
    let mut sets: Vec<&SequenceSet> = Vec::new();
    match cmd {
        Command::Select { mailbox, .. }
        | Command::Examine { mailbox, .. }
        | Command::Create { mailbox, .. }
        | Command::Delete(mailbox)
        | Command::Subscribe(mailbox)
        | Command::Unsubscribe(mailbox)
        | Command::Status { mailbox, .. }
        | Command::GetQuotaRoot(mailbox) => boxes.push(mailbox),
        Command::Rename { from, to } => boxes.extend([from, to]),
        Command::Copy { set, mailbox, .. } | Command::Move { set, mailbox, .. } => {
            boxes.push(mailbox);
            sets.push(set);
        }
        Command::Append { mailbox, messages } => {
            boxes.push(mailbox);
            let got: Vec<u64> = messages
                .iter()
                .filter_map(|m| match m.data {
                    AppendData::Streamed { size } => Some(size),
                    AppendData::Buffered(_) => None,
                })
                .collect();
            assert_eq!(got, streamed, "streamed sizes");
        }
        Command::Fetch(f) => sets.push(&f.set),
        Command::Store(s) => sets.push(&s.set),
        Command::UidExpunge(s) => sets.push(s),
        _ => {}
    }
    if !matches!(cmd, Command::Append { .. }) {
        assert!(
            streamed.is_empty(),
            "a streamed literal outside APPEND parsed: {cmd:?}"
        );
    }
    // A rev1 name that is not modified UTF-7 names no mailbox: nothing to round-trip.
    for m in boxes.into_iter().filter(|m| !m.is_invalid()) {
        let mut line = b"t SELECT ".to_vec();
        write_mailbox(&mut line, m.as_str(), mode);
        match parse_command(&line, mode) {
            Ok(r) => match r.command {
                Command::Select { mailbox, .. } => assert_eq!(&mailbox, m),
                other => panic!("{other:?}"),
            },
            Err(e) => panic!("{m:?} written as {line:?} does not parse: {e:?}"),
        }
    }
    for s in sets {
        let text = s.to_string();
        assert_eq!(text.parse::<SequenceSet>().ok().as_ref(), Some(s), "{text}");
    }
}
