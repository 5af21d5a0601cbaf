//! [`Load`]: whether the server is near its connection limit, so that sessions which
//! have not logged in yet wait less for their client (as Postfix's stress mode does).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A shared "under load" flag: set by the connection limiter at accept and release,
/// read by sessions each time they start waiting for a pre-authentication command.
///
/// A clone shares the flag. [`Load::default`] is a flag that nothing sets (never under
/// load) with the default shortened wait.
#[derive(Debug, Clone)]
pub struct Load {
    stressed: Arc<AtomicBool>,
    stressed_wait: Duration,
}

impl Default for Load {
    fn default() -> Self {
        Load::new(Load::DEFAULT_STRESSED_WAIT)
    }
}

impl Load {
    /// The pre-authentication wait under load: 10 seconds, Postfix's `smtpd_timeout`
    /// under stress.
    pub const DEFAULT_STRESSED_WAIT: Duration = Duration::from_secs(10);

    /// A flag, not set, whose shortened wait is `stressed_wait`.
    pub fn new(stressed_wait: Duration) -> Self {
        Load {
            stressed: Arc::new(AtomicBool::new(false)),
            stressed_wait,
        }
    }

    /// Sets or clears the flag.
    pub fn set_stressed(&self, stressed: bool) {
        self.stressed.store(stressed, Ordering::Relaxed);
    }

    /// True while the server is near its connection limit.
    pub fn is_stressed(&self) -> bool {
        self.stressed.load(Ordering::Relaxed)
    }

    /// How long to wait for a client that has not logged in: `normal`, or the shorter
    /// stressed wait while the server is under load. Taken at the start of each wait,
    /// so a wait already running keeps its length.
    pub fn preauth_wait(&self, normal: Duration) -> Duration {
        if self.is_stressed() {
            normal.min(self.stressed_wait)
        } else {
            normal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortens_only_while_stressed_and_never_lengthens() {
        let load = Load::new(Duration::from_secs(10));
        let other = load.clone();
        assert_eq!(load.preauth_wait(Duration::from_secs(180)).as_secs(), 180);
        other.set_stressed(true);
        assert!(load.is_stressed());
        assert_eq!(load.preauth_wait(Duration::from_secs(180)).as_secs(), 10);
        assert_eq!(load.preauth_wait(Duration::from_secs(3)).as_secs(), 3);
        other.set_stressed(false);
        assert_eq!(load.preauth_wait(Duration::from_secs(180)).as_secs(), 180);
    }
}
