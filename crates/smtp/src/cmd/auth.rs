//! AUTH (RFC 4954 §4) with SASL PLAIN (RFC 4616) and LOGIN, on the submission
//! services only, with the failed-login throttle shared with the other protocols.

use crate::conn::{Conn, ConnError, Input};
use crate::session::{Flow, Session, User};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use buudien_auth::{Mechanism, SaslError, SaslServer, SaslStep, Verdict};
use buudien_smtp_proto::reply::write;
use buudien_smtp_proto::{Status, code};
use buudien_store::{AuthRecord, QueueStore};
use buudien_types::{Address, Secret};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// Base64 for SASL (RFC 4648 §4): padding optional on input, written on output.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The result of checking credentials.
enum Checked {
    /// Right: this account.
    Valid(AuthRecord),
    /// Wrong password, unknown user, unusable name, refused authzid.
    Invalid,
    /// The store or the checker failed: nothing is known.
    Unavailable(String),
}

/// RFC 4954 §4 — `AUTH mechanism [initial-response]`.
///
/// - Not a submission service: `502 5.5.1` (AUTH is never offered on port 25).
/// - Already authenticated: `503 5.5.1` (§4).
/// - Neither TLS nor loopback nor configured: `538 5.7.11` (§6).
/// - Unknown mechanism: `504 5.5.4` (§4).
/// - Challenges are `334 base64`; a client line is read with the SASL line limit
///   (`500 5.5.6` past it); `*` cancels with `501 5.0.0`; bad base64 is `501 5.5.2`.
/// - Throttled address: `454 4.7.0` without a check; wrong credentials: the
///   throttle's delay, then `535 5.7.8`; the session closes after
///   `max_auth_failures`. Success: `235 2.7.0`.
pub(crate) async fn auth<S, IO>(
    session: &mut Session<'_, S>,
    conn: &mut Conn<'_, IO>,
    mechanism: &str,
    initial: Option<String>,
) -> Result<Flow, ConnError>
where
    S: QueueStore,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let out = &mut conn.out;
    if !session.mode.is_submission() {
        write(
            out,
            code::NOT_IMPLEMENTED,
            Some(Status::INVALID_COMMAND),
            "AUTH not available on this service",
        );
        return Ok(Flow::Bad);
    }
    if session.user.is_some() {
        write(
            out,
            code::BAD_SEQUENCE,
            Some(Status::INVALID_COMMAND),
            "already authenticated",
        );
        return Ok(Flow::Bad);
    }
    if !session.auth_allowed() {
        write(
            out,
            code::ENCRYPTION_REQUIRED,
            Some(Status::ENCRYPTION_REQUIRED),
            "encryption required for requested authentication mechanism",
        );
        return Ok(Flow::Bad);
    }
    let Some(mech) = Mechanism::parse(mechanism) else {
        write(
            out,
            code::PARAM_NOT_IMPLEMENTED,
            Some(Status::INVALID_ARGUMENTS),
            "unrecognized authentication type",
        );
        return Ok(Flow::Bad);
    };
    let initial = match initial.as_deref() {
        None => None,
        Some("=") => Some(Vec::new()),
        Some(text) => match B64.decode(text) {
            Ok(bytes) => Some(bytes),
            Err(_) => {
                write(
                    out,
                    code::PARAM_SYNTAX_ERROR,
                    Some(Status::SYNTAX),
                    "cannot decode the initial response",
                );
                return Ok(Flow::Bad);
            }
        },
    };
    let max_line = session.shared.config.limits.max_sasl_line;
    let (mut exchange, mut step) = SaslServer::start(mech, initial);
    let credentials = loop {
        match step {
            SaslStep::Challenge(challenge) => {
                write(
                    &mut conn.out,
                    code::AUTH_CHALLENGE,
                    None,
                    &B64.encode(challenge),
                );
                step = match conn.read_line(max_line).await? {
                    Input::Line(line) => exchange.step(&line),
                    Input::TooLong => SaslStep::Failed(SaslError::TooLong),
                };
            }
            SaslStep::Done(credentials) => break credentials,
            SaslStep::Failed(e) => {
                let (reply, status, text) = match e {
                    SaslError::Cancelled => (
                        code::PARAM_SYNTAX_ERROR,
                        Status::PERM_UNDEFINED,
                        "authentication cancelled",
                    ),
                    SaslError::TooLong => (
                        code::SYNTAX_ERROR,
                        Status::AUTH_LINE_TOO_LONG,
                        "authentication exchange line is too long",
                    ),
                    SaslError::Malformed(_) => (
                        code::PARAM_SYNTAX_ERROR,
                        Status::SYNTAX,
                        "cannot decode the response",
                    ),
                };
                write(&mut conn.out, reply, Some(status), text);
                return Ok(Flow::Bad);
            }
        }
    };
    let name = credentials.authcid.clone();
    let authzid_ok = credentials
        .authzid
        .as_deref()
        .is_none_or(|authzid| same_login(authzid, &credentials.authcid));
    Ok(login(
        session,
        &mut conn.out,
        &name,
        credentials.password,
        authzid_ok,
        mech,
    )
    .await)
}

