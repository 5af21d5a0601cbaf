//! Delivery, mailboxes, the POP3 maildrop snapshot, expunge, the change log and blob
//! garbage collection.

use crate::admin::write_tx;
use crate::cached::{Cached, Tx};
use crate::faults::Point;
use crate::{Inner, blobs, db_err, group, lock, quarantine, queue, space};
use buudien_store::{
    AccountId, BlobHasher, BlobId, Change, ChangeKind, Delivered, Envelope, Guard, Mailbox,
    MailboxId, Maildrop, MaildropEntry, NewRecipient, Result, SpecialUse, StoreError, Submitted,
};
use buudien_types::{Uid, UidValidity};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn blob_from(v: Vec<u8>) -> Result<BlobId> {
    <[u8; 32]>::try_from(v.as_slice())
        .map(BlobId)
        .map_err(|_| StoreError::Database("blob id is not 32 bytes".into()))
}

pub(crate) fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// An account's address, quota limits and usage.
type QuotaRow = (String, Option<i64>, Option<i64>, i64, i64);

/// Stores one message in the INBOX of every account, in one transaction.
pub fn deliver(
    inner: &Arc<Inner>,
    conn: &mut Connection,
    accounts: &[AccountId],
    message: &[u8],
    received: SystemTime,
) -> Result<Vec<Delivered>> {
    if accounts.is_empty() {
        return Err(StoreError::Refused(
            "a delivery needs at least one recipient".into(),
        ));
    }
    let parts = Parts {
        prefix: &[],
        message,
    };
    store(inner, conn, accounts, parts, received, None).map(|s| s.delivered)
}

/// The bytes of one submission: the local copies are `prefix` + `message`, the queued
/// copy is `message` alone.
#[derive(Clone, Copy)]
pub struct Parts<'a> {
    /// Lines only the local copies get (`Return-Path`).
    pub prefix: &'a [u8],
    /// The message.
    pub message: &'a [u8],
}

/// A new message's bytes, ready for the transaction: small ones in memory (stored in
/// `blobs.data`), others written and fsynced to `tmp/`.
pub(crate) struct NewBlob {
    id: BlobId,
    size: i64,
    body: Body,
}

/// Where a [`NewBlob`]'s bytes wait.
enum Body {
    /// In memory, for `blobs.data`.
    Inline(Vec<u8>),
    /// In a fsynced temporary file, for `blobs/`.
    File(blobs::TempBlob),
}

