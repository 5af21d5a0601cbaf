//! `buudien serve`: opens the store, binds every configured listener, and runs
//! sessions until SIGTERM or SIGINT. Then it stops accepting, gives live sessions up
//! to [`DRAIN`] to finish, and exits 0. SIGHUP reloads the TLS certificate.

use crate::cli::CliError;
use crate::config::Config;
use crate::store::{NODE_FILE, Served, Store, node_name, open_store, with_store};
use buudien_auth::FailureThrottle;
use buudien_imap::{ImapConfig, ImapServer};
use buudien_net::{ConnLimiter, ConnTracker, Listener, TlsAcceptor, TlsProvider, bind};
use buudien_pop3::{Pop3Config, Pop3Server};
use buudien_queue::{QueueConfig, QueueWorker, Smarthost, SmarthostTls};
use buudien_smtp::{Mode, SmtpConfig, SmtpServer};
use buudien_store::{MailStore, MailboxStore, QueueStore};
use buudien_types::Load;
use buudien_types::Secret;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::signal::unix::{SignalKind, signal};

/// How long shutdown waits for live sessions.
pub const DRAIN: Duration = Duration::from_secs(10);
/// How long an implicit-TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often unreferenced blobs are collected.
const GC_INTERVAL: Duration = Duration::from_secs(600);

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy)]
enum Service {
    Pop3,
    Pop3s,
    Smtp,
    Submission,
    Submissions,
    Imap,
    Imaps,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Pop3 => "pop3",
            Service::Pop3s => "pop3s",
            Service::Smtp => "smtp",
            Service::Submission => "submission",
            Service::Submissions => "submissions",
            Service::Imap => "imap",
            Service::Imaps => "imaps",
        }
    }
}

fn pop3_config(cfg: &Config, load: &Load) -> Pop3Config {
    Pop3Config {
        hostname: cfg.hostname.clone(),
        idle_timeout: cfg.pop3.idle_timeout,
        apop: cfg.pop3.apop,
        allow_plaintext_auth: cfg.pop3.allow_plaintext_auth,
        lock_session: cfg.pop3.lock_session,
        preauth_timeout: cfg.pop3.preauth_timeout,
        login_delay: cfg.pop3.login_delay,
        load: load.clone(),
        ..Pop3Config::default()
    }
}

/// The IMAP service's settings from `[imap]`.
fn imap_config(cfg: &Config, load: &Load) -> ImapConfig {
    ImapConfig {
        hostname: cfg.hostname.clone(),
        idle_timeout: cfg.imap.idle_timeout,
        preauth_timeout: cfg.imap.preauth_timeout,
        allow_plaintext_auth: cfg.imap.allow_plaintext_auth,
        max_append: cfg.imap.max_append,
        literal_plus: cfg.imap.literal_plus,
        // Unnamed files: nothing is left there, whatever happens to the process.
        spool_dir: Some(cfg.data_dir.join("tmp")),
        load: load.clone(),
    }
}

/// The queue worker's settings from `[queue]`, `[dns]` and `[smtp]`.
pub fn queue_config(cfg: &Config) -> Result<QueueConfig, CliError> {
    let q = &cfg.queue;
    let smarthost = match &q.smarthost {
        None => None,
        Some(hp) => {
            let (host, port) = hp
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
                .ok_or_else(|| {
                    CliError::config(format!("[queue] smarthost {hp:?}: expected \"host:port\""))
                })?;
            let tls = match q.smarthost_tls.as_str() {
                "none" => SmarthostTls::None,
                "starttls" => SmarthostTls::StartTls,
                "implicit" => SmarthostTls::Implicit,
                other => {
                    return Err(CliError::config(format!(
                        "[queue] smarthost_tls {other:?}: expected \"starttls\", \"implicit\" or \"none\""
                    )));
                }
            };
            let auth = match (&q.smarthost_user, &q.smarthost_password) {
                (Some(u), Some(p)) => Some((u.clone(), Secret::new(p.clone()))),
                (None, None) => None,
                _ => {
                    return Err(CliError::config(
                        "[queue] smarthost_user and smarthost_password go together",
                    ));
                }
            };
            Some(Smarthost {
                host: host.to_string(),
                port,
                tls,
                auth,
            })
        }
    };
    Ok(QueueConfig {
        hostname: cfg.hostname.clone(),
        smarthost,
        retry: q.retry.clone(),
        expire: q.expire,
        dns_servers: cfg.dns.servers.clone(),
        mx_port: q.mx_port,
        max_connections_per_domain: q.max_connections_per_domain.max(1),
        lease: q.lease,
        poll_interval: q.poll_interval.max(Duration::from_millis(100)),
        subaddress_separator: cfg.smtp.subaddress_separator.chars().next(),
        ..QueueConfig::default()
    })
}

