//! The delivery status notification (RFC 3464, RFC 6533 for SMTPUTF8 mail) sent when
//! a local recipient turned out to be over quota only after the data was received:
//! the message is stored for the others and the sender is told about this one (issue
//! 3: "a bounce, never a silent drop").
//!
//! ```text
//! multipart/report; report-type=delivery-status      (RFC 6522)
//!   text/plain                       the human-readable part
//!   message/delivery-status          per-message and per-recipient fields (§2.2, §2.3)
//!   text/rfc822-headers              the original headers (RET=HDRS or none)
//!   | message/rfc822                 or the whole message (RET=FULL)
//! ```

use crate::headers::{new_id, rfc5322_date};
use buudien_smtp_proto::params::xtext_encode;
use std::time::SystemTime;

/// One recipient that could not get its copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The account address the message could not be stored for (`Final-Recipient`).
    pub(crate) final_recipient: String,
    /// The recipient as the client gave it, when different.
    pub(crate) given: Option<String>,
    /// DSN `ORCPT` as given (`addr-type;xtext`), for `Original-Recipient`.
    pub(crate) orcpt: Option<String>,
}

/// What a report says.
#[derive(Debug)]
pub(crate) struct Report<'a> {
    /// This server (Reporting-MTA, From).
    pub(crate) hostname: &'a str,
    /// The envelope sender, who gets the report.
    pub(crate) sender: &'a str,
    /// When the message arrived.
    pub(crate) arrival: SystemTime,
    /// DSN `ENVID` (decoded).
    pub(crate) envid: Option<&'a str>,
    /// `RET=FULL`: return the whole message, else its headers.
    pub(crate) full: bool,
    /// The message used SMTPUTF8: use the RFC 6533 types.
    pub(crate) utf8: bool,
    /// The recipients it is about.
    pub(crate) failures: &'a [Failure],
    /// The message as stored (CRLF).
    pub(crate) message: &'a [u8],
}

