//! Fuzzes `DotStuffer`, the multi-line response writer (RFC 1939 §3).
//!
//! Input layout: byte 0 seeds the chunk sizes, the rest is a message body.
//!
//! Invariants checked:
//! - The output does not depend on how the body is chunked.
//! - It ends with `.` CRLF at the start of a line, and no earlier line is `.` CRLF or
//!   `.` LF, so a client cannot be made to stop early (no response smuggling).
//! - Un-stuffing it the way a client does gives back the body, plus CRLF if the body did
//!   not end a line.

#![no_main]

use buudien_pop3_proto::DotStuffer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };

    let mut whole = Vec::new();
    let mut s = DotStuffer::new();
    s.push(body, &mut whole);
    s.finish(&mut whole);

    let mut chunked = Vec::new();
    let mut s = DotStuffer::new();
    let mut rng = u32::from(seed) | 0x5bd1_0000;
    let mut pos = 0;
    while pos < body.len() {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        let end = (pos + 1 + rng as usize % 64).min(body.len());
        s.push(&body[pos..end], &mut chunked);
        pos = end;
    }
    s.finish(&mut chunked);
    assert_eq!(chunked, whole, "output depends on chunking");

    // A client reads LF-terminated lines; the first `.`CRLF line ends the response.
    let mut lines: Vec<&[u8]> = whole.split_inclusive(|&b| b == b'\n').collect();
    assert_eq!(lines.pop(), Some(&b".\r\n"[..]), "missing terminator");
    let mut unstuffed = Vec::new();
    for line in lines {
        assert!(line != b".\r\n" && line != b".\n", "early terminator");
        unstuffed.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    let mut expected = body.to_vec();
    if !expected.is_empty() && !expected.ends_with(b"\n") {
        expected.extend_from_slice(b"\r\n");
    }
    assert_eq!(
        unstuffed, expected,
        "un-stuffed output differs from the body"
    );
});
