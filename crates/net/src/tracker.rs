//! Counts live connections so that shutdown can wait for them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Shared counter of live connections.
#[derive(Clone, Default)]
pub struct ConnTracker {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    live: AtomicUsize,
    idle: Notify,
}

/// Held by a connection task; dropping it marks the connection ended.
pub struct ConnToken {
    inner: Arc<Inner>,
}

impl ConnTracker {
    /// A tracker with no connections.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a new connection.
    pub fn token(&self) -> ConnToken {
        self.inner.live.fetch_add(1, Ordering::SeqCst);
        ConnToken {
            inner: self.inner.clone(),
        }
    }

    /// Live connections now.
    pub fn live(&self) -> usize {
        self.inner.live.load(Ordering::SeqCst)
    }

    /// Waits until no connection is live or `limit` passed; true when all ended.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.inner.idle.notified();
            if self.live() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.live() == 0;
            }
        }
    }
}

impl Drop for ConnToken {
    fn drop(&mut self) {
        if self.inner.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_tokens() {
        let t = ConnTracker::new();
        assert!(t.wait_idle(Duration::from_millis(1)).await);
        let tok = t.token();
        assert!(!t.wait_idle(Duration::from_millis(20)).await);
        let t2 = t.clone();
        let h = tokio::spawn(async move { t2.wait_idle(Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(tok);
        assert!(matches!(h.await, Ok(true)));
        assert_eq!(t.live(), 0);
    }
}