impl NewBlob {
    /// The bytes, when they are kept in memory for the database.
    fn inline_bytes(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Inline(bytes) => Some(bytes),
            Body::File(_) => None,
        }
    }

    /// Prepares a new message: checks the free-space reserve (collecting garbage
    /// first when it is short), then keeps it in memory when it is at most
    /// `inline_max` octets, else writes and fsyncs its temporary file. (The inline
    /// path passes the same fault points as a file would, so fault injection covers
    /// both.)
    pub(crate) fn write(
        inner: &Arc<Inner>,
        conn: &mut Connection,
        parts: &[&[u8]],
    ) -> Result<NewBlob> {
        let mut h = BlobHasher::new();
        let mut len = 0usize;
        for p in parts {
            h.update(p);
            len = len.saturating_add(p.len());
        }
        space::ensure_room(inner, conn, len as u64)?;
        let body = if (len as u64) <= inner.inline_max.load(Ordering::Relaxed) {
            inner.faults.check(Point::BlobWrite)?;
            let mut bytes = Vec::with_capacity(len);
            for p in parts {
                bytes.extend_from_slice(p);
            }
            inner.faults.check(Point::BlobFsync)?;
            Body::Inline(bytes)
        } else {
            Body::File(blobs::TempBlob::write_parts(
                &inner.dir,
                &inner.faults,
                parts,
            )?)
        };
        Ok(NewBlob {
            id: h.finish(),
            size: i64_of(len as u64),
            body,
        })
    }

    /// Adds `refs` references to the blob, storing its bytes unless a live copy is
    /// there. Runs inside a piece of a group commit (`group`); a file it puts in
    /// place is listed in `placed` first, and the group's leader runs
    /// [`blobs::sync_dirs`] on every piece's `placed` before it commits. A
    /// quarantined blob is healed: these are its exact bytes (the id is their
    /// hash), so they are stored again, the quarantine row goes, and every email
    /// that refers to it reads again. (A blob named by SHA-256, from before BLAKE3,
    /// is never met here: the same bytes now get a BLAKE3 id.)
    pub(crate) fn commit(
        self,
        inner: &Inner,
        tx: &Connection,
        refs: i64,
        placed: &mut Vec<BlobId>,
    ) -> Result<BlobId> {
        let live: Option<i64> = tx
            .row_c(
                "SELECT refcount FROM blobs WHERE id = ?1",
                [&self.id.0[..]],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        let damaged = live.is_some() && quarantine::recorded(tx, &self.id)?.is_some();
        let keep = matches!(live, Some(rc) if rc > 0) && !damaged;
        if keep {
            // A live blob's bytes are stored; ours are identical and are dropped.
            tx.exec_c(
                "UPDATE blobs SET refcount = refcount + ?2 WHERE id = ?1",
                params![&self.id.0[..], refs],
            )
            .map_err(db_err)?;
        } else {
            // New, or garbage whose file may already be gone: store the bytes.
            let inline = match self.body {
                Body::Inline(bytes) => {
                    inner.faults.check(Point::BlobRename)?;
                    Some(bytes)
                }
                Body::File(tmp) => {
                    placed.push(self.id);
                    tmp.place_unsynced(&inner.dir, &inner.faults, &self.id)?;
                    None
                }
            };
            tx.exec_c(
                "INSERT INTO blobs (id, size, refcount, data) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE
                     SET refcount = max(refcount, 0) + excluded.refcount, data = excluded.data",
                params![&self.id.0[..], self.size, refs, inline],
            )
            .map_err(db_err)?;
        }
        if damaged {
            tx.exec_c(
                "DELETE FROM quarantine WHERE blob_id = ?1",
                [&self.id.0[..]],
            )
            .map_err(db_err)?;
            tracing::warn!(
                blob = %self.id.to_hex(),
                "a quarantined blob was delivered again: its bytes are back"
            );
        }
        Ok(self.id)
    }
}

