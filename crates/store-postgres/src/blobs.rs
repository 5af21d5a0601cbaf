//! Message bytes in PostgreSQL, where every node sees them: one `blobs` row per
//! content (id = BLAKE3 hash, see `BlobId`; size, refcount) and its bytes in `blob_chunks` of at most
//! [`CHUNK`] octets each (a `bytea` value is read and written whole, so chunks bound
//! the memory of one statement and keep rows out of PostgreSQL's 1 GB value limit).
//!
//! A blob's chunks are written by the transaction that creates its row; a blob whose
//! row exists has all its chunks. `refcount` counts emails and queued messages;
//! a blob at 0 is garbage unless a live snapshot (a POP3 maildrop) pins it. Reading
//! streams the chunks ([`open`]).
//!
//! With object storage configured (`blobs_s3`), a new blob's bytes go to its bucket
//! instead of `blob_chunks`, uploaded by the transaction that creates its row before
//! it commits (so a row still always has its bytes); the row is the same, and blobs
//! that have chunks are read from them whatever the setting.

use crate::blobs_s3::{self, S3Blobs};
use crate::{Inner, Tx, exec, get, in_tx, pg_err, row_opt, rows};
use buudien_store::{BlobId, BlobReader, Result, StoreError};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// Octets per chunk (1 MiB).
pub const CHUNK: usize = 1 << 20;

/// Blobs garbage collection looks at in one call, at most.
const GC_BATCH: i64 = 10_000;

