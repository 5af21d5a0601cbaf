//! SCRAM-SHA-256 stored credentials (RFC 5802 §3 with SHA-256, as RFC 7677 §3 defines).
//!
//! The server never needs the password for SCRAM; it keeps the salt, the iteration
//! count, `StoredKey` and `ServerKey`, stored in the text form of RFC 5803 §3. The
//! exchange that uses them is [`crate::scram_server`].

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

/// The scheme prefix of the RFC 5803 text form.
const SCHEME: &str = "SCRAM-SHA-256$";

/// SCRAM-SHA-256 credentials for one user: what a server stores instead of a password
/// (RFC 5802 §3: salt, i, StoredKey, ServerKey).
#[derive(Clone)]
pub struct ScramCredentials {
    /// PBKDF2 iteration count `i` (RFC 7677 §3: SHOULD be at least 4096). Never 0.
    pub iterations: u32,
    /// The salt sent to the client in the server-first-message.
    pub salt: Vec<u8>,
    /// `StoredKey = H(ClientKey)`, used to check the client's proof.
    pub stored_key: [u8; 32],
    /// `ServerKey = HMAC(SaltedPassword, "Server Key")`, used to sign the server's answer.
    pub server_key: [u8; 32],
}

impl ScramCredentials {
    /// Iteration count used by [`ScramCredentials::derive`] (RFC 7677 §3's minimum).
    pub const DEFAULT_ITERATIONS: u32 = 4096;

    /// Length of the random salt made by [`ScramCredentials::derive`], in bytes.
    pub const SALT_LEN: usize = 16;

    /// SaltedPassword = PBKDF2-HMAC-SHA-256(password, random 16-byte salt, 4096 iterations),
    /// ClientKey = HMAC(SaltedPassword,"Client Key"), StoredKey = SHA-256(ClientKey),
    /// ServerKey = HMAC(SaltedPassword,"Server Key").
    ///
    /// RFC 5802 §3. The password should already be normalised with SASLprep
    /// (RFC 4013) by the caller if it is not plain ASCII.
    ///
    /// # Panics
    /// Only if the operating system's random number generator fails.
    pub fn derive(password: &[u8]) -> Self {
        let mut salt = [0u8; Self::SALT_LEN];
        OsRng.fill_bytes(&mut salt);
        Self::derive_with(password, &salt, Self::DEFAULT_ITERATIONS)
    }

    /// Like [`ScramCredentials::derive`] with a given salt and iteration count
    /// (an iteration count of 0 is treated, and stored, as 1).
    pub fn derive_with(password: &[u8], salt: &[u8], iterations: u32) -> Self {
        let iterations = iterations.max(1);
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut salted);
        let client_key = hmac_sha256(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let server_key = hmac_sha256(&salted, b"Server Key");
        salted.fill(0);
        ScramCredentials {
            iterations,
            salt: salt.to_vec(),
            stored_key,
            server_key,
        }
    }

    /// RFC 5803 style text: "SCRAM-SHA-256$<iter>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>"
    pub fn encode(&self) -> String {
        format!(
            "{SCHEME}{}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }

    /// Reads the text form written by [`ScramCredentials::encode`]; None if it is not
    /// exactly that form (wrong scheme, iteration count 0 or not decimal, empty salt,
    /// bad base64, keys not 32 bytes).
    pub fn decode(s: &str) -> Option<Self> {
        let rest = s.strip_prefix(SCHEME)?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored_key, server_key) = keys.split_once(':')?;
        if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let iterations: u32 = iterations.parse().ok()?;
        if iterations == 0 {
            return None;
        }
        let salt = B64.decode(salt).ok()?;
        if salt.is_empty() {
            return None;
        }
        Some(ScramCredentials {
            iterations,
            salt,
            stored_key: decode_key(stored_key)?,
            server_key: decode_key(server_key)?,
        })
    }

    /// `ServerSignature = HMAC(ServerKey, AuthMessage)` (RFC 5802 §3), the `v=` value of
    /// the server-final-message.
    pub fn server_signature(&self, auth_message: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.server_key, auth_message)
    }

    /// Checks a client's `ClientProof` (RFC 5802 §3): recovers
    /// `ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage)` and compares
    /// `H(ClientKey)` with `StoredKey` in constant time. A proof that is not 32 bytes is
    /// false.
    pub fn verify_client_proof(&self, auth_message: &[u8], client_proof: &[u8]) -> bool {
        let Ok(proof) = <[u8; 32]>::try_from(client_proof) else {
            return false;
        };
        let signature = hmac_sha256(&self.stored_key, auth_message);
        let mut client_key = [0u8; 32];
        for ((k, p), s) in client_key.iter_mut().zip(proof).zip(signature) {
            *k = p ^ s;
        }
        let candidate: [u8; 32] = Sha256::digest(client_key).into();
        crate::ct_eq(&candidate, &self.stored_key)
    }
}

impl fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("iterations", &self.iterations)
            .field("salt", &B64.encode(&self.salt))
            .field("stored_key", &"<redacted>")
            .field("server_key", &"<redacted>")
            .finish()
    }
}

/// One base64 key of exactly 32 bytes.
fn decode_key(s: &str) -> Option<[u8; 32]> {
    <[u8; 32]>::try_from(B64.decode(s).ok()?).ok()
}