/// Whether two login names name the same account (addresses compare lower-cased).
fn same_login(a: &str, b: &str) -> bool {
    match (Address::parse(a), Address::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The throttle, the password check, the reply.
async fn login<S: QueueStore>(
    session: &mut Session<'_, S>,
    out: &mut Vec<u8>,
    name: &str,
    password: Secret<String>,
    authzid_ok: bool,
    mech: Mechanism,
) -> Flow {
    let shared = session.shared;
    let ip = session.peer.ip();
    if shared.throttle.check_login(ip, name, Instant::now()) == Verdict::Refuse {
        tracing::info!(user = ?name, method = mech.name(), "login refused: too many recent failures");
        write(
            out,
            code::TEMP_AUTH_FAILURE,
            Some(Status::SECURITY_TEMP),
            "too many failed logins, try again later",
        );
        return count_failure(session, out);
    }
    let checked = if authzid_ok {
        check(&shared.store, name, password).await
    } else {
        Checked::Invalid
    };
    match checked {
        Checked::Valid(record) => {
            shared
                .throttle
                .record_login_success(ip, record.address.as_str(), Instant::now());
            tracing::info!(user = %record.address, method = mech.name(), "login");
            session.user = Some(User {
                account: record.account_id,
                address: record.address,
            });
            write(
                out,
                code::AUTH_OK,
                Some(Status::AUTH_OK),
                "authentication successful",
            );
            Flow::Next
        }
        Checked::Invalid => {
            tracing::info!(user = ?name, method = mech.name(), "login failed");
            let delay = shared
                .throttle
                .record_login_failure(ip, name, Instant::now());
            tokio::time::sleep(delay).await;
            write(
                out,
                code::AUTH_INVALID,
                Some(Status::AUTH_INVALID),
                "authentication credentials invalid",
            );
            count_failure(session, out)
        }
        Checked::Unavailable(why) => {
            tracing::warn!(user = ?name, error = %why, "login could not be checked");
            write(
                out,
                code::TEMP_AUTH_FAILURE,
                Some(Status::SECURITY_TEMP),
                "temporary authentication failure",
            );
            Flow::Next
        }
    }
}

/// Counts a failed login; closes the session at the limit with `421 4.7.0`.
fn count_failure<S>(session: &mut Session<'_, S>, out: &mut Vec<u8>) -> Flow {
    session.auth_failures = session.auth_failures.saturating_add(1);
    if session.auth_failures >= session.shared.config.limits.max_auth_failures.max(1) {
        tracing::info!("too many failed logins, closing");
        crate::session::closing(
            session,
            out,
            Status::SECURITY_TEMP,
            "too many failed logins",
        );
        Flow::Close
    } else {
        Flow::Next
    }
}

/// Checks a login name and password against the store. Argon2 runs on the blocking
/// pool; an unknown user costs one dummy verification so timing does not reveal
/// which logins exist.
async fn check<S: QueueStore>(store: &S, name: &str, password: Secret<String>) -> Checked {
    let record = match Address::parse(name) {
        Ok(address) => match store.auth_record(&address).await {
            Ok(record) => record,
            Err(e) => return Checked::Unavailable(e.to_string()),
        },
        Err(_) => None,
    };
    let phc = record.as_ref().map(|r| r.password_hash.clone());
    let verified = buudien_auth::check_password(phc, password.expose().as_bytes().to_vec()).await;
    match (verified, record) {
        (true, Some(record)) => Checked::Valid(record),
        _ => Checked::Invalid,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn authzid_comparison() {
        assert!(same_login("Ann@Example.org", "ann@example.org"));
        assert!(!same_login("bob@example.org", "ann@example.org"));
    }

    #[test]
    fn base64_accepts_missing_padding() {
        assert_eq!(B64.decode("AGFubgBz").unwrap(), b"\0ann\0s");
        assert_eq!(B64.decode("YQ").unwrap(), b"a");
        assert_eq!(B64.encode(b"Username:"), "VXNlcm5hbWU6");
    }
}
