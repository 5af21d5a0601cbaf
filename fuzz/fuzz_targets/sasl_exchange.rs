//! Fuzzes the server side of the SASL exchanges: PLAIN and LOGIN (`SaslServer`), the
//! base64 line decoder, and SCRAM-SHA-256 (`ScramServer`) on client messages.
//!
//! Input layout: byte 0 picks the mechanism and whether an initial response is given;
//! the rest is split at NUL-free `\n` into the client's lines.
//!
//! Invariants checked:
//! - Nothing panics; every step ends in a challenge, credentials or an error.
//! - A challenge is never larger than the limits allow, and an exchange ends within
//!   the number of lines it was given (no exchange loops forever).
//! - SCRAM: a client that does not know the password never gets `Verified`.

#![no_main]

use buudien_auth::{
    Mechanism, SaslServer, SaslStep, ScramCredentials, ScramOutcome, ScramServer, decode_response,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static CREDS: OnceLock<ScramCredentials> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let lines: Vec<&[u8]> = rest.split(|&b| b == b'\n').take(8).collect();
    for l in &lines {
        let _ = decode_response(l);
    }
    match sel % 3 {
        0 | 1 => {
            let mech = if sel % 3 == 0 {
                Mechanism::Plain
            } else {
                Mechanism::Login
            };
            let initial =
                (sel & 0x80 != 0).then(|| lines.first().map(|l| l.to_vec()).unwrap_or_default());
            let (mut server, mut step) = SaslServer::start(mech, initial);
            let mut i = usize::from(sel & 0x80 != 0);
            let mut steps = 0;
            while let SaslStep::Challenge(c) = &step {
                assert!(c.len() <= 64, "challenge of {} octets", c.len());
                let Some(line) = lines.get(i) else { break };
                step = server.step(line);
                i += 1;
                steps += 1;
                assert!(steps <= 3, "PLAIN/LOGIN take at most three steps");
            }
        }
        _ => {
            let mut server = ScramServer::new();
            let first = lines.first().copied().unwrap_or_default();
            if server.client_first(first).is_err() {
                return;
            }
            // Credentials for a password the fuzzer does not send (derived once).
            let creds = CREDS.get_or_init(|| {
                ScramCredentials::derive_with(b"not the password", b"salt-salt-salt", 4096)
            });
            let Ok(server_first) = server.server_first(Some(creds)) else {
                return;
            };
            assert!(server_first.len() < 512);
            let last = lines.get(1).copied().unwrap_or_default();
            if let Ok(ScramOutcome::Verified(_)) = server.client_final(last) {
                panic!("a proof without the password was accepted");
            }
        }
    }
});
