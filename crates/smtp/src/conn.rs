//! One transport with its bounded receive buffer, its output buffer and the
//! RFC 5321 §4.5.3.2 timeouts. Built afresh for every transport, so a swap to TLS
//! starts with an empty receive buffer (RFC 3207 §4.2).
//!
//! Pipelining and memory (RFC 2920 §3.1): [`Conn::read_line`] reads only when no whole
//! line is left, and writes out every buffered reply first; the session also writes
//! once [`FLUSH_AT`] octets are buffered. A client that pipelines 200,000 commands
//! without reading is answered until TCP pushes back; the session then waits in the
//! write (bounded by the command timeout) and reads nothing more, holding at most
//! about `FLUSH_AT + READ_CHUNK` octets plus one reply (and NOOP, RSET and the like
//! end the session after `max_junk_commands`).

use buudien_smtp_proto::{BdatReceiver, DataReceiver, DataStatus, Frame, LineFramer};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes asked from the transport per read; the receive buffer never holds more than
/// the current line limit plus this.
const READ_CHUNK: usize = 16 * 1024;

/// Replies are written out once this much is buffered, even if more pipelined
/// commands are waiting (RFC 2920 §3.1 lets the server send replies at any time).
pub(crate) const FLUSH_AT: usize = 64 * 1024;

