//! The SMTP server of buudien: the inbound MX for its domains (port 25, RFC 5321) and
//! the message submission service for its users (ports 587 and 465, RFC 6409,
//! RFC 8314), with the extensions clients use: PIPELINING (RFC 2920), SIZE
//! (RFC 1870), 8BITMIME (RFC 6152), ENHANCEDSTATUSCODES (RFC 2034, RFC 3463),
//! SMTPUTF8 (RFC 6531), CHUNKING (RFC 3030, without BINARYMIME), DSN (RFC 3461),
//! STARTTLS (RFC 3207) and AUTH PLAIN/LOGIN (RFC 4954). One [`SmtpServer`] serves every
//! connection of a listener; [`SmtpServer::serve`] runs one connection to its end.
//!
//! # Layout
//! - this file: [`SmtpConfig`], [`Limits`], [`Mode`], [`SmtpServer`] and `serve`,
//!   which runs the session loop and swaps the transport for TLS (STARTTLS, or
//!   implicit TLS on 465).
//! - `session`: the per-connection state (`Session`, `Txn`; no stream type in it) and
//!   the generic `drive` loop (read line → parse → gate → dispatch → reply).
//! - `conn`: the bounded receive buffer, DATA and BDAT reading, the output buffer and
//!   the RFC 5321 §4.5.3.2 timeouts around one transport.
//! - `gate`: the command × state table, checked before dispatch.
//! - `cmd/`: one file per command group: `hello.rs` (greeting, EHLO, HELO),
//!   `mail.rs` (MAIL and the submission sender policy), `rcpt.rs` (RCPT: local
//!   recipients, relay control, quota), `data.rs` (DATA and BDAT), `auth.rs` (AUTH),
//!   `misc.rs` (RSET, NOOP, QUIT, VRFY, EXPN, HELP, STARTTLS).
//! - `deliver`: what happens to a received message: loop check, submission fixes
//!   (RFC 6409 §8), the From check, `Received` and `Return-Path`, one
//!   `QueueStore::submit`, the reply.
//! - `headers`: header-section scanning, the RFC 5322 address-list reader used by the
//!   From check, RFC 5322 dates, the `Received` field.
//!
//! # Invariants
//! - `250` to DATA or BDAT LAST is sent only after `QueueStore::submit` returned `Ok`:
//!   the local copies and the queued remote part are durable. Every failure gets a
//!   4xx or 5xx, never a `250` and a loss; a recipient found over quota only after the
//!   data gets a bounce (or the whole message a `452`), never a silent drop.
//! - No relay without authentication: a recipient in a domain that is not local, a
//!   source route, or a `%`/`!` local part is refused with `relay_denied_code 5.7.1`
//!   unless the session has authenticated (and AUTH exists only in submission modes).
//! - DATA ends only on `<CRLF>.<CRLF>`; a message with a bare CR or LF is refused,
//!   so the SMTP smuggling class (CVE-2023-51764) cannot make one DATA two messages.
//!   A BDAT message with a bare CR or LF is refused the same way, so none is stored
//!   or relayed.
//!   A BDAT chunk is always consumed exactly; a size that cannot be skipped closes the
//!   connection.
//! - Bytes the client sent after STARTTLS, before the handshake, are dropped unread,
//!   and the session forgets EHLO, AUTH and any transaction (RFC 3207 §4.2; the
//!   CVE-2011-0411 class).
//! - Every read is bounded ([`Limits`], `max_message_size`), every wait for the client
//!   ends after the RFC 5321 §4.5.3.2 timeouts, and [`SmtpServer::stop`] ends sessions
//!   waiting for a command with `421`.
//! - No password reaches a log line or a reply; unknown users cost the same Argon2
//!   work as known ones; failed logins are delayed by the shared [`FailureThrottle`].
//! - Nothing reachable from client input panics (no `unwrap`, `expect`, slice
//!   indexing on input).

#![forbid(unsafe_code)]

mod cmd;
mod conn;
mod deliver;
mod gate;
mod headers;
mod session;

use buudien_auth::{FailureThrottle, SaslServer};
use buudien_store::QueueStore;
use buudien_types::Load;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::Instrument;

use session::{Outcome, Session, TlsInfo};

