//! Mailboxes for IMAP: create, delete, rename, subscribe, the message list, APPEND,
//! STORE (with UNCHANGEDSINCE), COPY and MOVE, with the SQLite backend's semantics.
//! Every change takes its MODSEQ from the mailbox row in its transaction and is
//! written to the change log (RFC 7162 §3.1).

use crate::admin::unix_now;
use crate::blobs_s3::S3Blobs;
use crate::mail::{
    EmailMeta, MAILBOX_COLUMNS, blob_from, blob_id, check_quota, email_meta, expunge_locked,
    i64_of, insert_email, lock_account_of, mailbox_row, secs, u64_of, uid_of,
};
use crate::{Tx, blobs, exec, get, row_one, row_opt, rows};
use buudien_store::{
    AccountId, BlobId, FlagOp, Flags, FlagsStored, Mailbox, MailboxId, MessageEntry, MessageSource,
    NewMessage, Result, SpecialUse, StoreError,
};
use buudien_types::Uid;
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use buudien_store::{canonical_name as canonical, check_mailbox_name as check_name};

/// One mailbox by name.
pub(crate) async fn find(tx: &Tx<'_>, account: AccountId, name: &str) -> Result<Option<Mailbox>> {
    let r = row_opt(
        tx,
        &format!("SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = $1 AND name = $2"),
        &[&account, &canonical(name)],
    )
    .await?;
    r.as_ref().map(mailbox_row).transpose()
}

/// Locks the account row (the order every writer keeps: account, then mailboxes).
async fn lock_account(tx: &Tx<'_>, account: AccountId) -> Result<()> {
    row_opt(
        tx,
        "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
        &[&account],
    )
    .await?
    .map(|_| ())
    .ok_or_else(|| StoreError::NotFound(format!("account #{account}")))
}

/// A UIDVALIDITY for a new mailbox: the time, but above every value the account has
/// used, so a mailbox deleted and recreated within a second still gets a new one
/// (RFC 9051 §2.3.1.1).
async fn new_uidvalidity(tx: &Tx<'_>, account: AccountId) -> Result<i64> {
    let now = i64::from(u32::try_from(unix_now()).unwrap_or(u32::MAX).max(1));
    let Some(r) = row_opt(
        tx,
        "UPDATE accounts SET last_uidvalidity = greatest($2, last_uidvalidity + 1,
             coalesce((SELECT max(uidvalidity) FROM mailboxes WHERE account_id = $1), 0) + 1)
         WHERE id = $1 RETURNING last_uidvalidity",
        &[&account, &now],
    )
    .await?
    else {
        return Err(StoreError::NotFound(format!("account #{account}")));
    };
    let v: i64 = get(&r, 0)?;
    if v > i64::from(u32::MAX) {
        return Err(StoreError::Database("UIDVALIDITY overflow".into()));
    }
    Ok(v)
}

/// A new mailbox row. CREATE does not subscribe (RFC 9051 §6.3.4); a name already
/// subscribed keeps its subscription.
async fn insert_mailbox(
    tx: &Tx<'_>,
    account: AccountId,
    name: &str,
    special_use: Option<SpecialUse>,
) -> Result<()> {
    let uidvalidity = new_uidvalidity(tx, account).await?;
    let orphan = exec(
        tx,
        "DELETE FROM orphan_subscriptions WHERE account_id = $1 AND name = $2",
        &[&account, &name],
    )
    .await?;
    exec(
        tx,
        "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity, subscribed)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &account,
            &name,
            &special_use.map(|s| s.as_str()),
            &uidvalidity,
            &(orphan > 0),
        ],
    )
    .await?;
    Ok(())
}

/// Creates the missing superiors of `name` (RFC 9051 §6.3.4).
async fn create_parents(tx: &Tx<'_>, account: AccountId, name: &str) -> Result<()> {
    let mut end = 0;
    while let Some(pos) = name.get(end..).and_then(|rest| rest.find('/')) {
        let parent = name.get(..end + pos).unwrap_or(name);
        if find(tx, account, parent).await?.is_none() {
            insert_mailbox(tx, account, canonical(parent), None).await?;
        }
        end += pos + 1;
    }
    Ok(())
}

