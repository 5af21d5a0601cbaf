//! DATA (RFC 5321 §4.1.1.4) and BDAT (RFC 3030 §2): receiving the message, then
//! handing it to `deliver`.

use crate::conn::{Conn, ConnError};
use crate::deliver;
use crate::session::{Bdat, Flow, Session};
use buudien_smtp_proto::reply::write;
use buudien_smtp_proto::{
    BdatReceiver, ChunkCheck, DataReceiver, Status, check_chunk, code, has_bare_newline,
};
use buudien_store::QueueStore;
use tokio::io::{AsyncRead, AsyncWrite};

/// RFC 5321 §4.1.1.4 — `DATA`: `354`, then the message up to `<CRLF>.<CRLF>`.
///
/// Without an accepted recipient: `554 5.5.1` (§3.3, RFC 2920 §3.1: the client may
/// have pipelined DATA after recipients that were all refused). After the data: too
/// big is `552 5.3.4`; a bare CR or LF anywhere is `550 5.5.2` (§2.3.8; the SMTP
/// smuggling defence, like Postfix's `smtpd_forbid_bare_newline`); otherwise the
/// message goes to `deliver`.
pub(crate) async fn data<S, IO>(
    session: &mut Session<'_, S>,
    conn: &mut Conn<'_, IO>,
) -> Result<Flow, ConnError>
where
    S: QueueStore,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let has_rcpts = session.txn.as_ref().is_some_and(|t| !t.rcpts.is_empty());
    if !has_rcpts {
        write(
            &mut conn.out,
            code::TRANSACTION_FAILED,
            Some(Status::INVALID_COMMAND),
            "no valid recipients",
        );
        return Ok(Flow::Bad);
    }
    write(
        &mut conn.out,
        code::START_DATA,
        None,
        "End data with <CR><LF>.<CR><LF>",
    );
    let max = session.shared.config.max_message_size;
    let mut rx = DataReceiver::new(max);
    let mut message = Vec::new();
    // A lost connection here drops the transaction: nothing was acknowledged.
    conn.read_data(&mut rx, &mut message).await?;
    let Some(txn) = session.txn.take() else {
        return Ok(Flow::Next);
    };
    if !rx.is_done() {
        // Twice the size limit and no end: the data may never end (RFC 5321 §3.8
        // lets the server close; the reply says why).
        tracing::info!(size = rx.size(), "endless message data, closing");
        write(
            &mut conn.out,
            code::EXCEEDED_STORAGE,
            Some(Status::TOO_BIG),
            "message far too big; closing connection",
        );
        return Ok(Flow::Close);
    }
    if rx.exceeded() {
        tracing::info!(size = rx.size(), "message too big");
        too_big(&mut conn.out);
        return Ok(Flow::Next);
    }
    if rx.bare_newline() {
        tracing::info!("message with a bare CR or LF refused");
        bare_newline(&mut conn.out);
        return Ok(Flow::Next);
    }
    Ok(deliver::accept(session, &mut conn.out, txn, message).await)
}

