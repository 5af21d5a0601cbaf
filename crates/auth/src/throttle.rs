//! Failed-login throttling per client IP address.
//!
//! Each failed login from an address makes the next failure reply wait longer
//! (`base_delay`, doubled per recent failure, capped at `max_delay`); after
//! `refuse_after` recent failures the address is refused without a password check until
//! `forget_after` has passed since its last failure. A success clears the address.
//! Nothing here sleeps: the caller gets the delay and waits itself, and passes the
//! current [`Instant`] in, so tests can move time forward.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) count as the IPv4 address, so a
//! dual-stack listener and an IPv4 listener share one count per client; an IPv6
//! client counts per /64, the block one subscriber usually holds.
//!
//! Per account as well ([`FailureThrottle::check_login`]): after
//! `account_refuse_after` recent failures for one login name, attempts for it are
//! refused — but only from addresses that have not logged in to that account
//! successfully within `trust_for`, so an attacker guessing from many addresses cannot
//! lock the owner out.
//!
//! Across the nodes of a cluster ([`FailureThrottle::share`]): every failure and
//! success is also put in an outbox ([`FailureThrottle::take_events`]) that the server
//! publishes to the shared store, and the other nodes' events are applied here
//! ([`FailureThrottle::apply`]) as if they had happened on this node, so an attacker
//! spreading guesses over the nodes behind a load balancer meets one count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Settings for a [`FailureThrottle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Delay before the reply to the first recent failure (default 1 s).
    pub base_delay: Duration,
    /// Longest delay (default 15 s).
    pub max_delay: Duration,
    /// Recent failures after which the address is refused (default 10). 0 acts as 1.
    pub refuse_after: u32,
    /// Time without failures after which an address's count resets (default 10 min).
    pub forget_after: Duration,
    /// Most addresses tracked at once (default 100 000); when full, expired entries and
    /// then those with the oldest last failure are dropped, so memory stays bounded.
    /// The same bound applies to login names.
    pub max_tracked: usize,
    /// Recent failures for one login name after which it is refused from untrusted
    /// addresses (default 20). 0 turns per-account refusal off.
    pub account_refuse_after: u32,
    /// How long a successful login makes its address trusted for that account
    /// (default 30 days).
    pub trust_for: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15),
            refuse_after: 10,
            forget_after: Duration::from_secs(10 * 60),
            max_tracked: 100_000,
            account_refuse_after: 20,
            trust_for: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// What to do with a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// go ahead and check the password
    Allow,
    /// too many recent failures from this IP: refuse temporarily without checking (the
    /// protocol answers [SYS/TEMP])
    Refuse,
}

/// One tracked address.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Failures since the count last reset.
    failures: u32,
    /// When the latest of them happened.
    last_failure: Instant,
}

/// One tracked login name.
#[derive(Debug, Clone, Default)]
struct AccountEntry {
    /// Failures since the count last reset.
    failures: u32,
    /// When the latest of them happened.
    last_failure: Option<Instant>,
    /// Addresses (as counted) that logged in to it, with when; at most
    /// [`MAX_TRUSTED`], the oldest dropped first.
    trusted: Vec<(IpAddr, Instant)>,
}

/// Trusted addresses remembered per login name.
const MAX_TRUSTED: usize = 8;

/// Longest login name tracked as given; longer ones are cut (they are not accounts).
const MAX_LOGIN: usize = 320;

/// Events kept for publishing at most; when the outbox is full, the oldest are dropped
/// (this node's own counts are unaffected; only the other nodes miss them).
pub const MAX_OUTBOX: usize = 10_000;

/// A login's outcome as other nodes of a cluster learn it (see
/// [`FailureThrottle::take_events`]). The address is already counted (IPv4-mapped as
/// IPv4, IPv6 as its /64) and the login name lowercased and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThrottleEvent {
    /// A failed login from `ip` (for `login`, when the name was known).
    Failure {
        /// The counted address.
        ip: IpAddr,
        /// The login name tried, if any.
        login: Option<String>,
    },
    /// A successful login from `ip` (as `login`, when counted per account).
    Success {
        /// The counted address.
        ip: IpAddr,
        /// The login name, if any.
        login: Option<String>,
    },
}

