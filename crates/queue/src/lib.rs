//! The outbound queue worker: the only writer to the spool after submission. It claims
//! due messages from a [`QueueStore`](buudien_store::QueueStore), delivers them over SMTP to each recipient
//! domain's MX hosts (or to one smarthost), records every recipient's result, retries
//! temporary failures on a schedule, and sends delivery status notifications.
//!
//! ```text
//!  QueueStore::claim ─▶ group due recipients by destination ─▶ route (MX / smarthost)
//!        ▲                                                          │
//!        │                 record ◀── per-recipient replies ◀── SMTP client
//!   release ◀── mark_reported ◀── DSN (store.submit: local INBOX or the queue)
//! ```
//!
//! # Layout
//! - this file: [`QueueConfig`], [`Smarthost`], [`Timeouts`], [`QueueError`].
//! - [`worker`]: [`QueueWorker`] (the claim loop), [`QueueHandle`] (wake it up), the
//!   per-message work: retry/expiry decisions, recording, reporting.
//! - `deliver`: one delivery attempt to one destination: hosts in order, the SMTP
//!   transaction (EHLO, STARTTLS, AUTH, MAIL/RCPT/DATA, pipelined when offered).
//! - `client`: the SMTP client connection: bounded reply reader, EHLO capabilities,
//!   STARTTLS with a verifier that accepts any certificate (opportunistic TLS).
//! - [`resolve`]: the [`Resolve`] trait (MX, A/AAAA) with the
//!   hickory implementation and a static one for tests; MX ordering (RFC 5321 §5.1)
//!   and null MX (RFC 7505).
//! - [`encode`]: what goes on the wire: dot-stuffing, long-line wrapping, 8-bit to
//!   quoted-printable conversion (RFC 6152 §3, RFC 2045 §6.7), xtext (RFC 3461 §4).
//! - [`dsn`]: delivery status notifications (RFC 3464, RFC 3461 §6, RFC 6533).
//! - [`retry`]: the retry schedule.
//!
//! # Invariants
//! - A message is only worked on under a claim (a lease); one process never works on a
//!   message twice at once, and every attempt is cut off before its lease runs out.
//! - Each recipient's result is recorded right after the remote's final reply for it,
//!   before QUIT; a duplicate delivery needs a crash between that reply and the record
//!   (RFC 5321 §6.1: at least once).
//! - A recipient is reported (DSN queued, or none due) before its message is released;
//!   no DSN is ever sent for the null sender (RFC 3461 §6.2, RFC 5321 §6.1), so DSNs
//!   cannot loop.
//! - Nothing read from the network or the DNS can panic the worker: replies and lines
//!   are bounded, and every remote failure becomes a recorded outcome.

mod client;
mod deliver;
pub mod dsn;
pub mod encode;
pub mod resolve;
pub mod retry;
pub mod worker;

pub use resolve::{HickoryResolver, Mx, MxAnswer, Resolve, ResolveError, StaticResolver};
pub use worker::{QueueHandle, QueueWorker};

use buudien_types::Secret;
use std::net::SocketAddr;
use std::time::Duration;

/// How the connection to a smarthost is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmarthostTls {
    /// No TLS is required: STARTTLS is still used when the smarthost offers it, as
    /// on the MX path (opportunistic).
    #[default]
    None,
    /// STARTTLS is required (RFC 3207); a smarthost that does not offer it gets a
    /// temporary failure.
    StartTls,
    /// TLS from the first byte (RFC 8314 §3.3, port 465).
    Implicit,
}

/// One relay that receives all outbound mail instead of the recipients' MX hosts.
#[derive(Debug, Clone)]
pub struct Smarthost {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS mode.
    pub tls: SmarthostTls,
    /// SASL PLAIN credentials (RFC 4954, RFC 4616). Sent only over TLS, or to a
    /// loopback address.
    pub auth: Option<(String, Secret<String>)>,
}

