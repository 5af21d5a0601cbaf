//! `buudien quickstart EMAIL`: from nothing to a serving mail server. Writes a config
//! (unless one exists), a data dir, a self-signed certificate, the domain and the
//! account, and prints how to connect. Run again, it reuses what exists.

use crate::admin::{add_user, address};
use crate::cli::CliError;
use crate::config::Config;
use crate::secret;
use crate::store::{open_store, with_store};
use buudien_store::{MailStore, Quota, StoreError};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

/// Standard ports, used when running as root: pop3, pop3s, imap, imaps, smtp,
/// submission, submissions.
const STANDARD: [u16; 7] = [110, 995, 143, 993, 25, 587, 465];
/// Preferred unprivileged ports, in the same order.
const UNPRIVILEGED: [u16; 7] = [1110, 1995, 1143, 1993, 2525, 1587, 1465];

/// Sets everything up and returns the config to serve.
pub fn setup(config_path: &Path, email: &str) -> Result<Config, CliError> {
    let email = address(email)?;
    let config_path = absolute(config_path)?;
    let created = !config_path.exists();
    if created {
        write_config(&config_path, email.domain_str())?;
    }
    let cfg = Config::load(&config_path).map_err(CliError::config)?;
    if let Some(tls) = &cfg.tls
        && !(tls.cert.exists() && tls.key.exists())
    {
        write_certificate(&cfg.hostname, email.domain_str(), &tls.cert, &tls.key)?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::software(e.to_string()))?;
    let password = rt.block_on(async {
        with_store!(open_store(&cfg).await?, |store| first_account(
            &store, &email
        )
        .await)
    })?;
    print_summary(&cfg, &config_path, created, &email, password.as_deref());
    Ok(cfg)
}

/// Adds the domain and the account unless they exist; returns a generated password.
async fn first_account(
    store: &impl MailStore,
    email: &buudien_types::Address,
) -> Result<Option<String>, CliError> {
    match store.add_domain(&email.domain()).await {
        Ok(()) | Err(StoreError::Exists(_)) => {}
        Err(e) => return Err(CliError::from(e)),
    }
    if store.account(email).await?.is_some() {
        return Ok(None);
    }
    let pw = secret::generate();
    add_user(store, email, &pw, Quota::default()).await?;
    Ok(Some(pw))
}

fn absolute(p: &Path) -> Result<PathBuf, CliError> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::software(format!("cannot find the current directory: {e}")))?;
    Ok(cwd.join(p))
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A free port: `preferred` if it can be bound on all interfaces, else one the
/// kernel picks.
fn free_port(preferred: u16, taken: &[u16]) -> u16 {
    let try_bind = |port: u16| {
        TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))
            .ok()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    };
    if !taken.contains(&preferred)
        && let Some(p) = try_bind(preferred)
    {
        return p;
    }
    for _ in 0..16 {
        if let Some(p) = try_bind(0)
            && !taken.contains(&p)
        {
            return p;
        }
    }
    preferred
}

fn system_hostname(domain: &str) -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| h.contains('.') && !h.starts_with("localhost"))
        .unwrap_or_else(|| format!("mail.{domain}"))
}

