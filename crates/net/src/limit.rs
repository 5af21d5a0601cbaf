//! Connection limits: at most so many connections in total and from one client
//! address (an IPv6 client counts per /64, the block one subscriber usually holds), so
//! that one host opening hundreds of idle connections cannot take the slots real users
//! need. Checked at accept, before any session state exists.
//!
//! Near the total limit (from [`STRESS_PERCENT`] of it) the limiter sets the shared
//! [`Load`] flag, and sessions that have not logged in wait only the shorter stressed
//! time for their next command, as Postfix does under stress: idle pre-login
//! connections then give their slots back quickly.

use buudien_types::Load;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Shared counts of live connections, total and per client address.
#[derive(Clone)]
pub struct ConnLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    max_total: usize,
    max_per_ip: usize,
    /// `max_total * STRESS_PERCENT / 100`, at least 1.
    stress_at: usize,
    load: Load,
    counts: Mutex<Counts>,
}

/// The share of `max_total` (in percent) from which the server counts as under load.
pub const STRESS_PERCENT: usize = 75;

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpKey, usize>,
}

/// A client address as limits count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpKey {
    /// An IPv4 address (IPv4-mapped IPv6 addresses too).
    V4([u8; 4]),
    /// The /64 of an IPv6 address.
    V6([u8; 8]),
}

impl IpKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> IpKey {
        match ip {
            IpAddr::V4(v4) => IpKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(o.get(..8).unwrap_or(&[0; 8]));
                    IpKey::V6(prefix)
                }
            },
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The server has `max_total` connections.
    Total,
    /// This client address (or /64) has `max_per_ip` connections.
    PerIp,
}

/// Held by a connection task; dropping it frees the slot.
pub struct ConnPermit {
    inner: Arc<Inner>,
    key: IpKey,
}

impl ConnLimiter {
    /// Limits of `max_total` connections and `max_per_ip` per client address, with a
    /// [`Load`] flag of its own.
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self::with_load(max_total, max_per_ip, Load::default())
    }

    /// Limits as [`ConnLimiter::new`] that set `load` while the live connections are
    /// at or above [`STRESS_PERCENT`] of `max_total`.
    pub fn with_load(max_total: usize, max_per_ip: usize, load: Load) -> Self {
        ConnLimiter {
            inner: Arc::new(Inner {
                max_total,
                max_per_ip,
                stress_at: (max_total.saturating_mul(STRESS_PERCENT) / 100).max(1),
                load,
                counts: Mutex::new(Counts::default()),
            }),
        }
    }

    /// The flag this limiter sets under load.
    pub fn load(&self) -> &Load {
        &self.inner.load
    }

    /// Takes a slot for a connection from `ip`, or says why there is none.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<ConnPermit, Refused> {
        let key = IpKey::of(ip);
        let mut c = self.lock();
        if c.total >= self.inner.max_total {
            return Err(Refused::Total);
        }
        let n = c.per_ip.entry(key).or_insert(0);
        if *n >= self.inner.max_per_ip {
            return Err(Refused::PerIp);
        }
        *n += 1;
        c.total += 1;
        self.inner
            .load
            .set_stressed(c.total >= self.inner.stress_at);
        Ok(ConnPermit {
            inner: Arc::clone(&self.inner),
            key,
        })
    }

    /// Live connections now.
    pub fn live(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.inner
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut c = self
            .inner
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.total = c.total.saturating_sub(1);
        self.inner
            .load
            .set_stressed(c.total >= self.inner.stress_at);
        if let Some(n) = c.per_ip.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_ip.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn load_flag_follows_the_live_count() {
        let l = ConnLimiter::new(8, 8);
        let held: Vec<_> = (0..5)
            .map(|_| l.try_acquire(ip("192.0.2.1")).unwrap())
            .collect();
        assert!(!l.load().is_stressed(), "5 of 8 is under 75%");
        let sixth = l.try_acquire(ip("192.0.2.1")).unwrap();
        assert!(l.load().is_stressed(), "6 of 8 is 75%");
        drop(sixth);
        assert!(!l.load().is_stressed());
        drop(held);
        assert_eq!(l.live(), 0);
    }

    #[test]
    fn per_ip_and_total() {
        let l = ConnLimiter::new(5, 2);
        let a1 = l.try_acquire(ip("192.0.2.1")).unwrap();
        let _a2 = l.try_acquire(ip("192.0.2.1")).unwrap();
        assert_eq!(l.try_acquire(ip("192.0.2.1")).err(), Some(Refused::PerIp));
        let _b1 = l.try_acquire(ip("192.0.2.2")).unwrap();
        let _b2 = l.try_acquire(ip("::ffff:192.0.2.2")).unwrap();
        assert_eq!(l.try_acquire(ip("192.0.2.2")).err(), Some(Refused::PerIp));
        let _c1 = l.try_acquire(ip("192.0.2.3")).unwrap();
        assert_eq!(l.try_acquire(ip("192.0.2.4")).err(), Some(Refused::Total));
        drop(a1);
        assert_eq!(l.live(), 4);
        assert!(l.try_acquire(ip("192.0.2.1")).is_ok());
        assert_eq!(l.live(), 4, "the permit was dropped at once");
    }

    #[test]
    fn ipv6_counts_per_64() {
        let l = ConnLimiter::new(100, 2);
        let _a = l.try_acquire(ip("2001:db8:1:2::1")).unwrap();
        let _b = l.try_acquire(ip("2001:db8:1:2:ffff::9")).unwrap();
        assert_eq!(
            l.try_acquire(ip("2001:db8:1:2::77")).err(),
            Some(Refused::PerIp),
            "same /64"
        );
        assert!(l.try_acquire(ip("2001:db8:1:3::1")).is_ok(), "another /64");
    }
}
