//! Authentication for buudien: SASL exchanges, password hashing and failed-login
//! throttling. This is the only code a session may run before it is authenticated, so
//! everything here treats its input as hostile. No I/O; the one async function,
//! [`check_password`], hands Argon2 work to a few dedicated threads.
//!
//! # Layout
//! - [`password`]: Argon2id password hashes in PHC string form ([`hash_password`],
//!   [`verify_password`], [`dummy_verify`] for unknown users).
//! - [`pool`]: [`check_password`], the way sessions check a password: on at most
//!   four threads, so memory and CPU for Argon2 stay bounded under login churn.
//! - [`scram`]: SCRAM-SHA-256 stored credentials (RFC 5802 §3, RFC 7677, RFC 5803 text form).
//! - [`sasl`]: the server side of the SASL PLAIN (RFC 4616) and LOGIN exchanges (RFC 4422).
//! - [`scram_server`]: the server side of the SCRAM-SHA-256 exchange (RFC 5802, RFC 7677).
//! - [`apop`]: the POP3 APOP digest check (RFC 1939 §7).
//! - [`throttle`]: per-IP failed-login delays and temporary refusal.
//!
//! # Invariants
//! - Nothing reachable from client input panics: no `unwrap`, `expect` or slice indexing
//!   on input; every malformed input becomes an error value.
//! - Passwords only travel inside [`buudien_types::Secret`], so `Debug` output of
//!   [`Credentials`] or [`SaslStep`] never shows them; [`ScramCredentials`]'s `Debug`
//!   hides its keys.
//! - Secret comparisons (APOP digests, SCRAM proofs) are constant-time in the secret.
//! - A SCRAM exchange for an unknown user runs to its end on fake credentials derived
//!   from the user name and a per-process secret, and fails like a wrong password.
//! - A SASL response longer than [`SaslServer::MAX_RESPONSE`] is refused before it is
//!   decoded, so a client cannot make the server allocate more than that.
//! - [`FailureThrottle`] tracks at most [`ThrottleConfig::max_tracked`] addresses, never
//!   delays a success and never lets one address's failures affect another address.

#![forbid(unsafe_code)]

pub mod apop;
pub mod password;
pub mod pool;
pub mod sasl;
pub mod scram;
pub mod scram_server;
pub mod throttle;

pub use apop::apop_matches;
pub use password::{dummy_verify, hash_password, verify_password};
pub use pool::check_password;
pub use sasl::{Credentials, Mechanism, SaslError, SaslServer, SaslStep, decode_response};
pub use scram::ScramCredentials;
pub use scram_server::{ScramError, ScramOutcome, ScramServer};
pub use throttle::{FailureThrottle, MAX_OUTBOX, ThrottleConfig, ThrottleEvent, Verdict};

/// Error from hashing.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The password hash could not be computed (bad parameters or no OS randomness).
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Compares two byte strings in time that depends only on their lengths, not their
/// contents (for digests and proofs; the lengths are public).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::ct_eq;

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
