//! Failed-login throttling across the nodes of a cluster (PostgreSQL backend): once a
//! second each node publishes its login outcomes (the throttle's outbox) to
//! `auth_events` and applies the other nodes' to its own throttle, so an attacker who
//! spreads guesses over the nodes behind a load balancer meets one count — a second
//! late at most. A node that starts reads the events of the throttle's memory
//! (`forget_after`) first. Events older than that are deleted by whichever node
//! prunes first (every minute).
//!
//! The throttle keeps deciding alone and at once (no database round trip before a
//! password check); a database that is down only stops the sharing, which resumes when
//! it is back.

use buudien_auth::{FailureThrottle, ThrottleEvent};
use buudien_store_postgres::{AUTH_BATCH, AuthEvent, PgStore};
use std::collections::{BTreeSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a node publishes and reads.
pub const PERIOD: Duration = Duration::from_secs(1);
/// How far behind the highest id seen a read starts again: longer than an insert of
/// another node can take to commit after taking its id.
const REREAD: Duration = Duration::from_secs(10);
/// How often old events are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Pages read in one round at most (a burst beyond is read in the next rounds).
const MAX_PAGES: usize = 20;

/// The stored form of a throttle event.
pub fn to_row(e: &ThrottleEvent) -> AuthEvent {
    match e {
        ThrottleEvent::Failure { ip, login } => AuthEvent {
            failed: true,
            ip: ip.to_string(),
            login: login.clone(),
        },
        ThrottleEvent::Success { ip, login } => AuthEvent {
            failed: false,
            ip: ip.to_string(),
            login: login.clone(),
        },
    }
}

/// The throttle event of a stored row; `None` for a row that is not one (a bad
/// address), which is skipped.
pub fn from_row(r: &AuthEvent) -> Option<ThrottleEvent> {
    let ip: IpAddr = r.ip.parse().ok()?;
    let login = r.login.clone();
    Some(if r.failed {
        ThrottleEvent::Failure { ip, login }
    } else {
        ThrottleEvent::Success { ip, login }
    })
}

/// What a node has read: the ids applied above the floor, and the highest id of past
/// rounds (so the floor trails [`REREAD`] behind).
struct Reader {
    node: String,
    applied: BTreeSet<i64>,
    /// (when, highest id seen then), oldest first.
    marks: VecDeque<(Instant, i64)>,
    floor: i64,
}

impl Reader {
    fn new(node: String) -> Self {
        Reader {
            node,
            applied: BTreeSet::new(),
            marks: VecDeque::new(),
            floor: 0,
        }
    }

    /// Reads the other nodes' new events (of the last `window`) into `throttle`.
    async fn round(
        &mut self,
        store: &PgStore,
        throttle: &FailureThrottle,
        window: Duration,
    ) -> buudien_store::Result<usize> {
        let now = Instant::now();
        while self
            .marks
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= REREAD)
        {
            if let Some((_, id)) = self.marks.pop_front() {
                self.floor = self.floor.max(id);
            }
        }
        self.applied = self.applied.split_off(&self.floor.saturating_add(1));
        let mut after = self.floor;
        let mut applied = 0;
        for _ in 0..MAX_PAGES {
            let page = store.auth_events_since(&self.node, window, after).await?;
            for (id, row) in &page {
                after = after.max(*id);
                if self.applied.insert(*id)
                    && let Some(e) = from_row(row)
                {
                    throttle.apply(&e, now);
                    applied += 1;
                }
            }
            if page.len() < AUTH_BATCH {
                break;
            }
        }
        let top = self.applied.last().copied().unwrap_or(self.floor);
        self.marks.push_back((now, top));
        Ok(applied)
    }
}

/// One round: publish this node's events, apply the others', prune if it is time.
async fn once(
    store: &PgStore,
    throttle: &FailureThrottle,
    reader: &mut Reader,
    memory: Duration,
    prune: bool,
) -> buudien_store::Result<()> {
    let events: Vec<AuthEvent> = throttle.take_events().iter().map(to_row).collect();
    for part in events.chunks(AUTH_BATCH) {
        store.publish_auth_events(&reader.node, part).await?;
    }
    reader.round(store, throttle, memory).await?;
    if prune {
        store.prune_auth_events(memory).await?;
    }
    Ok(())
}

/// Runs the sharing for this node until aborted. `node` names it in the rows (its own
/// are never read back).
pub async fn run(store: PgStore, throttle: Arc<FailureThrottle>, node: String) {
    throttle.share();
    let memory = throttle.config().forget_after;
    let mut reader = Reader::new(node);
    let mut last_prune: Option<Instant> = None;
    let mut failing = false;
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let prune = last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY);
        if prune {
            last_prune = Some(Instant::now());
        }
        match once(&store, &throttle, &mut reader, memory, prune).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("sharing failed-login counts with the other nodes again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!("cannot share failed-login counts with the other nodes: {e}");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_events_convert_both_ways() {
        let events = [
            ThrottleEvent::Failure {
                ip: "192.0.2.1".parse().unwrap(),
                login: Some("ann@example.org".into()),
            },
            ThrottleEvent::Success {
                ip: "2001:db8::".parse().unwrap(),
                login: None,
            },
        ];
        for e in &events {
            assert_eq!(from_row(&to_row(e)).as_ref(), Some(e));
        }
        let bad = AuthEvent {
            failed: true,
            ip: "not an address".into(),
            login: None,
        };
        assert_eq!(from_row(&bad), None);
    }
}
