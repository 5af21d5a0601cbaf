//! The command × state table (RFC 1939 §3–§7, RFC 2449 §5, RFC 2595 §4, RFC 5034 §4,
//! RFC 6856 §2.1), checked before any command is dispatched.
//!
//! The UPDATE state is entered by QUIT in TRANSACTION and left by closing the
//! connection, so no command is ever read in it and it has no column here.

use buudien_pop3_proto::Command;

/// Where a session is when it reads a command (RFC 1939 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Before a successful login.
    Authorization,
    /// With a maildrop open.
    Transaction,
}

impl Phase {
    /// The state's name as RFC 1939 writes it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Phase::Authorization => "AUTHORIZATION",
            Phase::Transaction => "TRANSACTION",
        }
    }
}

/// `(command, allowed in AUTHORIZATION, allowed in TRANSACTION)`.
const TABLE: &[(&str, bool, bool)] = &[
    // RFC 1939 §7, RFC 5034 §4: logins.
    ("USER", true, false),
    ("PASS", true, false),
    ("APOP", true, false),
    ("AUTH", true, false),
    // RFC 2449 §5: CAPA in both states.
    ("CAPA", true, true),
    // RFC 2595 §4: STLS only in AUTHORIZATION.
    ("STLS", true, false),
    // RFC 6856 §2: UTF8 only in AUTHORIZATION.
    ("UTF8", true, false),
    // RFC 1939 §5, §7: the TRANSACTION commands.
    ("STAT", false, true),
    ("LIST", false, true),
    ("RETR", false, true),
    ("DELE", false, true),
    ("NOOP", false, true),
    ("RSET", false, true),
    ("TOP", false, true),
    ("UIDL", false, true),
    // RFC 1939 §4, §6: QUIT in both.
    ("QUIT", true, true),
];

/// Whether `command` may run in `phase`.
pub(crate) fn permits(phase: Phase, command: &Command) -> bool {
    let name = command.name();
    TABLE
        .iter()
        .find(|(n, _, _)| *n == name)
        .is_some_and(|&(_, auth, txn)| match phase {
            Phase::Authorization => auth,
            Phase::Transaction => txn,
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use buudien_types::Secret;

    fn every_command() -> Vec<Command> {
        vec![
            Command::User("a".into()),
            Command::Pass(Secret::new("p".into())),
            Command::Apop {
                name: "a".into(),
                digest: "d".into(),
            },
            Command::Auth {
                mechanism: None,
                initial: None,
            },
            Command::Capa,
            Command::Stls,
            Command::Utf8,
            Command::Stat,
            Command::List(None),
            Command::Retr(1),
            Command::Dele(1),
            Command::Noop,
            Command::Rset,
            Command::Top(1, 1),
            Command::Uidl(None),
            Command::Quit,
        ]
    }

    #[test]
    fn every_command_is_in_the_table() {
        for c in every_command() {
            assert!(
                TABLE.iter().any(|(n, _, _)| *n == c.name()),
                "{} missing",
                c.name()
            );
            assert!(
                permits(Phase::Authorization, &c) || permits(Phase::Transaction, &c),
                "{} allowed nowhere",
                c.name()
            );
        }
    }

    #[test]
    fn rfc1939_states() {
        use Phase::*;
        assert!(permits(Authorization, &Command::User("a".into())));
        assert!(!permits(Transaction, &Command::User("a".into())));
        assert!(!permits(Authorization, &Command::Stat));
        assert!(permits(Transaction, &Command::Retr(1)));
        assert!(!permits(Authorization, &Command::Noop));
        assert!(permits(Authorization, &Command::Quit));
        assert!(permits(Transaction, &Command::Quit));
        assert!(permits(Transaction, &Command::Capa));
        assert!(!permits(Transaction, &Command::Stls));
        assert!(!permits(Transaction, &Command::Utf8));
        assert!(!permits(
            Transaction,
            &Command::Auth {
                mechanism: None,
                initial: None
            }
        ));
    }
}
