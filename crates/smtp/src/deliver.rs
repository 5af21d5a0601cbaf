//! What happens to a message once its data has arrived (after DATA or BDAT LAST):
//! normalisation, the loop check (RFC 5321 §6.3), the submission rules (From check,
//! RFC 6409 §8 completion), the trace fields (RFC 5321 §4.4), one durable
//! `QueueStore::submit` for the local copies and the outbound part, and the reply.
//!
//! `Return-Path`: RFC 5321 §4.4 has the final delivery add it, and relays must not.
//! It goes to `submit` as the local copies' prefix, so the local copies carry it and
//! the queued copy does not, still in one transaction.

use crate::cmd::mail::owns_address;
use crate::cmd::rcpt::{quota_reply, resolve_local};
use crate::headers::{self, Field, Trace};
use crate::session::{Dest, Flow, Session, Txn, User};
use crate::{Shared, SmtpConfig};
use buudien_queue::dsn;
use buudien_smtp_proto::reply::write;
use buudien_smtp_proto::{Body, Ret, Status, code};
use buudien_store::{
    AccountId, Envelope, NewRecipient, Notify, QueueStore, QueuedRecipient, RcptState, StoreError,
    Submission,
};
use buudien_types::{Address, Domain};
use std::time::SystemTime;

/// Takes a received message through to its reply.
///
/// - A header section over `limits.max_header_size` octets or
///   `limits.max_header_fields` fields: `552 5.3.4`.
/// - More than `max_received_headers` `Received` fields: `554 5.4.6`.
/// - Submission: a From that is not the user's: `550 5.7.1`; missing `Date` and
///   `Message-ID` are added (RFC 6409 §8.2, §8.3).
/// - `Received` is prepended; the local copies also get `Return-Path`.
/// - Stored: `250 2.0.0 Ok: queued as <id>`, only after `submit` returned `Ok`.
pub(crate) async fn accept<S: QueueStore>(
    session: &mut Session<'_, S>,
    out: &mut Vec<u8>,
    txn: Txn,
    raw: Vec<u8>,
) -> Flow {
    session.junk_commands = 0;
    let shared = session.shared;
    let config = &shared.config;
    let message = buudien_message::normalize_owned(raw);
    let now = SystemTime::now();
    let id = headers::new_id();

    // Bounded header section: its size first (cheap), then its field count.
    let limits = &config.limits;
    let header_size = buudien_message::header_len(&message);
    let fields = if header_size > limits.max_header_size {
        None
    } else {
        Some(headers::fields(&message)).filter(|f| f.len() <= limits.max_header_fields)
    };
    let Some(fields) = fields else {
        tracing::info!(header_size, "header section too large, message refused");
        write(
            out,
            code::EXCEEDED_STORAGE,
            Some(Status::TOO_BIG),
            &format!(
                "message header too large (at most {} octets and {} fields)",
                limits.max_header_size, limits.max_header_fields
            ),
        );
        return Flow::Next;
    };
    let hops = headers::count(&fields, "Received");
    if hops > config.max_received_headers {
        tracing::info!(hops, "mail loop suspected, message refused");
        write(
            out,
            code::TRANSACTION_FAILED,
            Some(Status::LOOP),
            &format!("too many hops ({hops} Received fields): mail loop?"),
        );
        return Flow::Next;
    }
    let mut added = String::new();
    if let Some(user) = &session.user {
        if config.check_from_header {
            match from_allowed(shared, user, &fields).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(user = %user.address, "From header refused");
                    write(
                        out,
                        code::MAILBOX_UNAVAILABLE,
                        Some(Status::NOT_AUTHORIZED),
                        &format!("From: header address not owned by {}", user.address),
                    );
                    return Flow::Next;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "From check failed");
                    write(
                        out,
                        code::LOCAL_ERROR,
                        Some(Status::SYSTEM_TEMP),
                        "temporary failure, try again later",
                    );
                    return Flow::Next;
                }
            }
        }
        // RFC 6409 §8.2 (Date), §8.3 (Message-ID): complete the message.
        if headers::count(&fields, "Date") == 0 {
            added.push_str(&format!("Date: {}\r\n", dsn::rfc5322_date(now)));
        }
        if headers::count(&fields, "Message-ID") == 0 {
            added.push_str(&format!("Message-ID: <{id}@{}>\r\n", config.hostname));
        }
    }
    drop(fields);

    let plan = Plan::new(&txn);
    let sender = txn.sender();
    let helo = session.helo.as_ref();
    let trace = Trace {
        helo: helo.map_or("unknown", |h| h.name.as_str()),
        peer: session.peer.ip(),
        hostname: &config.hostname,
        protocol: headers::Via {
            extended: helo.is_some_and(|h| h.extended),
            utf8: txn.params.smtputf8,
            tls: session.secure,
            auth: session.user.is_some(),
        }
        .protocol(),
        tls: session
            .tls
            .as_ref()
            .map(|t| (t.version.as_str(), t.cipher.as_str())),
        user: session.user.as_ref().map(|u| u.address.as_str()),
        id: &id,
        for_rcpt: match txn.rcpts.as_slice() {
            [only] => Some(only.address.as_str()),
            _ => None,
        },
        date: dsn::rfc5322_date(now),
    };
    let mut stored = Vec::with_capacity(message.len() + 1024);
    stored.extend_from_slice(headers::received(&trace).as_bytes());
    stored.extend_from_slice(added.as_bytes());
    stored.extend_from_slice(&message);
    drop(message);

    let envelope = Envelope {
        sender: sender.clone(),
        envid: txn.params.envid.clone(),
        ret: txn.params.ret.map(|r| match r {
            Ret::Full => buudien_store::Ret::Full,
            Ret::Headers => buudien_store::Ret::Headers,
        }),
        // RFC 6152 §3: BODY=8BITMIME, or 8-bit octets sent without it (which many
        // clients do); either way the queue must not relay it as 7-bit.
        eight_bit: txn.params.body == Some(Body::EightBitMime) || !stored.is_ascii(),
        smtputf8: txn.params.smtputf8,
    };
    let return_path = format!("Return-Path: <{sender}>\r\n");
    let job = Job {
        shared,
        txn: &txn,
        plan: &plan,
        envelope: &envelope,
        message: &stored,
        local_prefix: return_path.as_bytes(),
        received: now,
    };
    match job.run().await {
        Ok(Stored { local, queued }) => {
            if queued.is_some() {
                shared.notify_queued();
            }
            tracing::info!(
                id = %id,
                from = %sender,
                size = stored.len(),
                local,
                queued = ?queued,
                "message accepted"
            );
            write(
                out,
                code::OK,
                Some(Status::OK),
                &format!("Ok: queued as {id}"),
            );
        }
        Err(Refused::Quota) => {
            tracing::info!(id = %id, "message refused: mailbox full");
            quota_reply(out, config);
        }
        Err(refused @ (Refused::Temporary | Refused::SystemFull)) => {
            store_failure_reply(out, &refused);
        }
    }
    Flow::Next
}

