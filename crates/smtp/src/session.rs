//! One SMTP session: its state (no stream type in it) and the loop that drives it over
//! a transport (RFC 5321 §3: greeting, EHLO, then mail transactions of MAIL, RCPT…,
//! DATA or BDAT…).

use crate::cmd::{auth, data, hello, mail, misc, rcpt};
use crate::conn::{Conn, ConnError, Input};
use crate::gate::{self, Phase};
use crate::{Mode, Shared};
use buudien_smtp_proto::reply::write;
use buudien_smtp_proto::{
    Command, ErrorKind, MIN_COMMAND_LINE, MailParams, ParseError, RcptParams, ReversePath, Status,
    code,
};
use buudien_store::{AccountId, QueueStore};
use buudien_types::Address;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite};

/// How a run of [`drive`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The client sent QUIT.
    Quit,
    /// The connection ended otherwise: dropped, timed out, refused.
    Closed,
    /// STARTTLS was accepted and `220` sent: the caller runs the TLS handshake.
    StartTls,
}

/// What a command handler tells the loop. The handler has written its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Read the next command.
    Next,
    /// The reply was an error the client should not have caused (syntax, sequence,
    /// unknown command): counts towards [`crate::Limits::max_bad_commands`].
    Bad,
    /// A command that moves no mail (NOOP, RSET, VRFY, …): counts towards
    /// [`crate::Limits::max_junk_commands`].
    Junk,
    /// Close the connection.
    Close,
    /// QUIT is done; close the connection.
    Quit,
    /// `220` to STARTTLS is written; hand over to TLS.
    StartTls,
}

/// The negotiated TLS parameters, for `Received`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsInfo {
    /// `TLSv1.3`, `TLSv1.2`.
    pub(crate) version: String,
    /// The cipher suite's IANA name.
    pub(crate) cipher: String,
}

impl TlsInfo {
    /// Reads them off an established server connection.
    pub(crate) fn of(conn: &tokio_rustls::rustls::ServerConnection) -> Self {
        use tokio_rustls::rustls::ProtocolVersion;
        let version = match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
            Some(v) => format!("{v:?}"),
            None => "TLS".to_owned(),
        };
        let cipher = conn
            .negotiated_cipher_suite()
            .map(|s| {
                let suite = s.suite();
                suite
                    .as_str()
                    .map_or_else(|| format!("{suite:?}"), str::to_owned)
            })
            .unwrap_or_else(|| "unknown".to_owned());
        TlsInfo { version, cipher }
    }
}

/// The client's EHLO/HELO.
#[derive(Debug, Clone)]
pub(crate) struct Helo {
    /// The domain or address literal it gave.
    pub(crate) name: String,
    /// EHLO (true) or HELO.
    pub(crate) extended: bool,
}

/// The authenticated user (submission).
#[derive(Debug, Clone)]
pub(crate) struct User {
    /// The account.
    pub(crate) account: AccountId,
    /// Its address (the login).
    pub(crate) address: Address,
}

/// Where an accepted recipient's copy goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dest {
    /// These local accounts (an address, an alias, or a sub-address of one).
    Local(Vec<AccountId>),
    /// The outbound queue (authenticated sessions only); the address in wire form.
    Remote(String),
}

/// One accepted recipient.
#[derive(Debug, Clone)]
pub(crate) struct Rcpt {
    /// The mailbox as the client gave it (wire form, no angle brackets).
    pub(crate) address: String,
    /// Where it goes.
    pub(crate) dest: Dest,
    /// DSN parameters.
    pub(crate) params: RcptParams,
}

/// A BDAT sequence under way (RFC 3030 §2).
#[derive(Debug, Default)]
pub(crate) struct Bdat {
    /// The message so far.
    pub(crate) data: Vec<u8>,
    /// A chunk was refused: the rest of the sequence is read and discarded
    /// (RFC 3030 §4.2) until LAST or RSET.
    pub(crate) failed: bool,
}

/// A mail transaction (RFC 5321 §3.3), from MAIL to the end of the data.
#[derive(Debug)]
pub(crate) struct Txn {
    /// The reverse-path.
    pub(crate) from: ReversePath,
    /// MAIL parameters.
    pub(crate) params: MailParams,
    /// Accepted recipients, in order.
    pub(crate) rcpts: Vec<Rcpt>,
    /// The BDAT sequence, once the first chunk came.
    pub(crate) bdat: Option<Bdat>,
}

