//! `buudien check`: verifies every blob against the index, next to a running server.
//!
//! Three passes, each with bounded memory:
//! 1. every `blobs` row that emails or queued messages refer to (read a page of
//!    [`PAGE`] rows at a time, each page a short read): its file exists, has the
//!    indexed size, and hashes (in [`CHUNK`]-octet reads) to the id that names it
//!    (BLAKE3; SHA-256 for blobs stored before BLAKE3, see [`BlobId`]);
//! 2. reference counts: `blobs.refcount` against the emails and queue rows naming
//!    each blob, one read snapshot merging two ordered streams (SQLite sorts the
//!    grouped references, spilling to its temporary storage when large);
//! 3. blob files without a row (orphans), one leaf directory at a time.
//!
//! SQLite's WAL lets these reads run beside the server's writes. What looks wrong
//! is looked at again under the write lock (held for one blob or one directory),
//! so a delivery or garbage collection running at the same moment is not reported.
//! With `quarantine`, damaged blobs are set aside (see `quarantine`) in that same
//! locked step.

use crate::admin::write_tx;
use crate::cached::Cached;
use crate::quarantine::{self, Found};
use crate::{Inner, SqliteStore, blobs, db_err, mail};
use buudien_store::{BlobHasher, BlobId, Result};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::fmt;
use std::io::{Read, Seek, SeekFrom};

/// Rows read per page in the blob pass.
const PAGE: i64 = 256;
/// Octets read at a time while hashing.
const CHUNK: usize = 64 * 1024;
/// Accounts named per damaged blob.
const OWNERS: i64 = 8;

/// What to do besides looking.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Move damaged blobs (missing, wrong size, wrong hash) to `quarantine/` and
    /// record them, so reads of them fail at once and the next check lists them as
    /// quarantined.
    pub quarantine: bool,
}

/// What is wrong with a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// Referenced, but its file is missing.
    Missing {
        /// The indexed size.
        size: u64,
    },
    /// The file's size is not the indexed one.
    WrongSize {
        /// The indexed size.
        size: u64,
        /// The file's size.
        found: u64,
    },
    /// The file's contents do not hash to the blob's name.
    WrongHash {
        /// The size (the indexed one, which the file has).
        size: u64,
    },
    /// Set aside earlier; its messages cannot be read.
    Quarantined {
        /// What was recorded then.
        problem: String,
    },
    /// A file under `blobs/` without an index row.
    Orphan,
    /// `blobs.refcount` differs from the emails and queued messages naming it.
    Refcount {
        /// The recorded count.
        recorded: i64,
        /// The references found.
        references: u64,
    },
    /// Emails or queued messages name a blob that has no index row.
    Dangling {
        /// The references found.
        references: u64,
    },
}

/// One problem `check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The blob.
    pub blob: BlobId,
    /// What is wrong.
    pub kind: ProblemKind,
    /// Accounts whose emails refer to it (damaged blobs only; at most [`OWNERS`]).
    pub owners: Vec<String>,
    /// This run set it aside.
    pub quarantined_now: bool,
}

impl Problem {
    /// True for damage already quarantined by an earlier read or check: listed, but
    /// not a new problem.
    pub fn is_known(&self) -> bool {
        matches!(self.kind, ProblemKind::Quarantined { .. })
    }
}

impl fmt::Display for Problem {
    /// One line: a keyword, the blob, the details.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.blob.to_hex();
        match &self.kind {
            ProblemKind::Missing { size } => {
                write!(f, "missing {hex} (file absent, indexed {size} octets)")?
            }
            ProblemKind::WrongSize { size, found } => {
                write!(f, "wrong-size {hex} ({found} octets, indexed {size})")?
            }
            ProblemKind::WrongHash { size } => write!(
                f,
                "wrong-hash {hex} ({size} octets that do not hash to the name)"
            )?,
            ProblemKind::Quarantined { problem } => write!(f, "quarantined {hex}: {problem}")?,
            ProblemKind::Orphan => write!(f, "orphan {hex} (a file without an index row)")?,
            ProblemKind::Refcount {
                recorded,
                references,
            } => write!(
                f,
                "refcount {hex} (recorded {recorded}, referenced {references} times)"
            )?,
            ProblemKind::Dangling { references } => write!(
                f,
                "dangling {hex} (referenced {references} times, no index row)"
            )?,
        }
        if !self.owners.is_empty() {
            write!(f, " of {}", self.owners.join(", "))?;
        }
        if self.quarantined_now {
            f.write_str("; quarantined now")?;
        }
        Ok(())
    }
}

