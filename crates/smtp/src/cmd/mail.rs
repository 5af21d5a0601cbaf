//! MAIL (RFC 5321 §4.1.1.2) with SIZE (RFC 1870 §6), SMTPUTF8 (RFC 6531 §3.4), and
//! the submission rules: AUTH before MAIL (RFC 4954 §6, RFC 6409 §4.3), and the
//! envelope sender the user may use (RFC 6409 §6.1 submission rights, and issue 3),
//! which the From check of `deliver` shares.

use crate::SmtpConfig;
use crate::session::{Flow, Session, Txn, User};
use buudien_smtp_proto::reply::write;
use buudien_smtp_proto::{MailParams, ReversePath, Status, code};
use buudien_store::{QueueStore, StoreError};
use buudien_types::Address;

/// RFC 5321 §4.1.1.2 — `MAIL FROM:<reverse-path> [params]`: starts a transaction.
///
/// In order: submission needs TLS (RFC 3207 §4: `530 5.7.0 Must issue a STARTTLS
/// command first`) and AUTH (`530 5.7.0`); a UTF-8 sender needs `SMTPUTF8`
/// (`553 5.6.7`); `SIZE` over the limit is `552 5.3.4`; on submission the sender
/// must be the user's (`550 5.7.1`).
pub(crate) async fn mail<S: QueueStore>(
    session: &mut Session<'_, S>,
    out: &mut Vec<u8>,
    from: ReversePath,
    params: MailParams,
) -> Flow {
    let config = &session.shared.config;
    if session.mode.is_submission() && session.user.is_none() {
        let text = if session.auth_allowed() {
            "Authentication required"
        } else {
            "Must issue a STARTTLS command first"
        };
        write(out, code::AUTH_REQUIRED, Some(Status::SECURITY), text);
        return Flow::Bad;
    }
    if let ReversePath::Path(p) = &from
        && p.mailbox.is_utf8()
        && !params.smtputf8
    {
        write(
            out,
            code::MAILBOX_NAME_NOT_ALLOWED,
            Some(Status::UTF8_NOT_PERMITTED),
            "non-ASCII sender address needs SMTPUTF8",
        );
        return Flow::Next;
    }
    if params.size.is_some_and(|s| s > config.max_message_size) {
        write(
            out,
            code::EXCEEDED_STORAGE,
            Some(Status::TOO_BIG),
            "message size exceeds fixed maximum message size",
        );
        return Flow::Next;
    }
    if let Some(user) = &session.user {
        let allowed = match &from {
            // RFC 6409 §3.2 (and read receipts): the null sender is allowed.
            ReversePath::Null => Ok(true),
            ReversePath::Path(p) => {
                owns_address(&session.shared.store, config, user, &p.mailbox.to_string()).await
            }
        };
        match allowed {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(user = %user.address, sender = %from, "sender refused");
                write(
                    out,
                    code::MAILBOX_UNAVAILABLE,
                    Some(Status::NOT_AUTHORIZED),
                    &format!("sender address not owned by {}", user.address),
                );
                return Flow::Next;
            }
            Err(e) => {
                tracing::warn!(error = %e, "sender check failed");
                write(
                    out,
                    code::LOCAL_ERROR,
                    Some(Status::SYSTEM_TEMP),
                    "temporary failure checking the sender, try again later",
                );
                return Flow::Next;
            }
        }
    }
    session.txn = Some(Txn::new(from, params));
    write(out, code::OK, Some(Status::SENDER_OK), "Ok");
    Flow::Next
}

/// Whether `user` may use `address` as a sender (envelope or From:): its own address,
/// an alias that delivers to it, or a sub-address (`+tag`, the configured
/// separator) of either. Compared case-insensitively ([`Address`] lower-cases).
pub(crate) async fn owns_address<S: QueueStore>(
    store: &S,
    config: &SmtpConfig,
    user: &User,
    address: &str,
) -> Result<bool, StoreError> {
    let Ok(address) = Address::parse(address) else {
        return Ok(false);
    };
    let mut candidates = vec![address.clone()];
    if let Some(base) = strip_subaddress(&address, config.subaddress_separator) {
        candidates.push(base);
    }
    for candidate in candidates {
        if candidate == user.address {
            return Ok(true);
        }
        match store.resolve_recipient(&candidate).await {
            Ok(accounts) if accounts.contains(&user.account) => return Ok(true),
            Ok(_) | Err(StoreError::NotFound(_) | StoreError::Refused(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// `user+tag@domain` → `user@domain` for separator `+`; `None` when there is no
/// separator, or nothing before it.
pub(crate) fn strip_subaddress(address: &Address, separator: Option<char>) -> Option<Address> {
    let sep = separator?;
    let (base, _tag) = address.local().split_once(sep)?;
    if base.is_empty() {
        return None;
    }
    Address::parse(&format!("{base}@{}", address.domain_str())).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn subaddresses() {
        let a = Address::parse("ann+lists@example.org").unwrap();
        assert_eq!(
            strip_subaddress(&a, Some('+')).unwrap().as_str(),
            "ann@example.org"
        );
        assert_eq!(strip_subaddress(&a, Some('-')), None);
        assert_eq!(strip_subaddress(&a, None), None);
        let a = Address::parse("ann+a+b@example.org").unwrap();
        assert_eq!(
            strip_subaddress(&a, Some('+')).unwrap().as_str(),
            "ann@example.org"
        );
        let a = Address::parse("+tag@example.org").unwrap();
        assert_eq!(strip_subaddress(&a, Some('+')), None);
    }
}
