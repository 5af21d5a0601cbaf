#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use hmac::Mac;
use sha2::{Digest, Sha256};

// RFC 7677 §3 example: user "user", password "pencil".
const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn pencil() -> ScramCredentials {
    let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    ScramCredentials::derive_with(b"pencil", &salt, 4096)
}

fn rfc_server() -> ScramServer {
    ScramServer::with_parts(SERVER_NONCE, [9; 32])
}

/// A server that has sent its server-first-message for "user"/"pencil".
fn after_server_first(client_first: &str) -> ScramServer {
    let mut s = rfc_server();
    s.client_first(client_first.as_bytes()).unwrap();
    s.server_first(Some(&pencil())).unwrap();
    s
}

#[test]
fn rfc7677_exchange() {
    let mut s = rfc_server();
    assert_eq!(s.client_first(CLIENT_FIRST.as_bytes()).unwrap(), "user");
    let first = s.server_first(Some(&pencil())).unwrap();
    assert_eq!(String::from_utf8(first).unwrap(), SERVER_FIRST);
    let outcome = s.client_final(CLIENT_FINAL.as_bytes()).unwrap();
    assert_eq!(
        outcome,
        ScramOutcome::Verified(SERVER_FINAL.as_bytes().to_vec())
    );
    assert!(s.is_over());
    // Nothing more after the end.
    assert_eq!(
        s.client_final(CLIENT_FINAL.as_bytes()),
        Err(ScramError::OutOfOrder)
    );
}

#[test]
fn wrong_password_is_rejected() {
    let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let other = ScramCredentials::derive_with(b"pencil2", &salt, 4096);
    let mut s = rfc_server();
    s.client_first(CLIENT_FIRST.as_bytes()).unwrap();
    let first = s.server_first(Some(&other)).unwrap();
    assert_eq!(String::from_utf8(first).unwrap(), SERVER_FIRST);
    assert_eq!(
        s.client_final(CLIENT_FINAL.as_bytes()).unwrap(),
        ScramOutcome::Rejected
    );
}

