//! The server side of SASL exchanges (RFC 4422) for the PLAIN (RFC 4616) and LOGIN
//! (draft-murchison-sasl-login) mechanisms.
//!
//! The protocol layer (POP3 `AUTH`, RFC 5034 §4; IMAP `AUTHENTICATE`; SMTP `AUTH`) owns
//! the wire framing: it decodes the optional initial response itself (including the
//! `=` that stands for an empty one), base64-encodes the challenges this module returns,
//! and passes each client response line to [`SaslServer::step`] still encoded. The
//! outcome is a [`Credentials`] value; checking the password is the caller's job.

use std::fmt;

use SaslStep::{Challenge, Done, Failed};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use buudien_types::Secret;

/// Base64 with the standard alphabet (RFC 4648 §4). Padding may be present or left off
/// (some clients leave it off), but padding in the middle, characters outside the
/// alphabet and non-zero trailing bits are all rejected, as RFC 5034 §4 requires.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A SASL mechanism this server implements (RFC 4422 §3.1 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// PLAIN (RFC 4616): one message `[authzid] NUL authcid NUL passwd`.
    Plain,
    /// LOGIN (draft-murchison-sasl-login): user name and password in two steps.
    Login,
}

impl Mechanism {
    /// Both, in the order to advertise.
    pub const ALL: [Mechanism; 2] = [Mechanism::Plain, Mechanism::Login];

    /// Case-insensitive; None for anything else.
    ///
    /// RFC 4422 §3.1: mechanism names are upper case, but clients send them in any case.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// "PLAIN" / "LOGIN"
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The authenticated identity a mechanism produced (password still to be checked by the
/// caller).
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The authorization identity (RFC 4422 §3.4.1): the identity the client asks to act
    /// as. None when the client sent none or an empty one. It may equal `authcid`; if it
    /// differs, the caller decides whether that is allowed (normally: refuse).
    pub authzid: Option<String>,
    /// The authentication identity (the login name), non-empty UTF-8.
    pub authcid: String,
    /// The password, non-empty UTF-8.
    pub password: Secret<String>,
}

impl Credentials {
    /// The identity the session would act as: `authzid` if given, else `authcid`
    /// (RFC 4616 §2: an empty authzid means "derive it from the authcid").
    pub fn authorization_identity(&self) -> &str {
        self.authzid.as_deref().unwrap_or(&self.authcid)
    }
}

/// Why a SASL exchange failed before any password was checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The client sent `*` (RFC 4422 §3.5, RFC 5034 §4).
    #[error("the client cancelled the authentication")]
    Cancelled,
    /// The response was not valid base64, or not a valid message for the mechanism.
    #[error("malformed SASL response: {0}")]
    Malformed(&'static str),
    /// The response was longer than [`SaslServer::MAX_RESPONSE`].
    #[error("the SASL response is too long")]
    TooLong,
}

/// What the protocol layer should do next.
#[derive(Debug)]
pub enum SaslStep {
    /// send this challenge (raw bytes; the protocol layer base64-encodes it; empty is allowed)
    Challenge(Vec<u8>),
    /// The exchange finished; check `Credentials::password` against the user's hash.
    Done(Credentials),
    /// The exchange failed; answer with a failure (after any throttling delay).
    Failed(SaslError),
}

/// Where an exchange is.
enum State {
    /// PLAIN sent its empty challenge and waits for the message.
    PlainMessage,
    /// LOGIN sent "Username:".
    LoginUser,
    /// LOGIN sent "Password:" for this user.
    LoginPassword(String),
    /// Done or failed: every further step is refused.
    Over,
}

/// One server-side SASL exchange (RFC 4422 §3). Create it with [`SaslServer::start`]
/// and feed it client lines with [`SaslServer::step`] until it returns
/// [`SaslStep::Done`] or [`SaslStep::Failed`].
pub struct SaslServer {
    mech: Mechanism,
    state: State,
}

impl fmt::Debug for SaslServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The state may hold a user name; keep it out of logs, like the password.
        let state = match self.state {
            State::PlainMessage => "PlainMessage",
            State::LoginUser => "LoginUser",
            State::LoginPassword(_) => "LoginPassword",
            State::Over => "Over",
        };
        f.debug_struct("SaslServer")
            .field("mech", &self.mech)
            .field("state", &state)
            .finish()
    }
}

/// LOGIN's first challenge.
const USERNAME_CHALLENGE: &[u8] = b"Username:";
/// LOGIN's second challenge.
const PASSWORD_CHALLENGE: &[u8] = b"Password:";

