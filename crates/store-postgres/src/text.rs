//! The text index behind SEARCH BODY / TEXT (RFC 9051 §6.4.4), as the SQLite
//! backend's (see its `text` module for the reasoning), on PostgreSQL's `pg_trgm`.
//!
//! Per email (shared by its mailboxes), `email_text` holds the searchable text as
//! `buudien_message::searchable_text` gives it: the pieces SEARCH's scan compares
//! against, decoded and case-folded by buudien, joined with a separator no needle
//! contains. A needle folded the same way is then a plain substring test, `LIKE
//! '%needle%'` (with `%`, `_` and `\` escaped), which the trigram GIN indexes answer
//! without reading every row, and which is exact (PostgreSQL rechecks each candidate).
//! A needle under three characters, or containing the separator or NUL, is not
//! looked up (`None`: SEARCH scans).
//!
//! Emails are indexed off the delivery path: a SEARCH first indexes up to its
//! on-demand bound of the mailbox's unindexed emails, and reports the rest as
//! unknown (SEARCH reads those); [`PgStore::run_text_indexer`] indexes the backlog
//! in the background. An email with more than [`TEXT_LIMIT`] octets of text, larger
//! than [`READ_LIMIT`], or whose text PostgreSQL cannot hold (NUL) is marked to be
//! scanned. The entry goes with the email row (`ON DELETE CASCADE`).
//!
//! Without `pg_trgm` (not installable on the server) the index is off: `search_text`
//! answers `None` and SEARCH reads the messages.

use crate::blobs_s3::S3Blobs;
use crate::mail::u64_of;
use crate::{Inner, PgStore, Tx, blobs, exec, get, in_tx, row_one, row_opt, rows};
use buudien_message::{MessageMeta, PIECE_SEPARATOR, fold_needle, searchable_text};
use buudien_store::{MailboxId, Result, StoreError, TextHits};
use buudien_types::Uid;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Folded text indexed per email, at most (1 MiB); an email with more is scanned.
pub const TEXT_LIMIT: usize = 1 << 20;
/// Emails larger than this (64 MiB) are not read for the index; they are scanned.
pub const READ_LIMIT: u64 = 64 << 20;
/// Emails a SEARCH indexes before it answers, by default.
pub const DEFAULT_ON_DEMAND: usize = 512;
/// Emails read and written per transaction (bounds memory: 2 × [`TEXT_LIMIT`] each).
const BATCH: usize = 32;
/// The background indexer's pause when nothing is left to index.
const IDLE_PAUSE: Duration = Duration::from_secs(2);

/// `emails.text_state`: in `email_text`.
const INDEXED: i16 = 1;
/// `emails.text_state`: left to a scan.
const SCAN: i16 = 2;

/// What one email gave for the index.
enum Extract {
    Text(String, String),
    Scan,
}

/// Reads one unindexed email; `None` when it is gone or indexed meanwhile.
async fn read_one(
    tx: &Tx<'_>,
    s3: Option<&S3Blobs>,
    id: i64,
) -> Result<Option<(Vec<u8>, Option<Vec<u8>>)>> {
    let Some(r) = row_opt(
        tx,
        "SELECT blob_id, size, meta FROM emails WHERE id = $1 AND text_state = 0",
        &[&id],
    )
    .await?
    else {
        return Ok(None);
    };
    if u64_of(get(&r, 1)?) > READ_LIMIT {
        return Ok(Some((Vec::new(), None)));
    }
    let blob = crate::mail::blob_from(get(&r, 0)?)?;
    match blobs::read(tx, s3, &blob).await {
        Ok(bytes) => Ok(Some((bytes, get(&r, 2)?))),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(StoreError::Damaged(e)) => {
            tracing::warn!("text index: email {id} left to scans: {e}");
            Ok(Some((Vec::new(), None)))
        }
        Err(e) => Err(e),
    }
}

