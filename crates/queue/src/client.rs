//! The SMTP client connection (RFC 5321 §4): bounded reply reading, EHLO
//! capabilities, STARTTLS (RFC 3207) with opportunistic certificate handling.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_rustls::TlsConnector;

/// A reply line longer than this is an error (RFC 5321 §4.5.3.1.5 allows 512).
const MAX_REPLY_LINE: usize = 4096;
/// A reply with more lines than this is an error.
const MAX_REPLY_LINES: usize = 128;

/// Any byte stream a session can run on (TCP, TLS over TCP).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Why the conversation broke off (the recipients are then deferred, or the next
/// host is tried).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// Reading or writing failed, or the peer closed the connection.
    #[error("{0}")]
    Io(String),
    /// No reply in time.
    #[error("timeout {0}")]
    Timeout(&'static str),
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ClientError::Io("connection closed by the server".into())
        } else {
            ClientError::Io(e.to_string())
        }
    }
}

/// One SMTP reply (RFC 5321 §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text of each line, without the code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    /// 2 (success), 3 (intermediate), 4 (temporary), 5 (permanent).
    pub fn class(&self) -> u16 {
        self.code / 100
    }

    /// The reply on one line: `550 5.1.1 no such user`.
    pub fn one_line(&self) -> String {
        let text = self
            .lines
            .iter()
            .map(|l| l.trim())
            .collect::<Vec<_>>()
            .join(" ");
        if text.is_empty() {
            self.code.to_string()
        } else {
            format!("{} {}", self.code, text)
        }
    }
}

/// What the server said it supports in its EHLO reply (RFC 5321 §4.1.1.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// PIPELINING (RFC 2920).
    pub pipelining: bool,
    /// SIZE (RFC 1870), with the limit; `Some(0)` means no fixed limit.
    pub size: Option<u64>,
    /// 8BITMIME (RFC 6152).
    pub eight_bit: bool,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// DSN (RFC 3461).
    pub dsn: bool,
    /// STARTTLS (RFC 3207).
    pub starttls: bool,
    /// AUTH mechanisms (RFC 4954), upper case.
    pub auth: Vec<String>,
}

impl Capabilities {
    /// Reads the EHLO reply's lines after the first (the greeting line).
    pub fn parse(reply: &Reply) -> Capabilities {
        let mut c = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(kw) = words.next() else { continue };
            match kw.to_ascii_uppercase().as_str() {
                "PIPELINING" => c.pipelining = true,
                "SIZE" => c.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "8BITMIME" => c.eight_bit = true,
                "SMTPUTF8" => c.smtputf8 = true,
                "DSN" => c.dsn = true,
                "STARTTLS" => c.starttls = true,
                "AUTH" => c.auth = words.map(|w| w.to_ascii_uppercase()).collect(),
                _ => {}
            }
        }
        c
    }
}

/// An SMTP client connection.
pub struct Client {
    io: BufReader<Box<dyn Stream>>,
    tls: bool,
}

impl Client {
    /// Wraps a connected stream (`tls` when it is already encrypted).
    pub fn new(stream: Box<dyn Stream>, tls: bool) -> Client {
        Client {
            io: BufReader::new(stream),
            tls,
        }
    }

    /// True once the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Reads one reply within `limit`.
    pub async fn reply(
        &mut self,
        limit: Duration,
        stage: &'static str,
    ) -> Result<Reply, ClientError> {
        tokio::time::timeout(limit, self.read_reply())
            .await
            .map_err(|_| ClientError::Timeout(stage))?
    }

    async fn read_reply(&mut self) -> Result<Reply, ClientError> {
        let mut lines = Vec::new();
        let mut code = None;
        loop {
            let raw = self.read_line().await?;
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\r', '\n']);
            let digits = line
                .get(..3)
                .filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
            let Some(n) = digits.and_then(|d| d.parse::<u16>().ok()) else {
                return Err(ClientError::Protocol(format!("bad reply line {line:?}")));
            };
            if !(200..600).contains(&n) {
                return Err(ClientError::Protocol(format!("bad reply code {n}")));
            }
            if code.is_some_and(|c| c != n) {
                return Err(ClientError::Protocol(
                    "reply code changed within a reply".into(),
                ));
            }
            code = Some(n);
            let sep = line.as_bytes().get(3).copied();
            if !matches!(sep, None | Some(b' ' | b'-')) {
                return Err(ClientError::Protocol(format!("bad reply line {line:?}")));
            }
            lines.push(line.get(4..).unwrap_or_default().to_string());
            if sep != Some(b'-') {
                return Ok(Reply { code: n, lines });
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(ClientError::Protocol("reply has too many lines".into()));
            }
        }
    }

