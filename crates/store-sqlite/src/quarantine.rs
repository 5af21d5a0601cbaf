//! Damaged blobs. A blob is damaged when its file is missing while emails or queued
//! messages refer to it, or when the file does not have the size (or, found by
//! `check`, the hash) the index records. A damaged blob is set aside: its file (if
//! any) moves to `quarantine/<id hex>.<unix seconds>` under the data directory and
//! a `quarantine` row (schema V6) records what was wrong. The `blobs` row stays, so the
//! emails that refer to it keep their place (and can be expunged as usual); a read of
//! them fails at once with [`StoreError::Damaged`] without looking again. Expunging
//! those emails lets garbage collection drop the `blobs` row as usual; the quarantine
//! row and file stay for the operator to inspect (nothing removes them).
//!
//! A blob kept in the database (`blobs.data`) has no file and is never quarantined on
//! read; `check` hashes it and can set its bytes aside like a file's.
//!
//! On read only the size is checked (one `fstat` and one indexed row per open): hashing
//! would cost a second full read of every message served, so a same-size change of the
//! contents is found by `buudien check` alone.

use crate::admin::write_tx;
use crate::cached::{Cached, Tx};
use crate::mail::secs;
use crate::{Inner, blobs, db_err};
use buudien_store::{BlobId, Result, StoreError};
use rusqlite::{Connection, OptionalExtension, params};
use std::fs::{self, File};
use std::io::ErrorKind;
use std::time::SystemTime;

/// The directory damaged blob files move to, under the data directory.
pub(crate) const DIR: &str = "quarantine";

/// A blob file as found on disk, against its indexed size.
pub(crate) enum Found {
    /// Present with the indexed size.
    Sized(File),
    /// No file.
    Missing,
    /// Present with another size (this one).
    WrongSize(u64),
}

/// Opens `blob`'s file and compares its length with `size`.
pub(crate) fn examine(inner: &Inner, blob: &BlobId, size: u64) -> Result<Found> {
    match File::open(blobs::path(&inner.dir, blob)) {
        Ok(f) => {
            let len = f.metadata()?.len();
            Ok(if len == size {
                Found::Sized(f)
            } else {
                Found::WrongSize(len)
            })
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Found::Missing),
        Err(e) => Err(e.into()),
    }
}

/// The indexed size and reference count of a blob, if it has a row.
pub(crate) fn indexed(conn: &Connection, blob: &BlobId) -> Result<Option<(u64, i64)>> {
    conn.row_c(
        "SELECT size, refcount FROM blobs WHERE id = ?1",
        [&blob.0[..]],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
    )
    .optional()
    .map_err(db_err)
    .map(|o| o.map(|(s, rc)| (u64::try_from(s).unwrap_or(0), rc)))
}

/// Bytes kept in the database that are not of the indexed length: looked at again
/// under the write lock, set aside (see [`set_aside_inline`]) and answered
/// [`StoreError::Damaged`].
fn inline_damaged(inner: &Inner, conn: &mut Connection, blob: &BlobId) -> Result<Opened> {
    let tx = write_tx(conn)?;
    let Some((size, _)) = indexed(&tx, blob)? else {
        return Err(not_found(blob));
    };
    let Some(bytes) = inline(&tx, blob)? else {
        // Set aside by another reader meanwhile (or its file placed again).
        drop(tx);
        return open_checked(inner, conn, blob);
    };
    if bytes.len() as u64 == size {
        return Ok(Opened::Inline(bytes));
    }
    let problem = format!("wrong size ({} octets, indexed {size})", bytes.len());
    set_aside_inline(inner, &tx, blob, size, &problem, &bytes)?;
    tx.commit().map_err(db_err)?;
    tracing::error!(blob = %blob.to_hex(), problem = %problem, "damaged blob quarantined");
    Err(StoreError::Damaged(format!(
        "blob {}: {problem}; quarantined",
        blob.to_hex()
    )))
}

/// The blob's bytes when the database keeps them.
pub(crate) fn inline(conn: &Connection, blob: &BlobId) -> Result<Option<Vec<u8>>> {
    conn.row_c(
        "SELECT data FROM blobs WHERE id = ?1 AND data IS NOT NULL",
        [&blob.0[..]],
        |r| r.get(0),
    )
    .optional()
    .map_err(db_err)
}

/// What was recorded when `blob` was quarantined, if it was.
pub(crate) fn recorded(conn: &Connection, blob: &BlobId) -> Result<Option<String>> {
    conn.row_c(
        "SELECT problem FROM quarantine WHERE blob_id = ?1",
        [&blob.0[..]],
        |r| r.get(0),
    )
    .optional()
    .map_err(db_err)
}

fn not_found(blob: &BlobId) -> StoreError {
    StoreError::NotFound(format!("blob {}", blob.to_hex()))
}

/// A blob's bytes, opened for reading.
pub(crate) enum Opened {
    /// Its file, of the indexed size.
    File(File),
    /// Kept in the database (`blobs.data`).
    Inline(Vec<u8>),
}

