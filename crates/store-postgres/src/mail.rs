//! Delivery and submission, mailboxes, the POP3 maildrop snapshot, expunge and the
//! change log.

use crate::blobs_s3::S3Blobs;
use crate::lease::Leases;
use crate::{Tx, blobs, exec, get, queue, row_one, row_opt, rows};
use buudien_store::{
    AccountId, BlobId, Change, ChangeKind, Delivered, Envelope, Mailbox, MailboxId, MaildropEntry,
    NewRecipient, Result, SpecialUse, StoreError, Submission, Submitted,
};
use buudien_types::{Uid, UidValidity};
use bytes::Bytes;
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn blob_from(v: &[u8]) -> Result<BlobId> {
    <[u8; 32]>::try_from(v)
        .map(BlobId)
        .map_err(|_| StoreError::Database("blob id is not 32 bytes".into()))
}

pub(crate) fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn uid_of(v: i64) -> Result<Uid> {
    u32::try_from(v)
        .map(Uid)
        .map_err(|_| StoreError::Database(format!("UID {v} out of range")))
}

/// The id (BLAKE3) of the concatenation of `parts`.
pub(crate) fn blob_id(parts: &[&[u8]]) -> BlobId {
    BlobId::of(parts)
}

/// Locks an account's row (every write that derives from its usage or touches its
/// mailboxes takes it first) and fails with [`StoreError::OverQuota`] when `count`
/// more messages of `size` octets in all would not fit.
pub(crate) async fn check_quota(
    tx: &Tx<'_>,
    account: AccountId,
    size: i64,
    count: i64,
) -> Result<()> {
    let Some(r) = row_opt(
        tx,
        "SELECT address, quota_bytes, quota_messages, used_bytes, used_messages
         FROM accounts WHERE id = $1 FOR UPDATE",
        &[&account],
    )
    .await?
    else {
        return Err(StoreError::NotFound(format!("account #{account}")));
    };
    let qb: Option<i64> = get(&r, 1)?;
    let qm: Option<i64> = get(&r, 2)?;
    let ub: i64 = get(&r, 3)?;
    let um: i64 = get(&r, 4)?;
    let over_bytes = qb.is_some_and(|q| ub.saturating_add(size) > q);
    let over_count = qm.is_some_and(|q| um.saturating_add(count) > q);
    if over_bytes || over_count {
        return Err(StoreError::OverQuota(get(&r, 0)?));
    }
    Ok(())
}

/// What is stored beside a local copy: its parsed structure and, when it has raw
/// UTF-8 headers, the size and structure of its ASCII surrogate (RFC 6856 §2.1).
pub(crate) struct EmailMeta {
    pub(crate) meta: Vec<u8>,
    pub(crate) surrogate_size: Option<i64>,
    pub(crate) surrogate_meta: Option<Vec<u8>>,
}

/// Parses a local copy once, before the transaction.
pub(crate) fn email_meta(whole: &[u8]) -> EmailMeta {
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

/// The email row of a local copy; returns its id.
pub(crate) async fn insert_email(
    tx: &Tx<'_>,
    account: AccountId,
    blob: &BlobId,
    size: i64,
    em: &EmailMeta,
    received_secs: i64,
) -> Result<i64> {
    get(
        &row_one(
            tx,
            "INSERT INTO emails (account_id, blob_id, size, surrogate_size, received_at, meta,
                                 surrogate_meta)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[
                &account,
                &&blob.0[..],
                &size,
                &em.surrogate_size,
                &received_secs,
                &em.meta,
                &em.surrogate_meta,
            ],
        )
        .await?,
        0,
    )
}

/// A submission with everything computed that needs no database: the bytes of the
/// local and queued copies, their blob ids and the parsed structure.
pub(crate) struct Prepared {
    accounts: BTreeSet<AccountId>,
    /// The local copy's blob (bytes shared with an upload to object storage).
    local: Option<(BlobId, Bytes, EmailMeta)>,
    /// The queued copy's blob when it differs from the local one.
    remote: Option<(BlobId, Bytes)>,
    message_len: i64,
    received: SystemTime,
    outbound: Option<(Envelope, Vec<NewRecipient>)>,
}