/// Runs the server until a stop signal.
pub async fn serve(cfg: Config) -> Result<(), CliError> {
    let store = open_store(&cfg).await?;
    // IMAP spools big APPENDs under data_dir/tmp, whichever backend holds the mail.
    let spool = cfg.data_dir.join("tmp");
    std::fs::create_dir_all(&spool)
        .map_err(|e| CliError::config(format!("cannot create {}: {e}", spool.display())))?;
    if let Store::Postgres(pg) = &store {
        let node = node_name(&cfg.data_dir)?;
        tracing::info!("this node's queue claims are named {node} (data_dir/{NODE_FILE})");
        pg.set_node(&node);
    }
    with_store!(store, |s| serve_on(cfg, s).await)
}

/// [`serve`] on an open store of either backend.
async fn serve_on<S: Served>(cfg: Config, store: S) -> Result<(), CliError> {
    tracing::info!("store: {}", store.describe());
    let tls = match &cfg.tls {
        Some(t) => Some(Arc::new(
            TlsProvider::load(&t.cert, &t.key)
                .map_err(|e| CliError::config(format!("[tls]: {e}")))?,
        )),
        None => None,
    };
    for (name, list) in [
        ("pop3s", &cfg.listen.pop3s),
        ("submissions", &cfg.listen.submissions),
        ("imaps", &cfg.listen.imaps),
    ] {
        if tls.is_none() && !list.is_empty() {
            return Err(CliError::config(format!(
                "{name} needs a certificate: set [tls] cert and key, or run `buudien quickstart` \
                 to make a self-signed one"
            )));
        }
    }
    if tls.is_none()
        && !(cfg.listen.pop3.is_empty()
            && cfg.listen.smtp.is_empty()
            && cfg.listen.submission.is_empty()
            && cfg.listen.imap.is_empty())
    {
        tracing::warn!(
            "no [tls] cert and key: no STLS/STARTTLS, and passwords are accepted only from \
             loopback (run `buudien quickstart` or set [tls])"
        );
    }

    let mut listeners: Vec<(Service, Listener)> = Vec::new();
    let l = &cfg.listen;
    let wanted = [
        (Service::Pop3, &l.pop3),
        (Service::Pop3s, &l.pop3s),
        (Service::Smtp, &l.smtp),
        (Service::Submission, &l.submission),
        (Service::Submissions, &l.submissions),
        (Service::Imap, &l.imap),
        (Service::Imaps, &l.imaps),
    ]
    .into_iter()
    .flat_map(|(service, addrs)| addrs.iter().map(move |a| (service, *a)));
    for (service, addr) in wanted {
        let l = bind(addr).map_err(|e| {
            CliError::config(format!("cannot listen on {addr} ({}): {e}", service.name()))
        })?;
        tracing::info!("{} listening on {}", service.name(), l.local);
        listeners.push((service, l));
    }
    if listeners.is_empty() {
        return Err(CliError::config(
            "no listener configured: add addresses under [listen] (pop3, pop3s, imap, imaps, \
             smtp, submission, submissions)",
        ));
    }

    // SQLite: temporary files and queue claims of a stopped server. PostgreSQL: nothing
    // (other nodes may hold claims; a dead node's expire).
    store.recover().await;
    let worker = QueueWorker::new(store.clone(), queue_config(&cfg)?)
        .map_err(|e| CliError::config(format!("queue: {e}")))?;
    let queue_handle = worker.handle();
    let (queue_stop, queue_stop_rx) = tokio::sync::watch::channel(false);
    let queue_task = tokio::spawn(worker.run(queue_stop_rx));

    let throttle = Arc::new(FailureThrottle::new(cfg.limits.throttle()));
    // Raised by the limiter near `max_connections`; shortens pre-login waits.
    let load = Load::new(cfg.limits.stressed_timeout);
    let servers = Servers {
        pop3: Pop3Server::new(store.clone(), pop3_config(&cfg, &load), throttle.clone()),
        imap: ImapServer::new(store.clone(), imap_config(&cfg, &load), throttle.clone()),
        smtp: SmtpServer::new(store.clone(), smtp_config(&cfg, &load)?, throttle.clone()),
        tls: tls.clone(),
    };
    servers.smtp.on_queued(move || queue_handle.wake());
    let tracker = ConnTracker::new();
    let limiter = ConnLimiter::with_load(
        cfg.limits.max_connections,
        cfg.limits.max_connections_per_ip,
        load,
    );
    let hostname = cfg.hostname.clone();
    let mut accept_tasks = Vec::new();
    for (service, listener) in listeners {
        let servers = servers.clone();
        let tracker = tracker.clone();
        let limiter = limiter.clone();
        let hostname = hostname.clone();
        accept_tasks.push(tokio::spawn(async move {
            loop {
                let (stream, peer) = listener.accept().await;
                let token = tracker.token();
                match limiter.try_acquire(peer.ip()) {
                    Ok(permit) => {
                        let servers = servers.clone();
                        tokio::spawn(async move {
                            let _token = token;
                            let _permit = permit;
                            servers.run_connection(service, stream, peer).await;
                        });
                    }
                    Err(why) => {
                        tracing::info!(%peer, ?why, "connection refused: limit reached");
                        let hostname = hostname.clone();
                        tokio::spawn(async move {
                            let _token = token;
                            refuse(service, stream, &hostname).await;
                        });
                    }
                }
            }
        }));
    }
    let gc_store = store.clone();
    let gc = tokio::spawn(async move { collect_garbage(gc_store).await });
    // The backend's own: text indexer (both), WAL checkpointer (SQLite), failed-login
    // counts shared with the other nodes (PostgreSQL).
    // This process's name among the nodes sharing failed logins: new at each start
    // (unlike the queue's node-id), so a restarted node reads its own earlier
    // failures back with the others'.
    let node = format!("{}/{:08x}", cfg.hostname, rand::random::<u32>());
    let background = store.background(&throttle, &node);

    wait_for_stop(tls.as_deref()).await;
    tracing::info!("stopping: no new connections; waiting up to {DRAIN:?} for sessions");
    for t in &accept_tasks {
        t.abort();
    }
    gc.abort();
    for t in &background {
        t.abort();
    }
    servers.pop3.stop();
    servers.imap.stop();
    servers.smtp.stop();
    queue_stop.send_replace(true);
    if tracker.wait_idle(DRAIN).await {
        tracing::info!("all sessions ended");
    } else {
        tracing::info!(
            "{} sessions still open after {DRAIN:?}; closing them (nothing is deleted)",
            tracker.live()
        );
    }
    // The queue worker records what it finished and leaves the rest for next time.
    if tokio::time::timeout(DRAIN, queue_task).await.is_err() {
        tracing::info!("queue deliveries still running after {DRAIN:?}; they are retried later");
    }
    store.shutdown().await;
    Ok(())
}