impl SaslServer {
    /// Largest decoded response accepted (12 KiB is the floor the project promises for
    /// SASL lines).
    pub const MAX_RESPONSE: usize = 12 * 1024;

    /// Longest base64 line accepted by [`SaslServer::step`]: enough for
    /// [`SaslServer::MAX_RESPONSE`] decoded bytes. Checked before decoding.
    pub const MAX_ENCODED: usize = Self::MAX_RESPONSE * 4 / 3 + 4;

    /// `initial` is the already-decoded initial response (Some(vec![]) for the protocol's
    /// "=" empty one; None when the client sent none).
    ///
    /// PLAIN without an initial response sends an empty challenge (RFC 5034 §4, RFC 4422
    /// §3.3); with one it finishes at once. LOGIN without one asks "Username:"; with a
    /// non-empty one takes it as the user name and asks "Password:".
    pub fn start(mech: Mechanism, initial: Option<Vec<u8>>) -> (Self, SaslStep) {
        let mut server = SaslServer {
            mech,
            state: State::Over,
        };
        let step = match (mech, initial) {
            (_, Some(data)) if data.len() > Self::MAX_RESPONSE => Failed(SaslError::TooLong),
            (Mechanism::Plain, None) => {
                server.state = State::PlainMessage;
                Challenge(Vec::new())
            }
            (Mechanism::Plain, Some(data)) => server.finish(parse_plain(data)),
            (Mechanism::Login, None) => {
                server.state = State::LoginUser;
                Challenge(USERNAME_CHALLENGE.to_vec())
            }
            (Mechanism::Login, Some(data)) => server.login_user(data),
        };
        (server, step)
    }

    /// One client response line as it came off the wire (base64 text, no CRLF). "*"
    /// cancels (SaslStep::Failed(Cancelled)); bad base64 is Failed(Malformed). Calling
    /// step after Done/Failed returns Failed(Malformed("exchange is over")).
    ///
    /// A line longer than [`SaslServer::MAX_ENCODED`] fails with
    /// [`SaslError::TooLong`] without being decoded.
    pub fn step(&mut self, line: &[u8]) -> SaslStep {
        let state = std::mem::replace(&mut self.state, State::Over);
        if matches!(state, State::Over) {
            return Failed(SaslError::Malformed("exchange is over"));
        }
        let data = match decode_response(line) {
            Ok(data) => data,
            Err(e) => return Failed(e),
        };
        match state {
            State::PlainMessage => self.finish(parse_plain(data)),
            State::LoginUser => self.login_user(data),
            State::LoginPassword(user) => self.finish(login_password(user, data)),
            State::Over => Failed(SaslError::Malformed("exchange is over")),
        }
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> Mechanism {
        self.mech
    }

    /// true once the exchange returned [`SaslStep::Done`] or [`SaslStep::Failed`].
    pub fn is_over(&self) -> bool {
        matches!(self.state, State::Over)
    }

    /// Ends the exchange with this outcome.
    fn finish(&mut self, outcome: Result<Credentials, SaslError>) -> SaslStep {
        self.state = State::Over;
        match outcome {
            Ok(creds) => Done(creds),
            Err(e) => Failed(e),
        }
    }

    /// LOGIN received the user name: ask for the password.
    fn login_user(&mut self, data: Vec<u8>) -> SaslStep {
        match login_name(data) {
            Ok(user) => {
                self.state = State::LoginPassword(user);
                Challenge(PASSWORD_CHALLENGE.to_vec())
            }
            Err(e) => self.finish(Err(e)),
        }
    }
}

/// Decodes one client response line as it came off the wire (base64 text, no CRLF),
/// for mechanisms whose exchange is not a [`SaslServer`] (SCRAM) and for initial
/// responses.
///
/// `*` is [`SaslError::Cancelled`] (RFC 4422 §3.5); a line longer than
/// [`SaslServer::MAX_ENCODED`] is [`SaslError::TooLong`] without being decoded, and so
/// is one decoding to more than [`SaslServer::MAX_RESPONSE`] bytes; bad base64 (see
/// the module's alphabet rules) is [`SaslError::Malformed`]. An empty line decodes to
/// an empty response.
pub fn decode_response(line: &[u8]) -> Result<Vec<u8>, SaslError> {
    if line == b"*" {
        return Err(SaslError::Cancelled);
    }
    if line.len() > SaslServer::MAX_ENCODED {
        return Err(SaslError::TooLong);
    }
    let data = B64
        .decode(line)
        .map_err(|_| SaslError::Malformed("invalid base64"))?;
    if data.len() > SaslServer::MAX_RESPONSE {
        return Err(SaslError::TooLong);
    }
    Ok(data)
}

/// Parses a PLAIN message (RFC 4616 §2):
/// `message = [authzid] UTF8NUL authcid UTF8NUL passwd`, every part UTF-8 without NUL,
/// authcid and passwd non-empty.
fn parse_plain(mut data: Vec<u8>) -> Result<Credentials, SaslError> {
    let result = split_plain(&data);
    data.fill(0);
    result
}

/// The work of [`parse_plain`], borrowing so the caller can wipe the buffer afterwards.
fn split_plain(data: &[u8]) -> Result<Credentials, SaslError> {
    let mut parts = data.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(passwd), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed(
            "PLAIN needs exactly [authzid] NUL authcid NUL password",
        ));
    };
    let (authzid, authcid, passwd) = (utf8(authzid)?, utf8(authcid)?, utf8(passwd)?);
    if authcid.is_empty() {
        return Err(SaslError::Malformed("empty authentication identity"));
    }
    if passwd.is_empty() {
        return Err(SaslError::Malformed("empty password"));
    }
    Ok(Credentials {
        authzid: (!authzid.is_empty()).then(|| authzid.to_owned()),
        authcid: authcid.to_owned(),
        password: Secret::new(passwd.to_owned()),
    })
}