impl Prepared {
    /// Checks and prepares a submission (as the SQLite backend: one blob when the
    /// local and queued copies are the same bytes, else two).
    pub(crate) fn new(s: &Submission<'_>) -> Result<Prepared> {
        let accounts: BTreeSet<AccountId> = s.local.iter().copied().collect();
        let outbound = s.outbound.filter(|(_, rcpts)| !rcpts.is_empty());
        if accounts.is_empty() && outbound.is_none() {
            return Err(StoreError::Refused(
                "a message needs at least one local or remote recipient".into(),
            ));
        }
        let prefix = if accounts.is_empty() {
            &[][..]
        } else {
            s.local_prefix
        };
        let local = if accounts.is_empty() {
            None
        } else {
            let whole = [prefix, s.message].concat();
            let em = email_meta(&whole);
            Some((blob_id(&[&whole]), whole.into(), em))
        };
        let remote = if outbound.is_some() && (local.is_none() || !prefix.is_empty()) {
            Some((blob_id(&[s.message]), Bytes::copy_from_slice(s.message)))
        } else {
            None
        };
        Ok(Prepared {
            accounts,
            local,
            remote,
            message_len: i64_of(s.message.len() as u64),
            received: s.received,
            outbound: outbound.map(|(e, r)| (e.clone(), r.to_vec())),
        })
    }
}

/// Stores local copies (quota-checked, UIDs and MODSEQs from the mailbox rows) and
/// queues the outbound part, in the caller's transaction. Accounts are locked in id
/// order, so concurrent deliveries to several accounts cannot deadlock.
pub(crate) async fn store(tx: &Tx<'_>, s3: Option<&S3Blobs>, p: &Prepared) -> Result<Submitted> {
    let local_size = p
        .local
        .as_ref()
        .map_or(0, |(_, b, _)| i64_of(b.len() as u64));
    for &id in &p.accounts {
        check_quota(tx, id, local_size, 1).await?;
    }
    let n_local = i64_of(p.accounts.len() as u64);
    let shared_blob = p.remote.is_none() && p.outbound.is_some();
    if let Some((id, bytes, _)) = &p.local {
        blobs::add_refs(tx, s3, id, bytes, n_local + i64::from(shared_blob)).await?;
    }
    if let Some((id, bytes)) = &p.remote {
        blobs::add_refs(tx, s3, id, bytes, 1).await?;
    }
    let received_secs = secs(p.received);
    let mut delivered = Vec::with_capacity(p.accounts.len());
    if let Some((blob, _, em)) = &p.local {
        for &id in &p.accounts {
            delivered.push(add_to_inbox(tx, id, blob, local_size, em, received_secs).await?);
        }
    }
    let remote_blob = p
        .remote
        .as_ref()
        .map(|(id, _)| *id)
        .or(p.local.as_ref().map(|(id, _, _)| *id));
    let queued = match (&p.outbound, remote_blob) {
        (Some((envelope, rcpts)), Some(blob)) => {
            Some(queue::insert(tx, &blob, p.message_len, p.received, envelope, rcpts).await?)
        }
        _ => None,
    };
    Ok(Submitted { delivered, queued })
}

/// Adds one email to an account's INBOX: the email row, the UID and MODSEQ from the
/// mailbox row (RFC 9051 §2.3.1.1, RFC 7162 §3.1), the entry, and the usage.
async fn add_to_inbox(
    tx: &Tx<'_>,
    account: AccountId,
    blob: &BlobId,
    size: i64,
    em: &EmailMeta,
    received_secs: i64,
) -> Result<Delivered> {
    let email = insert_email(tx, account, blob, size, em, received_secs).await?;
    let Some(r) = row_opt(
        tx,
        "UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1,
                              messages = messages + 1
         WHERE account_id = $1 AND name = 'INBOX'
         RETURNING id, uidnext - 1, highestmodseq",
        &[&account],
    )
    .await?
    else {
        return Err(StoreError::Database(format!(
            "account #{account} has no INBOX"
        )));
    };
    let (mailbox, uid, modseq): (i64, i64, i64) = (get(&r, 0)?, get(&r, 1)?, get(&r, 2)?);
    exec(
        tx,
        "INSERT INTO mailbox_entries (mailbox_id, uid, email_id, modseq) VALUES ($1, $2, $3, $4)",
        &[&mailbox, &uid, &email, &modseq],
    )
    .await?;
    exec(
        tx,
        "UPDATE accounts SET used_bytes = used_bytes + $1, used_messages = used_messages + 1
         WHERE id = $2",
        &[&size, &account],
    )
    .await?;
    Ok(Delivered {
        account,
        mailbox,
        uid: uid_of(uid)?,
    })
}

/// The columns [`mailbox_row`] reads, in order.
pub(crate) const MAILBOX_COLUMNS: &str =
    "id, name, special_use, subscribed, uidvalidity, uidnext, highestmodseq, messages";

