//! One POP3 session: its state (no stream type in it) and the loop that drives it over
//! a transport (RFC 1939 §3: AUTHORIZATION → TRANSACTION → UPDATE).

use crate::Shared;
use crate::cmd::{auth, misc, transaction};
use crate::conn::{Conn, ConnError, Input};
use crate::gate::{self, Phase};
use buudien_pop3_proto::{Command, MAX_COMMAND_LINE, RespCode, response};
use buudien_store::{Guard, MailStore, Maildrop, MaildropEntry};
use buudien_types::Address;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite};

/// How a run of [`drive`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The client sent QUIT (and UPDATE ran if it was in TRANSACTION).
    Quit,
    /// The connection ended otherwise: dropped, timed out, refused; no UPDATE.
    Closed,
    /// STLS was accepted and `+OK` sent: the caller runs the TLS handshake.
    StartTls,
}

/// What a command handler tells the loop.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// The reply is written; read the next command.
    Next,
    /// A bad command: the loop writes `-ERR` with this text and counts it towards
    /// [`crate::Limits::max_bad_commands`].
    Bad(String),
    /// The reply is written; close the connection.
    Close,
    /// QUIT is done; close the connection.
    Quit,
    /// `+OK` to STLS is written; hand over to TLS.
    StartTls,
}

/// The state of one session.
pub(crate) struct Session<'a, S> {
    /// The server's store, settings and throttle.
    pub(crate) shared: &'a Shared<S>,
    /// The client.
    pub(crate) peer: SocketAddr,
    /// The transport is TLS (pop3s, or after STLS).
    pub(crate) secure: bool,
    /// A TLS acceptor is available for STLS.
    pub(crate) tls_available: bool,
    /// The APOP timestamp of the greeting (RFC 1939 §7), when APOP is on.
    pub(crate) timestamp: Option<String>,
    /// The client enabled UTF-8 mode (RFC 6856 §2.1).
    pub(crate) utf8: bool,
    /// The greeting has been sent.
    pub(crate) greeted: bool,
    /// The name from USER, waiting for PASS (RFC 1939 §7).
    pub(crate) pending_user: Option<String>,
    /// Consecutive bad commands.
    pub(crate) bad_commands: u32,
    /// Failed logins in this session.
    pub(crate) auth_failures: u32,
    /// AUTHORIZATION or TRANSACTION.
    pub(crate) state: State,
}

/// The session's RFC 1939 state.
pub(crate) enum State {
    /// Not logged in yet.
    Authorization,
    /// Logged in with the maildrop open.
    Transaction(Box<Txn>),
}

/// A session's open maildrop.
pub(crate) struct Txn {
    /// The account logged in.
    pub(crate) account: Address,
    /// The snapshot taken at login; message n is `entries[n - 1]` for the whole session.
    pub(crate) maildrop: Maildrop,
    /// Messages marked by DELE, by index.
    pub(crate) deleted: Vec<bool>,
    /// The maildrop lock (RFC 1939 §8), released when the session ends.
    pub(crate) _lock: Option<Guard>,
}

/// Why a message number does not name a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MsgError {
    /// Out of range.
    NoSuch,
    /// Marked as deleted (RFC 1939 §5: "may NOT refer to a message marked as deleted").
    Deleted,
}

impl Txn {
    /// A transaction over `maildrop`, nothing deleted yet.
    pub(crate) fn new(account: Address, maildrop: Maildrop, lock: Option<Guard>) -> Self {
        let deleted = vec![false; maildrop.entries.len()];
        Txn {
            account,
            maildrop,
            deleted,
            _lock: lock,
        }
    }

    /// Message `n` (1-based) and its index.
    pub(crate) fn message(&self, n: u32) -> Result<(usize, &MaildropEntry), MsgError> {
        let index = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .ok_or(MsgError::NoSuch)?;
        let entry = self.maildrop.entries.get(index).ok_or(MsgError::NoSuch)?;
        if self.deleted.get(index).copied().unwrap_or(false) {
            return Err(MsgError::Deleted);
        }
        Ok((index, entry))
    }

