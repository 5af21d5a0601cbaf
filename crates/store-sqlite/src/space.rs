//! Free-space reserve: new messages are refused while the data directory's file
//! system has less than the reserve free (plus the message), so the space that is
//! left stays for what frees space — expunges, POP3 UPDATE, garbage collection — and
//! for SQLite's log, which every write (deletions too) needs. Like Postfix's
//! `queue_minfree`. A refusal is [`StoreError::Full`]: SMTP `452 4.3.1`, IMAP
//! `NO [UNAVAILABLE]`, `deliver` exit 75.
//!
//! A message small enough to be kept in the database (`blobs.data`) also fits in the
//! database's free pages — what deleted small messages left, which the file system
//! does not see as free — so those count for it. And the log (`buudien.sqlite-wal`)
//! holds such messages until the checkpoint copies them into the database file, which
//! may have to grow by as much: the log's size is kept free for that besides the
//! reserve, so a checkpoint never finds the disk full and the log can always be
//! reused (a log that cannot be checkpointed would never give its space back).

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

/// Octets of the log file: at most what a checkpoint may add to the database file.
fn log_size(inner: &Inner) -> u64 {
    let mut wal = inner.db_path.clone().into_os_string();
    wal.push("-wal");
    std::fs::metadata(wal).map_or(0, |m| m.len())
}

/// Octets of the log not yet copied into the database file, after a passive
/// checkpoint; `None` when the checkpoint cannot run here.
fn pending_log(conn: &Connection) -> Option<u64> {
    let (_busy, frames, copied): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .ok()?;
    let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).ok()?;
    let left = u64::try_from(frames.saturating_sub(copied)).unwrap_or(0);
    // A frame is a page and its 24-octet header.
    Some(left.saturating_mul(u64::try_from(page).unwrap_or(4096).saturating_add(24)))
}

/// Octets of the database's free pages (reused before the file grows).
fn database_free(conn: &Connection) -> u64 {
    let pragma = |name: &str| -> u64 {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
            .map_or(0, |v| u64::try_from(v).unwrap_or(0))
    };
    pragma("freelist_count").saturating_mul(pragma("page_size"))
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
    let inline = incoming <= inner.inline_max.load(Ordering::Relaxed);
    let Some(mut free) = free_space(inner) else {
        return Ok(());
    };
    let base = reserve.saturating_add(incoming);
    // Fast: room even if the whole log still had to go into the database file.
    if free >= base.saturating_add(log_size(inner)) {
        return Ok(());
    }
    if mail::collect_garbage(inner, conn).unwrap_or(0) > 0 {
        free = free_space(inner).unwrap_or(free);
    }
    if inline {
        free = free.saturating_add(database_free(conn));
    }
    // What the log holds that the database file does not yet (a checkpoint now
    // shrinks it to what readers still need).
    let needed = base.saturating_add(pending_log(conn).unwrap_or_else(|| log_size(inner)));
    if free < needed {
        return Err(StoreError::Full(format!(
            "{} KiB free in {}, {} KiB are kept for deletions and {} KiB for the log",
            free / 1024,
            inner.dir.display(),
            reserve / 1024,
            log_size(inner) / 1024
        )));
    }
    Ok(())
}
