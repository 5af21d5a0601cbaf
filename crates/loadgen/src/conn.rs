//! Line-oriented connections shared by the protocol clients: bounded line reads,
//! exact-length reads for literals and message bodies, and connecting from a chosen
//! source address.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

/// The longest protocol line accepted from a server (64 KiB).
pub const MAX_LINE: usize = 64 * 1024;
/// The largest literal or message accepted from a server (256 MiB).
pub const MAX_LITERAL: usize = 256 * 1024 * 1024;
/// How long one read or write may wait before the operation counts as an error.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// A buffered connection to a server, generic over the stream so tests can use
/// `tokio::io::duplex`.
pub struct Conn<S> {
    inner: BufReader<S>,
    /// Bytes read from the server so far.
    pub bytes_in: u64,
}

/// Connects to `addr`, from `source` when given (any port).
pub async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<Conn<TcpStream>> {
    let fut = async {
        let stream = match source {
            None => TcpStream::connect(addr).await?,
            Some(ip) => {
                let sock = if ip.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                sock.bind(SocketAddr::new(ip, 0))?;
                sock.connect(addr).await?
            }
        };
        stream.set_nodelay(true)?;
        Ok::<_, io::Error>(stream)
    };
    let stream = tokio::time::timeout(IO_TIMEOUT, fut)
        .await
        .map_err(|_| timeout_err())??;
    Ok(Conn::new(stream))
}

fn timeout_err() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "server did not answer in time")
}

/// The error for a connection the server closed mid-reply.
fn closed_err() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "server closed")
}

/// An error for a reply the client did not expect.
pub fn protocol_err(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Wraps a stream.
    pub fn new(stream: S) -> Self {
        Conn {
            inner: BufReader::with_capacity(64 * 1024, stream),
            bytes_in: 0,
        }
    }

    /// Reads one line including its CRLF (or LF); an error at EOF or past `MAX_LINE`.
    pub async fn line(&mut self) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        let fut = async {
            loop {
                let avail = self.inner.fill_buf().await?;
                if avail.is_empty() {
                    return Err(closed_err());
                }
                let (take, done) = match avail.iter().position(|&b| b == b'\n') {
                    Some(i) => (i + 1, true),
                    None => (avail.len(), false),
                };
                buf.extend_from_slice(avail.get(..take).unwrap_or_default());
                self.inner.consume(take);
                if done {
                    return Ok(());
                }
                if buf.len() > MAX_LINE {
                    return Err(protocol_err("line longer than 64 KiB"));
                }
            }
        };
        tokio::time::timeout(IO_TIMEOUT, fut)
            .await
            .map_err(|_| timeout_err())??;
        self.bytes_in += buf.len() as u64;
        Ok(buf)
    }

    /// Reads a multi-line body (RFC 1939 §3: POP3's RETR, UIDL, LIST) up to and
    /// including its terminating `.` line, throwing it away as it streams by: one
    /// scan for line ends (memchr), no copy and no timer per line, so the client
    /// costs little beside the server it measures. Returns the lines and their
    /// octets, terminator excluded. An error past [`MAX_LITERAL`] octets.
    pub async fn dot_body(&mut self) -> io::Result<(u64, u64)> {
        /// Not at the start of a line.
        const MID: usize = usize::MAX;
        const END: &[u8] = b".\r\n";
        let fut = async {
            let (mut lines, mut bytes) = (0u64, 0u64);
            // How much of `END` the current line has matched from its start.
            let mut at = 0usize;
            loop {
                let avail = self.inner.fill_buf().await?;
                if avail.is_empty() {
                    return Err(closed_err());
                }
                let mut i = 0;
                let mut end = None;
                while i < avail.len() {
                    if at != MID {
                        let b = avail.get(i).copied();
                        if b == END.get(at).copied() {
                            at += 1;
                            i += 1;
                            if at == END.len() {
                                end = Some((i, END.len()));
                                break;
                            }
                            continue;
                        }
                        if at == 1 && b == Some(b'\n') {
                            end = Some((i + 1, 2));
                            break;
                        }
                        at = MID;
                    }
                    match memchr::memchr(b'\n', avail.get(i..).unwrap_or_default()) {
                        Some(p) => {
                            i += p + 1;
                            lines += 1;
                            at = 0;
                        }
                        None => i = avail.len(),
                    }
                }
                let (took, term) = end.unwrap_or((avail.len(), 0));
                self.inner.consume(took);
                self.bytes_in += took as u64;
                bytes += took as u64;
                if end.is_some() {
                    // The terminator's octets may have come in an earlier read.
                    return Ok((lines, bytes.saturating_sub(term as u64)));
                }
                if bytes > MAX_LITERAL as u64 {
                    return Err(protocol_err("multi-line reply larger than 256 MiB"));
                }
            }
        };
        tokio::time::timeout(IO_TIMEOUT, fut)
            .await
            .map_err(|_| timeout_err())?
    }

    /// Reads exactly `n` bytes and throws them away (message bodies are counted,
    /// not kept).
    pub async fn skip(&mut self, n: usize) -> io::Result<()> {
        if n > MAX_LITERAL {
            return Err(protocol_err("literal larger than 256 MiB"));
        }
        let fut = async {
            let mut left = n;
            while left > 0 {
                let avail = self.inner.fill_buf().await?;
                if avail.is_empty() {
                    return Err(closed_err());
                }
                let take = avail.len().min(left);
                self.inner.consume(take);
                left -= take;
            }
            Ok(())
        };
        tokio::time::timeout(IO_TIMEOUT, fut)
            .await
            .map_err(|_| timeout_err())??;
        self.bytes_in += n as u64;
        Ok(())
    }

    /// Writes all of `data` and flushes.
    pub async fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let fut = async {
            let s = self.inner.get_mut();
            s.write_all(data).await?;
            s.flush().await
        };
        tokio::time::timeout(IO_TIMEOUT, fut)
            .await
            .map_err(|_| timeout_err())?
    }

    /// Reads one byte if any arrives within `wait` (used to check a quiet line).
    pub async fn read_some(&mut self, wait: Duration) -> io::Result<usize> {
        let mut b = [0u8; 512];
        match tokio::time::timeout(wait, self.inner.read(&mut b)).await {
            Ok(r) => r,
            Err(_) => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_lines_and_skips_exact_counts() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut c = Conn::new(a);
        b.write_all(b"+OK hi\r\nabcdefXY\r\nlast").await.unwrap();
        assert_eq!(c.line().await.unwrap(), b"+OK hi\r\n");
        c.skip(6).await.unwrap();
        assert_eq!(c.line().await.unwrap(), b"XY\r\n");
        drop(b);
        assert!(c.line().await.is_err(), "a line cut by EOF is an error");
        assert_eq!(c.bytes_in, 18, "8 + 6 + 4 bytes read before EOF");
    }

    #[tokio::test]
    async fn refuses_overlong_lines() {
        let (a, mut b) = tokio::io::duplex(MAX_LINE * 2 + 100);
        let mut c = Conn::new(a);
        b.write_all(&vec![b'x'; MAX_LINE + 10]).await.unwrap();
        let err = c.line().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