/// Adds `refs` references to the blob of `bytes` (id `id`), creating it with its
/// chunks (or, with `s3`, its object, uploaded before this transaction commits)
/// when it does not exist. Revives garbage (refcount 0) that was not collected
/// yet: its bytes are still there. A blob that exists is never written again.
pub(crate) async fn add_refs(
    tx: &Tx<'_>,
    s3: Option<&S3Blobs>,
    id: &BlobId,
    bytes: &bytes::Bytes,
    refs: i64,
) -> Result<()> {
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
            if let Some(s3) = s3 {
                blobs_s3::before_put(tx, id).await?;
                return s3.put(id, bytes).await;
            }
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

/// The queue between a blob's chunk fetcher and its reader: chunks, then `None`
/// at the end (a channel closed without it is an error, never a short read).
pub(crate) type ChunkRx = tokio::sync::mpsc::Receiver<std::io::Result<Option<Vec<u8>>>>;

/// Chunks fetched ahead of the reader, at most (so a reader holds about 3 MiB).
pub(crate) const READ_AHEAD: usize = 2;

/// Opens a blob for reading: its size, the length of its chunks and its first chunk
/// are read at once (so a missing blob fails here, and one whose chunks do not add up
/// to its size fails as damaged before any byte is read, as the protocols expect),
/// the other chunks one at a time by a task, at most [`READ_AHEAD`] ahead of the
/// reader: a large message is never held whole. A blob without chunks is read from
/// object storage when it is configured.
pub(crate) async fn open(inner: &Arc<Inner>, blob: &BlobId) -> Result<BlobReader> {
    // Without chunks, the bytes are in object storage (when there is one).
    let in_bucket = inner.s3.is_some();
    let (size, first) = in_tx!(inner, |tx| async move {
        // octet_length of a stored bytea comes from its header, without reading it.
        let Some(r) = row_opt(
            tx,
            "SELECT size, (SELECT coalesce(sum(octet_length(data)), 0)::bigint \
             FROM blob_chunks WHERE blob_id = $1) FROM blobs WHERE id = $1",
            &[&&blob.0[..]],
        )
        .await?
        else {
            return Err(StoreError::NotFound(format!("blob {}", blob.to_hex())));
        };
        let size = u64::try_from(get::<i64>(&r, 0)?).unwrap_or(0);
        let stored = u64::try_from(get::<i64>(&r, 1)?).unwrap_or(0);
        if stored != size && !(stored == 0 && in_bucket) {
            return Err(StoreError::Damaged(format!(
                "blob {} has {stored} octets in its chunks, its row says {size}",
                blob.to_hex()
            )));
        }
        let first = row_opt(
            tx,
            "SELECT data FROM blob_chunks WHERE blob_id = $1 AND seq = 0",
            &[&&blob.0[..]],
        )
        .await?;
        let first: Option<Vec<u8>> = match first {
            Some(r) => Some(get(&r, 0)?),
            None => None,
        };
        Ok((size, first))
    })?;
    let id = *blob;
    let first = match (first, &inner.s3) {
        (Some(first), _) => first,
        (None, Some(s3)) if size > 0 => return blobs_s3::open(inner, s3, id, size).await,
        (None, _) => Vec::new(),
    };
    let damaged = move |got: u64| {
        StoreError::Damaged(format!(
            "blob {} has {got} octets in its chunks, its row says {size}",
            id.to_hex()
        ))
    };
    let got = first.len() as u64;
    if got >= size {
        if got != size {
            return Err(damaged(got));
        }
        return Ok(Box::pin(std::io::Cursor::new(first)));
    }
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
    let owner = Arc::clone(inner);
    inner.runtime.spawn(async move {
        let mut got = got;
        if tx.send(Ok(Some(first))).await.is_err() {
            return;
        }
        let mut seq = 1i32;
        let end = loop {
            let chunk = match owner.client().await {
                Ok(c) => c
                    .query_opt(
                        "SELECT data FROM blob_chunks WHERE blob_id = $1 AND seq = $2",
                        &[&&id.0[..], &seq],
                    )
                    .await
                    .map_err(pg_err),
                Err(e) => Err(e),
            };
            let data: Vec<u8> = match chunk {
                Ok(Some(r)) => match r.try_get(0) {
                    Ok(d) => d,
                    Err(e) => break Err(pg_err(e)),
                },
                Ok(None) if got == size => break Ok(()),
                Ok(None) => break Err(damaged(got)),
                Err(e) => break Err(e),
            };
            got = got.saturating_add(data.len() as u64);
            if got > size {
                break Err(damaged(got));
            }
            if tx.send(Ok(Some(data))).await.is_err() {
                return;
            }
            seq = seq.saturating_add(1);
        };
        let last = match end {
            Ok(()) => Ok(None),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        let _ = tx.send(last).await;
    });
    Ok(Box::pin(ChunkReader::new(rx)))
}

/// Reads the chunks a fetcher task sends.
pub(crate) struct ChunkReader {
    rx: ChunkRx,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl ChunkReader {
    /// A reader of what a fetcher task sends on `rx`.
    pub(crate) fn new(rx: ChunkRx) -> ChunkReader {
        ChunkReader {
            rx,
            buf: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

impl AsyncRead for ChunkReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let this = &mut *self;
            if let Some(rest) = this.buf.get(this.pos..)
                && !rest.is_empty()
            {
                let n = rest.len().min(out.remaining());
                out.put_slice(rest.get(..n).unwrap_or_default());
                this.pos += n;
                return Poll::Ready(Ok(()));
            }
            if this.done {
                return Poll::Ready(Ok(()));
            }
            match this.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(Some(chunk)))) => {
                    this.buf = chunk;
                    this.pos = 0;
                }
                Poll::Ready(Some(Ok(None))) => this.done = true,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => {
                    return Poll::Ready(Err(std::io::Error::other(
                        "reading a blob from PostgreSQL ended early",
                    )));
                }
            }
        }
    }
}

/// A blob's bytes (from its chunks, else from `s3`). [`StoreError::NotFound`] when it
/// does not exist (collected), and [`StoreError::Damaged`] when its bytes do not add
/// up to its size.
pub(crate) async fn read(tx: &Tx<'_>, s3: Option<&S3Blobs>, blob: &BlobId) -> Result<Vec<u8>> {
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
    if let Some(s3) = s3
        && chunks.is_empty()
    {
        return s3.read(blob, size as u64).await;
    }
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
/// written is waited for and then seen. With `s3`, each deleted row's object is
/// recorded in `blob_deletions`, for `blobs_s3::delete_pending` once this commits.
pub(crate) async fn collect_garbage(tx: &Tx<'_>, s3: bool) -> Result<usize> {
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
        if s3 {
            blobs_s3::schedule_delete(tx, id).await?;
        }
        exec(tx, "DELETE FROM blobs WHERE id = $1", &[&id]).await?;
        n += 1;
    }
    Ok(n)
}
