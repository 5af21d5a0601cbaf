//! Argon2id password hashes stored as PHC strings
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
//!
//! Parameters are the `argon2` crate defaults (OWASP's recommended minimum for Argon2id):
//! 19 MiB of memory, 2 passes, 1 lane, a random 16-byte salt and a 32-byte output.
//! Verification uses the parameters recorded in the PHC string, so hashes made with
//! older or stronger settings keep working (up to [`MAX_M_COST`] of memory).
//!
//! Argon2's working memory can be kept from one check to the next ([`Scratch`], as
//! the password threads do). Allocated and freed per check, its 19 MiB is above
//! glibc's mmap threshold; freeing it raises that threshold (and the trim threshold,
//! twice it) to 19 MiB for the whole process, after which every allocator arena keeps
//! up to 38 MiB of freed memory resident: hundreds of MiB of RSS after a burst of
//! logins.

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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

/// Most memory a stored hash may make a check spend: Argon2's `m`, in KiB (256 MiB,
/// thirteen times the default). A hash asking for more is refused, not computed.
pub const MAX_M_COST: u32 = 256 * 1024;

/// Argon2's working memory, reused by the checks of one thread: it grows to the
/// largest `m` a check needed and stays (19 MiB for this server's hashes).
#[derive(Default)]
pub struct Scratch {
    blocks: Vec<Block>,
}

impl Scratch {
    /// The first `n` blocks, growing the memory if it is smaller.
    fn blocks(&mut self, n: usize) -> &mut [Block] {
        if self.blocks.len() < n {
            // Replaced, not grown in place: no copy of the old contents.
            self.blocks = Vec::new();
            self.blocks = vec![Block::default(); n];
        }
        self.blocks.get_mut(..n).unwrap_or_default()
    }
}

/// true when `password` matches the PHC string; false on mismatch or an unparsable string.
///
/// Any Argon2 variant and parameters recorded in `phc` are honoured, up to
/// [`MAX_M_COST`]. The final comparison is constant-time. Allocates Argon2's memory
/// for this one check; [`verify_password_in`] reuses it.
pub fn verify_password(phc: &str, password: &[u8]) -> bool {
    verify_password_in(phc, password, &mut Scratch::default())
}

/// [`verify_password`] with Argon2's memory from `scratch`.
pub fn verify_password_in(phc: &str, password: &[u8], scratch: &mut Scratch) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let Ok(version) = hash
        .version
        .map_or(Ok(Version::default()), Version::try_from)
    else {
        return false;
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    if params.m_cost() > MAX_M_COST {
        return false;
    }
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = scratch.blocks(params.block_count());
    let mut out = [0u8; Output::MAX_LENGTH];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params);
    if argon
        .hash_password_into_with_memory(password, salt, out, blocks)
        .is_err()
    {
        return false;
    }
    // Output's equality is constant-time.
    Output::new(out).is_ok_and(|computed| computed == expected)
}

/// Spends the same time as one verify_password, for unknown users (so timing does not
/// reveal which logins exist).
///
/// Call it with the password the client sent, then answer exactly as for a wrong
/// password.
pub fn dummy_verify(password: &[u8]) {
    dummy_verify_in(password, &mut Scratch::default());
}

/// [`dummy_verify`] with Argon2's memory from `scratch`.
pub fn dummy_verify_in(password: &[u8], scratch: &mut Scratch) {
    let matched = verify_password_in(DUMMY_PHC, password, scratch);
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
    fn scratch_is_reused_and_agrees() {
        let phc = hash_password(b"pw").unwrap();
        let mut scratch = Scratch::default();
        assert!(verify_password_in(&phc, b"pw", &mut scratch));
        assert_eq!(scratch.blocks.len(), 19456, "one block per KiB of m");
        assert!(!verify_password_in(&phc, b"pW", &mut scratch));
        // A hash with other parameters (smaller m, Argon2i, two lanes) still checks.
        let params = Params::new(4096, 3, 2, None).unwrap();
        let small = Argon2::new(Algorithm::Argon2i, Version::V0x13, params)
            .hash_password(
                b"other",
                &SaltString::encode_b64(b"0123456789abcdef").unwrap(),
            )
            .unwrap()
            .to_string();
        assert!(verify_password_in(&small, b"other", &mut scratch));
        assert!(!verify_password_in(&small, b"Other", &mut scratch));
        assert_eq!(scratch.blocks.len(), 19456, "kept, not shrunk");
        assert!(verify_password_in(&phc, b"pw", &mut scratch));
    }

    #[test]
    fn too_much_memory_is_refused() {
        let phc = "$argon2id$v=19$m=262145,t=1,p=1$c2FsdHNhbHRzYWx0$YxzBUbZwd/XD87YRKHh5p3UAU2ZkgY44KeQRxRtrnMc";
        let mut scratch = Scratch::default();
        assert!(!verify_password_in(phc, b"x", &mut scratch));
        assert!(scratch.blocks.is_empty(), "nothing spent");
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
