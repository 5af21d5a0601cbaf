//! Dates and date-times (RFC 9051 §9 `date`, `date-time`): `1-Feb-1994` for SEARCH,
//! `"17-Jul-1996 02:44:25 -0700"` for APPEND and INTERNALDATE, with conversion to and
//! from Unix time so the session can compare and store them.

use crate::cursor::{Cursor, PResult};
use std::fmt;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A calendar date (no time, no zone), as SEARCH BEFORE/ON/SINCE use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// Year, 0..=9999.
    pub year: u16,
    /// Month, 1..=12.
    pub month: u8,
    /// Day of the month, 1..=31 (checked against the month).
    pub day: u8,
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(i64::from(year)) => 29,
        2 => 28,
        _ => 31,
    }
}

impl Date {
    /// A valid date, or `None`.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Self> {
        if year > 9999 || !(1..=12).contains(&month) || day == 0 {
            return None;
        }
        (day <= days_in_month(year, month)).then_some(Date { year, month, day })
    }

    /// Days since 1970-01-01 (negative before).
    pub fn days_since_epoch(&self) -> i64 {
        // Howard Hinnant's days_from_civil.
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` after 1970-01-01; `None` outside years 0..=9999.
    pub fn from_days_since_epoch(days: i64) -> Option<Self> {
        let z = days.checked_add(719_468)?;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Date::new(
            u16::try_from(year).ok()?,
            u8::try_from(month).ok()?,
            u8::try_from(day).ok()?,
        )
    }
}

impl fmt::Display for Date {
    /// `date-text`: `1-Feb-1994`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = MONTHS
            .get(usize::from(self.month).wrapping_sub(1))
            .unwrap_or(&"Jan");
        write!(f, "{}-{}-{:04}", self.day, m, self.year)
    }
}

/// A date, a time and a zone (`date-time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTime {
    /// The local date.
    pub date: Date,
    /// Hour, 0..=23.
    pub hour: u8,
    /// Minute, 0..=59.
    pub minute: u8,
    /// Second, 0..=60 (60 for a leap second).
    pub second: u8,
    /// Minutes east of UTC (`+0200` is 120).
    pub zone_minutes: i16,
}

impl DateTime {
    /// Seconds since the Unix epoch.
    pub fn unix_time(&self) -> i64 {
        self.date.days_since_epoch() * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(self.zone_minutes) * 60
    }

    /// The date-time of Unix time `secs` shown in the zone `zone_minutes` east of UTC;
    /// `None` outside years 0..=9999 or for a zone beyond ±99:59.
    pub fn from_unix(secs: i64, zone_minutes: i16) -> Option<Self> {
        if zone_minutes.unsigned_abs() > 99 * 60 + 59 {
            return None;
        }
        let local = secs.checked_add(i64::from(zone_minutes) * 60)?;
        let days = local.div_euclid(86_400);
        let rem = local.rem_euclid(86_400);
        Some(DateTime {
            date: Date::from_days_since_epoch(days)?,
            hour: (rem / 3600) as u8,
            minute: (rem % 3600 / 60) as u8,
            second: (rem % 60) as u8,
            zone_minutes,
        })
    }
}

impl fmt::Display for DateTime {
    /// `date-time` without its quotes: `17-Jul-1996 02:44:25 -0700`, the day padded with
    /// a space to two characters (`date-day-fixed`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = MONTHS
            .get(usize::from(self.date.month).wrapping_sub(1))
            .unwrap_or(&"Jan");
        let sign = if self.zone_minutes < 0 { '-' } else { '+' };
        let z = self.zone_minutes.unsigned_abs();
        write!(
            f,
            "{:>2}-{}-{:04} {:02}:{:02}:{:02} {}{:02}{:02}",
            self.date.day,
            m,
            self.date.year,
            self.hour,
            self.minute,
            self.second,
            sign,
            z / 60,
            z % 60
        )
    }
}

fn digits_n(c: &mut Cursor<'_>, n: usize) -> PResult<u32> {
    let mut v = 0u32;
    for _ in 0..n {
        match c.peek() {
            Some(d @ b'0'..=b'9') => {
                v = v * 10 + u32::from(d - b'0');
                c.eat(d);
            }
            _ => return c.fail("expected a digit"),
        }
    }
    Ok(v)
}

fn month(c: &mut Cursor<'_>) -> PResult<u8> {
    for (i, m) in MONTHS.iter().enumerate() {
        if c.eat_ci(m) {
            return Ok(i as u8 + 1);
        }
    }
    c.fail("expected a month (Jan..Dec)")
}

/// `date-text = date-day "-" date-month "-" date-year`, `date-day = 1*2DIGIT`.
fn date_text(c: &mut Cursor<'_>) -> PResult<Date> {
    let start = c.pos();
    let d1 = digits_n(c, 1)?;
    let day = match c.peek() {
        Some(d @ b'0'..=b'9') => {
            c.eat(d);
            d1 * 10 + u32::from(d - b'0')
        }
        _ => d1,
    };
    c.expect(b'-', "expected '-' in a date")?;
    let m = month(c)?;
    c.expect(b'-', "expected '-' in a date")?;
    let year = digits_n(c, 4)?;
    match Date::new(year as u16, m, day as u8) {
        Some(d) if day <= 31 => Ok(d),
        _ => Err(crate::cursor::Fail {
            pos: start,
            kind: crate::ErrorKind::Syntax,
            text: "no such date".into(),
        }),
    }
}

