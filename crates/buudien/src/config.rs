//! The configuration file (TOML). Every section refuses unknown keys, and a parse
//! error names the file, the line and the key.

use buudien_auth::ThrottleConfig;
use buudien_types::{parse_duration, parse_size};
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This server's name (greetings, certificates, APOP timestamps).
    pub hostname: String,
    /// Where the store lives. Relative paths are relative to the config file.
    pub data_dir: PathBuf,
    /// Listeners per service.
    #[serde(default)]
    pub listen: Listen,
    /// The certificate for STLS/STARTTLS and implicit TLS.
    #[serde(default)]
    pub tls: Option<Tls>,
    /// POP3 settings.
    #[serde(default)]
    pub pop3: Pop3,
    /// IMAP settings.
    #[serde(default)]
    pub imap: Imap,
    /// SMTP settings; `max_message_size` also bounds `buudien deliver`.
    #[serde(default)]
    pub smtp: Smtp,
    /// Outbound delivery.
    #[serde(default)]
    pub queue: Queue,
    /// Resolver settings.
    #[serde(default)]
    pub dns: Dns,
    /// Connection limits.
    #[serde(default)]
    pub limits: Limits,
    /// Which store holds the mail.
    #[serde(default)]
    pub store: Store,
}

/// `[store]`: the backend. The embedded SQLite store under `data_dir` is the default;
/// `backend = "postgres"` with `url` puts the store in PostgreSQL, shared by every
/// node of a cluster (blobs included; `data_dir` then holds only temporary files).
/// With PostgreSQL, `blobs = "s3"` and the `s3_*` keys put message bytes in an
/// S3-compatible bucket instead of the database.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Store {
    /// `"sqlite"` (default) or `"postgres"`.
    pub backend: Backend,
    /// The PostgreSQL connection URL (`postgres://user@host:port/db`, or the
    /// `key=value` form); required with `backend = "postgres"`, refused otherwise.
    pub url: Option<String>,
    /// Connections in the PostgreSQL pool of this node. Default 16.
    pub pool_size: usize,
    /// SQLite: messages up to this size are kept in the database instead of a file of
    /// their own (they then cost no fsync of their own); 0 puts every message in a
    /// file. Default 128 KiB.
    #[serde(deserialize_with = "opt_size")]
    pub inline_max: Option<u64>,
    /// Where message bytes go with PostgreSQL: `"postgres"` (default) or `"s3"`.
    pub blobs: Blobs,
    /// The S3 endpoint URL (`https://…`); absent for AWS itself.
    pub s3_endpoint: Option<String>,
    /// The bucket (must exist); required with `blobs = "s3"`.
    pub s3_bucket: Option<String>,
    /// The region. Default `us-east-1`.
    pub s3_region: Option<String>,
    /// Objects are `<prefix>/<hex of the blob's id>` (BLAKE3; SHA-256 before). Default `blobs`.
    pub s3_prefix: Option<String>,
    /// The access key id; with `s3_secret_key_file`. Without both, the environment's
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`).
    pub s3_access_key: Option<String>,
    /// A file holding the secret access key (its first line), read at start.
    /// Relative paths are relative to the config file.
    pub s3_secret_key_file: Option<PathBuf>,
    /// Allow an `http://` endpoint (required for one, refused otherwise).
    pub s3_allow_http: bool,
}

/// Where PostgreSQL's message bytes go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Blobs {
    /// In the database (`bytea` chunks).
    #[default]
    Postgres,
    /// In an S3-compatible bucket (`s3_*` keys).
    S3,
}

/// The store backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The embedded SQLite store (`buudien-store-sqlite`).
    #[default]
    Sqlite,
    /// PostgreSQL (`buudien-store-postgres`).
    Postgres,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            backend: Backend::Sqlite,
            url: None,
            pool_size: 16,
            inline_max: None,
            blobs: Blobs::Postgres,
            s3_endpoint: None,
            s3_bucket: None,
            s3_region: None,
            s3_prefix: None,
            s3_access_key: None,
            s3_secret_key_file: None,
            s3_allow_http: false,
        }
    }
}

