//! Fuzzes `MessageMeta::parse`, the MIME structure built once at delivery (ENVELOPE,
//! BODYSTRUCTURE, part offsets), and what is derived from it.
//!
//! Invariants checked:
//! - Parsing never panics, and every offset lies within the message; parts nest
//!   (`header_start <= body_start <= end`, children inside their parent's body).
//! - The stored form round-trips: `from_bytes(to_bytes(m)) == m`.
//! - Rendering ENVELOPE and BODY/BODYSTRUCTURE (with and without UTF-8) never panics
//!   and gives balanced parentheses outside strings.
//! - Every part's section range, MIME range and decoded body (BINARY) are computed
//!   without panic, within bounds; `BINARY.SIZE` equals the decoded length.

#![no_main]

use buudien_message::{
    MessageMeta, Part, Section, decode_part, filter_header, render_bodystructure, render_envelope,
    section_range,
};
use libfuzzer_sys::fuzz_target;

fn check_part(p: &Part, lo: usize, hi: usize, msg: &[u8], path: &mut Vec<u32>) {
    assert!(lo <= p.header_start, "{path:?} starts before its parent");
    assert!(
        p.header_start <= p.body_start && p.body_start <= p.end,
        "{path:?} order"
    );
    assert!(p.end <= hi, "{path:?} ends after its parent");
    let body = &msg[p.body_range()];
    if let (Ok(decoded), Some(n)) = (decode_part(body, p.encoding()), p.binary_size) {
        assert_eq!(decoded.len() as u64, n, "BINARY.SIZE of {path:?}");
    }
    let children = p.children();
    let mut prev = p.body_start;
    for (i, c) in children.iter().enumerate() {
        assert!(c.header_start >= prev, "{path:?} children out of order");
        prev = c.end;
        path.push(u32::try_from(i + 1).unwrap_or(u32::MAX));
        check_part(c, p.body_start, p.end, msg, path);
        path.pop();
    }
}

fn balanced(out: &[u8]) {
    let mut depth = 0i64;
    let mut in_quote = false;
    let mut escaped = false;
    let mut i = 0;
    while i < out.len() {
        let b = out[i];
        if in_quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quote = false;
            }
        } else if b == b'"' {
            in_quote = true;
        } else if b == b'{' {
            // A literal: {n}\r\n then n octets.
            let close = out[i..].iter().position(|&c| c == b'}').map(|c| i + c);
            if let Some(close) = close
                && let Ok(n) = std::str::from_utf8(&out[i + 1..close])
                    .unwrap_or("x")
                    .parse::<usize>()
            {
                i = close + 3 + n;
                continue;
            }
        } else if b == b'(' {
            depth += 1;
        } else if b == b')' {
            depth -= 1;
            assert!(depth >= 0, "unbalanced: {}", String::from_utf8_lossy(out));
        }
        i += 1;
    }
    assert_eq!(depth, 0, "unbalanced: {}", String::from_utf8_lossy(out));
}

fuzz_target!(|msg: &[u8]| {
    let meta = MessageMeta::parse(msg);
    assert!(meta.size <= msg.len());
    check_part(&meta.root, 0, msg.len(), msg, &mut Vec::new());
    let stored = meta.to_bytes();
    assert_eq!(
        MessageMeta::from_bytes(&stored).as_ref(),
        Ok(&meta),
        "codec round trip"
    );
    for utf8 in [false, true] {
        let mut out = Vec::new();
        render_envelope(&meta, &mut out, utf8);
        balanced(&out);
        for ext in [false, true] {
            let mut out = Vec::new();
            render_bodystructure(&meta, &mut out, ext, utf8);
            balanced(&out);
        }
    }
    for section in [Section::Full, Section::Header, Section::Text] {
        if let Some(r) = section_range(&meta, &section) {
            assert!(r.start <= r.end && r.end <= msg.len(), "{section:?}");
        }
    }
    for path in [vec![1], vec![2], vec![1, 1], vec![1, 2], vec![2, 1, 1]] {
        for sub in [
            None,
            Some(Section::Mime),
            Some(Section::Header),
            Some(Section::Text),
        ] {
            let s = Section::Part(path.clone(), sub.map(Box::new));
            if let Some(r) = section_range(&meta, &s) {
                assert!(r.start <= r.end && r.end <= msg.len(), "{s:?}");
            }
        }
    }
    let header = &msg[meta.root.header_range()];
    let kept = filter_header(header, &["subject", "from"], false);
    let dropped = filter_header(header, &["subject", "from"], true);
    assert!(kept.len() <= header.len() + 2 && dropped.len() <= header.len() + 2);
});
