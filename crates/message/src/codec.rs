//! The stored form of [`MessageMeta`]: a compact, versioned binary encoding.
//!
//! ```text
//! meta     = version(0x01) varint(size) envelope part
//! envelope = opt(date) opt(subject) addrs(from) addrs(sender) addrs(reply-to)
//!            addrs(to) addrs(cc) addrs(bcc) opt(in-reply-to) opt(message-id)
//! addrs    = varint(count) *(opt(name) opt(adl) opt(mailbox) opt(host))
//! part     = varint(header_start) varint(header_len) varint(body_len) varint(lines)
//!            varint(binary_size + 1, 0 = unknown) fields body
//! fields   = varint(presence bits) [bytes(type) bytes(subtype)] params [id] [description]
//!            [encoding] [md5] [bytes(disposition) params] langs [location]
//! body     = 0 (text) / 1 (basic) / 2 (truncated) / 3 varint(n) n*part
//!            / 4 envelope part
//! opt      = varint(0) / varint(len + 1) octets
//! bytes    = varint(len) octets;  varint = LEB128
//! ```
//! Decoding checks every length against the input and bounds nesting and part count
//! by the parser's [`crate::limits`], so a corrupt row gives an error, never a panic
//! or a huge allocation.

use std::fmt;

use crate::meta::limits::{MAX_DEPTH, MAX_PARTS};
use crate::meta::{Address, Body, Envelope, MessageMeta, MimeFields, Param, Part};

const VERSION: u8 = 1;

/// Stored metadata that cannot be read: wrong version, truncated or corrupt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(&'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stored message metadata: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

impl MessageMeta {
    /// The stored form (see the module docs of `codec`); typically a few hundred
    /// octets.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(256);
        w.push(VERSION);
        varint(&mut w, self.size as u64);
        envelope(&mut w, &self.envelope);
        part(&mut w, &self.root);
        w
    }

    /// Reads what [`MessageMeta::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<MessageMeta, DecodeError> {
        let mut r = Reader {
            data: bytes,
            pos: 0,
            parts: 0,
        };
        if r.byte()? != VERSION {
            return Err(DecodeError("unknown version"));
        }
        let size = r.usize()?;
        let envelope = r.envelope()?;
        let root = r.part(0)?;
        if r.pos != bytes.len() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(MessageMeta {
            size,
            envelope,
            root,
        })
    }
}

fn varint(w: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            w.push(b);
            return;
        }
        w.push(b | 0x80);
    }
}

fn bytes(w: &mut Vec<u8>, b: &[u8]) {
    varint(w, b.len() as u64);
    w.extend_from_slice(b);
}

fn opt(w: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => varint(w, 0),
        Some(b) => {
            varint(w, b.len() as u64 + 1);
            w.extend_from_slice(b);
        }
    }
}

fn addrs(w: &mut Vec<u8>, list: &[Address]) {
    varint(w, list.len() as u64);
    for a in list {
        opt(w, a.name.as_deref());
        opt(w, a.adl.as_deref());
        opt(w, a.mailbox.as_deref());
        opt(w, a.host.as_deref());
    }
}

fn envelope(w: &mut Vec<u8>, e: &Envelope) {
    opt(w, e.date.as_deref());
    opt(w, e.subject.as_deref());
    for list in [&e.from, &e.sender, &e.reply_to, &e.to, &e.cc, &e.bcc] {
        addrs(w, list);
    }
    opt(w, e.in_reply_to.as_deref());
    opt(w, e.message_id.as_deref());
}

fn params(w: &mut Vec<u8>, list: &[Param]) {
    varint(w, list.len() as u64);
    for p in list {
        bytes(w, &p.name);
        bytes(w, &p.value);
    }
}

const HAS_TYPE: u64 = 1;
const HAS_ID: u64 = 2;
const HAS_DESCRIPTION: u64 = 4;
const HAS_ENCODING: u64 = 8;
const HAS_MD5: u64 = 16;
const HAS_DISPOSITION: u64 = 32;
const HAS_LOCATION: u64 = 64;