/// Settings of the SMTP service.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// This server's name: in the greeting, the EHLO reply, `Received` and the
    /// `Message-ID`s it makes.
    pub hostname: String,
    /// Largest message accepted, in octets (`SIZE` in EHLO). `SIZE=` over it gets
    /// `552 5.3.4` at MAIL, data over it `552 5.3.4` after the data. Default 50 MiB.
    pub max_message_size: u64,
    /// Recipients per message; each RCPT over it gets `452 4.5.3` (RFC 5321
    /// §4.5.3.1.8). Default 1000; values under 100 act as 100 (the RFC's minimum).
    pub max_recipients: usize,
    /// Sub-address separator: `user+tag@domain` delivers to `user@domain` when the
    /// full address is unknown. `None` turns sub-addressing off. Default `'+'`.
    pub subaddress_separator: Option<char>,
    /// The reply code for a relay attempt: 550 (default) or 554 (both with 5.7.1).
    pub relay_denied_code: u16,
    /// Over quota: `false` (default) answers `452 4.2.2`, so the sender retries;
    /// `true` answers `552 5.2.2`, so it bounces at once.
    pub quota_permanent: bool,
    /// On submission, check that the `From:` header names the authenticated user the
    /// same way MAIL FROM is checked. Default on.
    pub check_from_header: bool,
    /// More `Received` fields than this means a loop: `554 5.4.6` (RFC 5321 §6.3).
    /// Default 100.
    pub max_received_headers: usize,
    /// Offer AUTH on submission connections that are neither TLS nor loopback.
    /// Off by default (RFC 4954 §4, RFC 8314 §4.1).
    pub allow_plaintext_auth: bool,
    /// Per-session limits.
    pub limits: Limits,
    /// The server's "under load" flag (set by the connection limiter): while it is
    /// set, submission clients that have not logged in and every port 25 client wait
    /// at most its shorter time for a command. [`Load::default`] is never set.
    pub load: Load,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            hostname: "localhost".to_owned(),
            max_message_size: 50 << 20,
            max_recipients: 1000,
            subaddress_separator: Some('+'),
            relay_denied_code: 550,
            quota_permanent: false,
            check_from_header: true,
            max_received_headers: 100,
            allow_plaintext_auth: false,
            limits: Limits::default(),
            load: Load::default(),
        }
    }
}

impl SmtpConfig {
    /// The recipient limit in force (never under 100, RFC 5321 §4.5.3.1.8).
    pub(crate) fn recipient_limit(&self) -> usize {
        self.max_recipients.max(100)
    }
}

/// Per-session limits (STYLE.md: limits are a struct, documented where they are
/// enforced: the `session::drive` loop, `conn`, `cmd::auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest command line, CRLF included. Default 2048; values under 512 act as 512
    /// (RFC 5321 §4.5.3.1.4). A longer line gets `500 5.5.2` and is skipped.
    pub max_command_line: usize,
    /// Longest SASL response line, CRLF included (RFC 4954 §4: at least 12 KiB of
    /// response). Default enough for [`SaslServer::MAX_RESPONSE`] octets.
    pub max_sasl_line: usize,
    /// Error replies (syntax, sequence, unknown command) after which the session is
    /// closed with `421`. Default 20; 0 acts as 1.
    pub max_bad_commands: u32,
    /// NOOP, RSET, VRFY, EXPN and HELP without a message accepted in between, after
    /// which the session is closed with `421` (Postfix's junk command limit).
    /// Default 100; 0 acts as 1.
    pub max_junk_commands: u32,
    /// Failed AUTH attempts in one session after which it is closed. Default 3.
    pub max_auth_failures: u32,
    /// Largest header section of a received message (the octets before the empty
    /// line); a larger one is refused with `552 5.3.4`. Default 1 MiB.
    pub max_header_size: usize,
    /// Most header fields in a received message; more are refused with `552 5.3.4`.
    /// Default 10,000 (the number `buudien-message` parses for SEARCH and FETCH).
    pub max_header_fields: usize,
    /// How long the server waits for the next command (RFC 5321 §4.5.3.2.7: at least
    /// 5 minutes), and for the client to take a reply. Default 5 minutes.
    pub command_timeout: Duration,
    /// How long the server waits for more message data, DATA or BDAT (RFC 5321
    /// §4.5.3.2.7). Default 5 minutes.
    pub data_timeout: Duration,
    /// On the submission ports, how long a client may take to log in: each wait for
    /// a command before AUTH succeeded. Default 3 minutes (as Dovecot's login
    /// processes); port 25 keeps the RFC 5321 timeouts, since it has no login.
    pub preauth_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_command_line: buudien_smtp_proto::DEFAULT_MAX_COMMAND_LINE,
            max_sasl_line: SaslServer::MAX_ENCODED + 2,
            max_bad_commands: 20,
            max_junk_commands: 100,
            max_auth_failures: 3,
            max_header_size: 1 << 20,
            max_header_fields: 10_000,
            command_timeout: Duration::from_secs(5 * 60),
            data_timeout: Duration::from_secs(5 * 60),
            preauth_timeout: Duration::from_secs(3 * 60),
        }
    }
}

