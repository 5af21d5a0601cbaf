//! SMTP wire format for buudien: commands in, replies out, message data through
//! bounded receivers. Pure bytes, no I/O, no async runtime (RFC 5321, with RFC 1870
//! SIZE, RFC 2034 enhanced status codes, RFC 3030 CHUNKING, RFC 3207 STARTTLS,
//! RFC 3461 DSN, RFC 3463, RFC 4954 AUTH, RFC 6152 8BITMIME, RFC 6531 SMTPUTF8).
//!
//! # Layout
//! - [`framing`]: cuts the input stream into bounded command lines ([`LineFramer`]).
//! - [`command`]: one line → [`Command`], or a [`ParseError`] whose [`ErrorKind`]
//!   picks the reply (`500`/`501`/`502`/`555`).
//! - [`path`]: reverse- and forward-paths (RFC 5321 §4.1.2): null sender, quoted
//!   local parts, address literals, source routes, UTF-8.
//! - [`params`]: MAIL/RCPT parameters and xtext (RFC 3461 §4).
//! - [`reply`]: reply codes ([`reply::code`]), enhanced status codes ([`Status`]) and
//!   the reply writer.
//! - [`data`]: [`DataReceiver`], streaming dot-unstuffing that ends only on
//!   `<CRLF>.<CRLF>`.
//! - [`bdat`]: [`BdatReceiver`], exactly-N-octet chunks, and [`check_chunk`].
//!
//! # Invariants
//! - Nothing here panics on input: no `unwrap`, `expect` or slice indexing reachable
//!   from client bytes; every refusal is a value.
//! - Every buffer is bounded by the caller's limits: a command line by the line limit
//!   plus one read ([`Frame::TooLong`] is reported once and the line skipped), a DATA
//!   message by `max_size` (counted past it, never stored past it), a BDAT chunk by its
//!   announced size, which [`check_chunk`] bounds before any byte is read.
//! - DATA ends only on `<CRLF>.<CRLF>`: no other combination of CR, LF and `.` ends
//!   it, whatever the chunking (the SMTP smuggling class, CVE-2023-51764); bare CR and
//!   LF are flagged for the session to refuse ([`has_bare_newline`] checks a whole
//!   BDAT message the same way).
//! - BDAT chunk content is never interpreted, and a refused chunk is still consumed
//!   exactly, so the command stream stays in step with the client.
//! - Reply text never carries a control character and no reply line is longer than
//!   512 octets, so client-supplied strings cannot forge a reply.

#![forbid(unsafe_code)]

pub mod bdat;
pub mod command;
pub mod data;
pub mod framing;
pub mod params;
pub mod path;
pub mod reply;

pub use bdat::{BdatReceiver, ChunkCheck, check_chunk};
pub use command::{Command, ErrorKind, ParseError};
pub use data::{DataReceiver, DataStatus, has_bare_newline};
pub use framing::{Frame, LineFramer, MAX_OVERLONG_SKIP};
pub use params::{Body, MailParams, Notify, ParamError, RcptParams, Ret};
pub use path::{ForwardPath, Host, Mailbox, Path, PathError, ReversePath};
pub use reply::{Status, code};

/// Default longest command line, CRLF included. RFC 5321 §4.5.3.1.4 sets 512 as the
/// minimum; DSN parameters (RFC 3461 §5) need more, so buudien takes 2048.
pub const DEFAULT_MAX_COMMAND_LINE: usize = 2048;

/// Smallest command-line limit a configuration may set (RFC 5321 §4.5.3.1.4).
pub const MIN_COMMAND_LINE: usize = 512;