/// Blobs in the database at least this large (16 KiB: several overflow pages) are
/// read by range when a range is asked for; smaller ones are read whole, which costs
/// less than opening a blob handle (SQLite compiles a statement for each).
const RANGE_READ_MIN: i64 = 16 << 10;

/// [`read_range`] of several blobs kept in the database, in one read transaction;
/// `None` for those it leaves to [`read_range`] (in a file, damaged, missing).
pub(crate) fn read_ranges(
    conn: &mut Connection,
    wants: &[(BlobId, std::ops::Range<u64>)],
) -> Result<Vec<Option<Vec<u8>>>> {
    let tx = Tx::deferred(conn).map_err(db_err)?;
    let out = wants
        .iter()
        .map(|(blob, range)| range_in_db(&tx, blob, range.clone()))
        .collect::<Result<Vec<_>>>()?;
    tx.commit().map_err(db_err)?;
    Ok(out)
}

/// The octets `range` of a blob kept whole in the database, inside the caller's
/// read transaction: a small one comes back with the query that finds its row, a
/// large one is read by range through a blob handle. `None` for any other blob.
fn range_in_db(
    tx: &Connection,
    blob: &BlobId,
    range: std::ops::Range<u64>,
) -> Result<Option<Vec<u8>>> {
    let row: Option<BlobRow> = tx
        .row_c(
            "SELECT rowid, size, length(data),
                    CASE WHEN size < ?2 AND length(data) = size THEN data END
             FROM blobs WHERE id = ?1",
            params![&blob.0[..], RANGE_READ_MIN],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()
        .map_err(db_err)?;
    match row {
        Some((_, size, _, Some(bytes)))
            if bytes.len() as u64 == u64::try_from(size).unwrap_or(0) =>
        {
            Ok(Some(slice(&bytes, range)))
        }
        Some((rowid, size, Some(len), None)) if len == size && size >= RANGE_READ_MIN => {
            let size = u64::try_from(size).unwrap_or(0);
            let end = range.end.min(size);
            let start = range.start.min(end);
            let (Ok(at), Ok(n)) = (usize::try_from(start), usize::try_from(end - start)) else {
                return Err(StoreError::Io(format!("blob range {start}..{end}")));
            };
            let handle = tx.blob_open(rusqlite::MAIN_DB, "blobs", "data", rowid, true);
            let mut out = vec![0; n];
            handle
                .and_then(|h| h.read_at_exact(&mut out, at))
                .map_err(db_err)?;
            Ok(Some(out))
        }
        _ => Ok(None),
    }
}

/// `rowid`, `size`, `length(data)` and, of a small blob kept whole, `data`.
type BlobRow = (i64, i64, Option<i64>, Option<Vec<u8>>);

/// The octets `range` of a blob (clamped to its end). Of a large blob kept in the
/// database only the pages holding those octets are read (SQLite's incremental blob
/// I/O, in the read transaction that found the row), not the whole value: a FETCH of
/// header fields reads the first page or two of a 100 KiB message, not its 26. A
/// small blob kept whole in the database comes back with the query that finds the
/// row. A file is read at the offset. Anything else (a damaged or missing blob)
/// goes through [`open_checked`], with its checks and answers.
pub(crate) fn read_range(
    inner: &Inner,
    conn: &mut Connection,
    blob: &BlobId,
    range: std::ops::Range<u64>,
) -> Result<Vec<u8>> {
    {
        // One read transaction for a blob kept whole in the database. (Each further
        // read transaction pays for SQLite's page cache, which another connection's
        // commit has emptied.)
        let tx = Tx::deferred(conn).map_err(db_err)?;
        let read = range_in_db(&tx, blob, range.clone())?;
        tx.commit().map_err(db_err)?;
        if let Some(bytes) = read {
            return Ok(bytes);
        }
    }
    let len = range.end.saturating_sub(range.start);
    match open_checked(inner, conn, blob)? {
        Opened::Inline(bytes) => Ok(slice(&bytes, range)),
        Opened::File(mut f) => {
            use std::io::{Read, Seek, SeekFrom};
            f.seek(SeekFrom::Start(range.start))?;
            let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(1 << 20));
            f.take(len).read_to_end(&mut out)?;
            Ok(out)
        }
    }
}