#[test]
fn tampered_final_messages_are_rejected() {
    let nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    let proof = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    for bad in [
        // y,, is a different gs2 header from the one sent.
        format!("c=eSws,r={nonce},p={proof}"),
        format!("c=biws,r={nonce}X,p={proof}"),
        format!("c=biws,r=rOprNGfwEbeRWgbNEkqO,p={proof}"),
        format!("c=biws,r={nonce},p=eHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
        format!("c=biws,r={nonce},p=AAAA"),
    ] {
        let mut s = after_server_first(CLIENT_FIRST);
        assert_eq!(
            s.client_final(bad.as_bytes()).unwrap(),
            ScramOutcome::Rejected,
            "{bad}"
        );
        assert!(s.is_over());
    }
}

#[test]
fn malformed_final_messages() {
    let nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    for bad in [
        String::new(),
        format!("c=biws,r={nonce}"),
        format!("r={nonce},c=biws,p=AAAA"),
        "c=biws,p=AAAA".to_owned(),
        format!("c=!!!!,r={nonce},p=AAAA"),
        format!("c=biws,r={nonce},p=!!!"),
        format!("c=biws,r={nonce},m=x,p=AAAA"),
        format!("c=biws,r={nonce},,p=AAAA"),
    ] {
        let mut s = after_server_first(CLIENT_FIRST);
        assert!(
            matches!(
                s.client_final(bad.as_bytes()),
                Err(ScramError::Malformed(_))
            ),
            "{bad}"
        );
        assert!(s.is_over());
    }
    let mut s = after_server_first(CLIENT_FIRST);
    assert!(matches!(
        s.client_final(b"c=biws,r=\xff,p=AAAA"),
        Err(ScramError::Malformed(_))
    ));
    let mut s = after_server_first(CLIENT_FIRST);
    let long = vec![b'a'; SaslServer::MAX_RESPONSE + 1];
    assert_eq!(s.client_final(&long), Err(ScramError::TooLong));
}

#[test]
fn malformed_first_messages() {
    for bad in [
        "",
        "n",
        "n,",
        "x,,n=user,r=abc",
        "n,,r=abc,n=user",
        "n,,n=user",
        "n,,n=user,r=",
        "n,,n=,r=abc",
        "n,,n=us=er,r=abc",
        "n,,n=us=2Xer,r=abc",
        "n,,n=us=2,r=abc",
        "n,,m=ext,n=user,r=abc",
        "n,,n=user,r=abc,m=ext",
        "n,,n=user,r=abc,=x",
        "n,,n=user,r=a c",
        "n,b=user,n=user,r=abc",
        "n,a=,n=user,r=abc",
    ] {
        let mut s = rfc_server();
        assert!(
            matches!(
                s.client_first(bad.as_bytes()),
                Err(ScramError::Malformed(_))
            ),
            "{bad}"
        );
        assert!(s.is_over());
        assert_eq!(s.server_first(None), Err(ScramError::OutOfOrder));
    }
    let mut s = rfc_server();
    assert!(matches!(
        s.client_first(b"n,,n=\xff,r=abc"),
        Err(ScramError::Malformed(_))
    ));
    let mut s = rfc_server();
    assert!(matches!(
        s.client_first(b"n,,n=a\0b,r=abc"),
        Err(ScramError::Malformed(_))
    ));
    let mut s = rfc_server();
    let mut long = b"n,,n=user,r=".to_vec();
    long.resize(SaslServer::MAX_RESPONSE + 1, b'a');
    assert_eq!(s.client_first(&long), Err(ScramError::TooLong));
}

#[test]
fn channel_binding_and_authzid() {
    let mut s = rfc_server();
    assert_eq!(
        s.client_first(b"p=tls-exporter,,n=user,r=abc"),
        Err(ScramError::ChannelBinding)
    );
    let mut s = rfc_server();
    assert_eq!(
        s.client_first(b"n,a=admin,n=user,r=abc"),
        Err(ScramError::Authzid)
    );
    // An authzid equal to the user is fine, and the c= value must then be the base64
    // of that exact gs2 header.
    let mut s = rfc_server();
    assert_eq!(s.client_first(b"n,a=user,n=user,r=abc").unwrap(), "user");
    // "y,," (client could bind but thinks we cannot) is accepted.
    let mut s = rfc_server();
    assert_eq!(s.client_first(b"y,,n=user,r=abc").unwrap(), "user");
}

#[test]
fn saslname_escapes() {
    assert_eq!(saslname("a=2Cb=3Dc").unwrap(), "a,b=c");
    assert_eq!(saslname("=3D").unwrap(), "=");
    assert!(saslname("=2c").is_err());
    assert!(saslname("").is_err());
    let mut s = rfc_server();
    assert_eq!(
        s.client_first("n,,n=j=2Cd=3De@x.example,r=abc,x=ext".as_bytes())
            .unwrap(),
        "j,d=e@x.example"
    );
}

#[test]
fn out_of_order_calls() {
    let mut s = rfc_server();
    assert_eq!(s.server_first(None), Err(ScramError::OutOfOrder));
    let mut s = rfc_server();
    assert_eq!(s.client_final(b"c=biws"), Err(ScramError::OutOfOrder));
    let mut s = rfc_server();
    s.client_first(CLIENT_FIRST.as_bytes()).unwrap();
    assert_eq!(
        s.client_first(CLIENT_FIRST.as_bytes()),
        Err(ScramError::OutOfOrder)
    );
}

/// The client side of RFC 5802 §3, written out here so the server is checked against
/// an independent computation.
fn client_final(password: &str, gs2: &str, bare: &str, server_first: &str) -> String {
    let attrs: Vec<&str> = server_first.split(',').collect();
    let nonce = attrs[0].strip_prefix("r=").unwrap();
    let salt = B64.decode(attrs[1].strip_prefix("s=").unwrap()).unwrap();
    let iterations: u32 = attrs[2].strip_prefix("i=").unwrap().parse().unwrap();
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
    let hmac = |key: &[u8], data: &[u8]| -> Vec<u8> {
        let mut m = <hmac::Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    };
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(&client_key);
    let without_proof = format!("c={},r={nonce}", B64.encode(gs2));
    let auth_message = format!("{bare},{server_first},{without_proof}");
    let signature = hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(signature)
        .map(|(k, s)| k ^ s)
        .collect();
    format!("{without_proof},p={}", B64.encode(proof))
}

#[test]
fn random_nonce_exchange_with_authzid() {
    let creds = ScramCredentials::derive(b"s3cret");
    let gs2 = "n,a=ann@x.example,";
    let bare = "n=ann@x.example,r=clientnonce123";
    let mut s = ScramServer::new();
    assert_eq!(
        s.client_first(format!("{gs2}{bare}").as_bytes()).unwrap(),
        "ann@x.example"
    );
    let first = String::from_utf8(s.server_first(Some(&creds)).unwrap()).unwrap();
    assert!(first.starts_with("r=clientnonce123"), "{first}");
    // 18 random bytes: 24 base64 characters after the client's nonce.
    let nonce = first.split(',').next().unwrap();
    assert_eq!(nonce.len(), "r=clientnonce123".len() + 24, "{first}");
    let final_msg = client_final("s3cret", gs2, bare, &first);
    match s.client_final(final_msg.as_bytes()).unwrap() {
        ScramOutcome::Verified(v) => assert!(v.starts_with(b"v=")),
        ScramOutcome::Rejected => panic!("rejected"),
    }
    // Two exchanges get different server nonces.
    let mut t = ScramServer::new();
    t.client_first(format!("{gs2}{bare}").as_bytes()).unwrap();
    let other = String::from_utf8(t.server_first(Some(&creds)).unwrap()).unwrap();
    assert_ne!(first, other);
}

#[test]
fn unknown_user_looks_real_and_fails() {
    let mut s = ScramServer::new();
    s.client_first(b"n,,n=ghost,r=abc").unwrap();
    let first = String::from_utf8(s.server_first(None).unwrap()).unwrap();
    let attrs: Vec<&str> = first.split(',').collect();
    assert_eq!(attrs.len(), 3, "{first}");
    let salt = B64.decode(attrs[1].strip_prefix("s=").unwrap()).unwrap();
    assert_eq!(salt.len(), ScramCredentials::SALT_LEN);
    assert_eq!(attrs[2], "i=4096");
    // Same user, same salt (a probe cannot tell a fresh fake from a stored one).
    let mut t = ScramServer::new();
    t.client_first(b"n,,n=ghost,r=xyz").unwrap();
    let again = String::from_utf8(t.server_first(None).unwrap()).unwrap();
    assert_eq!(again.split(',').nth(1), Some(attrs[1]));
    let mut u = ScramServer::new();
    u.client_first(b"n,,n=ghost2,r=xyz").unwrap();
    let other = String::from_utf8(u.server_first(None).unwrap()).unwrap();
    assert_ne!(other.split(',').nth(1), Some(attrs[1]));
    // Even a proof computed from the fake keys' own salt does not get in.
    let final_msg = client_final("anything", "n,,", "n=ghost,r=abc", &first);
    assert_eq!(
        s.client_final(final_msg.as_bytes()).unwrap(),
        ScramOutcome::Rejected
    );
}

#[test]
fn debug_hides_state() {
    let mut s = rfc_server();
    s.client_first(CLIENT_FIRST.as_bytes()).unwrap();
    let d = format!("{s:?}");
    assert!(!d.contains("user") && !d.contains(SERVER_NONCE), "{d}");
}

/// Found by the sasl_exchange fuzz target: a client nonce of 12 KiB was echoed whole in
/// the server-first-message. The nonce is now bounded.
#[test]
fn long_client_nonce_is_refused_and_server_first_stays_small() {
    let ok = format!("n,,n=user,r={}", "7".repeat(MAX_CLIENT_NONCE));
    let mut s = rfc_server();
    s.client_first(ok.as_bytes()).unwrap();
    let first = s.server_first(Some(&pencil())).unwrap();
    assert!(first.len() < 512, "{} octets", first.len());
    let long = format!("n,,n=user,r={}", "7".repeat(MAX_CLIENT_NONCE + 1));
    let mut s = rfc_server();
    assert_eq!(
        s.client_first(long.as_bytes()),
        Err(ScramError::Malformed("nonce too long"))
    );
}
