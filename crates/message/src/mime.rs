//! The MIME structure parser behind [`MessageMeta::parse`]: one pass over the message,
//! a stack of open boundaries, recursion bounded by [`limits::MAX_DEPTH`].
//!
//! The rules are Dovecot's `message-parser.c`, so part boundaries, sizes and line
//! counts agree with what Dovecot answers:
//! - a boundary line is `--` + a boundary of any enclosing multipart at the start of a
//!   line; the newest boundary that is a prefix of the line wins (the longest when
//!   several are), and `--` after it closes that multipart;
//! - the line break before a boundary line belongs to the boundary, except on the
//!   first line of a body;
//! - a boundary line inside a header section ends the header there (the part gets an
//!   empty body);
//! - `Content-*` fields count only in a MIME part: a part of a multipart, or a message
//!   with `MIME-Version:` or `Content-Type:`; otherwise the part is `text/plain`
//!   (`message/rfc822` inside `multipart/digest`);
//! - a multipart without boundary has no parts.

use crate::decode::{Cte, decoded_len};
use crate::header::{RawField, is_blank_line, is_lwsp};
use crate::meta::limits::{MAX_BOUNDARY, MAX_DEPTH, MAX_FIELDS, MAX_PARTS};
use crate::meta::{Body, Envelope, MessageMeta, MimeFields, Part};

/// Parses a whole message.
pub(crate) fn parse(msg: &[u8]) -> MessageMeta {
    let mut parser = Parser {
        data: msg,
        boundaries: Vec::new(),
        total_parts: 1,
    };
    let ctx = PartCtx {
        depth: 0,
        multipart_child: false,
        parent_digest: false,
    };
    let (mut root, envelope, _) = parser.part(0, ctx, true);
    finish(msg, &mut root);
    MessageMeta {
        size: msg.len(),
        envelope: envelope.unwrap_or_default(),
        root,
    }
}

struct Boundary {
    text: Vec<u8>,
    /// Depth of the multipart that owns it.
    owner: usize,
}

/// Why reading a part stopped.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// End of the message.
    Eof,
    /// A boundary line of `boundaries[idx]` starts at `line`; the parts being closed
    /// end at `end`.
    Boundary { line: usize, idx: usize, end: usize },
}

/// A boundary line of `boundaries[idx]` at offset `line`.
#[derive(Clone, Copy, Debug)]
struct Cut {
    line: usize,
    idx: usize,
}

/// How a header section ended.
struct HeaderEnd {
    /// Where the body starts.
    body_start: usize,
    /// A boundary line cut the header short.
    cut: Option<Cut>,
    /// The blank line at this offset ended the header and a boundary line follows.
    blank: Option<(usize, Cut)>,
}

#[derive(Clone, Copy)]
struct PartCtx {
    depth: usize,
    /// A part of a multipart: always MIME.
    multipart_child: bool,
    /// The parent is multipart/digest: no Content-Type means message/rfc822.
    parent_digest: bool,
}

/// What a header section said about the part.
#[derive(Default)]
struct HeaderInfo {
    fields: MimeFields,
    envelope: Option<Envelope>,
    mime_version: bool,
    /// The first `Content-Type`: its `type/subtype` string and whether it parsed.
    content_type: Option<(Vec<u8>, bool)>,
    count: usize,
}

impl HeaderInfo {
    fn field(&mut self, raw: &[u8]) {
        if self.count >= MAX_FIELDS {
            return;
        }
        self.count += 1;
        let field = RawField::parse(raw);
        if field.is("MIME-Version") {
            self.mime_version = true;
        }
        if let Some(ct) = self.fields.apply(&field) {
            self.content_type.get_or_insert(ct);
        }
        if let Some(env) = self.envelope.as_mut() {
            env.apply(&field);
        }
    }
}

enum Kind {
    Text,
    Basic,
    Truncated,
    Multipart {
        boundary: Option<Vec<u8>>,
        digest: bool,
    },
    Message,
}

struct Parser<'a> {
    data: &'a [u8],
    boundaries: Vec<Boundary>,
    total_parts: usize,
}