/// A mailbox from a row of [`MAILBOX_COLUMNS`].
pub(crate) fn mailbox_row(r: &tokio_postgres::Row) -> Result<Mailbox> {
    let special: Option<&str> = get(r, 2)?;
    Ok(Mailbox {
        id: get(r, 0)?,
        name: get(r, 1)?,
        special_use: special.and_then(SpecialUse::parse),
        subscribed: get(r, 3)?,
        uidvalidity: UidValidity(u32::try_from(get::<i64>(r, 4)?).unwrap_or(0)),
        uidnext: uid_of(get(r, 5)?)?,
        highestmodseq: u64_of(get(r, 6)?),
        messages: u64_of(get(r, 7)?),
    })
}

/// The account's mailboxes, INBOX first, then by name.
pub(crate) async fn mailboxes(tx: &Tx<'_>, account: AccountId) -> Result<Vec<Mailbox>> {
    let rs = rows(
        tx,
        &format!(
            "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = $1
             ORDER BY name <> 'INBOX', name"
        ),
        &[&account],
    )
    .await?;
    rs.iter().map(mailbox_row).collect()
}

/// A snapshot of the INBOX with its blobs pinned by a new `snapshots` row (returned):
/// the blob rows are share-locked while the pins are written, so garbage collection
/// either waits for the pins or has removed a blob before (then the snapshot is
/// taken again: that message was expunged meanwhile).
pub(crate) async fn open_maildrop(
    tx: &Tx<'_>,
    account: AccountId,
    leases: &Leases,
) -> Result<(MailboxId, UidValidity, Vec<MaildropEntry>, i64)> {
    let Some(r) = row_opt(
        tx,
        "SELECT id, uidvalidity FROM mailboxes WHERE account_id = $1 AND name = 'INBOX'",
        &[&account],
    )
    .await?
    else {
        return Err(StoreError::NotFound(format!("INBOX of account #{account}")));
    };
    let mailbox: i64 = get(&r, 0)?;
    let uidvalidity = UidValidity(u32::try_from(get::<i64>(&r, 1)?).unwrap_or(0));
    let rs = rows(
        tx,
        "SELECT e.uid, m.blob_id, m.size, m.surrogate_size, m.received_at
         FROM mailbox_entries e JOIN emails m ON m.id = e.email_id
         WHERE e.mailbox_id = $1 ORDER BY e.uid",
        &[&mailbox],
    )
    .await?;
    let mut entries = Vec::with_capacity(rs.len());
    for r in &rs {
        entries.push(MaildropEntry {
            uid: uid_of(get(r, 0)?)?,
            blob: blob_from(get(r, 1)?)?,
            size: u64_of(get(r, 2)?),
            surrogate_size: get::<Option<i64>>(r, 3)?.map(u64_of),
            received: UNIX_EPOCH + Duration::from_secs(u64_of(get(r, 4)?)),
        });
    }
    let mut ids: Vec<Vec<u8>> = entries.iter().map(|e| e.blob.0.to_vec()).collect();
    ids.sort();
    ids.dedup();
    let locked = rows(
        tx,
        "SELECT id FROM blobs WHERE id = ANY($1) ORDER BY id FOR SHARE",
        &[&ids],
    )
    .await?;
    if locked.len() != ids.len() {
        // A blob was collected between the read and the lock: read again.
        return Err(StoreError::Busy);
    }
    let pin_secs = leases.pin().as_secs_f64();
    let snapshot: i64 = get(
        &row_one(
            tx,
            "INSERT INTO snapshots (until) VALUES (now() + make_interval(secs => $1))
             RETURNING id",
            &[&pin_secs],
        )
        .await?,
        0,
    )?;
    exec(
        tx,
        "INSERT INTO snapshot_blobs (snapshot_id, blob_id) SELECT $1, unnest($2::bytea[])",
        &[&snapshot, &ids],
    )
    .await?;
    Ok((mailbox, uidvalidity, entries, snapshot))
}

/// Locks the account of a mailbox (before its mailbox row, as every writer does);
/// returns the account.
pub(crate) async fn lock_account_of(tx: &Tx<'_>, mailbox: MailboxId) -> Result<AccountId> {
    let Some(r) = row_opt(
        tx,
        "SELECT a.id FROM accounts a JOIN mailboxes m ON m.account_id = a.id
         WHERE m.id = $1 FOR UPDATE OF a",
        &[&mailbox],
    )
    .await?
    else {
        return Err(StoreError::NotFound(format!("mailbox #{mailbox}")));
    };
    get(&r, 0)
}

