//! Listening sockets.

use socket2::{SockRef, TcpKeepalive};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Keepalive: first probe after 2 minutes idle, then every 30 s, 4 probes, so a dead
/// peer is noticed in about 4 minutes.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(120);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_RETRIES: u32 = 4;

/// A bound listener for one service.
pub struct Listener {
    inner: TcpListener,
    /// The address actually bound (port 0 resolved).
    pub local: SocketAddr,
}

/// Binds `addr` (with SO_REUSEADDR, so a restart does not wait for TIME_WAIT).
pub fn bind(addr: SocketAddr) -> io::Result<Listener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let inner = socket.listen(1024)?;
    let local = inner.local_addr()?;
    Ok(Listener { inner, local })
}

impl Listener {
    /// Accepts the next connection with keepalive and TCP_NODELAY set. Transient
    /// accept errors (out of file descriptors, aborted handshakes) are logged and
    /// retried after a short pause instead of ending the listener.
    pub async fn accept(&self) -> (TcpStream, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    let sock = SockRef::from(&stream);
                    let ka = TcpKeepalive::new()
                        .with_time(KEEPALIVE_IDLE)
                        .with_interval(KEEPALIVE_INTERVAL)
                        .with_retries(KEEPALIVE_RETRIES);
                    if let Err(e) = sock.set_tcp_keepalive(&ka) {
                        tracing::debug!(%peer, "keepalive not set: {e}");
                    }
                    let _ = stream.set_nodelay(true);
                    return (stream, peer);
                }
                Err(e) => {
                    tracing::warn!(local = %self.local, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_and_accepts() -> io::Result<()> {
        let l = bind("127.0.0.1:0".parse().map_err(io::Error::other)?)?;
        assert_ne!(l.local.port(), 0);
        let c = TcpStream::connect(l.local).await?;
        let (s, peer) = l.accept().await;
        assert_eq!(peer, c.local_addr()?);
        assert!(SockRef::from(&s).keepalive()?);
        Ok(())
    }
}