fn write_config(path: &Path, domain: &str) -> Result<(), CliError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let data_dir = dir.join("buudien-data");
    let tls_dir = data_dir.join("tls");
    let ports = if is_root() {
        STANDARD
    } else {
        let mut chosen = [0u16; 7];
        for (i, preferred) in UNPRIVILEGED.iter().enumerate() {
            let p = free_port(*preferred, &chosen);
            if let Some(slot) = chosen.get_mut(i) {
                *slot = p;
            }
        }
        chosen
    };
    let [pop3, pop3s, imap, imaps, smtp, submission, submissions] = ports;
    let hostname = system_hostname(domain);
    let text = format!(
        r#"# buudien configuration, written by `buudien quickstart`.
hostname = "{hostname}"
data_dir = "{data}"

[listen]
# Each service takes a list of "ip:port"; an empty list or a missing key disables it.
pop3 = ["0.0.0.0:{pop3}"]
pop3s = ["0.0.0.0:{pop3s}"]
# IMAP with STARTTLS, and IMAP over implicit TLS.
imap = ["0.0.0.0:{imap}"]
imaps = ["0.0.0.0:{imaps}"]
# Mail from the Internet (your MX), normally port 25.
smtp = ["0.0.0.0:{smtp}"]
# Your mail clients send here, after logging in: STARTTLS, and implicit TLS.
submission = ["0.0.0.0:{submission}"]
submissions = ["0.0.0.0:{submissions}"]

[tls]
# A self-signed certificate made by quickstart; replace with a real one (for example
# from Let's Encrypt) and send SIGHUP to reload it.
cert = "{cert}"
key = "{key}"

[pop3]
idle_timeout = "10m"
apop = false
allow_plaintext_auth = false
lock_session = true

[imap]
# RFC 9051 §5.4 asks for at least 30 minutes.
idle_timeout = "30m"
allow_plaintext_auth = false
max_append = "50M"
literal_plus = false
"#,
        data = data_dir.display(),
        cert = tls_dir.join("cert.pem").display(),
        key = tls_dir.join("key.pem").display(),
    );
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::config(format!("cannot create {}: {e}", dir.display())))?;
    let mut f = std::fs::File::create_new(path)
        .map_err(|e| CliError::config(format!("cannot write {}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| CliError::config(format!("cannot write {}: {e}", path.display())))?;
    Ok(())
}

/// Writes a self-signed certificate for the hostname, the mail domain and loopback.
pub fn write_certificate(
    hostname: &str,
    domain: &str,
    cert: &Path,
    key: &Path,
) -> Result<(), CliError> {
    let mut names = vec![hostname.to_string(), domain.to_string(), "localhost".into()];
    names.dedup();
    let mut params = rcgen::CertificateParams::new(names)
        .map_err(|e| CliError::software(format!("certificate: {e}")))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hostname);
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(std::net::IpAddr::from([
            127, 0, 0, 1,
        ])));
    let key_pair =
        rcgen::KeyPair::generate().map_err(|e| CliError::software(format!("key: {e}")))?;
    let c = params
        .self_signed(&key_pair)
        .map_err(|e| CliError::software(format!("certificate: {e}")))?;
    for (path, text, mode) in [
        (cert, c.pem(), 0o644),
        (key, key_pair.serialize_pem(), 0o600),
    ] {
        write_private(path, text.as_bytes(), mode)?;
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::config(format!("cannot create {}: {e}", dir.display())))?;
    }
    let err = |e: std::io::Error| CliError::config(format!("cannot write {}: {e}", path.display()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(err)
}

fn ports(addrs: &[SocketAddr]) -> String {
    let p: Vec<String> = addrs.iter().map(|a| a.port().to_string()).collect();
    p.join(", ")
}

fn print_summary(
    cfg: &Config,
    config_path: &Path,
    created: bool,
    email: &buudien_types::Address,
    password: Option<&str>,
) {
    // The command as the user can type it: this very executable.
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "buudien".to_string());
    let mut out = String::new();
    let verb = if created { "written" } else { "reused" };
    out += &format!(
        "buudien is set up.\n\n  config:    {} ({verb})\n",
        config_path.display()
    );
    out += &format!("  data:      {}\n", cfg.data_dir.display());
    if let Some(tls) = &cfg.tls {
        out += &format!("  TLS cert:  {}\n", tls.cert.display());
    }
    out += &format!("\n  account:   {email}\n");
    match password {
        Some(p) => {
            out += &format!(
                "  password:  {p}\n  (shown once; change it with `buudien user passwd {email}`)\n"
            )
        }
        None => {
            out +=
                "  password:  unchanged (the account existed; `buudien user passwd` changes it)\n"
        }
    }
    out += "\nPoint a mail client (Thunderbird, a phone, mbsync, fetchmail) at it:\n";
    out += &format!(
        "  server:    {} (or this machine's address)\n",
        cfg.hostname
    );
    if !cfg.listen.pop3s.is_empty() {
        out += &format!("  POP3:      port {}, SSL/TLS\n", ports(&cfg.listen.pop3s));
    }
    if !cfg.listen.pop3.is_empty() {
        out += &format!("  POP3:      port {}, STARTTLS\n", ports(&cfg.listen.pop3));
    }
    if !cfg.listen.imaps.is_empty() {
        out += &format!("  IMAP:      port {}, SSL/TLS\n", ports(&cfg.listen.imaps));
    }
    if !cfg.listen.imap.is_empty() {
        out += &format!("  IMAP:      port {}, STARTTLS\n", ports(&cfg.listen.imap));
    }
    if !cfg.listen.submissions.is_empty() {
        out += &format!(
            "  SMTP:      port {}, SSL/TLS\n",
            ports(&cfg.listen.submissions)
        );
    }
    if !cfg.listen.submission.is_empty() {
        out += &format!(
            "  SMTP:      port {}, STARTTLS\n",
            ports(&cfg.listen.submission)
        );
    }
    out += &format!("  username:  {email} (the whole address)\n");
    out += "  The certificate is self-signed: accept it once in the client, or put a real\n  one in [tls] and send SIGHUP.\n";
    out += &format!(
        "\nPut a test message in:\n  printf 'Subject: hello\\n\\nfirst mail\\n' | {} --config {} deliver {email}\n",
        exe,
        config_path.display()
    );
    if !cfg.listen.smtp.is_empty() {
        out += &format!(
            "\nMail from the Internet arrives on port {}: point the MX record of {} at\nthis machine.\n",
            ports(&cfg.listen.smtp),
            email.domain_str()
        );
    }
    if !is_root() {
        out += "\n(Not running as root, so unprivileged ports were chosen; as root quickstart\nuses 110, 995, 143, 993, 25, 587 and 465.)\n";
    }
    print!("{out}");
    let _ = std::io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_config_serves_every_protocol_on_distinct_ports() -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("buudien.toml");
        write_config(&path, "example.com").map_err(|e| e.to_string())?;
        let cfg = Config::load(&path)?;
        let l = &cfg.listen;
        let lists = [
            &l.pop3,
            &l.pop3s,
            &l.imap,
            &l.imaps,
            &l.smtp,
            &l.submission,
            &l.submissions,
        ];
        let mut ports: Vec<u16> = lists
            .iter()
            .map(|list| list.first().map_or(0, |a| a.port()))
            .collect();
        assert!(ports.iter().all(|p| *p != 0), "{ports:?}");
        if is_root() {
            assert_eq!(ports, STANDARD);
        }
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 7, "ports are distinct");
        assert_eq!(cfg.imap.idle_timeout, std::time::Duration::from_secs(1800));
        assert!(!cfg.imap.allow_plaintext_auth && !cfg.imap.literal_plus);
        assert_eq!(cfg.imap.max_append, 50 << 20);
        Ok(())
    }
}