/// CREATE.
pub(crate) async fn create(
    tx: &Tx<'_>,
    account: AccountId,
    name: &str,
    special_use: Option<SpecialUse>,
) -> Result<Mailbox> {
    let name = canonical(name.trim_end_matches('/'));
    check_name(name)?;
    lock_account(tx, account).await?;
    if find(tx, account, name).await?.is_some() {
        return Err(StoreError::Exists(format!("mailbox {name}")));
    }
    create_parents(tx, account, name).await?;
    insert_mailbox(tx, account, name, special_use).await?;
    find(tx, account, name)
        .await?
        .ok_or_else(|| StoreError::Database("created mailbox not found".into()))
}

async fn uids_of(tx: &Tx<'_>, mailbox: MailboxId) -> Result<Vec<i64>> {
    let rs = rows(
        tx,
        "SELECT uid FROM mailbox_entries WHERE mailbox_id = $1 ORDER BY uid",
        &[&mailbox],
    )
    .await?;
    rs.iter().map(|r| get(r, 0)).collect()
}

async fn has_inferiors(tx: &Tx<'_>, account: AccountId, name: &str) -> Result<bool> {
    Ok(row_opt(
        tx,
        "SELECT 1 FROM mailboxes WHERE account_id = $1
           AND left(name, length($2) + 1) = $2 || '/' LIMIT 1",
        &[&account, &name],
    )
    .await?
    .is_some())
}

/// DELETE.
pub(crate) async fn delete(tx: &Tx<'_>, account: AccountId, name: &str) -> Result<()> {
    let name = canonical(name);
    if name == "INBOX" {
        return Err(StoreError::Refused("INBOX cannot be deleted".into()));
    }
    lock_account(tx, account).await?;
    let Some(mb) = find(tx, account, name).await? else {
        return Err(StoreError::NotFound(format!("mailbox {name}")));
    };
    if has_inferiors(tx, account, name).await? {
        return Err(StoreError::Refused(format!(
            "mailbox {name} has inferior mailboxes; delete them first"
        )));
    }
    let uids = uids_of(tx, mb.id).await?;
    if !uids.is_empty() {
        expunge_locked(tx, account, mb.id, &uids).await?;
    }
    if mb.subscribed {
        // RFC 9051 §6.3.7: the subscription outlives the mailbox.
        exec(
            tx,
            "INSERT INTO orphan_subscriptions (account_id, name) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
            &[&account, &name],
        )
        .await?;
    }
    exec(tx, "DELETE FROM changes WHERE mailbox_id = $1", &[&mb.id]).await?;
    exec(tx, "DELETE FROM mailboxes WHERE id = $1", &[&mb.id]).await?;
    Ok(())
}

/// RENAME.
pub(crate) async fn rename(tx: &Tx<'_>, account: AccountId, from: &str, to: &str) -> Result<()> {
    let from = canonical(from);
    let to = canonical(to.trim_end_matches('/'));
    check_name(to)?;
    lock_account(tx, account).await?;
    let Some(src) = find(tx, account, from).await? else {
        return Err(StoreError::NotFound(format!("mailbox {from}")));
    };
    if find(tx, account, to).await?.is_some() {
        return Err(StoreError::Exists(format!("mailbox {to}")));
    }
    if from != "INBOX" && to.starts_with(&format!("{from}/")) {
        return Err(StoreError::Refused(format!(
            "cannot rename {from} into its own inferior {to}"
        )));
    }
    create_parents(tx, account, to).await?;
    if from == "INBOX" {
        // RFC 9051 §6.3.6: the messages move to the new mailbox; INBOX stays, empty.
        insert_mailbox(tx, account, to, None).await?;
        let dest = find(tx, account, to)
            .await?
            .ok_or_else(|| StoreError::Database("renamed mailbox not found".into()))?;
        let uids = uids_of(tx, src.id).await?;
        copy_in(tx, account, src.id, &uids, dest.id).await?;
        if !uids.is_empty() {
            expunge_locked(tx, account, src.id, &uids).await?;
        }
    } else {
        exec(
            tx,
            "UPDATE mailboxes SET name = $3 || substr(name, length($2) + 1)
             WHERE account_id = $1 AND (name = $2 OR left(name, length($2) + 1) = $2 || '/')",
            &[&account, &from, &to],
        )
        .await?;
    }
    Ok(())
}

