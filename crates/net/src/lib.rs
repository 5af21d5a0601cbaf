//! The network edge shared by every protocol: TCP listeners with keepalive, the TLS
//! certificate (loaded from PEM, reloadable on SIGHUP), and the connection tracker
//! that lets `serve` stop gracefully.
//!
//! # Layout
//! - [`tls`]: [`TlsProvider`], PEM loading and hot reload.
//! - [`listen`]: binding listeners, accepting with keepalive, per-connection tasks.
//! - [`tracker`]: [`ConnTracker`], counting live connections for graceful shutdown.
//! - [`limit`]: [`ConnLimiter`], connections in total and per client address (IPv6
//!   per /64), checked at accept; it raises the shared `Load` flag near the limit.
//!
//! # Invariants
//! - Every accepted socket has TCP keepalive on, so a peer that vanished is noticed
//!   (and its session, with any maildrop lock, ends) within minutes.
//! - A TLS reload that fails keeps the old certificate; handshakes never see a
//!   half-loaded configuration.
//! - An accept error (for example EMFILE) never ends a listener; it pauses briefly.

#![forbid(unsafe_code)]

pub mod limit;
pub mod listen;
pub mod tls;
pub mod tracker;

pub use limit::{ConnLimiter, ConnPermit, IpKey, Refused, STRESS_PERCENT};
pub use listen::{Listener, bind};
pub use tls::{TlsError, TlsProvider};
pub use tokio_rustls::TlsAcceptor;
pub use tracker::{ConnToken, ConnTracker};
