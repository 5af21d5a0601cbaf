//! The text index behind SEARCH BODY / TEXT (RFC 9051 §6.4.4), so a search of a large
//! mailbox does not read every message.
//!
//! # What is indexed
//! Per email (emails are shared between mailboxes by COPY, so one entry serves every
//! mailbox holding it), keyed by `emails.id`: the email's searchable text as
//! `buudien_message::searchable_text` gives it — the very pieces SEARCH's scan
//! (`buudien_message::text_matches`) compares against, decoded the same way
//! (encoded-words in header fields, base64 / quoted-printable undone, the charset of
//! text parts converted to UTF-8) and case-folded by the same function (Unicode upper
//! then lower case, so `ß` and `SS` both read `ss`). The pieces (one header field,
//! one text part) are joined with a separator a needle cannot contain (a needle
//! containing it is not looked up), so a needle never matches across two pieces,
//! exactly as in the scan. Column `header` holds the message header (TEXT only),
//! `body` what BODY searches (text parts, headers of encapsulated messages).
//!
//! # How it is looked up
//! An FTS5 table with the trigram tokenizer, `case_sensitive 1`: buudien folds the
//! text and the needle itself, so FTS5's own per-character folding (which knows no
//! `ß` → `ss`) is never used and the index agrees with the scan on non-ASCII too. A
//! needle is a quoted FTS5 phrase of its trigrams, which matches exactly the texts
//! containing it as a substring; FTS5 syntax characters inside the quotes (`*`, `^`,
//! `:`, `(`, `NEAR`) are plain text. A needle under three characters (after folding)
//! has no trigram: the index answers `None` and SEARCH scans. The table is
//! contentless (`content=''`, with `contentless_delete`): the text is not stored a
//! second time.
//!
//! Not used, and why: `LIKE` folds ASCII only (`Ä` does not match `ä`) and with a
//! contentless table there is no text to compare; FTS5's `case_sensitive 0` folds
//! one code point to one code point, so `STRASSE` would not find `straße`, unlike the
//! scan. With the folding done here there is no known difference between index and
//! scan (the tests compare them on `Ärger`/`ärger`, `STRASSE`/`straße`, final sigma,
//! `İ`, `ﬁ`, the Kelvin sign, base64, quoted-printable, ISO-8859-1, encoded-words).
//!
//! # Bounds
//! At most [`TEXT_LIMIT`] octets of folded text per email; an email with more, or
//! one larger than [`READ_LIMIT`], or one whose file cannot be read, is marked
//! `text_state = 2` and always scanned, so the answer still agrees with the scan.
//!
//! # When emails are indexed
//! Not inside the delivery transaction: delivery holds the write lock, and decoding
//! plus an FTS insert per message would lengthen every delivery and APPEND. New
//! emails start at `text_state = 0` (the column default, so writers need not know of
//! the index); [`SqliteStore::run_text_indexer`] indexes them in batches in the
//! background, one short write transaction per batch; and a SEARCH first indexes up
//! to [`SqliteStore::set_text_index`]'s on-demand bound of the mailbox's unindexed
//! emails, then reports the rest as unknown, which SEARCH reads and scans. So a
//! SEARCH right after a delivery is exact whether or not the indexer got there.
//! When an indexed email's row goes (expunge, garbage collection), a trigger notes
//! its id in `text_gone`, so no writer has to know of the index, and the indexer
//! removes the entry later ([`purge_gone`]): an FTS5 delete inside the deleting
//! transaction made every EXPUNGE pay for a merge of the index's segments under the
//! write lock. An entry left meanwhile matches no message (its email has none),
//! and an id given again to a new email loses its old entry when that email is
//! indexed; until then SEARCH scans that message.
//!
//! # Damage
//! FTS5 keeps its index in tables of its own (`email_text_data`, …). If their content
//! goes wrong (SQLite reports `SQLITE_CORRUPT_VTAB`, or cannot even open the table),
//! every statement touching the index fails, including `DROP TABLE` itself, while
//! the rest of the database is sound (EXPUNGE does not touch it). Such an error
//! is marked [`DAMAGED`]; the store notes it, SEARCH scans meanwhile, and the next
//! round of the background indexer (or `buudien check`) rebuilds the index with
//! [`rebuild`]: FTS5's tables are dropped, the table's own schema row removed (the
//! one way to drop a table FTS5 cannot open), the table and trigger made anew, and
//! every email marked unindexed, all in one transaction; the indexer then indexes
//! them again. Rebuilds are at least [`REBUILD_SPACING`] apart, so damage that a
//! rebuild does not cure costs a log line, not a rebuild loop.
//!
//! # Cost
//! A lookup costs the FTS5 phrase query (over every account's emails: the index is
//! per server, so a needle common in other accounts costs their matches too), then
//! one probe per matching email (or one pass over the mailbox when the matches are
//! many), and one probe per email not yet indexed anywhere (or one pass over the
//! mailbox while those outnumber its messages, as right after an upgrade). A needle
//! made of trigrams that occur everywhere reads long position lists: on 100,000
//! messages written from 26 words, 70-95 ms; a selective needle takes well under
//! 1 ms (see `examples/search_bench.rs`).

