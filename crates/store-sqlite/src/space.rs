//! Free-space reserve: new messages are refused while the data directory's file
//! system has less than the reserve free (plus the message), so the space that is
//! left stays for what frees space — expunges, POP3 UPDATE, garbage collection — and
//! for SQLite's log, which every write (deletions too) needs. Like Postfix's
//! `queue_minfree`. A refusal is [`StoreError::Full`]: SMTP `452 4.3.1`, IMAP
//! `NO [UNAVAILABLE]`, `deliver` exit 75.

use crate::{Inner, mail};
use buudien_store::{Result, StoreError};
use rusqlite::Connection;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Octets free for unprivileged writers in the data directory's file system, if it
/// says.
fn free_space(inner: &Inner) -> Option<u64> {
    let st = rustix::fs::statvfs(&inner.dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Refuses a new message of `incoming` octets while free space minus `incoming` is
/// under the reserve. When it is short, garbage (blobs of expunged messages) is
/// collected first, so space the user freed by deleting counts at once rather than
/// at the next periodic collection. A reserve of 0 turns the check off; a file
/// system that cannot say how much is free lets the write find out for itself.
pub(crate) fn ensure_room(inner: &Arc<Inner>, conn: &mut Connection, incoming: u64) -> Result<()> {
    let reserve = inner.min_free.load(Ordering::Relaxed);
    if reserve == 0 {
        return Ok(());
    }
    let needed = reserve.saturating_add(incoming);
    let Some(mut free) = free_space(inner) else {
        return Ok(());
    };
    if free < needed && mail::collect_garbage(inner, conn).unwrap_or(0) > 0 {
        free = free_space(inner).unwrap_or(free);
    }
    if free < needed {
        return Err(StoreError::Full(format!(
            "{} KiB free in {}, {} KiB are kept for deletions",
            free / 1024,
            inner.dir.display(),
            reserve / 1024
        )));
    }
    Ok(())
}
