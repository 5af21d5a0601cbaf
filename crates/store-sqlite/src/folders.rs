//! Mailboxes for IMAP: create, delete, rename, subscribe, the message list with flags,
//! APPEND, STORE (with UNCHANGEDSINCE), COPY and MOVE. Each is one `BEGIN IMMEDIATE`
//! transaction; every change takes its MODSEQ from the mailbox row in that
//! transaction and is written to the change log (RFC 7162 §3.1).

use crate::admin::{unix_now, write_tx};
use crate::cached::Cached;
use crate::gate::Sync;
use crate::mail::{
    MAILBOX_COLUMNS, NewBlob, Parts, blob_from, check_quota, email_meta, expunge_in, i64_of,
    insert_email, mailbox_row, secs, u64_of,
};
use crate::{Inner, db_err};
use buudien_store::{
    AccountId, FlagOp, Flags, FlagsStored, Mailbox, MailboxId, MessageEntry, MessageSource,
    NewMessage, Result, SpecialUse, StoreError,
};
use buudien_types::Uid;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use buudien_store::{canonical_name as canonical, check_mailbox_name as check_name};

fn find(conn: &Connection, account: AccountId, name: &str) -> Result<Option<Mailbox>> {
    conn.row_c(
        &format!("SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = ?1 AND name = ?2"),
        params![account, canonical(name)],
        mailbox_row,
    )
    .optional()
    .map_err(db_err)
}

/// One mailbox by name.
pub fn mailbox(conn: &mut Connection, account: AccountId, name: &str) -> Result<Option<Mailbox>> {
    find(conn, account, name)
}

/// A UIDVALIDITY for a new mailbox of `account`: the time, but above every value the
/// account has used, so a mailbox deleted and recreated within a second still gets a
/// new one (RFC 9051 §2.3.1.1).
fn new_uidvalidity(tx: &Connection, account: AccountId) -> Result<u32> {
    let now = i64::from(u32::try_from(unix_now()).unwrap_or(u32::MAX).max(1));
    let next: i64 = tx
        .row_c(
            "UPDATE accounts SET last_uidvalidity = max(?2, last_uidvalidity + 1,
                 coalesce((SELECT max(uidvalidity) FROM mailboxes WHERE account_id = ?1), 0) + 1)
             WHERE id = ?1 RETURNING last_uidvalidity",
            params![account, now],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?
        .ok_or_else(|| StoreError::NotFound(format!("account #{account}")))?;
    u32::try_from(next).map_err(|_| StoreError::Database("UIDVALIDITY overflow".into()))
}

/// A new mailbox row. IMAP CREATE does not subscribe (RFC 9051 §6.3.4: that is
/// SUBSCRIBE's job); only a name already subscribed keeps its subscription.
fn insert_mailbox(
    tx: &Connection,
    account: AccountId,
    name: &str,
    special_use: Option<SpecialUse>,
) -> Result<()> {
    let uidvalidity = new_uidvalidity(tx, account)?;
    let orphan = tx
        .exec_c(
            "DELETE FROM orphan_subscriptions WHERE account_id = ?1 AND name = ?2",
            params![account, name],
        )
        .map_err(db_err)?;
    tx.exec_c(
        "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity, subscribed)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            account,
            name,
            special_use.map(|s| s.as_str()),
            uidvalidity,
            orphan > 0
        ],
    )
    .map_err(db_err)?;
    Ok(())
}

/// Creates the missing superiors of `name` (RFC 9051 §6.3.4).
fn create_parents(tx: &Connection, account: AccountId, name: &str) -> Result<()> {
    let mut end = 0;
    while let Some(pos) = name.get(end..).and_then(|rest| rest.find('/')) {
        let parent = name.get(..end + pos).unwrap_or(name);
        if find(tx, account, parent)?.is_none() {
            insert_mailbox(tx, account, canonical(parent), None)?;
        }
        end += pos + 1;
    }
    Ok(())
}

