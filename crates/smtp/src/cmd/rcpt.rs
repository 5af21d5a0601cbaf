//! RCPT (RFC 5321 §4.1.1.3): local recipients (accounts, aliases, sub-addresses),
//! relay control, the recipient limit (§4.5.3.1.8) and the quota check
//! (RFC 3463 X.2.2).

use crate::SmtpConfig;
use crate::cmd::mail::strip_subaddress;
use crate::session::{Dest, Flow, Rcpt, Session};
use buudien_smtp_proto::reply::write;
use buudien_smtp_proto::{ForwardPath, Mailbox, RcptParams, Status, code};
use buudien_store::{Account, AccountId, QueueStore, StoreError};
use buudien_types::{Address, Domain};

/// RFC 5321 §4.1.1.3 — `RCPT TO:<forward-path> [params]`.
///
/// - Over the recipient limit: `452 4.5.3` (§4.5.3.1.10).
/// - A UTF-8 address without `SMTPUTF8`: `553 5.6.7` (RFC 6531 §3.5).
/// - Without authentication, only local domains: anything else, a source route
///   (§3.6.1, Appendix C) or a `%`/`!` local part (the old "percent hack" and bang
///   paths; §3.6.1 lets a server decline to relay) is relay:
///   `relay_denied_code 5.7.1`. An authenticated user may send anywhere (RFC 6409
///   §3); remote recipients go to the queue.
/// - A local address that resolves to no account (directly, as an alias, or as a
///   sub-address of one): `550 5.1.1`.
/// - Every target account over quota (with `SIZE=` when given): `452 4.2.2` (or
///   `552 5.2.2`). When only some are, the recipient is accepted and `deliver`
///   bounces for the full ones.
pub(crate) async fn rcpt<S: QueueStore>(
    session: &mut Session<'_, S>,
    out: &mut Vec<u8>,
    to: ForwardPath,
    params: RcptParams,
) -> Flow {
    let shared = session.shared;
    let config = &shared.config;
    let store = &shared.store;
    let authenticated = session.user.is_some();
    let Some(txn) = session.txn.as_ref() else {
        write(
            out,
            code::BAD_SEQUENCE,
            Some(Status::INVALID_COMMAND),
            "send MAIL first",
        );
        return Flow::Bad;
    };
    if txn.rcpts.len() >= config.recipient_limit() {
        write(
            out,
            code::INSUFFICIENT_STORAGE,
            Some(Status::TOO_MANY_RECIPIENTS),
            "too many recipients",
        );
        return Flow::Next;
    }
    let size = txn.params.size.unwrap_or(0);
    let smtputf8 = txn.params.smtputf8;
    let local_domains = match store.list_domains().await {
        Ok(d) => d,
        Err(e) => return temporary(out, &e),
    };
    let (mailbox, routed) = match to {
        ForwardPath::Postmaster => {
            // RFC 5321 §4.1.1.3: "<Postmaster>" must be accepted.
            return match postmaster(store, config, &local_domains).await {
                Ok(Some((address, accounts))) => accept(
                    session,
                    out,
                    address.to_string(),
                    Dest::Local(accounts),
                    params,
                ),
                Ok(None) => unknown(out),
                Err(e) => temporary(out, &e),
            };
        }
        ForwardPath::Path(p) => (p.mailbox, !p.route.is_empty()),
    };
    if mailbox.is_utf8() && !smtputf8 {
        write(
            out,
            code::MAILBOX_NAME_NOT_ALLOWED,
            Some(Status::UTF8_NOT_PERMITTED),
            "non-ASCII recipient address needs SMTPUTF8",
        );
        return Flow::Next;
    }
    let shown = mailbox.to_string();
    let local_domain = mailbox
        .domain()
        .and_then(|d| Domain::parse(d).ok())
        .filter(|d| local_domains.contains(d));
    if routed && !authenticated {
        return relay_denied(out, config, &shown, "source route");
    }
    let Some(domain) = local_domain else {
        if !authenticated {
            return relay_denied(out, config, &shown, "not a local domain");
        }
        // RFC 6409 §3: an authenticated user may send to any domain.
        return accept(session, out, shown.clone(), Dest::Remote(shown), params);
    };
    if percent_hack(&mailbox) {
        return relay_denied(out, config, &shown, "relay in the local part");
    }
    let Ok(address) = Address::parse(&format!("{}@{}", mailbox.local, domain)) else {
        return unknown(out);
    };
    let (resolved, accounts) = match resolve_local(store, config, &address).await {
        Ok(Some(found)) => found,
        Ok(None) => return unknown(out),
        Err(e) => return temporary(out, &e),
    };
    match all_over_quota(store, &resolved, &accounts, size).await {
        Ok(true) => return quota_reply(out, config),
        Ok(false) => {}
        // The check is advisory; `submit` enforces the quota anyway.
        Err(e) => tracing::warn!(error = %e, "quota check failed"),
    }
    accept(session, out, shown, Dest::Local(accounts), params)
}

