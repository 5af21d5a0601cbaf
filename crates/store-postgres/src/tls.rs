//! TLS to PostgreSQL, as libpq spells it in the URL: `sslmode=require` turns it on
//! (for every pooled connection and the change watch's listening one) and
//! `sslrootcert=/path/ca.pem` names the certificates that may sign the server's
//! (default: the system's roots). The server's certificate is always verified, and
//! its name checked against the host, as libpq's `verify-full` does: a TLS
//! connection that anyone in the middle could answer would only look safe.
//! `sslmode=verify-ca` and `verify-full` mean the same here. Without one of them
//! (libpq's default `prefer` included) connections are plain, for a database on a
//! local socket or a private network.

use buudien_store::{Result, StoreError};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_postgres::config::SslMode;
pub use tokio_postgres_rustls::MakeRustlsConnect;

/// The URL key naming the CA file (libpq's; tokio-postgres does not know it).
const ROOT_KEY: &str = "sslrootcert";

/// libpq's verifying modes, which tokio-postgres does not know; they become `require`,
/// which verifies here.
const VERIFYING: [&str; 2] = ["verify-full", "verify-ca"];

/// Takes `sslrootcert` out of a URL (`postgres://…?sslrootcert=/x&…`) or a `key=value`
/// string (`host=… sslrootcert=/x`), which tokio-postgres would refuse, and turns
/// `sslmode=verify-full|verify-ca` into `require`; returns the rest and the path.
pub fn split_root_cert(url: &str) -> Result<(String, Option<PathBuf>)> {
    let bad = |why: &str| StoreError::Refused(format!("bad PostgreSQL URL: {why}"));
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_string(), None));
        };
        let mut root = None;
        let mut kept = Vec::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some((ROOT_KEY, v)) => root = Some(PathBuf::from(percent_decode(v)?)),
                Some(("sslmode", v)) if VERIFYING.contains(&v) => kept.push("sslmode=require"),
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, root));
    }
    let mut root = None;
    let mut kept = Vec::new();
    for word in url.split_whitespace() {
        match word.split_once('=') {
            Some((k, v)) if k.trim() == ROOT_KEY => {
                if v.starts_with('\'') {
                    return Err(bad("write sslrootcert=… without quotes"));
                }
                root = Some(PathBuf::from(v));
            }
            Some((k, v)) if k.trim() == "sslmode" && VERIFYING.contains(&v) => {
                kept.push("sslmode=require")
            }
            _ => kept.push(word),
        }
    }
    Ok((kept.join(" "), root))
}

/// `%XX` escapes of a URL query value.
fn percent_decode(v: &str) -> Result<String> {
    let bad = || StoreError::Refused(format!("bad PostgreSQL URL: bad escape in {v:?}"));
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// The connector for `config`: `None` (plain) unless its `sslmode` is `require`; then
/// rustls trusting the certificates in `root` (PEM), else the system's roots.
pub fn connector(
    config: &tokio_postgres::Config,
    root: Option<&PathBuf>,
) -> Result<Option<MakeRustlsConnect>> {
    if config.get_ssl_mode() != SslMode::Require {
        if root.is_some() {
            return Err(StoreError::Refused(
                "sslrootcert is only used with sslmode=require".into(),
            ));
        }
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    match root {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect())
                .map_err(|e| StoreError::Refused(format!("sslrootcert {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(StoreError::Refused(format!(
                    "sslrootcert {}: no certificate in it",
                    path.display()
                )));
            }
            for c in certs {
                roots.add(c).map_err(|e| {
                    StoreError::Refused(format!("sslrootcert {}: {e}", path.display()))
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(StoreError::Refused(
                    "sslmode=require: no system root certificates; name them with sslrootcert=…"
                        .into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Refused(format!("TLS to PostgreSQL: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(MakeRustlsConnect::new(tls)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn root_cert_is_taken_out_of_both_url_forms() {
        let (rest, root) =
            split_root_cert("postgres://u@db/mail?sslmode=require&sslrootcert=/etc/a%20b.pem")
                .unwrap();
        assert_eq!(rest, "postgres://u@db/mail?sslmode=require");
        assert_eq!(root, Some(PathBuf::from("/etc/a b.pem")));
        let (rest, root) = split_root_cert("postgres://u@db/mail?sslrootcert=/x.pem").unwrap();
        assert_eq!(
            (rest.as_str(), root),
            ("postgres://u@db/mail", Some("/x.pem".into()))
        );
        let (rest, root) =
            split_root_cert("host=db sslmode=require sslrootcert=/x.pem dbname=mail").unwrap();
        assert_eq!(rest, "host=db sslmode=require dbname=mail");
        assert_eq!(root, Some(PathBuf::from("/x.pem")));
        assert_eq!(
            split_root_cert("postgres://u@db/mail").unwrap(),
            ("postgres://u@db/mail".to_string(), None)
        );
        assert_eq!(
            split_root_cert("postgres://u@db/m?sslmode=verify-full")
                .unwrap()
                .0,
            "postgres://u@db/m?sslmode=require"
        );
        assert_eq!(
            split_root_cert("host=db sslmode=verify-ca").unwrap().0,
            "host=db sslmode=require"
        );
        assert!(split_root_cert("postgres://u@db/m?sslrootcert=%zz").is_err());
        assert!(split_root_cert("host=db sslrootcert='/x y'").is_err());
    }

    #[test]
    fn tls_only_when_required() {
        let plain: tokio_postgres::Config = "postgres://u@db/mail".parse().unwrap();
        assert!(connector(&plain, None).unwrap().is_none());
        let prefer: tokio_postgres::Config = "postgres://u@db/mail?sslmode=prefer".parse().unwrap();
        assert!(connector(&prefer, None).unwrap().is_none());
        assert!(connector(&plain, Some(&"/x.pem".into())).is_err());
        let require: tokio_postgres::Config =
            "postgres://u@db/mail?sslmode=require".parse().unwrap();
        assert!(connector(&require, Some(&"/nonexistent.pem".into())).is_err());
    }
}
