//! Login outcomes shared between nodes (`auth_events`): a node reads the others'
//! events and never its own, pages through a burst in id order, and old events are
//! pruned.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use buudien_store_postgres::testing;

use buudien_store_postgres::{AUTH_BATCH, AuthEvent, PgStore};
use std::time::Duration;

fn failure(ip: &str, login: Option<&str>) -> AuthEvent {
    AuthEvent {
        failed: true,
        ip: ip.into(),
        login: login.map(str::to_string),
    }
}

#[tokio::test]
async fn nodes_read_each_others_events_only() {
    let url = testing::server().fresh_db().await;
    let a = PgStore::connect(&url, 2).await.unwrap();
    let b = PgStore::connect(&url, 2).await.unwrap();
    let window = Duration::from_secs(600);
    a.publish_auth_events("a", &[failure("192.0.2.1", Some("ann@example.org"))])
        .await
        .unwrap();
    b.publish_auth_events(
        "b",
        &[AuthEvent {
            failed: false,
            ip: "2001:db8::".into(),
            login: None,
        }],
    )
    .await
    .unwrap();
    let on_b = b.auth_events_since("b", window, 0).await.unwrap();
    assert_eq!(on_b.len(), 1);
    assert_eq!(on_b[0].1, failure("192.0.2.1", Some("ann@example.org")));
    let on_a = a.auth_events_since("a", window, 0).await.unwrap();
    assert_eq!(on_a.len(), 1);
    assert!(!on_a[0].1.failed && on_a[0].1.login.is_none());
    // Past the highest id: nothing new.
    let top = on_b[0].0.max(on_a[0].0);
    assert!(
        b.auth_events_since("b", window, top)
            .await
            .unwrap()
            .is_empty()
    );
    // A third node sees both, in id order.
    let c = a.auth_events_since("c", window, 0).await.unwrap();
    assert_eq!(c.len(), 2);
    assert!(c[0].0 < c[1].0);
    // Nothing is older than a minute: pruning keeps them; a zero age drops them.
    assert_eq!(
        a.prune_auth_events(Duration::from_secs(60)).await.unwrap(),
        0
    );
    assert_eq!(a.prune_auth_events(Duration::ZERO).await.unwrap(), 2);
    assert!(
        a.auth_events_since("c", window, 0)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_burst_is_read_in_pages() {
    let url = testing::server().fresh_db().await;
    let a = PgStore::connect(&url, 2).await.unwrap();
    let burst: Vec<AuthEvent> = (0..AUTH_BATCH + 5)
        .map(|n| failure(&format!("10.0.{}.{}", n / 256, n % 256), None))
        .collect();
    // One call takes at most AUTH_BATCH; the rest goes in a second call.
    a.publish_auth_events("a", &burst).await.unwrap();
    a.publish_auth_events("a", &burst[AUTH_BATCH..])
        .await
        .unwrap();
    let window = Duration::from_secs(600);
    let first = a.auth_events_since("b", window, 0).await.unwrap();
    assert_eq!(first.len(), AUTH_BATCH);
    let last = first.last().unwrap().0;
    let rest = a.auth_events_since("b", window, last).await.unwrap();
    assert_eq!(rest.len(), 5);
    assert_eq!(rest[4].1.ip, burst[AUTH_BATCH + 4].ip);
}