/// The URL may hold a password: it is never printed (nor the S3 key id and secret
/// file).
impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .field("pool_size", &self.pool_size)
            .field("inline_max", &self.inline_max)
            .field("blobs", &self.blobs)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("s3_bucket", &self.s3_bucket)
            .field("s3_region", &self.s3_region)
            .field("s3_prefix", &self.s3_prefix)
            .field(
                "s3_access_key",
                &self.s3_access_key.as_ref().map(|_| "<set>"),
            )
            .field("s3_allow_http", &self.s3_allow_http)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Refuses settings that cannot work together.
    fn check(&self) -> Result<(), String> {
        match (self.backend, &self.url) {
            (Backend::Postgres, None) => {
                Err("[store] backend = \"postgres\" needs url = \"postgres://…\"".into())
            }
            (Backend::Sqlite, Some(_)) => Err(
                "[store] url is only used with backend = \"postgres\" (SQLite lives in data_dir)"
                    .into(),
            ),
            (Backend::Postgres, _) if self.inline_max.is_some() => {
                Err("[store] inline_max is for the SQLite store".into())
            }
            _ if self.pool_size == 0 => Err("[store] pool_size must be at least 1".into()),
            _ => self.check_s3(),
        }
    }

    /// Whether any `s3_*` key is set.
    fn any_s3_key(&self) -> bool {
        self.s3_endpoint.is_some()
            || self.s3_bucket.is_some()
            || self.s3_region.is_some()
            || self.s3_prefix.is_some()
            || self.s3_access_key.is_some()
            || self.s3_secret_key_file.is_some()
            || self.s3_allow_http
    }

    /// The object storage keys: only with `blobs = "s3"` on PostgreSQL, a bucket, an
    /// endpoint that is a URL (`http://` only with `s3_allow_http`), a plain prefix,
    /// and the key id and secret file together.
    fn check_s3(&self) -> Result<(), String> {
        if self.blobs == Blobs::Postgres {
            if self.any_s3_key() {
                return Err("[store] s3_* keys are only used with blobs = \"s3\"".into());
            }
            return Ok(());
        }
        if self.backend != Backend::Postgres {
            return Err(
                "[store] blobs = \"s3\" needs backend = \"postgres\" (SQLite keeps its blobs in data_dir)"
                    .into(),
            );
        }
        let bucket = self.s3_bucket.as_deref().unwrap_or_default();
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if self.s3_bucket.is_none() {
            return Err("[store] blobs = \"s3\" needs s3_bucket".into());
        }
        if !bucket_ok {
            return Err(format!(
                "[store] s3_bucket {bucket:?} is not a bucket name (3-63 of a-z 0-9 . -)"
            ));
        }
        match self.s3_endpoint.as_deref() {
            Some(e) if e.starts_with("http://") && !self.s3_allow_http => {
                return Err(format!(
                    "[store] s3_endpoint {e} is plain HTTP: set s3_allow_http = true to allow it"
                ));
            }
            Some(e) if e.starts_with("http://") => {}
            Some(e) if e.starts_with("https://") && !self.s3_allow_http => {}
            Some(e) if !e.starts_with("https://") => {
                return Err(format!(
                    "[store] s3_endpoint {e} is not an http:// or https:// URL"
                ));
            }
            _ if self.s3_allow_http => {
                return Err("[store] s3_allow_http is only for an http:// s3_endpoint".into());
            }
            _ => {}
        }
        if let Some(p) = &self.s3_prefix {
            let plain = !p.is_empty()
                && p.len() <= 200
                && p.split('/').all(|seg| {
                    !seg.is_empty()
                        && seg
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                });
            if !plain {
                return Err(format!(
                    "[store] s3_prefix {p:?} must be path segments of A-Z a-z 0-9 - _ . \
                     joined by /"
                ));
            }
        }
        if self.s3_access_key.is_some() != self.s3_secret_key_file.is_some() {
            return Err("[store] s3_access_key and s3_secret_key_file go together".into());
        }
        Ok(())
    }
}

