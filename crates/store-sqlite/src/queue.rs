//! The outbound queue: rows in `queue` and `queue_rcpts` (schema V2). A queued message
//! holds one reference on its blob; removing the message drops it.
//!
//! Claims are a `lease_until` column set inside a `BEGIN IMMEDIATE` transaction, so
//! two workers (threads, processes, or a CLI beside the server) never hold the same
//! message at once, and a crashed worker's claim simply runs out.

use crate::admin::write_tx;
use crate::cached::Cached;
use crate::db_err;
use crate::mail::{blob_from, i64_of, u64_of};
use buudien_store::{
    BlobId, Envelope, NewRecipient, Notify, Outcome, QueueId, QueuedMessage, QueuedRecipient,
    RcptState, Result, Ret, StoreError,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PENDING: i64 = 0;
const DELIVERED: i64 = 1;
const FAILED: i64 = 2;

/// Milliseconds since the epoch, saturating (queue times need sub-second resolution:
/// tests retry after 100 ms).
fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn time_of(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64_of(ms))
}

fn notify_bits(n: Option<Notify>) -> Option<i64> {
    n.map(|n| i64::from(n.success) | i64::from(n.failure) << 1 | i64::from(n.delay) << 2)
}

fn notify_of(bits: Option<i64>) -> Option<Notify> {
    bits.map(|b| Notify {
        success: b & 1 != 0,
        failure: b & 2 != 0,
        delay: b & 4 != 0,
    })
}

fn ret_code(r: Option<Ret>) -> Option<i64> {
    r.map(|r| match r {
        Ret::Full => 1,
        Ret::Headers => 2,
    })
}

fn ret_of(code: Option<i64>) -> Option<Ret> {
    match code {
        Some(1) => Some(Ret::Full),
        Some(2) => Some(Ret::Headers),
        _ => None,
    }
}

/// Inserts a queued message and its recipients inside the submitting transaction
/// (the caller has already counted the blob reference). Every recipient is due at
/// `received`.
pub fn insert(
    tx: &Connection,
    blob: &BlobId,
    size: i64,
    received: SystemTime,
    envelope: &Envelope,
    rcpts: &[NewRecipient],
) -> Result<QueueId> {
    let at = millis(received);
    tx.exec_c(
        "INSERT INTO queue (sender, envid, ret, eight_bit, smtputf8, blob_id, size, queued_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            envelope.sender,
            envelope.envid,
            ret_code(envelope.ret),
            envelope.eight_bit,
            envelope.smtputf8,
            &blob.0[..],
            size,
            at
        ],
    )
    .map_err(db_err)?;
    let id = tx.last_insert_rowid();
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO queue_rcpts (queue_id, idx, address, orcpt, notify, next_attempt)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(db_err)?;
    for (i, r) in rcpts.iter().enumerate() {
        stmt.execute(params![
            id,
            i64_of(i as u64),
            r.address,
            r.orcpt,
            notify_bits(r.notify),
            at
        ])
        .map_err(db_err)?;
    }
    Ok(id)
}

/// The messages (oldest first) selected by `filter`, a condition on `q`, with
/// parameter `?1`.
fn load(conn: &Connection, filter: &str, arg: i64) -> Result<Vec<QueuedMessage>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT q.id, q.sender, q.envid, q.ret, q.eight_bit, q.smtputf8, q.blob_id, q.size,
                    q.queued_at
             FROM queue q WHERE {filter} ORDER BY q.queued_at, q.id"
        ))
        .map_err(db_err)?;
    let mut rows = stmt.query([arg]).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db_err)? {
        let sender: String = r.get(1).map_err(db_err)?;
        let envid: Option<String> = r.get(2).map_err(db_err)?;
        let ret: Option<i64> = r.get(3).map_err(db_err)?;
        let eight_bit: bool = r.get(4).map_err(db_err)?;
        let smtputf8: bool = r.get(5).map_err(db_err)?;
        let blob: Vec<u8> = r.get(6).map_err(db_err)?;
        let size: i64 = r.get(7).map_err(db_err)?;
        let queued_at: i64 = r.get(8).map_err(db_err)?;
        out.push(QueuedMessage {
            id: r.get(0).map_err(db_err)?,
            envelope: Envelope {
                sender,
                envid,
                ret: ret_of(ret),
                eight_bit,
                smtputf8,
            },
            blob: blob_from(blob)?,
            size: u64_of(size),
            queued_at: time_of(queued_at),
            recipients: Vec::new(),
        });
    }
    drop(rows);
    for m in &mut out {
        m.recipients = recipients(conn, m.id)?;
    }
    Ok(out)
}

