//! The public API as the IMAP session and the store use it: sections, BINARY,
//! HEADER.FIELDS, SEARCH matching, sent dates, UTF-8 rendering, the stored form, and
//! the bounds that keep hostile input cheap.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use buudien_message::{
    Body, MessageMeta, Part, Section, decode_part, filter_header, header_value_matches, limits,
    normalize, parse_date, render_bodystructure, render_envelope, section_range, sent_date,
    text_matches,
};

fn corpus(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/corpus/{name}.eml", env!("CARGO_MANIFEST_DIR"));
    normalize(&std::fs::read(path).unwrap())
}

const NESTED: &[u8] = b"From: a@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=X\r\n\r\n\
--X\r\nContent-Type: multipart/alternative; boundary=Y\r\n\r\n\
--Y\r\nContent-Type: text/plain\r\n\r\nplain\r\n\
--Y\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+aGk8L2I+\r\n\
--Y--\r\n\r\n\
--X\r\nContent-Type: message/rfc822\r\n\r\nFrom: b@example.org\r\nSubject: inner\r\n\r\ninner body\r\n\
--X--\r\n";

fn part(path: &[u32], sub: Option<Section>) -> Section {
    Section::Part(path.to_vec(), sub.map(Box::new))
}

fn fetch<'a>(msg: &'a [u8], meta: &MessageMeta, section: &Section) -> Option<&'a [u8]> {
    section_range(meta, section).map(|r| &msg[r])
}

#[test]
fn sections_are_byte_ranges() {
    let meta = MessageMeta::parse(NESTED);
    let f = |s: &Section| fetch(NESTED, &meta, s);
    assert_eq!(f(&Section::Full), Some(NESTED));
    assert_eq!(
        f(&Section::Header),
        Some(&b"From: a@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=X\r\n\r\n"[..])
    );
    assert!(f(&Section::Text).unwrap().starts_with(b"--X\r\n"));
    assert_eq!(f(&part(&[1, 1], None)), Some(&b"plain"[..]));
    assert_eq!(f(&part(&[1, 2], None)), Some(&b"PGI+aGk8L2I+"[..]));
    assert_eq!(
        f(&part(&[1, 2], Some(Section::Mime))),
        Some(&b"Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n"[..])
    );
    assert!(f(&part(&[1], None)).unwrap().ends_with(b"--Y--\r\n"));
    assert_eq!(
        f(&part(&[2], None)),
        Some(&b"From: b@example.org\r\nSubject: inner\r\n\r\ninner body"[..])
    );
    assert_eq!(
        f(&part(&[2], Some(Section::Header))),
        Some(&b"From: b@example.org\r\nSubject: inner\r\n\r\n"[..])
    );
    assert_eq!(
        f(&part(&[2], Some(Section::Text))),
        Some(&b"inner body"[..])
    );
    // In a non-multipart (here: the encapsulated message) only part 1 exists.
    assert_eq!(f(&part(&[2, 1], None)), Some(&b"inner body"[..]));
    assert_eq!(f(&part(&[2, 2], None)), None);
    // Dovecot: a number past a leaf's own "1" addresses the same leaf.
    assert_eq!(f(&part(&[1, 1, 1], None)), Some(&b"plain"[..]));
    assert_eq!(f(&part(&[1], Some(Section::Header))), None);
    assert_eq!(f(&part(&[3], None)), None);
    assert_eq!(f(&part(&[0], None)), None);
    assert_eq!(f(&Section::Mime), None);
    assert_eq!(Section::new(vec![], None), Section::Full);
    assert_eq!(Section::new(vec![], Some(Section::Text)), Section::Text);
    assert_eq!(
        Section::new(vec![1, 2], Some(Section::Mime)),
        part(&[1, 2], Some(Section::Mime))
    );

    let header = f(&part(
        &[2],
        Some(Section::HeaderFields(vec!["SUBJECT".into()])),
    ))
    .unwrap();
    assert_eq!(
        filter_header(header, &["subject"], false),
        b"Subject: inner\r\n\r\n"
    );
    assert_eq!(
        filter_header(header, &["Subject"], true),
        b"From: b@example.org\r\n\r\n"
    );
}

