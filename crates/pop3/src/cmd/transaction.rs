//! The TRANSACTION commands (RFC 1939 §5, §7): STAT, LIST, UIDL, RETR, TOP, DELE,
//! RSET, NOOP. Message numbers are 1-based and fixed for the session.
//!
//! Sizes and bodies follow the session's UTF-8 mode: without `UTF8`, a message with
//! raw UTF-8 header fields is listed with its surrogate's size and sent as the
//! surrogate (see [`crate::session::size`]).

use crate::conn::{Conn, ConnError};
use crate::session::{Flow, MsgError, Txn, serves_surrogate, size};
use buudien_pop3_proto::{DotStuffer, RespCode, response};
use buudien_store::{MailStore, MaildropEntry, StoreError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

/// How much of a message is read from the store at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Writes the `-ERR` for a message number that names no message.
fn no_message(out: &mut Vec<u8>, n: u32, e: MsgError) {
    match e {
        MsgError::NoSuch => response::err(out, None, "no such message"),
        MsgError::Deleted => response::err(out, None, &format!("message {n} already deleted")),
    }
}

/// The unique-id of a message (RFC 1939 §7): UIDVALIDITY and UID as 16 hex digits,
/// so it never changes and is never reused while the mailbox's UIDVALIDITY stays.
fn unique_id(txn: &Txn, entry: &MaildropEntry) -> String {
    format!("{:08x}{:08x}", txn.maildrop.uidvalidity.0, entry.uid.0)
}

/// RFC 1939 §5 — `STAT`: `+OK count octets`, messages marked deleted left out.
pub(crate) fn stat(txn: &Txn, utf8: bool, out: &mut Vec<u8>) -> Flow {
    let (count, octets) = txn.totals(utf8);
    response::ok(out, &format!("{count} {octets}"));
    Flow::Next
}

/// RFC 1939 §5 — `LIST [msg]`: one scan listing `+OK n size`, or all of them as a
/// multi-line response. Sizes match what RETR sends (RFC 6856 §2.1).
pub(crate) fn list(txn: &Txn, utf8: bool, msg: Option<u32>, out: &mut Vec<u8>) -> Flow {
    match msg {
        Some(n) => match txn.message(n) {
            Ok((_, entry)) => response::ok(out, &format!("{n} {}", size(entry, utf8))),
            Err(e) => no_message(out, n, e),
        },
        None => {
            let (count, octets) = txn.totals(utf8);
            response::ok(out, &format!("{count} messages ({octets} octets)"));
            for (n, entry) in txn.live() {
                response::line(out, &format!("{n} {}", size(entry, utf8)));
            }
            response::end(out);
        }
    }
    Flow::Next
}

/// RFC 1939 §7 — `UIDL [msg]`: `+OK n unique-id`, or all of them as a multi-line
/// response.
pub(crate) fn uidl(txn: &Txn, msg: Option<u32>, out: &mut Vec<u8>) -> Flow {
    match msg {
        Some(n) => match txn.message(n) {
            Ok((_, entry)) => response::ok(out, &format!("{n} {}", unique_id(txn, entry))),
            Err(e) => no_message(out, n, e),
        },
        None => {
            response::ok(out, "unique-id listing follows");
            for (n, entry) in txn.live() {
                response::line(out, &format!("{n} {}", unique_id(txn, entry)));
            }
            response::end(out);
        }
    }
    Flow::Next
}

/// RFC 1939 §5 — `DELE msg`: marks the message; it is removed at QUIT (UPDATE).
pub(crate) fn dele(txn: &mut Txn, n: u32, out: &mut Vec<u8>) -> Flow {
    match txn.message(n) {
        Ok((index, _)) => {
            if let Some(mark) = txn.deleted.get_mut(index) {
                *mark = true;
            }
            response::ok(out, &format!("message {n} deleted"));
        }
        Err(e) => no_message(out, n, e),
    }
    Flow::Next
}

/// RFC 1939 §5 — `RSET`: unmarks every message marked deleted.
pub(crate) fn rset(txn: &mut Txn, utf8: bool, out: &mut Vec<u8>) -> Flow {
    txn.deleted.iter_mut().for_each(|d| *d = false);
    let (count, octets) = txn.totals(utf8);
    response::ok(
        out,
        &format!("maildrop has {count} messages ({octets} octets)"),
    );
    Flow::Next
}

/// RFC 1939 §5 — `NOOP`.
pub(crate) fn noop(out: &mut Vec<u8>) -> Flow {
    response::ok(out, "");
    Flow::Next
}

/// RFC 1939 §5 — `RETR msg`: `+OK size octets`, the message dot-stuffed, `.`.
pub(crate) async fn retr<S, IO>(
    store: &S,
    txn: &Txn,
    utf8: bool,
    n: u32,
    conn: &mut Conn<'_, IO>,
) -> Result<Flow, ConnError>
where
    S: MailStore,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    match txn.message(n) {
        Ok((_, entry)) => send(store, entry, utf8, None, conn).await,
        Err(e) => {
            no_message(&mut conn.out, n, e);
            Ok(Flow::Next)
        }
    }
}