/// CREATE.
pub fn create(
    conn: &mut Connection,
    account: AccountId,
    name: &str,
    special_use: Option<SpecialUse>,
) -> Result<Mailbox> {
    let name = canonical(name.trim_end_matches('/'));
    check_name(name)?;
    let tx = write_tx(conn)?;
    if find(&tx, account, name)?.is_some() {
        return Err(StoreError::Exists(format!("mailbox {name}")));
    }
    create_parents(&tx, account, name)?;
    insert_mailbox(&tx, account, name, special_use)?;
    let created = find(&tx, account, name)?
        .ok_or_else(|| StoreError::Database("created mailbox not found".into()))?;
    tx.commit().map_err(db_err)?;
    Ok(created)
}

fn uids_of(tx: &Connection, mailbox: MailboxId) -> Result<Vec<Uid>> {
    let mut stmt = tx
        .prepare_cached("SELECT uid FROM mailbox_entries WHERE mailbox_id = ?1 ORDER BY uid")
        .map_err(db_err)?;
    let rows = stmt
        .query_map([mailbox], |r| r.get::<_, u32>(0).map(Uid))
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)?;
    Ok(rows)
}

fn has_inferiors(tx: &Connection, account: AccountId, name: &str) -> Result<bool> {
    tx.row_c(
        "SELECT EXISTS (SELECT 1 FROM mailboxes WHERE account_id = ?1
                        AND substr(name, 1, length(?2) + 1) = ?2 || '/')",
        params![account, name],
        |r| r.get(0),
    )
    .map_err(db_err)
}

/// DELETE.
pub fn delete(conn: &mut Connection, account: AccountId, name: &str) -> Result<()> {
    let name = canonical(name);
    if name == "INBOX" {
        return Err(StoreError::Refused("INBOX cannot be deleted".into()));
    }
    let tx = write_tx(conn)?;
    let Some(mb) = find(&tx, account, name)? else {
        return Err(StoreError::NotFound(format!("mailbox {name}")));
    };
    if has_inferiors(&tx, account, name)? {
        return Err(StoreError::Refused(format!(
            "mailbox {name} has inferior mailboxes; delete them first"
        )));
    }
    let uids = uids_of(&tx, mb.id)?;
    expunge_in(&tx, mb.id, &uids)?;
    if mb.subscribed {
        // RFC 9051 §6.3.7: the subscription outlives the mailbox.
        tx.exec_c(
            "INSERT OR IGNORE INTO orphan_subscriptions (account_id, name) VALUES (?1, ?2)",
            params![account, name],
        )
        .map_err(db_err)?;
    }
    tx.exec_c("DELETE FROM changes WHERE mailbox_id = ?1", [mb.id])
        .map_err(db_err)?;
    tx.exec_c("DELETE FROM mailboxes WHERE id = ?1", [mb.id])
        .map_err(db_err)?;
    tx.commit().map_err(db_err)
}

/// RENAME.
pub fn rename(conn: &mut Connection, account: AccountId, from: &str, to: &str) -> Result<()> {
    let from = canonical(from);
    let to = canonical(to.trim_end_matches('/'));
    check_name(to)?;
    let tx = write_tx(conn)?;
    let Some(src) = find(&tx, account, from)? else {
        return Err(StoreError::NotFound(format!("mailbox {from}")));
    };
    if find(&tx, account, to)?.is_some() {
        return Err(StoreError::Exists(format!("mailbox {to}")));
    }
    create_parents(&tx, account, to)?;
    if from == "INBOX" {
        // RFC 9051 §6.3.6: the messages move to the new mailbox; INBOX stays, empty.
        insert_mailbox(&tx, account, to, None)?;
        let dest = find(&tx, account, to)?
            .ok_or_else(|| StoreError::Database("renamed mailbox not found".into()))?;
        let uids = uids_of(&tx, src.id)?;
        copy_in(&tx, src.id, &uids, dest.id)?;
        expunge_in(&tx, src.id, &uids)?;
    } else {
        if to.starts_with(&format!("{from}/")) {
            return Err(StoreError::Refused(format!(
                "cannot rename {from} into its own inferior {to}"
            )));
        }
        tx.exec_c(
            "UPDATE mailboxes SET name = ?3 || substr(name, length(?2) + 1)
             WHERE account_id = ?1
               AND (name = ?2 OR substr(name, 1, length(?2) + 1) = ?2 || '/')",
            params![account, from, to],
        )
        .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)
}

