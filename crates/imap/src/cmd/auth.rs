//! LOGIN and AUTHENTICATE (RFC 9051 §6.2.2, §6.2.3) with the mechanisms PLAIN
//! (RFC 4616), LOGIN and SCRAM-SHA-256 (RFC 5802, RFC 7677), and initial responses
//! (SASL-IR, RFC 4959).
//!
//! A multi-step exchange is a [`SaslExchange`]: the handler writes a `+ <base64>`
//! continuation and returns the exchange; the drive loop reads the client's next line
//! (bounded by `MAX_SASL_LINE`) and hands it to [`Session::sasl_line`]. Every password
//! or proof check ends in the shared throttle path: `NO [UNAVAILABLE]` while the
//! client address is refused, a delayed `NO [AUTHENTICATIONFAILED]` on failure.

use crate::reply::*;
use crate::session::Session;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use buudien_auth::{
    Mechanism, SaslError, SaslServer, SaslStep, ScramCredentials, ScramError, ScramOutcome,
    ScramServer, Verdict, decode_response,
};
use buudien_imap_proto::{Tag, response};
use buudien_store::{AuthRecord, MailboxStore};
use buudien_types::{Address, Secret};
use std::time::Instant;

/// An AUTHENTICATE exchange waiting for the client's next line.
pub(crate) struct SaslExchange {
    /// The AUTHENTICATE command's tag.
    tag: Tag,
    /// The mechanism and where it is.
    kind: Kind,
}

impl SaslExchange {
    /// The AUTHENTICATE command's tag.
    pub(crate) fn tag(&self) -> &Tag {
        &self.tag
    }
}

/// The mechanism of an exchange and where it is.
enum Kind {
    /// PLAIN or LOGIN, run by the auth crate's [`SaslServer`].
    Simple(SaslServer),
    /// SCRAM-SHA-256 (boxed: its state is large).
    Scram(Box<Scram>),
}

/// Where a SCRAM-SHA-256 exchange is.
enum Scram {
    /// Waiting for the client-first-message.
    First(ScramServer),
    /// Sent the server-first-message; the login name, and the user's record when the
    /// user is known.
    Final(ScramServer, String, Option<AuthRecord>),
    /// Sent the server-final-message (`v=`); waiting for the client's empty response
    /// before the tagged OK (RFC 9051 §6.2.2).
    Done(AuthRecord),
}

/// `+ <base64 of data>` (RFC 9051 §6.2.2; an empty challenge is `+ `).
fn challenge(out: &mut Vec<u8>, data: &[u8]) {
    response::continuation_base64(out, &B64.encode(data));
}

/// The tagged BAD for an exchange that ended on a cancel or a malformed response.
fn sasl_bad(out: &mut Vec<u8>, tag: &Tag, e: &SaslError) {
    match e {
        SaslError::Cancelled => bad(out, tag, "authentication cancelled"),
        SaslError::TooLong => bad(out, tag, "response too long"),
        SaslError::Malformed(why) => bad(out, tag, why),
    }
}

/// `tag NO [AUTHORIZATIONFAILED]`: the client asked to act as someone else.
fn authz_failed(out: &mut Vec<u8>, tag: &Tag) {
    out.extend_from_slice(
        format!("{tag} NO [AUTHORIZATIONFAILED] proxy login not allowed\r\n").as_bytes(),
    );
}

/// `tag NO [UNAVAILABLE] …`.
fn unavailable(out: &mut Vec<u8>, tag: &Tag, text: &str) {
    out.extend_from_slice(format!("{tag} NO [UNAVAILABLE] {text}\r\n").as_bytes());
}