/// `[listen]`: a list of `ip:port` per service; missing or empty disables it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// POP3 with STLS (110).
    #[serde(default)]
    pub pop3: Vec<SocketAddr>,
    /// POP3 over implicit TLS (995).
    #[serde(default)]
    pub pop3s: Vec<SocketAddr>,
    /// SMTP (25), accepted now, served with the SMTP issue.
    #[serde(default)]
    pub smtp: Vec<SocketAddr>,
    /// Submission (587), accepted now.
    #[serde(default)]
    pub submission: Vec<SocketAddr>,
    /// Submission over implicit TLS (465), accepted now.
    #[serde(default)]
    pub submissions: Vec<SocketAddr>,
    /// IMAP with STARTTLS (143, RFC 9051 §6.2.1).
    #[serde(default)]
    pub imap: Vec<SocketAddr>,
    /// IMAP over implicit TLS (993, RFC 8314 §3.1).
    #[serde(default)]
    pub imaps: Vec<SocketAddr>,
}

/// `[tls]`: PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// `[pop3]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pop3 {
    /// Inactivity timer (RFC 1939 §3: at least 10 minutes).
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// How long a client may take to log in (each wait before login).
    #[serde(deserialize_with = "duration")]
    pub preauth_timeout: Duration,
    /// Offer APOP with a greeting timestamp.
    pub apop: bool,
    /// Allow USER/PASS/AUTH on unencrypted non-loopback connections.
    pub allow_plaintext_auth: bool,
    /// Exclusive maildrop lock (RFC 1939 §8); false works on snapshots.
    pub lock_session: bool,
    /// Advertised LOGIN-DELAY (RFC 2449 §6.5), if any.
    #[serde(deserialize_with = "opt_duration")]
    pub login_delay: Option<Duration>,
}

impl Default for Pop3 {
    fn default() -> Self {
        Pop3 {
            idle_timeout: Duration::from_secs(600),
            preauth_timeout: Duration::from_secs(180),
            apop: false,
            allow_plaintext_auth: false,
            lock_session: true,
            login_delay: None,
        }
    }
}

/// `[imap]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Imap {
    /// Allow LOGIN/AUTHENTICATE on unencrypted non-loopback connections (otherwise
    /// `LOGINDISABLED`, RFC 9051 §6.2.3).
    pub allow_plaintext_auth: bool,
    /// The largest message APPEND takes, in bytes (integer or "50M"); advertised as
    /// `APPENDLIMIT` (RFC 7889).
    #[serde(deserialize_with = "size")]
    pub max_append: u64,
    /// Inactivity timer (RFC 9051 §5.4: at least 30 minutes).
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// How long a client may take to log in (each wait before login).
    #[serde(deserialize_with = "duration")]
    pub preauth_timeout: Duration,
    /// Advertise LITERAL+ instead of LITERAL- (RFC 7888 §5).
    pub literal_plus: bool,
}

impl Default for Imap {
    fn default() -> Self {
        Imap {
            allow_plaintext_auth: false,
            max_append: 50 << 20,
            idle_timeout: Duration::from_secs(1800),
            preauth_timeout: Duration::from_secs(180),
            literal_plus: false,
        }
    }
}

