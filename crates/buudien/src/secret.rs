//! Passwords on the command line: from stdin, from a prompt, or generated; and
//! secrets the configuration names by file (`[store] s3_secret_key_file`).

use crate::cli::CliError;
use buudien_store::PasswordRecord;
use rand::Rng;
use std::io::{BufRead, IsTerminal, Read};

/// Length of generated passwords (alphanumeric: about 119 bits).
const GENERATED_LEN: usize = 20;
/// The longest password read from stdin.
const MAX_PASSWORD: usize = 1024;

/// A new random password.
pub fn generate() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..GENERATED_LEN)
        .map(|_| {
            let i = rng.gen_range(0..ALPHABET.len());
            char::from(ALPHABET.get(i).copied().unwrap_or(b'x'))
        })
        .collect()
}

/// How the password was obtained.
pub enum Source {
    /// Typed or piped by the user.
    Given(String),
    /// Generated here; the caller prints it.
    Generated(String),
}

impl Source {
    /// The password.
    pub fn password(&self) -> &str {
        match self {
            Source::Given(p) | Source::Generated(p) => p,
        }
    }
}

/// Reads the first line of stdin (`--password-stdin`), or prompts twice on a
/// terminal, or generates one when stdin is not a terminal.
pub fn obtain(from_stdin: bool, what: &str) -> Result<Source, CliError> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .take(MAX_PASSWORD as u64 + 2)
            .read_line(&mut line)
            .map_err(|e| CliError::usage(format!("cannot read the {what} from stdin: {e}")))?;
        let pw = line.trim_end_matches(['\r', '\n']).to_string();
        return check(pw, what).map(Source::Given);
    }
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("New {what}: "))
            .map_err(|e| CliError::usage(format!("cannot read the {what}: {e}")))?;
        let second = rpassword::prompt_password(format!("Repeat the {what}: "))
            .map_err(|e| CliError::usage(format!("cannot read the {what}: {e}")))?;
        if first != second {
            return Err(CliError::usage("the two entries differ; nothing changed"));
        }
        return check(first, what).map(Source::Given);
    }
    Ok(Source::Generated(generate()))
}

fn check(pw: String, what: &str) -> Result<String, CliError> {
    if pw.is_empty() {
        return Err(CliError::usage(format!("the {what} is empty")));
    }
    if pw.len() > MAX_PASSWORD {
        return Err(CliError::usage(format!(
            "the {what} is longer than {MAX_PASSWORD} bytes"
        )));
    }
    if pw.chars().any(char::is_control) {
        return Err(CliError::usage(format!(
            "the {what} contains control characters"
        )));
    }
    Ok(pw)
}

/// The longest secret file read.
const MAX_SECRET_FILE: u64 = 4096;

/// The secret in a file: its first line, without the line ending. A missing,
/// unreadable, empty or over-long file is a configuration error naming the file (never
/// the secret). A file others may read is logged as a warning.
pub fn from_file(path: &std::path::Path, what: &str) -> Result<String, CliError> {
    use std::os::unix::fs::PermissionsExt;
    let bad = |e: String| CliError::config(format!("{what} file {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    if let Ok(m) = file.metadata()
        && m.permissions().mode() & 0o004 != 0
    {
        tracing::warn!("{what} file {} is readable by everyone", path.display());
    }
    let mut text = String::new();
    file.take(MAX_SECRET_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| bad(e.to_string()))?;
    if text.len() as u64 > MAX_SECRET_FILE {
        return Err(bad(format!("longer than {MAX_SECRET_FILE} bytes")));
    }
    let line = text.lines().next().unwrap_or_default().trim().to_string();
    if line.is_empty() || line.chars().any(char::is_control) {
        return Err(bad(
            "its first line is empty or has control characters".into()
        ));
    }
    Ok(line)
}

/// The stored form of a password: an Argon2id hash and SCRAM-SHA-256 keys.
pub fn record(password: &str) -> Result<PasswordRecord, CliError> {
    let hash = buudien_auth::hash_password(password.as_bytes())
        .map_err(|e| CliError::software(e.to_string()))?;
    let scram = buudien_auth::ScramCredentials::derive(password.as_bytes()).encode();
    Ok(PasswordRecord {
        hash,
        scram_sha256: scram,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_differ_and_are_plain() {
        let a = generate();
        let b = generate();
        assert_eq!(a.len(), GENERATED_LEN);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn secret_files() -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let f = dir.path().join("key");
        std::fs::write(&f, "s3cr3t/+KEY\nignored\n").map_err(|e| e.to_string())?;
        assert_eq!(from_file(&f, "s3").map_err(|e| e.message)?, "s3cr3t/+KEY");
        for bad in ["", "\n", &"x".repeat(5000)] {
            std::fs::write(&f, bad).map_err(|e| e.to_string())?;
            let e = from_file(&f, "s3").err().ok_or("accepted a bad file")?;
            assert!(
                !e.message.contains('\n') && e.message.contains("key"),
                "{}",
                e.message
            );
        }
        assert!(from_file(&dir.path().join("none"), "s3").is_err());
        Ok(())
    }

    #[test]
    fn record_verifies() -> Result<(), CliError> {
        let r = record("pässword")?;
        assert!(buudien_auth::verify_password(
            &r.hash,
            "pässword".as_bytes()
        ));
        assert!(!buudien_auth::verify_password(&r.hash, b"password"));
        assert!(buudien_auth::ScramCredentials::decode(&r.scram_sha256).is_some());
        Ok(())
    }
}
