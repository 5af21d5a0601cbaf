//! The IMAP server of buudien: IMAP4rev2 (RFC 9051) with IMAP4rev1 (RFC 3501)
//! compatibility. One [`ImapServer`] serves every connection of a listener;
//! [`ImapServer::serve`] runs one connection to its end. Every command of RFC 9051
//! in every state, with the extensions the CAPABILITY list names (CONDSTORE/QRESYNC,
//! ESEARCH/SEARCHRES, LIST-EXTENDED/LIST-STATUS/SPECIAL-USE, BINARY, MULTIAPPEND,
//! QUOTA, UTF8=ACCEPT, SASL-IR with PLAIN, LOGIN and SCRAM-SHA-256, IDLE…).
//!
//! # Layout
//! - this file: [`ImapConfig`], [`ImapServer`] and `serve`, which runs the session
//!   loop and swaps the transport for TLS after STARTTLS (RFC 9051 §6.2.1).
//! - `session`: the per-connection state (`Session`, no stream type in it), the
//!   command × state gate and `dispatch`, which hands each command to its handler.
//! - `drive`: the loop over one transport (read → frame with `CommandFramer` →
//!   dispatch → reply), bounded writes and blob streaming.
//! - `cmd/<family>.rs`: the command handlers (auth, select, list, lsub, misc, quota,
//!   append, fetch, search, store), each an `impl Session` block citing the RFC
//!   section it implements.
//! - `fetch_body`: what FETCH sends for body items (byte ranges of the blob, or
//!   prepared bytes for HEADER.FIELDS, BINARY and the ASCII surrogate).
//! - `idle`: IDLE, woken by the store's change counter.
//! - `spool`: where APPEND literals wait for the command to complete.
//! - `reply`: the small tagged/untagged line writers and LIST pattern matching.
//! - `selected`: the compact snapshot of the selected mailbox (UID, flags, keyword
//!   set, MODSEQ per message; sequence numbers are positions), the change report
//!   (`apply`) and the flag conversions between the store and the wire.
//!
//! # Invariants
//! - Every read is bounded: the framer holds at most one command's text and buffered
//!   literals (`buudien_imap_proto::Limits`); an APPEND literal is accepted only up
//!   to [`ImapConfig::max_append`] (RFC 7889) and refused with `NO [TOOBIG]` before
//!   any of its octets is read.
//! - Every wait for the client ends after [`ImapConfig::idle_timeout`] (RFC 9051
//!   §5.4: at least 30 minutes; before login [`ImapConfig::preauth_timeout`]) or
//!   when [`ImapServer::stop`] is called.
//! - Bytes the client sent after STARTTLS, before the TLS handshake, are dropped
//!   unread: the session goes on over the TLS stream with a fresh receive buffer and
//!   framer (RFC 9051 §6.2.1; the CVE-2011-0411 class of command injection).
//! - FETCH of a whole message never holds it in memory: the literal header (with the
//!   stored exact size) is written, then the blob is copied straight to the
//!   transport; a blob that cannot deliver exactly that many octets ends the session.
//! - Sequence numbers are those of the session's snapshot: they change only when the
//!   session reports `EXPUNGE` / `VANISHED` / `EXISTS` (at NOOP, IDLE, EXPUNGE, MOVE,
//!   APPEND, SELECT), never during FETCH, STORE or SEARCH (RFC 9051 §7.5.1).
//! - Changes reach a session from the store's delta after the MODSEQ it last
//!   reported (`MailboxStore::delta`), never by rescanning the mailbox; an IDLE
//!   session wakes on `MailboxStore::watch_mailbox` (its own mailbox only).
//! - A session's memory is its snapshot (24 octets a message), its line buffers and
//!   at most `spool::MEMORY_BUDGET` octets of APPEND data; larger APPEND literals
//!   wait in one unnamed temporary file.
//! - ENVELOPE and BODYSTRUCTURE come from the structure stored at delivery; a
//!   session without UTF-8 gets the ASCII surrogate of a message with raw UTF-8
//!   headers (its size, structure and bytes), never raw 8-bit header octets.
//! - No password reaches a log line or a reply; unknown users cost the same Argon2
//!   work as known ones; failed logins are delayed by the shared [`FailureThrottle`].
//! - Nothing reachable from client input panics (no `unwrap`, `expect`, slice
//!   indexing on input); a client sending 10 unparsable commands in a row is cut off.