/// Longest wait for the last words to a client that is going away (the timeout
/// reply, the shutdown).
pub(crate) const FINAL_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the transport can no longer be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    /// The client closed the connection.
    #[error("connection closed by the client")]
    Closed,
    /// The client sent nothing, or took no output, for the timeout.
    #[error("timeout")]
    Timeout,
    /// The server is stopping.
    #[error("server shutting down")]
    Shutdown,
    /// One over-long line went on past its skip allowance
    /// ([`buudien_smtp_proto::MAX_OVERLONG_SKIP`] octets beyond the line limit): the peer is cut off.
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
    /// Wait for a command, or for the client to take a reply.
    pub(crate) idle: Duration,
    /// Wait for more message data.
    data_idle: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl<'io, IO: AsyncRead + AsyncWrite + Unpin> Conn<'io, IO> {
    /// Wraps a transport. `idle` bounds waits for commands and writes, `data_idle`
    /// waits for message data; `stop` turning true ends a wait for a command with
    /// [`ConnError::Shutdown`] (never a wait for data: a message being sent finishes).
    pub(crate) fn new(
        io: &'io mut IO,
        idle: Duration,
        data_idle: Duration,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Conn {
            io,
            framer: LineFramer::new(),
            inbuf: Vec::new(),
            chunk: vec![0; READ_CHUNK],
            out: Vec::new(),
            idle,
            data_idle,
            stop,
        }
    }

    /// True when client bytes are waiting in the receive buffer (pipelining).
    pub(crate) fn has_buffered_input(&self) -> bool {
        !self.inbuf.is_empty()
    }

    /// The next line of at most `max` octets (CRLF included). Buffered replies are
    /// written out before waiting for the client, never while complete lines are
    /// still buffered (RFC 2920 §3.1: replies to a pipelined group may go together).
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

    /// Reads message data through `rx` into `msg` up to `<CRLF>.<CRLF>`; bytes after
    /// the terminator stay buffered for the next command. Returns early, without the
    /// terminator, once `rx` [is absurd](DataReceiver::is_absurd).
    pub(crate) async fn read_data(
        &mut self,
        rx: &mut DataReceiver,
        msg: &mut Vec<u8>,
    ) -> Result<(), ConnError> {
        if !self.inbuf.is_empty() {
            match rx.feed(&self.inbuf, msg) {
                DataStatus::Done { consumed } => {
                    self.inbuf.drain(..consumed.min(self.inbuf.len()));
                    return Ok(());
                }
                DataStatus::More => self.inbuf.clear(),
            }
        }
        loop {
            if rx.is_absurd() {
                return Ok(());
            }
            let n = self.read_more_data().await?;
            let got = self.chunk.get(..n).unwrap_or_default();
            if let DataStatus::Done { consumed } = rx.feed(got, msg) {
                self.inbuf
                    .extend_from_slice(got.get(consumed..).unwrap_or_default());
                return Ok(());
            }
        }
    }

    /// Reads one BDAT chunk through `rx` (stored into `msg` or discarded, as `rx`
    /// says); bytes after the chunk stay buffered for the next command.
    pub(crate) async fn read_chunk(
        &mut self,
        rx: &mut BdatReceiver,
        msg: &mut Vec<u8>,
    ) -> Result<(), ConnError> {
        let used = rx.feed(&self.inbuf, msg);
        self.inbuf.drain(..used.min(self.inbuf.len()));
        while !rx.is_done() {
            let n = self.read_more_data().await?;
            let got = self.chunk.get(..n).unwrap_or_default();
            let used = rx.feed(got, msg);
            self.inbuf
                .extend_from_slice(got.get(used..).unwrap_or_default());
        }
        Ok(())
    }

    /// One read of message data into `self.chunk` (after writing out what is
    /// buffered, such as the `354`); the number of bytes read.
    async fn read_more_data(&mut self) -> Result<usize, ConnError> {
        self.flush().await?;
        let n = tokio::time::timeout(self.data_idle, self.io.read(&mut self.chunk))
            .await
            .map_err(|_| ConnError::Timeout)??;
        if n == 0 {
            return Err(ConnError::Closed);
        }
        Ok(n)
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

    fn conn(io: &mut tokio::io::DuplexStream) -> Conn<'_, tokio::io::DuplexStream> {
        Conn::new(
            io,
            Duration::from_secs(5),
            Duration::from_secs(5),
            tokio::sync::watch::channel(false).1,
        )
    }

    #[tokio::test]
    async fn lines_then_too_long_then_resync() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let mut c = conn(&mut a);
        let mut input = b"EHLO x\r\nNOOP\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'A', 3000));
        input.extend_from_slice(b"\r\nQUIT\r\n");
        b.write_all(&input).await.unwrap();
        assert_eq!(
            c.read_line(2048).await.unwrap(),
            Input::Line(b"EHLO x".to_vec())
        );
        assert_eq!(
            c.read_line(2048).await.unwrap(),
            Input::Line(b"NOOP".to_vec())
        );
        assert_eq!(c.read_line(2048).await.unwrap(), Input::TooLong);
        assert_eq!(
            c.read_line(2048).await.unwrap(),
            Input::Line(b"QUIT".to_vec())
        );
        drop(b);
        assert!(matches!(c.read_line(2048).await, Err(ConnError::Closed)));
    }

    #[tokio::test]
    async fn data_then_pipelined_command() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let mut c = conn(&mut a);
        b.write_all(b"DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n")
            .await
            .unwrap();
        assert_eq!(
            c.read_line(2048).await.unwrap(),
            Input::Line(b"DATA".to_vec())
        );
        let mut rx = DataReceiver::new(1000);
        let mut msg = Vec::new();
        c.read_data(&mut rx, &mut msg).await.unwrap();
        assert_eq!(msg, b"Subject: x\r\n\r\nhi\r\n");
        assert_eq!(
            c.read_line(2048).await.unwrap(),
            Input::Line(b"QUIT".to_vec())
        );
    }

    #[tokio::test]
    async fn chunk_across_reads() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let mut c = conn(&mut a);
        b.write_all(b"BDAT 10\r\n12345").await.unwrap();
        assert!(matches!(c.read_line(2048).await.unwrap(), Input::Line(_)));
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            b.write_all(b"67890RSET\r\n").await.unwrap();
            b
        });
        let mut rx = BdatReceiver::new(10, true);
        let mut msg = Vec::new();
        c.read_chunk(&mut rx, &mut msg).await.unwrap();
        assert_eq!(msg, b"1234567890");
        assert_eq!(
            c.read_line(2048).await.unwrap(),
            Input::Line(b"RSET".to_vec())
        );
        drop(task.await.unwrap());
    }

    #[tokio::test]
    async fn replies_are_flushed_before_waiting() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let mut c = Conn::new(
            &mut a,
            Duration::from_millis(50),
            Duration::from_millis(50),
            tokio::sync::watch::channel(false).1,
        );
        c.out.extend_from_slice(b"250 ok\r\n");
        assert!(matches!(c.read_line(512).await, Err(ConnError::Timeout)));
        let mut got = [0u8; 8];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"250 ok\r\n");
    }
}
