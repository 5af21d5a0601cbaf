//! The corpus tests' way of writing answers down (shared with buudien-imap's
//! session-level corpus test through `#[path]`).

use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// Bytes as one printable line: `\r`, `\n`, `\\` and `\xNN` for the rest.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(char::from(b)),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s
}

/// `length:first 8 octets of the SHA-256, in hex`.
pub fn digest(bytes: &[u8]) -> String {
    let h = Sha256::digest(bytes);
    let hex: String = h.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{}:{hex}", bytes.len())
}
