//! The POP3 server of buudien (RFC 1939) with the extensions its clients use: CAPA and
//! response codes (RFC 2449, RFC 3206), STLS (RFC 2595), SASL AUTH PLAIN/LOGIN
//! (RFC 5034) and UTF8 (RFC 6856). One [`Pop3Server`] serves every connection of a
//! listener; [`Pop3Server::serve`] runs one connection to its end.
//!
//! # Layout
//! - this file: [`Pop3Config`], [`Limits`], [`Pop3Server`] and `serve`, which runs the
//!   session loop and swaps the transport for TLS after STLS.
//! - `session`: the per-connection state (`Session`, no stream type in it), the
//!   AUTHORIZATION / TRANSACTION states and the generic `drive` loop
//!   (read line → parse → gate → dispatch → reply).
//! - `conn`: the bounded receive buffer, the output buffer and the idle timeout around
//!   one transport.
//! - `gate`: the command × state table, checked before dispatch.
//! - `cmd/auth.rs`: USER, PASS, APOP, AUTH and the shared login path (throttle,
//!   password check, maildrop lock, snapshot).
//! - `cmd/transaction.rs`: STAT, LIST, UIDL, RETR, TOP, DELE, RSET, NOOP.
//! - `cmd/misc.rs`: greeting, CAPA, UTF8, STLS, QUIT (and the UPDATE state).
//!
//! # Invariants
//! - Every read is bounded: a command line is at most [`MAX_COMMAND_LINE`] octets
//!   (RFC 2449 §4), a SASL line at most [`MAX_SASL_LINE`]; the receive buffer never
//!   holds more than the current line limit plus one read (4 KiB). An over-long line
//!   gets `-ERR line too long` and the session resynchronises on the next line.
//! - Every wait for the client (reads and writes) ends after
//!   [`Pop3Config::idle_timeout`]; a timed-out or dropped session never enters UPDATE,
//!   so nothing is deleted unless the client sent QUIT.
//! - The maildrop snapshot (which pins its blobs) and the maildrop lock live exactly as
//!   long as the session, however it ends; message numbers are fixed for the session.
//! - Bytes the client sent after STLS, before the TLS handshake, are dropped unread
//!   (RFC 2595 §4; the CVE-2011-0411 class of command injection).
//! - No password reaches a log line or a reply; unknown users cost the same Argon2
//!   work as known ones; failed logins are delayed by the shared [`FailureThrottle`].
//! - Nothing reachable from client input panics (no `unwrap`, `expect`, slice
//!   indexing on input).
//! - Sizes: a message with raw UTF-8 header fields (`MaildropEntry::surrogate_size` is
//!   `Some`) is served as its ASCII surrogate ([`buudien_message::downgrade`]) and
//!   listed with the surrogate's size, unless the session enabled UTF8 (RFC 6856 §2.1,
//!   RFC 6855 §7); STAT, LIST and RETR always agree.
//!
//! [`MAX_COMMAND_LINE`]: buudien_pop3_proto::MAX_COMMAND_LINE
//! [`MAX_SASL_LINE`]: buudien_pop3_proto::MAX_SASL_LINE

#![forbid(unsafe_code)]

mod cmd;
mod conn;
mod gate;
mod session;

use buudien_auth::FailureThrottle;
use buudien_store::{AccountId, MailStore};
use buudien_types::Load;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::Instrument;

use session::{Outcome, Session};

/// Settings of the POP3 service.
#[derive(Debug, Clone)]
pub struct Pop3Config {
    /// The host name in the APOP timestamp of the greeting.
    pub hostname: String,
    /// How long the server waits for the client (a command line, or for the client to
    /// take a response) before it closes the session without UPDATE. RFC 1939 §3
    /// requires at least 10 minutes; the default is 10 minutes.
    pub idle_timeout: Duration,
    /// How long a client may take to log in: each wait in the AUTHORIZATION state.
    /// 3 minutes, as Dovecot — shorter than RFC 1939 §3's 10-minute autologout, on
    /// purpose: connections that never log in must not pile up.
    pub preauth_timeout: Duration,
    /// Offer APOP (RFC 1939 §7): the greeting carries a timestamp and `APOP` checks
    /// the account's separate APOP secret. Off by default (MD5, secret kept in clear).
    pub apop: bool,
    /// Allow USER/PASS and AUTH over a connection that is neither TLS nor loopback.
    /// Off by default (RFC 2595 §2.3).
    pub allow_plaintext_auth: bool,
    /// Take the exclusive maildrop lock at login (RFC 1939 §8); a second session gets
    /// `-ERR [IN-USE]` (RFC 2449 §8.1.2). On by default.
    pub lock_session: bool,
    /// Minimum time between two logins of one account, advertised as `LOGIN-DELAY`
    /// and enforced with `-ERR [LOGIN-DELAY]` (RFC 2449 §6.5, §8.1.1). None by default.
    pub login_delay: Option<Duration>,
    /// Per-session limits.
    pub limits: Limits,
    /// The server's "under load" flag (set by the connection limiter): while it is
    /// set, each wait in the AUTHORIZATION state lasts at most its shorter time.
    /// [`Load::default`] is never set.
    pub load: Load,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            hostname: "localhost".to_owned(),
            idle_timeout: Duration::from_secs(10 * 60),
            preauth_timeout: Duration::from_secs(180),
            apop: false,
            allow_plaintext_auth: false,
            lock_session: true,
            login_delay: None,
            limits: Limits::default(),
            load: Load::default(),
        }
    }
}