#![forbid(unsafe_code)]

mod cmd;
mod drive;
mod fetch_body;
mod idle;
mod reply;
mod selected;
mod session;
mod spool;

use buudien_auth::FailureThrottle;
use buudien_store::MailboxStore;
use buudien_types::Load;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::Instrument;

use session::{Outcome, Session};

/// Settings of the IMAP service.
#[derive(Debug, Clone)]
pub struct ImapConfig {
    /// The host name in the greeting.
    pub hostname: String,
    /// How long the server waits for the client before it closes the session.
    /// RFC 9051 §5.4 asks for at least 30 minutes; the default is 30 minutes.
    pub idle_timeout: Duration,
    /// How long a client may take to log in: the wait for each command before
    /// authentication (and for the TLS handshake). Shorter than `idle_timeout` so that
    /// connections that never log in do not pile up; 3 minutes, as Dovecot.
    pub preauth_timeout: Duration,
    /// Allow LOGIN and AUTHENTICATE over a connection that is neither TLS nor
    /// loopback (otherwise `LOGINDISABLED`, RFC 9051 §6.2.3). Off by default.
    pub allow_plaintext_auth: bool,
    /// Largest message APPEND takes, advertised as `APPENDLIMIT` (RFC 7889).
    /// 50 MiB by default.
    pub max_append: u64,
    /// Where APPEND literals too large to keep in memory wait for the command to
    /// complete (an unnamed temporary file); the system's temporary directory when
    /// `None`. The binary uses the data directory's `tmp/`.
    pub spool_dir: Option<std::path::PathBuf>,
    /// Advertise `LITERAL+` (non-synchronizing literals of any size) instead of
    /// `LITERAL-` (only up to 4096 octets), RFC 7888 §5. Off by default.
    pub literal_plus: bool,
    /// The server's "under load" flag: while it is set, a client that has not logged
    /// in waits at most its shorter time for each command (set by the connection
    /// limiter; [`Load::default`] is never set).
    pub load: Load,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            hostname: "localhost".to_owned(),
            idle_timeout: Duration::from_secs(30 * 60),
            preauth_timeout: Duration::from_secs(180),
            allow_plaintext_auth: false,
            max_append: 50 * 1024 * 1024,
            spool_dir: None,
            literal_plus: false,
            load: Load::default(),
        }
    }
}

/// The IMAP service: the store, the settings and the shared failed-login throttle.
/// Cloning is cheap (one `Arc`).
pub struct ImapServer<S: MailboxStore> {
    shared: Arc<Shared<S>>,
}

