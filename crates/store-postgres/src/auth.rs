//! Login outcomes shared by the nodes of a cluster, so that failed-login throttling
//! counts guesses wherever they land: each node appends its failures and successes to
//! `auth_events` ([`PgStore::publish_auth_events`]) and reads the other nodes'
//! ([`PgStore::auth_events_since`]) about once a second.
//!
//! Rows carry the database's clock (`at`), so nodes' clocks never matter. Ids come
//! from an identity column, so two nodes' rows may become visible out of id order: a
//! reader re-reads ids above a floor a few seconds behind the highest it has seen and
//! skips those it has already applied. Rows older than the throttle's memory are
//! deleted ([`PgStore::prune_auth_events`]).

use crate::{PgStore, exec, get, in_tx, rows};
use buudien_store::Result;
use std::time::Duration;

/// Events one call publishes or returns at most.
pub const AUTH_BATCH: usize = 1_000;

/// One login outcome as stored (see `buudien_auth::ThrottleEvent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthEvent {
    /// Whether the login failed (else it succeeded).
    pub failed: bool,
    /// The client address as counted (text form of an IP address).
    pub ip: String,
    /// The login name, when the attempt named one.
    pub login: Option<String>,
}

impl PgStore {
    /// Appends this node's (`node`) events, at most [`AUTH_BATCH`] (the rest are
    /// dropped: they only sharpen the other nodes' counts).
    pub async fn publish_auth_events(&self, node: &str, events: &[AuthEvent]) -> Result<()> {
        let events = events.get(..AUTH_BATCH.min(events.len())).unwrap_or(&[]);
        if events.is_empty() {
            return Ok(());
        }
        let failed: Vec<bool> = events.iter().map(|e| e.failed).collect();
        let ips: Vec<&str> = events.iter().map(|e| e.ip.as_str()).collect();
        let logins: Vec<Option<&str>> = events.iter().map(|e| e.login.as_deref()).collect();
        in_tx!(self.inner, |tx| async {
            exec(
                tx,
                "INSERT INTO auth_events (node, failed, ip, login)
                 SELECT $1, f, i, l FROM unnest($2::boolean[], $3::text[], $4::text[])
                     AS e(f, i, l)",
                &[&node, &failed, &ips, &logins],
            )
            .await
        })?;
        Ok(())
    }

    /// Other nodes' events of the last `window` (by the database's clock) with an id
    /// above `after_id`, in id order, at most [`AUTH_BATCH`] (page on with the last id
    /// returned).
    pub async fn auth_events_since(
        &self,
        node: &str,
        window: Duration,
        after_id: i64,
    ) -> Result<Vec<(i64, AuthEvent)>> {
        let secs = window.as_secs_f64();
        let limit = i64::try_from(AUTH_BATCH).unwrap_or(i64::MAX);
        let found = in_tx!(self.inner, |tx| async {
            rows(
                tx,
                "SELECT id, failed, ip, login FROM auth_events
                 WHERE at > now() - make_interval(secs => $2) AND node <> $1 AND id > $3
                 ORDER BY id LIMIT $4",
                &[&node, &secs, &after_id, &limit],
            )
            .await
        })?;
        found
            .iter()
            .map(|r| {
                Ok((
                    get(r, 0)?,
                    AuthEvent {
                        failed: get(r, 1)?,
                        ip: get(r, 2)?,
                        login: get(r, 3)?,
                    },
                ))
            })
            .collect()
    }

    /// Deletes events older than `age`; how many.
    pub async fn prune_auth_events(&self, age: Duration) -> Result<u64> {
        let secs = age.as_secs_f64();
        in_tx!(self.inner, |tx| async {
            exec(
                tx,
                "DELETE FROM auth_events WHERE at < now() - make_interval(secs => $1)",
                &[&secs],
            )
            .await
        })
    }
}