/// Builds the report: a CRLF message ready for `QueueStore::submit`.
pub(crate) fn build(r: &Report<'_>) -> Vec<u8> {
    let now = SystemTime::now();
    let boundary = format!("{}/{}", new_id(), r.hostname);
    let mut m = String::new();
    let line = |m: &mut String, s: &str| {
        m.push_str(s);
        m.push_str("\r\n");
    };
    line(
        &mut m,
        &format!("From: Mail Delivery <MAILER-DAEMON@{}>", r.hostname),
    );
    line(&mut m, &format!("To: <{}>", r.sender));
    line(&mut m, "Subject: Returned mail: delivery failed");
    line(&mut m, &format!("Date: {}", rfc5322_date(now)));
    line(
        &mut m,
        &format!("Message-ID: <{}@{}>", new_id(), r.hostname),
    );
    // RFC 3834 §5: an automatic response.
    line(&mut m, "Auto-Submitted: auto-replied");
    line(&mut m, "MIME-Version: 1.0");
    line(
        &mut m,
        "Content-Type: multipart/report; report-type=delivery-status;",
    );
    line(&mut m, &format!("\tboundary=\"{boundary}\""));
    line(&mut m, "");
    line(&mut m, "This is a MIME-encapsulated message.");
    line(&mut m, "");

    // The human-readable part.
    line(&mut m, &format!("--{boundary}"));
    line(&mut m, "Content-Type: text/plain; charset=utf-8");
    line(&mut m, "Content-Transfer-Encoding: 8bit");
    line(&mut m, "");
    line(
        &mut m,
        &format!("This report comes from buudien at {}.", r.hostname),
    );
    line(&mut m, "");
    line(
        &mut m,
        "Your message could not be delivered to the following recipients,",
    );
    line(&mut m, "because their mailboxes are full:");
    line(&mut m, "");
    for f in r.failures {
        match &f.given {
            Some(given) => line(
                &mut m,
                &format!("  <{given}> (mailbox of {})", f.final_recipient),
            ),
            None => line(&mut m, &format!("  <{}>", f.final_recipient)),
        }
    }
    line(&mut m, "");
    line(
        &mut m,
        "Every other recipient of the message has received it.",
    );
    line(&mut m, "");

    // The machine-readable part (RFC 3464 §2).
    line(&mut m, &format!("--{boundary}"));
    line(
        &mut m,
        if r.utf8 {
            "Content-Type: message/global-delivery-status"
        } else {
            "Content-Type: message/delivery-status"
        },
    );
    line(&mut m, "");
    line(&mut m, &format!("Reporting-MTA: dns; {}", r.hostname));
    if let Some(envid) = r.envid {
        line(
            &mut m,
            &format!("Original-Envelope-Id: {}", xtext_encode(envid)),
        );
    }
    line(
        &mut m,
        &format!("Arrival-Date: {}", rfc5322_date(r.arrival)),
    );
    for f in r.failures {
        line(&mut m, "");
        let kind = if f.final_recipient.is_ascii() {
            "rfc822"
        } else {
            "utf-8"
        };
        line(
            &mut m,
            &format!("Final-Recipient: {kind}; {}", f.final_recipient),
        );
        if let Some(orcpt) = &f.orcpt {
            line(&mut m, &format!("Original-Recipient: {orcpt}"));
        }
        line(&mut m, "Action: failed");
        line(&mut m, "Status: 5.2.2");
    }
    line(&mut m, "");

    // The returned content (RFC 3462 §1 text/rfc822-headers, RFC 6533 §6.3).
    line(&mut m, &format!("--{boundary}"));
    let returned = if r.full {
        r.message
    } else {
        r.message
            .get(..buudien_message::header_len(r.message))
            .unwrap_or(r.message)
    };
    let content_type = match (r.full, r.utf8) {
        (true, false) => "message/rfc822",
        (true, true) => "message/global",
        (false, false) => "text/rfc822-headers",
        (false, true) => "message/global-headers",
    };
    line(&mut m, &format!("Content-Type: {content_type}"));
    if !returned.is_ascii() {
        line(&mut m, "Content-Transfer-Encoding: 8bit");
    }
    line(&mut m, "");
    let mut out = m.into_bytes();
    out.extend_from_slice(returned);
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn report_shape() {
        let msg = b"Subject: hi\r\nFrom: a@b.c\r\n\r\nsecret body\r\n";
        let failures = [Failure {
            final_recipient: "ann@example.org".into(),
            given: Some("team@example.org".into()),
            orcpt: Some("rfc822;team+40example.org".into()),
        }];
        let dsn = build(&Report {
            hostname: "mx.example.org",
            sender: "bob@example.net",
            arrival: SystemTime::UNIX_EPOCH,
            envid: Some("id 1"),
            full: false,
            utf8: false,
            failures: &failures,
            message: msg,
        });
        let text = String::from_utf8(dsn.clone()).unwrap();
        assert!(text.contains("report-type=delivery-status"));
        assert!(text.contains("To: <bob@example.net>\r\n"));
        assert!(text.contains("Content-Type: message/delivery-status\r\n"));
        assert!(text.contains("Final-Recipient: rfc822; ann@example.org\r\n"));
        assert!(text.contains("Original-Recipient: rfc822;team+40example.org\r\n"));
        assert!(text.contains("Original-Envelope-Id: id+201\r\n"));
        assert!(text.contains("Status: 5.2.2\r\n"));
        assert!(text.contains("Content-Type: text/rfc822-headers\r\n"));
        assert!(text.contains("Subject: hi\r\n"));
        assert!(!text.contains("secret body"));
        assert!(text.ends_with("--\r\n"));
        assert_eq!(buudien_message::normalize(&dsn), dsn, "not CRLF throughout");

        let dsn = build(&Report {
            hostname: "mx.example.org",
            sender: "bob@example.net",
            arrival: SystemTime::UNIX_EPOCH,
            envid: None,
            full: true,
            utf8: true,
            failures: &failures,
            message: "Subject: ü\r\n\r\nsecret body\r\n".as_bytes(),
        });
        let text = String::from_utf8(dsn).unwrap();
        assert!(text.contains("Content-Type: message/global-delivery-status\r\n"));
        assert!(text.contains("Content-Type: message/global\r\n"));
        assert!(text.contains("secret body"));
        assert!(!text.contains("Original-Envelope-Id"));
    }
}