/// SUBSCRIBE / UNSUBSCRIBE.
pub fn subscribe(
    conn: &mut Connection,
    account: AccountId,
    name: &str,
    subscribed: bool,
) -> Result<()> {
    let name = canonical(name);
    check_name(name)?;
    let tx = write_tx(conn)?;
    let n = tx
        .exec_c(
            "UPDATE mailboxes SET subscribed = ?3 WHERE account_id = ?1 AND name = ?2",
            params![account, name, subscribed],
        )
        .map_err(db_err)?;
    if n == 0 {
        // No such mailbox: the subscription is kept by name (RFC 9051 §6.3.7).
        if subscribed {
            tx.exec_c(
                "INSERT OR IGNORE INTO orphan_subscriptions (account_id, name) VALUES (?1, ?2)",
                params![account, name],
            )
            .map_err(db_err)?;
        } else {
            unorphan(&tx, account, name)?;
        }
    }
    tx.commit().map_err(db_err)
}

/// Forgets the subscription kept for a name without mailbox.
fn unorphan(tx: &Connection, account: AccountId, name: &str) -> Result<()> {
    tx.exec_c(
        "DELETE FROM orphan_subscriptions WHERE account_id = ?1 AND name = ?2",
        params![account, name],
    )
    .map_err(db_err)?;
    Ok(())
}

/// Subscribed names that have no mailbox, sorted.
pub fn orphan_subscriptions(conn: &mut Connection, account: AccountId) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare_cached("SELECT name FROM orphan_subscriptions WHERE account_id = ?1 ORDER BY name")
        .map_err(db_err)?;
    let rows = stmt
        .query_map([account], |r| r.get::<_, String>(0))
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)?;
    Ok(rows)
}

fn keywords_of(text: &str) -> Vec<String> {
    text.split_ascii_whitespace().map(str::to_string).collect()
}

fn keywords_text(k: &BTreeSet<String>) -> String {
    k.iter().map(String::as_str).collect::<Vec<_>>().join(" ")
}

pub(crate) fn entry_from(row: EntryRow) -> Result<MessageEntry> {
    let (uid, blob, size, flags, keywords, modseq, received, ascii) = row;
    Ok(MessageEntry {
        uid: Uid(uid),
        blob: blob_from(blob)?,
        size: u64_of(size),
        ascii_size: ascii.map(u64_of),
        flags: Flags(u8::try_from(flags & 0xff).unwrap_or(0)),
        keywords: keywords_of(&keywords),
        modseq: u64_of(modseq),
        received: UNIX_EPOCH + Duration::from_secs(u64_of(received)),
    })
}

pub(crate) const ENTRY_QUERY: &str = "SELECT e.uid, m.blob_id, m.size, e.flags, e.keywords, \
     e.modseq, m.received_at, m.surrogate_size FROM mailbox_entries e \
     JOIN emails m ON m.id = e.email_id";

pub(crate) type EntryRow = (u32, Vec<u8>, i64, i64, String, i64, i64, Option<i64>);

pub(crate) fn read_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<EntryRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn entry(tx: &Connection, mailbox: MailboxId, uid: u32) -> Result<Option<MessageEntry>> {
    let row = tx
        .row_c(
            &format!("{ENTRY_QUERY} WHERE e.mailbox_id = ?1 AND e.uid = ?2"),
            params![mailbox, uid],
            read_entry,
        )
        .optional()
        .map_err(db_err)?;
    row.map(entry_from).transpose()
}

