//! The command × state table (RFC 5321 §4.1.4 command order, RFC 3030 §2 BDAT,
//! RFC 3207 §4 STARTTLS, RFC 4954 §4 AUTH), checked before any command is
//! dispatched. Policy that depends on more than the state (authentication required,
//! TLS required, relay) lives in the handlers.

use buudien_smtp_proto::{Command, Status, code};

/// Where a session is when it reads a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No EHLO/HELO yet (RFC 5321 §4.1.4: a client MUST send one first).
    Initial,
    /// Greeted, no transaction.
    Ready,
    /// MAIL accepted, no recipient yet.
    Mail,
    /// At least one recipient accepted.
    Rcpt,
    /// A BDAT sequence is under way (RFC 3030 §2: only BDAT, RSET, NOOP, QUIT and
    /// EHLO/HELO may follow until LAST).
    Bdat,
}

/// Who may run a command: `(command, Initial, Ready, Mail, Rcpt, Bdat)`.
const TABLE: &[(&str, [bool; 5])] = &[
    // RFC 5321 §4.1.4: EHLO/HELO anywhere; they reset the transaction.
    ("EHLO", [true, true, true, true, true]),
    ("HELO", [true, true, true, true, true]),
    // RFC 5321 §4.1.1.2: MAIL starts a transaction, only outside one.
    ("MAIL", [false, true, false, false, false]),
    // RFC 5321 §4.1.1.3: RCPT after MAIL; RFC 3030 §2: not once BDAT has begun.
    ("RCPT", [false, false, true, true, false]),
    // RFC 5321 §4.1.1.4: DATA after a successful RCPT (Mail is let through so that
    // the handler can say "no valid recipients", RFC 5321 §3.3); never mixed with BDAT.
    ("DATA", [false, false, true, true, false]),
    // RFC 3030 §2: BDAT is always read (its chunk must be consumed); the handler
    // refuses it outside a transaction.
    ("BDAT", [true, true, true, true, true]),
    // RFC 5321 §4.1.1.5, §4.1.1.9, §4.1.1.10: anywhere.
    ("RSET", [true, true, true, true, true]),
    ("NOOP", [true, true, true, true, true]),
    ("QUIT", [true, true, true, true, true]),
    // RFC 5321 §4.1.1.6–§4.1.1.8: anywhere but inside a BDAT sequence.
    ("VRFY", [true, true, true, true, false]),
    ("EXPN", [true, true, true, true, false]),
    ("HELP", [true, true, true, true, false]),
    // RFC 3207 §4: STARTTLS after EHLO, outside a transaction.
    ("STARTTLS", [false, true, false, false, false]),
    // RFC 4954 §4: AUTH after EHLO, not during a mail transaction.
    ("AUTH", [false, true, false, false, false]),
];

/// Why the gate refused a command: the reply to send (`503` with `5.5.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// Reply code.
    pub(crate) code: u16,
    /// Enhanced status.
    pub(crate) status: Status,
    /// Reply text.
    pub(crate) text: &'static str,
}

/// Checks `command` against `phase`.
pub(crate) fn check(phase: Phase, command: &Command) -> Result<(), Refusal> {
    let name = command.name();
    let allowed = TABLE
        .iter()
        .find(|(n, _)| *n == name)
        .is_some_and(|(_, phases)| {
            let i = match phase {
                Phase::Initial => 0,
                Phase::Ready => 1,
                Phase::Mail => 2,
                Phase::Rcpt => 3,
                Phase::Bdat => 4,
            };
            phases.get(i).copied().unwrap_or(false)
        });
    if allowed {
        return Ok(());
    }
    let text = match (name, phase) {
        (_, Phase::Initial) => "send EHLO or HELO first",
        ("MAIL", _) => "nested MAIL command",
        ("DATA", Phase::Bdat) => "DATA not allowed after BDAT",
        ("RCPT", Phase::Bdat) => "RCPT not allowed after BDAT",
        ("RCPT" | "DATA", _) => "send MAIL first",
        (_, Phase::Bdat) => "finish the BDAT sequence (BDAT LAST) or send RSET",
        _ => "not allowed during a mail transaction",
    };
    Err(Refusal {
        code: code::BAD_SEQUENCE,
        status: Status::INVALID_COMMAND,
        text,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn cmd(s: &str) -> Command {
        Command::parse(s.as_bytes()).unwrap()
    }

    fn every_command() -> Vec<Command> {
        [
            "EHLO x",
            "HELO x",
            "MAIL FROM:<>",
            "RCPT TO:<a@b.c>",
            "DATA",
            "BDAT 1",
            "RSET",
            "NOOP",
            "QUIT",
            "VRFY a",
            "EXPN a",
            "HELP",
            "STARTTLS",
            "AUTH PLAIN",
        ]
        .iter()
        .map(|s| cmd(s))
        .collect()
    }

    #[test]
    fn every_command_is_in_the_table() {
        for c in every_command() {
            assert!(
                TABLE.iter().any(|(n, _)| *n == c.name()),
                "{} missing",
                c.name()
            );
        }
    }

    #[test]
    fn rfc5321_order() {
        use Phase::*;
        assert!(check(Initial, &cmd("MAIL FROM:<>")).is_err());
        assert_eq!(
            check(Initial, &cmd("MAIL FROM:<>")).unwrap_err().text,
            "send EHLO or HELO first"
        );
        assert!(check(Ready, &cmd("MAIL FROM:<>")).is_ok());
        assert_eq!(
            check(Mail, &cmd("MAIL FROM:<>")).unwrap_err().text,
            "nested MAIL command"
        );
        assert!(check(Ready, &cmd("RCPT TO:<a@b.c>")).is_err());
        assert!(check(Mail, &cmd("RCPT TO:<a@b.c>")).is_ok());
        assert!(check(Rcpt, &cmd("DATA")).is_ok());
        assert!(check(Ready, &cmd("DATA")).is_err());
        assert_eq!(
            check(Bdat, &cmd("DATA")).unwrap_err().text,
            "DATA not allowed after BDAT"
        );
        assert!(check(Bdat, &cmd("RCPT TO:<a@b.c>")).is_err());
        for p in [Initial, Ready, Mail, Rcpt, Bdat] {
            assert!(check(p, &cmd("BDAT 1")).is_ok());
            assert!(check(p, &cmd("RSET")).is_ok());
            assert!(check(p, &cmd("QUIT")).is_ok());
            assert!(check(p, &cmd("EHLO x")).is_ok());
        }
        assert!(check(Initial, &cmd("STARTTLS")).is_err());
        assert!(check(Ready, &cmd("STARTTLS")).is_ok());
        assert!(check(Mail, &cmd("AUTH PLAIN")).is_err());
        assert!(check(Ready, &cmd("AUTH PLAIN")).is_ok());
        let r = check(Rcpt, &cmd("AUTH PLAIN")).unwrap_err();
        assert_eq!((r.code, r.status), (503, Status::INVALID_COMMAND));
    }
}