/// [`StoreError::OverQuota`] when one more message of `size` octets would not fit.
pub(crate) fn check_quota(tx: &Connection, account: AccountId, size: i64) -> Result<()> {
    let row: Option<QuotaRow> = tx
        .row_c(
            "SELECT address, quota_bytes, quota_messages, used_bytes, used_messages
             FROM accounts WHERE id = ?1",
            [account],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()
        .map_err(db_err)?;
    let Some((address, qb, qm, ub, um)) = row else {
        return Err(StoreError::NotFound(format!("account #{account}")));
    };
    let over_bytes = qb.is_some_and(|q| ub.saturating_add(size) > q);
    let over_count = qm.is_some_and(|q| um.saturating_add(1) > q);
    if over_bytes || over_count {
        return Err(StoreError::OverQuota(address));
    }
    Ok(())
}

/// What is stored beside a local copy: its parsed structure and, when it has raw
/// UTF-8 headers, the size and structure of its ASCII surrogate (RFC 6856 §2.1).
pub(crate) struct EmailMeta {
    /// `MessageMeta::to_bytes` of the copy.
    pub(crate) meta: Vec<u8>,
    /// Size of the surrogate.
    pub(crate) surrogate_size: Option<i64>,
    /// `MessageMeta::to_bytes` of the surrogate.
    pub(crate) surrogate_meta: Option<Vec<u8>>,
}

/// Parses a local copy (prefix + message) once, at delivery.
pub(crate) fn email_meta(parts: Parts<'_>) -> EmailMeta {
    if parts.prefix.is_empty() {
        email_meta_of(parts.message)
    } else {
        email_meta_of(&[parts.prefix, parts.message].concat())
    }
}

/// [`email_meta`] of the whole local copy.
fn email_meta_of(whole: &[u8]) -> EmailMeta {
    let meta = buudien_message::MessageMeta::parse(whole).to_bytes();
    if !buudien_message::needs_downgrade(whole) {
        return EmailMeta {
            meta,
            surrogate_size: None,
            surrogate_meta: None,
        };
    }
    let surrogate = buudien_message::downgrade(whole);
    EmailMeta {
        meta,
        surrogate_size: Some(i64_of(surrogate.len() as u64)),
        surrogate_meta: Some(buudien_message::MessageMeta::parse(&surrogate).to_bytes()),
    }
}

/// Stores local copies (quota-checked, UIDs and MODSEQs from the mailbox rows) and
/// queues the outbound part, in one transaction. The blobs are written and fsynced
/// before the write lock is taken and renamed into place under it; when the local
/// copies carry a prefix, the queued copy is a second blob.
pub fn store(
    inner: &Arc<Inner>,
    conn: &mut Connection,
    accounts: &[AccountId],
    parts: Parts<'_>,
    received: SystemTime,
    outbound: Option<(&Envelope, &[NewRecipient])>,
) -> Result<Submitted> {
    let accounts: BTreeSet<AccountId> = accounts.iter().copied().collect();
    let outbound = outbound.filter(|(_, rcpts)| !rcpts.is_empty());
    if accounts.is_empty() && outbound.is_none() {
        return Err(StoreError::Refused(
            "a message needs at least one local or remote recipient".into(),
        ));
    }
    let prefix = if accounts.is_empty() {
        &[][..]
    } else {
        parts.prefix
    };
    let parts = Parts {
        prefix,
        message: parts.message,
    };
    // One blob when local and queued copies are the same bytes, else two.
    let local = if accounts.is_empty() {
        None
    } else {
        Some(NewBlob::write(inner, conn, &[prefix, parts.message])?)
    };
    let remote = if outbound.is_some() && (local.is_none() || !prefix.is_empty()) {
        Some(NewBlob::write(inner, conn, &[parts.message])?)
    } else {
        None
    };
    let local_size = i64_of((prefix.len() + parts.message.len()) as u64);
    let remote_size = i64_of(parts.message.len() as u64);
    let email_meta = if accounts.is_empty() {
        None
    } else {
        // A copy kept in the database is already whole in memory: parsed there,
        // rather than joined again.
        Some(match local.as_ref().and_then(NewBlob::inline_bytes) {
            Some(whole) => email_meta_of(whole),
            None => email_meta(parts),
        })
    };

    // Everything the transaction needs is owned: the group commit's leader may run it
    // on another thread, together with other deliveries (`group`).
    let outbound = outbound.map(|(e, r)| (e.clone(), r.to_vec()));
    let answer: Arc<Mutex<Option<Submitted>>> = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&answer);
    let owner = Arc::clone(inner);
    let work: group::Work = Box::new(move |tx, placed| {
        let inner = &*owner;
        for &id in &accounts {
            check_quota(tx, id, local_size)?;
        }
        let n_local = i64_of(accounts.len() as u64);
        let shared_blob = remote.is_none() && outbound.is_some();
        let local_blob = match local {
            Some(b) => Some(b.commit(inner, tx, n_local + i64::from(shared_blob), placed)?),
            None => None,
        };
        let remote_blob = match remote {
            Some(b) => Some(b.commit(inner, tx, 1, placed)?),
            None => local_blob,
        };
        let received_secs = secs(received);
        let mut out = Vec::with_capacity(accounts.len());
        if let (Some(blob), Some(em)) = (local_blob, email_meta.as_ref()) {
            for &id in &accounts {
                out.push(add_to_inbox(tx, id, &blob, local_size, em, received_secs)?);
            }
        }
        let queued = match (&outbound, remote_blob) {
            (Some((envelope, rcpts)), Some(blob)) => Some(queue::insert(
                tx,
                &blob,
                remote_size,
                received,
                envelope,
                rcpts,
            )?),
            _ => None,
        };
        *lock(&slot) = Some(Submitted {
            delivered: out,
            queued,
        });
        Ok(())
    });
    inner
        .group
        .commit(inner, conn, crate::gate::Sync::Full, work)?;
    lock(&answer)
        .take()
        .ok_or_else(|| StoreError::Database("a committed delivery has no result".into()))
}

/// The email row of a local copy (with its stored structure); returns its id.
pub(crate) fn insert_email(
    tx: &Connection,
    account: AccountId,
    blob: &BlobId,
    size: i64,
    em: &EmailMeta,
    received_secs: i64,
) -> Result<i64> {
    tx.exec_c(
        "INSERT INTO emails (account_id, blob_id, size, surrogate_size, received_at, meta,
                             surrogate_meta)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            account,
            &blob.0[..],
            size,
            em.surrogate_size,
            received_secs,
            em.meta,
            em.surrogate_meta
        ],
    )
    .map_err(db_err)?;
    Ok(tx.last_insert_rowid())
}

