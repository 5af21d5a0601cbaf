//! Leases: the POP3 maildrop lock (RFC 1939 §8) as a row in `maildrop_locks` that
//! expires unless its holder renews it, and the blob pins of maildrop snapshots
//! (`snapshots`), which expire the same way. Neither pins a pooled connection (a
//! session advisory lock would, and would break behind a transaction-pooling proxy),
//! and a node that dies leaves leases that simply lapse.
//!
//! A guard renews its lease from a background task at a third of its length and
//! releases it when dropped. `Drop` cannot wait for the database, so the release is
//! queued and run by a spawned task; operations that must see it (taking a lock,
//! collecting garbage) run the queue first ([`flush`]), so within one process a
//! dropped guard is released before the next lock or collection.

use crate::{Inner, lock, pg_err};
use buudien_store::{AccountId, Guard, Result};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How long a maildrop lock lasts without renewal.
pub const LOCK_LEASE: Duration = Duration::from_secs(30);
/// How long a snapshot's pins last without renewal.
pub const PIN_LEASE: Duration = Duration::from_secs(300);

/// Lease lengths and the queue of releases not yet run.
pub(crate) struct Leases {
    lengths: Mutex<(Duration, Duration)>,
    pending: Mutex<Vec<Release>>,
    /// Held while releases run, so that [`flush`] returns only once every release
    /// queued before it has reached the database.
    running: tokio::sync::Mutex<()>,
}

impl Default for Leases {
    fn default() -> Self {
        Leases {
            lengths: Mutex::new((LOCK_LEASE, PIN_LEASE)),
            pending: Mutex::new(Vec::new()),
            running: tokio::sync::Mutex::new(()),
        }
    }
}

impl Leases {
    pub(crate) fn set(&self, lock_lease: Duration, pin: Duration) {
        *lock(&self.lengths) = (lock_lease, pin);
    }

    fn lock_lease(&self) -> Duration {
        lock(&self.lengths).0
    }

    pub(crate) fn pin(&self) -> Duration {
        lock(&self.lengths).1
    }
}

/// A release waiting to run.
enum Release {
    Lock { account: AccountId, holder: String },
    Snapshot(i64),
}

/// Seconds as PostgreSQL's `make_interval` takes them.
fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Runs every queued release. Failures are logged: the leases lapse by themselves.
pub(crate) async fn flush(inner: &Inner) {
    let _running = inner.leases.running.lock().await;
    let todo = std::mem::take(&mut *lock(&inner.leases.pending));
    if todo.is_empty() {
        return;
    }
    let client = match inner.client().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "releasing leases failed; they lapse by themselves");
            return;
        }
    };
    for r in todo {
        let done = match &r {
            Release::Lock { account, holder } => {
                client
                    .execute(
                        "DELETE FROM maildrop_locks WHERE account_id = $1 AND holder = $2",
                        &[account, holder],
                    )
                    .await
            }
            Release::Snapshot(id) => {
                client
                    .execute("DELETE FROM snapshots WHERE id = $1", &[id])
                    .await
            }
        };
        if let Err(e) = done {
            tracing::warn!(error = %e, "releasing a lease failed; it lapses by itself");
        }
    }
}

/// Queues a release and starts a task that runs it.
fn release_later(inner: &Arc<Inner>, r: Release) {
    lock(&inner.leases.pending).push(r);
    let owner = Arc::clone(inner);
    inner.runtime.spawn(async move { flush(&owner).await });
}

/// Renews a lease every third of its length until aborted or the store is gone.
fn renew(
    inner: &Arc<Inner>,
    sql: &'static str,
    key: i64,
    holder: Option<String>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    inner.runtime.spawn(async move {
        loop {
            tokio::time::sleep(every / 3).await;
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let lease = secs(every);
            let r = match inner.client().await {
                Ok(c) => match &holder {
                    Some(h) => c.execute(sql, &[&key, &lease, h]).await.map_err(pg_err),
                    None => c.execute(sql, &[&key, &lease]).await.map_err(pg_err),
                },
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "renewing a lease failed; trying again");
            }
        }
    })
}

/// Takes the maildrop lease of `account`, or `None` while another holder's lease
/// is live (on any node).
pub(crate) async fn lock_maildrop(inner: &Arc<Inner>, account: AccountId) -> Result<Option<Guard>> {
    flush(inner).await;
    let holder = format!("{:032x}", rand::random::<u128>());
    let length = inner.leases.lock_lease();
    let client = inner.client().await?;
    let got = client
        .query_opt(
            "INSERT INTO maildrop_locks (account_id, holder, until)
             VALUES ($1, $2, now() + make_interval(secs => $3))
             ON CONFLICT (account_id) DO UPDATE
                 SET holder = excluded.holder, until = excluded.until
                 WHERE maildrop_locks.until < now()
             RETURNING holder",
            &[&account, &holder, &secs(length)],
        )
        .await
        .map_err(pg_err)?;
    drop(client);
    if got.is_none() {
        return Ok(None);
    }
    let task = renew(
        inner,
        "UPDATE maildrop_locks SET until = now() + make_interval(secs => $2)
         WHERE account_id = $1 AND holder = $3",
        account,
        Some(holder.clone()),
        length,
    );
    let owner = Arc::clone(inner);
    Ok(Some(Guard::new(move || {
        task.abort();
        release_later(&owner, Release::Lock { account, holder });
    })))
}

/// The guard of a snapshot's pins: renews them, and deletes the snapshot when
/// dropped.
pub(crate) fn pin_guard(inner: &Arc<Inner>, snapshot: i64) -> Guard {
    let task = renew(
        inner,
        "UPDATE snapshots SET until = now() + make_interval(secs => $2) WHERE id = $1",
        snapshot,
        None,
        inner.leases.pin(),
    );
    let owner = Arc::clone(inner);
    Guard::new(move || {
        task.abort();
        release_later(&owner, Release::Snapshot(snapshot));
    })
}