/// RFC 1939 §7 — `TOP msg n`: the header section, the empty line, then at most `n`
/// lines of the body, dot-stuffed, `.`. Streamed, so a huge `n` costs no memory.
pub(crate) async fn top<S, IO>(
    store: &S,
    txn: &Txn,
    utf8: bool,
    n: u32,
    lines: u32,
    conn: &mut Conn<'_, IO>,
) -> Result<Flow, ConnError>
where
    S: MailStore,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    match txn.message(n) {
        Ok((_, entry)) => send(store, entry, utf8, Some(lines), conn).await,
        Err(e) => {
            no_message(&mut conn.out, n, e);
            Ok(Flow::Next)
        }
    }
}

/// Sends a message (RETR, `lines` None) or its top (TOP) as a multi-line response.
///
/// The stored bytes are streamed in [`READ_CHUNK`] pieces and written out as the
/// output grows, so only a message served as its surrogate is held in memory whole
/// (the downgrade needs the header section). If the store fails before the `+OK`,
/// the reply is `-ERR [SYS/TEMP]`, or `-ERR [SYS/PERM]` for a damaged message (its
/// blob file missing or of the wrong size, RFC 3206 §4); if it fails in the middle, the connection is closed
/// (the client sees no final `.` and must not take the message as complete).
async fn send<S, IO>(
    store: &S,
    entry: &MaildropEntry,
    utf8: bool,
    lines: Option<u32>,
    conn: &mut Conn<'_, IO>,
) -> Result<Flow, ConnError>
where
    S: MailStore,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut reader = match store.read_blob(&entry.blob).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(uid = entry.uid.0, error = %e, "message unreadable");
            // RFC 3206 §4: SYS/PERM when retrying cannot help (a damaged message).
            let (code, text) = match e {
                StoreError::Damaged(_) => (RespCode::SysPerm, "message damaged in storage"),
                _ if e.is_temporary() => (RespCode::SysTemp, "message unavailable"),
                _ => (RespCode::SysPerm, "message unavailable"),
            };
            response::err(&mut conn.out, Some(code), text);
            return Ok(Flow::Next);
        }
    };
    let status = |octets: u64| match lines {
        None => format!("{octets} octets"),
        Some(_) => "top of message follows".to_owned(),
    };
    let mut body = Body {
        stuffer: DotStuffer::new(),
        cut: lines.map(TopCut::new),
    };
    if serves_surrogate(entry, utf8) {
        let mut raw = Vec::new();
        if let Err(e) = reader.read_to_end(&mut raw).await {
            tracing::warn!(uid = entry.uid.0, error = %e, "message unreadable");
            response::err(
                &mut conn.out,
                Some(RespCode::SysTemp),
                "message unavailable",
            );
            return Ok(Flow::Next);
        }
        let surrogate = buudien_message::downgrade(&raw);
        drop(raw);
        let octets = u64::try_from(surrogate.len()).unwrap_or(u64::MAX);
        response::ok(&mut conn.out, &status(octets));
        for chunk in surrogate.chunks(READ_CHUNK) {
            if body.push(chunk, conn).await? {
                break;
            }
        }
    } else {
        response::ok(&mut conn.out, &status(entry.size));
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(uid = entry.uid.0, error = %e, "message read failed midway");
                    return Ok(Flow::Close);
                }
            };
            if body.push(buf.get(..n).unwrap_or_default(), conn).await? {
                break;
            }
        }
    }
    body.stuffer.finish(&mut conn.out);
    Ok(Flow::Next)
}