/// Tells a client over the connection limit to come back later, in its protocol's
/// words, and closes (TLS services just close: a handshake would cost more).
async fn refuse(service: Service, mut stream: TcpStream, hostname: &str) {
    use tokio::io::AsyncWriteExt;
    let line = match service {
        Service::Pop3 => "-ERR [SYS/TEMP] too many connections, try later\r\n".to_owned(),
        Service::Imap => "* BYE [UNAVAILABLE] too many connections, try later\r\n".to_owned(),
        // RFC 5321 §3.1: 421 instead of the greeting.
        Service::Smtp | Service::Submission => {
            format!("421 4.7.0 {hostname} too many connections, try later\r\n")
        }
        Service::Pop3s | Service::Imaps | Service::Submissions => return,
    };
    let _ = tokio::time::timeout(REFUSAL_WRITE, stream.write_all(line.as_bytes())).await;
    let _ = tokio::time::timeout(REFUSAL_WRITE, stream.shutdown()).await;
}

/// Longest wait to tell a refused client why.
const REFUSAL_WRITE: Duration = Duration::from_secs(2);

/// The protocol servers a connection may be handed to.
struct Servers<S: MailboxStore + QueueStore> {
    pop3: Pop3Server<S>,
    imap: ImapServer<S>,
    smtp: SmtpServer<S>,
    tls: Option<Arc<TlsProvider>>,
}

impl<S: MailboxStore + QueueStore> Clone for Servers<S> {
    fn clone(&self) -> Self {
        Servers {
            pop3: self.pop3.clone(),
            imap: self.imap.clone(),
            smtp: self.smtp.clone(),
            tls: self.tls.clone(),
        }
    }
}

