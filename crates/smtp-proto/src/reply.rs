//! Replies (RFC 5321 §4.2) with enhanced status codes (RFC 3463, RFC 2034).
//!
//! ```text
//! Reply-line     = *( Reply-code "-" [ textstring ] CRLF )
//!                  Reply-code [ SP textstring ] CRLF
//! Reply-code     = %x32-35 %x30-35 %x30-39
//! ```
//! RFC 2034 §3: every 2xx, 4xx and 5xx reply (except the greeting and the replies to
//! HELO and EHLO) starts its text with the enhanced status code, on every line of a
//! multi-line reply; 3xx replies carry none. [`write`] and [`write_lines`] take the
//! status as an `Option` so that the caller decides, and [`Status`] constants name the
//! ones buudien uses.

use std::fmt;

/// Longest reply line, CRLF included (RFC 5321 §4.5.3.1.5).
pub const MAX_REPLY_LINE: usize = 512;

/// Reply codes (RFC 5321 §4.2.2 and §4.2.3, RFC 4954 §6, RFC 3207 §4).
pub mod code {
    /// `211` System status.
    pub const SYSTEM_STATUS: u16 = 211;
    /// `214` Help message.
    pub const HELP: u16 = 214;
    /// `220` Service ready (greeting; STARTTLS go-ahead).
    pub const READY: u16 = 220;
    /// `221` Service closing transmission channel.
    pub const CLOSING: u16 = 221;
    /// `235` Authentication succeeded (RFC 4954 §6).
    pub const AUTH_OK: u16 = 235;
    /// `250` Requested mail action okay, completed.
    pub const OK: u16 = 250;
    /// `251` User not local; will forward.
    pub const WILL_FORWARD: u16 = 251;
    /// `252` Cannot VRFY user, but will accept message and attempt delivery.
    pub const CANNOT_VERIFY: u16 = 252;
    /// `334` Server challenge (RFC 4954 §4).
    pub const AUTH_CHALLENGE: u16 = 334;
    /// `354` Start mail input; end with `<CRLF>.<CRLF>`.
    pub const START_DATA: u16 = 354;
    /// `421` Service not available, closing transmission channel.
    pub const UNAVAILABLE: u16 = 421;
    /// `450` Mailbox unavailable (temporary).
    pub const MAILBOX_BUSY: u16 = 450;
    /// `451` Local error in processing.
    pub const LOCAL_ERROR: u16 = 451;
    /// `452` Insufficient system storage (also: too many recipients, RFC 5321
    /// §4.5.3.1.10; mailbox full, RFC 3463 X.2.2).
    pub const INSUFFICIENT_STORAGE: u16 = 452;
    /// `454` Temporary authentication failure / TLS not available (RFC 4954 §6,
    /// RFC 3207 §4).
    pub const TEMP_AUTH_FAILURE: u16 = 454;
    /// `455` Server unable to accommodate parameters.
    pub const PARAMS_UNACCOMMODATED: u16 = 455;
    /// `500` Syntax error, command unrecognized (also: line too long).
    pub const SYNTAX_ERROR: u16 = 500;
    /// `501` Syntax error in parameters or arguments.
    pub const PARAM_SYNTAX_ERROR: u16 = 501;
    /// `502` Command not implemented.
    pub const NOT_IMPLEMENTED: u16 = 502;
    /// `503` Bad sequence of commands.
    pub const BAD_SEQUENCE: u16 = 503;
    /// `504` Command parameter not implemented.
    pub const PARAM_NOT_IMPLEMENTED: u16 = 504;
    /// `530` Authentication required (RFC 4954 §6) / must issue STARTTLS first
    /// (RFC 3207 §4).
    pub const AUTH_REQUIRED: u16 = 530;
    /// `535` Authentication credentials invalid (RFC 4954 §6).
    pub const AUTH_INVALID: u16 = 535;
    /// `538` Encryption required for requested authentication mechanism
    /// (RFC 4954 §6).
    pub const ENCRYPTION_REQUIRED: u16 = 538;
    /// `550` Mailbox unavailable (not found, no access, policy).
    pub const MAILBOX_UNAVAILABLE: u16 = 550;
    /// `551` User not local.
    pub const USER_NOT_LOCAL: u16 = 551;
    /// `552` Exceeded storage allocation.
    pub const EXCEEDED_STORAGE: u16 = 552;
    /// `553` Mailbox name not allowed.
    pub const MAILBOX_NAME_NOT_ALLOWED: u16 = 553;
    /// `554` Transaction failed (also: no valid recipients).
    pub const TRANSACTION_FAILED: u16 = 554;
    /// `555` MAIL FROM/RCPT TO parameters not recognized or not implemented.
    pub const PARAMS_NOT_RECOGNIZED: u16 = 555;
}