/// A multi-line message body on its way out.
struct Body {
    stuffer: DotStuffer,
    cut: Option<TopCut>,
}

impl Body {
    /// Stuffs `chunk` (cut for TOP) into the output and writes it out when large.
    /// Returns true when TOP has all it needs.
    async fn push<IO>(&mut self, chunk: &[u8], conn: &mut Conn<'_, IO>) -> Result<bool, ConnError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let part = match &mut self.cut {
            Some(cut) => cut.take(chunk),
            None => chunk,
        };
        self.stuffer.push(part, &mut conn.out);
        conn.flush_if_large().await?;
        Ok(self.cut.as_ref().is_some_and(TopCut::done))
    }
}

/// Cuts a message stream for TOP (RFC 1939 §7): the header section through its empty
/// line, then `lines` body lines. Works on chunks of any size.
#[derive(Debug)]
pub(crate) struct TopCut {
    in_header: bool,
    lines_left: u32,
    /// Octets of the current header line seen so far (without its LF).
    line_len: usize,
    /// The first octet of the current header line.
    line_first: Option<u8>,
    done: bool,
}

impl TopCut {
    /// Keeps the header section and `lines` lines of the body.
    pub(crate) fn new(lines: u32) -> Self {
        TopCut {
            in_header: true,
            lines_left: lines,
            line_len: 0,
            line_first: None,
            done: false,
        }
    }

    /// True once everything wanted has passed.
    pub(crate) fn done(&self) -> bool {
        self.done
    }