impl Parser<'_> {
    /// Reads one part starting at `start`: its header, then its body up to the end of
    /// the message or a boundary line of an enclosing multipart. `message_root` parts
    /// (the message, and the message inside a message/rfc822 part) collect an
    /// envelope.
    fn part(
        &mut self,
        start: usize,
        ctx: PartCtx,
        message_root: bool,
    ) -> (Part, Option<Envelope>, Stop) {
        let mut info = HeaderInfo {
            envelope: message_root.then(Envelope::default),
            ..HeaderInfo::default()
        };
        let HeaderEnd {
            body_start: mut header_end,
            mut cut,
            blank,
        } = self.header(start, &mut info);

        let is_mime = ctx.multipart_child || info.mime_version || info.content_type.is_some();
        let HeaderInfo {
            mut fields,
            envelope,
            content_type,
            ..
        } = info;
        if !is_mime {
            fields = MimeFields::default();
        }
        let kind = match content_type.filter(|_| is_mime) {
            None if ctx.parent_digest => Kind::Message,
            None => Kind::Text,
            Some((ct, ok)) => kind_of(&ct, ok, &fields),
        };
        let mut too_deep = false;
        if let Some((blank_at, Cut { line, idx })) = blank {
            // A boundary line right after the blank line: Dovecot ends the header
            // before the blank line, whose line break then belongs to the boundary —
            // unless the line is this multipart's own first boundary.
            let own = match &kind {
                Kind::Multipart {
                    boundary: Some(b), ..
                } if ctx.depth + 1 < MAX_DEPTH => self.own_boundary_at(b, ctx.depth, line),
                _ => false,
            };
            if !own {
                header_end = blank_at;
                cut = Some(Cut { line, idx });
                if matches!(
                    kind,
                    Kind::Multipart {
                        boundary: Some(_),
                        ..
                    }
                ) && ctx.depth + 1 >= MAX_DEPTH
                {
                    // The header did end, so the nesting limit applied.
                    too_deep = true;
                }
            }
        }
        let mut part = Part {
            header_start: start,
            body_start: header_end,
            end: header_end,
            lines: 0,
            binary_size: None,
            fields,
            body: Body::Basic,
        };

        if let Some(Cut { line, idx }) = cut {
            // The header ended at a boundary line: the body is empty. A message/rfc822
            // part still gets an (empty) encapsulated message, as in Dovecot.
            part.body = match kind {
                Kind::Text => Body::Text,
                Kind::Basic => Body::Basic,
                Kind::Truncated => Body::Truncated,
                Kind::Multipart { .. } if too_deep => Body::Truncated,
                Kind::Multipart { .. } => Body::Multipart(Vec::new()),
                Kind::Message => self.empty_message(ctx, header_end),
            };
            let stop = Stop::Boundary {
                line,
                idx,
                end: line,
            };
            return (part, envelope, stop);
        }

        let stop = match kind {
            Kind::Text => {
                part.body = Body::Text;
                self.leaf(&mut part)
            }
            Kind::Basic => {
                part.body = Body::Basic;
                self.leaf(&mut part)
            }
            Kind::Truncated => {
                part.body = Body::Truncated;
                self.leaf(&mut part)
            }
            Kind::Multipart {
                boundary: None,
                digest: _,
            } => {
                part.body = Body::Multipart(Vec::new());
                self.leaf(&mut part)
            }
            Kind::Multipart {
                boundary: Some(b),
                digest,
            } => {
                if ctx.depth + 1 >= MAX_DEPTH {
                    part.body = Body::Truncated;
                    self.leaf(&mut part)
                } else {
                    self.multipart(&mut part, ctx.depth, b, digest)
                }
            }
            Kind::Message => {
                if ctx.depth + 1 >= MAX_DEPTH || self.total_parts >= MAX_PARTS {
                    part.body = Body::Truncated;
                    self.leaf(&mut part)
                } else {
                    self.total_parts += 1;
                    let child_ctx = PartCtx {
                        depth: ctx.depth + 1,
                        multipart_child: false,
                        parent_digest: false,
                    };
                    let (child, env, stop) = self.part(header_end, child_ctx, true);
                    part.end = self.end_of(stop);
                    part.body = Body::Message(Box::new(env.unwrap_or_default()), Box::new(child));
                    stop
                }
            }
        };
        (part, envelope, stop)
    }

    /// The encapsulated message of a message/rfc822 part whose header was cut short.
    fn empty_message(&mut self, ctx: PartCtx, at: usize) -> Body {
        if ctx.depth + 1 >= MAX_DEPTH || self.total_parts >= MAX_PARTS {
            return Body::Truncated;
        }
        self.total_parts += 1;
        let child = Part {
            header_start: at,
            body_start: at,
            end: at,
            lines: 0,
            binary_size: None,
            fields: MimeFields::default(),
            body: Body::Text,
        };
        Body::Message(Box::default(), Box::new(child))
    }

    fn end_of(&self, stop: Stop) -> usize {
        match stop {
            Stop::Eof => self.data.len(),
            Stop::Boundary { end, .. } => end,
        }
    }

    /// A body without structure: up to the next boundary line or the end.
    fn leaf(&mut self, part: &mut Part) -> Stop {
        let stop = self.scan(part.body_start);
        part.end = self.end_of(stop);
        stop
    }

    /// A multipart body: preamble, parts, epilogue.
    fn multipart(
        &mut self,
        part: &mut Part,
        depth: usize,
        boundary: Vec<u8>,
        digest: bool,
    ) -> Stop {
        self.boundaries.push(Boundary {
            text: boundary,
            owner: depth,
        });
        let mine = self.boundaries.len() - 1;
        let mut children = Vec::new();
        let mut stop = self.scan(part.body_start);
        let stop = loop {
            let Stop::Boundary { line, idx, .. } = stop else {
                break stop;
            };
            if self.boundaries.get(idx).is_none_or(|b| b.owner != depth) {
                // An enclosing multipart's boundary: this one ends here.
                break stop;
            }
            let blen = self.boundaries.get(idx).map_or(0, |b| b.text.len());
            let after_name = line + 2 + blen;
            let closing = self.data.get(after_name..after_name + 2) == Some(b"--");
            let next = line_after(self.data, line);
            let complete = self.data.get(..next).is_some_and(|d| d.ends_with(b"\n"));
            if closing {
                self.boundaries.truncate(idx);
                stop = self.scan(next);
            } else if !complete {
                // A boundary line cut off by the end of the message starts no part.
                stop = Stop::Eof;
            } else {
                self.boundaries.truncate(idx + 1);
                self.total_parts += 1;
                let ctx = PartCtx {
                    depth: depth + 1,
                    multipart_child: true,
                    parent_digest: digest,
                };
                let (child, _, child_stop) = self.part(next, ctx, false);
                children.push(child);
                stop = child_stop;
            }
        };
        self.boundaries.truncate(mine);
        part.end = self.end_of(stop);
        part.body = Body::Multipart(children);
        stop
    }

    /// True when the line at `line` is the first boundary line of the multipart at
    /// `depth` whose boundary is `boundary` (it would be found before any other).
    fn own_boundary_at(&mut self, boundary: &[u8], depth: usize, line: usize) -> bool {
        self.boundaries.push(Boundary {
            text: boundary.to_vec(),
            owner: depth,
        });
        let own = self.boundary_at(line) == Some(self.boundaries.len() - 1);
        self.boundaries.pop();
        own
    }

    /// Reads a header section from `start`.
    fn header(&self, start: usize, info: &mut HeaderInfo) -> HeaderEnd {
        let data = self.data;
        let mut pos = start;
        let mut field_start: Option<usize> = None;
        let mut prev_newline = 0;
        let flush = |info: &mut HeaderInfo, from: Option<usize>, to: usize| {
            if let Some(raw) = from.and_then(|f| data.get(f..to)) {
                info.field(raw);
            }
        };
        loop {
            if pos >= data.len() {
                flush(info, field_start, data.len());
                return HeaderEnd {
                    body_start: data.len(),
                    cut: None,
                    blank: None,
                };
            }
            if let Some(idx) = self.boundary_at(pos) {
                flush(info, field_start, pos);
                return HeaderEnd {
                    body_start: pos - prev_newline,
                    cut: Some(Cut { line: pos, idx }),
                    blank: None,
                };
            }
            let next = line_after(data, pos);
            let line = data.get(pos..next).unwrap_or_default();
            if is_blank_line(line) {
                flush(info, field_start, pos);
                let blank = self
                    .boundary_at(next)
                    .map(|idx| (pos, Cut { line: next, idx }));
                return HeaderEnd {
                    body_start: next,
                    cut: None,
                    blank,
                };
            }
            let continues = field_start.is_some() && line.first().is_some_and(|&b| is_lwsp(b));
            if !continues {
                flush(info, field_start, pos);
                field_start = Some(pos);
            }
            prev_newline = newline_len(line);
            pos = next;
        }
    }

    /// From a line start, the first boundary line, or the end of the message.
    fn scan(&self, from: usize) -> Stop {
        let data = self.data;
        if self.boundaries.is_empty() || self.total_parts >= MAX_PARTS {
            return Stop::Eof;
        }
        if let Some(idx) = self.boundary_at(from) {
            return Stop::Boundary {
                line: from,
                idx,
                end: from,
            };
        }
        let mut pos = from;
        while let Some(lf) = data.get(pos..).and_then(|rest| memchr::memchr(b'\n', rest)) {
            let lf = pos + lf;
            let line = lf + 1;
            if let Some(idx) = self.boundary_at(line) {
                // The line break before the boundary line belongs to the boundary.
                let cr = lf > from && data.get(lf - 1) == Some(&b'\r');
                let end = if cr { lf - 1 } else { lf };
                return Stop::Boundary { line, idx, end };
            }
            pos = line;
        }
        Stop::Eof
    }

    /// The open boundary whose boundary line starts at `pos`, if any (Dovecot's
    /// `boundary_find`: newest first, longest prefix match).
    fn boundary_at(&self, pos: usize) -> Option<usize> {
        if self.boundaries.is_empty() || self.total_parts >= MAX_PARTS {
            return None;
        }
        let rest = self.data.get(pos..)?;
        let after = rest.strip_prefix(b"--")?;
        let (content, trailing_dashes) = match memchr::memchr(b'\n', after) {
            Some(lf) => {
                let line = after.get(..lf).unwrap_or_default();
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                (line, line.len() > 2 && line.ends_with(b"--"))
            }
            None => (
                after
                    .get(..after.len().min(MAX_BOUNDARY + 4))
                    .unwrap_or(after),
                false,
            ),
        };
        let mut best: Option<(usize, usize)> = None;
        for (idx, b) in self.boundaries.iter().enumerate().rev() {
            let len = b.text.len();
            if len <= content.len()
                && content.starts_with(&b.text)
                && best.is_none_or(|(_, best_len)| best_len < len)
            {
                best = Some((idx, len));
                if len == content.len() || (trailing_dashes && len + 2 == content.len()) {
                    break;
                }
            }
        }
        best.map(|(idx, _)| idx)
    }
}