/// The reply when the store failed: `452 4.3.1` when its storage is full (RFC 5321
/// §4.2.2 "insufficient system storage", RFC 3463 X.3.1 "mail system full"), else
/// `451 4.3.0` (RFC 5321 §4.2.2 "local error in processing", RFC 3463 X.3.0). Both
/// are temporary: the client keeps the message and retries (RFC 5321 §4.2.5).
fn store_failure_reply(out: &mut Vec<u8>, refused: &Refused) {
    if matches!(refused, Refused::SystemFull) {
        write(
            out,
            code::INSUFFICIENT_STORAGE,
            Some(Status::SYSTEM_FULL),
            "insufficient system storage, try again later",
        );
    } else {
        write(
            out,
            code::LOCAL_ERROR,
            Some(Status::SYSTEM_TEMP),
            "temporary failure storing the message, try again later",
        );
    }
}

/// How a failed store operation refuses the message: a full disk (or file system
/// quota) is [`Refused::SystemFull`], anything else [`Refused::Temporary`].
fn store_failure(e: &StoreError) -> Refused {
    match e {
        StoreError::Full(_) => Refused::SystemFull,
        _ => Refused::Temporary,
    }
}

/// Where the copies go.
struct Plan {
    /// Local accounts, each once (RFC 5321 §3.3 "one message … stored once per
    /// account").
    local: Vec<AccountId>,
    /// Remote recipients, each address once.
    remote: Vec<NewRecipient>,
}

