//! The POP3 APOP check (RFC 1939 §7).
//!
//! The server's greeting carries a unique timestamp such as
//! `<1896.697170952@dbc.mtview.ca.us>`; the client answers `APOP name digest` where
//! `digest` is the lower-case hex MD5 of the timestamp followed by the shared secret.
//! MD5 is weak and APOP needs the secret in clear on the server, so the protocol layer
//! should offer it only where that is configured.

use md5::{Digest, Md5};

/// true when digest_hex (case-insensitive hex, 32 chars) equals MD5(timestamp || secret);
/// constant-time compare.
///
/// RFC 1939 §7. Anything that is not exactly 32 hex digits is false.
pub fn apop_matches(timestamp: &str, secret: &[u8], digest_hex: &str) -> bool {
    let mut claimed = [0u8; 16];
    if digest_hex.len() != 32 || hex::decode_to_slice(digest_hex, &mut claimed).is_err() {
        return false;
    }
    let mut md5 = Md5::new();
    md5.update(timestamp.as_bytes());
    md5.update(secret);
    let expected: [u8; 16] = md5.finalize().into();
    crate::ct_eq(&expected, &claimed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const TS: &str = "<1896.697170952@dbc.mtview.ca.us>";

    #[test]
    fn rfc1939_example() {
        assert!(apop_matches(
            TS,
            b"tanstaaf",
            "c4c9334bac560ecc979e58001b3e22fb"
        ));
        assert!(apop_matches(
            TS,
            b"tanstaaf",
            "C4C9334BAC560ECC979E58001B3E22FB"
        ));
        assert!(apop_matches(
            TS,
            b"tanstaaf",
            "c4C9334bac560ecc979e58001b3e22Fb"
        ));
    }

    #[test]
    fn mismatches() {
        assert!(!apop_matches(
            TS,
            b"tanstaaF",
            "c4c9334bac560ecc979e58001b3e22fb"
        ));
        assert!(!apop_matches(
            "<1896.697170953@dbc.mtview.ca.us>",
            b"tanstaaf",
            "c4c9334bac560ecc979e58001b3e22fb"
        ));
        assert!(!apop_matches(
            TS,
            b"tanstaaf",
            "c4c9334bac560ecc979e58001b3e22fc"
        ));
        assert!(!apop_matches(
            TS,
            b"tanstaaf",
            "c4c9334bac560ecc979e58001b3e22f"
        ));
        assert!(!apop_matches(
            TS,
            b"tanstaaf",
            "c4c9334bac560ecc979e58001b3e22fb0"
        ));
        assert!(!apop_matches(
            TS,
            b"tanstaaf",
            "c4c9334bac560ecc979e58001b3e22fb00"
        ));
        assert!(!apop_matches(
            TS,
            b"tanstaaf",
            "g4c9334bac560ecc979e58001b3e22fb"
        ));
        assert!(!apop_matches(
            TS,
            b"tanstaaf",
            " c4c9334bac560ecc979e58001b3e22f"
        ));
        assert!(!apop_matches(
            TS,
            b"tanstaaf",
            "c4c9334bac560ecc979e58001b3e22é"
        ));
        assert!(!apop_matches(TS, b"tanstaaf", ""));
    }
}