use crate::admin::write_tx_light;
use crate::cached::Cached;
use crate::mail::{blob_from, u64_of};
use crate::{Inner, SqliteStore, db_err, quarantine};
use buudien_message::{MessageMeta, PIECE_SEPARATOR, fold_needle, searchable_text};
use buudien_store::{MailboxId, Result, StoreError, TextHits};
use buudien_types::Uid;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Folded text indexed per email, at most (1 MiB); an email with more is scanned.
pub const TEXT_LIMIT: usize = 1 << 20;
/// Emails larger than this (64 MiB) are not read for the index; they are scanned.
pub const READ_LIMIT: u64 = 64 << 20;
/// Emails a SEARCH indexes before it answers, by default.
pub const DEFAULT_ON_DEMAND: usize = 512;
/// Emails the background indexer reads per round.
const BATCH: usize = 128;
/// Emails it reads per round while mail is being written: indexing a batch of large
/// messages took a third of the server's CPU under a stream of 100 KiB deliveries.
const BUSY_BATCH: usize = 8;
/// Emails recorded per write transaction, at most: FTS5 inserts are slow enough that
/// a big transaction would hold every other writer up (the IMAP benchmark's p99
/// showed it).
const WRITE_CHUNK: usize = 16;
/// Folded text recorded per write transaction, at most (256 KiB; one email with
/// more goes alone): 16 emails of a few hundred KiB each held the write lock for
/// a tenth of a second.
const WRITE_CHUNK_BYTES: usize = 256 << 10;
/// Entries of emails that went, removed per write transaction (see `purge_gone`).
const PURGE_CHUNK: usize = 256;
/// Entries of emails that went, removed per round of the background indexer.
const PURGE_ROUND: usize = 1024;
/// Writes this recent make the background indexer hold back.
const BUSY_WINDOW: Duration = Duration::from_millis(500);
/// The background indexer's pause between looks while mail is being written.
const BUSY_PAUSE: Duration = Duration::from_secs(1);
/// While mail is being written, the background indexer writes to the index this
/// seldom (one round of [`BUSY_BATCH`] emails and [`PURGE_ROUND`] removals): each
/// write to a large FTS5 index merges segments, which took a quarter of the
/// server's CPU under the IMAP benchmark when it came every second.
const BUSY_ROUND_EVERY: Duration = Duration::from_secs(30);
/// The background indexer's pause when nothing is left to index.
const IDLE_PAUSE: Duration = Duration::from_secs(2);

/// The least time between two rebuilds of a damaged index.
pub const REBUILD_SPACING: Duration = Duration::from_secs(600);
/// How the message of a [`StoreError::Database`] starts when it is the text index's
/// own damage (see [`is_damage`]).
pub(crate) const DAMAGED: &str = "text index damaged: ";

/// `emails.text_state`: in `email_text`.
const INDEXED: i64 = 1;
/// `emails.text_state`: left to a scan (too large, unreadable).
const SCAN: i64 = 2;

/// What reading one email for the index gave.
enum Extract {
    /// Its searchable text.
    Text(String, String),
    /// It is to be scanned.
    Scan,
    /// It went (expunged and collected) meanwhile.
    Gone,
}