impl Plan {
    fn new(txn: &Txn) -> Self {
        let mut local: Vec<AccountId> = Vec::new();
        let mut remote: Vec<NewRecipient> = Vec::new();
        for r in &txn.rcpts {
            match &r.dest {
                Dest::Local(ids) => local.extend(ids),
                Dest::Remote(address) => {
                    if !remote.iter().any(|n| n.address == *address) {
                        remote.push(NewRecipient {
                            address: address.clone(),
                            orcpt: r.params.orcpt.clone(),
                            notify: r.params.notify.map(|n| Notify {
                                success: n.success,
                                failure: n.failure,
                                delay: n.delay,
                            }),
                        });
                    }
                }
            }
        }
        local.sort_unstable();
        local.dedup();
        Plan { local, remote }
    }
}

/// Why a message was not stored.
enum Refused {
    /// Every local recipient is full, or a full one cannot be bounced: the client
    /// keeps the message (`452 4.2.2` / `552 5.2.2`).
    Quota,
    /// The store failed: `451 4.3.0`.
    Temporary,
    /// The store's disk is full: `452 4.3.1`.
    SystemFull,
}

/// What was stored.
struct Stored {
    /// Local copies.
    local: usize,
    /// The queue id of the outbound part.
    queued: Option<buudien_store::QueueId>,
}

/// Where a bounce to the envelope sender goes.
enum BounceTo {
    /// These local accounts.
    Local(Vec<AccountId>),
    /// The outbound queue.
    Remote(String),
}

/// One message's way into the store.
struct Job<'a, S> {
    shared: &'a Shared<S>,
    txn: &'a Txn,
    plan: &'a Plan,
    envelope: &'a Envelope,
    /// The message as queued (without `Return-Path`).
    message: &'a [u8],
    /// `Return-Path`, for the local copies only.
    local_prefix: &'a [u8],
    received: SystemTime,
}