type RcptRow = (
    i64,
    String,
    Option<String>,
    Option<i64>,
    i64,
    i64,
    i64,
    Option<String>,
    bool,
    bool,
);

fn recipients(conn: &Connection, id: QueueId) -> Result<Vec<QueuedRecipient>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT idx, address, orcpt, notify, state, attempts, next_attempt, last_reply,
                    relayed, reported
             FROM queue_rcpts WHERE queue_id = ?1 ORDER BY idx",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map([id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
            ))
        })
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<RcptRow>>>()
        .map_err(db_err)?;
    rows.into_iter()
        .map(
            |(
                idx,
                address,
                orcpt,
                notify,
                state,
                attempts,
                next,
                last_reply,
                relayed,
                reported,
            )| {
                Ok(QueuedRecipient {
                    index: u32::try_from(idx)
                        .map_err(|_| StoreError::Database("bad recipient index".into()))?,
                    address,
                    orcpt,
                    notify: notify_of(notify),
                    state: match state {
                        PENDING => RcptState::Pending,
                        DELIVERED => RcptState::Delivered,
                        _ => RcptState::Failed,
                    },
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    next_attempt: time_of(next),
                    last_reply,
                    relayed,
                    reported,
                })
            },
        )
        .collect()
}

/// Messages that need the worker: a pending recipient is due, or nothing is pending
/// any more (final results to report, or a message to remove after a crash between
/// reporting and release). Claimed ones get `lease_until = now + lease`.
pub fn claim(
    conn: &mut Connection,
    now: SystemTime,
    lease: Duration,
    limit: usize,
) -> Result<Vec<QueuedMessage>> {
    let now_ms = millis(now);
    let until = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
    let tx = write_tx(conn)?;
    let ids: Vec<i64> = {
        let mut stmt = tx
            .prepare_cached(
                "SELECT q.id FROM queue q
                 WHERE q.lease_until <= ?1
                   AND (EXISTS (SELECT 1 FROM queue_rcpts r
                                WHERE r.queue_id = q.id AND r.state = 0
                                  AND r.next_attempt <= ?1)
                        OR NOT EXISTS (SELECT 1 FROM queue_rcpts r
                                       WHERE r.queue_id = q.id AND r.state = 0))
                 ORDER BY q.queued_at, q.id LIMIT ?2",
            )
            .map_err(db_err)?;
        stmt.query_map(params![now_ms, i64_of(limit as u64)], |r| r.get(0))
            .map_err(db_err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err)?
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        tx.exec_c(
            "UPDATE queue SET lease_until = ?1 WHERE id = ?2",
            params![until, id],
        )
        .map_err(db_err)?;
        // A flush before this claim is served by this very attempt.
        tx.exec_c(
            "UPDATE queue_rcpts SET next_attempt = 0 WHERE queue_id = ?1 AND next_attempt < 0",
            [id],
        )
        .map_err(db_err)?;
        out.extend(load(&tx, "q.id = ?1", id)?);
    }
    tx.commit().map_err(db_err)?;
    Ok(out)
}

fn exists(conn: &Connection, id: QueueId) -> Result<bool> {
    conn.row_c("SELECT 1 FROM queue WHERE id = ?1", [id], |_| Ok(()))
        .optional()
        .map(|r| r.is_some())
        .map_err(db_err)
}

/// Records attempt results. Only pending recipients change: a result for one that is
/// final already (bounced by the administrator meanwhile) is dropped. A message removed
/// meanwhile is not an error (the worker's results have nowhere to go).
pub fn record(conn: &mut Connection, id: QueueId, results: &[(u32, Outcome)]) -> Result<()> {
    let tx = write_tx(conn)?;
    for (idx, outcome) in results {
        let (state, reply, relayed, next) = match outcome {
            Outcome::Delivered { reply, relayed } => (DELIVERED, reply, *relayed, None),
            Outcome::Failed { reply } => (FAILED, reply, false, None),
            Outcome::Deferred {
                reply,
                next_attempt,
            } => (PENDING, reply, false, Some(millis(*next_attempt))),
        };
        // A flush that came while this attempt ran (next_attempt < 0) wins over the
        // deferral's retry time: the recipient stays due now.
        tx.exec_c(
            "UPDATE queue_rcpts SET state = ?1, last_reply = ?2, relayed = ?3,
                    attempts = attempts + 1,
                    next_attempt = CASE WHEN next_attempt < 0 THEN 0
                                        ELSE coalesce(?4, next_attempt) END
             WHERE queue_id = ?5 AND idx = ?6 AND state = 0",
            params![state, reply, relayed, next, id, idx],
        )
        .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)
}

