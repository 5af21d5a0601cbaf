//! Group commit: concurrent writes share one transaction and so one `fsync` of
//! SQLite's log, instead of paying one each (DESIGN: "share each fsync among
//! concurrent deliveries"): deliveries, APPEND, and the hot small writes of IMAP and
//! POP3 sessions (STORE, EXPUNGE, the `\Recent` claim), which then also share the
//! log pages a commit writes (the mailbox and account rows most of them touch).
//!
//! A writer hands its work (a closure over the open transaction) to [`Group::commit`]
//! and waits. The first writer that finds no leader becomes the leader: it takes every
//! queued piece of work (at most [`MAX_BATCH`]), opens one `BEGIN IMMEDIATE`
//! transaction, runs each piece inside its own savepoint (a piece that fails is rolled
//! back alone and gets its error), commits once, and hands every writer its result.
//! It then serves the work that queued up meanwhile, for at most [`MAX_TURNS`]
//! batches in all, and steps down: the first writer still queued is woken to lead.
//! Each writer waits on its own condition variable, so a batch wakes exactly its
//! writers.
//!
//! Invariants:
//! - A writer's result is `Ok` only after the `COMMIT` that holds its rows returned,
//!   and that commit is `Full` (durable) when any piece of the batch asked for it
//!   (see `gate::Sync`). When `COMMIT` fails, every piece of the batch
//!   gets the error.
//! - The pieces of a batch run in the order they were queued, in one transaction, so
//!   each sees the rows (quota usage, UIDNEXT) of those before it.
//! - Blob files a failed piece (or a failed batch) put in place are removed again
//!   under a new write lock when no row refers to them (`mail::remove_rowless`).
//! - Work is owned (`'static`): the leader runs it on its own thread.

use crate::cached::Cached;
use crate::faults::Point;
use crate::gate::Sync;
use crate::{Inner, lock};
use buudien_store::{BlobId, Result, StoreError};
use rusqlite::Connection;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

/// Most pieces of work in one transaction.
pub(crate) const MAX_BATCH: usize = 256;
/// Batches a leader runs before it steps down, so that its own caller is answered.
pub(crate) const MAX_TURNS: usize = 4;

/// One piece of work: fills the open transaction, listing in its second argument
/// every blob file it puts in place (before placing it).
pub(crate) type Work = Box<dyn FnOnce(&Connection, &mut Vec<BlobId>) -> Result<()> + Send>;

/// The queue of work waiting for a leader.
#[derive(Default)]
pub(crate) struct Group {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queue: Vec<(u64, Sync, Work, Arc<Waiter>)>,
    leader: bool,
    next_id: u64,
}

/// Where one writer waits: for its result, or to be made the leader. Each writer
/// has its own, so a batch wakes exactly its writers (and one successor), not every
/// thread that waits.
#[derive(Default)]
struct Waiter {
    state: Mutex<Turn>,
    woken: Condvar,
}

#[derive(Default)]
enum Turn {
    #[default]
    Waiting,
    /// The previous leader stepped down with this writer's work still queued.
    Lead,
    Done(Result<()>),
}

impl Waiter {
    fn set(&self, turn: Turn) {
        *lock(&self.state) = turn;
        self.woken.notify_one();
    }

    /// Blocks until this writer has its result (`Some`) or must lead (`None`).
    fn wait(&self) -> Option<Result<()>> {
        let mut st = lock(&self.state);
        loop {
            match std::mem::take(&mut *st) {
                Turn::Done(r) => return Some(r),
                Turn::Lead => return None,
                Turn::Waiting => {
                    st = self
                        .woken
                        .wait(st)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            }
        }
    }

    fn take_result(&self) -> Option<Result<()>> {
        let mut st = lock(&self.state);
        match std::mem::take(&mut *st) {
            Turn::Done(r) => Some(r),
            other => {
                *st = other;
                None
            }
        }
    }
}

impl Group {
    /// Runs `f` in a shared transaction and returns its value once that transaction
    /// has committed as `sync` asks (a batch commits `Full` when any of its pieces
    /// asks for it). `f` lists every blob file it puts in place in its second
    /// argument.
    pub(crate) fn run<T, F>(
        &self,
        inner: &Inner,
        conn: &mut Connection,
        sync: Sync,
        f: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Vec<BlobId>) -> Result<T> + Send + 'static,
    {
        let answer: std::sync::Arc<Mutex<Option<T>>> = std::sync::Arc::new(Mutex::new(None));
        let slot = std::sync::Arc::clone(&answer);
        let work: Work = Box::new(move |tx, placed| {
            let v = f(tx, placed)?;
            *lock(&slot) = Some(v);
            Ok(())
        });
        self.commit(inner, conn, sync, work)?;
        lock(&answer)
            .take()
            .ok_or_else(|| StoreError::Database("a committed write has no result".into()))
    }