#[test]
fn binary_decodes_the_part() {
    let meta = MessageMeta::parse(NESTED);
    let html = meta.part(&[1, 2]).unwrap();
    assert_eq!(html.binary_size, Some(9));
    let body = &NESTED[html.body_range()];
    assert_eq!(decode_part(body, html.encoding()).unwrap(), b"<b>hi</b>");

    let msg = corpus("11-bad-cte");
    let meta = MessageMeta::parse(&msg);
    let uu = meta.part(&[1]).unwrap();
    assert_eq!(uu.binary_size, None);
    let err = decode_part(&msg[uu.body_range()], uu.encoding()).unwrap_err();
    assert_eq!(err.encoding, "x-uuencode");
    let qp = MessageMeta::parse(&corpus("02-alternative"));
    assert_eq!(
        qp.part(&[1]).unwrap().encoding(),
        Some(&b"quoted-printable"[..])
    );
}

#[test]
fn header_search_decodes_encoded_words() {
    let msg = corpus("06-encoded-words");
    assert!(header_value_matches(&msg, "subject", "GRÜSSE aus"));
    assert!(header_value_matches(&msg, "Subject", "münchen und café"));
    assert!(header_value_matches(&msg, "FROM", "jürgen müller"));
    assert!(header_value_matches(&msg, "from", "juergen@example.de"));
    assert!(header_value_matches(&msg, "to", "françois"));
    assert!(header_value_matches(&msg, "to", "zoë") || header_value_matches(&msg, "to", "zoe@"));
    assert!(!header_value_matches(&msg, "subject", "berlin"));
    assert!(header_value_matches(&msg, "Message-ID", ""));
    assert!(!header_value_matches(&msg, "X-Missing", ""));
}

#[test]
fn text_search_decodes_bodies_and_charsets() {
    let m = corpus("06-encoded-words");
    let meta = MessageMeta::parse(&m);
    assert!(text_matches(&m, &meta, "GRÜSSE AUS MÜNCHEN", true));
    assert!(text_matches(&m, &meta, "café!", true));

    let m = corpus("02-alternative");
    let meta = MessageMeta::parse(&m);
    assert!(text_matches(&m, &meta, "20% off – this week", true));
    assert!(text_matches(&m, &meta, "&ndash; this week only", true));
    assert!(text_matches(&m, &meta, "the café collection", true));

    let m = corpus("01-simple-text");
    let meta = MessageMeta::parse(&m);
    assert!(text_matches(&m, &meta, "alice@example.org", false));
    assert!(!text_matches(&m, &meta, "alice@example.org", true));
    assert!(text_matches(&m, &meta, "LUNCH TOMORROW AT NOON", true));
    assert!(text_matches(&m, &meta, "", true));

    // The header of an attached message is part of the body.
    let m = corpus("05-rfc822-attached");
    let meta = MessageMeta::parse(&m);
    assert!(text_matches(&m, &meta, "legal@example.org", true));
    assert!(text_matches(&m, &meta, "draft attached", true));
    // Binary attachments are not searched.
    let m = corpus("03-mixed-attachment");
    let meta = MessageMeta::parse(&m);
    assert!(!text_matches(&m, &meta, "PDF-1.4", false));
    assert!(text_matches(&m, &meta, "here is the report", true));
}

#[test]
fn sent_dates() {
    let meta = MessageMeta::parse(&corpus("01-simple-text"));
    let d = sent_date(&meta).unwrap();
    assert_eq!((d.year, d.month, d.day), (2025, 6, 3));
    assert_eq!(d.timestamp, 1_748_937_598);
    let meta = MessageMeta::parse(&corpus("08-groups"));
    let d = sent_date(&meta).unwrap();
    assert_eq!((d.year, d.month, d.day), (2025, 6, 12));
    // Date as written, not converted to UTC.
    let d = parse_date(b"Sat, 14 Jun 2025 23:59:59 +1400 (LINT)").unwrap();
    assert_eq!((d.year, d.month, d.day), (2025, 6, 14));
    assert_eq!(parse_date(b"not a date"), None);
    assert_eq!(
        sent_date(&MessageMeta::parse(&corpus("09-missing-headers"))),
        None
    );
}

fn render(meta: &MessageMeta, utf8: bool) -> (String, String) {
    let mut env = Vec::new();
    render_envelope(meta, &mut env, utf8);
    let mut bs = Vec::new();
    render_bodystructure(meta, &mut bs, true, utf8);
    (
        String::from_utf8(env).unwrap(),
        String::from_utf8(bs).unwrap(),
    )
}

