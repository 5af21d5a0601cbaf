//! Store errors, split the way every protocol needs them: temporary (retry later:
//! `-ERR [SYS/TEMP]`, `451`, exit 75) or permanent.

use thiserror::Error;

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The named thing does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// The named thing exists already.
    #[error("{0} already exists")]
    Exists(String),
    /// The request is not allowed as it stands; the text says why.
    #[error("{0}")]
    Refused(String),
    /// The account is over its quota (RFC 5321 `452 4.2.2`, IMAP `[OVERQUOTA]`).
    #[error("mailbox of {0} is full (quota exceeded)")]
    OverQuota(String),
    /// The store is busy (locked by another writer too long); retry.
    #[error("the store is busy; try again later")]
    Busy,
    /// An I/O failure (disk full, permissions); retry after the cause is fixed.
    #[error("storage I/O error: {0}")]
    Io(String),
    /// The database failed or holds something it should not.
    #[error("database error: {0}")]
    Database(String),
}

impl StoreError {
    /// True when retrying later may succeed (the protocol says "temporary").
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            StoreError::Busy
                | StoreError::Io(_)
                | StoreError::Database(_)
                | StoreError::OverQuota(_)
        )
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}
