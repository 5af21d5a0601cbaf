//! A handle that runs its release action exactly once, when dropped: POP3 maildrop
//! locks and blob pins die with their session however it ends.

use std::fmt;

/// Runs a release action when dropped.
pub struct Guard(Option<Box<dyn FnOnce() + Send + Sync>>);

impl Guard {
    /// A guard that calls `release` on drop.
    pub fn new(release: impl FnOnce() + Send + Sync + 'static) -> Self {
        Guard(Some(Box::new(release)))
    }

    /// A guard that releases nothing.
    pub fn none() -> Self {
        Guard(None)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(release) = self.0.take() {
            release();
        }
    }
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Guard")
    }
}
