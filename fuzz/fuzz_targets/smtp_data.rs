//! Fuzzes the SMTP message receivers: `DataReceiver` (DATA, RFC 5321 §4.1.1.4) and
//! `BdatReceiver` (BDAT, RFC 3030).
//!
//! Input layout: byte 0 seeds the chunk sizes, byte 1 picks the size limit, the rest
//! is what the client sends after `354` (or after a BDAT line).
//!
//! Invariants checked:
//! - The result (message bytes, where the data ended, the flags) does not depend on
//!   how the input is chunked.
//! - The data ends exactly at the first `<CRLF>.<CRLF>` of `CRLF + input` (the DATA
//!   line's CRLF counts), never at any other combination of CR, LF and `.` (SMTP
//!   smuggling, CVE-2023-51764).
//! - The bare CR/LF flag is set exactly when the consumed data holds a CR not followed
//!   by LF or an LF not preceded by CR.
//! - Without bare CR/LF, the message is the content with one leading `.` removed from
//!   every line that has one (RFC 5321 §4.5.2); never more than the limit is stored,
//!   and what is stored is a prefix of that.
//! - A BDAT chunk takes exactly its size, whatever the chunking.

#![no_main]

use buudien_smtp_proto::{BdatReceiver, DataReceiver, DataStatus};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let Some((&limit, input)) = rest.split_first() else {
        return;
    };
    let max = if limit == 255 {
        u64::MAX
    } else {
        u64::from(limit) * 4
    };

    let whole = run(input, max, None);
    let chunked = run(input, max, Some(seed));
    assert_eq!(whole, chunked, "chunking changed the result");
    let (message, consumed, bare, exceeded, size) = whole;

    // Where the data must end.
    let mut prefixed = b"\r\n".to_vec();
    prefixed.extend_from_slice(input);
    let end = prefixed.windows(5).position(|w| w == b"\r\n.\r\n");
    assert_eq!(consumed, end.map(|i| i + 3), "wrong end of data");

    // The bare CR/LF flag.
    let region = match consumed {
        Some(n) => &input[..n],
        None => input,
    };
    let mut expect_bare = false;
    for (i, &b) in region.iter().enumerate() {
        // The first byte's "previous" is the LF of the DATA line's CRLF.
        let prev = if i == 0 { b'\n' } else { region[i - 1] };
        if b == b'\n' && prev != b'\r' {
            expect_bare = true;
        }
        if b == b'\r' {
            match region.get(i + 1) {
                Some(b'\n') | None => {}
                Some(_) => expect_bare = true,
            }
        }
    }
    assert_eq!(bare, expect_bare, "bare CR/LF flag");

    // The content, unstuffed.
    assert!(message.len() as u64 <= max, "stored past the limit");
    if !bare {
        let content: &[u8] = match end {
            Some(i) => &prefixed[2..i + 2],
            None => &prefixed[2..],
        };
        // A trailing CR (or "." / ".\r" at a line start) is still held back.
        let mut unstuffed = Vec::new();
        for line in content.split_inclusive(|&b| b == b'\n') {
            unstuffed.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        if end.is_some() {
            assert_eq!(size, unstuffed.len() as u64, "size");
            if exceeded {
                assert!(size > max);
                assert!(unstuffed.starts_with(&message));
            } else {
                assert_eq!(message, unstuffed, "unstuffed message");
            }
        } else {
            assert!(unstuffed.starts_with(&message) || exceeded);
        }
    }

    // BDAT: a chunk of `limit` octets.
    let size = u64::from(limit);
    let mut whole = Vec::new();
    let mut rx = BdatReceiver::new(size, true);
    let used = rx.feed(input, &mut whole);
    assert_eq!(used as u64, size.min(input.len() as u64));
    assert_eq!(whole, &input[..used]);
    let mut chunked = Vec::new();
    let mut rx = BdatReceiver::new(size, true);
    let mut rng = u32::from(seed) | 0x2545_0000;
    let mut pos = 0;
    while pos < input.len() && !rx.is_done() {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        let end = (pos + 1 + rng as usize % 37).min(input.len());
        let used = rx.feed(&input[pos..end], &mut chunked);
        assert!(used == end - pos || rx.is_done());
        pos += used;
    }
    assert_eq!(chunked, whole);
});

/// Feeds `input` whole (`seed` None) or in pseudo-random chunks; returns the message,
/// where the data ended (bytes of `input` used), and the flags.
fn run(input: &[u8], max: u64, seed: Option<u8>) -> (Vec<u8>, Option<usize>, bool, bool, u64) {
    let mut rx = DataReceiver::new(max);
    let mut out = Vec::new();
    let mut consumed = None;
    match seed {
        None => {
            if let DataStatus::Done { consumed: n } = rx.feed(input, &mut out) {
                consumed = Some(n);
            }
        }
        Some(seed) => {
            let mut rng = u32::from(seed) | 0x6b43_0000;
            let mut pos = 0;
            while pos < input.len() {
                rng ^= rng << 13;
                rng ^= rng >> 17;
                rng ^= rng << 5;
                let end = (pos + 1 + rng as usize % 23).min(input.len());
                if let DataStatus::Done { consumed: n } = rx.feed(&input[pos..end], &mut out) {
                    consumed = Some(pos + n);
                    break;
                }
                pos = end;
            }
        }
    }
    assert_eq!(rx.is_done(), consumed.is_some());
    (out, consumed, rx.bare_newline(), rx.exceeded(), rx.size())
}