/// The messages of a mailbox in UID order.
pub fn messages(conn: &mut Connection, mailbox: MailboxId) -> Result<Vec<MessageEntry>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "{ENTRY_QUERY} WHERE e.mailbox_id = ?1 ORDER BY e.uid"
        ))
        .map_err(db_err)?;
    let rows = stmt
        .query_map([mailbox], read_entry)
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)?;
    rows.into_iter().map(entry_from).collect()
}

/// Gives the next UID and a new MODSEQ of `mailbox` (and counts one message more).
fn allocate(tx: &Connection, mailbox: MailboxId) -> Result<(AccountId, u32, i64)> {
    let (account, uid, modseq): (i64, i64, i64) = tx
        .row_c(
            "UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1,
                                  messages = messages + 1
             WHERE id = ?1 RETURNING account_id, uidnext - 1, highestmodseq",
            [mailbox],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(db_err)?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox #{mailbox}")))?;
    let uid = u32::try_from(uid).map_err(|_| StoreError::Database("UID overflow".into()))?;
    Ok((account, uid, modseq))
}

/// APPEND of one message.
pub fn append(
    inner: &Arc<Inner>,
    conn: &mut Connection,
    mailbox: MailboxId,
    message: Vec<u8>,
    flags: Flags,
    keywords: &[String],
    received: SystemTime,
) -> Result<MessageEntry> {
    let one = NewMessage {
        source: MessageSource::Bytes(message),
        flags,
        keywords: keywords.to_vec(),
        received,
    };
    append_many(inner, conn, mailbox, vec![one])?
        .pop()
        .ok_or_else(|| StoreError::Database("appended message not found".into()))
}

/// A message read, parsed and written to a temporary blob file, ready to commit.
struct Prepared {
    blob: NewBlob,
    size: i64,
    em: crate::mail::EmailMeta,
    flags: Flags,
    keywords: BTreeSet<String>,
    received: SystemTime,
}

/// APPEND of several messages in one transaction (RFC 3502: all or none). Each is
/// read into memory only while it is parsed and written to its blob file.
pub fn append_many(
    inner: &Arc<Inner>,
    conn: &mut Connection,
    mailbox: MailboxId,
    messages: Vec<NewMessage>,
) -> Result<Vec<MessageEntry>> {
    let mut prepared = Vec::with_capacity(messages.len());
    for m in messages {
        let bytes = match m.source {
            MessageSource::Bytes(b) => b,
            MessageSource::File { file, offset, len } => {
                use std::os::unix::fs::FileExt;
                let mut b = vec![
                    0;
                    usize::try_from(len).map_err(|_| {
                        StoreError::Refused("message too large for this machine".into())
                    })?
                ];
                file.read_exact_at(&mut b, offset)?;
                b
            }
        };
        let parts = Parts {
            prefix: &[],
            message: &bytes,
        };
        prepared.push(Prepared {
            blob: NewBlob::write(inner, conn, &[&bytes])?,
            size: i64_of(bytes.len() as u64),
            em: email_meta(parts),
            flags: m.flags,
            keywords: m.keywords.into_iter().collect(),
            received: m.received,
        });
    }
    // A durable commit in a group (`group`), like a delivery: the leader places the
    // files and makes the renames durable for the whole batch.
    let owner = Arc::clone(inner);
    inner.group.run(inner, conn, Sync::Full, move |tx, placed| {
        let inner = &*owner;
        let account: AccountId = tx
            .row_c(
                "SELECT account_id FROM mailboxes WHERE id = ?1",
                [mailbox],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?
            .ok_or_else(|| StoreError::NotFound(format!("mailbox #{mailbox}")))?;
        let mut out = Vec::with_capacity(prepared.len());
        for p in prepared {
            // Usage grows with each insert, so the check covers the messages before it.
            check_quota(tx, account, p.size)?;
            let blob = p.blob.commit(inner, tx, 1, placed)?;
            let email = insert_email(tx, account, &blob, p.size, &p.em, secs(p.received))?;
            let (_, uid, modseq) = allocate(tx, mailbox)?;
            tx.exec_c(
                "INSERT INTO mailbox_entries (mailbox_id, uid, email_id, flags, keywords, modseq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    mailbox,
                    uid,
                    email,
                    p.flags.0,
                    keywords_text(&p.keywords),
                    modseq
                ],
            )
            .map_err(db_err)?;
            tx.exec_c(
                "UPDATE accounts SET used_bytes = used_bytes + ?1, used_messages = used_messages + 1
                 WHERE id = ?2",
                params![p.size, account],
            )
            .map_err(db_err)?;
            out.push(
                entry(tx, mailbox, uid)?
                    .ok_or_else(|| StoreError::Database("appended message not found".into()))?,
            );
        }
        Ok(out)
    })
}

/// What a STORE changes: the messages, how, and the CONDSTORE condition.
pub struct StoreFlags {
    /// The messages (UIDs gone meanwhile are skipped).
    pub uids: Vec<Uid>,
    /// Replace, add or remove.
    pub op: FlagOp,
    /// The system flags.
    pub flags: Flags,
    /// The keywords.
    pub keywords: Vec<String>,
    /// UNCHANGEDSINCE (RFC 7162 §3.1.3).
    pub unchanged_since: Option<u64>,
}

/// STORE. One new MODSEQ for every message this command changes. A light commit in
/// a group (`group`, `gate::Sync::Light`): a flag change reaches the disk with the
/// next durable commit.
pub fn store_flags(
    inner: &Inner,
    conn: &mut Connection,
    mailbox: MailboxId,
    s: StoreFlags,
) -> Result<FlagsStored> {
    inner.group.run(inner, conn, Sync::Light, move |tx, _| {
        store_flags_in(tx, mailbox, s)
    })
}

/// The body of [`store_flags`], inside the caller's transaction.
/// Drops the logged flag change of message `?2` in mailbox `?1`. By UID through its
/// index (schema V11): without statistics SQLite would rather walk the primary key,
/// every change the mailbox ever logged.
pub(crate) const DROP_FLAG_CHANGE: &str =
    "DELETE FROM changes INDEXED BY changes_uid WHERE mailbox_id = ?1 AND uid = ?2 AND kind = 1";

fn store_flags_in(tx: &Connection, mailbox: MailboxId, s: StoreFlags) -> Result<FlagsStored> {
    let StoreFlags {
        uids,
        op,
        flags,
        keywords,
        unchanged_since,
    } = s;
    let wanted: BTreeSet<u32> = uids.iter().map(|u| u.0).collect();
    let given: BTreeSet<String> = keywords.iter().cloned().collect();
    let mut out = FlagsStored::default();
    let mut modseq: Option<i64> = None;
    for uid in wanted {
        let Some(cur) = entry(tx, mailbox, uid)? else {
            continue;
        };
        if unchanged_since.is_some_and(|u| cur.modseq > u) {
            out.modified.push(cur.uid);
            continue;
        }
        let mut kw: BTreeSet<String> = cur.keywords.iter().cloned().collect();
        let new_flags = match op {
            FlagOp::Set => {
                kw = given.clone();
                flags
            }
            FlagOp::Add => {
                kw.extend(given.iter().cloned());
                cur.flags.with(flags)
            }
            FlagOp::Remove => {
                kw.retain(|k| !given.contains(k));
                cur.flags.without(flags)
            }
        };
        let new_kw: Vec<String> = kw.iter().cloned().collect();
        if new_flags == cur.flags && new_kw == cur.keywords {
            continue;
        }
        let m = match modseq {
            Some(m) => m,
            None => {
                let m: i64 = tx
                    .row_c(
                        "UPDATE mailboxes SET highestmodseq = highestmodseq + 1
                         WHERE id = ?1 RETURNING highestmodseq",
                        [mailbox],
                        |r| r.get(0),
                    )
                    .map_err(db_err)?;
                modseq = Some(m);
                m
            }
        };
        tx.exec_c(
            "UPDATE mailbox_entries SET flags = ?3, keywords = ?4, modseq = ?5
             WHERE mailbox_id = ?1 AND uid = ?2",
            params![mailbox, uid, new_flags.0, keywords_text(&kw), m],
        )
        .map_err(db_err)?;
        // The log keeps only a message's latest flag change: bounded by the mailbox.
        tx.exec_c(DROP_FLAG_CHANGE, params![mailbox, uid])
            .map_err(db_err)?;
        tx.exec_c(
            "INSERT INTO changes (mailbox_id, modseq, uid, kind) VALUES (?1, ?2, ?3, 1)",
            params![mailbox, m, uid],
        )
        .map_err(db_err)?;
        out.changed.push(MessageEntry {
            flags: new_flags,
            keywords: new_kw,
            modseq: u64_of(m),
            ..cur
        });
    }
    Ok(out)
}

/// COPY inside the caller's transaction: new entries for the same emails.
fn copy_in(
    tx: &Connection,
    from: MailboxId,
    uids: &[Uid],
    to: MailboxId,
) -> Result<Vec<(Uid, Uid)>> {
    let accounts: Vec<AccountId> = [from, to]
        .iter()
        .map(|m| {
            tx.row_c("SELECT account_id FROM mailboxes WHERE id = ?1", [m], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_err)?
            .ok_or_else(|| StoreError::NotFound(format!("mailbox #{m}")))
        })
        .collect::<Result<_>>()?;
    if accounts.first() != accounts.get(1) {
        return Err(StoreError::Refused(
            "messages can only be copied between one account's mailboxes".into(),
        ));
    }
    let wanted: BTreeSet<u32> = uids.iter().map(|u| u.0).collect();
    let mut out = Vec::new();
    for uid in wanted {
        let row: Option<(i64, i64, String)> = tx
            .row_c(
                "SELECT email_id, flags, keywords FROM mailbox_entries
                 WHERE mailbox_id = ?1 AND uid = ?2",
                params![from, uid],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(db_err)?;
        let Some((email, flags, keywords)) = row else {
            continue;
        };
        let (_, new_uid, modseq) = allocate(tx, to)?;
        tx.exec_c(
            "INSERT INTO mailbox_entries (mailbox_id, uid, email_id, flags, keywords, modseq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![to, new_uid, email, flags, keywords, modseq],
        )
        .map_err(db_err)?;
        out.push((Uid(uid), Uid(new_uid)));
    }
    Ok(out)
}

/// COPY.
pub fn copy(
    conn: &mut Connection,
    from: MailboxId,
    uids: &[Uid],
    to: MailboxId,
) -> Result<Vec<(Uid, Uid)>> {
    let tx = write_tx(conn)?;
    let pairs = copy_in(&tx, from, uids, to)?;
    tx.commit().map_err(db_err)?;
    Ok(pairs)
}

/// MOVE: COPY and expunge in one transaction (RFC 6851 §3.1).
pub fn move_messages(
    conn: &mut Connection,
    from: MailboxId,
    uids: &[Uid],
    to: MailboxId,
) -> Result<Vec<(Uid, Uid)>> {
    // RFC 6851 §3.1: moving within one mailbox is allowed: the messages get new
    // UIDs (copies first, then the originals are expunged).
    let tx = write_tx(conn)?;
    let pairs = copy_in(&tx, from, uids, to)?;
    let moved: Vec<Uid> = pairs.iter().map(|(old, _)| *old).collect();
    expunge_in(&tx, from, &moved)?;
    tx.commit().map_err(db_err)?;
    Ok(pairs)
}