/// Expunges UIDs with one new MODSEQ; UIDs already gone are skipped. An email left in
/// no mailbox is deleted and its quota freed.
pub(crate) async fn expunge(tx: &Tx<'_>, mailbox: MailboxId, uids: &[Uid]) -> Result<usize> {
    let wanted: Vec<i64> = uids
        .iter()
        .map(|u| i64::from(u.0))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if wanted.is_empty() {
        return Ok(0);
    }
    let account = lock_account_of(tx, mailbox).await?;
    expunge_locked(tx, account, mailbox, &wanted).await
}

/// The body of [`expunge`], with the account row locked by the caller.
pub(crate) async fn expunge_locked(
    tx: &Tx<'_>,
    account: AccountId,
    mailbox: MailboxId,
    wanted: &[i64],
) -> Result<usize> {
    // The mailbox row first: it orders concurrent writers of this mailbox.
    let Some(r) = row_opt(
        tx,
        "SELECT highestmodseq FROM mailboxes WHERE id = $1 FOR UPDATE",
        &[&mailbox],
    )
    .await?
    else {
        return Err(StoreError::NotFound(format!("mailbox #{mailbox}")));
    };
    let _: i64 = get(&r, 0)?;
    let present = rows(
        tx,
        "DELETE FROM mailbox_entries WHERE mailbox_id = $1 AND uid = ANY($2)
         RETURNING uid, email_id",
        &[&mailbox, &wanted],
    )
    .await?;
    if present.is_empty() {
        return Ok(0);
    }
    let k = i64_of(present.len() as u64);
    let modseq: i64 = get(
        &row_one(
            tx,
            "UPDATE mailboxes SET highestmodseq = highestmodseq + 1, messages = messages - $1
             WHERE id = $2 RETURNING highestmodseq",
            &[&k, &mailbox],
        )
        .await?,
        0,
    )?;
    let gone: Vec<i64> = present
        .iter()
        .map(|r| get::<i64>(r, 0))
        .collect::<Result<_>>()?;
    exec(
        tx,
        "INSERT INTO changes (mailbox_id, modseq, uid, kind)
         SELECT $1, $2, unnest($3::bigint[]), 2",
        &[&mailbox, &modseq, &gone],
    )
    .await?;
    let emails: Vec<i64> = present
        .iter()
        .map(|r| get::<i64>(r, 1))
        .collect::<Result<BTreeSet<_>>>()?
        .into_iter()
        .collect();
    // Emails in no mailbox any more go, with their quota and blob reference.
    let orphans = rows(
        tx,
        "DELETE FROM emails e WHERE e.id = ANY($1)
           AND NOT EXISTS (SELECT 1 FROM mailbox_entries me WHERE me.email_id = e.id)
         RETURNING e.blob_id, e.size",
        &[&emails],
    )
    .await?;
    if orphans.is_empty() {
        return Ok(present.len());
    }
    let mut freed = 0i64;
    let mut blob_refs: Vec<Vec<u8>> = Vec::with_capacity(orphans.len());
    for r in &orphans {
        blob_refs.push(get(r, 0)?);
        freed = freed.saturating_add(get::<i64>(r, 1)?);
    }
    exec(
        tx,
        "UPDATE accounts SET used_bytes = greatest(used_bytes - $1, 0),
                             used_messages = greatest(used_messages - $2, 0)
         WHERE id = $3",
        &[&freed, &i64_of(orphans.len() as u64), &account],
    )
    .await?;
    // In blob order, so concurrent expunges lock blob rows in one order.
    blob_refs.sort();
    for b in &blob_refs {
        blobs::unref(tx, b).await?;
    }
    Ok(present.len())
}

/// Change-log rows after `since`, in MODSEQ order.
pub(crate) async fn changes_since(
    tx: &Tx<'_>,
    mailbox: MailboxId,
    since: u64,
) -> Result<Vec<Change>> {
    let rs = rows(
        tx,
        "SELECT modseq, uid, kind FROM changes WHERE mailbox_id = $1 AND modseq > $2
         ORDER BY modseq, uid",
        &[&mailbox, &i64_of(since)],
    )
    .await?;
    rs.iter()
        .map(|r| {
            Ok(Change {
                modseq: u64_of(get(r, 0)?),
                uid: uid_of(get(r, 1)?)?,
                kind: if get::<i32>(r, 2)? == 2 {
                    ChangeKind::Expunge
                } else {
                    ChangeKind::Flags
                },
            })
        })
        .collect()
}