impl<S: QueueStore> Job<'_, S> {
    /// One `submit`. When it names a full account (`StoreError::OverQuota`), that
    /// account is left out and the rest is submitted again; once stored, the sender
    /// gets a bounce for the full ones. When there is nobody to bounce to (null
    /// sender, unknown local sender) or nobody left, the whole message is refused
    /// with the quota reply instead, so that nothing is dropped silently.
    async fn run(&self) -> Result<Stored, Refused> {
        let store = &self.shared.store;
        let outbound =
            (!self.plan.remote.is_empty()).then_some((self.envelope, self.plan.remote.as_slice()));
        let mut full: Vec<(AccountId, String)> = Vec::new();
        let mut bounce_to: Option<BounceTo> = None;
        let submitted = loop {
            let targets: Vec<AccountId> = self
                .plan
                .local
                .iter()
                .copied()
                .filter(|a| !full.iter().any(|(f, _)| f == a))
                .collect();
            if targets.is_empty() && outbound.is_none() {
                return Err(Refused::Quota);
            }
            let submission = Submission {
                message: self.message,
                local_prefix: self.local_prefix,
                received: self.received,
                local: &targets,
                outbound,
            };
            match store.submit(submission).await {
                Ok(s) => break s,
                Err(StoreError::OverQuota(who)) => {
                    let Some(account) = account_id(store, &who).await else {
                        tracing::warn!(account = %who, "over quota, but which account?");
                        return Err(Refused::Quota);
                    };
                    if !targets.contains(&account) {
                        return Err(Refused::Quota);
                    }
                    if bounce_to.is_none() {
                        bounce_to = match self.bounce_route().await {
                            Ok(Some(route)) => Some(route),
                            Ok(None) => return Err(Refused::Quota),
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot route a bounce");
                                return Err(Refused::Temporary);
                            }
                        };
                    }
                    tracing::info!(account = %who, "over quota after the data; will bounce");
                    full.push((account, who));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "storing the message failed");
                    return Err(store_failure(&e));
                }
            }
        };
        if let Some(route) = bounce_to {
            // The message is stored for the others. If the bounce cannot be stored,
            // `451` makes the client retry: duplicates for the others, but no
            // recipient lost without a word.
            if let Err(e) = self.bounce(&full, &route).await {
                tracing::error!(error = %e, "bounce for full mailboxes not stored");
                return Err(store_failure(&e));
            }
        }
        let delivered: Vec<AccountId> = submitted.delivered.iter().map(|d| d.account).collect();
        self.report_successes(&delivered, &full).await;
        Ok(Stored {
            local: submitted.delivered.len(),
            queued: submitted.queued,
        })
    }

    /// Where a bounce to the envelope sender goes: a local account, the queue, or
    /// nowhere (null sender; a local sender that does not exist).
    async fn bounce_route(&self) -> Result<Option<BounceTo>, StoreError> {
        let sender = &self.envelope.sender;
        if sender.is_empty() {
            return Ok(None);
        }
        let Ok(address) = Address::parse(sender) else {
            return Ok(Some(BounceTo::Remote(sender.clone())));
        };
        let store = &self.shared.store;
        let domains: Vec<Domain> = store.list_domains().await?;
        if !domains.contains(&address.domain()) {
            return Ok(Some(BounceTo::Remote(sender.clone())));
        }
        let config: &SmtpConfig = &self.shared.config;
        Ok(resolve_local(store, config, &address)
            .await?
            .map(|(_, accounts)| BounceTo::Local(accounts)))
    }

    /// Builds and stores the bounce for the `full` accounts (only for recipients whose
    /// `NOTIFY` asks for failures, RFC 3461 §4.1).
    async fn bounce(
        &self,
        full: &[(AccountId, String)],
        route: &BounceTo,
    ) -> Result<(), StoreError> {
        let mut items: Vec<QueuedRecipient> = Vec::new();
        for (account, who) in full {
            for r in &self.txn.rcpts {
                let Dest::Local(ids) = &r.dest else { continue };
                if !ids.contains(account) || r.params.notify.is_some_and(|n| !n.failure) {
                    continue;
                }
                let reason = format!("5.2.2 mailbox of {who} is full");
                push_item(
                    &mut items,
                    who,
                    r.params.orcpt.clone(),
                    RcptState::Failed,
                    reason,
                );
            }
        }
        self.report(&items, route).await
    }

    /// RFC 3461 §5.2.3 (a): a final delivery to a recipient whose `NOTIFY` includes
    /// `SUCCESS` gets a "delivered" report. Best effort: the message is stored, so a
    /// failure here is logged and does not change the reply.
    async fn report_successes(&self, delivered: &[AccountId], full: &[(AccountId, String)]) {
        let mut items: Vec<QueuedRecipient> = Vec::new();
        for r in &self.txn.rcpts {
            let Dest::Local(ids) = &r.dest else { continue };
            if !r.params.notify.is_some_and(|n| n.success) {
                continue;
            }
            let stored = ids
                .iter()
                .any(|a| delivered.contains(a) && !full.iter().any(|(f, _)| f == a));
            if stored {
                let reply = "2.0.0 delivered to the mailbox".to_string();
                push_item(
                    &mut items,
                    &r.address,
                    r.params.orcpt.clone(),
                    RcptState::Delivered,
                    reply,
                );
            }
        }
        if items.is_empty() {
            return;
        }
        let route = match self.bounce_route().await {
            Ok(Some(route)) => route,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot route a success report");
                return;
            }
        };
        if let Err(e) = self.report(&items, &route).await {
            tracing::warn!(error = %e, "success report not stored");
        }
    }

    /// Builds one delivery status notification about `items` (RFC 3464, RFC 6533 for
    /// SMTPUTF8 mail) with the queue's builder and stores it for the sender: into a
    /// local INBOX, or queued from `<>` (RFC 3461 §6.1).
    async fn report(&self, items: &[QueuedRecipient], route: &BounceTo) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let now = SystemTime::now();
        let recipients = items
            .iter()
            .map(|i| {
                let action = match i.state {
                    RcptState::Delivered => dsn::Action::Delivered,
                    _ => dsn::Action::Failed,
                };
                (i, action)
            })
            .collect();
        let dsn = dsn::build(&dsn::Report {
            reporting_mta: &self.shared.config.hostname,
            envelope: self.envelope,
            arrival: self.received,
            recipients,
            original: self.message,
            return_limit: DSN_RETURN_LIMIT,
            now,
        });
        let store = &self.shared.store;
        match route {
            BounceTo::Local(accounts) => {
                store
                    .submit(Submission {
                        message: &dsn,
                        local_prefix: b"Return-Path: <>\r\n",
                        received: now,
                        local: accounts,
                        outbound: None,
                    })
                    .await?;
            }
            BounceTo::Remote(address) => {
                let envelope = Envelope {
                    sender: String::new(),
                    envid: None,
                    ret: None,
                    eight_bit: !dsn.is_ascii(),
                    smtputf8: self.envelope.smtputf8,
                };
                let rcpt = [NewRecipient {
                    address: address.clone(),
                    orcpt: None,
                    notify: None,
                }];
                store
                    .submit(Submission {
                        message: &dsn,
                        local_prefix: &[],
                        received: now,
                        local: &[],
                        outbound: Some((&envelope, &rcpt)),
                    })
                    .await?;
                self.shared.notify_queued();
            }
        }
        tracing::info!(to = %self.envelope.sender, count = items.len(), "delivery report stored");
        Ok(())
    }
}