    /// The messages not marked deleted, with their numbers.
    pub(crate) fn live(&self) -> impl Iterator<Item = (usize, &MaildropEntry)> {
        self.maildrop
            .entries
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.deleted.get(*i).copied().unwrap_or(false))
            .map(|(i, e)| (i.saturating_add(1), e))
    }

    /// Count and total size of the messages not marked deleted.
    pub(crate) fn totals(&self, utf8: bool) -> (usize, u64) {
        self.live().fold((0, 0), |(n, octets), (_, e)| {
            (n.saturating_add(1), octets.saturating_add(size(e, utf8)))
        })
    }
}

/// The size a session reports for a message: the surrogate's when the message has raw
/// UTF-8 header fields and the session is not in UTF-8 mode (RFC 6856 §2.1), else the
/// stored size. RETR sends exactly this many octets (before dot-stuffing).
pub(crate) fn size(entry: &MaildropEntry, utf8: bool) -> u64 {
    match entry.surrogate_size {
        Some(s) if !utf8 => s,
        _ => entry.size,
    }
}

/// Whether a message is served as its ASCII surrogate.
pub(crate) fn serves_surrogate(entry: &MaildropEntry, utf8: bool) -> bool {
    !utf8 && entry.surrogate_size.is_some()
}

impl<'a, S: MailStore> Session<'a, S> {
    /// A new session in AUTHORIZATION.
    pub(crate) fn new(
        shared: &'a Shared<S>,
        peer: SocketAddr,
        secure: bool,
        tls_available: bool,
    ) -> Self {
        let timestamp = shared.config.apop.then(|| shared.apop_timestamp());
        Session {
            shared,
            peer,
            secure,
            tls_available,
            timestamp,
            utf8: false,
            greeted: false,
            pending_user: None,
            bad_commands: 0,
            auth_failures: 0,
            state: State::Authorization,
        }
    }

    /// The state the gate checks.
    pub(crate) fn phase(&self) -> Phase {
        match self.state {
            State::Authorization => Phase::Authorization,
            State::Transaction(_) => Phase::Transaction,
        }
    }

    /// Plaintext logins (USER/PASS, AUTH PLAIN/LOGIN) are allowed over TLS, from
    /// loopback, or when configured (RFC 2595 §2.3, RFC 8314 §4.1).
    pub(crate) fn plaintext_allowed(&self) -> bool {
        self.secure || self.peer.ip().is_loopback() || self.shared.config.allow_plaintext_auth
    }

    /// STLS is offered: an acceptor exists, the transport is not TLS yet, and the
    /// session is still in AUTHORIZATION.
    pub(crate) fn stls_offered(&self) -> bool {
        self.tls_available && !self.secure && matches!(self.state, State::Authorization)
    }

    /// Called once the TLS handshake after STLS succeeded.
    pub(crate) fn tls_established(&mut self) {
        self.secure = true;
        self.pending_user = None;
    }
}

/// Runs the session over `io` until QUIT, the end of the connection, or STLS.
///
/// RFC 2449 §6.6 PIPELINING: every complete line in the receive buffer is answered in
/// order, and replies are written when the loop would wait for more input (or once
/// [`crate::conn::FLUSH_AT`] octets are buffered).
pub(crate) async fn drive<S, IO>(session: &mut Session<'_, S>, io: &mut IO) -> Outcome
where
    S: MailStore,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = Conn::new(
        io,
        session.shared.config.idle_timeout,
        session.shared.stopping.subscribe(),
    );
    if !session.greeted {
        misc::greeting(session, &mut conn.out);
        session.greeted = true;
    }
    let idle = session.shared.config.idle_timeout;
    let preauth = session.shared.config.preauth_timeout.min(idle);
    loop {
        conn.idle = if matches!(session.state, State::Authorization) {
            session.shared.config.load.preauth_wait(preauth)
        } else {
            idle
        };
        let flow = match conn.read_line(MAX_COMMAND_LINE).await {
            Ok(Input::TooLong) => Ok(Flow::Bad("line too long".to_owned())),
            Ok(Input::Line(line)) => match Command::parse(&line) {
                Err(e) => Ok(Flow::Bad(e.to_string())),
                Ok(command) => {
                    tracing::debug!(command = command.name(), "command");
                    let phase = session.phase();
                    if gate::permits(phase, &command) {
                        dispatch(session, &mut conn, command).await
                    } else {
                        Ok(Flow::Bad(format!(
                            "{} not allowed in the {} state",
                            command.name(),
                            phase.name()
                        )))
                    }
                }
            },
            Err(e) => Err(e),
        };
        let flow = match flow {
            Ok(flow) => flow,
            Err(e) => return connection_lost(&mut conn, e).await,
        };
        match flow {
            Flow::Next => session.bad_commands = 0,
            Flow::Bad(text) => {
                session.bad_commands = session.bad_commands.saturating_add(1);
                if session.bad_commands >= session.shared.config.limits.max_bad_commands.max(1) {
                    tracing::info!("too many bad commands, closing");
                    response::err(&mut conn.out, None, "too many bad commands");
                    conn.flush_final().await;
                    return Outcome::Closed;
                }
                response::err(&mut conn.out, None, &text);
            }
            Flow::Close => {
                conn.flush_final().await;
                return Outcome::Closed;
            }
            Flow::Quit => {
                conn.flush_final().await;
                return Outcome::Quit;
            }
            Flow::StartTls => {
                return match conn.flush().await {
                    Ok(()) => Outcome::StartTls,
                    Err(_) => Outcome::Closed,
                };
            }
        }
        if let Err(e) = conn.flush_if_large().await {
            return connection_lost(&mut conn, e).await;
        }
    }
}