/// The searchable text of an email (CPU work: run off the reactor).
fn extract(bytes: &[u8], meta: Option<&[u8]>) -> Extract {
    if bytes.is_empty() {
        return Extract::Scan;
    }
    let meta = meta
        .and_then(|m| MessageMeta::from_bytes(m).ok())
        .unwrap_or_else(|| MessageMeta::parse(bytes));
    match searchable_text(bytes, &meta, TEXT_LIMIT) {
        Some(t) if !t.header.contains('\0') && !t.body.contains('\0') => {
            Extract::Text(t.header, t.body)
        }
        _ => Extract::Scan,
    }
}

/// Indexes these emails (those still unindexed), [`BATCH`] per transaction: reads
/// them, extracts their text on the blocking pool, then records each unless another
/// indexer was first. Returns how many were recorded.
async fn index_emails(inner: &Inner, ids: &[i64]) -> Result<usize> {
    let mut n = 0;
    let s3 = inner.s3.as_deref();
    for batch in ids.chunks(BATCH) {
        let read = in_tx!(inner, |tx| async move {
            let mut out = Vec::with_capacity(batch.len());
            for &id in batch {
                if let Some(x) = read_one(tx, s3, id).await? {
                    out.push((id, x));
                }
            }
            Ok(out)
        })?;
        if read.is_empty() {
            continue;
        }
        let done = tokio::task::spawn_blocking(move || {
            read.into_iter()
                .map(|(id, (bytes, meta))| (id, extract(&bytes, meta.as_deref())))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| StoreError::Database(format!("text extraction failed: {e}")))?;
        let done = &done;
        n += in_tx!(inner, |tx| async move {
            let mut n = 0;
            for (id, e) in done {
                let state = if matches!(e, Extract::Text(..)) {
                    INDEXED
                } else {
                    SCAN
                };
                let marked = exec(
                    tx,
                    "UPDATE emails SET text_state = $2 WHERE id = $1 AND text_state = 0",
                    &[id, &state],
                )
                .await?;
                if marked == 0 {
                    continue;
                }
                if let Extract::Text(header, body) = e {
                    exec(
                        tx,
                        "INSERT INTO email_text (email_id, header, body) VALUES ($1, $2, $3)",
                        &[id, header, body],
                    )
                    .await?;
                }
                n += 1;
            }
            Ok(n)
        })?;
    }
    Ok(n)
}

/// `LIKE` pattern matching `needle` anywhere (`\` is LIKE's default escape).
fn pattern(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// SEARCH BODY / TEXT from the index.
async fn search(
    inner: &Inner,
    mailbox: MailboxId,
    needle: &str,
    body_only: bool,
    on_demand: usize,
) -> Result<Option<TextHits>> {
    let needle = fold_needle(needle);
    if needle.chars().nth(2).is_none() || needle.contains(PIECE_SEPARATOR) || needle.contains('\0')
    {
        return Ok(None);
    }
    if on_demand > 0 {
        let limit = i64::try_from(on_demand).unwrap_or(i64::MAX);
        let todo: Vec<i64> = in_tx!(inner, |tx| async move {
            let rs = rows(
                tx,
                "SELECT e.id FROM mailbox_entries me JOIN emails e ON e.id = me.email_id
                 WHERE me.mailbox_id = $1 AND e.text_state = 0 LIMIT $2",
                &[&mailbox, &limit],
            )
            .await?;
            rs.iter().map(|r| get(r, 0)).collect::<Result<Vec<i64>>>()
        })?;
        if !todo.is_empty() {
            index_emails(inner, &todo).await?;
        }
    }
    let like = pattern(&needle);
    let like = &like;
    in_tx!(inner, |tx| async move {
        // Unknown first, then matches: an email indexed between the two reads is
        // then matched (and dropped from the unknown), never lost.
        let unknown = rows(
            tx,
            "SELECT me.uid FROM mailbox_entries me JOIN emails e ON e.id = me.email_id
             WHERE me.mailbox_id = $1 AND e.text_state <> 1",
            &[&mailbox],
        )
        .await?;
        let sql = if body_only {
            "SELECT me.uid FROM mailbox_entries me JOIN email_text t ON t.email_id = me.email_id
             WHERE me.mailbox_id = $1 AND t.body LIKE $2"
        } else {
            "SELECT me.uid FROM mailbox_entries me JOIN email_text t ON t.email_id = me.email_id
             WHERE me.mailbox_id = $1 AND (t.body LIKE $2 OR t.header LIKE $2)"
        };
        let matched = rows(tx, sql, &[&mailbox, like]).await?;
        let uids = |rs: &[tokio_postgres::Row]| -> Result<BTreeSet<u32>> {
            rs.iter()
                .map(|r| crate::mail::uid_of(get(r, 0)?).map(|u| u.0))
                .collect()
        };
        let matched = uids(&matched)?;
        let unknown: Vec<Uid> = uids(&unknown)?
            .difference(&matched)
            .map(|&u| Uid(u))
            .collect();
        Ok(Some(TextHits {
            matched: matched.into_iter().map(Uid).collect(),
            unknown,
        }))
    })
}

/// Whether the trigram indexes exist (the `pg_trgm` extension was available).
pub(crate) async fn available(inner: &Inner) -> Result<bool> {
    in_tx!(inner, |tx| async move {
        let r = row_one(
            tx,
            "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = 'email_text_body_trgm')",
            &[],
        )
        .await?;
        get::<bool>(&r, 0)
    })
}

impl PgStore {
    /// Turns the text index's use by SEARCH on or off (on by default when `pg_trgm`
    /// is there), and sets how many unindexed emails of the mailbox a SEARCH indexes
    /// before it answers (default [`DEFAULT_ON_DEMAND`]). Turning it on without the
    /// trigram indexes keeps it off.
    pub fn set_text_index(&self, enabled: bool, on_demand: usize) {
        let inner = &self.inner;
        inner.text.enabled.store(
            enabled && inner.text.available.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        inner.text.on_demand.store(on_demand, Ordering::Relaxed);
    }

    /// True when SEARCH BODY / TEXT is answered from the trigram index.
    pub fn has_text_index(&self) -> bool {
        self.inner.text.enabled.load(Ordering::Relaxed)
    }

    /// Indexes up to `limit` emails not yet in the text index; returns how many.
    pub async fn index_text(&self, limit: usize) -> Result<usize> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let ids: Vec<i64> = in_tx!(self.inner, |tx| async move {
            let rs = rows(
                tx,
                "SELECT id FROM emails WHERE text_state = 0 ORDER BY id LIMIT $1",
                &[&limit],
            )
            .await?;
            rs.iter().map(|r| get(r, 0)).collect::<Result<Vec<i64>>>()
        })?;
        index_emails(&self.inner, &ids).await
    }

    /// Emails not yet in the text index (those left to scans not counted).
    pub async fn text_backlog(&self) -> Result<u64> {
        in_tx!(self.inner, |tx| async move {
            let r = row_one(tx, "SELECT count(*) FROM emails WHERE text_state = 0", &[]).await?;
            Ok(u64_of(get(&r, 0)?))
        })
    }

    /// The background indexer: indexes new emails in batches and looks again every
    /// couple of seconds when none is left. Runs until its task is aborted.
    pub async fn run_text_indexer(self) {
        loop {
            match self.index_text(BATCH).await {
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
        if !self.inner.text.enabled.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let on_demand = self.inner.text.on_demand.load(Ordering::Relaxed);
        search(&self.inner, mailbox, needle, body_only, on_demand).await
    }
}

/// The text index's switches.
pub(crate) struct TextSettings {
    /// The trigram indexes exist.
    pub(crate) available: std::sync::atomic::AtomicBool,
    pub(crate) enabled: std::sync::atomic::AtomicBool,
    pub(crate) on_demand: std::sync::atomic::AtomicUsize,
}

impl TextSettings {
    pub(crate) fn new() -> TextSettings {
        TextSettings {
            available: std::sync::atomic::AtomicBool::new(false),
            enabled: std::sync::atomic::AtomicBool::new(false),
            on_demand: std::sync::atomic::AtomicUsize::new(DEFAULT_ON_DEMAND),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_escape_like_syntax() {
        assert_eq!(pattern("a%b_c\\d"), "%a\\%b\\_c\\\\d%");
        assert_eq!(pattern("abc"), "%abc%");
    }
}