/// One PLAIN field as text.
fn utf8(field: &[u8]) -> Result<&str, SaslError> {
    std::str::from_utf8(field).map_err(|_| SaslError::Malformed("PLAIN fields must be UTF-8"))
}

/// LOGIN's user name: non-empty UTF-8 without NUL.
fn login_name(data: Vec<u8>) -> Result<String, SaslError> {
    let name =
        String::from_utf8(data).map_err(|_| SaslError::Malformed("user name must be UTF-8"))?;
    if name.is_empty() {
        return Err(SaslError::Malformed("empty user name"));
    }
    if name.contains('\0') {
        return Err(SaslError::Malformed("NUL in user name"));
    }
    Ok(name)
}

/// LOGIN's password: non-empty UTF-8 without NUL.
fn login_password(user: String, data: Vec<u8>) -> Result<Credentials, SaslError> {
    let password = match String::from_utf8(data) {
        Ok(p) => Secret::new(p),
        Err(e) => {
            let mut bytes = e.into_bytes();
            bytes.fill(0);
            return Err(SaslError::Malformed("password must be UTF-8"));
        }
    };
    if password.expose().is_empty() {
        return Err(SaslError::Malformed("empty password"));
    }
    if password.expose().contains('\0') {
        return Err(SaslError::Malformed("NUL in password"));
    }
    Ok(Credentials {
        authzid: None,
        authcid: user,
        password,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use base64::engine::general_purpose;

    fn enc(b: &[u8]) -> Vec<u8> {
        general_purpose::STANDARD.encode(b).into_bytes()
    }

    fn done(step: SaslStep) -> Credentials {
        match step {
            Done(c) => c,
            other => panic!("expected Done, got {other:?}"),
        }
    }

    fn failed(step: SaslStep) -> SaslError {
        match step {
            Failed(e) => e,
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    #[test]
    fn mechanism_names() {
        assert_eq!(Mechanism::parse("PLAIN"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::parse("plain"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::parse("LoGiN"), Some(Mechanism::Login));
        assert_eq!(Mechanism::parse("CRAM-MD5"), None);
        assert_eq!(Mechanism::parse(""), None);
        assert_eq!(Mechanism::parse("PLAIN "), None);
        assert_eq!(Mechanism::ALL.map(Mechanism::name), ["PLAIN", "LOGIN"]);
        assert_eq!(Mechanism::Login.to_string(), "LOGIN");
    }

    #[test]
    fn plain_with_initial_response() {
        let (s, step) =
            SaslServer::start(Mechanism::Plain, Some(b"\0tim\0tanstaaftanstaaf".to_vec()));
        let c = done(step);
        assert!(s.is_over());
        assert_eq!(c.authzid, None);
        assert_eq!(c.authcid, "tim");
        assert_eq!(c.password.expose(), "tanstaaftanstaaf");
        assert_eq!(c.authorization_identity(), "tim");
    }

    #[test]
    fn plain_without_initial_response_rfc4616_example_1() {
        let (mut s, step) = SaslServer::start(Mechanism::Plain, None);
        match step {
            Challenge(c) => assert!(c.is_empty()),
            other => panic!("{other:?}"),
        }
        assert!(!s.is_over());
        let c = done(s.step(&enc(b"\0tim\0tanstaaftanstaaf")));
        assert_eq!((c.authzid.as_deref(), c.authcid.as_str()), (None, "tim"));
        assert_eq!(c.password.expose(), "tanstaaftanstaaf");
        assert_eq!(
            failed(s.step(&enc(b"\0tim\0x"))),
            SaslError::Malformed("exchange is over")
        );
    }

    #[test]
    fn plain_rfc4616_example_2_reports_authzid() {
        let (_, step) =
            SaslServer::start(Mechanism::Plain, Some(b"Ursel\0Kurt\0xipj3plmq".to_vec()));
        let c = done(step);
        assert_eq!(c.authzid.as_deref(), Some("Ursel"));
        assert_eq!(c.authcid, "Kurt");
        assert_eq!(c.password.expose(), "xipj3plmq");
        assert_eq!(c.authorization_identity(), "Ursel");
    }

    #[test]
    fn plain_authzid_equal_to_authcid() {
        let (_, step) = SaslServer::start(Mechanism::Plain, Some(b"ann@x\0ann@x\0pw".to_vec()));
        let c = done(step);
        assert_eq!(c.authzid.as_deref(), Some("ann@x"));
        assert_eq!(c.authcid, "ann@x");
    }

    #[test]
    fn plain_utf8_fields() {
        let (_, step) = SaslServer::start(
            Mechanism::Plain,
            Some("\0jürgen\0pässwörd".as_bytes().to_vec()),
        );
        let c = done(step);
        assert_eq!(c.authcid, "jürgen");
        assert_eq!(c.password.expose(), "pässwörd");
    }

    #[test]
    fn plain_malformed_messages() {
        for bad in [
            &b""[..],
            b"tim",
            b"\0tim",
            b"tim\0pw",
            b"\0\0pw",
            b"\0tim\0",
            b"\0tim\0pw\0",
            b"\0tim\0pw\0extra",
            b"a\0b\0c\0d",
            b"\0\0\0",
            b"\0ti\xffm\0pw",
            b"\0tim\0p\xc3w",
            b"\xff\0tim\0pw",
        ] {
            let (s, step) = SaslServer::start(Mechanism::Plain, Some(bad.to_vec()));
            assert!(matches!(failed(step), SaslError::Malformed(_)), "{bad:?}");
            assert!(s.is_over());
        }
    }

    #[test]
    fn plain_empty_initial_response_fails() {
        let (_, step) = SaslServer::start(Mechanism::Plain, Some(Vec::new()));
        assert!(matches!(failed(step), SaslError::Malformed(_)));
    }

    #[test]
    fn cancel() {
        let (mut s, _) = SaslServer::start(Mechanism::Plain, None);
        assert_eq!(failed(s.step(b"*")), SaslError::Cancelled);
        assert!(s.is_over());
        assert_eq!(
            failed(s.step(b"*")),
            SaslError::Malformed("exchange is over")
        );

        let (mut s, _) = SaslServer::start(Mechanism::Login, None);
        let _ = s.step(&enc(b"tim"));
        assert_eq!(failed(s.step(b"*")), SaslError::Cancelled);
    }

    #[test]
    fn bad_base64() {
        for bad in [
            &b"!!!!"[..],
            b"AAA=BBBB",
            b"=AAA",
            b"AGZvbwBiYXI= ",
            b" AGZvbwBiYXI=",
            b"AGZvbwBi\r\nYXI=",
            b"AGZvbwBiYXJ=",
            b"A",
            b"\xff\xfe",
            b"=",
        ] {
            let (mut s, _) = SaslServer::start(Mechanism::Plain, None);
            assert_eq!(
                failed(s.step(bad)),
                SaslError::Malformed("invalid base64"),
                "{bad:?}"
            );
            assert!(s.is_over());
        }
    }

    #[test]
    fn unpadded_base64_is_accepted() {
        let (mut s, _) = SaslServer::start(Mechanism::Plain, None);
        // "\0foo\0bar" is AGZvbwBiYXI= with padding.
        let c = done(s.step(b"AGZvbwBiYXI"));
        assert_eq!(c.authcid, "foo");
        assert_eq!(c.password.expose(), "bar");
    }

    #[test]
    fn login_two_steps() {
        let (mut s, step) = SaslServer::start(Mechanism::Login, None);
        match step {
            Challenge(c) => assert_eq!(c, b"Username:"),
            other => panic!("{other:?}"),
        }
        match s.step(&enc(b"tim@example.org")) {
            Challenge(c) => assert_eq!(c, b"Password:"),
            other => panic!("{other:?}"),
        }
        assert!(!s.is_over());
        let c = done(s.step(&enc(b"tanstaaf")));
        assert_eq!(c.authzid, None);
        assert_eq!(c.authcid, "tim@example.org");
        assert_eq!(c.password.expose(), "tanstaaf");
        assert!(s.is_over());
        assert_eq!(
            failed(s.step(&enc(b"x"))),
            SaslError::Malformed("exchange is over")
        );
    }

    #[test]
    fn login_with_initial_user_name() {
        let (mut s, step) = SaslServer::start(Mechanism::Login, Some(b"tim".to_vec()));
        match step {
            Challenge(c) => assert_eq!(c, b"Password:"),
            other => panic!("{other:?}"),
        }
        let c = done(s.step(&enc(b"pw")));
        assert_eq!(c.authcid, "tim");
        assert_eq!(c.password.expose(), "pw");
    }

    #[test]
    fn login_malformed() {
        let (_, step) = SaslServer::start(Mechanism::Login, Some(Vec::new()));
        assert_eq!(failed(step), SaslError::Malformed("empty user name"));

        let (mut s, _) = SaslServer::start(Mechanism::Login, None);
        assert_eq!(failed(s.step(b"")), SaslError::Malformed("empty user name"));

        let (mut s, _) = SaslServer::start(Mechanism::Login, None);
        assert!(matches!(
            failed(s.step(&enc(b"t\xffm"))),
            SaslError::Malformed(_)
        ));

        let (mut s, _) = SaslServer::start(Mechanism::Login, None);
        assert!(matches!(
            failed(s.step(&enc(b"t\0m"))),
            SaslError::Malformed(_)
        ));

        for bad in [&b""[..], b"p\xffw", b"p\0w"] {
            let (mut s, _) = SaslServer::start(Mechanism::Login, Some(b"tim".to_vec()));
            assert!(
                matches!(failed(s.step(&enc(bad))), SaslError::Malformed(_)),
                "{bad:?}"
            );
            assert!(s.is_over());
        }
    }

    #[test]
    fn oversize_response_rejected_before_decoding() {
        // Invalid base64 of excessive length: TooLong, not Malformed, so it was not decoded.
        let (mut s, _) = SaslServer::start(Mechanism::Plain, None);
        let line = vec![b'!'; SaslServer::MAX_ENCODED + 1];
        assert_eq!(failed(s.step(&line)), SaslError::TooLong);
        assert!(s.is_over());

        // Valid base64 of a message over the limit.
        let mut big = b"\0tim\0".to_vec();
        big.resize(SaslServer::MAX_RESPONSE + 3, b'a');
        let (mut s, _) = SaslServer::start(Mechanism::Plain, None);
        assert_eq!(failed(s.step(&enc(&big))), SaslError::TooLong);

        // Within MAX_ENCODED but decoding to just over MAX_RESPONSE.
        big.truncate(SaslServer::MAX_RESPONSE + 1);
        let line = enc(&big);
        assert!(line.len() <= SaslServer::MAX_ENCODED);
        let (mut s, _) = SaslServer::start(Mechanism::Plain, None);
        assert_eq!(failed(s.step(&line)), SaslError::TooLong);

        // Exactly at the limit is fine.
        big.truncate(SaslServer::MAX_RESPONSE);
        let (mut s, _) = SaslServer::start(Mechanism::Plain, None);
        let c = done(s.step(&enc(&big)));
        assert_eq!(c.password.expose().len(), SaslServer::MAX_RESPONSE - 5);

        // Oversize initial response.
        let (s, step) = SaslServer::start(
            Mechanism::Plain,
            Some(vec![b'a'; SaslServer::MAX_RESPONSE + 1]),
        );
        assert_eq!(failed(step), SaslError::TooLong);
        assert!(s.is_over());

        // LOGIN too.
        let (mut s, _) = SaslServer::start(Mechanism::Login, None);
        assert_eq!(
            failed(s.step(&vec![b'A'; SaslServer::MAX_ENCODED + 4])),
            SaslError::TooLong
        );
    }

    #[test]
    fn max_encoded_covers_max_response() {
        let full = enc(&vec![0u8; SaslServer::MAX_RESPONSE]);
        assert!(full.len() <= SaslServer::MAX_ENCODED);
    }

    #[test]
    fn debug_never_shows_password_or_user() {
        let (_, step) = SaslServer::start(Mechanism::Plain, Some(b"\0tim\0hunter2".to_vec()));
        let d = format!("{step:?}");
        assert!(!d.contains("hunter2"), "{d}");
        let (mut s, _) = SaslServer::start(Mechanism::Login, None);
        let _ = s.step(&enc(b"someuser"));
        let d = format!("{s:?}");
        assert!(!d.contains("someuser"), "{d}");
    }
}