fn extract(inner: &Inner, conn: &mut Connection, id: i64) -> Result<Extract> {
    let row: Option<(Vec<u8>, i64, Option<Vec<u8>>)> = conn
        .row_c(
            "SELECT blob_id, size, meta FROM emails WHERE id = ?1 AND text_state = 0",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(db_err)?;
    let Some((blob, size, meta)) = row else {
        return Ok(Extract::Gone);
    };
    let size = u64_of(size);
    if size > READ_LIMIT {
        return Ok(Extract::Scan);
    }
    let blob = blob_from(blob)?;
    let bytes = match quarantine::open_checked(inner, conn, &blob) {
        Ok(quarantine::Opened::Inline(bytes)) => bytes,
        Ok(quarantine::Opened::File(file)) => {
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            if let Err(e) = file.take(size).read_to_end(&mut bytes) {
                tracing::warn!("text index: email {id} left to scans: {e}");
                return Ok(Extract::Scan);
            }
            bytes
        }
        Err(StoreError::NotFound(_)) => return Ok(Extract::Gone),
        Err(e) => {
            tracing::warn!("text index: email {id} left to scans: {e}");
            return Ok(Extract::Scan);
        }
    };
    let meta = meta
        .and_then(|m| MessageMeta::from_bytes(&m).ok())
        .unwrap_or_else(|| MessageMeta::parse(&bytes));
    Ok(match searchable_text(&bytes, &meta, TEXT_LIMIT) {
        Some(t) => Extract::Text(t.header, t.body),
        None => Extract::Scan,
    })
}

/// Indexes these emails (those still unindexed): reads them without a lock, then
/// records them in write transactions of at most [`WRITE_CHUNK`] emails and
/// [`WRITE_CHUNK_BYTES`] of text. Returns how many were recorded.
pub(crate) fn index_emails(inner: &Inner, conn: &mut Connection, ids: &[i64]) -> Result<usize> {
    let mut done = Vec::with_capacity(ids.len());
    for &id in ids {
        match extract(inner, conn, id)? {
            Extract::Gone => {}
            e => done.push((id, e)),
        }
    }
    if done.is_empty() {
        return Ok(0);
    }
    let mut n = 0;
    for chunk in write_chunks(&done) {
        let tx = write_tx_light(conn)?;
        {
            let mut mark = tx
                .prepare_cached(
                    "UPDATE emails SET text_state = ?2 WHERE id = ?1 AND text_state = 0",
                )
                .map_err(db_err)?;
            let mut insert = tx
                .prepare_cached("INSERT INTO email_text (rowid, header, body) VALUES (?1, ?2, ?3)")
                .map_err(db_err)?;
            let mut gone = tx
                .prepare_cached("DELETE FROM text_gone WHERE id = ?1")
                .map_err(db_err)?;
            let mut stale = tx
                .prepare_cached("DELETE FROM email_text WHERE rowid = ?1")
                .map_err(db_err)?;
            for (id, e) in chunk {
                let state = if matches!(e, Extract::Text(..)) {
                    INDEXED
                } else {
                    SCAN
                };
                // Another indexer may have been first.
                if mark.execute(params![id, state]).map_err(db_err)? == 0 {
                    continue;
                }
                // The id of an email that went, given again (see `purge_gone`): its
                // old entry goes before the new one comes.
                if gone.execute([id]).map_err(db_err)? > 0 {
                    stale.execute([id]).map_err(db_err)?;
                }
                if let Extract::Text(header, body) = e {
                    insert.execute(params![id, header, body]).map_err(db_err)?;
                }
                n += 1;
            }
        }
        tx.commit().map_err(db_err)?;
    }
    Ok(n)
}

/// Removes the entries of up to `limit` emails that went (noted in `text_gone` by
/// the delete trigger, V10), in write transactions of [`PURGE_CHUNK`]; returns how
/// many. Until then an entry may answer a lookup: its email id has no mailbox
/// entries, so it matches no message; an id SQLite gives to a new email is in
/// `text_gone` until that email is indexed, which removes the old entry first, and a
/// SEARCH treats an unindexed email's message as unknown whatever the index says.
pub(crate) fn purge_gone(conn: &mut Connection, limit: usize) -> Result<usize> {
    let ids: Vec<i64> = {
        let mut stmt = conn
            .prepare_cached("SELECT id FROM text_gone ORDER BY id LIMIT ?1")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| r.get(0))
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err)?
    };
    let mut n = 0;
    for chunk in ids.chunks(PURGE_CHUNK) {
        let tx = write_tx_light(conn)?;
        {
            let mut gone = tx
                .prepare_cached("DELETE FROM text_gone WHERE id = ?1")
                .map_err(db_err)?;
            let mut entry = tx
                .prepare_cached("DELETE FROM email_text WHERE rowid = ?1")
                .map_err(db_err)?;
            for id in chunk {
                // Gone already: an indexer of the reused id was first.
                if gone.execute([id]).map_err(db_err)? > 0 {
                    entry.execute([id]).map_err(db_err)?;
                    n += 1;
                }
            }
        }
        tx.commit().map_err(db_err)?;
    }
    Ok(n)
}

