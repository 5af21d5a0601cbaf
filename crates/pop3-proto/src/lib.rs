//! POP3 wire format: commands in, responses out. Pure bytes, no I/O (RFC 1939, RFC 2449,
//! RFC 2595, RFC 5034, RFC 6856).
//!
//! # Layout
//! - [`framing`]: splits the input stream into bounded command lines ([`LineFramer`]).
//! - [`command`]: parses one line into a [`Command`] (RFC 1939 §3 syntax).
//! - [`response`]: writes `+OK`/`-ERR` status lines with RFC 2449 response codes, SASL
//!   continuations, and the dot-stuffed multi-line body ([`DotStuffer`]).
//!
//! # Invariants
//! - Nothing here allocates more than the caller's line limit plus one read: a line that
//!   passes the limit is reported as [`Frame::TooLong`] and skipped up to its end.
//! - Parsing never panics; every refusal is a [`ParseError`] whose text is fit for `-ERR`.
//! - A multi-line body written through [`DotStuffer`] ends `CRLF.CRLF` whatever its last
//!   bytes were, and every line starting with `.` has it doubled (RFC 1939 §3).

#![forbid(unsafe_code)]

pub mod command;
pub mod framing;
pub mod response;

pub use command::{Command, ParseError};
pub use framing::{Frame, LineFramer, MAX_OVERLONG_SKIP};
pub use response::{DotStuffer, RespCode};

/// Longest command line, CRLF included (RFC 2449 §4).
pub const MAX_COMMAND_LINE: usize = 255;

/// Longest SASL response line, CRLF included (RFC 5034 §4 lifts the 255 limit for them).
pub const MAX_SASL_LINE: usize = 16 * 1024 + 2;
