//! What IMAP sessions need to stay in step with a mailbox without rescanning it: the
//! stored message structure, the changes after a MODSEQ (RFC 7162 §3.2.5.2), the
//! `\Recent` mark (RFC 3501 §2.3.2) and the change counter IDLE waits on.
//!
//! The counter is driven by one poller thread per store, alive only while someone
//! watches: it asks SQLite's `PRAGMA data_version` every [`POLL`], which changes
//! whenever another connection (in this process or another, e.g. `buudien deliver`)
//! committed, so one cheap query serves every IDLE session of the process.

use crate::admin::write_tx;
use crate::folders::{ENTRY_QUERY, entry_from, read_entry};
use crate::mail::u64_of;
use crate::{Inner, db_err, lock};
use buudien_store::{Delta, MailboxId, MessageEntry, Result, StoreError, StoredMeta};
use buudien_types::Uid;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the poller looks for commits by other connections.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// The change counter and whether its poller runs.
pub(crate) struct Watch {
    sender: tokio::sync::watch::Sender<u64>,
    running: Arc<Mutex<bool>>,
}

impl Watch {
    /// A counter at 0 with no poller.
    pub(crate) fn new() -> Watch {
        Watch {
            sender: tokio::sync::watch::Sender::new(0),
            running: Arc::new(Mutex::new(false)),
        }
    }
}

/// A receiver of the counter, starting the poller if it is not running.
pub(crate) fn subscribe(inner: &Inner) -> tokio::sync::watch::Receiver<u64> {
    let w = &inner.watch;
    let mut running = lock(&w.running);
    let rx = w.sender.subscribe();
    if !*running {
        match inner.connect() {
            Ok(conn) => {
                let sender = w.sender.clone();
                let flag = Arc::clone(&w.running);
                // Read before the caller goes on, so no commit after this call is missed.
                let first = data_version(&conn);
                let spawned = std::thread::Builder::new()
                    .name("store-watch".into())
                    .spawn(move || poll(conn, first, &sender, &flag));
                match spawned {
                    Ok(_) => *running = true,
                    Err(e) => tracing::warn!(error = %e, "cannot start the change watcher"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot open the change watcher's connection"),
        }
    }
    rx
}

/// SQLite's count of commits by other connections, as this connection sees it.
fn data_version(c: &Connection) -> Option<i64> {
    c.query_row("PRAGMA data_version", [], |r| r.get(0)).ok()
}

/// The poller: bumps the counter when `data_version` moves from `last`; ends when
/// nobody watches.
fn poll(
    conn: Connection,
    mut last: Option<i64>,
    sender: &tokio::sync::watch::Sender<u64>,
    running: &Mutex<bool>,
) {
    loop {
        std::thread::sleep(POLL);
        {
            let mut r = lock(running);
            if sender.receiver_count() == 0 {
                *r = false;
                return;
            }
        }
        let now = data_version(&conn);
        if now != last {
            last = now;
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// `emails.meta`, `emails.surrogate_meta`.
type MetaRow = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The stored structure of these messages.
pub fn metas(conn: &mut Connection, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<StoredMeta>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Deferred)
        .map_err(db_err)?;
    let mut out = Vec::with_capacity(uids.len());
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT m.meta, m.surrogate_meta FROM mailbox_entries e
                 JOIN emails m ON m.id = e.email_id WHERE e.mailbox_id = ?1 AND e.uid = ?2",
            )
            .map_err(db_err)?;
        for &uid in uids {
            let row: Option<MetaRow> = stmt
                .query_row(params![mailbox, uid.0], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(db_err)?;
            if let Some((meta, ascii_meta)) = row {
                out.push(StoredMeta {
                    uid,
                    meta,
                    ascii_meta,
                });
            }
        }
    }
    tx.commit().map_err(db_err)?;
    Ok(out)
}

/// These messages, in UID order.
pub fn entries(
    conn: &mut Connection,
    mailbox: MailboxId,
    uids: &[Uid],
) -> Result<Vec<MessageEntry>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Deferred)
        .map_err(db_err)?;
    let mut rows = Vec::with_capacity(uids.len());
    {
        let mut stmt = tx
            .prepare_cached(&format!(
                "{ENTRY_QUERY} WHERE e.mailbox_id = ?1 AND e.uid = ?2"
            ))
            .map_err(db_err)?;
        let mut sorted = uids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        for uid in sorted {
            if let Some(row) = stmt
                .query_row(params![mailbox, uid.0], read_entry)
                .optional()
                .map_err(db_err)?
            {
                rows.push(row);
            }
        }
    }
    tx.commit().map_err(db_err)?;
    rows.into_iter().map(entry_from).collect()
}

/// Everything that changed after `since`, read in one transaction.
pub fn delta(conn: &mut Connection, mailbox: MailboxId, since: u64) -> Result<Delta> {
    let since = i64::try_from(since).unwrap_or(i64::MAX);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Deferred)
        .map_err(db_err)?;
    let (highestmodseq, uidnext): (i64, i64) = tx
        .query_row(
            "SELECT highestmodseq, uidnext FROM mailboxes WHERE id = ?1",
            [mailbox],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db_err)?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox #{mailbox}")))?;
    let rows = {
        let mut stmt = tx
            .prepare_cached(&format!(
                "{ENTRY_QUERY} WHERE e.mailbox_id = ?1 AND e.modseq > ?2 ORDER BY e.uid"
            ))
            .map_err(db_err)?;
        stmt.query_map(params![mailbox, since], read_entry)
            .map_err(db_err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err)?
    };
    let expunged = {
        let mut stmt = tx
            .prepare_cached(
                "SELECT uid FROM changes WHERE mailbox_id = ?1 AND modseq > ?2 AND kind = 2
                 ORDER BY uid",
            )
            .map_err(db_err)?;
        stmt.query_map(params![mailbox, since], |r| r.get::<_, u32>(0))
            .map_err(db_err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err)?
    };
    tx.commit().map_err(db_err)?;
    Ok(Delta {
        highestmodseq: u64_of(highestmodseq),
        uidnext: u32::try_from(uidnext).unwrap_or(u32::MAX),
        changed: rows.into_iter().map(entry_from).collect::<Result<_>>()?,
        expunged: expunged.into_iter().map(Uid).collect(),
    })
}

/// Where the `\Recent` mark is.
pub fn recent_mark(conn: &mut Connection, mailbox: MailboxId) -> Result<Uid> {
    let mark: i64 = conn
        .query_row(
            "SELECT recent_uid FROM mailboxes WHERE id = ?1",
            [mailbox],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox #{mailbox}")))?;
    Ok(Uid(u32::try_from(mark).unwrap_or(0)))
}

/// Moves the `\Recent` mark to the newest message; returns where it was.
pub fn claim_recent(conn: &mut Connection, mailbox: MailboxId) -> Result<Uid> {
    let tx = write_tx(conn)?;
    let old: i64 = tx
        .query_row(
            "SELECT recent_uid FROM mailboxes WHERE id = ?1",
            [mailbox],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox #{mailbox}")))?;
    tx.execute(
        "UPDATE mailboxes SET recent_uid = uidnext - 1 WHERE id = ?1",
        [mailbox],
    )
    .map_err(db_err)?;
    tx.commit().map_err(db_err)?;
    Ok(Uid(u32::try_from(old).unwrap_or(0)))
}