/// Per-session limits, enforced in the session loop (`session::drive`) and the login
/// path (`cmd::auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Consecutive bad commands (unknown, malformed, too long, not allowed in the
    /// current state) after which the session is closed with
    /// `-ERR too many bad commands`. Default 10; 0 acts as 1.
    pub max_bad_commands: u32,
    /// Failed logins in one session after which it is closed. Default 3; 0 acts as 1.
    pub max_auth_failures: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bad_commands: 10,
            max_auth_failures: 3,
        }
    }
}

/// The POP3 service: the store, the settings and the shared failed-login throttle.
/// Cloning is cheap (one `Arc`), and it can also be shared in an `Arc`.
pub struct Pop3Server<S: MailStore> {
    shared: Arc<Shared<S>>,
}

impl<S: MailStore> Clone for Pop3Server<S> {
    fn clone(&self) -> Self {
        Pop3Server {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// What every session of one server reads.
pub(crate) struct Shared<S> {
    /// The store of truth.
    pub(crate) store: S,
    /// Settings.
    pub(crate) config: Pop3Config,
    /// Failed-login counts per client address (shared with other protocols).
    pub(crate) throttle: Arc<FailureThrottle>,
    /// Last successful login per account, for LOGIN-DELAY (only filled when
    /// `config.login_delay` is set; entries older than the delay are pruned).
    last_login: Mutex<HashMap<AccountId, Instant>>,
    /// Last value used in an APOP timestamp, so that every greeting is unique.
    clock: AtomicU64,
    /// Set to true when the server stops: sessions waiting for a command end.
    pub(crate) stopping: tokio::sync::watch::Sender<bool>,
}

/// Numbers sessions for the log.
static SESSION_IDS: AtomicU64 = AtomicU64::new(1);

impl<S: MailStore> Pop3Server<S> {
    /// A server over `store` with `config`; `throttle` is shared with the other
    /// protocols so that failures anywhere count against the client address.
    pub fn new(store: S, config: Pop3Config, throttle: Arc<FailureThrottle>) -> Self {
        Pop3Server {
            shared: Arc::new(Shared {
                store,
                config,
                throttle,
                last_login: Mutex::new(HashMap::new()),
                clock: AtomicU64::new(0),
                stopping: tokio::sync::watch::Sender::new(false),
            }),
        }
    }

    /// Begins a graceful stop: every session that is waiting for the client's next
    /// command says `-ERR [SYS/TEMP] server shutting down` and closes without UPDATE
    /// (nothing is deleted); a command in progress (a RETR being sent) finishes first.
    pub fn stop(&self) {
        self.shared.stopping.send_replace(true);
    }

    /// The settings in use.
    pub fn config(&self) -> &Pop3Config {
        &self.shared.config
    }

    /// Runs one connection to its end. `tls` is `Some(acceptor)` when STLS may be
    /// offered (plain port with a certificate). `secure` is true when `io` is already
    /// TLS (pop3s, RFC 8314 §3.1).
    ///
    /// After STLS (RFC 2595 §4) the handshake runs on `io` and the session goes on over
    /// the TLS stream with a fresh receive buffer: anything the client pipelined after
    /// `STLS` is discarded. A failed handshake ends the connection.
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
        let span = tracing::info_span!("pop3", session = id, %peer);
        self.run(io, peer, secure, tls).instrument(span).await;
    }

    /// The body of [`Pop3Server::serve`], inside its span.
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
        tracing::debug!(secure, "connection opened");
        let mut session = Session::new(shared, peer, secure, tls.is_some());
        let outcome = session::drive(&mut session, &mut io).await;
        match (outcome, tls) {
            (Outcome::StartTls, Some(acceptor)) => {
                match tokio::time::timeout(timeout, acceptor.accept(io)).await {
                    Ok(Ok(mut tls_io)) => {
                        tracing::debug!("TLS established");
                        session.tls_established();
                        let outcome = session::drive(&mut session, &mut tls_io).await;
                        tracing::debug!(?outcome, "session ended");
                        shutdown(&mut tls_io, timeout).await;
                    }
                    Ok(Err(e)) => tracing::info!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::info!("TLS handshake timed out"),
                }
            }
            (outcome, _) => {
                tracing::debug!(?outcome, "session ended");
                shutdown(&mut io, timeout).await;
            }
        }
        // The session (maildrop snapshot, lock) drops here, after the last reply.
        drop(session);
    }
}

impl<S> Shared<S> {
    /// A new APOP timestamp `<pid.clock@hostname>` (RFC 1939 §7); `clock` is the time
    /// in nanoseconds, bumped so that no two greetings of this process share it.
    pub(crate) fn apop_timestamp(&self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let prev = self
            .clock
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(now.max(last.saturating_add(1)))
            })
            .unwrap_or(now);
        let clock = now.max(prev.saturating_add(1));
        format!(
            "<{}.{}@{}>",
            std::process::id(),
            clock,
            self.config.hostname
        )
    }

    /// LOGIN-DELAY (RFC 2449 §8.1.1): true when `account` logged in less than
    /// `login_delay` before `now`.
    pub(crate) fn login_too_soon(&self, account: AccountId, now: Instant) -> bool {
        let Some(delay) = self.config.login_delay else {
            return false;
        };
        self.last_login_map()
            .get(&account)
            .is_some_and(|last| now.saturating_duration_since(*last) < delay)
    }

    /// Records a successful login for LOGIN-DELAY, dropping entries that no longer
    /// matter (so the map holds only accounts that logged in within the delay).
    pub(crate) fn record_login(&self, account: AccountId, now: Instant) {
        let Some(delay) = self.config.login_delay else {
            return;
        };
        let mut map = self.last_login_map();
        map.retain(|_, last| now.saturating_duration_since(*last) < delay);
        map.insert(account, now);
    }

    /// The LOGIN-DELAY map, even after a panic elsewhere poisoned its lock.
    fn last_login_map(&self) -> MutexGuard<'_, HashMap<AccountId, Instant>> {
        self.last_login
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
    use buudien_auth::ThrottleConfig;

    fn shared(config: Pop3Config) -> Shared<()> {
        Shared {
            store: (),
            config,
            throttle: Arc::new(FailureThrottle::new(ThrottleConfig::default())),
            last_login: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(0),
            stopping: tokio::sync::watch::Sender::new(false),
        }
    }

    #[test]
    fn defaults() {
        let c = Pop3Config::default();
        assert_eq!(c.idle_timeout, Duration::from_secs(600));
        assert!(c.lock_session && !c.apop && !c.allow_plaintext_auth);
        assert_eq!(c.login_delay, None);
        assert_eq!(c.limits.max_bad_commands, 10);
        assert_eq!(c.limits.max_auth_failures, 3);
    }

    #[test]
    fn apop_timestamps_are_unique() {
        let s = shared(Pop3Config {
            hostname: "pop.example.org".into(),
            ..Pop3Config::default()
        });
        let stamps: Vec<String> = (0..1000).map(|_| s.apop_timestamp()).collect();
        let mut unique = stamps.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), stamps.len());
        let first = &stamps[0];
        assert!(
            first.starts_with(&format!("<{}.", std::process::id())),
            "{first}"
        );
        assert!(first.ends_with("@pop.example.org>"), "{first}");
    }

    #[test]
    fn login_delay_bookkeeping() {
        let now = Instant::now();
        let off = shared(Pop3Config::default());
        off.record_login(1, now);
        assert!(!off.login_too_soon(1, now));
        assert!(off.last_login_map().is_empty());

        let on = shared(Pop3Config {
            login_delay: Some(Duration::from_secs(60)),
            ..Pop3Config::default()
        });
        assert!(!on.login_too_soon(1, now));
        on.record_login(1, now);
        assert!(on.login_too_soon(1, now + Duration::from_secs(59)));
        assert!(!on.login_too_soon(2, now));
        assert!(!on.login_too_soon(1, now + Duration::from_secs(60)));
        // Stale entries are pruned when another login is recorded.
        on.record_login(2, now + Duration::from_secs(61));
        assert_eq!(on.last_login_map().len(), 1);
    }
}
