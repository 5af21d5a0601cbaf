//! The AUTHORIZATION commands that log in: USER/PASS and APOP (RFC 1939 §7), AUTH
//! (RFC 5034 §4), and the login path they share: the failed-login throttle, the
//! password check, LOGIN-DELAY, the maildrop lock (RFC 1939 §8) and the snapshot.

use crate::conn::{Conn, ConnError, Input};
use crate::session::{Flow, Session, State, Txn};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use buudien_auth::{Mechanism, SaslError, SaslServer, SaslStep, Verdict};
use buudien_pop3_proto::{MAX_SASL_LINE, RespCode, response};
use buudien_store::{AuthRecord, MailStore, StoreError};
use buudien_types::{Address, Secret};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// Base64 for SASL (RFC 4648 §4): padding optional on input, written on output.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The reply to a plaintext login on a connection where it is not allowed
/// (RFC 2595 §2.3, RFC 3206 §5).
const PLAINTEXT_REFUSED: &str = "plaintext authentication disallowed, use STLS";

/// One login attempt, as the commands deliver it.
enum Attempt {
    /// USER/PASS, AUTH PLAIN or AUTH LOGIN.
    Password {
        /// The login name.
        name: String,
        /// The password.
        password: Secret<String>,
    },
    /// APOP name digest (RFC 1939 §7).
    Apop {
        /// The login name.
        name: String,
        /// The client's hex MD5 digest.
        digest: String,
    },
    /// A SASL authorization identity other than the login (RFC 4616 §2); refused.
    WrongAuthzid {
        /// The login name.
        name: String,
    },
}

impl Attempt {
    /// The login name, for the log.
    fn name(&self) -> &str {
        match self {
            Attempt::Password { name, .. }
            | Attempt::Apop { name, .. }
            | Attempt::WrongAuthzid { name } => name,
        }
    }
}

/// The result of checking an attempt's credentials.
enum Checked {
    /// Right: this account.
    Valid(AuthRecord),
    /// Wrong password, unknown user, unusable name.
    Invalid,
    /// The store or the checker failed: nothing is known.
    Unavailable(String),
}

/// RFC 1939 §7 — `USER name`: remembers the name for PASS. Always `+OK`, so the
/// reply does not tell which names exist.
pub(crate) fn user<S: MailStore>(
    session: &mut Session<'_, S>,
    name: String,
    out: &mut Vec<u8>,
) -> Flow {
    session.pending_user = None;
    if !session.plaintext_allowed() {
        response::err(out, Some(RespCode::Auth), PLAINTEXT_REFUSED);
        return Flow::Next;
    }
    if !session.utf8 && !name.is_ascii() {
        // RFC 6856 §2.2: UTF-8 names only in UTF-8 mode (buudien does not advertise
        // `UTF8 USER`).
        response::err(
            out,
            None,
            "non-ASCII user name needs the UTF8 command first",
        );
        return Flow::Next;
    }
    session.pending_user = Some(name);
    response::ok(out, "send PASS");
    Flow::Next
}

/// RFC 1939 §7 — `PASS string`, after USER.
pub(crate) async fn pass<S, IO>(
    session: &mut Session<'_, S>,
    conn: &mut Conn<'_, IO>,
    password: Secret<String>,
) -> Result<Flow, ConnError>
where
    S: MailStore,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    if !session.plaintext_allowed() {
        session.pending_user = None;
        response::err(&mut conn.out, Some(RespCode::Auth), PLAINTEXT_REFUSED);
        return Ok(Flow::Next);
    }
    let Some(name) = session.pending_user.take() else {
        return Ok(Flow::Bad("send USER first".to_owned()));
    };
    if !session.utf8 && !password.expose().is_ascii() {
        response::err(
            &mut conn.out,
            None,
            "non-ASCII password needs the UTF8 command first",
        );
        return Ok(Flow::Next);
    }
    Ok(login(
        session,
        &mut conn.out,
        Attempt::Password { name, password },
        "USER",
    )
    .await)
}

/// RFC 1939 §7 — `APOP name digest`: MD5 of the greeting's timestamp and the
/// account's separate APOP secret. Only when APOP is enabled; it sends no password, so
/// it is allowed where plaintext logins are not.
pub(crate) async fn apop<S, IO>(
    session: &mut Session<'_, S>,
    conn: &mut Conn<'_, IO>,
    name: &str,
    digest: &str,
) -> Result<Flow, ConnError>
where
    S: MailStore,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    session.pending_user = None;
    if session.timestamp.is_none() {
        return Ok(Flow::Bad("APOP not enabled".to_owned()));
    }
    let attempt = Attempt::Apop {
        name: name.to_owned(),
        digest: digest.to_owned(),
    };
    Ok(login(session, &mut conn.out, attempt, "APOP").await)
}