/// SMTP client timeouts (RFC 5321 §4.5.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting (TCP, and the TLS handshake).
    pub connect: Duration,
    /// Initial 220 message: 5 minutes (§4.5.3.2.1).
    pub greeting: Duration,
    /// EHLO, STARTTLS, AUTH, RSET, QUIT replies (no RFC value; 5 minutes).
    pub command: Duration,
    /// MAIL reply: 5 minutes (§4.5.3.2.2).
    pub mail: Duration,
    /// RCPT reply: 5 minutes (§4.5.3.2.3).
    pub rcpt: Duration,
    /// DATA initiation (354): 2 minutes (§4.5.3.2.4).
    pub data_init: Duration,
    /// Each data block written: 3 minutes (§4.5.3.2.5).
    pub data_block: Duration,
    /// Reply after the final dot: 10 minutes (§4.5.3.2.6).
    pub data_end: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        const MIN: u64 = 60;
        Timeouts {
            connect: Duration::from_secs(30),
            greeting: Duration::from_secs(5 * MIN),
            command: Duration::from_secs(5 * MIN),
            mail: Duration::from_secs(5 * MIN),
            rcpt: Duration::from_secs(5 * MIN),
            data_init: Duration::from_secs(2 * MIN),
            data_block: Duration::from_secs(3 * MIN),
            data_end: Duration::from_secs(10 * MIN),
        }
    }
}

/// The queue worker's settings (config `[queue]` and `[dns]`).
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Our host name: EHLO argument, `Reporting-MTA`, DSN `From`/`Message-ID`.
    pub hostname: String,
    /// Send everything through this relay instead of MX delivery.
    pub smarthost: Option<Smarthost>,
    /// Delay after the 1st, 2nd, … failed attempt of a recipient; the last one
    /// repeats. Default 5m, 10m, 20m, 40m, 80m, 160m, 4h ([`retry::default_schedule`]).
    pub retry: Vec<Duration>,
    /// Give up (bounce with the last error) on recipients still pending this long
    /// after the message was queued. Default 5 days.
    pub expire: Duration,
    /// DNS servers; empty = the system resolver (`/etc/resolv.conf`).
    pub dns_servers: Vec<SocketAddr>,
    /// The port MX hosts are contacted on: 25 (tests change it).
    pub mx_port: u16,
    /// Connections at once to one destination (a recipient domain, or the
    /// smarthost).
    pub max_connections_per_domain: usize,
    /// Messages worked on at once.
    pub workers: usize,
    /// SMTP client timeouts.
    pub timeouts: Timeouts,
    /// How long a claim holds a message; an attempt is cut off before it ends. A
    /// crashed worker's messages are picked up again after it.
    pub lease: Duration,
    /// How often the queue is polled when nothing wakes the worker.
    pub poll_interval: Duration,
    /// Messages larger than this are returned in DSNs with their headers only (RFC
    /// 3461 §6.2 allows it).
    pub dsn_return_limit: usize,
    /// Sub-address separator, used to find the local account of a DSN's recipient
    /// (`ann+tag@example.org` → `ann@example.org`).
    pub subaddress_separator: Option<char>,
    /// How long `run` waits for deliveries in flight after it was told to stop; the
    /// rest are abandoned and retried after their lease.
    pub shutdown_grace: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            hostname: "localhost".into(),
            smarthost: None,
            retry: retry::default_schedule(),
            expire: Duration::from_secs(5 * 24 * 3600),
            dns_servers: Vec::new(),
            mx_port: 25,
            max_connections_per_domain: 4,
            workers: 16,
            timeouts: Timeouts::default(),
            lease: Duration::from_secs(20 * 60),
            poll_interval: Duration::from_secs(5),
            dsn_return_limit: 1 << 20,
            subaddress_separator: Some('+'),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Why the worker could not be built.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The DNS resolver could not be configured.
    #[error("DNS resolver: {0}")]
    Resolver(String),
    /// The TLS client configuration failed.
    #[error("TLS client: {0}")]
    Tls(String),
    /// A setting is out of range.
    #[error("queue configuration: {0}")]
    Config(String),
}