/// Records an accepted recipient: `250 2.1.5`.
fn accept<S>(
    session: &mut Session<'_, S>,
    out: &mut Vec<u8>,
    address: String,
    dest: Dest,
    params: RcptParams,
) -> Flow {
    if let Some(txn) = session.txn.as_mut() {
        txn.rcpts.push(Rcpt {
            address,
            dest,
            params,
        });
    }
    write(out, code::OK, Some(Status::RECIPIENT_OK), "Ok");
    Flow::Next
}

/// A local part that routes elsewhere: `user%host`, `host!user`, or a quoted `@`
/// (legacy routing syntax; here it is a relay attempt, RFC 5321 §3.6.1).
fn percent_hack(mailbox: &Mailbox) -> bool {
    mailbox.local.contains(['%', '!', '@'])
}

/// `550 5.1.1` (RFC 3463 X.1.1).
fn unknown(out: &mut Vec<u8>) -> Flow {
    write(
        out,
        code::MAILBOX_UNAVAILABLE,
        Some(Status::UNKNOWN_USER),
        "recipient address rejected: user unknown",
    );
    Flow::Next
}

/// `550` or `554` with `5.7.1` (RFC 3463 X.7.1): relaying denied.
fn relay_denied(out: &mut Vec<u8>, config: &SmtpConfig, address: &str, why: &str) -> Flow {
    tracing::info!(recipient = %address, why, "relay denied");
    let reply = if config.relay_denied_code == code::TRANSACTION_FAILED {
        code::TRANSACTION_FAILED
    } else {
        code::MAILBOX_UNAVAILABLE
    };
    write(
        out,
        reply,
        Some(Status::NOT_AUTHORIZED),
        "relay access denied",
    );
    Flow::Next
}

/// `452 4.2.2` or, when configured, `552 5.2.2`: mailbox full.
pub(crate) fn quota_reply(out: &mut Vec<u8>, config: &SmtpConfig) -> Flow {
    if config.quota_permanent {
        write(
            out,
            code::EXCEEDED_STORAGE,
            Some(Status::MAILBOX_FULL),
            "mailbox full",
        );
    } else {
        write(
            out,
            code::INSUFFICIENT_STORAGE,
            Some(Status::MAILBOX_FULL_TEMP),
            "mailbox full, try again later",
        );
    }
    Flow::Next
}

/// `451 4.3.0` for a store failure, logged.
fn temporary(out: &mut Vec<u8>, e: &StoreError) -> Flow {
    tracing::warn!(error = %e, "recipient lookup failed");
    write(
        out,
        code::LOCAL_ERROR,
        Some(Status::SYSTEM_TEMP),
        "temporary failure, try again later",
    );
    Flow::Next
}