/// RFC 5034 §4 — `AUTH [mechanism [initial-response]]`.
///
/// A bare `AUTH` lists the mechanisms (`+OK`, one per line, `.`), as Outlook expects.
/// Challenges go out as `+ base64`; each client line is read with the SASL line limit
/// ([`MAX_SASL_LINE`]); `*` cancels with `-ERR`; `=` is an empty initial response.
/// A PLAIN authorization identity must be empty or the login itself.
pub(crate) async fn auth<S, IO>(
    session: &mut Session<'_, S>,
    conn: &mut Conn<'_, IO>,
    mechanism: Option<String>,
    initial: Option<String>,
) -> Result<Flow, ConnError>
where
    S: MailStore,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    session.pending_user = None;
    let Some(mechanism) = mechanism else {
        response::ok(&mut conn.out, "supported mechanisms follow");
        if session.plaintext_allowed() {
            for m in Mechanism::ALL {
                response::line(&mut conn.out, m.name());
            }
        }
        response::end(&mut conn.out);
        return Ok(Flow::Next);
    };
    if !session.plaintext_allowed() {
        response::err(&mut conn.out, Some(RespCode::Auth), PLAINTEXT_REFUSED);
        return Ok(Flow::Next);
    }
    let Some(mech) = Mechanism::parse(&mechanism) else {
        response::err(&mut conn.out, None, "unsupported SASL mechanism");
        return Ok(Flow::Next);
    };
    let initial = match initial.as_deref() {
        None => None,
        Some("=") => Some(Vec::new()),
        Some(text) => match B64.decode(text) {
            Ok(bytes) => Some(bytes),
            Err(_) => {
                response::err(
                    &mut conn.out,
                    None,
                    "invalid base64 in the initial response",
                );
                return Ok(Flow::Next);
            }
        },
    };
    let (mut exchange, mut step) = SaslServer::start(mech, initial);
    let credentials = loop {
        match step {
            SaslStep::Challenge(challenge) => {
                response::continuation(&mut conn.out, &B64.encode(challenge));
                step = match conn.read_line(MAX_SASL_LINE).await? {
                    Input::Line(line) => exchange.step(&line),
                    Input::TooLong => SaslStep::Failed(SaslError::TooLong),
                };
            }
            SaslStep::Done(credentials) => break credentials,
            SaslStep::Failed(SaslError::Cancelled) => {
                response::err(&mut conn.out, None, "authentication cancelled");
                return Ok(Flow::Next);
            }
            SaslStep::Failed(e) => {
                response::err(&mut conn.out, None, &e.to_string());
                return Ok(Flow::Next);
            }
        }
    };
    let authzid_ok = match credentials.authzid.as_deref() {
        None => true,
        Some(authzid) => same_login(authzid, &credentials.authcid),
    };
    let attempt = if authzid_ok {
        Attempt::Password {
            name: credentials.authcid,
            password: credentials.password,
        }
    } else {
        Attempt::WrongAuthzid {
            name: credentials.authcid,
        }
    };
    Ok(login(session, &mut conn.out, attempt, mech.name()).await)
}

