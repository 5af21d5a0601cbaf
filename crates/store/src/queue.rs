//! The outbound queue: what SMTP accepted for remote recipients, with per-recipient
//! state, kept in the same store as the mailboxes so that one transaction can store
//! the local copies and queue the remote part of one message (RFC 5321 §6.1: once
//! `250` is sent, the message is the server's responsibility).
//!
//! The queue worker (crate `buudien-queue`) is the only writer after submission: it
//! claims due messages with a lease (so no two attempts for one recipient run at
//! once, across processes and, later, nodes), records each recipient's result right
//! after the remote replies, and releases the claim.

use crate::{AccountId, BlobId, Delivered, MailStore, Result};
use std::future::Future;
use std::time::{Duration, SystemTime};

/// A queued message's id.
pub type QueueId = i64;

/// DSN `NOTIFY` (RFC 3461 §4.1). `None` in a recipient means the parameter was not
/// given (the MTA then reports failures, and may report delays).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notify {
    /// `SUCCESS`
    pub success: bool,
    /// `FAILURE`
    pub failure: bool,
    /// `DELAY`
    pub delay: bool,
}

impl Notify {
    /// `NOTIFY=NEVER`.
    pub const NEVER: Notify = Notify {
        success: false,
        failure: false,
        delay: false,
    };
}

/// DSN `RET` (RFC 3461 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// Return the whole message.
    Full,
    /// Return the headers only.
    Headers,
}

/// The envelope of a queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse-path; empty for the null sender `<>` (bounces, receipts).
    pub sender: String,
    /// DSN `ENVID`, decoded from xtext.
    pub envid: Option<String>,
    /// DSN `RET`.
    pub ret: Option<Ret>,
    /// `BODY=8BITMIME` was given (RFC 6152).
    pub eight_bit: bool,
    /// `SMTPUTF8` was given (RFC 6531).
    pub smtputf8: bool,
}

/// A recipient to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecipient {
    /// The forward-path (may hold UTF-8 with SMTPUTF8).
    pub address: String,
    /// DSN `ORCPT` as given: `addr-type;xtext-address`.
    pub orcpt: Option<String>,
    /// DSN `NOTIFY`.
    pub notify: Option<Notify>,
}

/// Where a queued recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcptState {
    /// Not delivered yet; tried again at `next_attempt`.
    Pending,
    /// The next hop accepted it.
    Delivered,
    /// Permanently failed (5xx, expired, or bounced by the administrator).
    Failed,
}

/// One recipient of a queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRecipient {
    /// Its position in the message's recipient list (stable).
    pub index: u32,
    /// The forward-path.
    pub address: String,
    /// DSN `ORCPT`.
    pub orcpt: Option<String>,
    /// DSN `NOTIFY`.
    pub notify: Option<Notify>,
    /// State.
    pub state: RcptState,
    /// Attempts made.
    pub attempts: u32,
    /// When it is due.
    pub next_attempt: SystemTime,
    /// The last reply or error text, for `queue list` and DSNs.
    pub last_reply: Option<String>,
    /// Delivered to a hop that could not relay the DSN request (RFC 3461 §5.2.2:
    /// report "relayed").
    pub relayed: bool,
    /// A DSN about this recipient's final state has been queued (or none is due).
    pub reported: bool,
}

/// A queued message with its recipients.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    /// Its id.
    pub id: QueueId,
    /// The envelope.
    pub envelope: Envelope,
    /// The message bytes (read with [`MailStore::read_blob`]).
    pub blob: BlobId,
    /// Size in octets.
    pub size: u64,
    /// When it was queued.
    pub queued_at: SystemTime,
    /// Recipients in their original order.
    pub recipients: Vec<QueuedRecipient>,
}

/// The result of one delivery attempt for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The next hop accepted it (`relayed` as in [`QueuedRecipient::relayed`]).
    Delivered {
        /// The reply text.
        reply: String,
        /// The hop did not take the DSN parameters.
        relayed: bool,
    },
    /// Permanent failure.
    Failed {
        /// The reply or error text.
        reply: String,
    },
    /// Temporary failure: try again at `next_attempt`.
    Deferred {
        /// The reply or error text.
        reply: String,
        /// When to retry.
        next_attempt: SystemTime,
    },
}

/// One accepted message: its local copies and its outbound part, stored in one
/// transaction.
#[derive(Debug, Clone, Copy)]
pub struct Submission<'a> {
    /// The message bytes (CRLF lines), as queued for remote recipients.
    pub message: &'a [u8],
    /// Header lines the local copies get in front of `message` and the queued copy
    /// does not: `Return-Path`, which only the final delivery adds (RFC 5321 §4.4).
    /// Empty when both are the same bytes.
    pub local_prefix: &'a [u8],
    /// When it was received.
    pub received: SystemTime,
    /// Accounts that get a copy in their INBOX (quota checked as in
    /// [`MailStore::deliver`]).
    pub local: &'a [AccountId],
    /// The envelope and recipients to queue for remote delivery, if any.
    pub outbound: Option<(&'a Envelope, &'a [NewRecipient])>,
}

/// What [`QueueStore::submit`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// Local copies.
    pub delivered: Vec<Delivered>,
    /// The queued message, if there were remote recipients.
    pub queued: Option<QueueId>,
}

/// The queue's storage. Every method commits durably before it returns `Ok`.
pub trait QueueStore: MailStore {
    /// Stores local copies and queues the outbound part in one transaction: all or
    /// nothing. With neither local accounts nor outbound recipients it is refused.
    fn submit(&self, submission: Submission<'_>) -> impl Future<Output = Result<Submitted>> + Send;

    /// Claims up to `limit` messages (oldest first) that have no live claim and need
    /// the worker: a pending recipient is due at `now`, or no recipient is pending any
    /// more (final results still to report, e.g. after [`QueueStore::queue_bounce`] or
    /// a crash before the report). Holds them for `lease` (a crashed worker's claim
    /// expires); claims are exclusive across processes.
    fn claim(
        &self,
        now: SystemTime,
        lease: Duration,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<QueuedMessage>>> + Send;

    /// Records results for recipients (by index) of a claimed message; each counts as
    /// an attempt. Only pending recipients change (a result for one already final is
    /// dropped), and a message removed meanwhile is not an error.
    fn record(
        &self,
        id: QueueId,
        results: &[(u32, Outcome)],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Marks recipients as reported (their DSN is queued, or none is due).
    fn mark_reported(
        &self,
        id: QueueId,
        indexes: &[u32],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Ends a claim. A message with no pending and no unreported recipient is removed
    /// (its blob becomes garbage).
    fn release(&self, id: QueueId) -> impl Future<Output = Result<()>> + Send;

    /// Every queued message, oldest first.
    fn queue_list(&self) -> impl Future<Output = Result<Vec<QueuedMessage>>> + Send;

    /// Makes pending recipients of one message (or all) due now; returns how many.
    /// [`StoreError::NotFound`](crate::StoreError::NotFound) for an unknown id.
    fn queue_flush(&self, id: Option<QueueId>) -> impl Future<Output = Result<usize>> + Send;

    /// Deletes a message from the queue without any report (its blob becomes garbage
    /// unless a mailbox holds it too). `NotFound` for an unknown id.
    fn queue_remove(&self, id: QueueId) -> impl Future<Output = Result<()>> + Send;

    /// Fails every pending recipient of a message with `reason` (the worker then
    /// sends the DSN); returns how many. `NotFound` for an unknown id.
    fn queue_bounce(&self, id: QueueId, reason: &str)
    -> impl Future<Output = Result<usize>> + Send;
}