/// `date = date-text / DQUOTE date-text DQUOTE` (SEARCH).
pub(crate) fn date(c: &mut Cursor<'_>) -> PResult<Date> {
    if c.eat(b'"') {
        let d = date_text(c)?;
        c.expect(b'"', "expected '\"' after the date")?;
        Ok(d)
    } else {
        date_text(c)
    }
}

/// ```text
/// date-time = DQUOTE date-day-fixed "-" date-month "-" date-year
///             SP time SP zone DQUOTE
/// date-day-fixed = (SP DIGIT) / 2DIGIT
/// ```
/// A one-digit day without the space is taken too.
pub(crate) fn date_time(c: &mut Cursor<'_>) -> PResult<DateTime> {
    c.expect(b'"', "expected a quoted date-time")?;
    c.eat(b' ');
    let date = date_text(c)?;
    c.sp()?;
    let start = c.pos();
    let hour = digits_n(c, 2)?;
    c.expect(b':', "expected ':' in the time")?;
    let minute = digits_n(c, 2)?;
    c.expect(b':', "expected ':' in the time")?;
    let second = digits_n(c, 2)?;
    if hour > 23 || minute > 59 || second > 60 {
        return Err(crate::cursor::Fail {
            pos: start,
            kind: crate::ErrorKind::Syntax,
            text: "no such time".into(),
        });
    }
    c.sp()?;
    let negative = match c.peek() {
        Some(b'+') => false,
        Some(b'-') => true,
        _ => return c.fail("expected a zone (+hhmm or -hhmm)"),
    };
    c.eat(if negative { b'-' } else { b'+' });
    let zh = digits_n(c, 2)?;
    let zm = digits_n(c, 2)?;
    if zm > 59 {
        return c.fail("zone minutes above 59");
    }
    c.expect(b'"', "expected '\"' after the date-time")?;
    let z = (zh * 60 + zm) as i16;
    Ok(DateTime {
        date,
        hour: hour as u8,
        minute: minute as u8,
        second: second as u8,
        zone_minutes: if negative { -z } else { z },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::TextMode;

    fn d(s: &str) -> PResult<Date> {
        let mut c = Cursor::new(s.as_bytes(), None, TextMode::Utf8);
        let r = date(&mut c)?;
        c.end()?;
        Ok(r)
    }

    fn dt(s: &str) -> PResult<DateTime> {
        let mut c = Cursor::new(s.as_bytes(), None, TextMode::Utf8);
        let r = date_time(&mut c)?;
        c.end()?;
        Ok(r)
    }

    #[test]
    fn dates() {
        assert_eq!(d("1-Feb-1994").unwrap(), Date::new(1994, 2, 1).unwrap());
        assert_eq!(
            d("\"01-feb-1994\"").unwrap(),
            Date::new(1994, 2, 1).unwrap()
        );
        assert_eq!(d("29-Feb-2000").unwrap().to_string(), "29-Feb-2000");
        for bad in [
            "29-Feb-1900",
            "31-Apr-2020",
            "0-Jan-2020",
            "1-Foo-2020",
            "1-Jan-20",
            "123-Jan-2020",
            "1 Jan 2020",
        ] {
            assert!(d(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn date_times() {
        let t = dt("\"17-Jul-1996 02:44:25 -0700\"").unwrap();
        assert_eq!(t.to_string(), "17-Jul-1996 02:44:25 -0700");
        assert_eq!(t.unix_time(), 837_596_665);
        let t = dt("\" 1-Jul-2002 22:35:00 +0000\"").unwrap();
        assert_eq!(t.to_string(), " 1-Jul-2002 22:35:00 +0000");
        assert!(dt("\"1-Jul-2002 22:35:00 +0000\"").is_ok());
        for bad in [
            "17-Jul-1996 02:44:25 -0700",
            "\"17-Jul-1996 24:00:00 +0000\"",
            "\"17-Jul-1996 02:44:25 0700\"",
            "\"17-Jul-1996 02:44:25 +0760\"",
            "\"17-Jul-1996 02:44 +0000\"",
        ] {
            assert!(dt(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unix_round_trip() {
        for secs in [0i64, 837_596_665, -86_400, 253_400_000_000, 951_782_400] {
            for zone in [0i16, 120, -420, 5999] {
                let t = DateTime::from_unix(secs, zone).unwrap_or_else(|| panic!("{secs} {zone}"));
                assert_eq!(t.unix_time(), secs, "{t}");
            }
        }
        assert_eq!(
            DateTime::from_unix(0, 0).unwrap().to_string(),
            " 1-Jan-1970 00:00:00 +0000"
        );
        assert_eq!(DateTime::from_unix(253_402_300_800, 0), None);
        for days in [-719_528i64, -1, 0, 59, 11_016, 2_932_896] {
            assert_eq!(
                Date::from_days_since_epoch(days)
                    .unwrap()
                    .days_since_epoch(),
                days
            );
        }
    }
}