/// Whether two login names name the same account (addresses compare lower-cased).
fn same_login(a: &str, b: &str) -> bool {
    match (Address::parse(a), Address::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The login path every command shares.
///
/// 1. The throttle: an address with too many recent failures is refused with
///    `-ERR [SYS/TEMP]` (RFC 3206 §4) before anything is checked.
/// 2. The credentials: Argon2 runs on the blocking pool; an unknown user costs one
///    dummy verification so timing does not reveal which logins exist.
/// 3. A failure waits the throttle's delay, then `-ERR [AUTH]` (RFC 3206 §5); after
///    `max_auth_failures` in the session the connection is closed.
/// 4. A success: LOGIN-DELAY (RFC 2449 §8.1.1), the maildrop lock (`[IN-USE]`, RFC
///    2449 §8.1.2; the session stays in AUTHORIZATION), the snapshot, TRANSACTION.
async fn login<S: MailStore>(
    session: &mut Session<'_, S>,
    out: &mut Vec<u8>,
    attempt: Attempt,
    method: &'static str,
) -> Flow {
    let shared = session.shared;
    let ip = session.peer.ip();
    let user = attempt.name().to_owned();
    if shared.throttle.check_login(ip, &user, Instant::now()) == Verdict::Refuse {
        tracing::info!(user = ?user, method, "login refused: too many recent failures");
        response::err(
            out,
            Some(RespCode::SysTemp),
            "too many failed logins, try later",
        );
        return count_failure(session);
    }
    let record = match check(session, attempt).await {
        Checked::Valid(record) => record,
        Checked::Invalid => {
            tracing::info!(user = ?user, method, "login failed");
            let delay = shared
                .throttle
                .record_login_failure(ip, &user, Instant::now());
            tokio::time::sleep(delay).await;
            response::err(out, Some(RespCode::Auth), "invalid credentials");
            return count_failure(session);
        }
        Checked::Unavailable(why) => {
            tracing::warn!(user = ?user, method, error = %why, "login could not be checked");
            response::err(
                out,
                Some(RespCode::SysTemp),
                "authentication temporarily unavailable",
            );
            return Flow::Next;
        }
    };
    shared
        .throttle
        .record_login_success(ip, record.address.as_str(), Instant::now());
    let account = record.account_id;
    tracing::info!(user = %record.address, method, "login");
    if shared.login_too_soon(account, Instant::now()) {
        response::err(
            out,
            Some(RespCode::LoginDelay),
            "minimum time between logins not reached",
        );
        return Flow::Next;
    }
    let lock = if shared.config.lock_session {
        match shared.store.lock_maildrop(account).await {
            Ok(Some(guard)) => Some(guard),
            Ok(None) => {
                tracing::info!(user = %record.address, "maildrop in use");
                response::err(out, Some(RespCode::InUse), "maildrop already locked");
                return Flow::Next;
            }
            Err(e) => {
                store_failed(out, "cannot lock the maildrop", &e);
                return Flow::Next;
            }
        }
    } else {
        None
    };
    let maildrop = match shared.store.open_maildrop(account).await {
        Ok(m) => m,
        Err(e) => {
            store_failed(out, "cannot open the maildrop", &e);
            return Flow::Next;
        }
    };
    shared.record_login(account, Instant::now());
    let txn = Txn::new(record.address, maildrop, lock);
    let (count, octets) = txn.totals(session.utf8);
    session.state = State::Transaction(Box::new(txn));
    response::ok(
        out,
        &format!("maildrop has {count} messages ({octets} octets)"),
    );
    Flow::Next
}

/// Counts a failed login; closes the session at the limit.
fn count_failure<S>(session: &mut Session<'_, S>) -> Flow {
    session.auth_failures = session.auth_failures.saturating_add(1);
    if session.auth_failures >= session.shared.config.limits.max_auth_failures.max(1) {
        tracing::info!("too many failed logins, closing");
        Flow::Close
    } else {
        Flow::Next
    }
}

/// `-ERR [SYS/TEMP]` or `[SYS/PERM]` (RFC 3206 §4) for a store failure, logged.
fn store_failed(out: &mut Vec<u8>, text: &str, e: &StoreError) {
    tracing::warn!(error = %e, "{text}");
    let code = if e.is_temporary() {
        RespCode::SysTemp
    } else {
        RespCode::SysPerm
    };
    response::err(out, Some(code), text);
}

/// Checks an attempt's credentials against the store.
async fn check<S: MailStore>(session: &Session<'_, S>, attempt: Attempt) -> Checked {
    let store = &session.shared.store;
    match attempt {
        Attempt::WrongAuthzid { .. } => Checked::Invalid,
        Attempt::Password { name, password } => {
            let record = match Address::parse(&name) {
                Ok(address) => match store.auth_record(&address).await {
                    Ok(record) => record,
                    Err(e) => return Checked::Unavailable(e.to_string()),
                },
                Err(_) => None,
            };
            let phc = record.as_ref().map(|r| r.password_hash.clone());
            let verified =
                buudien_auth::check_password(phc, password.expose().as_bytes().to_vec()).await;
            match (verified, record) {
                (true, Some(record)) => Checked::Valid(record),
                _ => Checked::Invalid,
            }
        }
        Attempt::Apop { name, digest } => {
            let Some(timestamp) = session.timestamp.as_deref() else {
                return Checked::Invalid;
            };
            let record = match Address::parse(&name) {
                Ok(address) => match store.auth_record(&address).await {
                    Ok(record) => record,
                    Err(e) => return Checked::Unavailable(e.to_string()),
                },
                Err(_) => None,
            };
            match record {
                Some(record)
                    if record.apop_secret.as_ref().is_some_and(|secret| {
                        buudien_auth::apop_matches(timestamp, secret.expose().as_bytes(), &digest)
                    }) =>
                {
                    Checked::Valid(record)
                }
                _ => Checked::Invalid,
            }
        }
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
        assert!(same_login("plain", "plain"));
        assert!(!same_login("plain", "other"));
    }

    #[test]
    fn base64_accepts_missing_padding() {
        assert_eq!(B64.decode("AGFubgBz").unwrap(), b"\0ann\0s");
        assert_eq!(B64.decode("YQ").unwrap(), b"a");
        assert_eq!(B64.decode("YQ==").unwrap(), b"a");
        assert!(B64.decode("Y Q").is_err());
        assert_eq!(B64.encode(b"Username:"), "VXNlcm5hbWU6");
    }
}
