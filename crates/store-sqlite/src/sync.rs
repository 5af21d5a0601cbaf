//! What IMAP sessions need to stay in step with a mailbox without rescanning it: the
//! stored message structure, the changes after a MODSEQ (RFC 7162 §3.2.5.2), the
//! `\Recent` mark (RFC 3501 §2.3.2) and the change counter IDLE waits on.
//!
//! The counters are driven by one poller thread per store, alive only while someone
//! watches: it asks SQLite's `PRAGMA data_version` every [`POLL`], which changes
//! whenever another connection (in this process or another, e.g. `buudien deliver`)
//! committed. Only then does it read `(UIDNEXT, HIGHESTMODSEQ)` of the watched
//! mailboxes (every new message, flag change and expunge moves one of them) and bump
//! the counters of those that moved, so a delivery wakes the IDLE sessions of its own
//! mailbox, not every idler of the process. A counter's first look always wakes its
//! watchers (a spurious wake-up costs one delta read; a missed one loses a change).

use crate::cached::{Cached, Tx};
use crate::folders::{ENTRY_QUERY, entry_from, read_entry};
use crate::mail::u64_of;
use crate::{Inner, db_err, lock};
use buudien_store::{Delta, MailboxId, MessageEntry, Result, StoreError, StoredMeta};
use buudien_types::Uid;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the poller looks for commits by other connections.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// The watched mailboxes and whether their poller runs.
pub(crate) struct Watch {
    mailboxes: Arc<Mutex<HashMap<MailboxId, Watched>>>,
    running: Arc<Mutex<bool>>,
}

/// One watched mailbox: its counter and what the poller saw last.
struct Watched {
    sender: tokio::sync::watch::Sender<u64>,
    /// `(UIDNEXT, HIGHESTMODSEQ)` at the last look (`Some(None)`: the mailbox is
    /// gone); `None`: not looked at yet.
    seen: Option<Option<(i64, i64)>>,
}

impl Watch {
    /// No watchers, no poller.
    pub(crate) fn new() -> Watch {
        Watch {
            mailboxes: Arc::new(Mutex::new(HashMap::new())),
            running: Arc::new(Mutex::new(false)),
        }
    }
}