#[test]
fn utf8_sessions_get_quoted_utf8() {
    let meta = MessageMeta::parse(&corpus("12-8bit-headers"));
    let (env, _) = render(&meta, true);
    assert!(env.contains("\"Grüße — 8-bit header ✓\""), "{env}");
    assert!(
        env.contains("((\"Søren Ødegård\" NIL \"soren\" \"example.dk\"))"),
        "{env}"
    );
    let (env, _) = render(&meta, false);
    assert!(env.contains("{28}\r\nGrüße — 8-bit header ✓"), "{env}");

    let meta = MessageMeta::parse(&corpus("07-rfc2231"));
    let (_, bs) = render(&meta, true);
    assert!(bs.contains("(\"name\" \"€ rates.txt\")"), "{bs}");
    assert!(
        bs.contains("(\"filename\" \"very long name with € part.txt\")"),
        "{bs}"
    );
    assert!(bs.contains("\"title\" \"café\""), "{bs}");
    let (_, bs) = render(&meta, false);
    assert!(
        bs.contains("(\"name*\" \"utf-8''%E2%82%AC%20rates.txt\")"),
        "{bs}"
    );
    let p = &meta.part(&[2]).unwrap().fields.params[0];
    assert_eq!(p.decoded(), ("name".to_owned(), "€ rates.txt".to_owned()));
}

/// Offsets nest and stay inside the message.
fn check_part(p: &Part, lo: usize, hi: usize, depth: usize) -> usize {
    assert!(lo <= p.header_start && p.header_start <= p.body_start);
    assert!(
        p.body_start <= p.end && p.end <= hi,
        "{p:?} outside {lo}..{hi}"
    );
    assert!(depth < limits::MAX_DEPTH);
    let mut count = 1;
    let mut pos = p.body_start;
    for c in p.children() {
        assert!(c.header_start >= pos);
        count += check_part(c, pos, p.end, depth + 1);
        pos = c.end;
    }
    count
}

fn check(msg: &[u8]) -> MessageMeta {
    let meta = MessageMeta::parse(msg);
    assert_eq!(meta.size, msg.len());
    let parts = check_part(&meta.root, 0, msg.len(), 0);
    assert!(parts <= limits::MAX_PARTS);
    let stored = meta.to_bytes();
    assert_eq!(MessageMeta::from_bytes(&stored).unwrap(), meta);
    for utf8 in [false, true] {
        let mut out = Vec::new();
        render_envelope(&meta, &mut out, utf8);
        render_bodystructure(&meta, &mut out, true, utf8);
        render_bodystructure(&meta, &mut out, false, utf8);
    }
    meta
}

fn count_parts(p: &Part) -> usize {
    1 + p.children().iter().map(count_parts).sum::<usize>()
}

#[test]
fn many_header_lines_parse_linearly_and_are_capped() {
    let mut msg = b"Subject: s\r\n".to_vec();
    for i in 0..100_000 {
        msg.extend_from_slice(format!("X-Filler-{i}: value {i}\r\n").as_bytes());
    }
    for i in 0..5_000 {
        msg.extend_from_slice(format!("To: user{i}@example.com\r\n").as_bytes());
    }
    msg.extend_from_slice(b"\r\nbody\r\n");
    let meta = check(&msg);
    // Fields past the cap are not interpreted, so these To: lines came too late.
    assert!(meta.envelope.to.is_empty());
    assert_eq!(&msg[meta.root.body_range()], b"body\r\n");

    let mut msg = b"Subject: x\r\n".to_vec();
    for _ in 0..100_000 {
        msg.extend_from_slice(b" folded subject line\r\n");
    }
    for i in 0..5_000 {
        msg.extend_from_slice(
            format!("To: user{i}@example.com, other{i}@example.com\r\n").as_bytes(),
        );
    }
    msg.extend_from_slice(b"\r\nbody\r\n");
    let meta = check(&msg);
    assert_eq!(meta.envelope.to.len(), limits::MAX_ADDRESSES);
    assert!(meta.envelope.subject.as_ref().unwrap().len() <= limits::MAX_VALUE);
    assert!(meta.to_bytes().len() < 100_000);
}