/// `[smtp]`: the SMTP service; `max_message_size` also bounds `buudien deliver`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Smtp {
    /// The largest message accepted, in bytes (integer or "50M").
    #[serde(deserialize_with = "size")]
    pub max_message_size: u64,
    /// Recipients per message (at least 100, RFC 5321 §4.5.3.1.8).
    pub max_recipients: usize,
    /// The sub-address separator (`user+tag@domain`); "" turns sub-addressing off.
    pub subaddress_separator: String,
    /// The reply code for relay attempts: 550 or 554.
    pub relay_denied_code: u16,
    /// Reply `552 5.2.2` (permanent) instead of `452 4.2.2` for a full mailbox.
    pub quota_permanent: bool,
    /// Check the From header of submitted mail against the login.
    pub check_from_header: bool,
    /// More `Received` headers than this is a loop (RFC 5321 §6.3): `554 5.4.6`.
    pub max_received_headers: usize,
    /// Offer AUTH on unencrypted non-loopback connections.
    pub allow_plaintext_auth: bool,
    /// On the submission ports, how long a client may take to log in (each wait
    /// before AUTH); port 25 keeps the RFC 5321 timeouts.
    #[serde(deserialize_with = "duration")]
    pub preauth_timeout: Duration,
}

impl Default for Smtp {
    fn default() -> Self {
        Smtp {
            max_message_size: 50 << 20,
            max_recipients: 1000,
            subaddress_separator: "+".into(),
            relay_denied_code: 550,
            quota_permanent: false,
            check_from_header: true,
            max_received_headers: 100,
            allow_plaintext_auth: false,
            preauth_timeout: Duration::from_secs(180),
        }
    }
}

/// `[queue]`: outbound delivery.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Queue {
    /// Send everything through this relay (`host:port`) instead of MX lookups.
    pub smarthost: Option<String>,
    /// TLS to the smarthost: "starttls" (default), "implicit" or "none".
    pub smarthost_tls: String,
    /// Login at the smarthost.
    pub smarthost_user: Option<String>,
    /// Password at the smarthost.
    pub smarthost_password: Option<String>,
    /// Retry delays after each failed attempt; the last one repeats.
    #[serde(deserialize_with = "durations")]
    pub retry: Vec<Duration>,
    /// Give up (and bounce) after this long in the queue.
    #[serde(deserialize_with = "duration")]
    pub expire: Duration,
    /// The port MX hosts are reached on (25; tests change it).
    pub mx_port: u16,
    /// Connections at once to one destination.
    pub max_connections_per_domain: usize,
    /// How long a claim on a queued message lasts; an attempt is cut off before it
    /// ends, and a message of a node that died is picked up by another after it.
    #[serde(deserialize_with = "duration")]
    pub lease: Duration,
    /// How often the queue is looked at when nothing wakes it (with several nodes on
    /// PostgreSQL, also how soon a node notices work another node left).
    #[serde(deserialize_with = "duration")]
    pub poll_interval: Duration,
}

impl Default for Queue {
    fn default() -> Self {
        let mut retry = Vec::new();
        let mut d = Duration::from_secs(300);
        while d < Duration::from_secs(4 * 3600) {
            retry.push(d);
            d *= 2;
        }
        retry.push(Duration::from_secs(4 * 3600));
        Queue {
            smarthost: None,
            smarthost_tls: "starttls".into(),
            smarthost_user: None,
            smarthost_password: None,
            retry,
            expire: Duration::from_secs(5 * 86400),
            mx_port: 25,
            max_connections_per_domain: 4,
            lease: Duration::from_secs(20 * 60),
            poll_interval: Duration::from_secs(5),
        }
    }
}

