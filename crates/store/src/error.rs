//! Store errors, split the way every protocol needs them: temporary (retry later:
//! `-ERR [SYS/TEMP]`, `451`, exit 75) or permanent.

use thiserror::Error;

/// Why a store operation failed.
#[derive(Debug, Clone, Error)]
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
    /// The disk (or the file system quota) is full; retry when space returns (SMTP
    /// `452 4.3.1`, RFC 3463 X.3.1).
    #[error("storage is full: {0}")]
    Full(String),
    /// Another I/O failure (permissions, a failing disk); retry after the cause is
    /// fixed.
    #[error("storage I/O error: {0}")]
    Io(String),
    /// The database failed or holds something it should not.
    #[error("database error: {0}")]
    Database(String),
    /// A stored record is damaged (a message's blob file is missing or does not have
    /// the size the index records); it has been set aside (quarantined). Permanent:
    /// retrying reads the same damage. The text names the record and what is wrong.
    #[error("damaged record: {0}")]
    Damaged(String),
}

impl StoreError {
    /// True when retrying later may succeed (the protocol says "temporary").
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            StoreError::Busy
                | StoreError::Full(_)
                | StoreError::Io(_)
                | StoreError::Database(_)
                | StoreError::OverQuota(_)
        )
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind;
        // ENOSPC and EDQUOT: a full disk or file system quota.
        let full = matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
            || matches!(e.raw_os_error(), Some(28 | 122));
        if full {
            StoreError::Full(e.to_string())
        } else {
            StoreError::Io(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disk_is_its_own_kind() {
        let full = StoreError::from(std::io::Error::from_raw_os_error(28));
        assert!(matches!(full, StoreError::Full(_)), "{full:?}");
        let quota = StoreError::from(std::io::Error::from_raw_os_error(122));
        assert!(matches!(quota, StoreError::Full(_)), "{quota:?}");
        let denied = StoreError::from(std::io::Error::from_raw_os_error(13));
        assert!(matches!(denied, StoreError::Io(_)), "{denied:?}");
        assert!(full.is_temporary() && denied.is_temporary());
        assert!(!StoreError::Damaged("blob 00".into()).is_temporary());
    }
}
