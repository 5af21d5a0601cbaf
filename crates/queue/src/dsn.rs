//! Delivery status notifications: a multipart/report (RFC 6522) with a human part, a
//! message/delivery-status part (RFC 3464 §2, with the fields RFC 3461 §6.3 requires)
//! and the original message or its headers (RFC 3461 §6.2); for SMTPUTF8 mail the
//! internationalised forms of RFC 6533 (message/global-delivery-status,
//! message/global, message/global-headers).

use crate::encode::xtext_decode;
use buudien_message::header_len;
use buudien_store::{Envelope, QueuedRecipient, Ret};
use std::time::{SystemTime, UNIX_EPOCH};

/// The longest diagnostic text copied into a DSN field.
const MAX_DIAGNOSTIC: usize = 900;

/// What happened to a recipient (RFC 3464 §2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Not delivered; nothing more will be tried.
    Failed,
    /// Not delivered yet; still trying.
    Delayed,
    /// Delivered to its final mailbox.
    Delivered,
    /// Handed to a hop that cannot send DSNs (RFC 3461 §5.2.2).
    Relayed,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
        }
    }
}

/// Everything a DSN is made of.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// Our host name (`Reporting-MTA: dns; …`).
    pub reporting_mta: &'a str,
    /// The original envelope (ENVID, RET, SMTPUTF8, the sender to notify).
    pub envelope: &'a Envelope,
    /// When the original arrived.
    pub arrival: SystemTime,
    /// The recipients reported on, with what happened to each.
    pub recipients: Vec<(&'a QueuedRecipient, Action)>,
    /// The original message.
    pub original: &'a [u8],
    /// Originals longer than this are returned as headers only.
    pub return_limit: usize,
    /// Now (`Date`, `Last-Attempt-Date`).
    pub now: SystemTime,
}

/// A recipient's last reply as the queue stores it: `host[ip] said: 550 5.1.1 text`
/// for a remote reply, `4.4.1 text` for a local finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedReply {
    /// The remote host's name, when a remote MTA replied.
    pub remote_mta: Option<String>,
    /// The SMTP reply (`550 5.1.1 text`), when a remote MTA replied.
    pub diagnostic: Option<String>,
    /// The enhanced status code found (RFC 3463), if any.
    pub status: Option<String>,
}

/// `d.ddd.ddd` with a class of 2, 4 or 5 (RFC 3463 §2).
fn is_status(s: &str) -> bool {
    let mut parts = s.split('.');
    let ok = |p: Option<&str>, max: usize| {
        p.is_some_and(|p| !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit()))
    };
    let class = parts.next();
    matches!(class, Some("2" | "4" | "5"))
        && ok(parts.next(), 3)
        && ok(parts.next(), 3)
        && parts.next().is_none()
}

/// Splits a stored reply into its DSN fields.
pub fn parse_reply(s: &str) -> ParsedReply {
    if let Some((peer, reply)) = s.split_once(" said: ") {
        let host = peer.split('[').next().unwrap_or(peer).trim();
        let status = reply
            .split_ascii_whitespace()
            .nth(1)
            .filter(|w| is_status(w))
            .map(str::to_string);
        return ParsedReply {
            remote_mta: (!host.is_empty()).then(|| host.to_string()),
            diagnostic: Some(reply.trim().to_string()),
            status,
        };
    }
    ParsedReply {
        remote_mta: None,
        diagnostic: None,
        status: s
            .split_ascii_whitespace()
            .next()
            .filter(|w| is_status(w))
            .map(str::to_string),
    }
}

/// The Status of a recipient (RFC 3461 §6.3 (g)): the reply's enhanced code when it
/// matches the action, else 2.0.0, or 4.0.0/5.0.0 from the reply code.
fn status_for(action: Action, parsed: &ParsedReply) -> String {
    let found = parsed.status.as_deref();
    match action {
        Action::Delivered | Action::Relayed => match found {
            Some(s) if s.starts_with('2') => s.to_string(),
            _ => "2.0.0".into(),
        },
        Action::Failed | Action::Delayed => match found {
            Some(s) if !s.starts_with('2') => s.to_string(),
            _ => match parsed.diagnostic.as_deref().and_then(|d| d.get(..1)) {
                Some("4") => "4.0.0".into(),
                _ if action == Action::Delayed => "4.0.0".into(),
                _ => "5.0.0".into(),
            },
        },
    }
}

