//! The retry schedule (RFC 5321 §4.5.4.1: retry at least 30 minutes apart in
//! general, give up after 4–5 days; we start sooner and back off, as Postfix does).

use std::time::{Duration, SystemTime};

/// The longest delay between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(4 * 3600);

/// 5 minutes, doubled after each failure, capped at 4 hours: 5m, 10m, 20m, 40m, 80m,
/// 160m, 4h (and 4h from then on).
pub fn default_schedule() -> Vec<Duration> {
    let mut out = Vec::new();
    let mut d = Duration::from_secs(300);
    while d < MAX_DELAY {
        out.push(d);
        d = d.saturating_mul(2);
    }
    out.push(MAX_DELAY);
    out
}

/// The delay after a recipient's `attempts`-th failed attempt (1-based); the last
/// entry repeats; an empty schedule means 5 minutes.
pub fn delay(schedule: &[Duration], attempts: u32) -> Duration {
    let i = usize::try_from(attempts.saturating_sub(1)).unwrap_or(usize::MAX);
    schedule
        .get(i)
        .or(schedule.last())
        .copied()
        .unwrap_or(Duration::from_secs(300))
}

/// What to do with a recipient after a temporary failure at `now`: retry at the
/// returned time, or `None` when the message has been queued for `expire` already
/// (then it fails). The last retry is moved up to the expiry time, so a message gets
/// one attempt at its deadline rather than failing early.
pub fn next_attempt(
    schedule: &[Duration],
    attempts: u32,
    queued_at: SystemTime,
    expire: Duration,
    now: SystemTime,
) -> Option<SystemTime> {
    let deadline = queued_at.checked_add(expire)?;
    if now >= deadline {
        return None;
    }
    let next = now.checked_add(delay(schedule, attempts))?;
    Some(next.min(deadline))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60;

    #[test]
    fn default_doubles_and_caps_at_four_hours() {
        let s = default_schedule();
        let mins: Vec<u64> = s.iter().map(|d| d.as_secs() / MIN).collect();
        assert_eq!(mins, [5, 10, 20, 40, 80, 160, 240]);
        assert_eq!(delay(&s, 1), Duration::from_secs(5 * MIN));
        assert_eq!(delay(&s, 2), Duration::from_secs(10 * MIN));
        assert_eq!(delay(&s, 7), MAX_DELAY);
        assert_eq!(delay(&s, 100), MAX_DELAY, "the last delay repeats");
        assert_eq!(delay(&s, 0), Duration::from_secs(5 * MIN));
        assert_eq!(delay(&[], 3), Duration::from_secs(5 * MIN));
    }

    #[test]
    fn configured_schedule() {
        let s = [Duration::from_millis(100), Duration::from_millis(200)];
        assert_eq!(delay(&s, 1), Duration::from_millis(100));
        assert_eq!(delay(&s, 2), Duration::from_millis(200));
        assert_eq!(delay(&s, 3), Duration::from_millis(200));
    }

    #[test]
    fn expiry() {
        let s = default_schedule();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(24 * 3600);
        let expire = 5 * day;
        assert_eq!(
            next_attempt(&s, 1, t0, expire, t0),
            Some(t0 + Duration::from_secs(5 * MIN))
        );
        // Near the deadline the retry is moved up to it, then it fails.
        let late = t0 + expire - Duration::from_secs(60);
        assert_eq!(next_attempt(&s, 30, t0, expire, late), Some(t0 + expire));
        assert_eq!(next_attempt(&s, 31, t0, expire, t0 + expire), None);
        assert_eq!(next_attempt(&s, 31, t0, expire, t0 + 6 * day), None);
    }
}
