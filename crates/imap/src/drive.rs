//! The session loop over one transport: read, frame, dispatch, write.
//!
//! Pipelining and memory: the loop reads only when the framer has no whole command
//! left ([`read_more`]), and [`read_more`] writes out every buffered response first.
//! Responses to the commands of one read pile up to [`FLUSH_AT`] at most (plus one
//! command's response) before they are written. So a client that pipelines 200,000
//! `a NOOP` without reading a response gets its responses until TCP pushes back; the
//! session then waits in the write (bounded by the idle timeout), reads nothing more,
//! and holds about `FLUSH_AT + READ_CHUNK` octets, never a queue of responses.

use crate::reply::*;
use crate::session::{Flow, Outcome, Session};
use buudien_imap_proto::{CommandFramer, Event, LineFrame, TextMode};
use buudien_store::MailboxStore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes asked from the transport per read.
const READ_CHUNK: usize = 4096;

/// Invalid commands in a row (unparsable, over-long, or not allowed in the state)
/// after which the session is closed with `* BYE`, as Dovecot does; any accepted
/// command starts the count again.
const MAX_BAD_IN_ROW: u32 = 10;

/// Output is written out once this much is buffered.
const FLUSH_AT: usize = 64 * 1024;

/// Resolves once `stop` turns true; never, if the sender is gone.
pub(crate) async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Writes out `out`, bounded by `idle`.
pub(crate) async fn flush<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    out: &mut Vec<u8>,
    idle: std::time::Duration,
) -> Result<(), Outcome> {
    if out.is_empty() {
        return Ok(());
    }
    let write = async {
        io.write_all(out).await?;
        io.flush().await
    };
    match tokio::time::timeout(idle, write).await {
        Ok(Ok(())) => {
            out.clear();
            Ok(())
        }
        Ok(Err(_)) => Err(Outcome::Closed),
        Err(_) => Err(Outcome::Timeout),
    }
}

/// Sends what is buffered, then exactly `size` octets of `reader` (a literal whose
/// header is already in `out`). Anything short of that leaves the client expecting
/// more octets, so the session must end.
pub(crate) async fn stream_blob<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    out: &mut Vec<u8>,
    idle: std::time::Duration,
    reader: buudien_store::BlobReader,
    size: u64,
) -> Result<(), Outcome> {
    flush(io, out, idle).await?;
    let mut limited = reader.take(size);
    let copy = async {
        // RFC 9051 §4.3: a literal carries no NUL; as Dovecot does, a stored NUL
        // goes out as 0x80 (the size stays exact). BINARY uses literal8 instead.
        let mut buf = vec![0u8; 64 * 1024];
        let mut copied = 0u64;
        loop {
            let n = limited.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            let chunk = buf.get_mut(..n).unwrap_or_default();
            replace_nul(chunk);
            io.write_all(chunk).await?;
            copied += n as u64;
        }
        Ok::<u64, std::io::Error>(copied)
    };
    let copied = match tokio::time::timeout(idle, copy).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            tracing::info!(error = %e, "FETCH stream failed");
            return Err(Outcome::Closed);
        }
        Err(_) => return Err(Outcome::Timeout),
    };
    if copied != size {
        tracing::warn!(copied, size, "blob shorter than its recorded size");
        return Err(Outcome::Closed);
    }
    Ok(())
}

/// Replaces NUL octets with 0x80 (RFC 9051 §4.3: literals carry no NUL).
pub(crate) fn replace_nul(bytes: &mut [u8]) {
    for b in bytes.iter_mut().filter(|b| **b == 0) {
        *b = 0x80;
    }
}

/// Like [`stream_blob`] for the octets `start..start + size` of the blob: the first
/// `start` octets are read and dropped, never held.
pub(crate) async fn stream_range<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    out: &mut Vec<u8>,
    idle: std::time::Duration,
    mut reader: buudien_store::BlobReader,
    start: u64,
    size: u64,
) -> Result<(), Outcome> {
    let mut skip = (&mut reader).take(start);
    match tokio::time::timeout(idle, tokio::io::copy(&mut skip, &mut tokio::io::sink())).await {
        Ok(Ok(n)) if n == start => {}
        Ok(Ok(_)) | Ok(Err(_)) => {
            tracing::warn!(start, "blob shorter than a section's start");
            return Err(Outcome::Closed);
        }
        Err(_) => return Err(Outcome::Timeout),
    }
    stream_blob(io, out, idle, reader, size).await
}

/// Reads more input into `inbuf`, after flushing `out`.
pub(crate) async fn read_more<IO: AsyncRead + AsyncWrite + Unpin>(
    io: &mut IO,
    inbuf: &mut Vec<u8>,
    out: &mut Vec<u8>,
    idle: std::time::Duration,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), Outcome> {
    flush(io, out, idle).await?;
    if *stop.borrow() {
        return Err(Outcome::Shutdown);
    }
    // Straight into the spare capacity of `inbuf`: no second buffer per session.
    inbuf.reserve(READ_CHUNK);
    let read = tokio::time::timeout(idle, io.read_buf(inbuf));
    let n = tokio::select! {
        r = read => match r {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => return Err(Outcome::Closed),
            Err(_) => return Err(Outcome::Timeout),
        },
        () = stopped(stop) => return Err(Outcome::Shutdown),
    };
    if n == 0 {
        return Err(Outcome::Closed);
    }
    Ok(())
}