/// `[limits]`: connections, checked at accept for every service together.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Connections in total; more are refused until some end.
    pub max_connections: usize,
    /// Connections from one client address (IPv6: one /64).
    pub max_connections_per_ip: usize,
    /// From 75% of `max_connections` on, the server is under load: clients that
    /// have not logged in (and port 25 clients) wait at most this long for each
    /// command instead of their usual timeout, as Postfix's stress mode. Default 10 s.
    #[serde(deserialize_with = "duration")]
    pub stressed_timeout: Duration,
    /// Free space in `data_dir` that new messages may not use, kept for deletions
    /// (expunge, POP3 DELE) and the database's log; below it deliveries get
    /// `452 4.3.1`. Default 64 MiB; 0 turns it off.
    #[serde(deserialize_with = "size")]
    pub min_free_space: u64,
    /// The wait before the reply to a failed login, doubled per recent failure from
    /// that address up to `login_failure_max_delay`. Default 1 s.
    #[serde(deserialize_with = "duration")]
    pub login_failure_delay: Duration,
    /// The longest such wait. Default 15 s.
    #[serde(deserialize_with = "duration")]
    pub login_failure_max_delay: Duration,
    /// Recent failed logins after which an address is refused without a password
    /// check. Default 10.
    pub login_refuse_after: u32,
    /// How long an address's (or account's) failures are remembered after the last
    /// one. Default 10 min.
    #[serde(deserialize_with = "duration")]
    pub login_forget_after: Duration,
    /// Recent failed logins of one account after which it is refused, except from
    /// addresses that logged in to it before. Default 20; 0 turns it off.
    pub account_refuse_after: u32,
}

impl Default for Limits {
    fn default() -> Self {
        let t = ThrottleConfig::default();
        Limits {
            max_connections: 10_000,
            max_connections_per_ip: 50,
            stressed_timeout: buudien_types::Load::DEFAULT_STRESSED_WAIT,
            min_free_space: buudien_store_sqlite::DEFAULT_MIN_FREE,
            login_failure_delay: t.base_delay,
            login_failure_max_delay: t.max_delay,
            login_refuse_after: t.refuse_after,
            login_forget_after: t.forget_after,
            account_refuse_after: t.account_refuse_after,
        }
    }
}

impl Limits {
    /// The failed-login throttle's settings.
    pub fn throttle(&self) -> ThrottleConfig {
        ThrottleConfig {
            base_delay: self.login_failure_delay,
            max_delay: self.login_failure_max_delay,
            refuse_after: self.login_refuse_after,
            forget_after: self.login_forget_after,
            account_refuse_after: self.account_refuse_after,
            ..ThrottleConfig::default()
        }
    }
}

/// `[dns]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dns {
    /// Resolvers to ask instead of the system's (`ip:port`).
    pub servers: Vec<SocketAddr>,
}

fn durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    if list.is_empty() {
        return Err(serde::de::Error::custom(
            "the retry list needs at least one delay",
        ));
    }
    list.iter()
        .map(|s| parse_duration(s).map_err(serde::de::Error::custom))
        .collect()
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

fn opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    size(d).map(Some)
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Int(u64),
    Text(String),
}

fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match SizeValue::deserialize(d)? {
        SizeValue::Int(n) => Ok(n),
        SizeValue::Text(s) => parse_size(&s).map_err(serde::de::Error::custom),
    }
}