impl<S: MailboxStore> Clone for ImapServer<S> {
    fn clone(&self) -> Self {
        ImapServer {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// What every session of one server reads.
pub(crate) struct Shared<S> {
    /// The store of truth.
    pub(crate) store: S,
    /// Settings.
    pub(crate) config: ImapConfig,
    /// Failed-login counts per client address (shared with other protocols).
    pub(crate) throttle: Arc<FailureThrottle>,
    /// Set to true when the server stops: sessions waiting for a command end.
    pub(crate) stopping: tokio::sync::watch::Sender<bool>,
    /// Bounds how many idling sessions look for their changes at once: one commit
    /// wakes every IDLE session of the process, and each reads its delta from the
    /// store; the rest wait their turn instead of piling onto the database.
    pub(crate) idle_checks: tokio::sync::Semaphore,
}

/// Idling sessions that read their changes at the same time (see `Shared`).
const IDLE_CHECKS: usize = 16;

/// Numbers sessions for the log.
static SESSION_IDS: AtomicU64 = AtomicU64::new(1);

/// Longest wait for the last words to a client that is going away.
pub(crate) const FINAL_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

impl<S: MailboxStore> ImapServer<S> {
    /// A server over `store` with `config`; `throttle` is shared with the other
    /// protocols so that failures anywhere count against the client address.
    pub fn new(store: S, config: ImapConfig, throttle: Arc<FailureThrottle>) -> Self {
        ImapServer {
            shared: Arc::new(Shared {
                store,
                config,
                throttle,
                stopping: tokio::sync::watch::Sender::new(false),
                idle_checks: tokio::sync::Semaphore::new(IDLE_CHECKS),
            }),
        }
    }

    /// Begins a graceful stop: every session waiting for the client's next command
    /// says `* BYE server shutting down` and closes; a command in progress finishes.
    pub fn stop(&self) {
        self.shared.stopping.send_replace(true);
    }

    /// The settings in use.
    pub fn config(&self) -> &ImapConfig {
        &self.shared.config
    }

    /// Runs one connection to its end. `tls` is `Some(acceptor)` when STARTTLS may be
    /// offered; `secure` is true when `io` is already TLS (imaps, RFC 8314 §3.1).
    pub async fn serve<IO>(
        &self,
        io: IO,
        peer: SocketAddr,
        secure: bool,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let id = SESSION_IDS.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("imap", session = id, %peer);
        self.run(io, peer, secure, tls).instrument(span).await;
    }

    /// The body of [`ImapServer::serve`], inside its span.
    async fn run<IO>(
        &self,
        mut io: IO,
        peer: SocketAddr,
        secure: bool,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let shared = &*self.shared;
        let timeout = shared
            .config
            .preauth_timeout
            .min(shared.config.idle_timeout);
        let mut session = Session::new(shared, peer, secure, tls.is_some() && !secure);
        let outcome = drive::drive(&mut session, &mut io, true).await;
        match (outcome, tls) {
            // Boxed: the TLS stream and its handshake take several KiB, which only
            // the sessions that use STARTTLS should carry.
            (Outcome::StartTls, Some(acceptor)) => {
                Box::pin(starttls(&mut session, io, acceptor, timeout)).await
            }
            (outcome, _) => {
                tracing::debug!(?outcome, "session ended");
                shutdown(&mut io, timeout).await;
            }
        }
    }
}

/// The rest of a session after `STARTTLS` was accepted (RFC 9051 §6.2.1): the
/// handshake, bounded by `timeout`, then the session over TLS.
async fn starttls<S, IO>(
    session: &mut Session<'_, S>,
    io: IO,
    acceptor: tokio_rustls::TlsAcceptor,
    timeout: Duration,
) where
    S: MailboxStore,
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    match tokio::time::timeout(timeout, acceptor.accept(io)).await {
        Ok(Ok(mut tls_io)) => {
            session.tls_established();
            let outcome = drive::drive(session, &mut tls_io, false).await;
            tracing::debug!(?outcome, "session ended");
            shutdown(&mut tls_io, timeout).await;
        }
        Ok(Err(e)) => tracing::info!(error = %e, "TLS handshake failed"),
        Err(_) => tracing::info!("TLS handshake timed out"),
    }
}

/// Best-effort orderly close of the transport.
async fn shutdown<IO: AsyncWrite + Unpin>(io: &mut IO, timeout: Duration) {
    let limit = timeout.min(FINAL_WRITE_TIMEOUT);
    let _ = tokio::time::timeout(limit, io.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = ImapConfig::default();
        assert_eq!(c.idle_timeout, Duration::from_secs(1800));
        assert_eq!(c.max_append, 50 * 1024 * 1024);
        assert!(!c.allow_plaintext_auth);
        assert!(!c.literal_plus);
    }
}
