//! The server side of a SCRAM-SHA-256 exchange (RFC 5802 §5 with the grammar of §7;
//! RFC 7677), without channel binding (the `-PLUS` variant is not offered).
//!
//! The protocol layer decodes each client message from base64 (see
//! [`crate::sasl::decode_response`]) and drives three calls:
//! 1. [`ScramServer::client_first`] parses the client-first-message and returns the
//!    user name, so the caller can look up the stored [`ScramCredentials`];
//! 2. [`ScramServer::server_first`] takes those credentials (`None` for an unknown
//!    user) and returns the server-first-message;
//! 3. [`ScramServer::client_final`] checks the client-final-message and returns
//!    [`ScramOutcome::Verified`] with the server-final-message, or
//!    [`ScramOutcome::Rejected`].
//!
//! An unknown user gets credentials derived from its name and a secret of this
//! process, so its salt and iteration count look like a real user's (the same on every
//! attempt) and its exchange costs the same; it always ends in
//! [`ScramOutcome::Rejected`], like a wrong password.

use std::fmt;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use rand::rngs::OsRng;

use crate::SaslServer;
use crate::scram::{ScramCredentials, hmac_sha256};

/// Why a SCRAM exchange stopped before a proof could be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The message does not follow the RFC 5802 §7 grammar.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The message is longer than [`SaslServer::MAX_RESPONSE`].
    #[error("the SCRAM message is too long")]
    TooLong,
    /// The client asked for channel binding (`p=`), which this server does not offer
    /// (RFC 5802 §6: the server must then fail the exchange).
    #[error("channel binding is not supported")]
    ChannelBinding,
    /// The client asked to act as another user (`a=` differs from `n=`).
    #[error("the authorization identity differs from the user")]
    Authzid,
    /// A message came at the wrong point of the exchange.
    #[error("SCRAM message out of order")]
    OutOfOrder,
}

/// The end of a SCRAM exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramOutcome {
    /// The proof is right for a known user: send this server-final-message (`v=…`).
    Verified(Vec<u8>),
    /// Wrong proof, unknown user, or a channel binding or nonce that does not match:
    /// answer with an authentication failure.
    Rejected,
}

/// Where the exchange is.
enum State {
    /// Waiting for the client-first-message.
    ClientFirst,
    /// Parsed the client-first-message; waiting for the credentials.
    Credentials(FirstMessage),
    /// Sent the server-first-message; waiting for the client-final-message.
    ClientFinal(Pending),
    /// Finished or failed.
    Over,
}

/// What the client-first-message said.
struct FirstMessage {
    /// The gs2-header exactly as sent (`n,,` / `y,,` / `n,a=…,`).
    gs2_header: String,
    /// client-first-message-bare, for the AuthMessage.
    bare: String,
    /// The decoded user name.
    username: String,
    /// The client's nonce.
    client_nonce: String,
}

/// What the client-final-message is checked against.
struct Pending {
    /// base64 of the gs2-header: the expected `c=` value.
    channel_binding: String,
    /// client nonce + server nonce: the expected `r=` value.
    nonce: String,
    /// `client-first-message-bare "," server-first-message`.
    auth_prefix: String,
    /// The user's credentials (fake ones for an unknown user).
    creds: ScramCredentials,
    /// false for an unknown user: never verified.
    known: bool,
}

/// One server-side SCRAM-SHA-256 exchange. See the module documentation.
pub struct ScramServer {
    /// The server's part of the nonce (printable, no comma).
    server_nonce: String,
    /// Key for the fake credentials of unknown users.
    secret: [u8; 32],
    state: State,
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::ClientFirst => "ClientFirst",
            State::Credentials(_) => "Credentials",
            State::ClientFinal(_) => "ClientFinal",
            State::Over => "Over",
        };
        f.debug_struct("ScramServer")
            .field("state", &state)
            .finish()
    }
}

/// The longest client nonce accepted (clients send 24 to 48 printable characters).
pub const MAX_CLIENT_NONCE: usize = 256;

/// Random bytes in the server nonce (base64: 24 characters).
const NONCE_BYTES: usize = 18;

/// The secret of this process for unknown users' fake credentials.
fn process_secret() -> [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    *SECRET.get_or_init(|| {
        let mut s = [0u8; 32];
        OsRng.fill_bytes(&mut s);
        s
    })
}

impl Default for ScramServer {
    fn default() -> Self {
        Self::new()
    }
}

impl ScramServer {
    /// The mechanism name (RFC 7677 §4).
    pub const NAME: &'static str = "SCRAM-SHA-256";

