//! The outbound queue: rows in `queue` and `queue_rcpts`, with the SQLite backend's
//! semantics. A queued message holds one reference on its blob.
//!
//! Claims: `SELECT … FOR UPDATE SKIP LOCKED` picks due messages no other worker is
//! claiming at this moment, and `lease_until` (written in the same transaction) keeps
//! them from other workers on any node until released or the lease runs out, so a
//! worker that dies leaves its messages to the others. `claimed_by` names the node
//! that claimed (when it has a name), so the node restarted after a crash takes back
//! its own claims at once.

use crate::mail::{blob_from, i64_of, u64_of};
use crate::{Tx, blobs, exec, get, row_one, row_opt, rows};
use buudien_store::{
    BlobId, Envelope, NewRecipient, Notify, Outcome, QueueId, QueuedMessage, QueuedRecipient,
    RcptState, Result, Ret, StoreError,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PENDING: i32 = 0;
const DELIVERED: i32 = 1;
const FAILED: i32 = 2;

/// Milliseconds since the epoch, saturating.
fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn time_of(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64_of(ms))
}

fn notify_bits(n: Option<Notify>) -> Option<i32> {
    n.map(|n| i32::from(n.success) | i32::from(n.failure) << 1 | i32::from(n.delay) << 2)
}

fn notify_of(bits: Option<i32>) -> Option<Notify> {
    bits.map(|b| Notify {
        success: b & 1 != 0,
        failure: b & 2 != 0,
        delay: b & 4 != 0,
    })
}

fn ret_code(r: Option<Ret>) -> Option<i32> {
    r.map(|r| match r {
        Ret::Full => 1,
        Ret::Headers => 2,
    })
}

fn ret_of(code: Option<i32>) -> Option<Ret> {
    match code {
        Some(1) => Some(Ret::Full),
        Some(2) => Some(Ret::Headers),
        _ => None,
    }
}

/// Inserts a queued message and its recipients (the caller counted the blob
/// reference). Every recipient is due at `received`.
pub(crate) async fn insert(
    tx: &Tx<'_>,
    blob: &BlobId,
    size: i64,
    received: SystemTime,
    envelope: &Envelope,
    rcpts: &[NewRecipient],
) -> Result<QueueId> {
    let at = millis(received);
    let id: i64 = get(
        &row_one(
            tx,
            "INSERT INTO queue (sender, envid, ret, eight_bit, smtputf8, blob_id, size, queued_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            &[
                &envelope.sender,
                &envelope.envid,
                &ret_code(envelope.ret),
                &envelope.eight_bit,
                &envelope.smtputf8,
                &&blob.0[..],
                &size,
                &at,
            ],
        )
        .await?,
        0,
    )?;
    for (i, r) in rcpts.iter().enumerate() {
        let idx =
            i32::try_from(i).map_err(|_| StoreError::Refused("too many recipients".into()))?;
        exec(
            tx,
            "INSERT INTO queue_rcpts (queue_id, idx, address, orcpt, notify, next_attempt)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&id, &idx, &r.address, &r.orcpt, &notify_bits(r.notify), &at],
        )
        .await?;
    }
    Ok(id)
}

const MESSAGE_COLUMNS: &str = "SELECT q.id, q.sender, q.envid, q.ret, q.eight_bit, q.smtputf8, \
     q.blob_id, q.size, q.queued_at FROM queue q";

/// The messages of these rows, with their recipients.
async fn load(tx: &Tx<'_>, rs: &[tokio_postgres::Row]) -> Result<Vec<QueuedMessage>> {
    let mut out = Vec::with_capacity(rs.len());
    for r in rs {
        let id: i64 = get(r, 0)?;
        out.push(QueuedMessage {
            id,
            envelope: Envelope {
                sender: get(r, 1)?,
                envid: get(r, 2)?,
                ret: ret_of(get(r, 3)?),
                eight_bit: get(r, 4)?,
                smtputf8: get(r, 5)?,
            },
            blob: blob_from(get(r, 6)?)?,
            size: u64_of(get(r, 7)?),
            queued_at: time_of(get(r, 8)?),
            recipients: recipients(tx, id).await?,
        });
    }
    Ok(out)
}

