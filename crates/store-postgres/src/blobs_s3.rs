//! Message bytes in S3-compatible object storage (optional: [`S3Settings`]).
//!
//! The `blobs` row stays the truth for a blob's existence, size and refcount; only
//! its bytes move, to the object `<prefix>/<hex of the id>` instead of `blob_chunks`.
//!
//! # Never losing mail
//! - Writing: the transaction that creates a blob row PUTs the object, and awaits its
//!   success, before it commits; the row is what makes the blob visible. A failed PUT
//!   fails the transaction (a temporary store error: `451`/`NO`/`-ERR`), so no row
//!   is ever without its object. A blob whose row exists is never uploaded again.
//! - Collecting: two phases. The transaction that deletes garbage rows records their
//!   ids in `blob_deletions`; only after it commits are the objects deleted (and
//!   those records with them). A crash between the two leaves records that the next
//!   collection finishes.
//! - A delivery that recreates a blob whose row was just collected removes its
//!   `blob_deletions` record (waiting for a collector deleting that object: the
//!   collector holds the record's row lock while it deletes) before its PUT, so a
//!   late DELETE can never remove the bytes of a live row.
//!
//! Orphan objects (a PUT whose transaction then failed, or a node that crashed before
//! committing) are harmless: nothing refers to them, and a later delivery of the same
//! bytes reuses the key. They could be swept by listing `<prefix>/` for objects older
//! than a day that have no `blobs` row and deleting them through `blob_deletions` as
//! collection does: the record must be written only where no row exists, under a lock
//! a delivery creating that row also takes (a plain "no row, delete" could race a
//! delivery of the same bytes whose row is not committed yet). Not done yet.
//!
//! Reading fetches ranges of [`CHUNK`] octets, at most [`READ_AHEAD`] ahead of the
//! reader, like the chunks in PostgreSQL: memory stays bounded and each request is
//! short, however slowly a client reads a large message. Blobs stored in
//! `blob_chunks` (from before S3 was configured) are still read from there.

use crate::blobs::{CHUNK, ChunkReader, READ_AHEAD};
use crate::{Inner, Tx, exec, in_tx, rows};
use buudien_store::{BlobId, BlobReader, Result, StoreError};
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use std::sync::Arc;
use std::time::Duration;

/// How long one request to the object store may take (a PUT of a large message
/// included).
pub const S3_TIMEOUT: Duration = Duration::from_secs(120);
/// How long connecting to the object store may take.
pub const S3_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries of a failed request (server errors, timeouts), at most…
const S3_RETRIES: usize = 3;
/// … and within this time from the first try.
const S3_RETRY_TIME: Duration = Duration::from_secs(15);
/// Objects collection deletes per transaction.
const DELETE_BATCH: i64 = 100;
/// Deletions in flight at once.
const DELETE_PARALLEL: usize = 8;
/// Rounds of [`DELETE_BATCH`] one collection runs, at most.
const DELETE_ROUNDS: usize = 100;

/// Where blob bytes go when not in PostgreSQL: an S3-compatible bucket.
#[derive(Clone, Default)]
pub struct S3Settings {
    /// The endpoint URL (`https://s3.example:9000`); `None` for AWS itself.
    pub endpoint: Option<String>,
    /// The bucket (it must exist).
    pub bucket: String,
    /// The region (for the request signatures).
    pub region: String,
    /// Keys are `<prefix>/<hex of the blob id>`.
    pub prefix: String,
    /// The access key id.
    pub access_key: String,
    /// The secret access key.
    pub secret_key: String,
    /// A session token, for temporary credentials.
    pub session_token: Option<String>,
    /// Allow an `http://` endpoint (credentials signed, bytes in the clear).
    pub allow_http: bool,
}

/// The secret is never printed.
impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("allow_http", &self.allow_http)
            .finish_non_exhaustive()
    }
}

/// An open bucket.
pub(crate) struct S3Blobs {
    store: Arc<AmazonS3>,
    prefix: String,
    bucket: String,
}

/// An object store failure: temporary (the protocol answers "try again later").
fn s3_err(what: &str, e: object_store::Error) -> StoreError {
    StoreError::Io(format!("object storage, {what}: {e}"))
}