#[test]
fn deep_and_wide_mime_is_capped() {
    // 1000 nested multiparts.
    let mut msg =
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b0000\r\n\r\n".to_vec();
    for i in 0..1000 {
        msg.extend_from_slice(
            format!(
                "--b{i:04}\r\nContent-Type: multipart/mixed; boundary=b{:04}\r\n\r\n",
                i + 1
            )
            .as_bytes(),
        );
    }
    msg.extend_from_slice(b"--b1000\r\n\r\nleaf\r\n");
    let meta = check(&msg);
    assert!(count_parts(&meta.root) <= limits::MAX_DEPTH + 1);

    // 1000 nested message/rfc822.
    let mut msg = Vec::new();
    for _ in 0..1000 {
        msg.extend_from_slice(b"MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n");
    }
    msg.extend_from_slice(b"Subject: bottom\r\n\r\nx\r\n");
    let meta = check(&msg);
    assert!(count_parts(&meta.root) <= limits::MAX_DEPTH);

    // 10,000 parts.
    let mut msg =
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=w\r\n\r\n".to_vec();
    for i in 0..10_000 {
        msg.extend_from_slice(
            format!("--w\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n").as_bytes(),
        );
    }
    msg.extend_from_slice(b"--w--\r\n");
    let meta = check(&msg);
    assert_eq!(count_parts(&meta.root), limits::MAX_PARTS);

    // Many lines that look like boundaries under 31 open boundaries of 70 octets.
    let mut msg = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=".to_vec();
    let long = |i: usize| format!("{}{i:04}", "x".repeat(66));
    msg.extend_from_slice(long(0).as_bytes());
    msg.extend_from_slice(b"\r\n\r\n");
    for i in 0..31 {
        msg.extend_from_slice(
            format!(
                "--{}\r\nContent-Type: multipart/mixed; boundary={}\r\n\r\n",
                long(i),
                long(i + 1)
            )
            .as_bytes(),
        );
    }
    for _ in 0..50_000 {
        msg.extend_from_slice(format!("--{}\r\n", "x".repeat(69)).as_bytes());
    }
    check(&msg);
}

#[test]
fn stored_form_is_small_and_rejects_corruption() {
    for name in [
        "02-alternative",
        "04-nested",
        "05-rfc822-attached",
        "07-rfc2231",
    ] {
        let msg = corpus(name);
        let meta = check(&msg);
        let stored = meta.to_bytes();
        assert!(stored.len() < 1200, "{name}: {} octets", stored.len());
        for cut in 0..stored.len() {
            assert!(MessageMeta::from_bytes(&stored[..cut]).is_err());
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut bad = stored.clone();
            let i = (seed % bad.len() as u64) as usize;
            bad[i] ^= (seed >> 32) as u8 | 1;
            let _ = MessageMeta::from_bytes(&bad);
        }
    }
    assert!(MessageMeta::from_bytes(&[9]).is_err());
    assert!(MessageMeta::from_bytes(&[]).is_err());
}

#[test]
fn mutated_corpus_never_panics() {
    let names: Vec<_> = std::fs::read_dir(format!("{}/tests/corpus", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for path in names {
        let msg = normalize(&std::fs::read(path).unwrap());
        for _ in 0..40 {
            let mut m = msg.clone();
            for _ in 0..1 + next() % 8 {
                if m.is_empty() {
                    break;
                }
                let i = (next() % m.len() as u64) as usize;
                match next() % 4 {
                    0 => m[i] = b"-\r\n=;\"(<:"[(next() % 9) as usize],
                    1 => {
                        m.remove(i);
                    }
                    2 => m.insert(i, b'\n'),
                    _ => m.truncate(i),
                }
            }
            let meta = check(&m);
            let _ = text_matches(&m, &meta, "x", false);
            for p in [&[1u32][..], &[1, 1], &[2], &[2, 1]] {
                if let Some(part) = meta.part(p) {
                    let _ = decode_part(&m[part.body_range()], part.encoding());
                }
            }
        }
    }
}

#[test]
fn body_kinds() {
    let meta = MessageMeta::parse(&corpus("14-digest"));
    let Body::Multipart(parts) = &meta.root.body else {
        panic!()
    };
    assert!(matches!(parts[0].body, Body::Message(..)));
    assert!(matches!(parts[2].body, Body::Text));
    let meta = MessageMeta::parse(&corpus("15-no-boundary-param"));
    assert_eq!(meta.root.body, Body::Multipart(Vec::new()));
    let meta = MessageMeta::parse(&corpus("09-missing-headers"));
    assert_eq!(meta.root.header_range(), 0..2);
    assert_eq!(meta.envelope, Default::default());
}
