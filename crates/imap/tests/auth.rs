//! AUTHENTICATE traces (RFC 9051 §6.2.2; SASL-IR, RFC 4959) over an in-memory duplex
//! against a real store: PLAIN, LOGIN and SCRAM-SHA-256 (RFC 5802, RFC 7677),
//! with a SCRAM client written out here.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use buudien_auth::ScramCredentials;
use buudien_imap::{ImapConfig, ImapServer};
use common::*;
use hmac::Mac;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

impl Client {
    /// Reads a `+ <base64>` continuation and returns it decoded.
    async fn challenge(&mut self) -> Vec<u8> {
        let l = self.line().await;
        let b64 = l
            .strip_prefix("+ ")
            .and_then(|r| r.strip_suffix("\r\n"))
            .unwrap_or_else(|| panic!("not a continuation: {l:?}"));
        B64.decode(b64).unwrap()
    }

    /// Sends one SASL response line, base64-encoded.
    async fn respond(&mut self, data: &[u8]) {
        self.send(&format!("{}\r\n", B64.encode(data))).await;
    }
}

/// Connects over loopback and reads the greeting.
async fn ready(server: &ImapServer<common::TestStore>) -> (Client, JoinHandle<()>) {
    let (mut c, task) = connect(server, LOOPBACK);
    let g = c.line().await;
    assert!(g.starts_with("* OK [CAPABILITY "), "{g}");
    (c, task)
}

fn plain(authzid: &str, user: &str, password: &str) -> String {
    B64.encode(format!("{authzid}\0{user}\0{password}"))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <hmac::Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// The client side of SCRAM-SHA-256 (RFC 5802 §3), from the password.
struct ScramClient {
    gs2: String,
    bare: String,
    password: String,
    server_signature: Vec<u8>,
}

impl ScramClient {
    fn new(user: &str, password: &str) -> Self {
        ScramClient {
            gs2: "n,,".to_owned(),
            bare: format!("n={user},r=fyko+d2lbbFgONRv9qkxdawL"),
            password: password.to_owned(),
            server_signature: Vec::new(),
        }
    }

    fn first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2, self.bare).into_bytes()
    }

    /// The client-final-message for this server-first-message.
    fn last(&mut self, server_first: &[u8]) -> Vec<u8> {
        let server_first = std::str::from_utf8(server_first).unwrap();
        let attrs: Vec<&str> = server_first.split(',').collect();
        assert_eq!(attrs.len(), 3, "{server_first}");
        let nonce = attrs[0].strip_prefix("r=").unwrap();
        assert!(nonce.starts_with("fyko+d2lbbFgONRv9qkxdawL"), "{nonce}");
        assert!(nonce.len() > "fyko+d2lbbFgONRv9qkxdawL".len(), "{nonce}");
        let salt = B64.decode(attrs[1].strip_prefix("s=").unwrap()).unwrap();
        let iterations: u32 = attrs[2].strip_prefix("i=").unwrap().parse().unwrap();
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(self.password.as_bytes(), &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(&client_key);
        let server_key = hmac(&salted, b"Server Key");
        let without_proof = format!("c={},r={nonce}", B64.encode(&self.gs2));
        let auth_message = format!("{},{server_first},{without_proof}", self.bare);
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        self.server_signature = hmac(&server_key, auth_message.as_bytes());
        format!("{without_proof},p={}", B64.encode(proof)).into_bytes()
    }

    /// The server-final-message the server must send.
    fn expected_final(&self) -> Vec<u8> {
        format!("v={}", B64.encode(&self.server_signature)).into_bytes()
    }
}

