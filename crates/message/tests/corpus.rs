//! Known-answer tests on a corpus of real-world MIME shapes (`tests/corpus/*.eml`).
//!
//! For each message, `NAME.expected` holds what Dovecot 2.3.19 (Debian 12) answers to
//! FETCH ENVELOPE, BODY, BODYSTRUCTURE, BODY.PEEK[HEADER] / [TEXT] and, per part,
//! BODY.PEEK[n.MIME] / [n] / BINARY.SIZE[n] (and [n.HEADER] / [n.TEXT] for
//! message/rfc822 parts); sections as length and hash. `tests/corpus/README.md` lists
//! the few places where buudien deliberately answers differently; there the file holds
//! buudien's answer. `tests/dovecot-oracle.py` regenerates the Dovecot side:
//!
//! ```text
//! BUUDIEN_CORPUS_DUMP=/tmp/ours cargo test -p buudien-message --test corpus
//! python3 crates/message/tests/dovecot-oracle.py /tmp/ours   # writes NAME.dovecot
//! ```
//!
//! `BUUDIEN_CORPUS_SRC=dir` reads the messages from `dir` instead (dump only, nothing
//! compared): the way to run the oracle over fuzzed messages.

mod util;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use util::{digest, escape};

use buudien_message::{
    Body, MessageMeta, Part, Section, normalize, render_bodystructure, render_envelope,
    section_range,
};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Every IMAP part number of the message, in order, with its part.
fn part_paths(meta: &MessageMeta) -> Vec<(Vec<u32>, &Part)> {
    fn walk<'a>(part: &'a Part, path: Vec<u32>, out: &mut Vec<(Vec<u32>, &'a Part)>) {
        out.push((path.clone(), part));
        match &part.body {
            Body::Multipart(children) => children_of(children, &path, out),
            Body::Message(_, root) => match &root.body {
                Body::Multipart(children) => children_of(children, &path, out),
                _ => walk(root, [path.as_slice(), &[1]].concat(), out),
            },
            _ => {}
        }
    }
    fn children_of<'a>(children: &'a [Part], path: &[u32], out: &mut Vec<(Vec<u32>, &'a Part)>) {
        for (i, c) in children.iter().enumerate() {
            let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
            walk(c, [path, &[n]].concat(), out);
        }
    }
    let mut out = Vec::new();
    match &meta.root.body {
        Body::Multipart(children) => children_of(children, &[], &mut out),
        _ => walk(&meta.root, vec![1], &mut out),
    }
    out
}

fn path_str(path: &[u32]) -> String {
    path.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fn section_digest(msg: &[u8], meta: &MessageMeta, section: &Section) -> String {
    let range = section_range(meta, section).unwrap_or(0..0);
    digest(&msg[range])
}

/// The report compared with `NAME.expected`.
fn report(msg: &[u8]) -> String {
    let meta = MessageMeta::parse(msg);
    let stored = meta.to_bytes();
    assert_eq!(
        MessageMeta::from_bytes(&stored).as_ref(),
        Ok(&meta),
        "codec round trip"
    );

    let mut r = String::new();
    let mut out = Vec::new();
    render_envelope(&meta, &mut out, false);
    let _ = writeln!(r, "ENVELOPE {}", escape(&out));
    out.clear();
    render_bodystructure(&meta, &mut out, false, false);
    let _ = writeln!(r, "BODY {}", escape(&out));
    out.clear();
    render_bodystructure(&meta, &mut out, true, false);
    let _ = writeln!(r, "BODYSTRUCTURE {}", escape(&out));
    let _ = writeln!(r, "HEADER {}", section_digest(msg, &meta, &Section::Header));
    let _ = writeln!(r, "TEXT {}", section_digest(msg, &meta, &Section::Text));
    for (path, part) in part_paths(&meta) {
        let sec = |sub: Option<Section>| Section::Part(path.clone(), sub.map(Box::new));
        let _ = write!(
            r,
            "PART {} MIME {} BODY {}",
            path_str(&path),
            section_digest(msg, &meta, &sec(Some(Section::Mime))),
            section_digest(msg, &meta, &sec(None)),
        );
        assert_eq!(meta.part(&path), Some(part), "numbering of {path:?}");
        match &part.body {
            Body::Message(..) => {
                let _ = write!(
                    r,
                    " HEADER {} TEXT {}",
                    section_digest(msg, &meta, &sec(Some(Section::Header))),
                    section_digest(msg, &meta, &sec(Some(Section::Text))),
                );
            }
            Body::Multipart(_) => {}
            _ => match part.binary_size {
                Some(n) => {
                    let decoded =
                        buudien_message::decode_part(&msg[part.body_range()], part.encoding());
                    assert_eq!(
                        decoded.map(|d| d.len() as u64),
                        Ok(n),
                        "BINARY.SIZE of {path:?}"
                    );
                    let _ = write!(r, " BINARY.SIZE {n}");
                }
                None => {
                    assert!(buudien_message::decode_part(b"", part.encoding()).is_err());
                    let _ = write!(r, " BINARY.SIZE UNKNOWN-CTE");
                }
            },
        }
        r.push('\n');
    }
    r
}

#[test]
fn corpus_matches_expected() {
    let dump = std::env::var_os("BUUDIEN_CORPUS_DUMP").map(PathBuf::from);
    // Another set of messages (say, fuzzed ones) to dump for the oracle, not compared.
    let other = std::env::var_os("BUUDIEN_CORPUS_SRC").map(PathBuf::from);
    let mut names: Vec<PathBuf> = std::fs::read_dir(other.clone().unwrap_or_else(corpus_dir))
        .expect("corpus dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    names.sort();
    assert!(other.is_some() || names.len() >= 25, "corpus is missing");
    let mut failures = Vec::new();
    for path in &names {
        let msg = normalize(&std::fs::read(path).expect("read eml"));
        let ours = report(&msg);
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if let Some(dir) = &dump {
            std::fs::create_dir_all(dir).expect("dump dir");
            std::fs::write(dir.join(format!("{stem}.ours")), &ours).expect("write ours");
            std::fs::write(dir.join(format!("{stem}.eml")), &msg).expect("write eml");
        }
        let expected = std::fs::read_to_string(path.with_extension("expected")).unwrap_or_default();
        if other.is_none() && expected != ours {
            failures.push(format!("--- {stem}.expected\n{expected}+++ ours\n{ours}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