    /// One line, at most [`MAX_REPLY_LINE`] octets, ending in LF.
    async fn read_line(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut out = Vec::new();
        loop {
            let buf = self.io.fill_buf().await?;
            if buf.is_empty() {
                return Err(ClientError::Io("connection closed by the server".into()));
            }
            let (take, done) = match buf.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            out.extend_from_slice(buf.get(..take).unwrap_or_default());
            self.io.consume(take);
            if out.len() > MAX_REPLY_LINE {
                return Err(ClientError::Protocol("reply line too long".into()));
            }
            if done {
                return Ok(out);
            }
        }
    }

    /// Writes bytes and flushes within `limit`.
    pub async fn send(
        &mut self,
        bytes: &[u8],
        limit: Duration,
        stage: &'static str,
    ) -> Result<(), ClientError> {
        let io = self.io.get_mut();
        tokio::time::timeout(limit, async {
            io.write_all(bytes).await?;
            io.flush().await
        })
        .await
        .map_err(|_| ClientError::Timeout(stage))?
        .map_err(ClientError::from)
    }

    /// Sends a command line (CRLF added) and reads its reply.
    pub async fn command(
        &mut self,
        line: &str,
        limit: Duration,
        stage: &'static str,
    ) -> Result<Reply, ClientError> {
        self.send(format!("{line}\r\n").as_bytes(), limit, stage)
            .await?;
        self.reply(limit, stage).await
    }

    /// Writes `data` in blocks, each within `block` (RFC 5321 §4.5.3.2.5).
    pub async fn send_data(&mut self, data: &[u8], block: Duration) -> Result<(), ClientError> {
        for chunk in data.chunks(64 * 1024) {
            self.send(chunk, block, "sending data").await?;
        }
        Ok(())
    }

    /// Runs the TLS handshake after the server's `220` to STARTTLS (RFC 3207 §4.2).
    /// Anything the server sent after that reply was not protected and is refused.
    pub async fn starttls(
        self,
        connector: &TlsConnector,
        name: ServerName<'static>,
        limit: Duration,
    ) -> Result<Client, ClientError> {
        if !self.io.buffer().is_empty() {
            return Err(ClientError::Protocol(
                "the server sent data before the TLS handshake".into(),
            ));
        }
        let stream = self.io.into_inner();
        let tls = tokio::time::timeout(limit, connector.connect(name, stream))
            .await
            .map_err(|_| ClientError::Timeout("in the TLS handshake"))?
            .map_err(|e| ClientError::Io(format!("TLS handshake failed: {e}")))?;
        Ok(Client::new(Box::new(tls), true))
    }
}

/// The TLS client used for every outbound connection: certificates are not checked
/// (opportunistic TLS, like Postfix's `may` level, RFC 7435), but handshake
/// signatures are, so the session is still encrypted to whoever holds the key.
pub fn tls_connector() -> Result<TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Accepts any certificate; checks handshake signatures with the provider's
/// algorithms.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn replies(server_bytes: &[u8]) -> Vec<Result<Reply, ClientError>> {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        b.write_all(server_bytes).await.unwrap();
        drop(b);
        let mut c = Client::new(Box::new(a), false);
        let mut out = Vec::new();
        loop {
            let r = c.reply(Duration::from_secs(1), "test").await;
            let stop = r.is_err();
            out.push(r);
            if stop {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn multiline_replies_and_capabilities() {
        let got = replies(
            b"220 mx ESMTP\r\n250-mx hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-DSN\r\n250-AUTH PLAIN login\r\n250 STARTTLS\r\n",
        )
        .await;
        let ehlo = got[1].as_ref().unwrap();
        assert_eq!(ehlo.code, 250);
        let c = Capabilities::parse(ehlo);
        assert!(c.pipelining && c.eight_bit && c.dsn && c.starttls && !c.smtputf8);
        assert_eq!(c.size, Some(1000));
        assert_eq!(c.auth, vec!["PLAIN".to_string(), "LOGIN".to_string()]);
        assert_eq!(got[0].as_ref().unwrap().one_line(), "220 mx ESMTP");
        assert!(matches!(got[2], Err(ClientError::Io(_))), "EOF");
    }

    #[tokio::test]
    async fn bad_replies_are_errors() {
        for bad in [
            &b"hello\r\n"[..],
            b"2500 x\r\n",
            b"250-a\r\n550 b\r\n",
            b"999 x\r\n",
        ] {
            let got = replies(bad).await;
            assert!(
                matches!(got[0], Err(ClientError::Protocol(_))),
                "{bad:?}: {got:?}"
            );
        }
        let long = format!("250 {}\r\n", "x".repeat(MAX_REPLY_LINE));
        assert!(matches!(
            replies(long.as_bytes()).await[0],
            Err(ClientError::Protocol(_))
        ));
        let got = replies(b"250\r\n").await;
        assert_eq!(got[0].as_ref().unwrap().one_line(), "250");
    }
}
