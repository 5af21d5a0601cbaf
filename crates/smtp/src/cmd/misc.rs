//! RSET, NOOP, QUIT, VRFY, EXPN, HELP (RFC 5321 §4.1.1.5–§4.1.1.10) and STARTTLS
//! (RFC 3207 §4).

use crate::session::{Flow, Session};
use buudien_smtp_proto::reply::{write, write_lines};
use buudien_smtp_proto::{Status, code};
use buudien_store::QueueStore;

/// RFC 5321 §4.1.1.5 — `RSET`: aborts the transaction (a BDAT sequence included);
/// EHLO and AUTH stay.
pub(crate) fn rset<S>(session: &mut Session<'_, S>, out: &mut Vec<u8>) -> Flow {
    session.txn = None;
    write(out, code::OK, Some(Status::OK), "Ok");
    Flow::Junk
}

/// RFC 5321 §4.1.1.9 — `NOOP`.
pub(crate) fn noop(out: &mut Vec<u8>) -> Flow {
    write(out, code::OK, Some(Status::OK), "Ok");
    Flow::Junk
}

/// RFC 5321 §4.1.1.10 — `QUIT`: `221`, then the server closes.
pub(crate) fn quit<S>(session: &Session<'_, S>, out: &mut Vec<u8>) -> Flow {
    let host = &session.shared.config.hostname;
    write(out, code::CLOSING, Some(Status::OK), &format!("{host} Bye"));
    Flow::Quit
}

/// RFC 5321 §4.1.1.6, §3.5.3 — `VRFY`: `252`, so that addresses cannot be harvested
/// ("Cannot VRFY user, but will accept message and attempt delivery").
pub(crate) fn vrfy(out: &mut Vec<u8>) -> Flow {
    write(
        out,
        code::CANNOT_VERIFY,
        Some(Status::PROTOCOL_OK),
        "Cannot VRFY user, but will accept message and attempt delivery",
    );
    Flow::Junk
}

/// RFC 5321 §4.1.1.7, §3.5.2 — `EXPN`: not offered (alias lists stay private).
pub(crate) fn expn(out: &mut Vec<u8>) -> Flow {
    write(
        out,
        code::NOT_IMPLEMENTED,
        Some(Status::INVALID_COMMAND),
        "EXPN not available",
    );
    Flow::Junk
}

/// RFC 5321 §4.1.1.8 — `HELP`.
pub(crate) fn help(out: &mut Vec<u8>) -> Flow {
    write_lines(
        out,
        code::HELP,
        Some(Status::OK),
        &[
            "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
            "See RFC 5321",
        ],
    );
    Flow::Junk
}

/// RFC 3207 §4 — `STARTTLS`: `220 2.0.0`, then the caller runs the handshake and
/// drops whatever the client sent after the command (§4.2; CVE-2011-0411).
///
/// Refused over TLS already (`503`) and where no certificate is configured (`502`:
/// not advertised).
pub(crate) fn starttls<S: QueueStore>(session: &mut Session<'_, S>, out: &mut Vec<u8>) -> Flow {
    if session.secure {
        write(
            out,
            code::BAD_SEQUENCE,
            Some(Status::INVALID_COMMAND),
            "TLS already active",
        );
        return Flow::Bad;
    }
    if !session.starttls_offered() {
        write(
            out,
            code::NOT_IMPLEMENTED,
            Some(Status::INVALID_COMMAND),
            "STARTTLS not available",
        );
        return Flow::Bad;
    }
    write(out, code::READY, Some(Status::OK), "Ready to start TLS");
    Flow::StartTls
}
