//! One transport with its bounded receive buffer, its output buffer and the idle
//! timeout. Built afresh for every transport, so a swap to TLS starts with an empty
//! receive buffer.
//!
//! Pipelining and memory: [`Conn::read_line`] reads only when no whole line is left,
//! and writes out every buffered reply first; the session also writes once
//! [`FLUSH_AT`] octets are buffered. A client that pipelines 200,000 `NOOP` without
//! reading is answered until TCP pushes back; the session then waits in the write
//! (bounded by the idle timeout) and reads nothing more, holding at most about
//! `FLUSH_AT + READ_CHUNK` octets plus one reply.

use buudien_pop3_proto::{Frame, LineFramer};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes asked from the transport per read; the receive buffer never holds more than
/// the current line limit plus this.
const READ_CHUNK: usize = 4096;

/// Output is written out once this much is buffered, even if more commands are
/// waiting (pipelining batches small replies; big ones go out progressively).
pub(crate) const FLUSH_AT: usize = 64 * 1024;

/// Longest wait for the last words to a client that is going away (the idle-timeout
/// reply, the shutdown).
pub(crate) const FINAL_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the transport can no longer be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    /// The client closed the connection.
    #[error("connection closed by the client")]
    Closed,
    /// The client sent nothing, or took no output, for the idle timeout.
    #[error("idle timeout")]
    Timeout,
    /// The server is stopping.
    #[error("server shutting down")]
    Shutdown,
    /// One over-long line went on past its skip allowance
    /// ([`buudien_pop3_proto::MAX_OVERLONG_SKIP`] octets beyond the line limit): the peer is cut off.
    #[error("endless line")]
    Endless,
    /// The transport failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// One line of input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Input {
    /// A whole line, without its CRLF.
    Line(Vec<u8>),
    /// The line passed the limit; the rest of it will be skipped.
    TooLong,
}

/// Resolves once `stop` turns true; never, if the server dropped the sender without
/// stopping.
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let closed = stop.wait_for(|s| *s).await.is_err();
    if closed {
        std::future::pending::<()>().await;
    }
}

/// A transport with its buffers.
pub(crate) struct Conn<'io, IO> {
    io: &'io mut IO,
    framer: LineFramer,
    inbuf: Vec<u8>,
    chunk: Vec<u8>,
    /// Replies not yet written.
    pub(crate) out: Vec<u8>,
    pub(crate) idle: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl<'io, IO: AsyncRead + AsyncWrite + Unpin> Conn<'io, IO> {
    /// Wraps a transport; `idle` bounds every wait on the client.
    /// `stop` turning true ends a wait for the client with [`ConnError::Shutdown`].
    pub(crate) fn new(
        io: &'io mut IO,
        idle: Duration,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Conn {
            io,
            framer: LineFramer::new(),
            inbuf: Vec::new(),
            chunk: vec![0; READ_CHUNK],
            out: Vec::new(),
            idle,
            stop,
        }
    }

    /// The next line of at most `max` octets (CRLF included). Buffered replies are
    /// written out before waiting for the client, never while complete lines are
    /// still buffered (RFC 2449 §6.6 PIPELINING).
    pub(crate) async fn read_line(&mut self, max: usize) -> Result<Input, ConnError> {
        loop {
            match self.framer.next_frame(&mut self.inbuf, max) {
                Frame::Line(line) => return Ok(Input::Line(line)),
                Frame::TooLong => return Ok(Input::TooLong),
                Frame::Endless => return Err(ConnError::Endless),
                Frame::Incomplete => {}
            }
            self.flush().await?;
            if *self.stop.borrow() {
                return Err(ConnError::Shutdown);
            }
            let read = tokio::time::timeout(self.idle, self.io.read(&mut self.chunk));
            let n = tokio::select! {
                r = read => r.map_err(|_| ConnError::Timeout)??,
                () = stopped(&mut self.stop) => return Err(ConnError::Shutdown),
            };
            if n == 0 {
                return Err(ConnError::Closed);
            }
            self.inbuf
                .extend_from_slice(self.chunk.get(..n).unwrap_or_default());
        }
    }

    /// Writes out the buffered replies.
    pub(crate) async fn flush(&mut self) -> Result<(), ConnError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let write = async {
            self.io.write_all(&self.out).await?;
            self.io.flush().await
        };
        tokio::time::timeout(self.idle, write)
            .await
            .map_err(|_| ConnError::Timeout)??;
        self.out.clear();
        Ok(())
    }

    /// Writes out the buffered replies if there are at least [`FLUSH_AT`] octets.
    pub(crate) async fn flush_if_large(&mut self) -> Result<(), ConnError> {
        if self.out.len() >= FLUSH_AT {
            self.flush().await
        } else {
            Ok(())
        }
    }

    /// Best effort to send what is buffered to a client being dropped: a short wait,
    /// errors ignored.
    pub(crate) async fn flush_final(&mut self) {
        self.idle = self.idle.min(FINAL_WRITE_TIMEOUT);
        let _ = self.flush().await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_then_too_long_then_resync() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let mut conn = Conn::new(
            &mut a,
            Duration::from_secs(5),
            tokio::sync::watch::channel(false).1,
        );
        let mut input = b"STAT\r\nLIST\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'A', 300));
        input.extend_from_slice(b"\r\nNOOP\r\n");
        b.write_all(&input).await.unwrap();
        assert_eq!(
            conn.read_line(255).await.unwrap(),
            Input::Line(b"STAT".to_vec())
        );
        assert_eq!(
            conn.read_line(255).await.unwrap(),
            Input::Line(b"LIST".to_vec())
        );
        assert_eq!(conn.read_line(255).await.unwrap(), Input::TooLong);
        assert_eq!(
            conn.read_line(255).await.unwrap(),
            Input::Line(b"NOOP".to_vec())
        );
        drop(b);
        assert!(matches!(conn.read_line(255).await, Err(ConnError::Closed)));
    }

    #[tokio::test]
    async fn replies_are_flushed_before_waiting() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let mut conn = Conn::new(
            &mut a,
            Duration::from_millis(50),
            tokio::sync::watch::channel(false).1,
        );
        conn.out.extend_from_slice(b"+OK\r\n");
        assert!(matches!(conn.read_line(255).await, Err(ConnError::Timeout)));
        let mut got = [0u8; 5];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"+OK\r\n");
    }
}
