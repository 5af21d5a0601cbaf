//! The greeting, CAPA, UTF8, STLS and QUIT (with the UPDATE state).

use crate::session::{Flow, Session, State};
use buudien_pop3_proto::{RespCode, response};
use buudien_store::MailStore;
use buudien_types::Uid;

/// The product name in the greeting and `IMPLEMENTATION`.
const PRODUCT: &str = "buudien";

/// RFC 1939 §4 — the greeting `+OK buudien ready`, with the APOP timestamp
/// `<pid.clock@hostname>` when APOP is on (RFC 1939 §7).
pub(crate) fn greeting<S>(session: &Session<'_, S>, out: &mut Vec<u8>) {
    match &session.timestamp {
        Some(ts) => response::ok(out, &format!("{PRODUCT} ready {ts}")),
        None => response::ok(out, &format!("{PRODUCT} ready")),
    }
}

/// RFC 2449 §5 — `CAPA`: the capabilities for the session's current state (§6).
///
/// STLS (RFC 2595 §4) only while it can be used; USER (§6.2) and `SASL PLAIN LOGIN`
/// (§6.3, RFC 5034 §3) only in AUTHORIZATION and where plaintext logins are allowed
/// (RFC 2595 §2.3); `LOGIN-DELAY` (§6.5) only when configured, and then enforced.
/// `UTF8` is RFC 6856 §2; `AUTH-RESP-CODE` is RFC 3206 §6.
pub(crate) fn capa<S: MailStore>(session: &Session<'_, S>, out: &mut Vec<u8>) -> Flow {
    response::ok(out, "capability list follows");
    for cap in [
        "TOP",
        "UIDL",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "EXPIRE NEVER",
        "UTF8",
    ] {
        response::line(out, cap);
    }
    response::line(out, &format!("IMPLEMENTATION {PRODUCT}"));
    if let Some(delay) = session.shared.config.login_delay {
        let secs = delay
            .as_secs()
            .saturating_add(u64::from(delay.subsec_nanos() > 0));
        response::line(out, &format!("LOGIN-DELAY {secs}"));
    }
    if matches!(session.state, State::Authorization) {
        if session.stls_offered() {
            response::line(out, "STLS");
        }
        if session.plaintext_allowed() {
            response::line(out, "USER");
            response::line(out, "SASL PLAIN LOGIN");
        }
    }
    response::end(out);
    Flow::Next
}

/// RFC 6856 §2.1 — `UTF8`: from now on messages are sent as stored (no surrogate)
/// and USER/PASS may carry UTF-8. Only in AUTHORIZATION (the gate checks).
pub(crate) fn utf8<S>(session: &mut Session<'_, S>, out: &mut Vec<u8>) -> Flow {
    session.utf8 = true;
    response::ok(out, "UTF8 enabled");
    Flow::Next
}

/// RFC 2595 §4 — `STLS`: `+OK`, then the caller runs the TLS handshake and drops
/// whatever the client sent after the command.
///
/// Refused when no certificate is configured, over TLS already, and after UTF8
/// (RFC 6856 §2.1 lets the server reject STLS then).
pub(crate) fn stls<S: MailStore>(session: &mut Session<'_, S>, out: &mut Vec<u8>) -> Flow {
    if session.secure {
        return Flow::Bad("already using TLS".to_owned());
    }
    if !session.stls_offered() {
        return Flow::Bad("STLS not available".to_owned());
    }
    if session.utf8 {
        return Flow::Bad("STLS not allowed after UTF8".to_owned());
    }
    session.pending_user = None;
    response::ok(out, "begin TLS");
    Flow::StartTls
}

/// RFC 1939 §4 (AUTHORIZATION) and §6 (TRANSACTION → UPDATE) — `QUIT`.
///
/// In TRANSACTION the messages marked by DELE are expunged in one store call
/// (messages another session expunged meanwhile are skipped by the store). If that
/// fails the reply is `-ERR [SYS/TEMP]` (RFC 3206 §4) and nothing of it is removed.
/// Either way the session ends.
pub(crate) async fn quit<S: MailStore>(session: &mut Session<'_, S>, out: &mut Vec<u8>) -> Flow {
    let State::Transaction(txn) = &session.state else {
        response::ok(out, &format!("{PRODUCT} signing off"));
        return Flow::Quit;
    };
    let uids: Vec<Uid> = txn
        .maildrop
        .entries
        .iter()
        .zip(&txn.deleted)
        .filter(|(_, deleted)| **deleted)
        .map(|(e, _)| e.uid)
        .collect();
    if uids.is_empty() {
        response::ok(out, &format!("{PRODUCT} signing off (0 messages deleted)"));
        return Flow::Quit;
    }
    match session
        .shared
        .store
        .expunge(txn.maildrop.mailbox, &uids)
        .await
    {
        Ok(expunged) => {
            tracing::info!(user = %txn.account, marked = uids.len(), expunged, "update");
            response::ok(
                out,
                &format!("{PRODUCT} signing off ({} messages deleted)", uids.len()),
            );
        }
        Err(e) => {
            tracing::warn!(user = %txn.account, error = %e, "update failed");
            response::err(
                out,
                Some(RespCode::SysTemp),
                "some deleted messages not removed",
            );
        }
    }
    Flow::Quit
}