impl Txn {
    /// A transaction after MAIL.
    pub(crate) fn new(from: ReversePath, params: MailParams) -> Self {
        Txn {
            from,
            params,
            rcpts: Vec::new(),
            bdat: None,
        }
    }

    /// The envelope sender as plain text (`""` for `<>`); a source route is dropped
    /// (RFC 5321 §3.3: servers SHOULD ignore it).
    pub(crate) fn sender(&self) -> String {
        match &self.from {
            ReversePath::Null => String::new(),
            ReversePath::Path(p) => p.mailbox.to_string(),
        }
    }
}

/// The state of one session.
pub(crate) struct Session<'a, S> {
    /// The server's store, settings and throttle.
    pub(crate) shared: &'a Shared<S>,
    /// The client.
    pub(crate) peer: SocketAddr,
    /// The listener's service.
    pub(crate) mode: Mode,
    /// The transport is TLS.
    pub(crate) secure: bool,
    /// A TLS acceptor is available for STARTTLS.
    pub(crate) tls_available: bool,
    /// The TLS parameters, once known.
    pub(crate) tls: Option<TlsInfo>,
    /// The greeting has been sent.
    pub(crate) greeted: bool,
    /// EHLO/HELO, once given.
    pub(crate) helo: Option<Helo>,
    /// The authenticated user.
    pub(crate) user: Option<User>,
    /// The current mail transaction.
    pub(crate) txn: Option<Txn>,
    /// Error replies so far.
    pub(crate) bad_commands: u32,
    /// Junk commands since the last accepted message.
    pub(crate) junk_commands: u32,
    /// Failed AUTH attempts.
    pub(crate) auth_failures: u32,
}

impl<'a, S: QueueStore> Session<'a, S> {
    /// A new session, before the greeting.
    pub(crate) fn new(
        shared: &'a Shared<S>,
        peer: SocketAddr,
        mode: Mode,
        secure: bool,
        tls_available: bool,
    ) -> Self {
        Session {
            shared,
            peer,
            mode,
            secure,
            tls_available,
            tls: None,
            greeted: false,
            helo: None,
            user: None,
            txn: None,
            bad_commands: 0,
            junk_commands: 0,
            auth_failures: 0,
        }
    }

    /// The state the gate checks.
    pub(crate) fn phase(&self) -> Phase {
        match (&self.helo, &self.txn) {
            (None, _) => Phase::Initial,
            (Some(_), None) => Phase::Ready,
            (Some(_), Some(t)) if t.bdat.is_some() => Phase::Bdat,
            (Some(_), Some(t)) if t.rcpts.is_empty() => Phase::Mail,
            (Some(_), Some(_)) => Phase::Rcpt,
        }
    }

    /// AUTH may be used: submission modes only (never inbound, issue 3), and there
    /// over TLS, from loopback, or when configured (RFC 4954 §4, RFC 8314 §4.1).
    pub(crate) fn auth_allowed(&self) -> bool {
        self.mode.is_submission()
            && (self.secure
                || self.peer.ip().is_loopback()
                || self.shared.config.allow_plaintext_auth)
    }

    /// STARTTLS is offered: an acceptor exists and the transport is not TLS yet.
    pub(crate) fn starttls_offered(&self) -> bool {
        self.tls_available && !self.secure
    }

    /// Called once the TLS handshake succeeded (STARTTLS or implicit TLS). RFC 3207
    /// §4.2: the server forgets everything it learnt from the client before.
    pub(crate) fn tls_established(&mut self, info: TlsInfo) {
        self.secure = true;
        self.tls_available = false;
        self.tls = Some(info);
        self.helo = None;
        self.user = None;
        self.txn = None;
    }
}