/// Adds one email to an account's INBOX (inside the caller's transaction): the email
/// row, the UID and MODSEQ from the mailbox row (RFC 9051 §2.3.1.1, RFC 7162 §3.1),
/// the entry, and the account's usage.
fn add_to_inbox(
    tx: &Connection,
    account: AccountId,
    blob: &BlobId,
    size: i64,
    em: &EmailMeta,
    received_secs: i64,
) -> Result<Delivered> {
    let email = insert_email(tx, account, blob, size, em, received_secs)?;
    let (mailbox, uid, modseq): (i64, i64, i64) = tx
        .row_c(
            "UPDATE mailboxes SET uidnext = uidnext + 1,
                                  highestmodseq = highestmodseq + 1,
                                  messages = messages + 1
             WHERE account_id = ?1 AND name = 'INBOX'
             RETURNING id, uidnext - 1, highestmodseq",
            [account],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(db_err)?
        .ok_or_else(|| StoreError::Database(format!("account #{account} has no INBOX")))?;
    tx.exec_c(
        "INSERT INTO mailbox_entries (mailbox_id, uid, email_id, modseq)
         VALUES (?1, ?2, ?3, ?4)",
        params![mailbox, uid, email, modseq],
    )
    .map_err(db_err)?;
    tx.exec_c(
        "UPDATE accounts SET used_bytes = used_bytes + ?1, used_messages = used_messages + 1
         WHERE id = ?2",
        params![size, account],
    )
    .map_err(db_err)?;
    Ok(Delivered {
        account,
        mailbox,
        uid: Uid(u32::try_from(uid).map_err(|_| StoreError::Database("UID overflow".into()))?),
    })
}

/// The columns [`mailbox_row`] reads, in order.
pub(crate) const MAILBOX_COLUMNS: &str =
    "id, name, special_use, subscribed, uidvalidity, uidnext, highestmodseq, messages";

/// A mailbox from a row of [`MAILBOX_COLUMNS`].
pub(crate) fn mailbox_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Mailbox> {
    Ok(Mailbox {
        id: r.get(0)?,
        name: r.get(1)?,
        special_use: r
            .get::<_, Option<String>>(2)?
            .and_then(|s| SpecialUse::parse(&s)),
        subscribed: r.get(3)?,
        uidvalidity: UidValidity(r.get(4)?),
        uidnext: Uid(r.get(5)?),
        highestmodseq: u64_of(r.get(6)?),
        messages: u64_of(r.get(7)?),
    })
}

/// The account's mailboxes, INBOX first, then by name.
pub fn mailboxes(conn: &mut Connection, account: AccountId) -> Result<Vec<Mailbox>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = ?1
             ORDER BY name <> 'INBOX', name"
        ))
        .map_err(db_err)?;
    let rows = stmt
        .query_map([account], mailbox_row)
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)?;
    Ok(rows)
}

/// A consistent snapshot of the INBOX, its blobs pinned until the [`Maildrop`] drops.
pub fn open_maildrop(
    inner: &Arc<Inner>,
    conn: &mut Connection,
    account: AccountId,
) -> Result<Maildrop> {
    // Held until the blobs are pinned, so garbage collection cannot slip in between.
    let mut pins = lock(&inner.pins);
    let tx = Tx::deferred(conn).map_err(db_err)?;
    let (mailbox, uidvalidity): (i64, u32) = tx
        .row_c(
            "SELECT id, uidvalidity FROM mailboxes WHERE account_id = ?1 AND name = 'INBOX'",
            [account],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db_err)?
        .ok_or_else(|| StoreError::NotFound(format!("INBOX of account #{account}")))?;
    let mut entries = Vec::new();
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT e.uid, m.blob_id, m.size, m.surrogate_size, m.received_at
                 FROM mailbox_entries e JOIN emails m ON m.id = e.email_id
                 WHERE e.mailbox_id = ?1 ORDER BY e.uid",
            )
            .map_err(db_err)?;
        let mut rows = stmt.query([mailbox]).map_err(db_err)?;
        while let Some(r) = rows.next().map_err(db_err)? {
            let received: i64 = r.get(4).map_err(db_err)?;
            entries.push(MaildropEntry {
                uid: Uid(r.get(0).map_err(db_err)?),
                blob: blob_from(r.get(1).map_err(db_err)?)?,
                size: u64_of(r.get(2).map_err(db_err)?),
                surrogate_size: r.get::<_, Option<i64>>(3).map_err(db_err)?.map(u64_of),
                received: UNIX_EPOCH + Duration::from_secs(u64_of(received)),
            });
        }
    }
    tx.commit().map_err(db_err)?;
    let pinned: Vec<BlobId> = entries.iter().map(|e| e.blob).collect();
    for b in &pinned {
        *pins.entry(*b).or_insert(0) += 1;
    }
    drop(pins);
    let owner = inner.clone();
    let pin = Guard::new(move || {
        let mut pins = lock(&owner.pins);
        for b in &pinned {
            if let Some(n) = pins.get_mut(b) {
                *n -= 1;
                if *n == 0 {
                    pins.remove(b);
                }
            }
        }
    });
    Ok(Maildrop {
        mailbox,
        uidvalidity: UidValidity(uidvalidity),
        entries,
        pin,
    })
}