/// `done` cut into runs of at most [`WRITE_CHUNK`] emails and [`WRITE_CHUNK_BYTES`]
/// of text (a run holds at least one email).
fn write_chunks(done: &[(i64, Extract)]) -> Vec<&[(i64, Extract)]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (_, e)) in done.iter().enumerate() {
        let len = match e {
            Extract::Text(h, b) => h.len() + b.len(),
            _ => 0,
        };
        if i > start && (i - start == WRITE_CHUNK || bytes + len > WRITE_CHUNK_BYTES) {
            chunks.extend(done.get(start..i));
            (start, bytes) = (i, 0);
        }
        bytes += len;
    }
    chunks.extend(done.get(start..));
    chunks.retain(|c| !c.is_empty());
    chunks
}

/// Indexes up to `limit` unindexed emails of any account, oldest first.
pub(crate) fn index_pending(inner: &Inner, conn: &mut Connection, limit: usize) -> Result<usize> {
    let ids: Vec<i64> = {
        let mut stmt = conn
            .prepare_cached(
                "SELECT id FROM emails WHERE text_state <> 1 AND text_state = 0
                 ORDER BY id LIMIT ?1",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| r.get(0))
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err)?
    };
    index_emails(inner, conn, &ids)
}

/// Whether `e` is FTS5 finding its own tables damaged: `SQLITE_CORRUPT_VTAB`, or its
/// table that cannot be opened at all ("vtable constructor failed"). The index is
/// the one virtual table of the store.
pub(crate) fn is_damage(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(f, msg) => {
            f.extended_code == rusqlite::ffi::SQLITE_CORRUPT_VTAB
                || msg
                    .as_deref()
                    .is_some_and(|m| m.starts_with("vtable constructor failed"))
        }
        _ => false,
    }
}

/// Drops the text index and makes it anew, empty, in one transaction: FTS5's tables
/// go with `DROP TABLE`, the virtual table's own row of the schema is deleted (FTS5
/// may be unable to open it, and then `DROP TABLE email_text` fails), the table and
/// its trigger are created anew ([`crate::schema::TEXT_INDEX`]), the ids of emails
/// that went are forgotten (their entries went with the tables), and every indexed
/// email is marked unindexed for the background indexer. Returns how many emails
/// were.
pub(crate) fn rebuild(conn: &mut Connection) -> Result<u64> {
    let tx = write_tx_light(conn)?;
    tx.execute_batch(
        "DROP TRIGGER IF EXISTS email_text_drop;
         DROP TRIGGER IF EXISTS email_text_gone;
         DELETE FROM text_gone;",
    )
    .map_err(db_err)?;
    for shadow in crate::schema::TEXT_INDEX_SHADOWS {
        tx.execute_batch(&format!("DROP TABLE IF EXISTS {shadow}"))
            .map_err(db_err)?;
    }
    tx.execute_batch(
        "PRAGMA writable_schema = ON;
         DELETE FROM sqlite_schema WHERE type = 'table' AND name = 'email_text';
         PRAGMA writable_schema = RESET;",
    )
    .map_err(db_err)?;
    tx.execute_batch(crate::schema::TEXT_INDEX)
        .map_err(db_err)?;
    let n = tx
        .execute(
            "UPDATE emails SET text_state = 0 WHERE text_state = ?1",
            [INDEXED],
        )
        .map_err(db_err)?;
    tx.commit().map_err(db_err)?;
    Ok(u64::try_from(n).unwrap_or(u64::MAX))
}