impl<S: MailboxStore> Session<'_, S> {
    /// AUTHENTICATE (RFC 9051 §6.2.2), with the initial response of SASL-IR (RFC 4959
    /// §3; `=` is an empty one) still in base64. Returns the exchange when the client
    /// must send another line.
    pub(crate) async fn authenticate(
        &mut self,
        tag: Tag,
        mechanism: &str,
        initial: Option<Secret<String>>,
        out: &mut Vec<u8>,
    ) -> Option<Box<SaslExchange>> {
        if self.account.is_some() {
            bad(out, &tag, "already authenticated");
            return None;
        }
        if !self.auth_allowed() {
            out.extend_from_slice(
                format!("{tag} NO [PRIVACYREQUIRED] use STARTTLS first\r\n").as_bytes(),
            );
            return None;
        }
        let scram = mechanism.eq_ignore_ascii_case(ScramServer::NAME);
        let mech = Mechanism::parse(mechanism);
        if !scram && mech.is_none() {
            no(out, &tag, "unsupported mechanism");
            return None;
        }
        let initial = match initial {
            None => None,
            Some(ir) if ir.expose() == "=" => Some(Vec::new()),
            Some(ir) => match decode_response(ir.expose().as_bytes()) {
                Ok(data) => Some(data),
                Err(e) => {
                    sasl_bad(out, &tag, &e);
                    return None;
                }
            },
        };
        match mech {
            Some(mech) => {
                let (server, step) = SaslServer::start(mech, initial);
                self.simple_step(tag, server, step, out).await
            }
            None => {
                let phase = Scram::First(ScramServer::new());
                match initial {
                    Some(data) => self.scram_step(tag, phase, &data, out).await,
                    None => {
                        challenge(out, b"");
                        Some(Box::new(SaslExchange {
                            tag,
                            kind: Kind::Scram(Box::new(phase)),
                        }))
                    }
                }
            }
        }
    }

    /// One client line of an exchange (RFC 9051 §6.2.2: base64, or `*` to cancel,
    /// which ends it with BAD). Returns the exchange when it goes on.
    pub(crate) async fn sasl_line(
        &mut self,
        exchange: Box<SaslExchange>,
        line: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<Box<SaslExchange>> {
        let SaslExchange { tag, kind } = *exchange;
        match kind {
            Kind::Simple(mut server) => {
                let step = server.step(line);
                self.simple_step(tag, server, step, out).await
            }
            Kind::Scram(phase) => match decode_response(line) {
                Ok(data) => self.scram_step(tag, *phase, &data, out).await,
                Err(e) => {
                    sasl_bad(out, &tag, &e);
                    None
                }
            },
        }
    }

    /// Acts on a PLAIN or LOGIN step: a challenge goes out, credentials go to
    /// [`Session::login`].
    async fn simple_step(
        &mut self,
        tag: Tag,
        server: SaslServer,
        step: SaslStep,
        out: &mut Vec<u8>,
    ) -> Option<Box<SaslExchange>> {
        match step {
            SaslStep::Challenge(data) => {
                challenge(out, &data);
                return Some(Box::new(SaslExchange {
                    tag,
                    kind: Kind::Simple(server),
                }));
            }
            SaslStep::Done(creds) => {
                // RFC 4616 §2: an authzid other than the login itself asks for a
                // proxy login, which buudien does not offer.
                if creds.authzid.as_ref().is_some_and(|a| *a != creds.authcid) {
                    authz_failed(out, &tag);
                } else {
                    let password = creds.password.expose().as_bytes();
                    self.login(&tag, &creds.authcid, password, out).await;
                }
            }
            SaslStep::Failed(e) => sasl_bad(out, &tag, &e),
        }
        None
    }

    /// One decoded client message of a SCRAM-SHA-256 exchange (RFC 5802 §5).
    async fn scram_step(
        &mut self,
        tag: Tag,
        phase: Scram,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<Box<SaslExchange>> {
        let next = match phase {
            Scram::First(mut server) => {
                let user = match server.client_first(data) {
                    Ok(user) => user,
                    Err(e) => {
                        scram_error(out, &tag, &e);
                        return None;
                    }
                };
                if self
                    .shared
                    .throttle
                    .check_login(self.peer.ip(), &user, Instant::now())
                    == Verdict::Refuse
                {
                    unavailable(out, &tag, "too many failed logins, try later");
                    return None;
                }
                let Ok(record) = self.auth_record(&user).await else {
                    unavailable(out, &tag, "try again later");
                    return None;
                };
                let keys = record.as_ref().and_then(|r| {
                    let keys = ScramCredentials::decode(&r.scram_sha256);
                    if keys.is_none() {
                        tracing::warn!(account = r.account_id, "stored SCRAM keys unreadable");
                    }
                    keys
                });
                let record = record.filter(|_| keys.is_some());
                match server.server_first(keys.as_ref()) {
                    Ok(msg) => challenge(out, &msg),
                    Err(e) => {
                        scram_error(out, &tag, &e);
                        return None;
                    }
                }
                Scram::Final(server, user, record)
            }
            Scram::Final(mut server, user, record) => match (server.client_final(data), record) {
                (Ok(ScramOutcome::Verified(v)), Some(record)) => {
                    challenge(out, &v);
                    Scram::Done(record)
                }
                (Ok(_), _) => {
                    self.login_failed(&tag, &user, out).await;
                    return None;
                }
                (Err(e), _) => {
                    scram_error(out, &tag, &e);
                    return None;
                }
            },
            Scram::Done(record) => {
                if data.is_empty() {
                    self.logged_in(&tag, &record, out);
                } else {
                    bad(out, &tag, "expected an empty response");
                }
                return None;
            }
        };
        Some(Box::new(SaslExchange {
            tag,
            kind: Kind::Scram(Box::new(next)),
        }))
    }

    /// The shared login path: throttle, password check, state change.
    pub(crate) async fn login(
        &mut self,
        tag: &Tag,
        user: &str,
        password: &[u8],
        out: &mut Vec<u8>,
    ) {
        if self.account.is_some() {
            bad(out, tag, "already authenticated");
            return;
        }
        if !self.auth_allowed() {
            out.extend_from_slice(
                format!("{tag} NO [PRIVACYREQUIRED] use STARTTLS first\r\n").as_bytes(),
            );
            return;
        }
        if self
            .shared
            .throttle
            .check_login(self.peer.ip(), user, Instant::now())
            == Verdict::Refuse
        {
            unavailable(out, tag, "too many failed logins, try later");
            return;
        }
        let Ok(record) = self.auth_record(user).await else {
            unavailable(out, tag, "try again later");
            return;
        };
        let phc = record.as_ref().map(|r| r.password_hash.clone());
        let good = buudien_auth::check_password(phc, password.to_vec()).await;
        let record = record.filter(|_| good);
        match record {
            Some(r) => self.logged_in(tag, &r, out),
            None => self.login_failed(tag, user, out).await,
        }
    }

    /// The login's record; `Ok(None)` for an unknown or unparsable user name, `Err`
    /// (already logged) when the store failed.
    async fn auth_record(&self, user: &str) -> Result<Option<AuthRecord>, ()> {
        let Ok(addr) = Address::parse(user) else {
            return Ok(None);
        };
        self.shared.store.auth_record(&addr).await.map_err(|e| {
            tracing::warn!(error = %e, "auth record lookup failed");
        })
    }

    /// Credentials checked: the session is authenticated (RFC 9051 §6.2.2, §6.2.3:
    /// the OK carries the new CAPABILITY list).
    fn logged_in(&mut self, tag: &Tag, record: &AuthRecord, out: &mut Vec<u8>) {
        self.shared.throttle.record_login_success(
            self.peer.ip(),
            record.address.as_str(),
            Instant::now(),
        );
        self.account = Some(record.account_id);
        self.address = Some(record.address.clone());
        tracing::info!(account = record.account_id, "logged in");
        let caps = self.capabilities();
        ok(out, tag, &format!("[CAPABILITY {caps}] logged in"));
    }

    /// Credentials refused: count the failure (for the address and the login name),
    /// wait out its delay, answer NO.
    async fn login_failed(&self, tag: &Tag, user: &str, out: &mut Vec<u8>) {
        let delay = self
            .shared
            .throttle
            .record_login_failure(self.peer.ip(), user, Instant::now());
        tokio::time::sleep(delay).await;
        out.extend_from_slice(
            format!("{tag} NO [AUTHENTICATIONFAILED] invalid credentials\r\n").as_bytes(),
        );
    }
}

/// A SCRAM exchange that stopped on its own grammar or rules.
fn scram_error(out: &mut Vec<u8>, tag: &Tag, e: &ScramError) {
    match e {
        ScramError::Authzid => authz_failed(out, tag),
        ScramError::ChannelBinding => no(out, tag, "channel binding is not supported"),
        ScramError::Malformed(why) => bad(out, tag, why),
        ScramError::TooLong => bad(out, tag, "response too long"),
        ScramError::OutOfOrder => bad(out, tag, "SCRAM message out of order"),
    }
}