/// The totals of a check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Index rows looked at.
    pub blobs: u64,
    /// Referenced blobs whose file was read and hashed.
    pub verified: u64,
    /// Octets hashed.
    pub bytes: u64,
    /// Rows with no references left (garbage waiting for collection; not read).
    pub garbage: u64,
    /// Problems found now, quarantined ones of earlier runs not counted.
    pub problems: u64,
    /// Damaged blobs quarantined earlier and still referenced.
    pub quarantined: u64,
    /// Damaged blobs this run set aside.
    pub quarantined_now: u64,
}

impl SqliteStore {
    /// Verifies every blob against the index (see the module doc), calling
    /// `on_problem` for each problem as it is found; blocking (call it outside an
    /// async task, or on the blocking pool). Works beside a running server.
    pub fn check(
        &self,
        opts: CheckOptions,
        on_problem: &mut dyn FnMut(&Problem),
    ) -> Result<CheckReport> {
        let mut conn = self.inner.connect()?;
        let mut report = CheckReport::default();
        let mut note = |report: &mut CheckReport, p: Problem| {
            if p.is_known() {
                report.quarantined += 1;
            } else {
                report.problems += 1;
            }
            if p.quarantined_now {
                report.quarantined_now += 1;
            }
            on_problem(&p);
        };
        blob_pass(&self.inner, &mut conn, opts, &mut report, &mut note)?;
        refcount_pass(&conn, &mut report, &mut note)?;
        orphan_pass(&self.inner, &mut conn, &mut report, &mut note)?;
        Ok(report)
    }
}

type Note<'a> = dyn FnMut(&mut CheckReport, Problem) + 'a;

/// One page of `(id, size, refcount, quarantine problem, kept inline)` after `after`.
type Row = (Vec<u8>, i64, i64, Option<String>, bool);

fn page(conn: &Connection, after: &[u8]) -> Result<Vec<Row>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT b.id, b.size, b.refcount, q.problem, b.data IS NOT NULL FROM blobs b
             LEFT JOIN quarantine q ON q.blob_id = b.id
             WHERE b.id > ?1 ORDER BY b.id LIMIT ?2",
        )
        .map_err(db_err)?;
    stmt.query_map(params![after, PAGE], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .map_err(db_err)?
    .collect::<rusqlite::Result<Vec<_>>>()
    .map_err(db_err)
}

fn blob_pass(
    inner: &Inner,
    conn: &mut Connection,
    opts: CheckOptions,
    report: &mut CheckReport,
    note: &mut Note<'_>,
) -> Result<()> {
    let mut after: Vec<u8> = Vec::new();
    loop {
        let rows = page(conn, &after)?;
        let Some(last) = rows.last() else { break };
        after = last.0.clone();
        for (raw, size, refcount, known, inline) in rows {
            report.blobs += 1;
            let blob = mail::blob_from(raw)?;
            let size = mail::u64_of(size);
            if refcount <= 0 {
                report.garbage += 1;
                continue;
            }
            if inline {
                if let Some(p) = check_inline(inner, conn, blob, size, opts, report)? {
                    note(report, p);
                }
                continue;
            }
            let kind = match quarantine::examine(inner, &blob, size)? {
                Found::Sized(f) => {
                    if file_is_named(f, &blob, report)? {
                        report.verified += 1;
                        continue;
                    }
                    ProblemKind::WrongHash { size }
                }
                Found::Missing => match known {
                    Some(problem) => ProblemKind::Quarantined { problem },
                    None => ProblemKind::Missing { size },
                },
                Found::WrongSize(found) => ProblemKind::WrongSize { size, found },
            };
            if let Some(p) = confirm(inner, conn, blob, kind, opts)? {
                note(report, p);
            }
        }
    }
    Ok(())
}

/// What is wrong with bytes kept in the database, if anything.
fn inline_problem(blob: &BlobId, size: u64, bytes: &[u8]) -> Option<ProblemKind> {
    let found = bytes.len() as u64;
    if found != size {
        Some(ProblemKind::WrongSize { size, found })
    } else if !is_named(blob, bytes) {
        Some(ProblemKind::WrongHash { size })
    } else {
        None
    }
}

