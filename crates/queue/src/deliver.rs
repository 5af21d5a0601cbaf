//! One delivery attempt of one message to one destination (a recipient domain's MX
//! hosts, or the smarthost): hosts in order until one takes the transaction, then
//! the SMTP transaction with a result per recipient (RFC 5321 §3.3, §4.1.1).

use crate::client::{Capabilities, Client, ClientError, Reply, Stream};
use crate::encode::{data_stream, has_8bit, to_7bit, xtext_encode};
use crate::resolve::{Exchangers, Resolve, ResolveError, order_mx};
use crate::{QueueConfig, SmarthostTls};
use base64::Engine;
use buudien_message::header_len;
use buudien_store::{Envelope, QueuedRecipient, Ret};
use rustls::pki_types::ServerName;
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// At most this many addresses are tried in one attempt (Postfix: 5 MX addresses).
const MAX_ADDRESSES: usize = 10;
/// QUIT is not worth waiting long for.
const QUIT_TIMEOUT: Duration = Duration::from_secs(10);

/// What an attempt did for one recipient; the worker turns it into an
/// [`Outcome`](buudien_store::Outcome) (a deferral gets its retry time there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted by the next hop.
    Delivered {
        /// What it said.
        reply: String,
        /// It could not take the DSN request (RFC 3461 §5.2.2: "relayed").
        relayed: bool,
    },
    /// Permanent failure.
    Failed(String),
    /// Temporary failure.
    Deferred(String),
}

/// Where one group of recipients goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// Everything through the configured smarthost.
    Smarthost,
    /// The MX hosts of this domain (lower case; `[…]` for an address literal).
    Domain(String),
}

/// What the worker shares with every attempt.
pub struct Ctx {
    /// Settings.
    pub config: QueueConfig,
    /// DNS.
    pub resolver: Arc<dyn Resolve>,
    /// TLS client.
    pub tls: TlsConnector,
}

/// One address to connect to.
struct Target {
    /// The host name (for SNI and reports) or the literal address.
    name: String,
    addr: SocketAddr,
}

impl Target {
    /// `mx.example.org[192.0.2.1]`, as in logs and DSNs.
    fn peer(&self) -> String {
        format!("{}[{}]", self.name, self.addr.ip())
    }
}

/// How TLS is used on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    /// STARTTLS when offered.
    Opportunistic,
    /// STARTTLS or no delivery.
    Required,
    /// TLS from the first byte.
    Implicit,
    /// Plain text (a retry after a failed opportunistic handshake).
    Off,
}

/// Why a host did not take the transaction: the next one is tried.
struct HostFailure {
    /// For the record (RFC 3463 code first, or `peer said: reply`).
    text: String,
    /// The TLS handshake failed: the same host may be tried without TLS.
    tls: bool,
}

fn host_failure(text: String) -> HostFailure {
    HostFailure { text, tls: false }
}