/// SUBSCRIBE / UNSUBSCRIBE.
pub(crate) async fn subscribe(
    tx: &Tx<'_>,
    account: AccountId,
    name: &str,
    subscribed: bool,
) -> Result<()> {
    let name = canonical(name);
    check_name(name)?;
    let n = exec(
        tx,
        "UPDATE mailboxes SET subscribed = $3 WHERE account_id = $1 AND name = $2",
        &[&account, &name, &subscribed],
    )
    .await?;
    if n == 0 {
        // No such mailbox: the subscription is kept by name (RFC 9051 §6.3.7).
        let sql = if subscribed {
            "INSERT INTO orphan_subscriptions (account_id, name) VALUES ($1, $2)
             ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM orphan_subscriptions WHERE account_id = $1 AND name = $2"
        };
        exec(tx, sql, &[&account, &name]).await?;
    }
    Ok(())
}

/// Subscribed names that have no mailbox, sorted.
pub(crate) async fn orphan_subscriptions(tx: &Tx<'_>, account: AccountId) -> Result<Vec<String>> {
    let rs = rows(
        tx,
        "SELECT name FROM orphan_subscriptions WHERE account_id = $1 ORDER BY name",
        &[&account],
    )
    .await?;
    rs.iter().map(|r| get(r, 0)).collect()
}

fn keywords_text(k: &BTreeSet<String>) -> String {
    k.iter().map(String::as_str).collect::<Vec<_>>().join(" ")
}

/// The columns [`entry_from`] reads.
pub(crate) const ENTRY_QUERY: &str = "SELECT e.uid, m.blob_id, m.size, e.flags, e.keywords, \
     e.modseq, m.received_at, m.surrogate_size FROM mailbox_entries e \
     JOIN emails m ON m.id = e.email_id";

/// A message entry from a row of [`ENTRY_QUERY`].
pub(crate) fn entry_from(r: &tokio_postgres::Row) -> Result<MessageEntry> {
    let keywords: &str = get(r, 4)?;
    Ok(MessageEntry {
        uid: uid_of(get(r, 0)?)?,
        blob: blob_from(get(r, 1)?)?,
        size: u64_of(get(r, 2)?),
        ascii_size: get::<Option<i64>>(r, 7)?.map(u64_of),
        flags: Flags(u8::try_from(get::<i32>(r, 3)? & 0xff).unwrap_or(0)),
        keywords: keywords
            .split_ascii_whitespace()
            .map(str::to_string)
            .collect(),
        modseq: u64_of(get(r, 5)?),
        received: UNIX_EPOCH + Duration::from_secs(u64_of(get(r, 6)?)),
    })
}

async fn entry(tx: &Tx<'_>, mailbox: MailboxId, uid: i64) -> Result<Option<MessageEntry>> {
    let r = row_opt(
        tx,
        &format!("{ENTRY_QUERY} WHERE e.mailbox_id = $1 AND e.uid = $2"),
        &[&mailbox, &uid],
    )
    .await?;
    r.as_ref().map(entry_from).transpose()
}

/// The messages of a mailbox in UID order.
pub(crate) async fn messages(tx: &Tx<'_>, mailbox: MailboxId) -> Result<Vec<MessageEntry>> {
    let rs = rows(
        tx,
        &format!("{ENTRY_QUERY} WHERE e.mailbox_id = $1 ORDER BY e.uid"),
        &[&mailbox],
    )
    .await?;
    rs.iter().map(entry_from).collect()
}

/// Gives the next UID and a new MODSEQ of `mailbox` (and counts one message more).
async fn allocate(tx: &Tx<'_>, mailbox: MailboxId) -> Result<(i64, i64)> {
    let Some(r) = row_opt(
        tx,
        "UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1,
                              messages = messages + 1
         WHERE id = $1 RETURNING uidnext - 1, highestmodseq",
        &[&mailbox],
    )
    .await?
    else {
        return Err(StoreError::NotFound(format!("mailbox #{mailbox}")));
    };
    let uid: i64 = get(&r, 0)?;
    if uid > i64::from(u32::MAX) {
        return Err(StoreError::Database("UID overflow".into()));
    }
    Ok((uid, get(&r, 1)?))
}