/// One line, bounded, no control characters; non-ASCII replaced unless `utf8`.
fn clean(s: &str, utf8: bool) -> String {
    let mut out: String = s
        .chars()
        .map(|c| match c {
            c if c.is_control() => ' ',
            c if !c.is_ascii() && !utf8 => '?',
            c => c,
        })
        .collect();
    if out.len() > MAX_DIAGNOSTIC {
        let mut end = MAX_DIAGNOSTIC;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

/// The address-type form of an address (RFC 3464 §2.1.2; RFC 6533 §3 `utf-8`).
fn typed(address: &str) -> String {
    if address.is_ascii() {
        format!("rfc822;{address}")
    } else {
        format!("utf-8;{address}")
    }
}

/// An RFC 5322 §3.3 `date-time` in UTC (`Tue, 15 Jul 2025 10:00:00 +0000`): the
/// DSN dates here, and the SMTP session's `Date` and `Received` fields.
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Days to civil date (H. Hinnant's algorithm), for dates after 1970.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let wd = WEEKDAYS
        .get(usize::try_from(days % 7).unwrap_or(0))
        .copied()
        .unwrap_or("Thu");
    let mon = MONTHS
        .get(usize::try_from(month.saturating_sub(1)).unwrap_or(0))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{wd}, {day} {mon} {year} {:02}:{:02}:{:02} +0000",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Builds the DSN message (CRLF lines), from `MAILER-DAEMON@reporting_mta` to the
/// original sender. The caller never builds one for the null sender.
pub fn build(r: &Report<'_>) -> Vec<u8> {
    let global = r.envelope.smtputf8;
    let any_failed = r.recipients.iter().any(|(_, a)| *a == Action::Failed);
    let any_delayed = r.recipients.iter().any(|(_, a)| *a == Action::Delayed);
    let boundary = format!(
        "{:016x}{:016x}/{}",
        rand::random::<u64>(),
        rand::random::<u64>(),
        r.reporting_mta
    );
    let subject = if any_failed {
        "Returned mail: delivery failed"
    } else if any_delayed {
        "Delivery delayed: still trying"
    } else {
        "Delivery report: message delivered"
    };
    let report_type = if global {
        "global-delivery-status"
    } else {
        "delivery-status"
    };
    let mut m = String::new();
    m.push_str(&format!(
        "From: Mail Delivery <MAILER-DAEMON@{}>\r\n",
        r.reporting_mta
    ));
    m.push_str(&format!("To: <{}>\r\n", r.envelope.sender));
    m.push_str(&format!("Subject: {subject}\r\n"));
    m.push_str(&format!("Date: {}\r\n", rfc5322_date(r.now)));
    m.push_str(&format!(
        "Message-ID: <{}.{:016x}@{}>\r\n",
        r.now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        rand::random::<u64>(),
        r.reporting_mta
    ));
    // RFC 3834 §5: an automatic response.
    m.push_str("Auto-Submitted: auto-replied\r\n");
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str(&format!(
        "Content-Type: multipart/report; report-type={report_type};\r\n\tboundary=\"{boundary}\"\r\n"
    ));
    m.push_str("\r\nThis is a MIME-encapsulated message.\r\n\r\n");

    // 1. The human-readable part (RFC 6522 §3).
    m.push_str(&format!("--{boundary}\r\n"));
    m.push_str("Content-Description: Notification\r\n");
    m.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    if global {
        m.push_str("Content-Transfer-Encoding: 8bit\r\n");
    }
    m.push_str("\r\n");
    m.push_str(&human_text(r, global));

    // 2. The machine-readable part (RFC 3464 §2).
    m.push_str(&format!("\r\n--{boundary}\r\n"));
    m.push_str("Content-Description: Delivery report\r\n");
    m.push_str(&format!("Content-Type: message/{report_type}\r\n"));
    if global {
        m.push_str("Content-Transfer-Encoding: 8bit\r\n");
    }
    m.push_str("\r\n");
    m.push_str(&status_fields(r, global));

    // 3. The original, or its headers (RFC 3461 §6.2: headers only unless a failure
    //    is reported and RET is not HDRS; and over the size limit).
    let full =
        any_failed && r.envelope.ret != Some(Ret::Headers) && r.original.len() <= r.return_limit;
    let mut out = m.into_bytes();
    let (ctype, bytes) = if full {
        let t = if global {
            "message/global"
        } else {
            "message/rfc822"
        };
        (t, r.original)
    } else {
        let t = if global {
            "message/global-headers"
        } else {
            "text/rfc822-headers"
        };
        let h = header_len(r.original).min(r.original.len());
        (t, r.original.get(..h).unwrap_or_default())
    };
    let desc = if full {
        "Undelivered Message"
    } else {
        "Message Headers"
    };
    out.extend_from_slice(
        format!("\r\n--{boundary}\r\nContent-Description: {desc}\r\nContent-Type: {ctype}\r\n")
            .as_bytes(),
    );
    if crate::encode::has_8bit(bytes) {
        out.extend_from_slice(b"Content-Transfer-Encoding: 8bit\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(bytes);
    if !bytes.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

fn human_text(r: &Report<'_>, utf8: bool) -> String {
    let mut t = format!(
        "This report comes from buudien at {}.\r\n\r\n",
        r.reporting_mta
    );
    let failed: Vec<_> = r
        .recipients
        .iter()
        .filter(|(_, a)| *a == Action::Failed)
        .collect();
    let delayed: Vec<_> = r
        .recipients
        .iter()
        .filter(|(_, a)| *a == Action::Delayed)
        .collect();
    let delivered = r.recipients.iter().any(|(_, a)| *a == Action::Delivered);
    let relayed = r.recipients.iter().any(|(_, a)| *a == Action::Relayed);
    if !failed.is_empty() {
        t.push_str(
            "Your message could not be delivered to the recipients below, and\r\n\
             no further attempts will be made. The message is returned with this\r\n\
             report.\r\n\r\n",
        );
    }
    if !delayed.is_empty() {
        t.push_str("Your message could not be delivered yet to some recipients;\r\nit will be tried again.\r\n\r\n");
    }
    if delivered {
        t.push_str("Your message was delivered to the mailboxes of the recipients below.\r\n\r\n");
    }
    if relayed {
        t.push_str(
            "Your message was handed on for the recipients below. A server further\r\n\
             along may still send its own report.\r\n\r\n",
        );
    }
    for (rcpt, action) in &r.recipients {
        let why = rcpt.last_reply.as_deref().unwrap_or("");
        let what = match action {
            Action::Relayed => "relayed to a mail system that does not send delivery notifications",
            Action::Delivered => "delivered",
            _ => why,
        };
        t.push_str(&clean(&format!("<{}>: {what}", rcpt.address), utf8));
        t.push_str("\r\n");
    }
    t
}

fn status_fields(r: &Report<'_>, utf8: bool) -> String {
    let mut s = format!("Reporting-MTA: dns; {}\r\n", r.reporting_mta);
    if let Some(id) = &r.envelope.envid {
        s.push_str(&format!("Original-Envelope-Id: {}\r\n", clean(id, utf8)));
    }
    s.push_str(&format!("Arrival-Date: {}\r\n", rfc5322_date(r.arrival)));
    for (rcpt, action) in &r.recipients {
        s.push_str("\r\n");
        if let Some(o) = &rcpt.orcpt {
            let (kind, addr) = o.split_once(';').unwrap_or(("rfc822", o.as_str()));
            s.push_str(&format!(
                "Original-Recipient: {};{}\r\n",
                clean(kind, false),
                clean(&xtext_decode(addr), utf8)
            ));
        }
        s.push_str(&format!(
            "Final-Recipient: {}\r\n",
            clean(&typed(&rcpt.address), utf8)
        ));
        s.push_str(&format!("Action: {}\r\n", action.as_str()));
        let parsed = parse_reply(rcpt.last_reply.as_deref().unwrap_or(""));
        s.push_str(&format!("Status: {}\r\n", status_for(*action, &parsed)));
        if let Some(mta) = &parsed.remote_mta {
            s.push_str(&format!("Remote-MTA: dns; {}\r\n", clean(mta, utf8)));
        }
        if let Some(d) = &parsed.diagnostic {
            s.push_str(&format!("Diagnostic-Code: smtp; {}\r\n", clean(d, utf8)));
        }
        if rcpt.attempts > 0 {
            s.push_str(&format!("Last-Attempt-Date: {}\r\n", rfc5322_date(r.now)));
        }
        if *action == Action::Delayed {
            s.push_str(&format!(
                "Will-Retry-Until: {}\r\n",
                rfc5322_date(rcpt.next_attempt)
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use buudien_store::{Notify, RcptState};
    use std::time::Duration;

    fn rcpt(i: u32, addr: &str, reply: &str) -> QueuedRecipient {
        QueuedRecipient {
            index: i,
            address: addr.into(),
            orcpt: None,
            notify: None,
            state: RcptState::Failed,
            attempts: 1,
            next_attempt: UNIX_EPOCH,
            last_reply: Some(reply.into()),
            relayed: false,
            reported: false,
        }
    }

    fn env(smtputf8: bool, ret: Option<Ret>) -> Envelope {
        Envelope {
            sender: "ann@a.example".into(),
            envid: Some("QQ314159".into()),
            ret,
            eight_bit: false,
            smtputf8,
        }
    }

    const ORIGINAL: &[u8] = b"Subject: hello\r\nFrom: ann@a.example\r\n\r\nthe body\r\n";

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_752_573_600) // Tue, 15 Jul 2025 10:00:00
    }

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(t0()), "Tue, 15 Jul 2025 10:00:00 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661);
        assert_eq!(rfc5322_date(leap), "Tue, 29 Feb 2000 01:01:01 +0000");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29 12:34:56
        assert_eq!(rfc5322_date(t), "Thu, 29 Feb 2024 12:34:56 +0000");
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_799); // 2099-12-31 23:59:59
        assert_eq!(rfc5322_date(t), "Thu, 31 Dec 2099 23:59:59 +0000");
    }

    #[test]
    fn replies_split_into_fields() {
        let p = parse_reply("mx.b.example[192.0.2.1] said: 550 5.1.1 no such user");
        assert_eq!(p.remote_mta.as_deref(), Some("mx.b.example"));
        assert_eq!(p.diagnostic.as_deref(), Some("550 5.1.1 no such user"));
        assert_eq!(p.status.as_deref(), Some("5.1.1"));
        let p = parse_reply("mx[192.0.2.1] said: 554 go away");
        assert_eq!(p.status, None);
        assert_eq!(status_for(Action::Failed, &p), "5.0.0");
        let p = parse_reply("5.1.10 b.example does not accept mail (null MX, RFC 7505)");
        assert_eq!((p.remote_mta, p.diagnostic), (None, None));
        assert_eq!(p.status.as_deref(), Some("5.1.10"));
        let p = parse_reply("mx[1] said: 451 4.3.0 later");
        assert_eq!(
            status_for(Action::Failed, &p),
            "4.3.0",
            "expired: the last temporary code"
        );
        assert_eq!(
            status_for(Action::Relayed, &parse_reply("x[1] said: 250 ok")),
            "2.0.0"
        );
        assert!(
            !is_status("6.1.1")
                && !is_status("5.1")
                && !is_status("5.1.1.1")
                && !is_status("5.a.1")
        );
    }

    #[test]
    fn failure_report() {
        let mut r1 = rcpt(
            0,
            "bob@b.example",
            "mx.b.example[192.0.2.1] said: 550 5.1.1 <bob@b.example>: no such user",
        );
        r1.orcpt = Some("rfc822;Bob+40B.example".into());
        let e = env(false, None);
        let report = Report {
            reporting_mta: "mail.a.example",
            envelope: &e,
            arrival: t0(),
            recipients: vec![(&r1, Action::Failed)],
            original: ORIGINAL,
            return_limit: 1 << 20,
            now: t0() + Duration::from_secs(60),
        };
        let dsn = String::from_utf8(build(&report)).unwrap();
        assert!(dsn.starts_with("From: Mail Delivery <MAILER-DAEMON@mail.a.example>\r\n"));
        assert!(dsn.contains("\r\nTo: <ann@a.example>\r\n"));
        assert!(dsn.contains("Subject: Returned mail: delivery failed\r\n"));
        assert!(dsn.contains("Auto-Submitted: auto-replied\r\n"));
        assert!(dsn.contains(
            "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\""
        ));
        assert!(dsn.contains("Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mail.a.example\r\nOriginal-Envelope-Id: QQ314159\r\nArrival-Date: Tue, 15 Jul 2025 10:00:00 +0000\r\n\r\n"));
        assert!(dsn.contains("Original-Recipient: rfc822;Bob@B.example\r\n"));
        assert!(dsn.contains("Final-Recipient: rfc822;bob@b.example\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.b.example\r\nDiagnostic-Code: smtp; 550 5.1.1 <bob@b.example>: no such user\r\nLast-Attempt-Date: Tue, 15 Jul 2025 10:01:00 +0000\r\n"));
        assert!(dsn.contains("Content-Type: message/rfc822\r\n\r\nSubject: hello\r\nFrom: ann@a.example\r\n\r\nthe body\r\n"), "full original by default on failure");
        assert!(dsn.contains("<bob@b.example>: mx.b.example[192.0.2.1] said: 550"));
        // Three parts and a close delimiter, each boundary line well-formed.
        let b = dsn
            .split("boundary=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(dsn.matches(&format!("\r\n--{b}\r\n")).count(), 3);
        assert!(dsn.ends_with(&format!("\r\n--{b}--\r\n")));
        assert!(dsn.lines().all(|l| l.len() <= 998));
        assert!(dsn.is_ascii());
    }

    #[test]
    fn headers_only_on_ret_hdrs_success_and_size() {
        let r1 = rcpt(0, "bob@b.example", "mx[1] said: 550 5.1.1 no");
        let e = env(false, Some(Ret::Headers));
        let mut report = Report {
            reporting_mta: "m",
            envelope: &e,
            arrival: t0(),
            recipients: vec![(&r1, Action::Failed)],
            original: ORIGINAL,
            return_limit: 1 << 20,
            now: t0(),
        };
        let dsn = String::from_utf8(build(&report)).unwrap();
        assert!(dsn.contains("Content-Type: text/rfc822-headers\r\n\r\nSubject: hello\r\nFrom: ann@a.example\r\n\r\n\r\n--"));
        assert!(!dsn.contains("the body"));
        let e2 = env(false, None);
        report.envelope = &e2;
        report.return_limit = 10;
        assert!(
            !String::from_utf8(build(&report))
                .unwrap()
                .contains("the body"),
            "too big"
        );
        let mut ok = rcpt(0, "bob@b.example", "mx[1] said: 250 2.0.0 queued");
        ok.notify = Some(Notify {
            success: true,
            failure: true,
            delay: false,
        });
        ok.state = RcptState::Delivered;
        report.recipients = vec![(&ok, Action::Relayed)];
        report.return_limit = 1 << 20;
        let dsn = String::from_utf8(build(&report)).unwrap();
        assert!(dsn.contains("Subject: Delivery report: message delivered\r\n"));
        assert!(dsn.contains("Action: relayed\r\nStatus: 2.0.0\r\nRemote-MTA: dns; mx\r\nDiagnostic-Code: smtp; 250 2.0.0 queued\r\n"));
        assert!(!dsn.contains("the body"), "success: headers only");
    }

    #[test]
    fn global_report_for_smtputf8() {
        let r1 = rcpt(0, "jürgen@b.example", "mx[1] said: 550 5.1.1 kein Jürgen");
        let e = env(true, None);
        let original = "Subject: Grüße\r\n\r\nhallo\r\n".as_bytes();
        let report = Report {
            reporting_mta: "m",
            envelope: &e,
            arrival: t0(),
            recipients: vec![(&r1, Action::Failed)],
            original,
            return_limit: 1 << 20,
            now: t0(),
        };
        let dsn = String::from_utf8(build(&report)).unwrap();
        assert!(dsn.contains("report-type=global-delivery-status;"));
        assert!(dsn.contains(
            "Content-Type: message/global-delivery-status\r\nContent-Transfer-Encoding: 8bit\r\n"
        ));
        assert!(dsn.contains("Final-Recipient: utf-8;jürgen@b.example\r\n"));
        assert!(dsn.contains("Diagnostic-Code: smtp; 550 5.1.1 kein Jürgen\r\n"));
        assert!(dsn.contains(
            "Content-Type: message/global\r\nContent-Transfer-Encoding: 8bit\r\n\r\nSubject: Grüße"
        ));
    }
}