#[tokio::test]
async fn capabilities_offer_mechanisms_only_when_auth_is_allowed() {
    let env = env().await;
    let server = env.server(ImapConfig::default());
    let (mut c, _task) = connect(&server, LOOPBACK);
    let g = c.line().await;
    assert!(
        g.contains(" AUTH=PLAIN AUTH=LOGIN AUTH=SCRAM-SHA-256 SASL-IR]"),
        "{g}"
    );
    assert!(!g.contains("LOGINDISABLED"), "{g}");

    let (mut c, _task) = connect(&server, REMOTE);
    let g = c.line().await;
    assert!(g.contains("LOGINDISABLED"), "{g}");
    assert!(!g.contains("AUTH=") && !g.contains("SASL-IR"), "{g}");
    let r = c.cmd("a", "AUTHENTICATE PLAIN").await;
    assert_eq!(r, "a NO [PRIVACYREQUIRED] use STARTTLS first\r\n");
    let r = c.cmd("b", "AUTHENTICATE SCRAM-SHA-256").await;
    assert_eq!(r, "b NO [PRIVACYREQUIRED] use STARTTLS first\r\n");

    let open = env.server(ImapConfig {
        allow_plaintext_auth: true,
        ..ImapConfig::default()
    });
    let (mut c, _task) = connect(&open, REMOTE);
    let g = c.line().await;
    assert!(g.contains("AUTH=SCRAM-SHA-256 SASL-IR"), "{g}");
    let r = c
        .cmd(
            "a",
            &format!("AUTHENTICATE PLAIN {}", plain("", USER, PASSWORD)),
        )
        .await;
    // After login the list has no AUTH= any more.
    assert!(r.starts_with("a OK [CAPABILITY IMAP4rev2 "), "{r}");
    assert!(!r.contains("AUTH=") && !r.contains("SASL-IR"), "{r}");
}