/// Runs the session over `io` until QUIT, the end of the connection, or STARTTLS.
///
/// RFC 2920 §3.1 PIPELINING: every complete line in the receive buffer is answered in
/// order, and replies are written when the loop would wait for more input.
pub(crate) async fn drive<S, IO>(session: &mut Session<'_, S>, io: &mut IO) -> Outcome
where
    S: QueueStore,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let limits = &session.shared.config.limits;
    let mut conn = Conn::new(
        io,
        limits.command_timeout,
        limits.data_timeout,
        session.shared.stopping.subscribe(),
    );
    let max_line = limits.max_command_line.max(MIN_COMMAND_LINE);
    if !session.greeted {
        hello::greeting(session, &mut conn.out);
        session.greeted = true;
    }
    let command_timeout = limits.command_timeout;
    let preauth = limits.preauth_timeout.min(command_timeout);
    loop {
        // Under load (the `Load` flag), sessions that have not logged in wait only the
        // short stressed time for a command; port 25 has no login, so its command waits
        // shrink too, as Postfix's do under stress (a deviation from RFC 5321
        // §4.5.3.2.7's 5 minutes, only while the server is near its connection limit).
        let load = &session.shared.config.load;
        conn.idle = if session.mode != Mode::Inbound && session.user.is_none() {
            load.preauth_wait(preauth)
        } else if session.mode == Mode::Inbound {
            load.preauth_wait(command_timeout)
        } else {
            command_timeout
        };
        let flow = match conn.read_line(max_line).await {
            Ok(Input::TooLong) => {
                write(
                    &mut conn.out,
                    code::SYNTAX_ERROR,
                    Some(Status::SYNTAX),
                    "line too long",
                );
                Ok(Flow::Bad)
            }
            Ok(Input::Line(line)) => step(session, &mut conn, &line).await,
            Err(e) => Err(e),
        };
        let flow = match flow {
            Ok(flow) => flow,
            Err(e) => return connection_lost(session, &mut conn, e).await,
        };
        let limits = &session.shared.config.limits;
        match flow {
            Flow::Next => {}
            Flow::Bad => {
                session.bad_commands = session.bad_commands.saturating_add(1);
                if session.bad_commands >= limits.max_bad_commands.max(1) {
                    tracing::info!("too many errors, closing");
                    closing(
                        session,
                        &mut conn.out,
                        Status::SECURITY_TEMP,
                        "too many errors",
                    );
                    conn.flush_final().await;
                    return Outcome::Closed;
                }
            }
            Flow::Junk => {
                session.junk_commands = session.junk_commands.saturating_add(1);
                if session.junk_commands >= limits.max_junk_commands.max(1) {
                    tracing::info!("too many commands without mail, closing");
                    closing(
                        session,
                        &mut conn.out,
                        Status::SECURITY_TEMP,
                        "too many commands",
                    );
                    conn.flush_final().await;
                    return Outcome::Closed;
                }
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
                if conn.has_buffered_input() {
                    tracing::info!("client pipelined bytes after STARTTLS; discarded");
                }
                return match conn.flush().await {
                    Ok(()) => Outcome::StartTls,
                    Err(_) => Outcome::Closed,
                };
            }
        }
        if let Err(e) = conn.flush_if_large().await {
            return connection_lost(session, &mut conn, e).await;
        }
    }
}

/// Writes `421 <status> <hostname> <text>` (RFC 5321 §3.8: the server closes).
pub(crate) fn closing<S>(session: &Session<'_, S>, out: &mut Vec<u8>, status: Status, text: &str) {
    let host = &session.shared.config.hostname;
    write(
        out,
        code::UNAVAILABLE,
        Some(status),
        &format!("{host} {text}, closing connection"),
    );
}

/// Parses, gates and runs one command line.
async fn step<S, IO>(
    session: &mut Session<'_, S>,
    conn: &mut Conn<'_, IO>,
    line: &[u8],
) -> Result<Flow, ConnError>
where
    S: QueueStore,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let command = match Command::parse(line) {
        Ok(c) => c,
        Err(e) => return Ok(parse_error(&mut conn.out, line, &e)),
    };
    tracing::debug!(command = command.name(), "command");
    if let Err(r) = gate::check(session.phase(), &command) {
        write(&mut conn.out, r.code, Some(r.status), r.text);
        return Ok(Flow::Bad);
    }
    dispatch(session, conn, command).await
}