/// A receiver of `mailbox`'s counter, starting the poller if it is not running.
pub(crate) fn subscribe(inner: &Inner, mailbox: MailboxId) -> tokio::sync::watch::Receiver<u64> {
    let w = &inner.watch;
    let mut running = lock(&w.running);
    let rx = lock(&w.mailboxes)
        .entry(mailbox)
        .or_insert_with(|| Watched {
            sender: tokio::sync::watch::Sender::new(0),
            seen: None,
        })
        .sender
        .subscribe();
    if !*running {
        match inner.connect() {
            Ok(conn) => {
                let mailboxes = Arc::clone(&w.mailboxes);
                let flag = Arc::clone(&w.running);
                let spawned = std::thread::Builder::new()
                    .name("store-watch".into())
                    .spawn(move || poll(conn, &mailboxes, &flag));
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
    c.row_c("PRAGMA data_version", [], |r| r.get(0)).ok()
}

/// The poller: when `data_version` moved (or a watcher is new), looks at the watched
/// mailboxes and bumps the counters of those that changed; ends when nobody watches.
fn poll(conn: Connection, mailboxes: &Mutex<HashMap<MailboxId, Watched>>, running: &Mutex<bool>) {
    let mut last = None;
    loop {
        std::thread::sleep(POLL);
        let ids: Vec<(MailboxId, bool)> = {
            let mut r = lock(running);
            let mut m = lock(mailboxes);
            m.retain(|_, w| w.sender.receiver_count() > 0);
            if m.is_empty() {
                *r = false;
                return;
            }
            m.iter().map(|(id, w)| (*id, w.seen.is_none())).collect()
        };
        let now = data_version(&conn);
        let moved = now != last || now.is_none();
        if !moved && !ids.iter().any(|(_, new)| *new) {
            continue;
        }
        last = now;
        // Read outside the lock (subscribers never wait on the queries).
        let states: Vec<(MailboxId, Option<(i64, i64)>)> = ids
            .iter()
            .filter(|(_, new)| moved || *new)
            .map(|(id, _)| (*id, mailbox_state(&conn, *id)))
            .collect();
        let mut m = lock(mailboxes);
        for (id, state) in states {
            if let Some(w) = m.get_mut(&id)
                && w.seen != Some(state)
            {
                w.seen = Some(state);
                w.sender.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }
}

/// `(UIDNEXT, HIGHESTMODSEQ)` of a mailbox; `None` when it is gone (or unreadable).
fn mailbox_state(conn: &Connection, mailbox: MailboxId) -> Option<(i64, i64)> {
    conn.prepare_cached("SELECT uidnext, highestmodseq FROM mailboxes WHERE id = ?1")
        .ok()?
        .query_row([mailbox], |r| Ok((r.get(0)?, r.get(1)?)))
        .ok()
}

/// `emails.meta`, `emails.surrogate_meta`.
type MetaRow = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The stored structure of these messages.
pub fn metas(conn: &mut Connection, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<StoredMeta>> {
    let tx = Tx::deferred(conn).map_err(db_err)?;
    let out = metas_in(&tx, mailbox, uids)?;
    tx.commit().map_err(db_err)?;
    Ok(out)
}

/// These messages, in UID order.
pub fn entries(
    conn: &mut Connection,
    mailbox: MailboxId,
    uids: &[Uid],
) -> Result<Vec<MessageEntry>> {
    let tx = Tx::deferred(conn).map_err(db_err)?;
    let out = entries_in(&tx, mailbox, uids)?;
    tx.commit().map_err(db_err)?;
    Ok(out)
}

/// [`entries`] and, with `metas`, [`metas`], in one read transaction: each read
/// transaction after another connection's commit starts with an empty page cache.
pub fn entries_and_metas(
    conn: &mut Connection,
    mailbox: MailboxId,
    uids: &[Uid],
    metas: bool,
) -> Result<(Vec<MessageEntry>, Vec<StoredMeta>)> {
    let tx = Tx::deferred(conn).map_err(db_err)?;
    let entries = entries_in(&tx, mailbox, uids)?;
    let metas = if metas {
        metas_in(&tx, mailbox, uids)?
    } else {
        Vec::new()
    };
    tx.commit().map_err(db_err)?;
    Ok((entries, metas))
}

fn metas_in(tx: &Connection, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<StoredMeta>> {
    let mut out = Vec::with_capacity(uids.len());
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
    Ok(out)
}

fn entries_in(tx: &Connection, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<MessageEntry>> {
    let mut rows = Vec::with_capacity(uids.len());
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
    rows.into_iter().map(entry_from).collect()
}

/// The entries of mailbox `?1` changed after MODSEQ `?2` (`ENTRY_QUERY`'s columns).
pub(crate) const ENTRIES_CHANGED: &str = "SELECT e.uid, m.blob_id, m.size, e.flags, e.keywords, e.modseq, \
     m.received_at, m.surrogate_size FROM mailbox_entries e INDEXED BY entries_modseq \
     JOIN emails m ON m.id = e.email_id WHERE e.mailbox_id = ?1 AND e.modseq > ?2 ORDER BY e.uid";

/// Everything that changed after `since`, read in one transaction.
pub fn delta(conn: &mut Connection, mailbox: MailboxId, since: u64) -> Result<Delta> {
    let since = i64::try_from(since).unwrap_or(i64::MAX);
    let tx = Tx::deferred(conn).map_err(db_err)?;
    let (highestmodseq, uidnext): (i64, i64) = tx
        .row_c(
            "SELECT highestmodseq, uidnext FROM mailboxes WHERE id = ?1",
            [mailbox],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db_err)?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox #{mailbox}")))?;
    // Every change (new message, flags, expunge) raises HIGHESTMODSEQ: when it has not
    // passed `since`, nothing changed (the common case: most commands change nothing).
    if highestmodseq <= since {
        tx.commit().map_err(db_err)?;
        return Ok(Delta {
            highestmodseq: u64_of(highestmodseq),
            uidnext: u32::try_from(uidnext).unwrap_or(u32::MAX),
            changed: Vec::new(),
            expunged: Vec::new(),
        });
    }
    let rows = {
        // Through the MODSEQ index: SQLite would rather walk the whole mailbox by UID
        // (its primary key) to save the sort, which costs the mailbox's size on every
        // command instead of the few messages that changed. A first read (`since` 0)
        // wants every message: by UID, in order, is then the cheaper way.
        let mut stmt = if since <= 0 {
            tx.prepare_cached(&format!(
                "{ENTRY_QUERY} WHERE e.mailbox_id = ?1 AND e.modseq > ?2 ORDER BY e.uid"
            ))
        } else {
            tx.prepare_cached(ENTRIES_CHANGED)
        }
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
        .row_c(
            "SELECT recent_uid FROM mailboxes WHERE id = ?1",
            [mailbox],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox #{mailbox}")))?;
    Ok(Uid(u32::try_from(mark).unwrap_or(0)))
}

/// Moves the `\Recent` mark to the newest message; returns where it was. A light
/// commit in a group (`group`, `gate::Sync::Light`); nothing is written when the
/// mark is already there.
pub fn claim_recent(inner: &Inner, conn: &mut Connection, mailbox: MailboxId) -> Result<Uid> {
    inner
        .group
        .run(inner, conn, crate::gate::Sync::Light, move |tx, _| {
            claim_recent_in(tx, mailbox)
        })
}

fn claim_recent_in(tx: &Connection, mailbox: MailboxId) -> Result<Uid> {
    let old: i64 = tx
        .row_c(
            "SELECT recent_uid FROM mailboxes WHERE id = ?1",
            [mailbox],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox #{mailbox}")))?;
    tx.exec_c(
        "UPDATE mailboxes SET recent_uid = uidnext - 1
         WHERE id = ?1 AND recent_uid <> uidnext - 1",
        [mailbox],
    )
    .map_err(db_err)?;
    Ok(Uid(u32::try_from(old).unwrap_or(0)))
}