    /// Runs `work` in a shared transaction and returns once that transaction has
    /// committed (or failed). `conn` is used if this caller becomes the leader.
    pub(crate) fn commit(
        &self,
        inner: &Inner,
        conn: &mut Connection,
        sync: Sync,
        work: Work,
    ) -> Result<()> {
        let me = Arc::new(Waiter::default());
        let lead = {
            let mut st = lock(&self.state);
            let id = st.next_id;
            st.next_id = st.next_id.wrapping_add(1);
            st.queue.push((id, sync, work, Arc::clone(&me)));
            !std::mem::replace(&mut st.leader, true)
        };
        if !lead && let Some(r) = me.wait() {
            return r;
        }
        // The leader: runs batches until its own work is answered; after that it goes
        // on while work is queued, up to MAX_TURNS batches in all, then hands over so
        // that its own caller is answered.
        let mut turns = 0;
        loop {
            let batch = {
                let mut st = lock(&self.state);
                let mine_done = matches!(*lock(&me.state), Turn::Done(_));
                if st.queue.is_empty() || (mine_done && turns >= MAX_TURNS) {
                    // Step down: hand over to the first writer still queued, if any.
                    match st.queue.first() {
                        Some((_, _, _, next)) => next.set(Turn::Lead),
                        None => st.leader = false,
                    }
                    break;
                }
                let n = st.queue.len().min(MAX_BATCH);
                st.queue.drain(..n).collect::<Vec<_>>()
            };
            turns += 1;
            inner.note_write();
            let mut waiters = HashMap::with_capacity(batch.len());
            let work = batch
                .into_iter()
                .map(|(id, sync, work, waiter)| {
                    waiters.insert(id, waiter);
                    (id, sync, work)
                })
                .collect();
            for (id, r) in run_batch(inner, conn, work) {
                if let Some(w) = waiters.remove(&id) {
                    w.set(Turn::Done(r));
                }
            }
        }
        me.take_result().unwrap_or_else(|| {
            Err(StoreError::Database(
                "group commit lost a result (a bug)".into(),
            ))
        })
    }
}

/// Runs one batch in one transaction; every piece gets its result.
fn run_batch(
    inner: &Inner,
    conn: &mut Connection,
    batch: Vec<(u64, Sync, Work)>,
) -> Vec<(u64, Result<()>)> {
    let mut out = Vec::with_capacity(batch.len());
    let mut to_clean: Vec<BlobId> = Vec::new();
    let mut all_placed: Vec<BlobId> = Vec::new();
    let sync = if batch.iter().any(|(_, s, _)| *s == Sync::Full) {
        Sync::Full
    } else {
        Sync::Light
    };
    let committed = {
        let tx = match crate::gate::begin(conn, crate::BUSY_TIMEOUT, sync) {
            Ok(tx) => tx,
            Err(e) => {
                return batch
                    .into_iter()
                    .map(|(id, _, _)| (id, Err(e.clone())))
                    .collect();
            }
        };
        // Set when SQLite rolled the whole transaction back by itself (it does on
        // some errors: SQLITE_FULL, I/O errors): the batch is then over.
        let mut aborted: Option<StoreError> = None;
        for (id, _, work) in batch {
            if let Some(e) = &aborted {
                out.push((id, Err(e.clone())));
                continue;
            }
            let mut placed = Vec::new();
            let r = tx
                .exec_c("SAVEPOINT piece", [])
                .map_err(crate::db_err)
                .and_then(|_| work(&tx, &mut placed));
            let r = match r {
                Ok(()) => tx
                    .exec_c("RELEASE piece", [])
                    .map(|_| ())
                    .map_err(crate::db_err),
                Err(e) => {
                    if tx.is_autocommit() {
                        aborted = Some(e.clone());
                    } else {
                        // Undo this piece alone.
                        let _ = tx.execute_batch("ROLLBACK TO piece; RELEASE piece");
                    }
                    Err(e)
                }
            };
            if r.is_err() {
                to_clean.extend_from_slice(&placed);
            }
            all_placed.extend(placed);
            out.push((id, r));
        }
        match aborted {
            Some(e) => Err(e),
            // Nothing to keep: the transaction rolls back as it is dropped.
            None if out.iter().all(|(_, r)| r.is_err()) => Ok(()),
            // The renames of the whole batch become durable together, then the rows.
            // (The `commit` fault point counts message-storing, durable commits.)
            None => crate::blobs::sync_dirs(&inner.dir, &inner.faults, &all_placed)
                .and_then(|()| match sync {
                    Sync::Full => inner.faults.check(Point::Commit).map_err(StoreError::from),
                    Sync::Light => Ok(()),
                })
                .and_then(|()| tx.commit().map_err(crate::db_err)),
        }
    };
    if let Err(e) = committed {
        for (_, r) in &mut out {
            if r.is_ok() {
                *r = Err(e.clone());
            }
        }
        to_clean = all_placed;
    }
    if !to_clean.is_empty() {
        match crate::mail::remove_rowless(inner, conn, &to_clean) {
            Ok(n) => tracing::debug!(removed = n, "blob files of a failed write removed"),
            Err(e) => {
                tracing::warn!(error = %e, "blob files of a failed write left for the next start")
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::SqliteStore;

    /// More writers at once than one batch holds: every one gets its own value
    /// back, every piece is committed once, and a failing piece fails alone.
    #[test]
    fn many_writers_each_get_their_result() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        s.inner
            .connect()
            .unwrap()
            .execute_batch("CREATE TABLE t (x INTEGER PRIMARY KEY)")
            .unwrap();
        let n = MAX_BATCH + 44;
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let inner = Arc::clone(&s.inner);
                std::thread::spawn(move || {
                    let mut conn = inner.connect().unwrap();
                    let sync = if i % 3 == 0 { Sync::Full } else { Sync::Light };
                    inner.group.run(&inner, &mut conn, sync, move |tx, _| {
                        if i == 7 {
                            return Err(StoreError::Refused("seven".into()));
                        }
                        tx.execute("INSERT INTO t (x) VALUES (?1)", [i as i64])
                            .map_err(crate::db_err)?;
                        Ok(i * 2)
                    })
                })
            })
            .collect();
        for (i, t) in threads.into_iter().enumerate() {
            match t.join().unwrap() {
                Ok(v) => assert_eq!(v, i * 2),
                Err(e) => assert!(i == 7 && matches!(e, StoreError::Refused(_)), "{i}: {e}"),
            }
        }
        let c = s.inner.connect().unwrap();
        let count: i64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, (n - 1) as i64);
        assert!(
            !lock(&s.inner.group.state).leader,
            "the last leader stepped down"
        );
    }
}
