//! IMAP wire format for buudien: commands in, responses out. Pure bytes, no I/O, no
//! async runtime. IMAP4rev2 (RFC 9051) with IMAP4rev1 (RFC 3501) compatibility and
//! the extensions buudien offers: LITERAL- / LITERAL+ (RFC 7888), SASL-IR (RFC 4959),
//! ENABLE (RFC 5161), IDLE (RFC 2177), NAMESPACE (RFC 2342), UNSELECT, UIDPLUS
//! (RFC 4315), MOVE (RFC 6851), ID (RFC 2971), LIST-EXTENDED (RFC 5258), LIST-STATUS
//! (RFC 5819), SPECIAL-USE (RFC 6154), ESEARCH (RFC 4731), SEARCHRES (RFC 5182),
//! CONDSTORE / QRESYNC (RFC 7162), BINARY (RFC 3516), MULTIAPPEND (RFC 3502),
//! APPENDLIMIT (RFC 7889), UTF8=ACCEPT (RFC 6855), QUOTA (RFC 9208).
//!
//! # Layout
//! - [`framing`]: [`CommandFramer`] assembles a command from the receive buffer across
//!   lines and literals, announcing each literal before taking it ([`Event`]), and
//!   reads plain lines for SASL and IDLE ([`CommandFramer::next_line`]).
//! - [`parse`]: [`parse_command`], the dispatch on the command name (RFC 9051 §9
//!   `command`) and the small commands; `cursor` (private) holds the terminals
//!   (atom, astring, quoted, literal, number...).
//! - [`command`]: the typed [`Command`] and [`Request`], [`Tag`].
//! - [`search`], [`fetch`], [`list`], [`append`]: the grammars and argument types of
//!   SEARCH, FETCH, LIST/LSUB/STATUS and APPEND.
//! - [`sequence`]: [`SequenceSet`], kept as ranges, and its compaction for responses.
//! - [`mailbox`], [`utf7`], [`flag`], [`datetime`]: mailbox names (modified UTF-7 or
//!   UTF-8), flags, dates.
//! - [`string`]: [`TextMode`] and the string writers (atom / quoted / literal /
//!   literal8).
//! - [`response`]: status responses with every response code, continuation requests,
//!   untagged data and [`FetchResponse`].
//! - [`error`]: [`CommandError`] and its [`ErrorKind`], which pick `BAD` or `NO` and
//!   the response code.
//!
//! # Use
//! ```
//! use buudien_imap_proto::{
//!     Command, CommandFramer, Event, Limits, LiteralMode, Status, TextMode, response,
//! };
//!
//! let mut framer = CommandFramer::new(Limits::default(), TextMode::Ascii);
//! let mut rx = b"a1 APPEND INBOX (\\Seen) {11}\r\n".to_vec(); // what the socket gave
//! let mut tx = Vec::new(); // what goes back
//! let mut message = Vec::new(); // stands for a temporary blob
//! loop {
//!     match framer.next_event(&mut rx) {
//!         Event::Incomplete => {
//!             if rx.is_empty() && tx.ends_with(b"+ Ready\r\n") && message.is_empty() {
//!                 rx.extend_from_slice(b"Hello world\r\n"); // the client sends the literal
//!                 continue;
//!             }
//!             break; // read more from the socket
//!         }
//!         Event::Literal(info) => {
//!             // Check APPENDLIMIT here; `framer.reject_literal()` + `NO [TOOBIG]` if over.
//!             let how = if info.append.is_some() { LiteralMode::Stream } else { LiteralMode::Buffer };
//!             match framer.accept_literal(how) {
//!                 Ok(()) if info.sync => response::continuation(&mut tx, "Ready"),
//!                 Ok(()) => {}
//!                 Err(e) => e.write_response(&mut tx),
//!             }
//!         }
//!         Event::LiteralChunk(bytes) => message.extend_from_slice(&bytes),
//!         Event::LiteralEnd => { /* fsync the temporary blob */ }
//!         Event::Command(req) => {
//!             assert!(matches!(req.command, Command::Append { .. }));
//!             response::tagged(&mut tx, &req.tag, Status::Ok, None, "APPEND completed");
//!         }
//!         Event::Error(e) => e.write_response(&mut tx),
//!         Event::Endless => break, // say `* BYE` and close the connection
//!     }
//! }
//! assert_eq!(message, b"Hello world");
//! assert_eq!(tx, b"+ Ready\r\na1 OK APPEND completed\r\n");
//! ```
//!
//! # Invariants
//! - Nothing here panics on input: no `unwrap`, `expect` or unchecked indexing is
//!   reachable from client bytes; every refusal is a value (STYLE §9).
//! - A refused over-long line is skipped for at most [`MAX_OVERLONG_SKIP`] octets;
//!   past that the framer reports [`Event::Endless`] and the session closes.
//! - Memory is bounded by [`Limits`]: a command holds at most `max_line` octets of
//!   text plus `max_buffered_literals` octets of literals; a streamed literal is handed
//!   over as it arrives and never held; the framer takes nothing beyond one command
//!   from the receive buffer while a literal awaits the session's decision.
//! - Every literal is announced before any of its octets is consumed; a
//!   non-synchronizing literal over `max_nonsync_literal` is refused and skipped.
//!   Literal octets are only ever read as a string value, never as command text,
//!   including when a command is refused (the framer skips through its `{n+}`
//!   literals to its real end).
//! - After any error the framer is at the start of the next command: a refused line
//!   is skipped through its end.
//! - Work is linear in the input: a command with thousands of literals (MULTIAPPEND)
//!   is scanned once, each announcement reading only the text since the previous one.
//! - Sequence sets are never expanded: `1:4294967295` is one range.
//! - Response text never carries CR, LF or other control characters, so client
//!   strings cannot forge responses; strings the writer cannot quote go as literals.

#![forbid(unsafe_code)]

pub mod append;
pub mod command;
mod cursor;
pub mod datetime;
pub mod error;
pub mod fetch;
pub mod flag;
pub mod framing;
pub mod list;
pub mod mailbox;
pub mod parse;
pub mod response;
pub mod search;
pub mod sequence;
pub mod string;
pub mod utf7;

pub use append::{AppendData, AppendForm, AppendMessage, AppendTarget};
pub use command::{
    Command, FetchCommand, QResync, Request, SearchCommand, SelectParams, SpecialUse, StoreCommand,
    StoreMode, Tag,
};
pub use datetime::{Date, DateTime};
pub use error::{CommandError, ErrorKind};
pub use fetch::{FetchAttr, Partial, Section, SectionText};
pub use flag::Flag;
pub use framing::{
    CommandFramer, Event, Limits, LineFrame, LiteralInfo, LiteralMode, MAX_OVERLONG_SKIP,
    is_idle_done,
};
pub use list::{ListCommand, ListReturn, ListSelect, StatusItem};
pub use mailbox::Mailbox;
pub use parse::parse_command;
pub use response::{Code, Esearch, FetchResponse, ListItem, MailboxAttr, Status};
pub use search::{EntryType, SearchKey, SearchReturn};
pub use sequence::{SeqNumber, SeqRange, SequenceSet};
pub use string::TextMode;

/// Default command text limit (DESIGN: IMAP 64 KiB).
pub const MAX_COMMAND_TEXT: usize = 64 * 1024;

/// Largest non-synchronizing literal under LITERAL- (RFC 7888 §5).
pub const LITERAL_MINUS_MAX: u64 = 4096;

/// Longest SASL response line buudien reads (DESIGN: SASL lines at least 12 KiB).
pub const MAX_SASL_LINE: usize = 16 * 1024 + 2;