/// Which service a listener offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Port 25: the MX for local domains. No AUTH; only local recipients.
    Inbound,
    /// Port 587 (RFC 6409): STARTTLS, then AUTH before MAIL.
    Submission,
    /// Port 465 (RFC 8314 §3.3): implicit TLS, AUTH before MAIL.
    Submissions,
}

impl Mode {
    /// True for the submission services, where AUTH is offered and required.
    pub(crate) fn is_submission(self) -> bool {
        matches!(self, Mode::Submission | Mode::Submissions)
    }
}

/// The SMTP service: the store, the settings and the shared failed-login throttle.
/// Cloning is cheap (one `Arc`).
pub struct SmtpServer<S: QueueStore> {
    shared: Arc<Shared<S>>,
}

impl<S: QueueStore> Clone for SmtpServer<S> {
    fn clone(&self) -> Self {
        SmtpServer {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// What every session of one server reads.
pub(crate) struct Shared<S> {
    /// The store of truth (mailboxes and the queue).
    pub(crate) store: S,
    /// Settings.
    pub(crate) config: SmtpConfig,
    /// Failed-login counts per client address (shared with other protocols).
    pub(crate) throttle: Arc<FailureThrottle>,
    /// Set to true when the server stops: sessions waiting for a command end.
    pub(crate) stopping: tokio::sync::watch::Sender<bool>,
    /// Called after a message (or a bounce) was queued, to wake the queue worker.
    queued: std::sync::OnceLock<QueuedHook>,
}

/// What [`SmtpServer::on_queued`] installs.
type QueuedHook = Arc<dyn Fn() + Send + Sync>;

impl<S> Shared<S> {
    /// Tells the queue worker that new work is there (no-op without a hook).
    pub(crate) fn notify_queued(&self) {
        if let Some(hook) = self.queued.get() {
            hook();
        }
    }
}

/// Numbers sessions for the log.
static SESSION_IDS: AtomicU64 = AtomicU64::new(1);

impl<S: QueueStore> SmtpServer<S> {
    /// A server over `store` with `config`; `throttle` is shared with the other
    /// protocols so that failures anywhere count against the client address.
    pub fn new(store: S, config: SmtpConfig, throttle: Arc<FailureThrottle>) -> Self {
        SmtpServer {
            shared: Arc::new(Shared {
                store,
                config,
                throttle,
                stopping: tokio::sync::watch::Sender::new(false),
                queued: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Begins a graceful stop: every session waiting for the client's next command
    /// says `421 4.3.2` and closes; a message being received or stored finishes first
    /// (its reply is sent).
    pub fn stop(&self) {
        self.shared.stopping.send_replace(true);
    }

    /// Installs what to call right after a message was queued for remote delivery
    /// (the queue worker's wake-up), so that outbound mail leaves at once instead of
    /// at the worker's next scan. Only the first call takes effect.
    pub fn on_queued(&self, hook: impl Fn() + Send + Sync + 'static) {
        let _ = self.shared.queued.set(Arc::new(hook));
    }

    /// The settings in use.
    pub fn config(&self) -> &SmtpConfig {
        &self.shared.config
    }

    /// Runs one connection to its end.
    ///
    /// - `mode` is the listener's service.
    /// - `secure` is true when `io` is already TLS (the caller did the handshake).
    /// - `tls` is the acceptor for STARTTLS (plain connections), or, with
    ///   [`Mode::Submissions`] and `secure` false, for the implicit-TLS handshake,
    ///   which then runs here first (so `Received` can name the TLS version and
    ///   cipher, which an already-TLS `io` hides).
    ///
    /// After STARTTLS (RFC 3207 §4) the handshake runs on `io` and the session goes on
    /// over the TLS stream with a fresh receive buffer: anything the client pipelined
    /// after `STARTTLS` is discarded. A failed handshake ends the connection.
    pub async fn serve<IO>(
        &self,
        io: IO,
        peer: SocketAddr,
        mode: Mode,
        secure: bool,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let id = SESSION_IDS.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("smtp", session = id, %peer, ?mode);
        self.run(io, peer, mode, secure, tls).instrument(span).await;
    }

    /// The body of [`SmtpServer::serve`], inside its span.
    async fn run<IO>(
        &self,
        mut io: IO,
        peer: SocketAddr,
        mode: Mode,
        secure: bool,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let shared = &*self.shared;
        tracing::debug!(secure, "connection opened");
        if mode == Mode::Submissions && !secure {
            match tls {
                Some(acceptor) => {
                    // RFC 8314 §3.3: the TLS handshake comes first, then the greeting.
                    let mut session = Session::new(shared, peer, mode, false, false);
                    over_tls(&mut session, acceptor, io).await;
                }
                None => {
                    tracing::warn!("implicit-TLS listener without a certificate; closing");
                    shutdown(&mut io, shared.config.limits.command_timeout).await;
                }
            }
            return;
        }
        let mut session = Session::new(shared, peer, mode, secure, tls.is_some() && !secure);
        let outcome = session::drive(&mut session, &mut io).await;
        match (outcome, tls) {
            (Outcome::StartTls, Some(acceptor)) => over_tls(&mut session, acceptor, io).await,
            (outcome, _) => {
                tracing::debug!(?outcome, "session ended");
                shutdown(&mut io, shared.config.limits.command_timeout).await;
            }
        }
    }
}

/// Runs the TLS handshake on `io`, then the session over the TLS stream (after
/// STARTTLS, or for implicit TLS).
async fn over_tls<S, IO>(session: &mut Session<'_, S>, acceptor: tokio_rustls::TlsAcceptor, io: IO)
where
    S: QueueStore,
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let timeout = session.shared.config.limits.command_timeout;
    match tokio::time::timeout(timeout, acceptor.accept(io)).await {
        Ok(Ok(mut tls_io)) => {
            let info = {
                let (_, conn) = tls_io.get_ref();
                TlsInfo::of(conn)
            };
            tracing::debug!(version = %info.version, cipher = %info.cipher, "TLS established");
            session.tls_established(info);
            let outcome = session::drive(session, &mut tls_io).await;
            tracing::debug!(?outcome, "session ended");
            shutdown(&mut tls_io, timeout).await;
        }
        Ok(Err(e)) => tracing::info!(error = %e, "TLS handshake failed"),
        Err(_) => tracing::info!("TLS handshake timed out"),
    }
}

/// Best-effort orderly close of the transport (TLS close_notify, TCP FIN).
async fn shutdown<IO: AsyncWrite + Unpin>(io: &mut IO, timeout: Duration) {
    let limit = timeout.min(conn::FINAL_WRITE_TIMEOUT);
    let _ = tokio::time::timeout(limit, io.shutdown()).await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = SmtpConfig::default();
        assert_eq!(c.max_message_size, 50 * 1024 * 1024);
        assert_eq!(c.max_recipients, 1000);
        assert_eq!(c.subaddress_separator, Some('+'));
        assert_eq!(c.relay_denied_code, 550);
        assert!(!c.quota_permanent && c.check_from_header && !c.allow_plaintext_auth);
        assert_eq!(c.max_received_headers, 100);
        assert_eq!(c.limits.max_command_line, 2048);
        assert_eq!(c.limits.max_header_size, 1 << 20);
        assert_eq!(c.limits.max_header_fields, 10_000);
        assert!(c.limits.max_sasl_line >= 12 * 1024 * 4 / 3);
        assert_eq!(c.limits.max_bad_commands, 20);
        assert_eq!(c.limits.command_timeout, Duration::from_secs(300));
        let small = SmtpConfig {
            max_recipients: 5,
            ..SmtpConfig::default()
        };
        assert_eq!(small.recipient_limit(), 100);
        assert!(Mode::Submission.is_submission() && !Mode::Inbound.is_submission());
    }
}