/// Marks recipients as reported.
pub fn mark_reported(conn: &mut Connection, id: QueueId, indexes: &[u32]) -> Result<()> {
    let tx = write_tx(conn)?;
    for idx in indexes {
        tx.exec_c(
            "UPDATE queue_rcpts SET reported = 1 WHERE queue_id = ?1 AND idx = ?2",
            params![id, idx],
        )
        .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)
}

/// Deletes a message's rows and drops its blob reference (inside `tx`).
fn delete(tx: &Connection, id: QueueId) -> Result<bool> {
    let blob: Option<Vec<u8>> = tx
        .row_c("SELECT blob_id FROM queue WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()
        .map_err(db_err)?;
    let Some(blob) = blob else {
        return Ok(false);
    };
    tx.exec_c("DELETE FROM queue_rcpts WHERE queue_id = ?1", [id])
        .map_err(db_err)?;
    tx.exec_c("DELETE FROM queue WHERE id = ?1", [id])
        .map_err(db_err)?;
    tx.exec_c(
        "UPDATE blobs SET refcount = refcount - 1 WHERE id = ?1",
        [&blob],
    )
    .map_err(db_err)?;
    Ok(true)
}

/// Ends a claim; a message with nothing pending and nothing unreported is removed.
pub fn release(conn: &mut Connection, id: QueueId) -> Result<()> {
    let tx = write_tx(conn)?;
    let open: bool = tx
        .row_c(
            "SELECT EXISTS (SELECT 1 FROM queue_rcpts
                            WHERE queue_id = ?1 AND (state = 0 OR reported = 0))",
            [id],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    if open {
        tx.exec_c("UPDATE queue SET lease_until = 0 WHERE id = ?1", [id])
            .map_err(db_err)?;
    } else {
        delete(&tx, id)?;
    }
    tx.commit().map_err(db_err)
}

/// Every queued message, oldest first.
pub fn list(conn: &mut Connection) -> Result<Vec<QueuedMessage>> {
    let tx = conn.transaction().map_err(db_err)?;
    let out = load(&tx, "?1 = ?1", 0)?;
    tx.commit().map_err(db_err)?;
    Ok(out)
}

/// Makes pending recipients due now. The mark is -1 (due, and "flushed"), so that a
/// deferral recorded by an attempt already running does not push it back.
pub fn flush(conn: &mut Connection, id: Option<QueueId>) -> Result<usize> {
    let tx = write_tx(conn)?;
    let n = match id {
        Some(id) => {
            if !exists(&tx, id)? {
                return Err(StoreError::NotFound(format!("queued message {id}")));
            }
            tx.exec_c(
                "UPDATE queue_rcpts SET next_attempt = -1 WHERE queue_id = ?1 AND state = 0",
                [id],
            )
        }
        None => tx.exec_c(
            "UPDATE queue_rcpts SET next_attempt = -1 WHERE state = 0",
            [],
        ),
    }
    .map_err(db_err)?;
    tx.commit().map_err(db_err)?;
    Ok(n)
}

/// Deletes a message without a report.
pub fn remove(conn: &mut Connection, id: QueueId) -> Result<()> {
    let tx = write_tx(conn)?;
    if !delete(&tx, id)? {
        return Err(StoreError::NotFound(format!("queued message {id}")));
    }
    tx.commit().map_err(db_err)
}

/// Fails every pending recipient with `reason` and makes the message due, so the
/// worker reports it.
pub fn bounce(conn: &mut Connection, id: QueueId, reason: &str) -> Result<usize> {
    let tx = write_tx(conn)?;
    if !exists(&tx, id)? {
        return Err(StoreError::NotFound(format!("queued message {id}")));
    }
    let n = tx
        .exec_c(
            "UPDATE queue_rcpts SET state = 2, last_reply = ?1 WHERE queue_id = ?2 AND state = 0",
            params![reason, id],
        )
        .map_err(db_err)?;
    tx.commit().map_err(db_err)?;
    Ok(n)
}