    /// The part of `chunk` to send.
    pub(crate) fn take<'c>(&mut self, chunk: &'c [u8]) -> &'c [u8] {
        if self.done {
            return &[];
        }
        let mut pos = 0usize;
        loop {
            if !self.in_header && self.lines_left == 0 {
                self.done = true;
                return chunk.get(..pos).unwrap_or(chunk);
            }
            let rest = chunk.get(pos..).unwrap_or_default();
            if rest.is_empty() {
                return chunk;
            }
            let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
                if self.in_header {
                    self.note_header_bytes(rest);
                }
                return chunk;
            };
            pos = pos.saturating_add(lf).saturating_add(1);
            if self.in_header {
                self.note_header_bytes(rest.get(..lf).unwrap_or_default());
                let blank =
                    self.line_len == 0 || (self.line_len == 1 && self.line_first == Some(b'\r'));
                self.line_len = 0;
                self.line_first = None;
                if blank {
                    self.in_header = false;
                }
            } else {
                self.lines_left = self.lines_left.saturating_sub(1);
            }
        }
    }

    /// Counts octets of the current header line.
    fn note_header_bytes(&mut self, bytes: &[u8]) {
        if self.line_first.is_none() {
            self.line_first = bytes.first().copied();
        }
        self.line_len = self.line_len.saturating_add(bytes.len());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use buudien_store::{BlobId, Guard, Maildrop};
    use buudien_types::{Address, Uid, UidValidity};
    use std::time::SystemTime;

    fn txn() -> Txn {
        let entry = |uid: u32, size: u64, surrogate_size: Option<u64>| MaildropEntry {
            uid: Uid(uid),
            blob: BlobId([uid as u8; 32]),
            size,
            surrogate_size,
            received: SystemTime::UNIX_EPOCH,
        };
        Txn::new(
            Address::parse("ann@example.org").unwrap(),
            Maildrop {
                mailbox: 1,
                uidvalidity: UidValidity(0x1234),
                entries: vec![entry(3, 100, None), entry(7, 200, Some(250))],
                pin: Guard::none(),
            },
            None,
        )
    }

    fn text(f: impl FnOnce(&mut Vec<u8>) -> Flow) -> String {
        let mut out = Vec::new();
        assert_eq!(f(&mut out), Flow::Next);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn stat_and_list_follow_utf8_mode() {
        let t = txn();
        assert_eq!(text(|o| stat(&t, false, o)), "+OK 2 350\r\n");
        assert_eq!(text(|o| stat(&t, true, o)), "+OK 2 300\r\n");
        assert_eq!(
            text(|o| list(&t, false, None, o)),
            "+OK 2 messages (350 octets)\r\n1 100\r\n2 250\r\n.\r\n"
        );
        assert_eq!(text(|o| list(&t, true, Some(2), o)), "+OK 2 200\r\n");
        assert_eq!(
            text(|o| list(&t, true, Some(3), o)),
            "-ERR no such message\r\n"
        );
    }

    #[test]
    fn uidl_is_uidvalidity_and_uid() {
        let t = txn();
        assert_eq!(text(|o| uidl(&t, Some(2), o)), "+OK 2 0000123400000007\r\n");
        assert_eq!(
            text(|o| uidl(&t, None, o)),
            "+OK unique-id listing follows\r\n1 0000123400000003\r\n2 0000123400000007\r\n.\r\n"
        );
    }

    #[test]
    fn dele_and_rset() {
        let mut t = txn();
        assert_eq!(text(|o| dele(&mut t, 1, o)), "+OK message 1 deleted\r\n");
        assert_eq!(
            text(|o| dele(&mut t, 1, o)),
            "-ERR message 1 already deleted\r\n"
        );
        assert_eq!(text(|o| dele(&mut t, 9, o)), "-ERR no such message\r\n");
        assert_eq!(text(|o| stat(&t, true, o)), "+OK 1 200\r\n");
        assert_eq!(
            text(|o| list(&t, true, None, o)),
            "+OK 1 messages (200 octets)\r\n2 200\r\n.\r\n"
        );
        assert_eq!(
            text(|o| list(&t, true, Some(1), o)),
            "-ERR message 1 already deleted\r\n"
        );
        assert_eq!(
            text(|o| rset(&mut t, true, o)),
            "+OK maildrop has 2 messages (300 octets)\r\n"
        );
        assert_eq!(text(noop), "+OK\r\n");
    }

    fn cut_all(lines: u32, msg: &[u8], chunk: usize) -> Vec<u8> {
        let mut cut = TopCut::new(lines);
        let mut out = Vec::new();
        for c in msg.chunks(chunk) {
            out.extend_from_slice(cut.take(c));
        }
        out
    }

    #[test]
    fn top_cuts_at_any_chunking() {
        let msg = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n";
        for chunk in 1..msg.len() + 1 {
            assert_eq!(
                cut_all(0, msg, chunk),
                b"A: 1\r\nB: 2\r\n\r\n",
                "chunk {chunk}"
            );
            assert_eq!(cut_all(1, msg, chunk), b"A: 1\r\nB: 2\r\n\r\nl1\r\n");
            assert_eq!(cut_all(2, msg, chunk), b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n");
            assert_eq!(cut_all(u32::MAX, msg, chunk), msg);
        }
    }

    #[test]
    fn top_of_odd_messages() {
        // No body at all: the whole header section.
        assert_eq!(cut_all(0, b"A: 1\r\n", 3), b"A: 1\r\n");
        // A header line of just CR is not the blank line unless CR is all it holds.
        assert_eq!(cut_all(0, b"A: 1\r\n\r\nbody", 4), b"A: 1\r\n\r\n");
        // Bare LF line endings.
        assert_eq!(cut_all(1, b"A: 1\n\nx\ny\n", 2), b"A: 1\n\nx\n");
        // An empty message.
        assert_eq!(cut_all(5, b"", 1), b"");
        // A last body line without CRLF.
        assert_eq!(cut_all(5, b"A: 1\r\n\r\nx", 1), b"A: 1\r\n\r\nx");
    }
}