/// Checks a blob kept in the database (`blobs.data`): its length and hash. A bad
/// one is looked at again under the write lock and, with `quarantine`, its bytes are
/// set aside like a file's (see `quarantine::set_aside_inline`).
fn check_inline(
    inner: &Inner,
    conn: &mut Connection,
    blob: BlobId,
    size: u64,
    opts: CheckOptions,
    report: &mut CheckReport,
) -> Result<Option<Problem>> {
    let Some(bytes) = quarantine::inline(conn, &blob)? else {
        // Collected (or moved to a file) since the page was read.
        return Ok(None);
    };
    report.bytes = report.bytes.saturating_add(bytes.len() as u64);
    if inline_problem(&blob, size, &bytes).is_none() {
        report.verified += 1;
        return Ok(None);
    }
    let tx = write_tx(conn)?;
    let Some((size, refs)) = quarantine::indexed(&tx, &blob)? else {
        return Ok(None);
    };
    let Some(bytes) = quarantine::inline(&tx, &blob)? else {
        return Ok(None);
    };
    let Some(kind) = inline_problem(&blob, size, &bytes).filter(|_| refs > 0) else {
        return Ok(None);
    };
    let owners = owners(&tx, &blob)?;
    let mut quarantined_now = false;
    if opts.quarantine {
        let problem = match &kind {
            ProblemKind::WrongSize { size, found } => {
                format!("wrong size ({found} octets, indexed {size})")
            }
            _ => format!("wrong hash ({size} octets)"),
        };
        quarantine::set_aside_inline(inner, &tx, &blob, size, &problem, &bytes)?;
        tx.commit().map_err(db_err)?;
        quarantined_now = true;
    }
    Ok(Some(Problem {
        blob,
        kind,
        owners,
        quarantined_now,
    }))
}

/// Whether `bytes` are what `blob` names: their BLAKE3 hash, or (a blob stored before
/// buudien named blobs by BLAKE3) their SHA-256.
fn is_named(blob: &BlobId, bytes: &[u8]) -> bool {
    BlobId::of(&[bytes]) == *blob || <[u8; 32]>::from(Sha256::digest(bytes)) == blob.0
}

/// [`is_named`] for a file, read in [`CHUNK`]s: BLAKE3 first, and only when that
/// differs a second pass for SHA-256.
fn file_is_named(mut f: std::fs::File, blob: &BlobId, report: &mut CheckReport) -> Result<bool> {
    let mut buf = vec![0u8; CHUNK];
    let mut blake3 = BlobHasher::new();
    read_chunks(&mut f, &mut buf, report, |c| blake3.update(c))?;
    if blake3.finish() == *blob {
        return Ok(true);
    }
    f.seek(SeekFrom::Start(0))?;
    let mut sha256 = Sha256::new();
    read_chunks(&mut f, &mut buf, report, |c| sha256.update(c))?;
    Ok(<[u8; 32]>::from(sha256.finalize()) == blob.0)
}

/// Reads `f` to its end through `buf`, handing each chunk to `each`.
fn read_chunks(
    f: &mut std::fs::File,
    buf: &mut [u8],
    report: &mut CheckReport,
    mut each: impl FnMut(&[u8]),
) -> Result<()> {
    loop {
        let n = f.read(buf)?;
        if n == 0 {
            return Ok(());
        }
        each(buf.get(..n).unwrap_or_default());
        report.bytes = report.bytes.saturating_add(n as u64);
    }
}

/// Looks at a blob again under the write lock; the problem if it is still there
/// (quarantining it when asked), None when a concurrent writer explains it.
fn confirm(
    inner: &Inner,
    conn: &mut Connection,
    blob: BlobId,
    kind: ProblemKind,
    opts: CheckOptions,
) -> Result<Option<Problem>> {
    let tx = write_tx(conn)?;
    let Some((size, refs)) = quarantine::indexed(&tx, &blob)? else {
        return Ok(None);
    };
    if refs <= 0 {
        return Ok(None);
    }
    let now = quarantine::examine(inner, &blob, size)?;
    let still = match (&kind, now) {
        (ProblemKind::Missing { .. } | ProblemKind::Quarantined { .. }, Found::Missing) => true,
        (ProblemKind::WrongSize { found, .. }, Found::WrongSize(n)) => *found == n,
        // Contents never change in place; a file still there is the one hashed.
        (ProblemKind::WrongHash { .. }, Found::Sized(_)) => true,
        _ => false,
    };
    if !still {
        return Ok(None);
    }
    let owners = owners(&tx, &blob)?;
    let mut quarantined_now = false;
    if opts.quarantine && !matches!(kind, ProblemKind::Quarantined { .. }) {
        let problem = match &kind {
            ProblemKind::Missing { size } => format!("missing (indexed {size} octets)"),
            ProblemKind::WrongSize { size, found } => {
                format!("wrong size ({found} octets, indexed {size})")
            }
            _ => format!("wrong hash ({size} octets)"),
        };
        quarantine::set_aside(inner, &tx, &blob, size, &problem)?;
        tx.commit().map_err(db_err)?;
        quarantined_now = true;
    }
    Ok(Some(Problem {
        blob,
        kind,
        owners,
        quarantined_now,
    }))
}