    /// A new exchange with a fresh random server nonce, waiting for the
    /// client-first-message.
    ///
    /// # Panics
    /// Only if the operating system's random number generator fails.
    pub fn new() -> Self {
        let mut nonce = [0u8; NONCE_BYTES];
        OsRng.fill_bytes(&mut nonce);
        ScramServer {
            server_nonce: B64.encode(nonce),
            secret: process_secret(),
            state: State::ClientFirst,
        }
    }

    /// An exchange with a given server nonce and secret (RFC test vectors).
    #[cfg(test)]
    pub(crate) fn with_parts(server_nonce: &str, secret: [u8; 32]) -> Self {
        ScramServer {
            server_nonce: server_nonce.to_owned(),
            secret,
            state: State::ClientFirst,
        }
    }

    /// true once the exchange ended (outcome given or an error returned).
    pub fn is_over(&self) -> bool {
        matches!(self.state, State::Over)
    }

    /// Parses the client-first-message (RFC 5802 §7):
    /// `gs2-header client-first-message-bare`, with
    /// `gs2-header = ("n" / "y" / "p=" cb-name) "," [ "a=" saslname ] ","` and
    /// `client-first-message-bare = [ "m=" … "," ] "n=" saslname "," "r=" c-nonce
    /// [ "," extensions ]`. Returns the decoded user name (`=2C` → `,`, `=3D` → `=`).
    ///
    /// `p=` fails with [`ScramError::ChannelBinding`]; an `a=` other than the user
    /// name with [`ScramError::Authzid`]; `m=` (RFC 5802 §5.1: a mandatory extension
    /// we do not know) and every other grammar error with [`ScramError::Malformed`].
    pub fn client_first(&mut self, msg: &[u8]) -> Result<String, ScramError> {
        if !matches!(self.state, State::ClientFirst) {
            self.state = State::Over;
            return Err(ScramError::OutOfOrder);
        }
        self.state = State::Over;
        let first = parse_client_first(msg)?;
        let username = first.username.clone();
        self.state = State::Credentials(first);
        Ok(username)
    }

    /// The server-first-message `r=<c-nonce><s-nonce>,s=<salt>,i=<count>` (RFC 5802
    /// §5.1) for the user's stored credentials, or for fake ones when `creds` is None
    /// (unknown user).
    pub fn server_first(
        &mut self,
        creds: Option<&ScramCredentials>,
    ) -> Result<Vec<u8>, ScramError> {
        let State::Credentials(first) = std::mem::replace(&mut self.state, State::Over) else {
            return Err(ScramError::OutOfOrder);
        };
        let (creds, known) = match creds {
            Some(c) => (c.clone(), true),
            None => (fake_credentials(&self.secret, &first.username), false),
        };
        let nonce = format!("{}{}", first.client_nonce, self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&creds.salt),
            creds.iterations
        );
        let auth_prefix = format!("{},{server_first}", first.bare);
        self.state = State::ClientFinal(Pending {
            channel_binding: B64.encode(first.gs2_header.as_bytes()),
            nonce,
            auth_prefix,
            creds,
            known,
        });
        Ok(server_first.into_bytes())
    }

    /// Checks the client-final-message (RFC 5802 §7):
    /// `"c=" base64 "," "r=" nonce [ "," extensions ] "," "p=" base64`.
    ///
    /// The channel binding must be the base64 of the gs2-header the client sent
    /// (`biws` for `n,,`, `eSws` for `y,,`), the nonce the combined one, and the proof
    /// must verify against the stored keys; otherwise [`ScramOutcome::Rejected`].
    /// A message that breaks the grammar is [`ScramError::Malformed`].
    pub fn client_final(&mut self, msg: &[u8]) -> Result<ScramOutcome, ScramError> {
        let State::ClientFinal(pending) = std::mem::replace(&mut self.state, State::Over) else {
            return Err(ScramError::OutOfOrder);
        };
        if msg.len() > SaslServer::MAX_RESPONSE {
            return Err(ScramError::TooLong);
        }
        let text = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let mut attrs = without_proof.split(',');
        let cbind = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::Malformed("no channel binding"))?;
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        for ext in attrs {
            check_extension(ext)?;
        }
        if B64.decode(cbind).is_err() {
            return Err(ScramError::Malformed("channel binding is not base64"));
        }
        let auth_message = format!("{},{without_proof}", pending.auth_prefix);
        // Every check runs, so a mismatch costs the same as a wrong proof.
        let proof_ok = pending
            .creds
            .verify_client_proof(auth_message.as_bytes(), &proof);
        let cbind_ok = cbind == pending.channel_binding;
        let nonce_ok = crate::ct_eq(nonce.as_bytes(), pending.nonce.as_bytes());
        if proof_ok && cbind_ok && nonce_ok && pending.known {
            let signature = pending.creds.server_signature(auth_message.as_bytes());
            Ok(ScramOutcome::Verified(
                format!("v={}", B64.encode(signature)).into_bytes(),
            ))
        } else {
            Ok(ScramOutcome::Rejected)
        }
    }
}