/// Failed-login counts per client address; shared by all sessions (`Send + Sync`).
#[derive(Debug)]
pub struct FailureThrottle {
    config: ThrottleConfig,
    entries: Mutex<HashMap<IpAddr, Entry>>,
    accounts: Mutex<HashMap<String, AccountEntry>>,
    /// Whether events are kept for other nodes ([`FailureThrottle::share`]).
    sharing: AtomicBool,
    /// This node's events not yet taken, at most [`MAX_OUTBOX`].
    outbox: Mutex<std::collections::VecDeque<ThrottleEvent>>,
}

/// The address as counted: IPv4-mapped as IPv4, IPv6 as its /64.
fn counted(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// A login name as counted: lowercase, bounded.
fn login_key(login: &str) -> String {
    let mut k: String = login.chars().take(MAX_LOGIN).collect();
    k.make_ascii_lowercase();
    k
}

impl FailureThrottle {
    /// An empty throttle.
    pub fn new(config: ThrottleConfig) -> Self {
        FailureThrottle {
            config,
            entries: Mutex::new(HashMap::new()),
            accounts: Mutex::new(HashMap::new()),
            sharing: AtomicBool::new(false),
            outbox: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// From now on, keeps this node's failures and successes for
    /// [`FailureThrottle::take_events`] (a cluster node calls it; a single server
    /// never does, so nothing accumulates).
    pub fn share(&self) {
        self.sharing.store(true, Ordering::Relaxed);
    }

    /// The events of this node since the last call, oldest first, for the other
    /// nodes (empty unless [`FailureThrottle::share`] was called).
    pub fn take_events(&self) -> Vec<ThrottleEvent> {
        let mut out = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        out.drain(..).collect()
    }

    /// Applies another node's event as if it had happened here at `now`: a failure
    /// counts for the address (and the login name), a success clears them and trusts
    /// the address for the name. Not put in the outbox again.
    pub fn apply(&self, event: &ThrottleEvent, now: Instant) {
        match event {
            ThrottleEvent::Failure { ip, login } => {
                self.fail_ip(*ip, now);
                if let Some(login) = login {
                    self.fail_account(login_key(login), now);
                }
            }
            ThrottleEvent::Success { ip, login } => {
                self.clear_ip(*ip);
                if let Some(login) = login {
                    self.trust(*ip, login_key(login), now);
                }
            }
        }
    }

    /// Keeps `event` for the other nodes when sharing.
    fn publish(&self, event: ThrottleEvent) {
        if !self.sharing.load(Ordering::Relaxed) {
            return;
        }
        let mut out = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        if out.len() >= MAX_OUTBOX {
            out.pop_front();
        }
        out.push_back(event);
    }

    /// The settings in use.
    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    /// Before checking a password from `ip`.
    ///
    /// [`Verdict::Refuse`] while the address has at least `refuse_after` failures, the
    /// last one less than `forget_after` before `now`.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Verdict {
        let ip = counted(ip);
        let mut map = self.lock();
        let Some(entry) = map.get(&ip).copied() else {
            return Verdict::Allow;
        };
        if self.expired(&entry, now) {
            map.remove(&ip);
            return Verdict::Allow;
        }
        if entry.failures >= self.config.refuse_after.max(1) {
            Verdict::Refuse
        } else {
            Verdict::Allow
        }
    }

    /// After a failed login: records it and returns how long to wait before sending the
    /// failure reply: base_delay doubled per recent failure from this IP
    /// (1,2,4,8,15,15… s), capped at max_delay.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) -> Duration {
        let delay = self.fail_ip(ip, now);
        self.publish(ThrottleEvent::Failure {
            ip: counted(ip),
            login: None,
        });
        delay
    }

    /// Counts a failure of the address; its delay.
    fn fail_ip(&self, ip: IpAddr, now: Instant) -> Duration {
        let ip = counted(ip);
        let mut map = self.lock();
        let failures = match map.get_mut(&ip) {
            Some(entry) => {
                if self.expired(entry, now) {
                    entry.failures = 0;
                }
                entry.failures = entry.failures.saturating_add(1);
                entry.last_failure = entry.last_failure.max(now);
                entry.failures
            }
            None => {
                if self.config.max_tracked > 0 {
                    if map.len() >= self.config.max_tracked {
                        self.make_room(&mut map, now);
                    }
                    map.insert(
                        ip,
                        Entry {
                            failures: 1,
                            last_failure: now,
                        },
                    );
                }
                1
            }
        };
        self.delay_for(failures)
    }

    /// After a successful login: forget this IP's failures.
    pub fn record_success(&self, ip: IpAddr) {
        self.clear_ip(ip);
        self.publish(ThrottleEvent::Success {
            ip: counted(ip),
            login: None,
        });
    }

    /// Forgets the address's failures.
    fn clear_ip(&self, ip: IpAddr) {
        self.lock().remove(&counted(ip));
    }

    /// Before checking a password for `login` from `ip`: [`FailureThrottle::check`],
    /// and [`Verdict::Refuse`] when the login name has had `account_refuse_after`
    /// recent failures and `ip` has not logged in to it within `trust_for`.
    pub fn check_login(&self, ip: IpAddr, login: &str, now: Instant) -> Verdict {
        if self.check(ip, now) == Verdict::Refuse {
            return Verdict::Refuse;
        }
        let limit = self.config.account_refuse_after;
        if limit == 0 {
            return Verdict::Allow;
        }
        let ip = counted(ip);
        let accounts = self.accounts();
        let Some(e) = accounts.get(&login_key(login)) else {
            return Verdict::Allow;
        };
        let recent = e
            .last_failure
            .is_some_and(|t| now.saturating_duration_since(t) < self.config.forget_after);
        let trusted = e
            .trusted
            .iter()
            .any(|(a, t)| *a == ip && now.saturating_duration_since(*t) < self.config.trust_for);
        if recent && e.failures >= limit && !trusted {
            Verdict::Refuse
        } else {
            Verdict::Allow
        }
    }

    /// After a failed login for `login` from `ip`: counts it for both; returns the
    /// address's delay as [`FailureThrottle::record_failure`] does.
    pub fn record_login_failure(&self, ip: IpAddr, login: &str, now: Instant) -> Duration {
        let delay = self.fail_ip(ip, now);
        let key = login_key(login);
        self.fail_account(key.clone(), now);
        self.publish(ThrottleEvent::Failure {
            ip: counted(ip),
            login: Some(key),
        });
        delay
    }

    /// Counts a failure for the (already keyed) login name.
    fn fail_account(&self, key: String, now: Instant) {
        if self.config.max_tracked == 0 {
            return;
        }
        let mut accounts = self.accounts();
        if !accounts.contains_key(&key) && accounts.len() >= self.config.max_tracked {
            self.make_room_accounts(&mut accounts, now);
        }
        let e = accounts.entry(key).or_default();
        let stale = e
            .last_failure
            .is_none_or(|t| now.saturating_duration_since(t) >= self.config.forget_after);
        if stale {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last_failure = Some(e.last_failure.map_or(now, |t| t.max(now)));
    }

    /// After a successful login for `login` from `ip`: forgets the address's failures
    /// and the name's, and trusts the address for the name.
    pub fn record_login_success(&self, ip: IpAddr, login: &str, now: Instant) {
        self.clear_ip(ip);
        let key = login_key(login);
        self.trust(ip, key.clone(), now);
        self.publish(ThrottleEvent::Success {
            ip: counted(ip),
            login: Some(key),
        });
    }

    /// Clears the (already keyed) login name's failures and trusts `ip` for it.
    fn trust(&self, ip: IpAddr, key: String, now: Instant) {
        if self.config.max_tracked == 0 {
            return;
        }
        let ip = counted(ip);
        let mut accounts = self.accounts();
        if !accounts.contains_key(&key) && accounts.len() >= self.config.max_tracked {
            self.make_room_accounts(&mut accounts, now);
        }
        let e = accounts.entry(key).or_default();
        e.failures = 0;
        e.trusted.retain(|(a, _)| *a != ip);
        if e.trusted.len() >= MAX_TRUSTED {
            e.trusted.remove(0);
        }
        e.trusted.push((ip, now));
    }

    /// Drops login names with nothing recent, then a tenth of the rest (oldest
    /// activity first).
    fn make_room_accounts(&self, map: &mut HashMap<String, AccountEntry>, now: Instant) {
        let last = |e: &AccountEntry| {
            e.trusted
                .iter()
                .map(|(_, t)| *t)
                .chain(e.last_failure)
                .max()
        };
        map.retain(|_, e| {
            last(e).is_some_and(|t| now.saturating_duration_since(t) < self.config.trust_for)
        });
        if map.len() < self.config.max_tracked {
            return;
        }
        let drop = (map.len() + 1 - self.config.max_tracked)
            .max(self.config.max_tracked / 10)
            .min(map.len());
        let mut by_age: Vec<(Option<Instant>, String)> =
            map.iter().map(|(k, e)| (last(e), k.clone())).collect();
        if drop < by_age.len() {
            by_age.select_nth_unstable(drop);
        }
        for (_, k) in by_age.iter().take(drop) {
            map.remove(k);
        }
    }

    fn accounts(&self) -> MutexGuard<'_, HashMap<String, AccountEntry>> {
        self.accounts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of IPs tracked (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }

    /// The delay for the `failures`-th recent failure: `base_delay * 2^(failures-1)`,
    /// at most `max_delay`.
    fn delay_for(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1);
        let factor = 1u32.checked_shl(doublings).filter(|_| doublings < 32);
        match factor {
            Some(f) => self.config.base_delay.saturating_mul(f),
            None => Duration::MAX,
        }
        .min(self.config.max_delay)
    }

    /// true when the entry's last failure is at least `forget_after` before `now`.
    fn expired(&self, entry: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(entry.last_failure) >= self.config.forget_after
    }

    /// Called when the map is full: drops expired entries, and if that is not enough,
    /// the tenth of the entries (at least one) with the oldest last failure, so that the
    /// cost of the scan is shared by many insertions.
    fn make_room(&self, map: &mut HashMap<IpAddr, Entry>, now: Instant) {
        map.retain(|_, e| !self.expired(e, now));
        if map.len() < self.config.max_tracked {
            return;
        }
        let excess = map.len() + 1 - self.config.max_tracked;
        let drop = excess.max(self.config.max_tracked / 10).min(map.len());
        let mut by_age: Vec<(Instant, IpAddr)> =
            map.iter().map(|(ip, e)| (e.last_failure, *ip)).collect();
        if drop < by_age.len() {
            by_age.select_nth_unstable(drop);
        }
        for (_, ip) in by_age.iter().take(drop) {
            map.remove(ip);
        }
    }

    /// The map, even if another thread panicked while holding the lock (the map is
    /// always consistent between statements, so its content is still usable).
    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::Arc;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn is_send_and_sync() {
        fn both<T: Send + Sync>() {}
        both::<FailureThrottle>();
    }

    #[test]
    fn a_lone_server_keeps_no_events() {
        let t = FailureThrottle::new(ThrottleConfig::default());
        t.record_login_failure(A, "ann@example.org", Instant::now());
        assert!(t.take_events().is_empty());
    }

    #[test]
    fn nodes_sharing_events_meet_one_count() {
        let config = ThrottleConfig {
            refuse_after: 4,
            account_refuse_after: 6,
            ..ThrottleConfig::default()
        };
        let (a, b) = (
            FailureThrottle::new(config.clone()),
            FailureThrottle::new(config),
        );
        a.share();
        b.share();
        let now = Instant::now();
        // Two guesses on each node from one address: each node alone would allow more.
        for t in [&a, &b] {
            t.record_login_failure(A, "Ann@Example.org", now);
            t.record_login_failure(A, "ann@example.org", now);
        }
        let from_a = a.take_events();
        let from_b = b.take_events();
        assert_eq!(from_a.len(), 2);
        assert_eq!(
            from_a[0],
            ThrottleEvent::Failure {
                ip: A,
                login: Some("ann@example.org".into())
            }
        );
        assert_eq!(a.check(A, now), Verdict::Allow);
        for e in &from_b {
            a.apply(e, now);
        }
        for e in &from_a {
            b.apply(e, now);
        }
        assert_eq!(
            a.check(A, now),
            Verdict::Refuse,
            "4 failures across both nodes"
        );
        assert_eq!(b.check(A, now), Verdict::Refuse);
        assert!(
            a.take_events().is_empty(),
            "applied events are not re-published"
        );
        // Per account too: two more guesses from elsewhere reach the account limit.
        b.record_login_failure(B, "ann@example.org", now);
        b.record_login_failure(B, "ann@example.org", now);
        for e in &b.take_events() {
            a.apply(e, now);
        }
        let stranger = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
        assert_eq!(
            a.check_login(stranger, "ann@example.org", now),
            Verdict::Refuse
        );
        // The owner logs in on B from an address: A trusts it and forgets the count.
        let owner = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));
        b.record_login_success(owner, "ann@example.org", now);
        b.record_success(A);
        for e in &b.take_events() {
            a.apply(e, now);
        }
        assert_eq!(a.check_login(owner, "ann@example.org", now), Verdict::Allow);
        assert_eq!(
            a.check(A, now),
            Verdict::Allow,
            "the success cleared the address"
        );
    }

    #[test]
    fn the_outbox_is_bounded() {
        let t = FailureThrottle::new(ThrottleConfig::default());
        t.share();
        let now = Instant::now();
        for n in 0..(MAX_OUTBOX as u32 + 5) {
            t.record_failure(ip(n), now);
        }
        let events = t.take_events();
        assert_eq!(events.len(), MAX_OUTBOX);
        assert_eq!(
            events.first(),
            Some(&ThrottleEvent::Failure {
                ip: ip(5),
                login: None
            }),
            "the oldest were dropped"
        );
    }

    #[test]
    fn ipv6_counts_per_64() {
        let t = FailureThrottle::new(ThrottleConfig {
            refuse_after: 2,
            ..ThrottleConfig::default()
        });
        let now = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:dead:beef::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        t.record_failure(a, now);
        t.record_failure(b, now);
        assert_eq!(t.check(a, now), Verdict::Refuse, "one /64, one count");
        assert_eq!(t.check(c, now), Verdict::Allow, "another /64");
    }

    #[test]
    fn accounts_are_refused_to_strangers_only() {
        let t = FailureThrottle::new(ThrottleConfig {
            account_refuse_after: 3,
            ..ThrottleConfig::default()
        });
        let now = Instant::now();
        let owner = ip(1);
        t.record_login_success(owner, "Ann@Example.org", now);
        // An attacker spreads guesses over many addresses (each under its own limit).
        for n in 0..3 {
            t.record_login_failure(ip(100 + n), "ann@example.org", now);
        }
        assert_eq!(
            t.check_login(ip(200), "ann@example.org", now),
            Verdict::Refuse
        );
        assert_eq!(
            t.check_login(owner, "ANN@example.org", now),
            Verdict::Allow,
            "the owner's address is trusted"
        );
        assert_eq!(
            t.check_login(ip(200), "bob@example.org", now),
            Verdict::Allow
        );
        // The count is forgotten after a quiet period.
        assert_eq!(
            t.check_login(ip(200), "ann@example.org", now + secs(601)),
            Verdict::Allow
        );
        // The owner's success clears the count.
        t.record_login_success(owner, "ann@example.org", now);
        assert_eq!(
            t.check_login(ip(200), "ann@example.org", now),
            Verdict::Allow
        );
    }

    #[test]
    fn tracked_login_names_are_bounded() {
        let t = FailureThrottle::new(ThrottleConfig {
            max_tracked: 50,
            ..ThrottleConfig::default()
        });
        let now = Instant::now();
        for n in 0..500 {
            t.record_login_failure(ip(n), &format!("user{n}@example.org"), now);
        }
        assert!(t.accounts().len() <= 50);
    }

    #[test]
    fn delay_sequence() {
        let t = FailureThrottle::new(ThrottleConfig::default());
        let now = Instant::now();
        let delays: Vec<u64> = (0..8).map(|_| t.record_failure(A, now).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 15, 15, 15, 15]);
    }

    #[test]
    fn delay_saturates_on_huge_counts() {
        let t = FailureThrottle::new(ThrottleConfig {
            refuse_after: u32::MAX,
            max_delay: Duration::MAX,
            ..ThrottleConfig::default()
        });
        assert_eq!(t.delay_for(u32::MAX), Duration::MAX);
        assert_eq!(t.delay_for(0), secs(1));
        assert_eq!(t.delay_for(32), secs(1 << 31));
        assert_eq!(t.delay_for(33), Duration::MAX);
    }

    #[test]
    fn refuses_after_limit() {
        let t = FailureThrottle::new(ThrottleConfig::default());
        let now = Instant::now();
        for i in 0..10 {
            assert_eq!(t.check(A, now), Verdict::Allow, "attempt {i}");
            t.record_failure(A, now);
        }
        assert_eq!(t.check(A, now), Verdict::Refuse);
        assert_eq!(t.check(A, now + secs(599)), Verdict::Refuse);
        // Another address is unaffected.
        assert_eq!(t.check(B, now), Verdict::Allow);
    }

    #[test]
    fn forgets_after_quiet_period() {
        let t = FailureThrottle::new(ThrottleConfig::default());
        let now = Instant::now();
        for _ in 0..10 {
            t.record_failure(A, now);
        }
        assert_eq!(t.check(A, now), Verdict::Refuse);
        let later = now + secs(600);
        assert_eq!(t.check(A, later), Verdict::Allow);
        assert_eq!(t.tracked(), 0);
        // The count restarted: the next failure gets the base delay again.
        assert_eq!(t.record_failure(A, later), secs(1));
        assert_eq!(t.record_failure(A, later), secs(2));
    }

    #[test]
    fn forgetting_without_a_check() {
        let t = FailureThrottle::new(ThrottleConfig::default());
        let now = Instant::now();
        for _ in 0..4 {
            t.record_failure(A, now);
        }
        assert_eq!(t.record_failure(A, now + secs(601)), secs(1));
    }

    #[test]
    fn failures_keep_the_window_open() {
        let t = FailureThrottle::new(ThrottleConfig::default());
        let start = Instant::now();
        // One failure every 5 minutes never lets the count reset.
        for i in 0..5u64 {
            let want = (1u64 << i).min(15);
            assert_eq!(t.record_failure(A, start + secs(300 * i)).as_secs(), want);
        }
    }

    #[test]
    fn success_clears() {
        let t = FailureThrottle::new(ThrottleConfig::default());
        let now = Instant::now();
        for _ in 0..10 {
            t.record_failure(A, now);
        }
        t.record_failure(B, now);
        t.record_success(A);
        assert_eq!(t.check(A, now), Verdict::Allow);
        assert_eq!(t.tracked(), 1);
        assert_eq!(t.record_failure(A, now), secs(1));
        assert_eq!(t.record_failure(B, now), secs(2));
    }

    #[test]
    fn addresses_are_independent() {
        let t = FailureThrottle::new(ThrottleConfig::default());
        let now = Instant::now();
        for _ in 0..20 {
            t.record_failure(A, now);
        }
        assert_eq!(t.check(A, now), Verdict::Refuse);
        assert_eq!(t.check(B, now), Verdict::Allow);
        assert_eq!(t.record_failure(B, now), secs(1));
        t.record_success(B);
        assert_eq!(t.check(A, now), Verdict::Refuse);
    }

    #[test]
    fn mapped_ipv6_counts_as_ipv4() {
        let t = FailureThrottle::new(ThrottleConfig::default());
        let now = Instant::now();
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        t.record_failure(A, now);
        assert_eq!(t.record_failure(mapped, now), secs(2));
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        assert_eq!(t.record_failure(v6, now), secs(1));
        assert_eq!(t.tracked(), 2);
        t.record_success(mapped);
        assert_eq!(t.tracked(), 1);
    }

    #[test]
    fn memory_is_bounded() {
        let t = FailureThrottle::new(ThrottleConfig {
            max_tracked: 100,
            ..ThrottleConfig::default()
        });
        let start = Instant::now();
        for n in 0..1000u32 {
            t.record_failure(ip(n), start + Duration::from_millis(u64::from(n)));
            assert!(t.tracked() <= 100);
        }
        assert!(t.tracked() >= 90);
        // The newest address is still tracked, the oldest ones were dropped first.
        assert_eq!(t.record_failure(ip(999), start + secs(2)), secs(2));
        assert_eq!(t.record_failure(ip(0), start + secs(2)), secs(1));
    }

    #[test]
    fn full_map_drops_expired_first() {
        let t = FailureThrottle::new(ThrottleConfig {
            max_tracked: 10,
            ..ThrottleConfig::default()
        });
        let start = Instant::now();
        for n in 0..5 {
            t.record_failure(ip(n), start);
        }
        let later = start + secs(60);
        for n in 5..10 {
            t.record_failure(ip(n), later);
        }
        assert_eq!(t.tracked(), 10);
        // At start + 10 min the first five have expired; only they go.
        let now = start + secs(600);
        t.record_failure(ip(10), now);
        assert_eq!(t.tracked(), 6);
        assert_eq!(t.record_failure(ip(9), now), secs(2));
    }

    #[test]
    fn zero_capacity_tracks_nothing() {
        let t = FailureThrottle::new(ThrottleConfig {
            max_tracked: 0,
            ..ThrottleConfig::default()
        });
        let now = Instant::now();
        assert_eq!(t.record_failure(A, now), secs(1));
        assert_eq!(t.tracked(), 0);
        assert_eq!(t.check(A, now), Verdict::Allow);
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let t = FailureThrottle::new(ThrottleConfig::default());
        let now = Instant::now() + secs(1000);
        t.record_failure(A, now);
        assert_eq!(t.record_failure(A, now - secs(5)), secs(2));
        assert_eq!(t.check(A, now - secs(1000)), Verdict::Allow);
        assert_eq!(t.tracked(), 1);
    }

    #[test]
    fn survives_a_poisoned_mutex() {
        let t = Arc::new(FailureThrottle::new(ThrottleConfig::default()));
        let now = Instant::now();
        t.record_failure(A, now);
        let t2 = Arc::clone(&t);
        let joined = std::thread::spawn(move || {
            let _guard = t2.entries.lock().unwrap();
            panic!("poison the lock");
        })
        .join();
        assert!(joined.is_err());
        assert!(t.entries.is_poisoned());
        assert_eq!(t.record_failure(A, now), secs(2));
        assert_eq!(t.check(A, now), Verdict::Allow);
        t.record_success(A);
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn concurrent_use() {
        let t = Arc::new(FailureThrottle::new(ThrottleConfig::default()));
        let now = Instant::now();
        let handles: Vec<_> = (0..8u32)
            .map(|k| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || {
                    for n in 0..100 {
                        t.record_failure(ip(k * 1000 + n), now);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(t.tracked(), 800);
    }
}