/// Rebuilds the index if a statement found it damaged since the last look, and the
/// last rebuild is at least [`REBUILD_SPACING`] ago.
pub(crate) fn repair(inner: &Inner, conn: &mut Connection) -> Result<()> {
    if !inner.text_damaged.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut last = crate::lock(&inner.text_rebuilt);
    if last.is_some_and(|t| t.elapsed() < REBUILD_SPACING) {
        return Ok(());
    }
    *last = Some(std::time::Instant::now());
    inner.text_damaged.store(false, Ordering::Relaxed);
    match rebuild(conn) {
        Ok(n) => {
            tracing::warn!(
                "text index was damaged: rebuilt it empty; {n} emails are indexed again \
                 in the background, and SEARCH reads the rest meanwhile"
            );
            Ok(())
        }
        Err(e) => {
            tracing::error!("text index is damaged and could not be rebuilt: {e}");
            Err(e)
        }
    }
}

/// Whether the text index's tables hold together: FTS5's `integrity-check` (of the
/// index's own structure: a contentless table has no text to compare against).
/// `Ok(Some(problem))` when they do not.
pub(crate) fn integrity(conn: &Connection) -> Result<Option<String>> {
    match conn.execute(
        "INSERT INTO email_text (email_text, rank) VALUES ('integrity-check', 0)",
        [],
    ) {
        Ok(_) => Ok(None),
        Err(e)
            if is_damage(&e)
                || e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseCorrupt) =>
        {
            Ok(Some(e.to_string()))
        }
        Err(e) => Err(db_err(e)),
    }
}