/// The octets of `bytes` in `range`, cut to what there is.
fn slice(bytes: &[u8], range: std::ops::Range<u64>) -> Vec<u8> {
    let start = usize::try_from(range.start)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let end = usize::try_from(range.end)
        .unwrap_or(usize::MAX)
        .clamp(start, bytes.len());
    bytes
        .get(start..end)
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

/// Opens a blob for reading: its bytes from the database when they are kept there,
/// else its file after checking the file's length against the index. A missing or
/// wrong-size file of a referenced blob is quarantined (once; logged) and the answer
/// is [`StoreError::Damaged`]; a blob without a row, or garbage whose file went, is
/// [`StoreError::NotFound`].
pub(crate) fn open_checked(inner: &Inner, conn: &mut Connection, blob: &BlobId) -> Result<Opened> {
    let row: Option<(i64, Option<Vec<u8>>)> = conn
        .row_c(
            "SELECT size, data FROM blobs WHERE id = ?1",
            [&blob.0[..]],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db_err)?;
    let Some((size, data)) = row else {
        return Err(not_found(blob));
    };
    let size = u64::try_from(size).unwrap_or(0);
    match data {
        Some(bytes) if bytes.len() as u64 == size => return Ok(Opened::Inline(bytes)),
        Some(_) => return inline_damaged(inner, conn, blob),
        None => {}
    }
    if let Found::Sized(f) = examine(inner, blob, size)? {
        return Ok(Opened::File(f));
    }
    if let Some(problem) = recorded(conn, blob)? {
        return Err(StoreError::Damaged(format!(
            "blob {} is quarantined ({problem})",
            blob.to_hex()
        )));
    }
    // Look again under the write lock: a writer re-placing a garbage blob's file, or
    // collecting it, holds that lock, so what is seen now is settled.
    let tx = write_tx(conn)?;
    let Some((size, refs)) = indexed(&tx, blob)? else {
        return Err(not_found(blob));
    };
    if let Some(bytes) = inline(&tx, blob)? {
        if bytes.len() as u64 == size {
            return Ok(Opened::Inline(bytes));
        }
        drop(tx);
        return inline_damaged(inner, conn, blob);
    }
    let problem = match examine(inner, blob, size)? {
        Found::Sized(f) => return Ok(Opened::File(f)),
        Found::Missing if refs <= 0 => return Err(not_found(blob)),
        Found::Missing => format!("missing (indexed {size} octets)"),
        Found::WrongSize(n) => format!("wrong size ({n} octets, indexed {size})"),
    };
    if let Some(problem) = recorded(&tx, blob)? {
        return Err(StoreError::Damaged(format!(
            "blob {} is quarantined ({problem})",
            blob.to_hex()
        )));
    }
    set_aside(inner, &tx, blob, size, &problem)?;
    tx.commit().map_err(db_err)?;
    tracing::error!(blob = %blob.to_hex(), problem = %problem, "damaged blob quarantined");
    Err(StoreError::Damaged(format!(
        "blob {}: {problem}; quarantined",
        blob.to_hex()
    )))
}

/// Sets aside the bytes of a blob kept in the database: writes them (durably) to
/// `quarantine/`, clears `blobs.data` (so reads find no bytes and answer
/// [`StoreError::Damaged`]) and records `problem`. Runs inside the caller's write
/// transaction, which commits.
pub(crate) fn set_aside_inline(
    inner: &Inner,
    tx: &Connection,
    blob: &BlobId,
    size: u64,
    problem: &str,
    bytes: &[u8],
) -> Result<()> {
    use std::io::Write;
    let now = secs(SystemTime::now());
    let dir = inner.dir.join(DIR);
    fs::create_dir_all(&dir)?;
    let name = format!("{}.{now}", blob.to_hex());
    let mut f = File::create(dir.join(&name))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    File::open(&dir)?.sync_all()?;
    tx.exec_c("UPDATE blobs SET data = NULL WHERE id = ?1", [&blob.0[..]])
        .map_err(db_err)?;
    record(tx, blob, size, problem, Some(name), now)
}

/// Records (or updates) `blob`'s quarantine row.
fn record(
    tx: &Connection,
    blob: &BlobId,
    size: u64,
    problem: &str,
    file: Option<String>,
    now: i64,
) -> Result<()> {
    tx.exec_c(
        "INSERT INTO quarantine (blob_id, size, problem, file, found_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (blob_id) DO UPDATE SET problem = excluded.problem,
             file = coalesce(excluded.file, file), found_at = excluded.found_at",
        params![
            &blob.0[..],
            i64::try_from(size).unwrap_or(i64::MAX),
            problem,
            file,
            now
        ],
    )
    .map_err(db_err)?;
    Ok(())
}

/// Moves `blob`'s file (if any) to `quarantine/` and records `problem`. Runs inside
/// the caller's write transaction, which commits the row.
pub(crate) fn set_aside(
    inner: &Inner,
    tx: &Connection,
    blob: &BlobId,
    size: u64,
    problem: &str,
) -> Result<()> {
    let now = secs(SystemTime::now());
    let src = blobs::path(&inner.dir, blob);
    let dir = inner.dir.join(DIR);
    fs::create_dir_all(&dir)?;
    let name = format!("{}.{now}", blob.to_hex());
    let file = match fs::rename(&src, dir.join(&name)) {
        Ok(()) => {
            // Both directory entries changed: make the move durable.
            File::open(&dir)?.sync_all()?;
            if let Some(parent) = src.parent() {
                File::open(parent)?.sync_all()?;
            }
            Some(name)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    record(tx, blob, size, problem, file, now)
}