/// One message of an APPEND, read and parsed before the transaction.
pub(crate) struct Prepared {
    id: BlobId,
    /// Shared with an upload to object storage without a copy.
    bytes: bytes::Bytes,
    em: EmailMeta,
    flags: Flags,
    keywords: BTreeSet<String>,
    received: SystemTime,
}

/// Reads and parses the messages of an APPEND (file ranges on the blocking pool).
pub(crate) async fn prepare(messages: Vec<NewMessage>) -> Result<Vec<Prepared>> {
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        let bytes = match m.source {
            MessageSource::Bytes(b) => b,
            MessageSource::File { file, offset, len } => {
                let len = usize::try_from(len).map_err(|_| {
                    StoreError::Refused("message too large for this machine".into())
                })?;
                tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
                    use std::os::unix::fs::FileExt;
                    let mut b = vec![0; len];
                    file.read_exact_at(&mut b, offset)?;
                    Ok(b)
                })
                .await
                .map_err(|e| StoreError::Io(format!("reading the message failed: {e}")))??
            }
        };
        out.push(Prepared {
            id: blob_id(&[&bytes]),
            em: email_meta(&bytes),
            bytes: bytes.into(),
            flags: m.flags,
            keywords: m.keywords.into_iter().collect(),
            received: m.received,
        });
    }
    Ok(out)
}

/// APPEND of several messages in one transaction (RFC 3502: all or none).
pub(crate) async fn append_many(
    tx: &Tx<'_>,
    s3: Option<&S3Blobs>,
    mailbox: MailboxId,
    prepared: &[Prepared],
) -> Result<Vec<MessageEntry>> {
    let account = lock_account_of(tx, mailbox).await?;
    let total: i64 = prepared
        .iter()
        .map(|p| i64_of(p.bytes.len() as u64))
        .fold(0, i64::saturating_add);
    check_quota(tx, account, total, i64_of(prepared.len() as u64)).await?;
    let mut out = Vec::with_capacity(prepared.len());
    for p in prepared {
        let size = i64_of(p.bytes.len() as u64);
        blobs::add_refs(tx, s3, &p.id, &p.bytes, 1).await?;
        let email = insert_email(tx, account, &p.id, size, &p.em, secs(p.received)).await?;
        let (uid, modseq) = allocate(tx, mailbox).await?;
        exec(
            tx,
            "INSERT INTO mailbox_entries (mailbox_id, uid, email_id, flags, keywords, modseq)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &mailbox,
                &uid,
                &email,
                &i32::from(p.flags.0),
                &keywords_text(&p.keywords),
                &modseq,
            ],
        )
        .await?;
        exec(
            tx,
            "UPDATE accounts SET used_bytes = used_bytes + $1, used_messages = used_messages + 1
             WHERE id = $2",
            &[&size, &account],
        )
        .await?;
        out.push(
            entry(tx, mailbox, uid)
                .await?
                .ok_or_else(|| StoreError::Database("appended message not found".into()))?,
        );
    }
    Ok(out)
}

