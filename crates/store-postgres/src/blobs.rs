//! Message bytes in PostgreSQL, where every node sees them: one `blobs` row per
//! content (id = SHA-256, size, refcount) and its bytes in `blob_chunks` of at most
//! [`CHUNK`] octets each (a `bytea` value is read and written whole, so chunks bound
//! the memory of one statement and keep rows out of PostgreSQL's 1 GB value limit).
//!
//! A blob's chunks are written by the transaction that creates its row; a blob whose
//! row exists has all its chunks. `refcount` counts emails and queued messages;
//! a blob at 0 is garbage unless a live snapshot (a POP3 maildrop) pins it.

use crate::{Tx, exec, get, row_opt, rows};
use buudien_store::{BlobId, Result, StoreError};

/// Octets per chunk (1 MiB).
pub const CHUNK: usize = 1 << 20;

/// Blobs garbage collection looks at in one call, at most.
const GC_BATCH: i64 = 10_000;

/// Adds `refs` references to the blob of `bytes` (id `id`), creating it with its
/// chunks when it does not exist. Revives garbage (refcount 0) that was not collected
/// yet: its chunks are still there.
pub(crate) async fn add_refs(tx: &Tx<'_>, id: &BlobId, bytes: &[u8], refs: i64) -> Result<()> {
    let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
    // Portable upsert (no xmax tricks): update, else insert; a concurrent insert of
    // the same blob makes ours do nothing, and the update is tried again.
    for _ in 0..3 {
        let n = exec(
            tx,
            "UPDATE blobs SET refcount = greatest(refcount, 0) + $2 WHERE id = $1",
            &[&&id.0[..], &refs],
        )
        .await?;
        if n > 0 {
            return Ok(());
        }
        let n = exec(
            tx,
            "INSERT INTO blobs (id, size, refcount) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&&id.0[..], &size, &refs],
        )
        .await?;
        if n > 0 {
            for (seq, chunk) in bytes.chunks(CHUNK).enumerate() {
                let seq = i32::try_from(seq)
                    .map_err(|_| StoreError::Refused("message too large".into()))?;
                exec(
                    tx,
                    "INSERT INTO blob_chunks (blob_id, seq, data) VALUES ($1, $2, $3)",
                    &[&&id.0[..], &seq, &chunk],
                )
                .await?;
            }
            return Ok(());
        }
    }
    Err(StoreError::Busy)
}

/// Drops one reference.
pub(crate) async fn unref(tx: &Tx<'_>, id: &[u8]) -> Result<()> {
    exec(
        tx,
        "UPDATE blobs SET refcount = refcount - 1 WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(())
}

/// A blob's bytes. [`StoreError::NotFound`] when it does not exist (collected), and
/// [`StoreError::Damaged`] when its chunks do not add up to its size.
pub(crate) async fn read(tx: &Tx<'_>, blob: &BlobId) -> Result<Vec<u8>> {
    let Some(r) = row_opt(tx, "SELECT size FROM blobs WHERE id = $1", &[&&blob.0[..]]).await?
    else {
        return Err(StoreError::NotFound(format!("blob {}", blob.to_hex())));
    };
    let size = usize::try_from(get::<i64>(&r, 0)?).unwrap_or(0);
    let mut out = Vec::with_capacity(size);
    let chunks = rows(
        tx,
        "SELECT data FROM blob_chunks WHERE blob_id = $1 ORDER BY seq",
        &[&&blob.0[..]],
    )
    .await?;
    for c in &chunks {
        let data: &[u8] = get(c, 0)?;
        out.extend_from_slice(data);
    }
    if out.len() != size {
        return Err(StoreError::Damaged(format!(
            "blob {} has {} octets in its chunks, its row says {size}",
            blob.to_hex(),
            out.len()
        )));
    }
    Ok(out)
}

/// Deletes unreferenced blobs no live snapshot pins (and snapshots whose lease ran
/// out); returns how many blobs went. Each candidate is locked before its pins are
/// looked at: a snapshot pins under a share lock of the blob row, so a pin being
/// written is waited for and then seen.
pub(crate) async fn collect_garbage(tx: &Tx<'_>) -> Result<usize> {
    exec(tx, "DELETE FROM snapshots WHERE until < now()", &[]).await?;
    let candidates = rows(
        tx,
        "SELECT id FROM blobs WHERE refcount <= 0 ORDER BY id LIMIT $1",
        &[&GC_BATCH],
    )
    .await?;
    let mut n = 0;
    for c in &candidates {
        let id: &[u8] = get(c, 0)?;
        let locked = row_opt(
            tx,
            "SELECT 1 FROM blobs WHERE id = $1 AND refcount <= 0 FOR UPDATE",
            &[&id],
        )
        .await?;
        if locked.is_none() {
            continue;
        }
        let pinned = row_opt(
            tx,
            "SELECT 1 FROM snapshot_blobs p JOIN snapshots s ON s.id = p.snapshot_id
             WHERE p.blob_id = $1 AND s.until >= now() LIMIT 1",
            &[&id],
        )
        .await?;
        if pinned.is_some() {
            continue;
        }
        exec(tx, "DELETE FROM blobs WHERE id = $1", &[&id]).await?;
        n += 1;
    }
    Ok(n)
}