/// Credentials for an unknown user: HMAC(secret, label NUL user) for the salt and both
/// keys, the default iteration count. Same user, same answer, for this process.
fn fake_credentials(secret: &[u8; 32], username: &str) -> ScramCredentials {
    let derive = |label: &[u8]| {
        let mut input = label.to_vec();
        input.push(0);
        input.extend_from_slice(username.as_bytes());
        hmac_sha256(secret, &input)
    };
    let salt = derive(b"salt");
    ScramCredentials {
        iterations: ScramCredentials::DEFAULT_ITERATIONS,
        salt: salt
            .get(..ScramCredentials::SALT_LEN)
            .unwrap_or(&salt)
            .to_vec(),
        stored_key: derive(b"stored"),
        server_key: derive(b"server"),
    }
}

/// The work of [`ScramServer::client_first`].
fn parse_client_first(msg: &[u8]) -> Result<FirstMessage, ScramError> {
    if msg.len() > SaslServer::MAX_RESPONSE {
        return Err(ScramError::TooLong);
    }
    let text = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    // gs2-header: flag "," [authzid] ","
    let (flag, rest) = text
        .split_once(',')
        .ok_or(ScramError::Malformed("no gs2 header"))?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
        _ => return Err(ScramError::Malformed("bad channel binding flag")),
    }
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or(ScramError::Malformed("no gs2 header"))?;
    let authzid = match authzid {
        "" => None,
        a => Some(saslname(
            a.strip_prefix("a=")
                .ok_or(ScramError::Malformed("bad authorization identity"))?,
        )?),
    };
    let gs2_len = text.len() - bare.len();
    let gs2_header = text.get(..gs2_len).unwrap_or_default().to_owned();

    let mut attrs = bare.split(',');
    let user_attr = attrs.next().unwrap_or_default();
    if user_attr.starts_with("m=") {
        return Err(ScramError::Malformed("unsupported mandatory extension"));
    }
    let username = saslname(
        user_attr
            .strip_prefix("n=")
            .ok_or(ScramError::Malformed("no user name"))?,
    )?;
    let client_nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(ScramError::Malformed("no nonce"))?;
    if client_nonce.is_empty() || !client_nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(ScramError::Malformed("bad nonce"));
    }
    // The nonce is echoed in the server-first-message: bound what the server sends back.
    if client_nonce.len() > MAX_CLIENT_NONCE {
        return Err(ScramError::Malformed("nonce too long"));
    }
    for ext in attrs {
        check_extension(ext)?;
    }
    if authzid.as_ref().is_some_and(|a| *a != username) {
        return Err(ScramError::Authzid);
    }
    Ok(FirstMessage {
        gs2_header,
        bare: bare.to_owned(),
        username,
        client_nonce: client_nonce.to_owned(),
    })
}

/// `attr-val = ALPHA "=" value` (RFC 5802 §7), for extensions we ignore. `m=` is only
/// allowed first, so it is refused here too.
fn check_extension(ext: &str) -> Result<(), ScramError> {
    let mut chars = ext.chars();
    match (chars.next(), chars.next()) {
        (Some(a), Some('=')) if a.is_ascii_alphabetic() && a != 'm' => Ok(()),
        _ => Err(ScramError::Malformed("bad attribute")),
    }
}

/// Decodes a `saslname` (RFC 5802 §7): UTF-8 without NUL and `,`, where `=` appears
/// only in `=2C` (`,`) and `=3D` (`=`). Must not be empty.
fn saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some((before, after)) = rest.split_once('=') {
        out.push_str(before);
        if let Some(tail) = after.strip_prefix("2C") {
            out.push(',');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("3D") {
            out.push('=');
            rest = tail;
        } else {
            return Err(ScramError::Malformed("bad escape in name"));
        }
    }
    out.push_str(rest);
    if out.is_empty() || out.contains('\0') {
        return Err(ScramError::Malformed("bad name"));
    }
    Ok(out)
}

#[cfg(test)]
#[path = "scram_server_tests.rs"]
mod tests;
