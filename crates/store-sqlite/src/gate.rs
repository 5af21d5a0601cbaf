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

use crate::cached::Tx;
use crate::{db_err, lock};
use buudien_store::{Result, StoreError};
use rusqlite::Connection;
use std::collections::{BTreeSet, HashMap};
use std::ops::Deref;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

/// One database file's gate: a ticket queue, so writers get in in the order they
/// came. (An unfair lock let a writer that releases and re-enters at once — the
/// text indexer's chunks, a group commit leader's batches — starve the others for
/// the whole busy timeout.)
#[derive(Default)]
struct Gate {
    queue: Mutex<Tickets>,
    turned: Condvar,
}

#[derive(Default)]
struct Tickets {
    /// The next ticket handed out.
    next: u64,
    /// The ticket whose turn it is (held, or about to be taken by its waiter).
    serving: u64,
    /// Tickets whose waiters gave up (timed out): skipped when their turn comes.
    abandoned: BTreeSet<u64>,
}

impl Tickets {
    /// The turn passes to the next ticket still wanted.
    fn advance(&mut self) {
        self.serving = self.serving.wrapping_add(1);
        while self.abandoned.remove(&self.serving) {
            self.serving = self.serving.wrapping_add(1);
        }
    }
}

/// A held gate; dropping it lets the next writer in.
struct Pass(Arc<Gate>);

impl Drop for Pass {
    fn drop(&mut self) {
        lock(&self.0.queue).advance();
        // Waiters wait for their own ticket: wake them all to look (they are few:
        // group commit leaders and the store's own background writers).
        self.0.turned.notify_all();
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

/// Waits (at most `timeout`) for the gate of `conn`'s database, in turn.
fn enter(conn: &Connection, timeout: Duration) -> Result<Pass> {
    let gate = gate_for(conn);
    {
        let mut q = lock(&gate.queue);
        let ticket = q.next;
        q.next = q.next.wrapping_add(1);
        let (mut q, _) = gate
            .turned
            .wait_timeout_while(q, timeout, |q| q.serving != ticket)
            .unwrap_or_else(|p| p.into_inner());
        if q.serving != ticket {
            q.abandoned.insert(ticket);
            return Err(StoreError::Busy);
        }
    }
    Ok(Pass(gate))
}

/// A `BEGIN IMMEDIATE` transaction that holds its database's write gate until it
/// commits or is dropped (rolled back).
pub(crate) struct WriteTx<'a> {
    // Declared first: dropped (rolled back) before the gate opens.
    tx: Tx<'a>,
    _pass: Pass,
}

impl<'a> WriteTx<'a> {
    /// Commits, then opens the gate.
    pub(crate) fn commit(self) -> rusqlite::Result<()> {
        self.tx.commit()
    }
}

impl Deref for WriteTx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.tx
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
    let tx = Tx::immediate(conn).map_err(db_err)?;
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

    #[test]
    fn writers_get_in_in_turn_and_a_given_up_turn_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = open(dir.path());
        let mut b = open(dir.path());
        let mut c = open(dir.path());
        let tx = begin(&mut a, Duration::from_secs(1), Sync::Full).unwrap();
        // b gives up while a holds the gate; its ticket must not block c later.
        assert!(matches!(
            begin(&mut b, Duration::from_millis(20), Sync::Full),
            Err(StoreError::Busy)
        ));
        let order = Arc::new(Mutex::new(Vec::new()));
        let path = dir.path().to_path_buf();
        let o = Arc::clone(&order);
        let waiter = std::thread::spawn(move || {
            let mut d = open(&path);
            let tx = begin(&mut d, Duration::from_secs(30), Sync::Full).unwrap();
            lock(&o).push("first waiter");
            tx.commit().unwrap();
        });
        // Let the waiter take its ticket before the next one does.
        std::thread::sleep(Duration::from_millis(100));
        tx.commit().unwrap();
        let tx = begin(&mut c, Duration::from_secs(30), Sync::Full).unwrap();
        lock(&order).push("later writer");
        tx.commit().unwrap();
        waiter.join().unwrap();
        assert_eq!(*lock(&order), ["first waiter", "later writer"]);
    }
}