fn fields(w: &mut Vec<u8>, f: &MimeFields) {
    let bits = [
        (f.content_type.is_some(), HAS_TYPE),
        (f.id.is_some(), HAS_ID),
        (f.description.is_some(), HAS_DESCRIPTION),
        (f.encoding.is_some(), HAS_ENCODING),
        (f.md5.is_some(), HAS_MD5),
        (f.disposition.is_some(), HAS_DISPOSITION),
        (f.location.is_some(), HAS_LOCATION),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .fold(0, |acc, (_, bit)| acc | bit);
    varint(w, bits);
    if let Some(t) = &f.content_type {
        bytes(w, t);
        bytes(w, &f.content_subtype);
    }
    params(w, &f.params);
    for b in [&f.id, &f.description, &f.encoding, &f.md5]
        .into_iter()
        .flatten()
    {
        bytes(w, b);
    }
    if let Some(d) = &f.disposition {
        bytes(w, d);
        params(w, &f.disposition_params);
    }
    varint(w, f.language.len() as u64);
    for l in &f.language {
        bytes(w, l);
    }
    if let Some(l) = &f.location {
        bytes(w, l);
    }
}

fn part(w: &mut Vec<u8>, p: &Part) {
    varint(w, p.header_start as u64);
    varint(w, p.body_start.saturating_sub(p.header_start) as u64);
    varint(w, p.end.saturating_sub(p.body_start) as u64);
    varint(w, p.lines);
    varint(w, p.binary_size.map_or(0, |s| s.saturating_add(1)));
    fields(w, &p.fields);
    match &p.body {
        Body::Text => w.push(0),
        Body::Basic => w.push(1),
        Body::Truncated => w.push(2),
        Body::Multipart(children) => {
            w.push(3);
            varint(w, children.len() as u64);
            for c in children {
                part(w, c);
            }
        }
        Body::Message(env, root) => {
            w.push(4);
            envelope(w, env);
            part(w, root);
        }
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    parts: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.data.get(self.pos).ok_or(DecodeError("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("bad varint"))
    }

    fn usize(&mut self) -> Result<usize, DecodeError> {
        usize::try_from(self.varint()?).map_err(|_| DecodeError("offset too large"))
    }

    /// A count of items that each take at least one octet.
    fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.usize()?;
        if n > self.data.len().saturating_sub(self.pos) {
            return Err(DecodeError("bad count"));
        }
        Ok(n)
    }

    fn take(&mut self, n: usize) -> Result<Vec<u8>, DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError("bad length"))?;
        let b = self
            .data
            .get(self.pos..end)
            .ok_or(DecodeError("truncated"))?;
        self.pos = end;
        Ok(b.to_vec())
    }

    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.usize()?;
        self.take(n)
    }

    fn opt(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        match self.usize()? {
            0 => Ok(None),
            n => self.take(n - 1).map(Some),
        }
    }

    fn addrs(&mut self) -> Result<Vec<Address>, DecodeError> {
        let n = self.count()?;
        let mut list = Vec::with_capacity(n);
        for _ in 0..n {
            list.push(Address {
                name: self.opt()?,
                adl: self.opt()?,
                mailbox: self.opt()?,
                host: self.opt()?,
            });
        }
        Ok(list)
    }

    fn envelope(&mut self) -> Result<Envelope, DecodeError> {
        Ok(Envelope {
            date: self.opt()?,
            subject: self.opt()?,
            from: self.addrs()?,
            sender: self.addrs()?,
            reply_to: self.addrs()?,
            to: self.addrs()?,
            cc: self.addrs()?,
            bcc: self.addrs()?,
            in_reply_to: self.opt()?,
            message_id: self.opt()?,
        })
    }

    fn params(&mut self) -> Result<Vec<Param>, DecodeError> {
        let n = self.count()?;
        let mut list = Vec::with_capacity(n);
        for _ in 0..n {
            list.push(Param {
                name: self.bytes()?,
                value: self.bytes()?,
            });
        }
        Ok(list)
    }

    fn fields(&mut self) -> Result<MimeFields, DecodeError> {
        let bits = self.varint()?;
        let mut f = MimeFields::default();
        if bits & HAS_TYPE != 0 {
            f.content_type = Some(self.bytes()?);
            f.content_subtype = self.bytes()?;
        }
        f.params = self.params()?;
        for (bit, slot) in [
            (HAS_ID, &mut f.id),
            (HAS_DESCRIPTION, &mut f.description),
            (HAS_ENCODING, &mut f.encoding),
            (HAS_MD5, &mut f.md5),
        ] {
            if bits & bit != 0 {
                *slot = Some(self.bytes()?);
            }
        }
        if bits & HAS_DISPOSITION != 0 {
            f.disposition = Some(self.bytes()?);
            f.disposition_params = self.params()?;
        }
        let n = self.count()?;
        f.language = (0..n).map(|_| self.bytes()).collect::<Result<_, _>>()?;
        if bits & HAS_LOCATION != 0 {
            f.location = Some(self.bytes()?);
        }
        Ok(f)
    }

    fn part(&mut self, depth: usize) -> Result<Part, DecodeError> {
        self.parts += 1;
        if depth > MAX_DEPTH || self.parts > MAX_PARTS {
            return Err(DecodeError("too many parts"));
        }
        let header_start = self.usize()?;
        let body_start = header_start
            .checked_add(self.usize()?)
            .ok_or(DecodeError("bad offset"))?;
        let end = body_start
            .checked_add(self.usize()?)
            .ok_or(DecodeError("bad offset"))?;
        let lines = self.varint()?;
        let binary_size = self.varint()?.checked_sub(1);
        let fields = self.fields()?;
        let body = match self.byte()? {
            0 => Body::Text,
            1 => Body::Basic,
            2 => Body::Truncated,
            3 => {
                let n = self.count()?;
                let mut children = Vec::with_capacity(n);
                for _ in 0..n {
                    children.push(self.part(depth + 1)?);
                }
                Body::Multipart(children)
            }
            4 => {
                let env = self.envelope()?;
                let root = self.part(depth + 1)?;
                Body::Message(Box::new(env), Box::new(root))
            }
            _ => return Err(DecodeError("bad body kind")),
        };
        Ok(Part {
            header_start,
            body_start,
            end,
            lines,
            binary_size,
            fields,
            body,
        })
    }
}