/// The kind of a MIME part from its `type/subtype` string.
fn kind_of(ct: &[u8], ok: bool, fields: &MimeFields) -> Kind {
    let lower = ct.to_ascii_lowercase();
    if lower == b"message/rfc822" {
        Kind::Message
    } else if lower.starts_with(b"text") && (lower.len() == 4 || lower.get(4) == Some(&b'/')) {
        Kind::Text
    } else if let Some(sub) = lower.strip_prefix(b"multipart/") {
        let boundary = if ok {
            fields.param("boundary").map(|b| {
                let mut b = b.to_vec();
                b.truncate(MAX_BOUNDARY);
                b
            })
        } else {
            None
        };
        Kind::Multipart {
            boundary,
            digest: sub == b"digest",
        }
    } else if lower == b"multipart" {
        // A type without subtype that claims to be multipart: Dovecot shows such a
        // part as application/octet-stream rather than contradict its type.
        Kind::Truncated
    } else {
        Kind::Basic
    }
}

/// Offset after the line that starts at `pos` (after its LF, or the end).
fn line_after(data: &[u8], pos: usize) -> usize {
    data.get(pos..)
        .and_then(|rest| memchr::memchr(b'\n', rest))
        .map_or(data.len(), |i| pos + i + 1)
}

/// 2 for a line ending in CRLF, 1 for LF, 0 for none.
fn newline_len(line: &[u8]) -> usize {
    if line.ends_with(b"\r\n") {
        2
    } else {
        usize::from(line.ends_with(b"\n"))
    }
}

