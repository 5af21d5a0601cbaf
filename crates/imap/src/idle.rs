//! IDLE (RFC 9051 §6.3.13, RFC 2177): the session waits for `DONE` and meanwhile
//! reports changes to the selected mailbox as they happen. It wakes on the store's
//! counter of that mailbox ([`MailboxStore::watch_mailbox`], which also sees commits
//! by other processes such as `buudien deliver`), then reads only its delta.

use crate::drive::flush;
use crate::reply::*;
use crate::session::{Outcome, Session};
use buudien_imap_proto::{CommandFramer, LineFrame, Tag};
use buudien_store::MailboxStore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

/// Capacity the output and input buffers keep while idling.
const IDLE_BUFFER: usize = 1024;

/// Longest line accepted while idling (`DONE` and a little slack).
const MAX_IDLE_LINE: usize = 64;

/// Runs one IDLE command until `DONE`, a bad line, the idle timer, a server stop or
/// the end of the connection.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn idle<S: MailboxStore, IO: AsyncRead + AsyncWrite + Unpin>(
    s: &mut Session<'_, S>,
    tag: Tag,
    io: &mut IO,
    framer: &mut CommandFramer,
    inbuf: &mut Vec<u8>,
    out: &mut Vec<u8>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), Outcome> {
    let idle = s.shared.config.idle_timeout;
    // Without a selected mailbox (IDLE is valid in the authenticated state) there is
    // nothing to report: a counter nobody bumps.
    let (_unused, mut changes) = tokio::sync::watch::channel(0u64);
    if let Some(mailbox) = s.selected.as_ref().map(|m| m.id) {
        changes = s.shared.store.watch_mailbox(mailbox);
    }
    changes.borrow_and_update();
    // Changes that happened before IDLE began are reported at once.
    Box::pin(s.sync(out)).await;
    out.extend_from_slice(b"+ idling\r\n");
    flush(io, out, idle).await?;
    // An idling session may wait for hours: give back what big responses grew.
    out.shrink_to(IDLE_BUFFER);
    inbuf.shrink_to(IDLE_BUFFER);
    let deadline = tokio::time::Instant::now() + idle;
    loop {
        match framer.next_line(inbuf, MAX_IDLE_LINE) {
            LineFrame::Line(l) => {
                if l.eq_ignore_ascii_case(b"DONE") {
                    ok(out, &tag, "IDLE terminated");
                } else {
                    bad(out, &tag, "expected DONE");
                }
                return Ok(());
            }
            LineFrame::TooLong => {
                bad(out, &tag, "expected DONE");
                return Ok(());
            }
            LineFrame::Endless => {
                line(out, "* BYE [TOOBIG] command too long");
                return Err(Outcome::Logout);
            }
            LineFrame::Incomplete => {}
        }
        flush(io, out, idle).await?;
        if *stop.borrow() {
            return Err(Outcome::Shutdown);
        }
        // Read into `inbuf`'s own spare room (the session keeps no read buffer).
        inbuf.reserve(MAX_IDLE_LINE * 2);
        tokio::select! {
            r = io.read_buf(inbuf) => match r {
                Ok(0) | Err(_) => return Err(Outcome::Closed),
                Ok(_) => {}
            },
            r = changes.changed() => {
                if r.is_err() {
                    // The store went away: nothing more will be reported.
                    return Err(Outcome::Closed);
                }
                if s.selected.is_some() {
                    let _turn = s.shared.idle_checks.acquire().await;
                    Box::pin(s.sync(out)).await;
                }
            }
            () = tokio::time::sleep_until(deadline) => return Err(Outcome::Timeout),
            () = crate::drive::stopped(stop) => return Err(Outcome::Shutdown),
        }
    }
}