#[tokio::test]
async fn plain_without_initial_response() {
    let env = env().await;
    let server = env.server(ImapConfig::default());
    let (mut c, _task) = ready(&server).await;
    c.send("a AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(c.line().await, "+ \r\n");
    c.send(&format!("{}\r\n", plain("", USER, PASSWORD))).await;
    let r = c.until("a").await;
    assert!(r.starts_with("a OK [CAPABILITY "), "{r}");
    assert!(r.ends_with("] logged in\r\n"), "{r}");
    let r = c.cmd("b", "SELECT INBOX").await;
    assert!(r.ends_with("b OK [READ-WRITE] SELECT completed\r\n"), "{r}");
    // RFC 9051 §6.2.2: AUTHENTICATE only in the not-authenticated state.
    let r = c.cmd("c", "AUTHENTICATE PLAIN").await;
    assert_eq!(r, "c BAD already authenticated\r\n");
    let r = c
        .cmd(
            "d",
            &format!("AUTHENTICATE PLAIN {}", plain("", USER, PASSWORD)),
        )
        .await;
    assert_eq!(r, "d BAD already authenticated\r\n");
}

#[tokio::test]
async fn plain_with_initial_response() {
    let env = env().await;
    let server = env.server(ImapConfig::default());
    let (mut c, _task) = ready(&server).await;
    // Wrong password, then an authzid naming someone else, then an empty one (=).
    let r = c
        .cmd(
            "a",
            &format!("AUTHENTICATE PLAIN {}", plain("", USER, "nope")),
        )
        .await;
    assert_eq!(r, "a NO [AUTHENTICATIONFAILED] invalid credentials\r\n");
    let r = c
        .cmd(
            "b",
            &format!(
                "AUTHENTICATE PLAIN {}",
                plain("bob@example.org", USER, PASSWORD)
            ),
        )
        .await;
    assert_eq!(r, "b NO [AUTHORIZATIONFAILED] proxy login not allowed\r\n");
    let r = c.cmd("c", "AUTHENTICATE PLAIN =").await;
    assert!(r.starts_with("c BAD "), "{r}");
    let r = c
        .cmd(
            "d",
            &format!("authenticate plain {}", plain(USER, USER, PASSWORD)),
        )
        .await;
    assert!(r.starts_with("d OK [CAPABILITY "), "{r}");
}

#[tokio::test]
async fn login_mechanism() {
    let env = env().await;
    let server = env.server(ImapConfig::default());
    let (mut c, _task) = ready(&server).await;
    c.send("a AUTHENTICATE LOGIN\r\n").await;
    assert_eq!(c.line().await, "+ VXNlcm5hbWU6\r\n"); // "Username:"
    c.respond(USER.as_bytes()).await;
    assert_eq!(c.challenge().await, b"Password:");
    c.respond(b"wrong").await;
    let r = c.until("a").await;
    assert_eq!(r, "a NO [AUTHENTICATIONFAILED] invalid credentials\r\n");

    // With the user name as initial response, only the password is asked for.
    c.send(&format!("b AUTHENTICATE LOGIN {}\r\n", B64.encode(USER)))
        .await;
    assert_eq!(c.challenge().await, b"Password:");
    c.respond(PASSWORD.as_bytes()).await;
    let r = c.until("b").await;
    assert!(r.starts_with("b OK [CAPABILITY "), "{r}");
}

#[tokio::test]
async fn scram_sha_256_exchange() {
    let env = env().await;
    let server = env.server(ImapConfig::default());
    let (mut c, _task) = ready(&server).await;
    let mut client = ScramClient::new(USER, PASSWORD);
    c.send("a AUTHENTICATE SCRAM-SHA-256\r\n").await;
    assert_eq!(c.line().await, "+ \r\n");
    c.respond(&client.first()).await;
    let server_first = c.challenge().await;
    let text = String::from_utf8(server_first.clone()).unwrap();
    assert!(text.contains(",i=4096"), "{text}");
    c.respond(&client.last(&server_first)).await;
    // The server proves it knows the keys before the client says it is done.
    assert_eq!(c.challenge().await, client.expected_final());
    c.send("\r\n").await;
    let r = c.until("a").await;
    assert!(r.starts_with("a OK [CAPABILITY "), "{r}");
    let r = c.cmd("b", "SELECT INBOX").await;
    assert!(r.ends_with("b OK [READ-WRITE] SELECT completed\r\n"), "{r}");
    let r = c.cmd("c", "AUTHENTICATE SCRAM-SHA-256").await;
    assert_eq!(r, "c BAD already authenticated\r\n");
}

#[tokio::test]
async fn scram_with_initial_response_and_authzid() {
    let env = env().await;
    let server = env.server(ImapConfig::default());
    let (mut c, _task) = ready(&server).await;
    let mut client = ScramClient::new(USER, PASSWORD);
    client.gs2 = format!("n,a={USER},");
    c.send(&format!(
        "a AUTHENTICATE SCRAM-SHA-256 {}\r\n",
        B64.encode(client.first())
    ))
    .await;
    let server_first = c.challenge().await;
    c.respond(&client.last(&server_first)).await;
    assert_eq!(c.challenge().await, client.expected_final());
    c.send("\r\n").await;
    let r = c.until("a").await;
    assert!(r.starts_with("a OK [CAPABILITY "), "{r}");
}

#[tokio::test]
async fn scram_wrong_password_and_unknown_user_fail_alike() {
    let env = env().await;
    let server = env.server(ImapConfig::default());
    let (mut c, _task) = ready(&server).await;
    let mut salts = Vec::new();
    for (tag, user, password) in [
        ("a", USER, "wrong"),
        ("b", "nobody@example.org", PASSWORD),
        ("c", "not an address", PASSWORD),
    ] {
        let mut client = ScramClient::new(user, password);
        c.send(&format!(
            "{tag} AUTHENTICATE SCRAM-SHA-256 {}\r\n",
            B64.encode(client.first())
        ))
        .await;
        let server_first = c.challenge().await;
        let text = String::from_utf8(server_first.clone()).unwrap();
        let salt = B64
            .decode(text.split(',').nth(1).unwrap().strip_prefix("s=").unwrap())
            .unwrap();
        assert_eq!(salt.len(), ScramCredentials::SALT_LEN, "{text}");
        assert!(text.ends_with(",i=4096"), "{text}");
        salts.push(salt);
        c.respond(&client.last(&server_first)).await;
        let r = c.until(tag).await;
        assert_eq!(
            r,
            format!("{tag} NO [AUTHENTICATIONFAILED] invalid credentials\r\n")
        );
    }
    assert_ne!(salts[1], salts[2]);
    // The unknown user gets the same salt each time.
    let client = ScramClient::new("nobody@example.org", PASSWORD);
    c.send(&format!(
        "d AUTHENTICATE SCRAM-SHA-256 {}\r\n",
        B64.encode(client.first())
    ))
    .await;
    let text = String::from_utf8(c.challenge().await).unwrap();
    assert_eq!(
        B64.decode(text.split(',').nth(1).unwrap().strip_prefix("s=").unwrap())
            .unwrap(),
        salts[1]
    );
    c.send("*\r\n").await;
    assert_eq!(c.until("d").await, "d BAD authentication cancelled\r\n");
    let r = c.cmd("e", "SELECT INBOX").await;
    assert_eq!(r, "e BAD not authenticated\r\n");
}

#[tokio::test]
async fn scram_refusals() {
    let env = env().await;
    let server = env.server(ImapConfig::default());
    let (mut c, _task) = ready(&server).await;
    // Channel binding is not offered (no -PLUS mechanism).
    let first = format!("p=tls-exporter,,n={USER},r=abc");
    let r = c
        .cmd(
            "a",
            &format!("AUTHENTICATE SCRAM-SHA-256 {}", B64.encode(first)),
        )
        .await;
    assert_eq!(r, "a NO channel binding is not supported\r\n");
    // Acting as another user.
    let first = format!("n,a=bob@example.org,n={USER},r=abc");
    let r = c
        .cmd(
            "b",
            &format!("AUTHENTICATE SCRAM-SHA-256 {}", B64.encode(first)),
        )
        .await;
    assert_eq!(r, "b NO [AUTHORIZATIONFAILED] proxy login not allowed\r\n");
    // Not SCRAM at all; an empty initial response.
    let r = c
        .cmd(
            "c",
            &format!("AUTHENTICATE SCRAM-SHA-256 {}", B64.encode("hello")),
        )
        .await;
    assert!(r.starts_with("c BAD "), "{r}");
    let r = c.cmd("d", "AUTHENTICATE SCRAM-SHA-256 =").await;
    assert!(r.starts_with("d BAD "), "{r}");

    // A right proof, but the client does not send the empty line after `v=`.
    let mut client = ScramClient::new(USER, PASSWORD);
    c.send("e AUTHENTICATE SCRAM-SHA-256\r\n").await;
    assert_eq!(c.line().await, "+ \r\n");
    c.respond(&client.first()).await;
    let server_first = c.challenge().await;
    c.respond(&client.last(&server_first)).await;
    assert_eq!(c.challenge().await, client.expected_final());
    c.respond(b"more").await;
    assert_eq!(c.until("e").await, "e BAD expected an empty response\r\n");
    let r = c.cmd("f", "SELECT INBOX").await;
    assert_eq!(r, "f BAD not authenticated\r\n");

    // A client-final-message that breaks the grammar.
    let client = ScramClient::new(USER, PASSWORD);
    c.send("g AUTHENTICATE SCRAM-SHA-256\r\n").await;
    assert_eq!(c.line().await, "+ \r\n");
    c.respond(&client.first()).await;
    c.challenge().await;
    c.respond(b"c=biws").await;
    assert!(c.until("g").await.starts_with("g BAD "));
}

#[tokio::test]
async fn cancel_bad_base64_and_unknown_mechanism() {
    let env = env().await;
    let server = env.server(ImapConfig::default());
    let (mut c, _task) = ready(&server).await;
    c.send("a AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(c.line().await, "+ \r\n");
    c.send("*\r\n").await;
    assert_eq!(c.until("a").await, "a BAD authentication cancelled\r\n");

    c.send("b AUTHENTICATE LOGIN\r\n").await;
    assert_eq!(c.challenge().await, b"Username:");
    c.send("!!!!\r\n").await;
    assert_eq!(c.until("b").await, "b BAD invalid base64\r\n");

    c.send("c AUTHENTICATE SCRAM-SHA-256\r\n").await;
    assert_eq!(c.line().await, "+ \r\n");
    c.send("bi==ws\r\n").await;
    assert_eq!(c.until("c").await, "c BAD invalid base64\r\n");

    // Padding in the middle of an initial response.
    let r = c.cmd("d", "AUTHENTICATE PLAIN ab=c").await;
    assert_eq!(r, "d BAD invalid base64\r\n");

    let r = c.cmd("e", "AUTHENTICATE GSSAPI").await;
    assert_eq!(r, "e NO unsupported mechanism\r\n");
    let r = c.cmd("f", "AUTHENTICATE CRAM-MD5 =").await;
    assert_eq!(r, "f NO unsupported mechanism\r\n");

    // A response line over the limit ends the exchange; the session goes on.
    c.send("g AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(c.line().await, "+ \r\n");
    c.send(&format!("{}\r\n", "A".repeat(20_000))).await;
    assert_eq!(c.until("g").await, "g BAD line too long\r\n");
    let r = c.cmd("h", "NOOP").await;
    assert_eq!(r, "h OK NOOP completed\r\n");
    let r = c
        .cmd(
            "i",
            &format!("AUTHENTICATE PLAIN {}", plain("", USER, PASSWORD)),
        )
        .await;
    assert!(r.starts_with("i OK [CAPABILITY "), "{r}");
}

#[tokio::test]
async fn failures_are_throttled_across_mechanisms() {
    let env = env().await;
    let server = env.server_with(ImapConfig::default(), 2);
    let (mut c, _task) = ready(&server).await;
    let r = c
        .cmd("a", &format!("AUTHENTICATE PLAIN {}", plain("", USER, "x")))
        .await;
    assert!(r.starts_with("a NO [AUTHENTICATIONFAILED]"), "{r}");
    let mut client = ScramClient::new(USER, "y");
    c.send(&format!(
        "b AUTHENTICATE SCRAM-SHA-256 {}\r\n",
        B64.encode(client.first())
    ))
    .await;
    let server_first = c.challenge().await;
    c.respond(&client.last(&server_first)).await;
    assert!(
        c.until("b")
            .await
            .starts_with("b NO [AUTHENTICATIONFAILED]")
    );
    // Two failures: even the right password is refused for now, by every path.
    let r = c
        .cmd(
            "c",
            &format!("AUTHENTICATE PLAIN {}", plain("", USER, PASSWORD)),
        )
        .await;
    assert_eq!(
        r,
        "c NO [UNAVAILABLE] too many failed logins, try later\r\n"
    );
    let client = ScramClient::new(USER, PASSWORD);
    let r = c
        .cmd(
            "d",
            &format!("AUTHENTICATE SCRAM-SHA-256 {}", B64.encode(client.first())),
        )
        .await;
    assert_eq!(
        r,
        "d NO [UNAVAILABLE] too many failed logins, try later\r\n"
    );
    c.send("e AUTHENTICATE LOGIN\r\n").await;
    assert_eq!(c.challenge().await, b"Username:");
    c.respond(USER.as_bytes()).await;
    assert_eq!(c.challenge().await, b"Password:");
    c.respond(PASSWORD.as_bytes()).await;
    assert_eq!(
        c.until("e").await,
        "e NO [UNAVAILABLE] too many failed logins, try later\r\n"
    );
}