/// Expunges UIDs from a mailbox in one transaction with one new MODSEQ; UIDs already
/// gone are skipped. An email left in no mailbox is deleted and its quota freed.
/// A light commit in a group (`group`, `gate::Sync::Light`): garbage collection
/// makes it durable before it unlinks a blob it freed.
pub fn expunge(
    inner: &Inner,
    conn: &mut Connection,
    mailbox: MailboxId,
    uids: Vec<Uid>,
) -> Result<usize> {
    inner
        .group
        .run(inner, conn, crate::gate::Sync::Light, move |tx, _| {
            expunge_in(tx, mailbox, &uids)
        })
}

/// The body of [`expunge`], inside the caller's write transaction.
pub(crate) fn expunge_in(tx: &Connection, mailbox: MailboxId, uids: &[Uid]) -> Result<usize> {
    let mut present = Vec::new();
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT email_id FROM mailbox_entries WHERE mailbox_id = ?1 AND uid = ?2",
            )
            .map_err(db_err)?;
        let wanted: BTreeSet<u32> = uids.iter().map(|u| u.0).collect();
        for uid in wanted {
            if let Some(email) = stmt
                .query_row(params![mailbox, uid], |r| r.get::<_, i64>(0))
                .optional()
                .map_err(db_err)?
            {
                present.push((uid, email));
            }
        }
    }
    if present.is_empty() {
        return Ok(0);
    }
    let k = i64_of(present.len() as u64);
    let (modseq, account): (i64, i64) = tx
        .row_c(
            "UPDATE mailboxes SET highestmodseq = highestmodseq + 1, messages = messages - ?1
             WHERE id = ?2 RETURNING highestmodseq, account_id",
            params![k, mailbox],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db_err)?;
    for (uid, email) in &present {
        tx.exec_c(
            "DELETE FROM mailbox_entries WHERE mailbox_id = ?1 AND uid = ?2",
            params![mailbox, uid],
        )
        .map_err(db_err)?;
        tx.exec_c(
            "INSERT INTO changes (mailbox_id, modseq, uid, kind) VALUES (?1, ?2, ?3, 2)",
            params![mailbox, modseq, uid],
        )
        .map_err(db_err)?;
        let still_used: bool = tx
            .row_c(
                "SELECT EXISTS (SELECT 1 FROM mailbox_entries WHERE email_id = ?1)",
                [email],
                |r| r.get(0),
            )
            .map_err(db_err)?;
        if still_used {
            continue;
        }
        let (blob, size): (Vec<u8>, i64) = tx
            .row_c(
                "DELETE FROM emails WHERE id = ?1 RETURNING blob_id, size",
                [email],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(db_err)?;
        tx.exec_c(
            "UPDATE blobs SET refcount = refcount - 1 WHERE id = ?1",
            [&blob],
        )
        .map_err(db_err)?;
        tx.exec_c(
            "UPDATE accounts SET used_bytes = max(used_bytes - ?1, 0),
                                 used_messages = max(used_messages - 1, 0)
             WHERE id = ?2",
            params![size, account],
        )
        .map_err(db_err)?;
    }
    Ok(present.len())
}