impl S3Blobs {
    /// Opens the bucket and checks it answers (one listing request of `prefix`).
    pub(crate) async fn connect(s: &S3Settings) -> Result<S3Blobs> {
        let prefix = s.prefix.trim_matches('/').to_string();
        if prefix.is_empty() || s.bucket.is_empty() {
            return Err(StoreError::Refused(
                "object storage needs a bucket and a prefix".into(),
            ));
        }
        let options = ClientOptions::new()
            .with_timeout(S3_TIMEOUT)
            .with_connect_timeout(S3_CONNECT_TIMEOUT)
            .with_allow_http(s.allow_http);
        let retry = RetryConfig {
            max_retries: S3_RETRIES,
            retry_timeout: S3_RETRY_TIME,
            ..RetryConfig::default()
        };
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&s.bucket)
            .with_region(&s.region)
            .with_access_key_id(&s.access_key)
            .with_secret_access_key(&s.secret_key)
            .with_allow_http(s.allow_http)
            .with_client_options(options)
            .with_retry(retry);
        if let Some(e) = &s.endpoint {
            b = b.with_endpoint(e);
        }
        if let Some(t) = &s.session_token {
            b = b.with_token(t);
        }
        let store = b
            .build()
            .map_err(|e| StoreError::Refused(format!("object storage settings: {e}")))?;
        let blobs = S3Blobs {
            store: Arc::new(store),
            prefix,
            bucket: s.bucket.clone(),
        };
        // One page of the listing: a missing bucket or refused credentials show now,
        // not at the first delivery.
        let probe = Path::from(blobs.prefix.as_str());
        let mut list = blobs.store.list(Some(&probe));
        if let Some(Err(e)) = list.next().await {
            return Err(s3_err(&format!("bucket {}", s.bucket), e));
        }
        Ok(blobs)
    }

    /// `bucket B, prefix P`, for the logs.
    pub(crate) fn describe(&self) -> String {
        format!("bucket {}, prefix {}", self.bucket, self.prefix)
    }

    /// The key of a blob's object.
    pub(crate) fn path(&self, id: &BlobId) -> Path {
        Path::from(format!("{}/{}", self.prefix, id.to_hex()))
    }

    /// Uploads a blob's bytes (shared, not copied); returns once the store has them.
    pub(crate) async fn put(&self, id: &BlobId, bytes: &bytes::Bytes) -> Result<()> {
        let payload = PutPayload::from(bytes.clone());
        self.store
            .put(&self.path(id), payload)
            .await
            .map_err(|e| s3_err(&format!("storing blob {}", id.to_hex()), e))?;
        Ok(())
    }

    /// Octets `range` of a blob's object; a missing object is damage (its row exists).
    async fn range(&self, id: &BlobId, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
        match self.store.get_range(&self.path(id), range).await {
            Ok(b) => Ok(Vec::from(b)),
            Err(object_store::Error::NotFound { .. }) => Err(StoreError::Damaged(format!(
                "blob {} has a row but no object in the bucket",
                id.to_hex()
            ))),
            Err(e) => Err(s3_err(&format!("reading blob {}", id.to_hex()), e)),
        }
    }

    /// A whole blob of `size` octets (for the text index: bounded by its caller).
    pub(crate) async fn read(&self, id: &BlobId, size: u64) -> Result<Vec<u8>> {
        if size == 0 {
            return Ok(Vec::new());
        }
        let bytes = self.range(id, 0..size).await?;
        if bytes.len() as u64 != size {
            return Err(damaged(id, bytes.len() as u64, size));
        }
        Ok(bytes)
    }

    /// Deletes a blob's object (one already gone is fine).
    async fn delete(&self, id: &BlobId) -> Result<()> {
        match self.store.delete(&self.path(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3_err(&format!("deleting blob {}", id.to_hex()), e)),
        }
    }
}

fn damaged(id: &BlobId, got: u64, size: u64) -> StoreError {
    StoreError::Damaged(format!(
        "blob {} has {got} octets in the bucket, its row says {size}",
        id.to_hex()
    ))
}