async fn recipients(tx: &Tx<'_>, id: QueueId) -> Result<Vec<QueuedRecipient>> {
    let rs = rows(
        tx,
        "SELECT idx, address, orcpt, notify, state, attempts, next_attempt, last_reply,
                relayed, reported
         FROM queue_rcpts WHERE queue_id = $1 ORDER BY idx",
        &[&id],
    )
    .await?;
    rs.iter()
        .map(|r| {
            Ok(QueuedRecipient {
                index: u32::try_from(get::<i32>(r, 0)?)
                    .map_err(|_| StoreError::Database("bad recipient index".into()))?,
                address: get(r, 1)?,
                orcpt: get(r, 2)?,
                notify: notify_of(get(r, 3)?),
                state: match get::<i32>(r, 4)? {
                    PENDING => RcptState::Pending,
                    DELIVERED => RcptState::Delivered,
                    _ => RcptState::Failed,
                },
                attempts: u32::try_from(get::<i32>(r, 5)?).unwrap_or(0),
                next_attempt: time_of(get(r, 6)?),
                last_reply: get(r, 7)?,
                relayed: get(r, 8)?,
                reported: get(r, 9)?,
            })
        })
        .collect()
}

/// Claims up to `limit` messages that need the worker: a pending recipient is due,
/// or nothing is pending any more (results to report). Rows another worker is
/// claiming right now are skipped, not waited for.
pub(crate) async fn claim(
    tx: &Tx<'_>,
    now: SystemTime,
    lease: Duration,
    limit: usize,
    node: Option<&str>,
) -> Result<Vec<QueuedMessage>> {
    let now_ms = millis(now);
    let until = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
    let ids = rows(
        tx,
        "SELECT q.id FROM queue q
         WHERE q.lease_until <= $1
           AND (EXISTS (SELECT 1 FROM queue_rcpts r
                        WHERE r.queue_id = q.id AND r.state = 0 AND r.next_attempt <= $1)
                OR NOT EXISTS (SELECT 1 FROM queue_rcpts r
                               WHERE r.queue_id = q.id AND r.state = 0))
         ORDER BY q.queued_at, q.id LIMIT $2
         FOR UPDATE OF q SKIP LOCKED",
        &[&now_ms, &i64_of(limit as u64)],
    )
    .await?;
    let ids: Vec<i64> = ids.iter().map(|r| get(r, 0)).collect::<Result<_>>()?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    exec(
        tx,
        "UPDATE queue SET lease_until = $1, claimed_by = $3 WHERE id = ANY($2)",
        &[&until, &ids, &node],
    )
    .await?;
    // A flush before this claim is served by this very attempt.
    exec(
        tx,
        "UPDATE queue_rcpts SET next_attempt = 0 WHERE queue_id = ANY($1) AND next_attempt < 0",
        &[&ids],
    )
    .await?;
    let rs = rows(
        tx,
        &format!("{MESSAGE_COLUMNS} WHERE q.id = ANY($1) ORDER BY q.queued_at, q.id"),
        &[&ids],
    )
    .await?;
    load(tx, &rs).await
}

async fn exists(tx: &Tx<'_>, id: QueueId) -> Result<bool> {
    Ok(row_opt(tx, "SELECT 1 FROM queue WHERE id = $1", &[&id])
        .await?
        .is_some())
}

/// Records attempt results; only pending recipients change, and a message removed
/// meanwhile is not an error.
pub(crate) async fn record(tx: &Tx<'_>, id: QueueId, results: &[(u32, Outcome)]) -> Result<()> {
    for (idx, outcome) in results {
        let Ok(idx) = i32::try_from(*idx) else {
            continue;
        };
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
        exec(
            tx,
            "UPDATE queue_rcpts SET state = $1, last_reply = $2, relayed = $3,
                    attempts = attempts + 1,
                    next_attempt = CASE WHEN next_attempt < 0 THEN 0
                                        ELSE coalesce($4, next_attempt) END
             WHERE queue_id = $5 AND idx = $6 AND state = 0",
            &[&state, reply, &relayed, &next, &id, &idx],
        )
        .await?;
    }
    Ok(())
}

