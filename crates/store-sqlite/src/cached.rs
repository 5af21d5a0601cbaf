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
