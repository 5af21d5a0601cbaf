//! Fuzzes the SMTP command path: `LineFramer` over a byte stream cut into arbitrary
//! chunks, then `Command::parse` on every line it yields (and on the raw input).
//!
//! Input layout: byte 0 picks the line limit, byte 1 seeds the chunk sizes, the rest is
//! the stream a client would send.
//!
//! Invariants checked:
//! - The framer yields the same frames, whatever the chunking, as a one-pass reference
//!   model: a line (without LF and one CR before it) shorter than the limit is a
//!   `Line`; a longer one is exactly one `TooLong`, and the stream resynchronises after
//!   its LF. After `Incomplete`, the buffer holds less than the limit.
//! - `Command::parse` never panics. An accepted command re-encodes (with the codec's
//!   `Display` of paths and parameters) to a line that parses to the same command, its
//!   verb is case-insensitive, and `name()` is the verb in upper case. A refusal's
//!   text has no control characters (it goes into a reply).
//! - Every reply written with such a text is one CRLF line of at most 512 octets.

#![no_main]

use buudien_smtp_proto::reply::{MAX_REPLY_LINE, write};
use buudien_smtp_proto::{Command, Frame, LineFramer, Status};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_parse(data);
    let Some((&limit_byte, rest)) = data.split_first() else {
        return;
    };
    let Some((&seed, stream)) = rest.split_first() else {
        return;
    };
    let max = match limit_byte {
        0..=127 => 2048,
        128..=159 => 512,
        b => usize::from(b - 159), // 1..=96: small limits reach the edges quickly
    };
    let expected = model(stream, max);
    let got = framed(stream, max, seed);
    assert_eq!(got, expected, "framer disagrees with the model (max {max})");
    for frame in &got {
        if let Frame::Line(line) = frame {
            check_parse(line);
        }
    }
});

/// Runs the framer over `stream` fed in pseudo-random chunks; returns every frame
/// except `Incomplete`.
fn framed(stream: &[u8], max: usize, seed: u8) -> Vec<Frame> {
    let mut framer = LineFramer::new();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut rng = u32::from(seed) | 0x9e37_0000;
    let mut pos = 0;
    while pos < stream.len() {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        let take = 1 + (rng as usize % (2 * max + 8));
        let end = (pos + take).min(stream.len());
        buf.extend_from_slice(&stream[pos..end]);
        pos = end;
        loop {
            match framer.next_frame(&mut buf, max) {
                Frame::Incomplete => {
                    assert!(buf.len() < max, "buffer holds {} >= max {max}", buf.len());
                    break;
                }
                Frame::Line(line) => {
                    assert!(line.len() < max, "line of {} with max {max}", line.len());
                    assert!(!line.contains(&b'\n'));
                    out.push(Frame::Line(line));
                }
                Frame::TooLong => out.push(Frame::TooLong),
                // Past MAX_OVERLONG_SKIP (1 MiB): beyond what the fuzzer feeds.
                Frame::Endless => out.push(Frame::Endless),
            }
        }
    }
    out
}

/// The frames of the whole stream in one pass.
fn model(stream: &[u8], max: usize) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut segments = stream.split(|&b| b == b'\n').peekable();
    while let Some(seg) = segments.next() {
        let complete = segments.peek().is_some();
        if seg.len() >= max {
            out.push(Frame::TooLong);
        } else if complete {
            let line = seg.strip_suffix(b"\r").unwrap_or(seg);
            out.push(Frame::Line(line.to_vec()));
        }
    }
    out
}

fn check_parse(line: &[u8]) {
    match Command::parse(line) {
        Ok(cmd) => {
            let verb = line
                .split(|&b| b == b' ' || b == b'\t')
                .next()
                .unwrap_or_default();
            assert_eq!(
                cmd.name().as_bytes(),
                verb.to_ascii_uppercase().as_slice(),
                "name() is not the verb"
            );
            let wire = encode(&cmd);
            assert_eq!(
                Command::parse(wire.as_bytes()).ok(),
                Some(cmd.clone()),
                "round trip through {wire:?}"
            );
            let mut flipped = line.to_vec();
            for b in flipped.iter_mut().take(verb.len()) {
                *b = if b.is_ascii_uppercase() {
                    b.to_ascii_lowercase()
                } else {
                    b.to_ascii_uppercase()
                };
            }
            assert_eq!(
                Command::parse(&flipped).ok(),
                Some(cmd),
                "verb case matters"
            );
        }
        Err(e) => {
            assert!(
                !e.message.chars().any(char::is_control),
                "control char in {:?}",
                e.message
            );
            let mut out = Vec::new();
            write(&mut out, 501, Some(Status::INVALID_ARGUMENTS), &e.message);
            assert!(out.len() <= MAX_REPLY_LINE && out.ends_with(b"\r\n"));
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        }
    }
}

/// The canonical wire form of a command, without CRLF.
fn encode(cmd: &Command) -> String {
    match cmd {
        Command::Ehlo(d) => format!("EHLO {d}"),
        Command::Helo(d) => format!("HELO {d}"),
        Command::Mail { from, params } => format!("MAIL FROM:{from}{params}"),
        Command::Rcpt { to, params } => format!("RCPT TO:{to}{params}"),
        Command::Bdat { size, last: false } => format!("BDAT {size}"),
        Command::Bdat { size, last: true } => format!("BDAT {size} LAST"),
        Command::Vrfy(s) => format!("VRFY {s}"),
        Command::Expn(s) => format!("EXPN {s}"),
        Command::Help(Some(s)) => format!("HELP {s}"),
        Command::Auth {
            mechanism,
            initial: None,
        } => format!("AUTH {mechanism}"),
        Command::Auth {
            mechanism,
            initial: Some(i),
        } => format!("AUTH {mechanism} {i}"),
        other => other.name().to_owned(),
    }
}