/// The accounts a local address delivers to: itself (account or alias), else its
/// base address without the sub-address tag. `None` when nothing matches. Returns the
/// address that resolved with the accounts.
pub(crate) async fn resolve_local<S: QueueStore>(
    store: &S,
    config: &SmtpConfig,
    address: &Address,
) -> Result<Option<(Address, Vec<AccountId>)>, StoreError> {
    let mut candidates = vec![address.clone()];
    if let Some(base) = strip_subaddress(address, config.subaddress_separator) {
        candidates.push(base);
    }
    for candidate in candidates {
        match store.resolve_recipient(&candidate).await {
            Ok(accounts) if !accounts.is_empty() => return Ok(Some((candidate, accounts))),
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(StoreError::Refused(why)) => {
                // An alias with no account behind it, or a loop: unknown here.
                tracing::warn!(address = %candidate, %why, "alias does not resolve");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// `<Postmaster>`: `postmaster@` the host name when that is local, else the first
/// local domain that has one.
async fn postmaster<S: QueueStore>(
    store: &S,
    config: &SmtpConfig,
    local_domains: &[Domain],
) -> Result<Option<(Address, Vec<AccountId>)>, StoreError> {
    let mut domains: Vec<&str> = Vec::new();
    if local_domains.iter().any(|d| d.as_str() == config.hostname) {
        domains.push(&config.hostname);
    }
    domains.extend(local_domains.iter().map(Domain::as_str));
    for d in domains {
        if let Ok(address) = Address::parse(&format!("postmaster@{d}"))
            && let Some(found) = resolve_local(store, config, &address).await?
        {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// True when every one of `accounts` is over quota for a message of `size` octets
/// (at least one). `resolved` is the address that resolved: for a plain account it
/// is looked up directly, for an alias the account list is read.
async fn all_over_quota<S: QueueStore>(
    store: &S,
    resolved: &Address,
    accounts: &[AccountId],
    size: u64,
) -> Result<bool, StoreError> {
    if let Some(account) = store.account(resolved).await?
        && accounts == [account.id]
    {
        return Ok(over_quota(&account, size));
    }
    let all = store.list_accounts().await?;
    let targets: Vec<&Account> = all.iter().filter(|a| accounts.contains(&a.id)).collect();
    Ok(!targets.is_empty() && targets.iter().all(|a| over_quota(a, size)))
}

/// True when a message of `size` octets (at least 1) would take the account over
/// its byte or message quota.
pub(crate) fn over_quota(account: &Account, size: u64) -> bool {
    let bytes = account
        .quota
        .bytes
        .is_some_and(|q| account.used_bytes.saturating_add(size.max(1)) > q);
    let messages = account
        .quota
        .messages
        .is_some_and(|q| account.used_messages.saturating_add(1) > q);
    bytes || messages
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use buudien_smtp_proto::path::parse_mailbox;
    use buudien_store::Quota;

    fn account(bytes: Option<u64>, messages: Option<u64>, used: u64, count: u64) -> Account {
        Account {
            id: 1,
            address: Address::parse("a@example.org").unwrap(),
            quota: Quota { bytes, messages },
            used_bytes: used,
            used_messages: count,
        }
    }

    #[test]
    fn quota_arithmetic() {
        assert!(!over_quota(
            &account(None, None, u64::MAX, u64::MAX),
            u64::MAX
        ));
        assert!(!over_quota(&account(Some(100), None, 50, 1), 50));
        assert!(over_quota(&account(Some(100), None, 50, 1), 51));
        // Full to the byte: even an unknown size does not fit.
        assert!(over_quota(&account(Some(100), None, 100, 1), 0));
        assert!(over_quota(&account(None, Some(3), 0, 3), 1));
        assert!(!over_quota(&account(None, Some(3), 0, 2), 1));
    }

    #[test]
    fn percent_hack_forms() {
        assert!(percent_hack(
            &parse_mailbox("a%b.example@example.org").unwrap()
        ));
        assert!(percent_hack(
            &parse_mailbox("b.example!a@example.org").unwrap()
        ));
        assert!(percent_hack(
            &parse_mailbox("\"a@b.example\"@example.org").unwrap()
        ));
        assert!(!percent_hack(&parse_mailbox("a+b@example.org").unwrap()));
    }
}