/// Returned originals larger than this are reduced to their headers (RFC 3461 §4.3
/// lets the MTA decide).
const DSN_RETURN_LIMIT: usize = 1 << 20;

/// Adds a report line for `address` unless one is there already.
fn push_item(
    items: &mut Vec<QueuedRecipient>,
    address: &str,
    orcpt: Option<String>,
    state: RcptState,
    reply: String,
) {
    if items
        .iter()
        .any(|i| i.address.eq_ignore_ascii_case(address))
    {
        return;
    }
    items.push(QueuedRecipient {
        index: u32::try_from(items.len()).unwrap_or(u32::MAX),
        address: address.to_string(),
        orcpt,
        notify: None,
        state,
        attempts: 1,
        next_attempt: SystemTime::now(),
        last_reply: Some(reply),
        relayed: false,
        reported: false,
    });
}

/// The id of the account with this address.
async fn account_id<S: QueueStore>(store: &S, address: &str) -> Option<AccountId> {
    let address = Address::parse(address).ok()?;
    store.account(&address).await.ok().flatten().map(|a| a.id)
}

/// RFC 6409 §6.1 and issue 3: every address in every `From:` field must be one the
/// user may send as (as for MAIL FROM). A From that cannot be read is refused.
async fn from_allowed<S: QueueStore>(
    shared: &Shared<S>,
    user: &User,
    fields: &[Field<'_>],
) -> Result<bool, StoreError> {
    for value in headers::values(fields, "From") {
        let Some(addresses) = headers::address_list(&value) else {
            return Ok(false);
        };
        for a in addresses {
            if !owns_address(&shared.store, &shared.config, user, &a).await? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(e: &StoreError) -> String {
        let mut out = Vec::new();
        store_failure_reply(&mut out, &store_failure(e));
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn a_full_disk_is_452_4_3_1() {
        for e in [
            StoreError::from(std::io::Error::from_raw_os_error(28)),
            StoreError::from(std::io::Error::from_raw_os_error(122)),
            StoreError::Full("database or disk is full".into()),
        ] {
            let r = reply(&e);
            assert!(r.starts_with("452 4.3.1 "), "{e}: {r}");
            assert!(r.ends_with("\r\n"), "{r}");
        }
    }

    #[test]
    fn other_store_failures_are_451_4_3_0() {
        for e in [
            StoreError::Io("Permission denied (os error 13)".into()),
            StoreError::Busy,
            StoreError::Database("disk I/O error".into()),
            StoreError::Refused("no".into()),
        ] {
            let r = reply(&e);
            assert!(r.starts_with("451 4.3.0 "), "{e}: {r}");
        }
    }
}