/// The accounts whose emails refer to `blob`, at most [`OWNERS`] of them.
fn owners(conn: &Connection, blob: &BlobId) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT DISTINCT a.address FROM emails e JOIN accounts a ON a.id = e.account_id
             WHERE e.blob_id = ?1 ORDER BY a.address LIMIT ?2",
        )
        .map_err(db_err)?;
    let mut v: Vec<String> = stmt
        .query_map(params![&blob.0[..], OWNERS], |r| r.get(0))
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)?;
    let queued: bool = conn
        .row_c(
            "SELECT 1 FROM queue WHERE blob_id = ?1 LIMIT 1",
            [&blob.0[..]],
            |_| Ok(true),
        )
        .optional()
        .map_err(db_err)?
        .unwrap_or(false);
    if queued {
        v.push("the outbound queue".into());
    }
    Ok(v)
}

/// Merges `blobs` (by id) with the grouped references (by blob id) in one snapshot.
fn refcount_pass(conn: &Connection, report: &mut CheckReport, note: &mut Note<'_>) -> Result<()> {
    let tx = conn.unchecked_transaction().map_err(db_err)?;
    let mut rows = tx
        .prepare("SELECT id, refcount FROM blobs ORDER BY id")
        .map_err(db_err)?;
    let mut refs = tx
        .prepare(
            "SELECT blob_id, count(*) FROM
                 (SELECT blob_id FROM emails UNION ALL SELECT blob_id FROM queue)
             GROUP BY blob_id ORDER BY blob_id",
        )
        .map_err(db_err)?;
    let mut a = rows
        .query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))
        .map_err(db_err)?;
    let mut b = refs
        .query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))
        .map_err(db_err)?;
    let mut next_a = a.next().transpose().map_err(db_err)?;
    let mut next_b = b.next().transpose().map_err(db_err)?;
    loop {
        let order = match (&next_a, &next_b) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((x, _)), Some((y, _))) => x.cmp(y),
        };
        let (id, recorded, references) = match order {
            Ordering::Less => {
                let (id, rc) = next_a.take().unwrap_or_default();
                next_a = a.next().transpose().map_err(db_err)?;
                (id, Some(rc), 0)
            }
            Ordering::Greater => {
                let (id, n) = next_b.take().unwrap_or_default();
                next_b = b.next().transpose().map_err(db_err)?;
                (id, None, mail::u64_of(n))
            }
            Ordering::Equal => {
                let (id, rc) = next_a.take().unwrap_or_default();
                let (_, n) = next_b.take().unwrap_or_default();
                next_a = a.next().transpose().map_err(db_err)?;
                next_b = b.next().transpose().map_err(db_err)?;
                (id, Some(rc), mail::u64_of(n))
            }
        };
        let kind = match recorded {
            // Garbage is recorded as 0 or below.
            Some(rc) if mail::u64_of(rc.max(0)) == references => continue,
            Some(recorded) => ProblemKind::Refcount {
                recorded,
                references,
            },
            None => ProblemKind::Dangling { references },
        };
        let blob = mail::blob_from(id)?;
        note(
            report,
            Problem {
                blob,
                kind,
                owners: Vec::new(),
                quarantined_now: false,
            },
        );
    }
    Ok(())
}

/// Blob files without a row; suspects are confirmed under the write lock (a writer
/// places a file under that lock just before committing its row).
fn orphan_pass(
    inner: &Inner,
    conn: &mut Connection,
    report: &mut CheckReport,
    note: &mut Note<'_>,
) -> Result<()> {
    let known = |c: &Connection, id: &BlobId| -> Result<bool> {
        Ok(
            c.row_c("SELECT 1 FROM blobs WHERE id = ?1", [&id.0[..]], |_| Ok(()))
                .optional()
                .map_err(db_err)?
                .is_some(),
        )
    };
    blobs::each_placed(&inner.dir, |ids| {
        let mut suspects = Vec::new();
        for id in ids {
            if !known(conn, &id)? {
                suspects.push(id);
            }
        }
        if suspects.is_empty() {
            return Ok(());
        }
        let tx = write_tx(conn)?;
        for id in suspects {
            if !known(&tx, &id)? && blobs::path(&inner.dir, &id).is_file() {
                note(
                    report,
                    Problem {
                        blob: id,
                        kind: ProblemKind::Orphan,
                        owners: Vec::new(),
                        quarantined_now: false,
                    },
                );
            }
        }
        drop(tx);
        Ok(())
    })
}