/// RFC 3030 §2 — `BDAT size [LAST]`: exactly `size` octets follow the line.
///
/// The chunk is always read, kept or discarded (§4.2), before the reply:
/// - size beyond any message ([`ChunkCheck::Absurd`]): `552 5.3.4` and the
///   connection closes without reading it (it could not be told from commands);
/// - no transaction: `503 5.5.1`; no accepted recipient: `554 5.5.1`;
/// - the message would pass `max_message_size`: `552 5.3.4`, and the rest of the
///   sequence is discarded with `503 5.5.1` until LAST or RSET;
/// - otherwise `250 2.0.0`, and after LAST the message goes to `deliver`, unless it
///   holds a bare CR or LF: `550 5.5.2` as for DATA (§3: without BINARYMIME the
///   chunks carry CRLF text; a stored bare LF could end the DATA of a next hop that
///   accepts `<LF>.<LF>`, the SMTP smuggling class).
pub(crate) async fn bdat<S, IO>(
    session: &mut Session<'_, S>,
    conn: &mut Conn<'_, IO>,
    size: u64,
    last: bool,
) -> Result<Flow, ConnError>
where
    S: QueueStore,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let max = session.shared.config.max_message_size;
    let received = session
        .txn
        .as_ref()
        .and_then(|t| t.bdat.as_ref())
        .map_or(0, |b| u64::try_from(b.data.len()).unwrap_or(u64::MAX));
    let check = check_chunk(size, received, max);
    if check == ChunkCheck::Absurd {
        tracing::info!(size, "absurd BDAT chunk size, closing");
        session.txn = None;
        write(
            &mut conn.out,
            code::EXCEEDED_STORAGE,
            Some(Status::TOO_BIG),
            "BDAT chunk too big; closing connection",
        );
        return Ok(Flow::Close);
    }
    // What is wrong with this chunk, if anything: (code, status, text, counts as an
    // error).
    let refusal = match session.txn.as_ref() {
        None => Some((
            code::BAD_SEQUENCE,
            Status::INVALID_COMMAND,
            "send MAIL first",
            true,
        )),
        Some(t) if t.rcpts.is_empty() => Some((
            code::TRANSACTION_FAILED,
            Status::INVALID_COMMAND,
            "no valid recipients",
            true,
        )),
        Some(t) if t.bdat.as_ref().is_some_and(|b| b.failed) => Some((
            code::BAD_SEQUENCE,
            Status::INVALID_COMMAND,
            "BDAT sequence failed earlier; chunk discarded, send RSET",
            false,
        )),
        Some(_) if check == ChunkCheck::TooBig => Some((
            code::EXCEEDED_STORAGE,
            Status::TOO_BIG,
            "message size exceeds fixed maximum message size",
            false,
        )),
        Some(_) => None,
    };
    let keep = refusal.is_none();
    let mut buffer = if keep {
        session
            .txn
            .as_mut()
            .and_then(|t| t.bdat.as_mut())
            .map(|b| std::mem::take(&mut b.data))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut rx = BdatReceiver::new(size, keep);
    conn.read_chunk(&mut rx, &mut buffer).await?;
    if let Some((reply, status, text, bad)) = refusal {
        if let Some(txn) = session.txn.as_mut() {
            txn.bdat.get_or_insert_with(Bdat::default).failed = true;
        }
        if last && session.txn.as_ref().is_some_and(|t| t.bdat.is_some()) {
            // The sequence is over; the transaction with it.
            session.txn = None;
        }
        write(&mut conn.out, reply, Some(status), text);
        return Ok(if bad { Flow::Bad } else { Flow::Next });
    }
    if !last {
        if let Some(txn) = session.txn.as_mut() {
            txn.bdat.get_or_insert_with(Bdat::default).data = buffer;
        }
        write(
            &mut conn.out,
            code::OK,
            Some(Status::OK),
            &format!("{size} octets received"),
        );
        return Ok(Flow::Next);
    }
    let Some(txn) = session.txn.take() else {
        return Ok(Flow::Next);
    };
    if has_bare_newline(&buffer) {
        // Checked on the whole message, so a CRLF split between chunks is no bare CR.
        tracing::info!("BDAT message with a bare CR or LF refused");
        bare_newline(&mut conn.out);
        return Ok(Flow::Next);
    }
    Ok(deliver::accept(session, &mut conn.out, txn, buffer).await)
}

/// `550 5.5.2`: a bare CR or LF in the message (RFC 5321 §2.3.8).
fn bare_newline(out: &mut Vec<u8>) {
    write(
        out,
        code::MAILBOX_UNAVAILABLE,
        Some(Status::SYNTAX),
        "message refused: bare <CR> or <LF> in the data (RFC 5321 section 2.3.8)",
    );
}

/// `552 5.3.4` (RFC 1870 §6.2, RFC 3463 X.3.4).
fn too_big(out: &mut Vec<u8>) {
    write(
        out,
        code::EXCEEDED_STORAGE,
        Some(Status::TOO_BIG),
        "message size exceeds fixed maximum message size",
    );
}