/// The transport failed or the client went quiet: say so if it is a timeout, and end
/// without UPDATE (RFC 1939 §6: only QUIT enters UPDATE).
async fn connection_lost<IO>(conn: &mut Conn<'_, IO>, e: ConnError) -> Outcome
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    match e {
        ConnError::Timeout => {
            tracing::info!("idle timeout, closing");
            conn.out.clear();
            response::err(&mut conn.out, None, "idle timeout");
            conn.flush_final().await;
        }
        ConnError::Shutdown => {
            tracing::debug!("server stopping, closing");
            response::err(
                &mut conn.out,
                Some(RespCode::SysTemp),
                "server shutting down",
            );
            conn.flush_final().await;
        }
        ConnError::Endless => {
            // The `-ERR line too long` went out when the line passed the limit; the
            // line then went on for a MiB more: a peer not speaking POP3 is cut off
            // (RFC 1939 §3 bounds commands; nothing obliges reading an endless one).
            tracing::info!("endless line, closing");
            response::err(&mut conn.out, None, "line too long, closing connection");
            conn.flush_final().await;
        }
        ConnError::Closed => tracing::debug!("client closed the connection"),
        ConnError::Io(e) => tracing::debug!(error = %e, "connection failed"),
    }
    Outcome::Closed
}

/// Runs one command the gate allowed.
async fn dispatch<S, IO>(
    session: &mut Session<'_, S>,
    conn: &mut Conn<'_, IO>,
    command: Command,
) -> Result<Flow, ConnError>
where
    S: MailStore,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let utf8 = session.utf8;
    match command {
        Command::User(name) => Ok(auth::user(session, name, &mut conn.out)),
        Command::Pass(password) => auth::pass(session, conn, password).await,
        Command::Apop { name, digest } => auth::apop(session, conn, &name, &digest).await,
        Command::Auth { mechanism, initial } => auth::auth(session, conn, mechanism, initial).await,
        Command::Capa => Ok(misc::capa(session, &mut conn.out)),
        Command::Stls => Ok(misc::stls(session, &mut conn.out)),
        Command::Utf8 => Ok(misc::utf8(session, &mut conn.out)),
        Command::Quit => Ok(misc::quit(session, &mut conn.out).await),
        command => {
            let State::Transaction(txn) = &mut session.state else {
                return Ok(Flow::Bad(format!("{} needs a login first", command.name())));
            };
            let store = &session.shared.store;
            match command {
                Command::Stat => Ok(transaction::stat(txn, utf8, &mut conn.out)),
                Command::List(n) => Ok(transaction::list(txn, utf8, n, &mut conn.out)),
                Command::Uidl(n) => Ok(transaction::uidl(txn, n, &mut conn.out)),
                Command::Dele(n) => Ok(transaction::dele(txn, n, &mut conn.out)),
                Command::Rset => Ok(transaction::rset(txn, utf8, &mut conn.out)),
                Command::Noop => Ok(transaction::noop(&mut conn.out)),
                Command::Retr(n) => transaction::retr(store, txn, utf8, n, conn).await,
                Command::Top(n, lines) => transaction::top(store, txn, utf8, n, lines, conn).await,
                other => Ok(Flow::Bad(format!("{} not allowed here", other.name()))),
            }
        }
    }
}