impl Config {
    /// Reads and checks a config file. Errors are one line naming the file and line.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "config file {} not found: run `buudien quickstart you@your.domain` \
                     or pass --config FILE",
                    path.display()
                )
            } else {
                format!("cannot read config file {}: {e}", path.display())
            }
        })?;
        let mut cfg = Config::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if cfg.data_dir.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            cfg.data_dir = base.join(&cfg.data_dir);
        }
        if let Some(f) = &mut cfg.store.s3_secret_key_file
            && f.is_relative()
        {
            *f = path.parent().unwrap_or(Path::new(".")).join(&*f);
        }
        if let Some(tls) = &mut cfg.tls {
            let base = path.parent().unwrap_or(Path::new("."));
            if tls.cert.is_relative() {
                tls.cert = base.join(&tls.cert);
            }
            if tls.key.is_relative() {
                tls.key = base.join(&tls.key);
            }
        }
        Ok(cfg)
    }

    /// Parses config text; the error is one line: `line N: message`.
    pub fn parse(text: &str) -> Result<Config, String> {
        let cfg: Config = toml::from_str(text).map_err(|e: toml::de::Error| {
            let msg = e.message().replace('\n', " ");
            match e.span() {
                Some(span) => {
                    let line = text
                        .get(..span.start)
                        .map(|t| t.matches('\n').count() + 1)
                        .unwrap_or(0);
                    format!("line {line}: {msg}")
                }
                None => msg,
            }
        })?;
        cfg.store.check()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_example_parses() -> Result<(), String> {
        let c = Config::parse(
            r#"
hostname = "mail.example.com"
data_dir = "/var/lib/buudien"
[listen]
pop3 = ["0.0.0.0:110"]
pop3s = ["0.0.0.0:995", "[::1]:995"]
smtp = []
imap = ["0.0.0.0:143"]
imaps = ["0.0.0.0:993"]
[tls]
cert = "/etc/buudien/fullchain.pem"
key = "/etc/buudien/privkey.pem"
[pop3]
idle_timeout = "15m"
apop = true
login_delay = "5m"
[imap]
allow_plaintext_auth = true
max_append = "20M"
idle_timeout = "31m"
literal_plus = true
[smtp]
max_message_size = "10M"
[queue]
smarthost = "relay.example.net:587"
retry = ["2s", "4s"]
expire = "1d"
lease = "90s"
poll_interval = "2s"
[dns]
servers = ["127.0.0.1:5353"]
"#,
        )?;
        assert_eq!(c.listen.pop3.len(), 1);
        assert_eq!(c.listen.pop3s.len(), 2);
        assert_eq!(c.pop3.idle_timeout, Duration::from_secs(900));
        assert!(c.pop3.apop && c.pop3.lock_session);
        assert_eq!(c.pop3.login_delay, Some(Duration::from_secs(300)));
        assert_eq!(c.smtp.max_message_size, 10 << 20);
        assert_eq!((c.listen.imap.len(), c.listen.imaps.len()), (1, 1));
        assert!(c.imap.allow_plaintext_auth && c.imap.literal_plus);
        assert_eq!(c.imap.max_append, 20 << 20);
        assert_eq!(c.imap.idle_timeout, Duration::from_secs(31 * 60));
        let d = Imap::default();
        assert!(!d.allow_plaintext_auth && !d.literal_plus);
        assert_eq!(
            (d.max_append, d.idle_timeout),
            (50 << 20, Duration::from_secs(1800))
        );
        assert_eq!(c.smtp.max_recipients, 1000);
        assert_eq!(
            c.queue.retry,
            [Duration::from_secs(2), Duration::from_secs(4)]
        );
        assert_eq!(c.queue.expire, Duration::from_secs(86400));
        assert_eq!(
            (c.queue.lease, c.queue.poll_interval),
            (Duration::from_secs(90), Duration::from_secs(2))
        );
        assert_eq!(c.dns.servers.len(), 1);
        let d = Queue::default();
        assert_eq!(d.retry.first(), Some(&Duration::from_secs(300)));
        assert_eq!(d.retry.last(), Some(&Duration::from_secs(4 * 3600)));
        assert_eq!(
            (d.lease, d.poll_interval),
            (Duration::from_secs(1200), Duration::from_secs(5))
        );
        Ok(())
    }

    #[test]
    fn login_throttle_keys() -> Result<(), String> {
        let base = "hostname = \"h\"\ndata_dir = \"d\"\n";
        let d = Config::parse(base)?.limits.throttle();
        assert_eq!(
            d,
            ThrottleConfig::default(),
            "the defaults are the throttle's"
        );
        let c = Config::parse(&format!(
            "{base}[limits]\nlogin_failure_delay = \"0s\"\nlogin_failure_max_delay = \"3s\"\n\
             login_refuse_after = 4\nlogin_forget_after = \"2m\"\naccount_refuse_after = 0\n"
        ))?;
        let t = c.limits.throttle();
        assert_eq!(
            (t.base_delay, t.max_delay),
            (Duration::ZERO, Duration::from_secs(3))
        );
        assert_eq!((t.refuse_after, t.account_refuse_after), (4, 0));
        assert_eq!(t.forget_after, Duration::from_secs(120));
        assert!(Config::parse(&format!("{base}[limits]\nlogin_refuse_after = -1\n")).is_err());
        Ok(())
    }

    #[test]
    fn store_backend_keys() -> Result<(), String> {
        let base = "hostname = \"h\"\ndata_dir = \"d\"\n";
        let c = Config::parse(base)?;
        assert_eq!(c.store.backend, Backend::Sqlite, "SQLite is the default");
        assert_eq!((c.store.url.as_deref(), c.store.pool_size), (None, 16));
        let c = Config::parse(&format!(
            "{base}[store]\nbackend = \"postgres\"\n\
             url = \"postgres://buudien:secret@db.example:5432/mail\"\npool_size = 32\n"
        ))?;
        assert_eq!(c.store.backend, Backend::Postgres);
        assert_eq!(
            c.store.url.as_deref(),
            Some("postgres://buudien:secret@db.example:5432/mail")
        );
        assert_eq!(c.store.pool_size, 32);
        assert!(
            !format!("{c:?}").contains("secret"),
            "the URL's password is never printed"
        );
        for bad in [
            "[store]\nbackend = \"postgres\"\n",
            "[store]\nurl = \"postgres://db/mail\"\n",
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://db/mail\"\npool_size = 0\n",
            "[store]\nbackend = \"mysql\"\n",
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://db/mail\"\npool = 3\n",
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://db/mail\"\ninline_max = 0\n",
            "[store]\ninline_max = \"lots\"\n",
        ] {
            assert!(Config::parse(&format!("{base}{bad}")).is_err(), "{bad}");
        }
        let c = Config::parse(&format!("{base}[store]\ninline_max = \"64K\"\n"))?;
        assert_eq!(c.store.inline_max, Some(64 << 10));
        assert_eq!(Config::parse(base)?.store.inline_max, None);
        Ok(())
    }

    #[test]
    fn s3_blob_keys() -> Result<(), String> {
        let pg = "hostname = \"h\"\ndata_dir = \"d\"\n[store]\nbackend = \"postgres\"\n\
                  url = \"postgres://db/mail\"\n";
        let c = Config::parse(pg)?;
        assert_eq!(
            c.store.blobs,
            Blobs::Postgres,
            "bytes in PostgreSQL by default"
        );
        let c = Config::parse(&format!(
            "{pg}blobs = \"s3\"\ns3_endpoint = \"https://s3.example:9000\"\n\
             s3_bucket = \"mail-blobs\"\ns3_region = \"eu-west-1\"\ns3_prefix = \"node/blobs\"\n\
             s3_access_key = \"AKIDEXAMPLE\"\ns3_secret_key_file = \"/etc/buudien/s3.key\"\n"
        ))?;
        assert_eq!(c.store.blobs, Blobs::S3);
        assert_eq!(
            c.store.s3_endpoint.as_deref(),
            Some("https://s3.example:9000")
        );
        assert_eq!(c.store.s3_bucket.as_deref(), Some("mail-blobs"));
        assert_eq!(c.store.s3_region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.store.s3_prefix.as_deref(), Some("node/blobs"));
        assert_eq!(
            c.store.s3_secret_key_file.as_deref(),
            Some(Path::new("/etc/buudien/s3.key"))
        );
        assert!(!c.store.s3_allow_http);
        assert!(
            !format!("{c:?}").contains("AKIDEXAMPLE"),
            "key id not printed"
        );
        // AWS itself (no endpoint), credentials from the environment; plain HTTP when
        // asked for.
        Config::parse(&format!("{pg}blobs = \"s3\"\ns3_bucket = \"b12\"\n"))?;
        let c = Config::parse(&format!(
            "{pg}blobs = \"s3\"\ns3_bucket = \"b12\"\ns3_endpoint = \"http://127.0.0.1:9000\"\n\
             s3_allow_http = true\n"
        ))?;
        assert!(c.store.s3_allow_http);
        let sqlite = "hostname = \"h\"\ndata_dir = \"d\"\n[store]\n";
        for (bad, says) in [
            (
                format!("{sqlite}blobs = \"s3\"\ns3_bucket = \"b12\"\n"),
                "needs backend",
            ),
            (format!("{sqlite}s3_bucket = \"b12\"\n"), "only used with"),
            (format!("{pg}s3_bucket = \"b12\"\n"), "only used with"),
            (format!("{pg}blobs = \"s3\"\n"), "needs s3_bucket"),
            (
                format!("{pg}blobs = \"s3\"\ns3_bucket = \"Bad_Name\"\n"),
                "not a bucket",
            ),
            (
                format!("{pg}blobs = \"s3\"\ns3_bucket = \"b12\"\ns3_endpoint = \"http://x\"\n"),
                "s3_allow_http",
            ),
            (
                format!("{pg}blobs = \"s3\"\ns3_bucket = \"b12\"\ns3_allow_http = true\n"),
                "only for an http://",
            ),
            (
                format!(
                    "{pg}blobs = \"s3\"\ns3_bucket = \"b12\"\ns3_endpoint = \"https://x\"\ns3_allow_http = true\n"
                ),
                "only for an http://",
            ),
            (
                format!("{pg}blobs = \"s3\"\ns3_bucket = \"b12\"\ns3_endpoint = \"s3.example\"\n"),
                "not an http",
            ),
            (
                format!("{pg}blobs = \"s3\"\ns3_bucket = \"b12\"\ns3_prefix = \"/a//b\"\n"),
                "s3_prefix",
            ),
            (
                format!("{pg}blobs = \"s3\"\ns3_bucket = \"b12\"\ns3_access_key = \"k\"\n"),
                "go together",
            ),
            (
                format!("{pg}blobs = \"s3\"\ns3_bucket = \"b12\"\ns3_secret_key_file = \"f\"\n"),
                "go together",
            ),
            (format!("{pg}blobs = \"disk\"\n"), "unknown variant"),
            (
                format!("{pg}blobs = \"s3\"\ns3_bucket = \"b12\"\ns3_secret = \"x\"\n"),
                "unknown field",
            ),
        ] {
            let e = Config::parse(&bad).err().unwrap_or_default();
            assert!(e.contains(says) && !e.contains('\n'), "{bad}: {e}");
        }
        Ok(())
    }

    #[test]
    fn s3_secret_file_is_relative_to_the_config() -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("buudien.toml");
        std::fs::write(
            &path,
            "hostname = \"h\"\ndata_dir = \"d\"\n[store]\nbackend = \"postgres\"\n\
             url = \"postgres://db/mail\"\nblobs = \"s3\"\ns3_bucket = \"b12\"\n\
             s3_access_key = \"k\"\ns3_secret_key_file = \"s3.key\"\n",
        )
        .map_err(|e| e.to_string())?;
        let c = Config::load(&path)?;
        assert_eq!(c.store.s3_secret_key_file, Some(dir.path().join("s3.key")));
        Ok(())
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = Config::parse("hostname = \"h\"\ndata_dir = \"d\"\n[pop3]\nidle = \"1m\"\n");
        let e = e.err().unwrap_or_default();
        assert!(e.starts_with("line 4:"), "{e}");
        assert!(e.contains("unknown field `idle`"), "{e}");
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            "hostname = \"h\"\ndata_dir = \"d\"\n[listen]\npop3 = [\"nowhere\"]\n",
            "hostname = \"h\"\ndata_dir = \"d\"\n[pop3]\nidle_timeout = \"soon\"\n",
            "hostname = \"h\"\ndata_dir = \"d\"\n[imap]\nmax_append = \"lots\"\n",
            "hostname = \"h\"\ndata_dir = \"d\"\n[imap]\nliteral = true\n",
            "data_dir = \"d\"\n",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
    }
}
