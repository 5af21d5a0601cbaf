//! The in-process write gate: writers of one database file queue here before
//! `BEGIN IMMEDIATE`, so threads of one process never meet on SQLite's lock.
//!
//! SQLite's busy handler polls a held lock by sleeping (1, 2, 5 … then 100 ms at a
//! time), so a writer that arrives while another commits sleeps far longer than the
//! commit takes, and under load late arrivals overtake it again and again: the
//! benchmark saw IMAP STORE and EXPUNGE wait up to 2 s behind commits of a few ms.
//! Here waiters block on a condition variable and are woken at once. Other
//! processes (`buudien deliver`, the CLI) still meet on SQLite's lock, under the
//! busy timeout, as before.
//!
//! One gate per database path, for the life of the process (a handful of bytes each).

use crate::{db_err, lock};
use buudien_store::{Result, StoreError};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

/// One database file's gate: `true` while a writer holds it.
#[derive(Default)]
struct Gate {
    held: Mutex<bool>,
    freed: Condvar,
}

/// A held gate; dropping it lets the next writer in.
struct Pass(Arc<Gate>);

impl Drop for Pass {
    fn drop(&mut self) {
        *lock(&self.0.held) = false;
        self.0.freed.notify_one();
    }
}

fn gate_for(conn: &Connection) -> Arc<Gate> {
    static GATES: OnceLock<Mutex<HashMap<String, Arc<Gate>>>> = OnceLock::new();
    let key = conn.path().unwrap_or_default().to_string();
    lock(GATES.get_or_init(Default::default))
        .entry(key)
        .or_default()
        .clone()
}

/// Waits (at most `timeout`) for the gate of `conn`'s database.
fn enter(conn: &Connection, timeout: Duration) -> Result<Pass> {
    let gate = gate_for(conn);
    {
        let held = lock(&gate.held);
        let (mut held, waited) = gate
            .freed
            .wait_timeout_while(held, timeout, |h| *h)
            .unwrap_or_else(|p| p.into_inner());
        if *held {
            debug_assert!(waited.timed_out());
            return Err(StoreError::Busy);
        }
        *held = true;
    }
    Ok(Pass(gate))
}

/// A `BEGIN IMMEDIATE` transaction that holds its database's write gate until it
/// commits or is dropped (rolled back).
pub(crate) struct WriteTx<'a> {
    // Declared first: dropped (rolled back) before the gate opens.
    tx: Transaction<'a>,
    _pass: Pass,
}

impl<'a> WriteTx<'a> {
    /// Commits, then opens the gate.
    pub(crate) fn commit(self) -> rusqlite::Result<()> {
        self.tx.commit()
    }
}

impl<'a> Deref for WriteTx<'a> {
    type Target = Transaction<'a>;
    fn deref(&self) -> &Transaction<'a> {
        &self.tx
    }
}

impl DerefMut for WriteTx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// How a write transaction's commit reaches the disk.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Sync {
    /// `synchronous = FULL`: the log is fsynced before `COMMIT` returns. Every write
    /// that stores or moves a message, or that something is acknowledged on as
    /// durable, is `Full`.
    Full,
    /// `synchronous = NORMAL`: the commit is in the log (it survives the process
    /// being killed) and reaches the disk with the next `Full` commit or checkpoint,
    /// whichever comes first; a power loss before then undoes it. For flag changes,
    /// `\Recent` marks, expunges and the text index: what a Dovecot with
    /// `mail_fsync = optimized` does not fsync either. The log is one sequential
    /// file, so a `Full` commit makes every earlier `Light` one durable too.
    Light,
}

/// Passes the gate (waiting at most `timeout`, then [`StoreError::Busy`]) and
/// begins an immediate transaction on `conn` that commits as `sync` says.
pub(crate) fn begin(conn: &mut Connection, timeout: Duration, sync: Sync) -> Result<WriteTx<'_>> {
    let pass = enter(conn, timeout)?;
    conn.execute_batch(match sync {
        Sync::Full => "PRAGMA synchronous = FULL",
        Sync::Light => "PRAGMA synchronous = NORMAL",
    })
    .map_err(db_err)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    Ok(WriteTx { tx, _pass: pass })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn open(dir: &std::path::Path) -> Connection {
        let c = Connection::open(dir.join("db")).unwrap();
        c.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE IF NOT EXISTS t (x)")
            .unwrap();
        c
    }

    #[test]
    fn writers_of_one_file_take_turns_and_a_stuck_one_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = open(dir.path());
        let mut b = open(dir.path());
        let tx = begin(&mut a, Duration::from_secs(1), Sync::Full).unwrap();
        // The second writer waits for the gate, not SQLite's lock, and gives up.
        assert!(matches!(
            begin(&mut b, Duration::from_millis(50), Sync::Light),
            Err(StoreError::Busy)
        ));
        tx.commit().unwrap();
        begin(&mut b, Duration::from_millis(50), Sync::Light)
            .unwrap()
            .commit()
            .unwrap();
        // A dropped (rolled back) transaction opens the gate too.
        drop(begin(&mut a, Duration::from_secs(1), Sync::Full).unwrap());
        begin(&mut b, Duration::from_millis(50), Sync::Light)
            .unwrap()
            .commit()
            .unwrap();
    }

    #[test]
    fn many_threads_all_get_through_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        open(dir.path());
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let path = dir.path().to_path_buf();
                let inside = inside.clone();
                std::thread::spawn(move || {
                    let mut c = open(&path);
                    for j in 0..20 {
                        let tx = begin(&mut c, Duration::from_secs(30), Sync::Full).unwrap();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        tx.execute("INSERT INTO t VALUES (?1)", [i * 100 + j])
                            .unwrap();
                        inside.fetch_sub(1, Ordering::SeqCst);
                        tx.commit().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let c = open(dir.path());
        let n: i64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 160);
    }
}