/// HMAC-SHA-256 (RFC 2104) with a key of at most 64 bytes (one SHA-256 block).
///
/// A key shorter than the block is zero-padded by HMAC itself, so padding it here gives
/// the same result and lets us use the infallible fixed-size-key constructor. All keys
/// in SCRAM-SHA-256 are 32 bytes.
pub(crate) fn hmac_sha256(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    for (b, k) in block.iter_mut().zip(key) {
        *b = *k;
    }
    let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new(&block.into());
    block.fill(0);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    // RFC 7677 §3 example exchange.
    const CLIENT_FIRST_BARE: &str = "n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL_NO_PROOF: &str =
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const CLIENT_PROOF: &str = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_SIGNATURE: &str = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc7677() -> (ScramCredentials, Vec<u8>) {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let creds = ScramCredentials::derive_with(b"pencil", &salt, 4096);
        let auth_message = format!("{CLIENT_FIRST_BARE},{SERVER_FIRST},{CLIENT_FINAL_NO_PROOF}");
        (creds, auth_message.into_bytes())
    }

    #[test]
    fn rfc7677_server_signature() {
        let (creds, auth_message) = rfc7677();
        assert_eq!(
            B64.encode(creds.server_signature(&auth_message)),
            SERVER_SIGNATURE
        );
    }

    #[test]
    fn rfc7677_client_proof() {
        let (creds, auth_message) = rfc7677();
        let proof = B64.decode(CLIENT_PROOF).unwrap();
        assert!(creds.verify_client_proof(&auth_message, &proof));
        let mut bad = proof.clone();
        bad[0] ^= 1;
        assert!(!creds.verify_client_proof(&auth_message, &bad));
        assert!(!creds.verify_client_proof(&auth_message, &proof[..31]));
        assert!(!creds.verify_client_proof(b"other message", &proof));
        let wrong = ScramCredentials::derive_with(b"pencil2", &creds.salt, 4096);
        assert!(!wrong.verify_client_proof(&auth_message, &proof));
    }

    #[test]
    fn hmac_matches_rfc4231_case_2_style_short_key() {
        // RFC 4231 test case 2 uses key "Jefe" (4 bytes); zero-padding to 32 is the same key.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = hmac_sha256(&key, b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn encode_decode_round_trip() {
        let creds = ScramCredentials::derive(b"secret");
        assert_eq!(creds.iterations, 4096);
        assert_eq!(creds.salt.len(), 16);
        let text = creds.encode();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"), "{text}");
        let back = ScramCredentials::decode(&text).unwrap();
        assert_eq!(back.iterations, creds.iterations);
        assert_eq!(back.salt, creds.salt);
        assert_eq!(back.stored_key, creds.stored_key);
        assert_eq!(back.server_key, creds.server_key);
        assert_eq!(back.encode(), text);
    }

    #[test]
    fn rfc7677_encoded_form() {
        let (creds, _) = rfc7677();
        let text = creds.encode();
        assert!(
            text.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"),
            "{text}"
        );
    }

    #[test]
    fn random_salts_differ() {
        let a = ScramCredentials::derive(b"same");
        let b = ScramCredentials::derive(b"same");
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.stored_key, b.stored_key);
    }

    #[test]
    fn zero_iterations_become_one() {
        let c = ScramCredentials::derive_with(b"p", b"salt", 0);
        assert_eq!(c.iterations, 1);
        assert_eq!(
            c.stored_key,
            ScramCredentials::derive_with(b"p", b"salt", 1).stored_key
        );
    }

    #[test]
    fn decode_rejects_garbage() {
        let good = ScramCredentials::derive_with(b"p", b"saltsalt", 4096).encode();
        assert!(ScramCredentials::decode(&good).is_some());
        let (_, keys) = good.split_once('$').unwrap();
        let (_, keys) = keys.split_once('$').unwrap();
        let k32 = B64.encode([7u8; 32]);
        let k31 = B64.encode([7u8; 31]);
        for bad in [
            String::new(),
            "SCRAM-SHA-256$".to_owned(),
            good.replace("SCRAM-SHA-256", "SCRAM-SHA-1"),
            good.to_lowercase(),
            format!("SCRAM-SHA-256$0:c2FsdA==${keys}"),
            format!("SCRAM-SHA-256$+4096:c2FsdA==${keys}"),
            format!("SCRAM-SHA-256$99999999999:c2FsdA==${keys}"),
            format!("SCRAM-SHA-256$:c2FsdA==${keys}"),
            format!("SCRAM-SHA-256$4096:${keys}"),
            format!("SCRAM-SHA-256$4096:!!!${keys}"),
            format!("SCRAM-SHA-256$4096c2FsdA==${keys}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${k32}:{k31}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${k31}:{k32}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${k32}{k32}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${k32}:{k32}:"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${k32}:{k32}$"),
        ] {
            assert!(ScramCredentials::decode(&bad).is_none(), "{bad}");
        }
        assert!(
            ScramCredentials::decode(&format!("SCRAM-SHA-256$4096:c2FsdA==${k32}:{k32}")).is_some()
        );
    }

    #[test]
    fn debug_hides_keys() {
        let c = ScramCredentials::derive_with(b"p", b"salt", 1);
        let d = format!("{c:?}");
        assert!(d.contains("redacted"));
        assert!(!d.contains(&B64.encode(c.stored_key)));
        assert!(!d.contains(&format!("{:?}", c.stored_key)));
    }
}