/// STORE. One new MODSEQ for every message this command changes. The mailbox row is
/// locked first, so two STOREs on one mailbox never lose each other's flags.
pub(crate) async fn store_flags(
    tx: &Tx<'_>,
    mailbox: MailboxId,
    uids: &[Uid],
    op: FlagOp,
    flags: Flags,
    keywords: &[String],
    unchanged_since: Option<u64>,
) -> Result<FlagsStored> {
    let wanted: BTreeSet<i64> = uids.iter().map(|u| i64::from(u.0)).collect();
    let given: BTreeSet<String> = keywords.iter().cloned().collect();
    let mut out = FlagsStored::default();
    if row_opt(
        tx,
        "SELECT 1 FROM mailboxes WHERE id = $1 FOR UPDATE",
        &[&mailbox],
    )
    .await?
    .is_none()
    {
        return Err(StoreError::NotFound(format!("mailbox #{mailbox}")));
    }
    let mut modseq: Option<i64> = None;
    for uid in wanted {
        let Some(cur) = entry(tx, mailbox, uid).await? else {
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
                let m: i64 = get(
                    &row_one(
                        tx,
                        "UPDATE mailboxes SET highestmodseq = highestmodseq + 1
                         WHERE id = $1 RETURNING highestmodseq",
                        &[&mailbox],
                    )
                    .await?,
                    0,
                )?;
                modseq = Some(m);
                m
            }
        };
        exec(
            tx,
            "UPDATE mailbox_entries SET flags = $3, keywords = $4, modseq = $5
             WHERE mailbox_id = $1 AND uid = $2",
            &[
                &mailbox,
                &uid,
                &i32::from(new_flags.0),
                &keywords_text(&kw),
                &m,
            ],
        )
        .await?;
        // The log keeps only a message's latest flag change: bounded by the mailbox.
        exec(
            tx,
            "DELETE FROM changes WHERE mailbox_id = $1 AND uid = $2 AND kind = 1",
            &[&mailbox, &uid],
        )
        .await?;
        exec(
            tx,
            "INSERT INTO changes (mailbox_id, modseq, uid, kind) VALUES ($1, $2, $3, 1)",
            &[&mailbox, &m, &uid],
        )
        .await?;
        out.changed.push(MessageEntry {
            flags: new_flags,
            keywords: new_kw,
            modseq: u64_of(m),
            ..cur
        });
    }
    Ok(out)
}

/// COPY inside the caller's transaction (account row locked): new entries for the
/// same emails, with their flags.
async fn copy_in(
    tx: &Tx<'_>,
    account: AccountId,
    from: MailboxId,
    uids: &[i64],
    to: MailboxId,
) -> Result<Vec<(Uid, Uid)>> {
    for m in [from, to] {
        let Some(r) = row_opt(tx, "SELECT account_id FROM mailboxes WHERE id = $1", &[&m]).await?
        else {
            return Err(StoreError::NotFound(format!("mailbox #{m}")));
        };
        if get::<i64>(&r, 0)? != account {
            return Err(StoreError::Refused(
                "messages can only be copied between one account's mailboxes".into(),
            ));
        }
    }
    let wanted: BTreeSet<i64> = uids.iter().copied().collect();
    let mut out = Vec::new();
    for uid in wanted {
        let Some(r) = row_opt(
            tx,
            "SELECT email_id, flags, keywords FROM mailbox_entries
             WHERE mailbox_id = $1 AND uid = $2",
            &[&from, &uid],
        )
        .await?
        else {
            continue;
        };
        let (email, flags, keywords): (i64, i32, String) = (get(&r, 0)?, get(&r, 1)?, get(&r, 2)?);
        let (new_uid, modseq) = allocate(tx, to).await?;
        exec(
            tx,
            "INSERT INTO mailbox_entries (mailbox_id, uid, email_id, flags, keywords, modseq)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&to, &new_uid, &email, &flags, &keywords, &modseq],
        )
        .await?;
        out.push((uid_of(uid)?, uid_of(new_uid)?));
    }
    Ok(out)
}

/// COPY (RFC 9051 §6.4.7).
pub(crate) async fn copy(
    tx: &Tx<'_>,
    from: MailboxId,
    uids: &[Uid],
    to: MailboxId,
) -> Result<Vec<(Uid, Uid)>> {
    let account = lock_account_of(tx, from).await?;
    let uids: Vec<i64> = uids.iter().map(|u| i64::from(u.0)).collect();
    copy_in(tx, account, from, &uids, to).await
}

/// MOVE: COPY and expunge in one transaction (RFC 6851 §3.1); within one mailbox the
/// messages get new UIDs.
pub(crate) async fn move_messages(
    tx: &Tx<'_>,
    from: MailboxId,
    uids: &[Uid],
    to: MailboxId,
) -> Result<Vec<(Uid, Uid)>> {
    let account = lock_account_of(tx, from).await?;
    let uids: Vec<i64> = uids.iter().map(|u| i64::from(u.0)).collect();
    let pairs = copy_in(tx, account, from, &uids, to).await?;
    let moved: Vec<i64> = pairs.iter().map(|(old, _)| i64::from(old.0)).collect();
    if !moved.is_empty() {
        expunge_locked(tx, account, from, &moved).await?;
    }
    Ok(pairs)
}
