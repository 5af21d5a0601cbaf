//! LOGIN and AUTHENTICATE (RFC 9051 §6.2.2, §6.2.3).

use crate::reply::*;
use crate::session::Session;
use base64::Engine as _;
use buudien_auth::Verdict;
use buudien_imap_proto::Tag;
use buudien_store::MailboxStore;
use buudien_types::Address;
use std::time::Instant;

impl<S: MailboxStore> Session<'_, S> {
    /// AUTHENTICATE PLAIN (RFC 4616): `authzid NUL authcid NUL passwd`, base64.
    pub(crate) async fn sasl_plain(&mut self, tag: &Tag, b64: &[u8], out: &mut Vec<u8>) {
        let trimmed = b64.strip_suffix(b"\r\n").unwrap_or(b64);
        if trimmed == b"*" {
            bad(out, tag, "authentication cancelled");
            return;
        }
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(trimmed) else {
            bad(out, tag, "invalid base64");
            return;
        };
        let mut parts = raw.split(|&b| b == 0);
        let (Some(authz), Some(user), Some(pass), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            bad(out, tag, "malformed PLAIN response");
            return;
        };
        let (Ok(user), Ok(authz)) = (std::str::from_utf8(user), std::str::from_utf8(authz)) else {
            bad(out, tag, "malformed PLAIN response");
            return;
        };
        if !authz.is_empty() && authz != user {
            out.extend_from_slice(
                format!("{tag} NO [AUTHORIZATIONFAILED] proxy login not allowed\r\n").as_bytes(),
            );
            return;
        }
        self.login(tag, user, pass, out).await;
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
        let ip = self.peer.ip();
        let throttle = &self.shared.throttle;
        if throttle.check(ip, Instant::now()) == Verdict::Refuse {
            out.extend_from_slice(
                format!("{tag} NO [UNAVAILABLE] too many failed logins, try later\r\n").as_bytes(),
            );
            return;
        }
        let record = match Address::parse(user) {
            Ok(addr) => match self.shared.store.auth_record(&addr).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "auth record lookup failed");
                    out.extend_from_slice(
                        format!("{tag} NO [UNAVAILABLE] try again later\r\n").as_bytes(),
                    );
                    return;
                }
            },
            Err(_) => None,
        };
        let pw = password.to_vec();
        let account = match record {
            Some(r) => {
                let hash = r.password_hash.clone();
                let good =
                    tokio::task::spawn_blocking(move || buudien_auth::verify_password(&hash, &pw))
                        .await
                        .unwrap_or(false);
                good.then_some(r.account_id)
            }
            None => {
                let _ = tokio::task::spawn_blocking(move || buudien_auth::dummy_verify(&pw)).await;
                None
            }
        };
        match account {
            Some(id) => {
                throttle.record_success(ip);
                self.account = Some(id);
                self.address = Address::parse(user).ok();
                tracing::info!(account = id, "logged in");
                let caps = self.capabilities();
                ok(out, tag, &format!("[CAPABILITY {caps}] logged in"));
            }
            None => {
                let delay = throttle.record_failure(ip, Instant::now());
                tokio::time::sleep(delay).await;
                out.extend_from_slice(
                    format!("{tag} NO [AUTHENTICATIONFAILED] invalid credentials\r\n").as_bytes(),
                );
            }
        }
    }
}