/// Marks recipients as reported.
pub(crate) async fn mark_reported(tx: &Tx<'_>, id: QueueId, indexes: &[u32]) -> Result<()> {
    let idx: Vec<i32> = indexes
        .iter()
        .filter_map(|i| i32::try_from(*i).ok())
        .collect();
    exec(
        tx,
        "UPDATE queue_rcpts SET reported = true WHERE queue_id = $1 AND idx = ANY($2)",
        &[&id, &idx],
    )
    .await?;
    Ok(())
}

/// Deletes a message's rows and drops its blob reference.
async fn delete(tx: &Tx<'_>, id: QueueId) -> Result<bool> {
    let Some(r) = row_opt(
        tx,
        "DELETE FROM queue WHERE id = $1 RETURNING blob_id",
        &[&id],
    )
    .await?
    else {
        return Ok(false);
    };
    let blob: &[u8] = get(&r, 0)?;
    blobs::unref(tx, blob).await?;
    Ok(true)
}

/// Ends a claim; a message with nothing pending and nothing unreported is removed.
/// Ends the live claims `node` made (its process is gone): they are due at once.
pub(crate) async fn release_claims_of(tx: &Tx<'_>, node: &str) -> Result<usize> {
    let n = exec(
        tx,
        "UPDATE queue SET lease_until = 0 WHERE claimed_by = $1 AND lease_until > 0",
        &[&node],
    )
    .await?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

pub(crate) async fn release(tx: &Tx<'_>, id: QueueId) -> Result<()> {
    let open = row_opt(
        tx,
        "SELECT 1 FROM queue_rcpts WHERE queue_id = $1 AND (state = 0 OR NOT reported) LIMIT 1",
        &[&id],
    )
    .await?
    .is_some();
    if open {
        exec(tx, "UPDATE queue SET lease_until = 0 WHERE id = $1", &[&id]).await?;
    } else {
        delete(tx, id).await?;
    }
    Ok(())
}

/// Every queued message, oldest first.
pub(crate) async fn list(tx: &Tx<'_>) -> Result<Vec<QueuedMessage>> {
    let rs = rows(
        tx,
        &format!("{MESSAGE_COLUMNS} ORDER BY q.queued_at, q.id"),
        &[],
    )
    .await?;
    load(tx, &rs).await
}

/// Makes pending recipients due now (the mark -1: due, and "flushed", so a deferral
/// recorded by a running attempt does not push it back).
pub(crate) async fn flush(tx: &Tx<'_>, id: Option<QueueId>) -> Result<usize> {
    let n = match id {
        Some(id) => {
            if !exists(tx, id).await? {
                return Err(StoreError::NotFound(format!("queued message {id}")));
            }
            exec(
                tx,
                "UPDATE queue_rcpts SET next_attempt = -1 WHERE queue_id = $1 AND state = 0",
                &[&id],
            )
            .await?
        }
        None => {
            exec(
                tx,
                "UPDATE queue_rcpts SET next_attempt = -1 WHERE state = 0",
                &[],
            )
            .await?
        }
    };
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Deletes a message without a report.
pub(crate) async fn remove(tx: &Tx<'_>, id: QueueId) -> Result<()> {
    if !delete(tx, id).await? {
        return Err(StoreError::NotFound(format!("queued message {id}")));
    }
    Ok(())
}

/// Fails every pending recipient with `reason`, so the worker reports it.
pub(crate) async fn bounce(tx: &Tx<'_>, id: QueueId, reason: &str) -> Result<usize> {
    if !exists(tx, id).await? {
        return Err(StoreError::NotFound(format!("queued message {id}")));
    }
    let n = exec(
        tx,
        "UPDATE queue_rcpts SET state = 2, last_reply = $1 WHERE queue_id = $2 AND state = 0",
        &[&reason, &id],
    )
    .await?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}