impl<S: MailboxStore + QueueStore> Servers<S> {
    async fn run_connection(&self, service: Service, stream: TcpStream, peer: SocketAddr) {
        // Each service's future is boxed: a connection's task then takes the size of
        // its own protocol's state, not that of the largest of all six (an idle IMAP
        // session would otherwise carry room for an SMTP session and a TLS handshake).
        let acceptor = self.tls.as_ref().map(|t| t.acceptor());
        match service {
            Service::Pop3 => Box::pin(self.pop3.serve(stream, peer, false, acceptor)).await,
            Service::Pop3s => Box::pin(self.pop3s(stream, peer, acceptor)).await,
            Service::Imap => Box::pin(self.imap.serve(stream, peer, false, acceptor)).await,
            Service::Imaps => Box::pin(self.imaps(stream, peer, acceptor)).await,
            Service::Smtp => {
                Box::pin(
                    self.smtp
                        .serve(stream, peer, Mode::Inbound, false, acceptor),
                )
                .await
            }
            Service::Submission => {
                Box::pin(
                    self.smtp
                        .serve(stream, peer, Mode::Submission, false, acceptor),
                )
                .await
            }
            // The SMTP session runs the implicit-TLS handshake itself, so that its
            // Received header can name the TLS version and cipher.
            Service::Submissions => {
                Box::pin(
                    self.smtp
                        .serve(stream, peer, Mode::Submissions, false, acceptor),
                )
                .await
            }
        }
    }

    /// POP3 over implicit TLS (RFC 8314 §3.1): the handshake, then the session.
    async fn pop3s(&self, stream: TcpStream, peer: SocketAddr, acceptor: Option<TlsAcceptor>) {
        let Some(acceptor) = acceptor else { return };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(s)) => self.pop3.serve(s, peer, true, None).await,
            Ok(Err(e)) => tracing::debug!(%peer, "pop3s TLS handshake failed: {e}"),
            Err(_) => tracing::info!(%peer, "pop3s TLS handshake timed out"),
        }
    }

    /// IMAP over implicit TLS (RFC 8314 §3.1): the handshake, then the session.
    async fn imaps(&self, stream: TcpStream, peer: SocketAddr, acceptor: Option<TlsAcceptor>) {
        let Some(acceptor) = acceptor else { return };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(s)) => self.imap.serve(s, peer, true, None).await,
            Ok(Err(e)) => tracing::debug!(%peer, "imaps TLS handshake failed: {e}"),
            Err(_) => tracing::info!(%peer, "imaps TLS handshake timed out"),
        }
    }
}

/// The SMTP service's settings from `[smtp]`.
pub fn smtp_config(cfg: &Config, load: &Load) -> Result<SmtpConfig, CliError> {
    let s = &cfg.smtp;
    if !matches!(s.relay_denied_code, 550 | 554) {
        return Err(CliError::config(format!(
            "[smtp] relay_denied_code = {}: expected 550 or 554",
            s.relay_denied_code
        )));
    }
    let mut sep = s.subaddress_separator.chars();
    let subaddress_separator = sep.next();
    if sep.next().is_some() {
        return Err(CliError::config(format!(
            "[smtp] subaddress_separator {:?}: expected one character or \"\"",
            s.subaddress_separator
        )));
    }
    Ok(SmtpConfig {
        hostname: cfg.hostname.clone(),
        max_message_size: s.max_message_size,
        max_recipients: s.max_recipients,
        subaddress_separator,
        relay_denied_code: s.relay_denied_code,
        quota_permanent: s.quota_permanent,
        check_from_header: s.check_from_header,
        max_received_headers: s.max_received_headers,
        allow_plaintext_auth: s.allow_plaintext_auth,
        limits: buudien_smtp::Limits {
            preauth_timeout: s.preauth_timeout,
            ..buudien_smtp::Limits::default()
        },
        load: load.clone(),
    })
}

/// Collects unreferenced blobs now and then.
async fn collect_garbage(store: impl MailStore) {
    let mut tick = tokio::time::interval(GC_INTERVAL);
    loop {
        tick.tick().await;
        match store.collect_garbage().await {
            Ok(0) => {}
            Ok(n) => tracing::info!("removed {n} unreferenced message files"),
            Err(e) => tracing::warn!("garbage collection failed: {e}"),
        }
    }
}

/// Returns on SIGTERM or SIGINT; reloads TLS on SIGHUP meanwhile.
async fn wait_for_stop(tls: Option<&TlsProvider>) {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => match tls {
                Some(t) => match t.reload() {
                    Ok(()) => tracing::info!("TLS certificate reloaded"),
                    Err(e) => tracing::error!("TLS reload failed, keeping the old certificate: {e}"),
                },
                None => tracing::info!("SIGHUP: no [tls] configured, nothing to reload"),
            },
        }
    }
}
