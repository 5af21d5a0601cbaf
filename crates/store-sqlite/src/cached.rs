//! Statements from the connection's cache: each SQL text is compiled once per
//! pooled connection instead of on every call (compiling was a sixth of the server's
//! CPU under the IMAP benchmark). That holds only with the query planner stability
//! guarantee the store's connections turn on (see `Inner::connect`): without
//! it SQLite recompiles a reused statement whose plan looked at a bound value.

use rusqlite::{Connection, Params, Row};

/// Capacity of each connection's statement cache: every SQL text the store uses.
pub(crate) const CAPACITY: usize = 256;

/// `execute` and `query_row` through [`Connection::prepare_cached`].
pub(crate) trait Cached {
    /// [`Connection::execute`] with a cached statement.
    fn exec_c<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    /// [`Connection::query_row`] with a cached statement.
    fn row_c<T, P: Params, F: FnOnce(&Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn exec_c<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row_c<T, P: Params, F: FnOnce(&Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// A transaction begun and ended with statements from the connection's cache.
/// rusqlite's `Transaction` runs `BEGIN` and `COMMIT` with `execute_batch`, which
/// compiles them anew every time; with the uncached lookups of SELECT and STORE
/// that compiling was 7 % of the server's CPU under the IMAP benchmark.
///
/// Dropped without [`Tx::commit`] (or after a failed commit), it rolls back.
pub(crate) struct Tx<'a> {
    conn: &'a Connection,
    open: bool,
}

impl<'a> Tx<'a> {
    /// `BEGIN` (deferred): a read transaction until the first write.
    pub(crate) fn deferred(conn: &'a Connection) -> rusqlite::Result<Tx<'a>> {
        Tx::begin(conn, "BEGIN")
    }

    /// `BEGIN IMMEDIATE`: takes SQLite's write lock at once.
    pub(crate) fn immediate(conn: &'a Connection) -> rusqlite::Result<Tx<'a>> {
        Tx::begin(conn, "BEGIN IMMEDIATE")
    }

    fn begin(conn: &'a Connection, sql: &str) -> rusqlite::Result<Tx<'a>> {
        conn.exec_c(sql, [])?;
        Ok(Tx { conn, open: true })
    }

    /// `COMMIT`. On failure the transaction is still open and rolls back as it drops.
    pub(crate) fn commit(mut self) -> rusqlite::Result<()> {
        self.conn.exec_c("COMMIT", [])?;
        self.open = false;
        Ok(())
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        // SQLite may have rolled back by itself already (some I/O errors do).
        if self.open && !self.conn.is_autocommit() {
            let _ = self.conn.exec_c("ROLLBACK", []);
        }
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn count(c: &Connection) -> i64 {
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn commits_rolls_back_on_drop_and_reuses_its_statements() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x)")
            .unwrap();
        for i in 0..3 {
            let tx = Tx::immediate(&c).unwrap();
            tx.exec_c("INSERT INTO t VALUES (?1)", [i]).unwrap();
            tx.commit().unwrap();
        }
        assert_eq!(count(&c), 3);
        {
            let tx = Tx::deferred(&c).unwrap();
            tx.exec_c("INSERT INTO t VALUES (9)", []).unwrap();
            assert!(!c.is_autocommit());
        }
        assert!(c.is_autocommit());
        assert_eq!(count(&c), 3);
        // A second writer waits for the first: BEGIN IMMEDIATE fails as busy, and
        // the failed begin leaves no transaction behind.
        let other = Connection::open(&path).unwrap();
        other.busy_timeout(std::time::Duration::ZERO).unwrap();
        let held = Tx::immediate(&c).unwrap();
        assert!(Tx::immediate(&other).is_err());
        assert!(other.is_autocommit());
        drop(held);
        Tx::immediate(&other).unwrap().commit().unwrap();
        // A write refused inside the transaction (a reader's snapshot went stale:
        // SQLITE_BUSY_SNAPSHOT) leaves it open until the guard drops.
        let reader = Tx::deferred(&other).unwrap();
        assert_eq!(count(&reader), 3);
        let writer = Tx::immediate(&c).unwrap();
        writer.exec_c("INSERT INTO t VALUES (4)", []).unwrap();
        writer.commit().unwrap();
        assert!(reader.exec_c("INSERT INTO t VALUES (5)", []).is_err());
        drop(reader);
        assert!(other.is_autocommit());
        assert_eq!(count(&other), 4);
    }
}
