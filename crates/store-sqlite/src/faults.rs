//! Fault injection: makes chosen storage steps fail, to prove that a failure at any of
//! them leaves nothing half-written and is reported as temporary.
//!
//! The plan comes from the environment variable `BUUDIEN_FAULTS`, read once when the
//! store opens ([`crate::SqliteStore::open`]), or is given to
//! [`crate::SqliteStore::open_with_faults`]. It is a comma-separated list of
//! `point:n`, meaning "the n-th time this store reaches `point`, it fails" (one-shot;
//! the same point may be listed more than once, e.g. `commit:1,commit:3`). Example:
//! `BUUDIEN_FAULTS=blob_fsync:1,commit:2`.
//!
//! The points:
//! - `blob_write`: writing a new blob's temporary file under `tmp/` (after it was
//!   created, before its bytes are written).
//! - `blob_fsync`: the `fsync` of that temporary file.
//! - `blob_rename`: renaming the temporary file into `blobs/xx/yy/` (under the write
//!   lock).
//! - `dir_fsync`: the `fsync` of the blob's directory after that rename.
//! - `commit`: the `COMMIT` of a transaction that stores messages (delivery,
//!   submission, APPEND), after all its rows are inserted: the transaction rolls
//!   back. Other write transactions are not counted.
//!
//! An injected failure is an ordinary I/O error (`EIO`), so it takes the same path
//! as a real one: [`buudien_store::StoreError::Io`], which is temporary.
//!
//! When the variable is unset, each point costs one branch. A plan that does not
//! parse makes the store refuse to open, so a mistyped plan never passes for "no
//! fault happened".

use buudien_store::{Result, StoreError};
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable holding the plan.
pub const VAR: &str = "BUUDIEN_FAULTS";

/// At most this many `point:n` entries in a plan.
const MAX_ENTRIES: usize = 32;

/// `EIO`: what every injected failure looks like.
const EIO: i32 = 5;

/// A step that can be made to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Point {
    /// Writing a temporary blob file.
    BlobWrite,
    /// `fsync` of a temporary blob file.
    BlobFsync,
    /// Renaming a temporary blob file into place.
    BlobRename,
    /// `fsync` of a blob's directory after the rename.
    DirFsync,
    /// `COMMIT` of a message-storing transaction.
    Commit,
}

impl Point {
    const ALL: [Point; 5] = [
        Point::BlobWrite,
        Point::BlobFsync,
        Point::BlobRename,
        Point::DirFsync,
        Point::Commit,
    ];

    fn name(self) -> &'static str {
        match self {
            Point::BlobWrite => "blob_write",
            Point::BlobFsync => "blob_fsync",
            Point::BlobRename => "blob_rename",
            Point::DirFsync => "dir_fsync",
            Point::Commit => "commit",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The plan and its counters.
struct Plan {
    /// `(point, n)`: fail the n-th time `point` is reached.
    fail: Vec<(Point, u64)>,
    /// How often each point was reached, by [`Point::index`].
    reached: [AtomicU64; Point::ALL.len()],
}

/// The fault plan of one store; empty unless a plan was given.
#[derive(Default)]
pub(crate) struct Faults(Option<Box<Plan>>);

impl Faults {
    /// The plan in `BUUDIEN_FAULTS`, or none when it is unset or empty.
    pub(crate) fn from_env() -> Result<Faults> {
        match std::env::var(VAR) {
            Ok(spec) => Faults::parse(&spec),
            Err(std::env::VarError::NotPresent) => Ok(Faults::default()),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(StoreError::Refused(format!("{VAR} is not UTF-8")))
            }
        }
    }

    /// Parses a plan (`point:n,…`); an empty one injects nothing.
    pub(crate) fn parse(spec: &str) -> Result<Faults> {
        let bad = |why: String| StoreError::Refused(format!("{VAR}={spec:?}: {why}"));
        let mut fail = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if fail.len() == MAX_ENTRIES {
                return Err(bad(format!("more than {MAX_ENTRIES} entries")));
            }
            let (name, n) = entry
                .split_once(':')
                .ok_or_else(|| bad(format!("{entry:?} is not point:n")))?;
            let point = Point::ALL
                .into_iter()
                .find(|p| p.name() == name.trim())
                .ok_or_else(|| {
                    let names: Vec<&str> = Point::ALL.iter().map(|p| p.name()).collect();
                    bad(format!(
                        "unknown point {name:?} (known: {})",
                        names.join(", ")
                    ))
                })?;
            let n: u64 = n
                .trim()
                .parse()
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| bad(format!("{entry:?}: n must be a number from 1")))?;
            fail.push((point, n));
        }
        if fail.is_empty() {
            return Ok(Faults::default());
        }
        tracing::warn!(
            plan = spec,
            "{VAR} is set: storage failures will be injected"
        );
        Ok(Faults(Some(Box::new(Plan {
            fail,
            reached: Default::default(),
        }))))
    }

    /// Counts one passage through `point`; fails with `EIO` when the plan says so.
    #[inline]
    pub(crate) fn check(&self, point: Point) -> std::io::Result<()> {
        match &self.0 {
            None => Ok(()),
            Some(plan) => plan.check(point),
        }
    }
}

impl Plan {
    fn check(&self, point: Point) -> std::io::Result<()> {
        let Some(counter) = self.reached.get(point.index()) else {
            return Ok(());
        };
        let n = counter.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if self.fail.contains(&(point, n)) {
            tracing::warn!(point = point.name(), n, "injected storage failure");
            return Err(std::io::Error::from_raw_os_error(EIO));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_the_nth_passage_once() -> Result<()> {
        let f = Faults::parse("blob_fsync:2, commit:1,commit:3")?;
        assert!(f.check(Point::BlobFsync).is_ok());
        let e = f.check(Point::BlobFsync).err();
        assert_eq!(e.as_ref().and_then(|e| e.raw_os_error()), Some(EIO));
        let err = e.map(StoreError::from);
        assert!(matches!(err, Some(StoreError::Io(_))), "{err:?}");
        assert!(err.is_some_and(|e| e.is_temporary()));
        assert!(f.check(Point::BlobFsync).is_ok());
        assert!(f.check(Point::Commit).is_err());
        assert!(f.check(Point::Commit).is_ok());
        assert!(f.check(Point::Commit).is_err());
        assert!(f.check(Point::Commit).is_ok());
        assert!(f.check(Point::BlobWrite).is_ok());
        assert!(f.check(Point::DirFsync).is_ok());
        Ok(())
    }

    #[test]
    fn no_plan_injects_nothing() -> Result<()> {
        for f in [Faults::default(), Faults::parse("")?, Faults::parse(" , ")?] {
            assert!(f.0.is_none());
            for p in Point::ALL {
                assert!(f.check(p).is_ok());
            }
        }
        Ok(())
    }

    #[test]
    fn bad_plans_are_refused() {
        for spec in [
            "commit",
            "commit:0",
            "commit:x",
            "fsync:1",
            "commit:-1",
            &"commit:1,".repeat(MAX_ENTRIES + 1),
        ] {
            let r = Faults::parse(spec);
            assert!(matches!(r, Err(StoreError::Refused(_))), "{spec}");
        }
    }
}