/// Before the PUT of a blob whose row this transaction creates: forgets a pending
/// deletion of its object, waiting for a collector that is deleting it right now.
pub(crate) async fn before_put(tx: &Tx<'_>, id: &BlobId) -> Result<()> {
    exec(
        tx,
        "DELETE FROM blob_deletions WHERE id = $1",
        &[&&id.0[..]],
    )
    .await?;
    Ok(())
}

/// Opens a blob of `size` octets (> 0) for reading: the first range is fetched now
/// (so an unreachable store or a missing object fails here), the others by a task at
/// most [`READ_AHEAD`] ranges ahead of the reader.
pub(crate) async fn open(
    inner: &Inner,
    s3: &Arc<S3Blobs>,
    id: BlobId,
    size: u64,
) -> Result<BlobReader> {
    let chunk = CHUNK as u64;
    let first = s3.range(&id, 0..size.min(chunk)).await?;
    let mut got = first.len() as u64;
    if got >= size {
        if got != size {
            return Err(damaged(&id, got, size));
        }
        return Ok(Box::pin(std::io::Cursor::new(first)));
    }
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
    let s3 = Arc::clone(s3);
    inner.runtime.spawn(async move {
        if tx.send(Ok(Some(first))).await.is_err() {
            return;
        }
        let end = loop {
            if got == size {
                break Ok(());
            }
            let data = match s3
                .range(&id, got..size.min(got.saturating_add(chunk)))
                .await
            {
                Ok(d) if !d.is_empty() => d,
                Ok(_) => break Err(damaged(&id, got, size)),
                Err(e) => break Err(e),
            };
            got = got.saturating_add(data.len() as u64);
            if got > size {
                break Err(damaged(&id, got, size));
            }
            if tx.send(Ok(Some(data))).await.is_err() {
                return;
            }
        };
        let last = end
            .map(|()| None)
            .map_err(|e| std::io::Error::other(e.to_string()));
        let _ = tx.send(last).await;
    });
    Ok(Box::pin(ChunkReader::new(rx)))
}

/// Collection's second phase: deletes the objects of the rows the first phase
/// removed (`blob_deletions`), [`DELETE_BATCH`] per transaction. Each record is
/// locked while its object is deleted (see `before_put`) and removed only once the
/// store confirmed. Returns how many objects went; a failure of the store is an error
/// after the batches that worked (their records are gone, the rest wait).
pub(crate) async fn delete_pending(inner: &Inner, s3: &S3Blobs) -> Result<usize> {
    let mut total = 0;
    for _ in 0..DELETE_ROUNDS {
        let (n, more, failed) = in_tx!(inner, |tx| async move {
            let ids = rows(
                tx,
                "SELECT id FROM blob_deletions ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                &[&DELETE_BATCH],
            )
            .await?;
            let more = ids.len() as i64 == DELETE_BATCH;
            let ids: Vec<BlobId> = ids
                .iter()
                .filter_map(|r| r.try_get::<_, &[u8]>(0).ok())
                .filter_map(|b| <[u8; 32]>::try_from(b).ok().map(BlobId))
                .collect();
            let results: Vec<(BlobId, Result<()>)> = futures_util::stream::iter(ids)
                .map(|id| async move { (id, s3.delete(&id).await) })
                .buffer_unordered(DELETE_PARALLEL)
                .collect()
                .await;
            let mut done: Vec<&[u8]> = Vec::with_capacity(results.len());
            let mut failed = None;
            for (id, r) in &results {
                match r {
                    Ok(()) => done.push(&id.0[..]),
                    Err(e) => failed = Some(e.clone()),
                }
            }
            exec(
                tx,
                "DELETE FROM blob_deletions WHERE id = ANY($1)",
                &[&done],
            )
            .await?;
            Ok((done.len(), more, failed))
        })?;
        total += n;
        if let Some(e) = failed {
            return Err(e);
        }
        if !more {
            break;
        }
    }
    Ok(total)
}

/// Records a collected blob's object for deletion (in the transaction that deletes
/// its row).
pub(crate) async fn schedule_delete(tx: &Tx<'_>, id: &[u8]) -> Result<()> {
    exec(
        tx,
        "INSERT INTO blob_deletions (id) VALUES ($1) ON CONFLICT DO NOTHING",
        &[&id],
    )
    .await?;
    Ok(())
}