/// The reply to a line that did not parse (RFC 5321 §4.2.4, §4.3.2; RFC 2034 §3: no
/// enhanced code on replies to EHLO/HELO).
fn parse_error(out: &mut Vec<u8>, line: &[u8], e: &ParseError) -> Flow {
    let hello = line
        .get(..4)
        .is_some_and(|v| v.eq_ignore_ascii_case(b"EHLO") || v.eq_ignore_ascii_case(b"HELO"));
    let (reply, status) = match e.kind {
        ErrorKind::Unrecognized => (code::SYNTAX_ERROR, Status::SYNTAX),
        ErrorKind::NotImplemented => (code::NOT_IMPLEMENTED, Status::INVALID_COMMAND),
        ErrorKind::Syntax => (code::PARAM_SYNTAX_ERROR, Status::INVALID_ARGUMENTS),
        ErrorKind::BadSender => (code::PARAM_SYNTAX_ERROR, Status::BAD_SENDER_SYNTAX),
        ErrorKind::BadRecipient => (code::PARAM_SYNTAX_ERROR, Status::BAD_RECIPIENT_SYNTAX),
        ErrorKind::UnsupportedParam => (code::PARAMS_NOT_RECOGNIZED, Status::INVALID_ARGUMENTS),
        ErrorKind::BdatSize => {
            // RFC 3030 §2: without a size the chunk's end is unknown; whatever
            // follows must never be read as commands.
            tracing::info!("BDAT without a usable size, closing");
            write(
                out,
                code::PARAM_SYNTAX_ERROR,
                Some(Status::INVALID_ARGUMENTS),
                "BDAT needs a chunk size; closing connection",
            );
            return Flow::Close;
        }
        ErrorKind::ForeignProtocol => {
            tracing::info!("non-SMTP request (HTTP?), closing");
            return Flow::Close;
        }
    };
    let status = (!hello).then_some(status);
    write(out, reply, status, &e.message);
    Flow::Bad
}

/// Runs one command the gate allowed.
async fn dispatch<S, IO>(
    session: &mut Session<'_, S>,
    conn: &mut Conn<'_, IO>,
    command: Command,
) -> Result<Flow, ConnError>
where
    S: QueueStore,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let out = &mut conn.out;
    Ok(match command {
        Command::Ehlo(domain) => hello::ehlo(session, out, domain, true),
        Command::Helo(domain) => hello::ehlo(session, out, domain, false),
        Command::Mail { from, params } => mail::mail(session, out, from, params).await,
        Command::Rcpt { to, params } => rcpt::rcpt(session, out, to, params).await,
        Command::Data => return data::data(session, conn).await,
        Command::Bdat { size, last } => return data::bdat(session, conn, size, last).await,
        Command::Auth { mechanism, initial } => {
            return auth::auth(session, conn, &mechanism, initial).await;
        }
        Command::Rset => misc::rset(session, out),
        Command::Noop => misc::noop(out),
        Command::Quit => misc::quit(session, out),
        Command::Vrfy(_) => misc::vrfy(out),
        Command::Expn(_) => misc::expn(out),
        Command::Help(_) => misc::help(out),
        Command::StartTls => misc::starttls(session, out),
    })
}

/// The transport failed, the client went quiet, or the server stops: say so where
/// it makes sense, and end. A transaction in progress is dropped (nothing was
/// acknowledged).
async fn connection_lost<S, IO>(
    session: &Session<'_, S>,
    conn: &mut Conn<'_, IO>,
    e: ConnError,
) -> Outcome
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    match e {
        ConnError::Timeout => {
            // RFC 5321 §4.5.3.2.7: the server may close after its timeout.
            tracing::info!("timeout, closing");
            conn.out.clear();
            closing(session, &mut conn.out, Status::TIMEOUT, "timeout exceeded");
            conn.flush_final().await;
        }
        ConnError::Shutdown => {
            tracing::debug!("server stopping, closing");
            closing(
                session,
                &mut conn.out,
                Status::SHUTTING_DOWN,
                "service shutting down",
            );
            conn.flush_final().await;
        }
        ConnError::Endless => {
            // The `500` for the over-long line went out when it passed the limit
            // (RFC 5321 §4.5.3.1.4); it then went on for a MiB more. RFC 5321 §3.8:
            // the server may close with 421 when it must end the session.
            tracing::info!("endless line, closing");
            closing(
                session,
                &mut conn.out,
                Status::SECURITY_TEMP,
                "line too long",
            );
            conn.flush_final().await;
        }
        ConnError::Closed => tracing::debug!("client closed the connection"),
        ConnError::Io(e) => tracing::debug!(error = %e, "connection failed"),
    }
    Outcome::Closed
}