/// Change-log rows after `since`, in MODSEQ order.
pub fn changes_since(conn: &mut Connection, mailbox: MailboxId, since: u64) -> Result<Vec<Change>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT modseq, uid, kind FROM changes WHERE mailbox_id = ?1 AND modseq > ?2
             ORDER BY modseq, uid",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map(params![mailbox, i64_of(since)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)?;
    Ok(rows
        .into_iter()
        .map(|(m, u, k)| Change {
            modseq: u64_of(m),
            uid: Uid(u),
            kind: if k == 2 {
                ChangeKind::Expunge
            } else {
                ChangeKind::Flags
            },
        })
        .collect())
}

/// Deletes blob files that have no row: placed by a writer that died (or whose
/// transaction failed, on a full disk say) between putting the file in place and
/// committing the rows. A writer places and commits under the write lock, so a file
/// without a row seen under that lock is nobody's. One leaf directory at a time, so
/// the lock is never held long. Returns how many files went.
pub fn remove_orphans(inner: &Arc<Inner>, conn: &mut Connection) -> Result<usize> {
    let mut n = 0;
    blobs::each_placed(&inner.dir, |ids| {
        n += remove_rowless(inner, conn, &ids)?;
        Ok(())
    })?;
    Ok(n)
}

/// Deletes the files of those of `ids` that have no row, under the write lock (so no
/// writer is between placing a file and committing its row). Returns how many went.
pub(crate) fn remove_rowless(
    inner: &Inner,
    conn: &mut Connection,
    ids: &[BlobId],
) -> Result<usize> {
    let mut n = 0;
    let tx = write_tx(conn)?;
    for id in ids {
        let known = tx
            .row_c("SELECT 1 FROM blobs WHERE id = ?1", [&id.0[..]], |_| Ok(()))
            .optional()
            .map_err(db_err)?
            .is_some();
        if !known {
            blobs::remove(&inner.dir, id)?;
            n += 1;
        }
    }
    tx.commit().map_err(db_err)?;
    Ok(n)
}

/// Deletes unreferenced, unpinned blobs, in two steps so that a blob freed by a
/// light commit (an expunge whose commit is not on disk yet, see `gate::Sync`) is
/// never unlinked before that commit is durable: first the garbage rows go in a
/// durable transaction, whose fsync of the log carries every earlier commit; then,
/// under a new write lock, the files of those that still have no row are unlinked
/// ([`remove_rowless`]: a writer may have stored the same bytes again in between).
/// A crash between the two leaves files without rows, which the first collection
/// of the next process removes. Pinned blobs are skipped throughout.
pub fn collect_garbage(inner: &Arc<Inner>, conn: &mut Connection) -> Result<usize> {
    // Rounds of at most GC_ROUND blobs, each under its own write lock, so other
    // writers get in between.
    let mut n = 0;
    loop {
        let (removed, looked_at) = collect_round(inner, conn)?;
        n += removed;
        if looked_at < GC_ROUND {
            return Ok(n);
        }
    }
}

/// Blobs one round of garbage collection looks at, at most.
const GC_ROUND: usize = 2000;

/// One round of [`collect_garbage`]: returns (files removed, garbage rows looked at).
fn collect_round(inner: &Arc<Inner>, conn: &mut Connection) -> Result<(usize, usize)> {
    let pins = lock(&inner.pins);
    let tx = write_tx(conn)?;
    let garbage = {
        let mut stmt = tx
            .prepare_cached("SELECT id FROM blobs WHERE refcount <= 0 LIMIT ?1")
            .map_err(db_err)?;
        stmt.query_map([GC_ROUND as i64], |r| r.get::<_, Vec<u8>>(0))
            .map_err(db_err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err)?
    };
    let looked_at = garbage.len();
    let mut freed = Vec::with_capacity(garbage.len());
    for raw in garbage {
        let blob = blob_from(raw)?;
        if pins.contains_key(&blob) {
            continue;
        }
        tx.exec_c("DELETE FROM blobs WHERE id = ?1", [&blob.0[..]])
            .map_err(db_err)?;
        freed.push(blob);
    }
    if freed.is_empty() {
        // Everything looked at is pinned: the next collection tries again.
        return Ok((0, 0));
    }
    tx.commit().map_err(db_err)?;
    let n = remove_rowless(inner, conn, &freed)?;
    drop(pins);
    Ok((n, looked_at))
}