/// Delivers `message` to `rcpts` (all due, all for `dest`); one verdict each.
pub async fn deliver(
    ctx: &Ctx,
    dest: &Destination,
    env: &Envelope,
    message: &[u8],
    rcpts: &[QueuedRecipient],
) -> Vec<(u32, Verdict)> {
    let all = |v: Verdict| rcpts.iter().map(|r| (r.index, v.clone())).collect();
    let (hosts, tls, auth) = match dest {
        Destination::Smarthost => {
            let Some(sh) = &ctx.config.smarthost else {
                return all(Verdict::Deferred("4.3.5 no smarthost configured".into()));
            };
            let tls = match sh.tls {
                SmarthostTls::None => Tls::Opportunistic,
                SmarthostTls::StartTls => Tls::Required,
                SmarthostTls::Implicit => Tls::Implicit,
            };
            (vec![(sh.host.clone(), sh.port)], tls, sh.auth.as_ref())
        }
        Destination::Domain(domain) => match mx_hosts(ctx, domain).await {
            Ok(h) => (h, Tls::Opportunistic, None),
            Err(v) => return all(v),
        },
    };
    let mut last = String::from("4.4.4 no address to deliver to");
    let mut tried = 0;
    let implicit_mx = matches!(dest, Destination::Domain(d) if hosts.len() == 1
        && hosts.first().is_some_and(|(h, _)| h.eq_ignore_ascii_case(d)));
    let mut any_address = false;
    for (host, port) in &hosts {
        let ips = match addresses(ctx.resolver.as_ref(), host).await {
            Ok(ips) => ips,
            Err(e) => {
                last = format!("4.4.3 {e}");
                continue;
            }
        };
        any_address |= !ips.is_empty();
        for ip in ips {
            if tried >= MAX_ADDRESSES {
                break;
            }
            tried += 1;
            let target = Target {
                name: host.clone(),
                addr: SocketAddr::new(ip, *port),
            };
            match session(ctx, &target, tls, auth, env, message, rcpts).await {
                Ok(v) => return v,
                Err(f) if f.tls && tls == Tls::Opportunistic => {
                    // RFC 7435 §3: opportunistic TLS falls back to clear text.
                    tracing::info!(peer = %target.peer(), "TLS failed ({}); retrying without", f.text);
                    match session(ctx, &target, Tls::Off, auth, env, message, rcpts).await {
                        Ok(v) => return v,
                        Err(f) => last = f.text,
                    }
                }
                Err(f) => last = f.text,
            }
        }
    }
    if implicit_mx && !any_address && tried == 0 && !last.starts_with("4.4.3") {
        // No MX and no address: the domain cannot receive mail (RFC 5321 §5.1).
        let d = hosts.first().map(|(h, _)| h.as_str()).unwrap_or_default();
        return all(Verdict::Failed(format!(
            "5.1.2 {d} has no MX and no address record"
        )));
    }
    all(Verdict::Deferred(last))
}

/// The MX hosts of a domain in order with the MX port; an address literal is its own
/// host. Null MX and unknown domains are permanent failures.
async fn mx_hosts(ctx: &Ctx, domain: &str) -> Result<Vec<(String, u16)>, Verdict> {
    let port = ctx.config.mx_port;
    if domain.starts_with('[') {
        return Ok(vec![(domain.to_string(), port)]);
    }
    match ctx.resolver.mx(domain).await {
        Ok(answer) => match order_mx(domain, answer) {
            Exchangers::NullMx => Err(Verdict::Failed(format!(
                "5.1.10 {domain} does not accept mail (null MX, RFC 7505)"
            ))),
            Exchangers::Hosts(h) => Ok(h.into_iter().map(|h| (h, port)).collect()),
        },
        Err(ResolveError::NotFound(_)) => Err(Verdict::Failed(format!(
            "5.1.2 domain {domain} does not exist"
        ))),
        Err(e) => Err(Verdict::Deferred(format!("4.4.3 {e}"))),
    }
}

/// A host's addresses: a literal (`[192.0.2.1]`, `[IPv6:…]`, or a bare IP) as is,
/// otherwise A/AAAA.
async fn addresses(resolver: &dyn Resolve, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .map(|h| h.strip_prefix("IPv6:").unwrap_or(h))
        .unwrap_or(host);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    match resolver.ips(host).await {
        Err(ResolveError::NotFound(_)) => Ok(Vec::new()),
        other => other,
    }
}

