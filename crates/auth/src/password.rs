//! Argon2id password hashes stored as PHC strings
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
//!
//! Parameters are the `argon2` crate defaults (OWASP's recommended minimum for Argon2id):
//! 19 MiB of memory, 2 passes, 1 lane, a random 16-byte salt and a 32-byte output.
//! Verification uses the parameters recorded in the PHC string, so hashes made with
//! older or stronger settings keep working.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use rand::rngs::OsRng;

use crate::AuthError;

/// A valid hash, made with the same parameters as [`hash_password`], of a password no
/// one is told. [`dummy_verify`] checks against it so an unknown user costs as much as a
/// known one.
const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$JHFw7c4upwR9VyflEHkHfA$YxzBUbZwd/XD87YRKHh5p3UAU2ZkgY44KeQRxRtrnMc";

/// Length of the random salt, in bytes.
const SALT_LEN: usize = 16;

/// Argon2id PHC string (argon2 crate defaults: m=19456, t=2, p=1, random 16-byte salt
/// from OsRng).
///
/// Fails only if the operating system's random number generator fails.
pub fn hash_password(password: &[u8]) -> Result<String, AuthError> {
    let mut salt = [0u8; SALT_LEN];
    OsRng
        .try_fill_bytes(&mut salt)
        .map_err(|e| AuthError::Hash(format!("no randomness for the salt: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// true when `password` matches the PHC string; false on mismatch or an unparsable string.
///
/// Any Argon2 variant and parameters recorded in `phc` are honoured. The final
/// comparison is constant-time (done by the `password-hash` crate).
pub fn verify_password(phc: &str, password: &[u8]) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default().verify_password(password, &hash).is_ok(),
        Err(_) => false,
    }
}

/// Spends the same time as one verify_password, for unknown users (so timing does not
/// reveal which logins exist).
///
/// Call it with the password the client sent, then answer exactly as for a wrong
/// password.
pub fn dummy_verify(password: &[u8]) {
    let matched = verify_password(DUMMY_PHC, password);
    std::hint::black_box(matched);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let phc = hash_password(b"correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password(&phc, b"correct horse"));
        assert!(!verify_password(&phc, b"correct horsE"));
        assert!(!verify_password(&phc, b""));
    }

    #[test]
    fn salts_differ() {
        let a = hash_password(b"same").unwrap();
        let b = hash_password(b"same").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn unparsable_phc_is_false() {
        assert!(!verify_password("", b"x"));
        assert!(!verify_password("plain text", b"plain text"));
        assert!(!verify_password("$argon2id$v=19$m=19456,t=2,p=1$$", b"x"));
        assert!(!verify_password(
            "$argon2id$v=19$m=x,t=2,p=1$c2FsdHNhbHQ$aGFzaA",
            b"x"
        ));
    }

    #[test]
    fn dummy_phc_has_the_default_cost() {
        let hash = PasswordHash::new(DUMMY_PHC).unwrap();
        let real = hash_password(b"anything").unwrap();
        let real = PasswordHash::new(&real).unwrap();
        assert_eq!(hash.algorithm, real.algorithm);
        assert_eq!(hash.version, real.version);
        assert_eq!(hash.params, real.params);
        assert_eq!(
            hash.hash.map(|h| h.len()),
            real.hash.map(|h| h.len()),
            "same output length"
        );
        // It really is a hash Argon2 can check (so it costs a full verification).
        dummy_verify(b"whatever");
        assert!(!verify_password(DUMMY_PHC, b"whatever"));
    }
}
