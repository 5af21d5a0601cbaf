//! Fuzzes the POP3 input path: `LineFramer` over a byte stream cut into arbitrary
//! chunks, then `Command::parse` on every line it yields (and on the raw input).
//!
//! Input layout: byte 0 picks the line limit, byte 1 seeds the chunk sizes, the rest is
//! the stream a client would send.
//!
//! Invariants checked:
//! - The framer yields the same frames, whatever the chunking, as a one-pass reference
//!   model: a line (without LF and one CR before it) shorter than the limit is a
//!   `Line`; a longer one is exactly one `TooLong`, and the stream resynchronises after
//!   its LF.
//! - After `Incomplete`, the buffer holds less than the limit (nothing unbounded).
//! - A `Line` is shorter than the limit and has no LF.
//! - `Command::parse` never panics; an accepted command re-encodes to a line that parses
//!   to the same command, its keyword is case-insensitive, and `name()` is the keyword in
//!   upper case; a refusal's text has no CR, LF or other control characters and is short.

#![no_main]

use buudien_pop3_proto::{Command, Frame, LineFramer, MAX_COMMAND_LINE, MAX_SASL_LINE};
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
        0..=127 => MAX_COMMAND_LINE,
        128..=159 => MAX_SASL_LINE,
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
            let keyword = line.split(|&b| b == b' ').next().unwrap_or_default();
            assert_eq!(
                cmd.name().as_bytes(),
                keyword.to_ascii_uppercase().as_slice(),
                "name() is not the keyword"
            );
            let wire = encode(&cmd);
            assert_eq!(Command::parse(&wire).ok(), Some(cmd.clone()), "round trip");
            let mut flipped = line.to_vec();
            for b in flipped.iter_mut().take(keyword.len()) {
                *b = if b.is_ascii_uppercase() {
                    b.to_ascii_lowercase()
                } else {
                    b.to_ascii_uppercase()
                };
            }
            assert_eq!(
                Command::parse(&flipped).ok(),
                Some(cmd),
                "keyword case matters"
            );
        }
        Err(e) => {
            let text = e.to_string();
            assert!(
                !text.chars().any(char::is_control),
                "control char in {text:?}"
            );
            assert!(text.len() <= 200, "error text of {} bytes", text.len());
        }
    }
}

/// The canonical wire form of a command, without CRLF.
fn encode(cmd: &Command) -> Vec<u8> {
    let s = match cmd {
        Command::User(name) => format!("USER {name}"),
        Command::Pass(secret) => format!("PASS {}", secret.expose()),
        Command::Apop { name, digest } => format!("APOP {name} {digest}"),
        Command::Auth {
            mechanism: None, ..
        } => "AUTH".to_owned(),
        Command::Auth {
            mechanism: Some(m),
            initial: None,
        } => format!("AUTH {m}"),
        Command::Auth {
            mechanism: Some(m),
            initial: Some(i),
        } => format!("AUTH {m} {i}"),
        Command::List(None) => "LIST".to_owned(),
        Command::List(Some(n)) => format!("LIST {n}"),
        Command::Uidl(None) => "UIDL".to_owned(),
        Command::Uidl(Some(n)) => format!("UIDL {n}"),
        Command::Retr(n) => format!("RETR {n}"),
        Command::Dele(n) => format!("DELE {n}"),
        Command::Top(n, l) => format!("TOP {n} {l}"),
        other => other.name().to_owned(),
    };
    s.into_bytes()
}