/// One connection: greeting, EHLO, STARTTLS, AUTH, then the transaction. Failures
/// before the transaction starts let the next host be tried.
async fn session(
    ctx: &Ctx,
    target: &Target,
    tls: Tls,
    auth: Option<&(String, buudien_types::Secret<String>)>,
    env: &Envelope,
    message: &[u8],
    rcpts: &[QueuedRecipient],
) -> Result<Vec<(u32, Verdict)>, HostFailure> {
    let t = &ctx.config.timeouts;
    let peer = target.peer();
    let fail = |stage: &str, e: ClientError| host_failure(format!("4.4.2 {peer}: {e} ({stage})"));
    let tcp = tokio::time::timeout(t.connect, TcpStream::connect(target.addr))
        .await
        .map_err(|_| host_failure(format!("4.4.1 connect to {peer}: timed out")))?
        .map_err(|e| host_failure(format!("4.4.1 connect to {peer}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let name = server_name(target);
    let stream: Box<dyn Stream> = if tls == Tls::Implicit {
        let s = tokio::time::timeout(t.connect, ctx.tls.connect(name.clone(), tcp))
            .await
            .map_err(|_| host_failure(format!("4.4.2 {peer}: TLS handshake timed out")))?
            .map_err(|e| host_failure(format!("4.4.2 {peer}: TLS handshake failed: {e}")))?;
        Box::new(s)
    } else {
        Box::new(tcp)
    };
    let mut client = Client::new(stream, tls == Tls::Implicit);
    let greeting = client
        .reply(t.greeting, "waiting for the greeting")
        .await
        .map_err(|e| fail("greeting", e))?;
    if greeting.class() != 2 {
        // RFC 5321 §3.1: a 554 greeting; try the next host.
        return Err(host_failure(format!(
            "{peer} said: {}",
            greeting.one_line()
        )));
    }
    let mut caps = ehlo(ctx, &mut client, &peer).await?;
    if !client.is_tls() && tls != Tls::Off && caps.starttls {
        let r = client
            .command("STARTTLS", t.command, "after STARTTLS")
            .await
            .map_err(|e| fail("STARTTLS", e))?;
        if r.code == 220 {
            client = client
                .starttls(&ctx.tls, name, t.connect)
                .await
                .map_err(|e| HostFailure {
                    text: format!("4.7.0 {peer}: {e}"),
                    tls: true,
                })?;
            // RFC 3207 §4.2: forget everything learnt before TLS; EHLO again.
            caps = ehlo(ctx, &mut client, &peer).await?;
        } else if tls == Tls::Required {
            return Err(host_failure(format!("{peer} said: {}", r.one_line())));
        }
    }
    if tls == Tls::Required && !client.is_tls() {
        return Err(host_failure(format!(
            "4.7.0 {peer} does not offer STARTTLS, which is required"
        )));
    }
    if let Some((user, pass)) = auth {
        authenticate(ctx, &mut client, &caps, target, user, pass.expose()).await?;
    }
    let out = transaction(ctx, &mut client, &caps, &peer, env, message, rcpts).await;
    let _ = client.command("QUIT", QUIT_TIMEOUT, "after QUIT").await;
    Ok(out)
}

fn server_name(target: &Target) -> ServerName<'static> {
    ServerName::try_from(target.name.clone())
        .unwrap_or_else(|_| ServerName::IpAddress(target.addr.ip().into()))
}

/// EHLO, or HELO when EHLO is refused (RFC 5321 §3.2); no extensions then.
async fn ehlo(ctx: &Ctx, client: &mut Client, peer: &str) -> Result<Capabilities, HostFailure> {
    let t = &ctx.config.timeouts;
    let host = &ctx.config.hostname;
    let fail = |e: ClientError| host_failure(format!("4.4.2 {peer}: {e} (EHLO)"));
    let r = client
        .command(&format!("EHLO {host}"), t.command, "after EHLO")
        .await
        .map_err(fail)?;
    if r.class() == 2 {
        return Ok(Capabilities::parse(&r));
    }
    let r = client
        .command(&format!("HELO {host}"), t.command, "after HELO")
        .await
        .map_err(fail)?;
    if r.class() == 2 {
        Ok(Capabilities::default())
    } else {
        Err(host_failure(format!("{peer} said: {}", r.one_line())))
    }
}

/// AUTH PLAIN (RFC 4954, RFC 4616), only over TLS or to a loopback address.
async fn authenticate(
    ctx: &Ctx,
    client: &mut Client,
    caps: &Capabilities,
    target: &Target,
    user: &str,
    pass: &str,
) -> Result<(), HostFailure> {
    let peer = target.peer();
    if !client.is_tls() && !target.addr.ip().is_loopback() {
        return Err(host_failure(format!(
            "4.7.0 {peer}: not sending credentials over an unencrypted connection"
        )));
    }
    if !caps.auth.iter().any(|m| m == "PLAIN") {
        return Err(host_failure(format!(
            "4.7.0 {peer} does not offer AUTH PLAIN"
        )));
    }
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}").as_bytes());
    let r = client
        .command(
            &format!("AUTH PLAIN {token}"),
            ctx.config.timeouts.command,
            "after AUTH",
        )
        .await
        .map_err(|e| host_failure(format!("4.4.2 {peer}: {e} (AUTH)")))?;
    if r.class() == 2 {
        Ok(())
    } else {
        Err(host_failure(format!("{peer} said: {}", r.one_line())))
    }
}

/// What a reply means for the recipients it answers.
fn verdict(peer: &str, r: &Reply, relayed: bool) -> Verdict {
    let text = format!("{peer} said: {}", r.one_line());
    match r.class() {
        2 => Verdict::Delivered {
            reply: text,
            relayed,
        },
        5 => Verdict::Failed(text),
        _ => Verdict::Deferred(text),
    }
}

/// The `NOTIFY=` and `ORCPT=` parameters for a hop with DSN (RFC 3461 §4.1, §4.2).
fn dsn_params(r: &QueuedRecipient) -> String {
    let mut out = String::new();
    if let Some(n) = r.notify {
        let mut words = Vec::new();
        if n.success {
            words.push("SUCCESS");
        }
        if n.failure {
            words.push("FAILURE");
        }
        if n.delay {
            words.push("DELAY");
        }
        if words.is_empty() {
            words.push("NEVER");
        }
        out.push_str(&format!(" NOTIFY={}", words.join(",")));
    }
    match &r.orcpt {
        Some(o) => out.push_str(&format!(" ORCPT={o}")),
        // RFC 3461 §4.2: an MTA may add the ORCPT it received the address as.
        None if r.address.is_ascii() => {
            out.push_str(&format!(" ORCPT=rfc822;{}", xtext_encode(&r.address)));
        }
        None => {}
    }
    out
}

/// MAIL, RCPT each, DATA; pipelined (RFC 2920 §3.1) when the server offers it.
#[allow(clippy::too_many_arguments)]
async fn transaction(
    ctx: &Ctx,
    client: &mut Client,
    caps: &Capabilities,
    peer: &str,
    env: &Envelope,
    message: &[u8],
    rcpts: &[QueuedRecipient],
) -> Vec<(u32, Verdict)> {
    let t = &ctx.config.timeouts;
    let all = |v: Verdict| {
        rcpts
            .iter()
            .map(|r| (r.index, v.clone()))
            .collect::<Vec<_>>()
    };
    let (headers, body) = message.split_at(header_len(message).min(message.len()));
    let needs_utf8 = env.smtputf8
        && (!env.sender.is_ascii()
            || rcpts.iter().any(|r| !r.address.is_ascii())
            || has_8bit(headers));
    if needs_utf8 && !caps.smtputf8 {
        return all(Verdict::Failed(format!(
            "5.6.7 {peer} does not support SMTPUTF8, which this message needs (RFC 6531 §3.2)"
        )));
    }
    let mut eight_bit = env.eight_bit || has_8bit(body);
    let payload: Cow<'_, [u8]> = if eight_bit && !caps.eight_bit && !needs_utf8 {
        // RFC 6152 §3: convert, or return as undeliverable.
        match to_7bit(message) {
            Ok(m) => {
                eight_bit = false;
                Cow::Owned(m)
            }
            Err(e) => {
                return all(Verdict::Failed(format!(
                    "5.6.3 {peer} does not support 8BITMIME; {e}"
                )));
            }
        }
    } else {
        Cow::Borrowed(message)
    };
    if let Some(limit) = caps.size.filter(|n| *n > 0)
        && payload.len() as u64 > limit
    {
        return all(Verdict::Failed(format!(
            "5.3.4 message of {} octets exceeds the {limit}-octet limit of {peer} (RFC 1870)",
            payload.len()
        )));
    }
    let mut mail = format!("MAIL FROM:<{}>", env.sender);
    if caps.size.is_some() {
        mail.push_str(&format!(" SIZE={}", payload.len()));
    }
    if eight_bit && caps.eight_bit {
        mail.push_str(" BODY=8BITMIME");
    }
    if env.smtputf8 && caps.smtputf8 {
        mail.push_str(" SMTPUTF8");
    }
    if caps.dsn {
        match env.ret {
            Some(Ret::Full) => mail.push_str(" RET=FULL"),
            Some(Ret::Headers) => mail.push_str(" RET=HDRS"),
            None => {}
        }
        if let Some(id) = &env.envid {
            mail.push_str(&format!(" ENVID={}", xtext_encode(id)));
        }
    }
    let rcpt_lines: Vec<String> = rcpts
        .iter()
        .map(|r| {
            let params = if caps.dsn {
                dsn_params(r)
            } else {
                String::new()
            };
            format!("RCPT TO:<{}>{params}", r.address)
        })
        .collect();
    let relayed = |r: &QueuedRecipient| !caps.dsn && r.notify.is_some_and(|n| n.success);
    let lost = |e: ClientError| Verdict::Deferred(format!("4.4.2 {peer}: {e}"));

    // MAIL and RCPT replies; `data` is the DATA reply when it was pipelined.
    let mut replies: Vec<Reply> = Vec::with_capacity(rcpts.len());
    let mut data: Option<Reply> = None;
    let mail_reply;
    if caps.pipelining {
        let mut batch = format!("{mail}\r\n");
        for l in &rcpt_lines {
            batch.push_str(l);
            batch.push_str("\r\n");
        }
        batch.push_str("DATA\r\n");
        if let Err(e) = client.send(batch.as_bytes(), t.mail, "sending MAIL").await {
            return all(lost(e));
        }
        mail_reply = match client.reply(t.mail, "after MAIL").await {
            Ok(r) => r,
            Err(e) => return all(lost(e)),
        };
        for _ in rcpts {
            match client.reply(t.rcpt, "after RCPT").await {
                Ok(r) => replies.push(r),
                Err(e) => return all(lost(e)),
            }
        }
        match client.reply(t.data_init, "after DATA").await {
            Ok(r) => data = Some(r),
            Err(e) => return all(lost(e)),
        }
    } else {
        mail_reply = match client.command(&mail, t.mail, "after MAIL").await {
            Ok(r) => r,
            Err(e) => return all(lost(e)),
        };
        if mail_reply.class() == 2 {
            for l in &rcpt_lines {
                match client.command(l, t.rcpt, "after RCPT").await {
                    Ok(r) => {
                        let closing = r.code == 421;
                        replies.push(r);
                        if closing {
                            break;
                        }
                    }
                    Err(e) => return all(lost(e)),
                }
            }
        }
    }
    if mail_reply.class() != 2 {
        if data.as_ref().is_some_and(|d| d.code == 354) {
            end_empty_data(client, t).await;
        }
        return all(verdict(peer, &mail_reply, false));
    }
    let mut out = Vec::with_capacity(rcpts.len());
    let mut accepted = Vec::new();
    for (i, r) in rcpts.iter().enumerate() {
        match replies.get(i) {
            Some(reply) if reply.class() == 2 => accepted.push(r),
            Some(reply) => out.push((r.index, verdict(peer, reply, false))),
            // The server closed (421) before this one was asked.
            None => out.push((
                r.index,
                Verdict::Deferred(format!("4.4.2 {peer}: connection closed")),
            )),
        }
    }
    if accepted.is_empty() {
        if data.as_ref().is_some_and(|d| d.code == 354) {
            end_empty_data(client, t).await;
        }
        return out;
    }
    let data = match data {
        Some(d) => d,
        None => match client.command("DATA", t.data_init, "after DATA").await {
            Ok(r) => r,
            Err(e) => {
                out.extend(accepted.iter().map(|r| (r.index, lost(e.clone()))));
                return out;
            }
        },
    };
    if data.code != 354 {
        out.extend(
            accepted
                .iter()
                .map(|r| (r.index, verdict(peer, &data, false))),
        );
        return out;
    }
    let stream = data_stream(&payload);
    let end = match client.send_data(&stream, t.data_block).await {
        Ok(()) => client.reply(t.data_end, "after the final dot").await,
        Err(e) => Err(e),
    };
    match end {
        Ok(r) => out.extend(
            accepted
                .iter()
                .map(|x| (x.index, verdict(peer, &r, relayed(x)))),
        ),
        Err(e) => out.extend(accepted.iter().map(|x| (x.index, lost(e.clone())))),
    }
    out
}

/// RFC 2920 §3.1: the server accepted a pipelined DATA although no recipient was
/// accepted; the client ends it with an empty message.
async fn end_empty_data(client: &mut Client, t: &crate::Timeouts) {
    let _ = client
        .send(b".\r\n", t.data_block, "ending empty data")
        .await;
    let _ = client.reply(t.data_end, "after the final dot").await;
}