/// The messages of `mailbox` whose email is not indexed: (UID, email, state).
fn unindexed(conn: &Connection, mailbox: MailboxId) -> Result<Vec<(u32, i64, i64)>> {
    let size: i64 = conn
        .row_c(
            "SELECT messages FROM mailboxes WHERE id = ?1",
            [mailbox],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?
        .unwrap_or(0);
    // Unindexed emails are few once the indexer has caught up: start from them
    // (through the partial index), so the cost follows them, not the mailbox. While
    // there are more of them (across all accounts) than the mailbox has messages,
    // as after an upgrade, start from the mailbox instead.
    let pending: i64 = conn
        .row_c(
            "SELECT count(*) FROM (SELECT 1 FROM emails WHERE text_state <> 1 LIMIT ?1)",
            [size.saturating_add(1)],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    let sql = if pending <= size {
        "SELECT me.uid, e.id, e.text_state FROM emails e CROSS JOIN mailbox_entries me
         ON me.email_id = e.id
         WHERE e.text_state <> 1 AND me.mailbox_id = ?1"
    } else {
        "SELECT me.uid, e.id, e.text_state FROM mailbox_entries me CROSS JOIN emails e
         ON e.id = me.email_id
         WHERE me.mailbox_id = ?1 AND e.text_state <> 1"
    };
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let rows = stmt
        .query_map([mailbox], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(db_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db_err)
}

/// The FTS5 query for `needle` (already folded): one quoted phrase, `"` doubled.
fn phrase(needle: &str, body_only: bool) -> String {
    let quoted = needle.replace('"', "\"\"");
    if body_only {
        format!("body : \"{quoted}\"")
    } else {
        format!("\"{quoted}\"")
    }
}

/// SEARCH BODY / TEXT from the index: first indexes up to `on_demand` of the
/// mailbox's unindexed emails, then answers in one read transaction.
pub(crate) fn search(
    inner: &Inner,
    conn: &mut Connection,
    mailbox: MailboxId,
    needle: &str,
    body_only: bool,
    on_demand: usize,
) -> Result<Option<TextHits>> {
    let needle = fold_needle(needle);
    if needle.chars().nth(2).is_none() || needle.contains(PIECE_SEPARATOR) {
        return Ok(None);
    }
    if on_demand > 0 {
        let todo: Vec<i64> = unindexed(conn, mailbox)?
            .into_iter()
            .filter(|&(_, _, state)| state == 0)
            .map(|(_, id, _)| id)
            .take(on_demand)
            .collect();
        if !todo.is_empty() {
            index_emails(inner, conn, &todo)?;
        }
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Deferred)
        .map_err(db_err)?;
    let mut unknown: Vec<Uid> = unindexed(&tx, mailbox)?
        .into_iter()
        .map(|(uid, _, _)| Uid(uid))
        .collect();
    unknown.sort_unstable();
    let ids: Vec<i64> = {
        let mut stmt = tx
            .prepare_cached("SELECT rowid FROM email_text WHERE email_text MATCH ?1")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([phrase(&needle, body_only)], |r| r.get(0))
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err)?
    };
    let size: i64 = tx
        .row_c(
            "SELECT messages FROM mailboxes WHERE id = ?1",
            [mailbox],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?
        .unwrap_or(0);
    let mut matched = Vec::new();
    if i64::try_from(ids.len())
        .unwrap_or(i64::MAX)
        .saturating_mul(4)
        > size
    {
        // Many hits: one pass over the mailbox instead of a probe per hit.
        let ids: HashSet<i64> = ids.into_iter().collect();
        let mut stmt = tx
            .prepare_cached("SELECT uid, email_id FROM mailbox_entries WHERE mailbox_id = ?1")
            .map_err(db_err)?;
        let mut rows = stmt.query([mailbox]).map_err(db_err)?;
        while let Some(r) = rows.next().map_err(db_err)? {
            let email: i64 = r.get(1).map_err(db_err)?;
            if ids.contains(&email) {
                matched.push(Uid(r.get(0).map_err(db_err)?));
            }
        }
    } else {
        let mut stmt = tx
            .prepare_cached(
                "SELECT uid FROM mailbox_entries WHERE email_id = ?1 AND mailbox_id = ?2",
            )
            .map_err(db_err)?;
        for id in ids {
            let rows = stmt
                .query_map(params![id, mailbox], |r| r.get(0))
                .map_err(db_err)?;
            for uid in rows {
                matched.push(Uid(uid.map_err(db_err)?));
            }
        }
    }
    tx.commit().map_err(db_err)?;
    matched.sort_unstable();
    matched.dedup();
    // An unindexed email's id may still have the entry of an email that went (see
    // `purge_gone`): its message is unknown, whatever the index says.
    matched.retain(|u| unknown.binary_search(u).is_err());
    Ok(Some(TextHits { matched, unknown }))
}

impl SqliteStore {
    /// Turns the text index's use by SEARCH on or off (on by default), and sets how
    /// many unindexed emails of the mailbox a SEARCH indexes before it answers (the
    /// rest are scanned; default [`DEFAULT_ON_DEMAND`]). Off, SEARCH scans every
    /// message, as with a store without an index (tests compare the two).
    pub fn set_text_index(&self, enabled: bool, on_demand: usize) {
        self.inner.text_enabled.store(enabled, Ordering::Relaxed);
        self.inner
            .text_on_demand
            .store(on_demand, Ordering::Relaxed);
    }

    /// Indexes up to `limit` emails not yet in the text index, after removing the
    /// entries of up to [`PURGE_ROUND`] emails that went; returns how many of both.
    /// First rebuilds the index if it was found damaged (see the module's "Damage").
    pub async fn index_text(&self, limit: usize) -> Result<usize> {
        self.run(move |inner, c| {
            repair(inner, c)?;
            let purged = purge_gone(c, PURGE_ROUND)?;
            Ok(index_pending(inner, c, limit)? + purged)
        })
        .await
    }

    /// Checks the text index's own structure (FTS5's `integrity-check`) and returns
    /// what is wrong, if anything; with `rebuild`, a damaged index is rebuilt at once
    /// (emptied, its emails indexed again by the server). Blocking, like
    /// [`SqliteStore::check`]; works beside a running server.
    pub fn check_text_index(&self, rebuild: bool) -> Result<Option<String>> {
        let mut conn = self.inner.connect()?;
        let problem = integrity(&conn)?;
        if problem.is_some() && rebuild {
            let n = self::rebuild(&mut conn)?;
            tracing::info!("text index rebuilt: {n} emails to index again");
        }
        Ok(problem)
    }

    /// Emails not yet in the text index (those left to scans not counted).
    pub async fn text_backlog(&self) -> Result<u64> {
        self.run(|_, c| {
            c.row_c(
                "SELECT count(*) FROM emails WHERE text_state <> 1 AND text_state = 0",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(u64_of)
            .map_err(db_err)
        })
        .await
    }

    /// The background indexer: indexes new emails in batches, in short write
    /// transactions, and looks again every couple of seconds when none is left.
    /// While mail is being written (a group commit in the last [`BUSY_WINDOW`]) it
    /// takes one small round ([`BUSY_BATCH`]) per [`BUSY_ROUND_EVERY`] only, so
    /// indexing yields the machine to deliveries and sessions and catches up when
    /// they quieten (a SEARCH indexes what it needs first, or scans). Runs until
    /// dropped (abort its task).
    pub async fn run_text_indexer(self) {
        let mut last_busy_round = tokio::time::Instant::now();
        loop {
            let mut batch = BATCH;
            if self.inner.written_within(BUSY_WINDOW) {
                tokio::time::sleep(BUSY_PAUSE).await;
                if last_busy_round.elapsed() < BUSY_ROUND_EVERY {
                    continue;
                }
                last_busy_round = tokio::time::Instant::now();
                batch = BUSY_BATCH;
            }
            match self.index_text(batch).await {
                Ok(0) => tokio::time::sleep(IDLE_PAUSE).await,
                Ok(_) => tokio::task::yield_now().await,
                Err(e) => {
                    tracing::warn!("text indexing failed: {e}");
                    tokio::time::sleep(IDLE_PAUSE).await;
                }
            }
        }
    }

    pub(crate) async fn search_text_index(
        &self,
        mailbox: MailboxId,
        needle: &str,
        body_only: bool,
    ) -> Result<Option<TextHits>> {
        if !self.inner.text_enabled.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let on_demand = self.inner.text_on_demand.load(Ordering::Relaxed);
        let needle = needle.to_string();
        self.run(move |inner, c| search(inner, c, mailbox, &needle, body_only, on_demand))
            .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn phrases_are_quoted() {
        assert_eq!(phrase("a\"b c", true), "body : \"a\"\"b c\"");
        assert_eq!(phrase("abc", false), "\"abc\"");
    }

    #[test]
    fn write_chunks_are_bounded_by_count_and_by_text() {
        let text = |n: usize| Extract::Text(String::new(), "x".repeat(n));
        let sizes = |chunks: Vec<&[(i64, Extract)]>| -> Vec<Vec<i64>> {
            chunks
                .into_iter()
                .map(|c| c.iter().map(|(id, _)| *id).collect())
                .collect()
        };
        // Small texts: runs of WRITE_CHUNK.
        let small: Vec<_> = (0..40).map(|i| (i, text(10))).collect();
        let runs = sizes(write_chunks(&small));
        assert_eq!(runs.iter().map(Vec::len).collect::<Vec<_>>(), [16, 16, 8]);
        assert_eq!(runs.concat(), (0..40).collect::<Vec<_>>());
        // Large texts: a run stays under WRITE_CHUNK_BYTES, and one email larger than
        // that goes alone; emails to scan weigh nothing.
        let third = WRITE_CHUNK_BYTES / 3;
        let large = vec![
            (1, text(third)),
            (2, text(third)),
            (3, Extract::Scan),
            (4, text(third)),
            (5, text(WRITE_CHUNK_BYTES * 2)),
            (6, text(1)),
        ];
        assert_eq!(
            sizes(write_chunks(&large)),
            [vec![1, 2, 3, 4], vec![5], vec![6]]
        );
        assert!(write_chunks(&[]).is_empty());
    }
}