/// Runs the session over one transport until it ends. `greet` sends the greeting
/// (not after STARTTLS).
pub(crate) async fn drive<S: MailboxStore, IO: AsyncRead + AsyncWrite + Unpin>(
    s: &mut Session<'_, S>,
    io: &mut IO,
    greet: bool,
) -> Outcome {
    let idle = s.shared.config.idle_timeout;
    let mut stop = s.shared.stopping.subscribe();
    let mut limits = buudien_imap_proto::Limits::default();
    if s.shared.config.literal_plus {
        // RFC 7888 §3: LITERAL+ takes non-synchronizing literals of any size; they
        // still count against the command's buffered-literal cap, and an APPEND one
        // over APPENDLIMIT is read and dropped, then refused.
        limits.max_nonsync_literal = u64::MAX;
    }
    let mut framer = CommandFramer::new(limits, TextMode::Ascii);
    let mut inbuf = Vec::new();
    let mut out = Vec::new();
    let mut bad_in_row = 0u32;
    if greet {
        line(
            &mut out,
            &format!(
                "* OK [CAPABILITY {}] {} buudien IMAP4rev2 ready",
                s.capabilities(),
                s.shared.config.hostname
            ),
        );
    }
    loop {
        let event = framer.next_event(&mut inbuf);
        let command = matches!(event, Event::Command(_));
        let flow = match event {
            Event::Incomplete => {
                let wait = if s.account.is_none() {
                    s.shared
                        .config
                        .load
                        .preauth_wait(s.shared.config.preauth_timeout.min(idle))
                } else {
                    idle
                };
                match read_more(io, &mut inbuf, &mut out, wait, &mut stop).await {
                    Ok(()) => Flow::Continue,
                    Err(o) => Flow::End(o),
                }
            }
            Event::Literal(info) => s.literal(&mut framer, info, &mut out),
            Event::LiteralChunk(bytes) => {
                s.spool.chunk(&bytes);
                Flow::Continue
            }
            Event::LiteralEnd => Flow::Continue,
            Event::Endless => {
                // The BAD for the over-long line went out when it passed the limit
                // and it then went on for MAX_OVERLONG_SKIP more octets, or a refused
                // non-synchronizing literal announced more than that (RFC 7888 §4:
                // BYE rather than read it all). RFC 9051 §7.1.5: BYE, then close.
                s.spool.clear();
                line(&mut out, "* BYE [TOOBIG] command too long");
                Flow::End(Outcome::Logout)
            }
            Event::Error(e) => {
                s.spool.clear();
                e.write_response(&mut out);
                Flow::Refused
            }
            // Boxed, as is every other per-command future below: a session's task
            // then holds only what waiting for input needs, not the largest
            // command's state (idle sessions are many; see `crate::idle`).
            Event::Command(req) => Box::pin(s.dispatch(req, &mut out, io)).await,
        };
        // After ENABLE IMAP4rev2 / UTF8=ACCEPT, names are read as UTF-8.
        framer.set_text_mode(s.text_mode());
        let flow = match flow {
            Flow::Refused => {
                bad_in_row += 1;
                if bad_in_row >= MAX_BAD_IN_ROW {
                    // As Dovecot does: a client sending garbage is cut off.
                    line(&mut out, "* BYE too many invalid commands");
                    Flow::End(Outcome::Logout)
                } else {
                    Flow::Continue
                }
            }
            other => {
                // Literal events are parts of a command; only a whole one counts.
                if command {
                    bad_in_row = 0;
                }
                other
            }
        };
        match flow {
            Flow::Continue | Flow::Refused => {
                if out.len() >= FLUSH_AT
                    && let Err(o) = flush(io, &mut out, idle).await
                {
                    return o;
                }
            }
            Flow::Idle(tag) => {
                let r = crate::idle::idle(s, tag, io, &mut framer, &mut inbuf, &mut out, &mut stop)
                    .await;
                if let Err(o) = r {
                    return end(io, &mut out, idle, o).await;
                }
            }
            // RFC 9051 §6.2.2: each challenge is answered by one line, until the
            // exchange ends with a tagged response.
            Flow::Sasl(mut exchange) => loop {
                match framer.next_line(&mut inbuf, buudien_imap_proto::MAX_SASL_LINE) {
                    LineFrame::Line(l) => match Box::pin(s.sasl_line(exchange, &l, &mut out)).await
                    {
                        Some(next) => exchange = next,
                        None => break,
                    },
                    LineFrame::TooLong => {
                        bad(&mut out, exchange.tag(), "line too long");
                        break;
                    }
                    LineFrame::Endless => {
                        line(&mut out, "* BYE [TOOBIG] command too long");
                        return end(io, &mut out, idle, Outcome::Logout).await;
                    }
                    LineFrame::Incomplete => {
                        if let Err(o) = read_more(io, &mut inbuf, &mut out, idle, &mut stop).await {
                            return o;
                        }
                    }
                }
            },
            Flow::End(o) => return end(io, &mut out, idle, o).await,
        }
    }
}

/// The last words of a session: BYE for a timeout or a stop, then a bounded flush.
async fn end<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    out: &mut Vec<u8>,
    idle: std::time::Duration,
    o: Outcome,
) -> Outcome {
    match o {
        Outcome::Timeout => line(out, "* BYE autologout, idle too long"),
        Outcome::Shutdown => line(out, "* BYE server shutting down"),
        _ => {}
    }
    if o != Outcome::Closed {
        let _ = flush(io, out, idle.min(crate::FINAL_WRITE_TIMEOUT)).await;
    }
    o
}