/// Second pass: line counts (each octet counted once) and decoded sizes.
fn finish(msg: &[u8], part: &mut Part) {
    part.binary_size = binary_size(msg, part);
    match &mut part.body {
        Body::Multipart(children) => {
            let mut lines = 0;
            let mut pos = part.body_start;
            for child in children.iter_mut() {
                finish(msg, child);
                lines += count_lf(msg, pos, child.header_start);
                lines += count_lf(msg, child.header_start, child.body_start) + child.lines;
                pos = child.end.max(pos);
            }
            lines += count_lf(msg, pos, part.end);
            part.lines = lines;
        }
        Body::Message(_, child) => {
            finish(msg, child);
            part.lines = count_lf(msg, child.header_start, child.body_start)
                + child.lines
                + count_lf(msg, child.end, part.end);
        }
        _ => part.lines = count_lf(msg, part.body_start, part.end),
    }
}

fn count_lf(msg: &[u8], from: usize, to: usize) -> u64 {
    msg.get(from..to)
        .map_or(0, |s| memchr::memchr_iter(b'\n', s).count() as u64)
}

fn binary_size(msg: &[u8], part: &Part) -> Option<u64> {
    let body = msg.get(part.body_range()).unwrap_or_default();
    match Cte::of(part.encoding()) {
        Cte::Identity => Some(body.len() as u64),
        Cte::Unknown => None,
        cte => Some(decoded_len(body, cte)),
    }
}