/// An enhanced status code `class.subject.detail` (RFC 3463 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u8, pub u16, pub u16);

impl Status {
    /// `2.0.0` Other undefined status (success).
    pub const OK: Status = Status(2, 0, 0);
    /// `2.1.0` Sender address valid.
    pub const SENDER_OK: Status = Status(2, 1, 0);
    /// `2.1.5` Destination address valid.
    pub const RECIPIENT_OK: Status = Status(2, 1, 5);
    /// `2.5.0` Other or undefined protocol status (VRFY 252).
    pub const PROTOCOL_OK: Status = Status(2, 5, 0);
    /// `2.6.0` Message content accepted.
    pub const CONTENT_OK: Status = Status(2, 6, 0);
    /// `2.7.0` Security status: authentication succeeded (RFC 4954 §6).
    pub const AUTH_OK: Status = Status(2, 7, 0);
    /// `4.2.2` Mailbox full.
    pub const MAILBOX_FULL_TEMP: Status = Status(4, 2, 2);
    /// `4.3.0` Other or undefined mail system status.
    pub const SYSTEM_TEMP: Status = Status(4, 3, 0);
    /// `4.3.1` Mail system full.
    pub const SYSTEM_FULL: Status = Status(4, 3, 1);
    /// `4.3.2` System not accepting network messages (shutting down).
    pub const SHUTTING_DOWN: Status = Status(4, 3, 2);
    /// `4.4.2` Bad connection (timeout).
    pub const TIMEOUT: Status = Status(4, 4, 2);
    /// `4.5.3` Too many recipients.
    pub const TOO_MANY_RECIPIENTS: Status = Status(4, 5, 3);
    /// `4.7.0` Other or undefined security status (temporary auth failure,
    /// throttled).
    pub const SECURITY_TEMP: Status = Status(4, 7, 0);
    /// `5.0.0` Other undefined status (cancelled AUTH, RFC 4954 §4).
    pub const PERM_UNDEFINED: Status = Status(5, 0, 0);
    /// `5.1.1` Bad destination mailbox address (unknown user).
    pub const UNKNOWN_USER: Status = Status(5, 1, 1);
    /// `5.1.3` Bad destination mailbox address syntax.
    pub const BAD_RECIPIENT_SYNTAX: Status = Status(5, 1, 3);
    /// `5.1.7` Bad sender's mailbox address syntax.
    pub const BAD_SENDER_SYNTAX: Status = Status(5, 1, 7);
    /// `5.2.2` Mailbox full.
    pub const MAILBOX_FULL: Status = Status(5, 2, 2);
    /// `5.3.0` Other or undefined mail system status.
    pub const SYSTEM_PERM: Status = Status(5, 3, 0);
    /// `5.3.4` Message too big for system.
    pub const TOO_BIG: Status = Status(5, 3, 4);
    /// `5.4.6` Routing loop detected.
    pub const LOOP: Status = Status(5, 4, 6);
    /// `5.5.0` Other or undefined protocol status.
    pub const PROTOCOL: Status = Status(5, 5, 0);
    /// `5.5.1` Invalid command (also: bad sequence).
    pub const INVALID_COMMAND: Status = Status(5, 5, 1);
    /// `5.5.2` Syntax error.
    pub const SYNTAX: Status = Status(5, 5, 2);
    /// `5.5.3` Too many recipients (permanent).
    pub const TOO_MANY_RECIPIENTS_PERM: Status = Status(5, 5, 3);
    /// `5.5.4` Invalid command arguments.
    pub const INVALID_ARGUMENTS: Status = Status(5, 5, 4);
    /// `5.5.6` Authentication exchange line too long (RFC 4954 §4).
    pub const AUTH_LINE_TOO_LONG: Status = Status(5, 5, 6);
    /// `5.6.7` Non-ASCII addresses not permitted for that sender/recipient
    /// (RFC 6531 §3.5).
    pub const UTF8_NOT_PERMITTED: Status = Status(5, 6, 7);
    /// `5.7.0` Other or undefined security status (authentication required,
    /// RFC 4954 §6; must issue STARTTLS first, RFC 3207 §4).
    pub const SECURITY: Status = Status(5, 7, 0);
    /// `5.7.1` Delivery not authorized (relay denied, sender not allowed).
    pub const NOT_AUTHORIZED: Status = Status(5, 7, 1);
    /// `5.7.8` Authentication credentials invalid (RFC 4954 §6).
    pub const AUTH_INVALID: Status = Status(5, 7, 8);
    /// `5.7.11` Encryption required for requested authentication mechanism
    /// (RFC 4954 §6).
    pub const ENCRYPTION_REQUIRED: Status = Status(5, 7, 11);
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Writes a one-line reply: `code [status] text CRLF`.
pub fn write(out: &mut Vec<u8>, code: u16, status: Option<Status>, text: &str) {
    write_lines(out, code, status, &[text]);
}

/// Writes a reply of one or more lines (RFC 5321 §4.2.1): every line but the last has
/// `-` after the code. The status, if any, starts every line's text (RFC 2034 §3).
///
/// Text is made safe for the wire: control characters (CR, LF, …) become `?`, and a
/// line is cut to fit [`MAX_REPLY_LINE`], so no client-supplied string can end a
/// reply early or inject another one.
pub fn write_lines(out: &mut Vec<u8>, code: u16, status: Option<Status>, lines: &[&str]) {
    let lines: &[&str] = if lines.is_empty() { &[""] } else { lines };
    let count = lines.len();
    for (i, text) in lines.iter().enumerate() {
        let mut line = format!("{code:03}");
        line.push(if i + 1 == count { ' ' } else { '-' });
        if let Some(s) = status {
            line.push_str(&s.to_string());
            if !text.is_empty() {
                line.push(' ');
            }
        }
        let room = MAX_REPLY_LINE.saturating_sub(2);
        for c in text.chars() {
            let c = if c.is_control() { '?' } else { c };
            if line.len() + c.len_utf8() > room {
                break;
            }
            line.push(c);
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn one_line() {
        assert_eq!(
            text(|o| write(o, code::OK, Some(Status::OK), "Ok")),
            "250 2.0.0 Ok\r\n"
        );
        assert_eq!(
            text(|o| write(o, code::START_DATA, None, "go ahead")),
            "354 go ahead\r\n"
        );
        assert_eq!(
            text(|o| write(o, code::AUTH_CHALLENGE, None, "")),
            "334 \r\n"
        );
        assert_eq!(
            text(|o| write(o, code::BAD_SEQUENCE, Some(Status::INVALID_COMMAND), "")),
            "503 5.5.1\r\n"
        );
    }

    #[test]
    fn multi_line() {
        assert_eq!(
            text(|o| write_lines(
                o,
                code::OK,
                None,
                &["mx greets you", "PIPELINING", "SIZE 10"]
            )),
            "250-mx greets you\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
        );
        assert_eq!(
            text(|o| write_lines(o, code::HELP, Some(Status::OK), &["a", "b"])),
            "214-2.0.0 a\r\n214 2.0.0 b\r\n"
        );
    }

    #[test]
    fn injection_and_length_are_contained() {
        let t = text(|o| {
            write(
                o,
                code::MAILBOX_UNAVAILABLE,
                Some(Status::UNKNOWN_USER),
                "<a@b>\r\n250 fake",
            )
        });
        assert_eq!(t, "550 5.1.1 <a@b>??250 fake\r\n");
        let long = "x".repeat(2000);
        let t = text(|o| write(o, code::OK, Some(Status::OK), &long));
        assert_eq!(t.len(), MAX_REPLY_LINE);
        assert!(t.ends_with("\r\n"));
        let t = text(|o| write(o, code::OK, None, &"é".repeat(600)));
        assert!(t.len() <= MAX_REPLY_LINE);
    }

    #[test]
    fn statuses_print() {
        assert_eq!(Status::ENCRYPTION_REQUIRED.to_string(), "5.7.11");
        assert_eq!(Status::TOO_BIG.to_string(), "5.3.4");
    }
}
