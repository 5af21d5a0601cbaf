//! `buudien deliver`: the local delivery agent. Reads one message from stdin,
//! normalises it to CRLF, and stores it for every recipient in one transaction.
//!
//! Exit codes follow sysexits(3), as MTAs expect of an LDA: 0 only once the message is
//! durable; 67 unknown recipient; 65 not a message or too big; 75 temporary (store
//! busy, disk full, mailbox over quota, as Dovecot's LMTP answers `452 4.2.2`).

use crate::admin::address;
use crate::cli::{CliError, exit};
use crate::config::Config;
use crate::store::{open_store, with_store};
use buudien_store::{MailStore, StoreError};
use buudien_types::Address;
use std::collections::BTreeSet;
use std::io::Read;
use std::time::SystemTime;

/// `buudien deliver [--from ADDR] RCPT…`
pub async fn run(cfg: &Config, from: Option<&str>, recipients: &[String]) -> Result<(), CliError> {
    let max = cfg.smtp.max_message_size;
    let mut raw = Vec::new();
    std::io::stdin()
        .lock()
        .take(max.saturating_add(1))
        .read_to_end(&mut raw)
        .map_err(|e| CliError::new(exit::TEMPFAIL, format!("cannot read the message: {e}")))?;
    let message = prepare(&raw, from, max)?;
    with_store!(open_store(cfg).await?, |s| {
        deliver_on(&s, &message, recipients).await
    })
}

/// Stores `message` for every recipient, in one transaction.
async fn deliver_on(
    store: &impl MailStore,
    message: &[u8],
    recipients: &[String],
) -> Result<(), CliError> {
    let mut accounts = BTreeSet::new();
    for r in recipients {
        let a = Address::parse(r)
            .map_err(|e| CliError::new(exit::NOUSER, format!("recipient {r:?}: {e}")))?;
        match store.resolve_recipient(&a).await {
            Ok(ids) => accounts.extend(ids),
            Err(StoreError::NotFound(_) | StoreError::Refused(_)) => {
                return Err(CliError::new(
                    exit::NOUSER,
                    format!("unknown recipient {a}"),
                ));
            }
            Err(e) => return Err(CliError::new(exit::TEMPFAIL, e.to_string())),
        }
    }
    let accounts: Vec<_> = accounts.into_iter().collect();
    match store.deliver(&accounts, message, SystemTime::now()).await {
        Ok(_) => Ok(()),
        // Over quota, busy, I/O and even unexpected database errors: the MTA keeps the
        // message and retries, so nothing is lost.
        Err(e) => Err(CliError::new(exit::TEMPFAIL, e.to_string())),
    }
}

/// Checks and normalises the input: refuses empty input, input over `max`, and input
/// that does not start with a header field; drops a leading mbox `From ` line; adds
/// `Return-Path` for `from`.
pub fn prepare(raw: &[u8], from: Option<&str>, max: u64) -> Result<Vec<u8>, CliError> {
    if raw.len() as u64 > max {
        return Err(CliError::new(
            exit::DATAERR,
            format!("message too big: more than {max} bytes (smtp.max_message_size)"),
        ));
    }
    let mut body = raw;
    if body.starts_with(b"From ") {
        let end = body
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |i| i + 1);
        body = body.get(end..).unwrap_or_default();
    }
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(CliError::new(
            exit::DATAERR,
            "not a message: the input is empty",
        ));
    }
    if !starts_with_header(body) {
        return Err(CliError::new(
            exit::DATAERR,
            "not a message: it does not start with a header field such as \"Subject: …\"",
        ));
    }
    let mut out = Vec::with_capacity(body.len() + 64);
    if let Some(f) = from {
        let f = if f.is_empty() || f == "<>" {
            String::new()
        } else {
            address(f)
                .map_err(|e| CliError::new(exit::DATAERR, format!("--from: {}", e.message)))?
                .to_string()
        };
        out.extend_from_slice(format!("Return-Path: <{f}>\r\n").as_bytes());
    }
    out.extend_from_slice(&buudien_message::normalize(body));
    if out.len() as u64 > max {
        return Err(CliError::new(
            exit::DATAERR,
            format!("message too big: more than {max} bytes (smtp.max_message_size)"),
        ));
    }
    Ok(out)
}

/// True when the first line is a header field: a name of printable ASCII other than
/// ':' followed by ':' (RFC 5322 §2.2).
fn starts_with_header(msg: &[u8]) -> bool {
    let line_end = msg.iter().position(|&b| b == b'\n').unwrap_or(msg.len());
    let line = msg.get(..line_end).unwrap_or_default();
    match line.iter().position(|&b| b == b':') {
        Some(0) | None => false,
        Some(colon) => line
            .get(..colon)
            .is_some_and(|name| name.iter().all(|&b| (33..=126).contains(&b))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_normalises_and_adds_return_path() -> Result<(), CliError> {
        let m = prepare(b"Subject: x\n\nbody\n", Some("Ann@Example.com"), 1000)?;
        assert_eq!(
            m,
            b"Return-Path: <ann@example.com>\r\nSubject: x\r\n\r\nbody\r\n".to_vec()
        );
        let m = prepare(b"From ann Tue Jan 1\nSubject: y\n\nz", None, 1000)?;
        assert_eq!(m, b"Subject: y\r\n\r\nz\r\n".to_vec());
        Ok(())
    }

    #[test]
    fn prepare_refuses_non_messages() {
        for bad in [&b""[..], b"\n\n", b"hello world\n", b": x\n", b"a b: c\n"] {
            let e = prepare(bad, None, 1000).err().map(|e| e.code);
            assert_eq!(e, Some(exit::DATAERR), "{bad:?}");
        }
        let e = prepare(b"Subject: x\n\n0123456789", None, 10)
            .err()
            .map(|e| e.code);
        assert_eq!(e, Some(exit::DATAERR));
    }
}
