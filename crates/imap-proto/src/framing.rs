//! Command framing with literals (RFC 9051 §4.3, §7.5; RFC 7888 LITERAL+/LITERAL-).
//!
//! An IMAP command is one or more lines: a line that ends with `{n}` (synchronizing),
//! `{n+}` (non-synchronizing) or `~{n}` (literal8, RFC 3516) is followed by exactly n
//! octets and then the rest of the command. [`CommandFramer`] takes bytes from the
//! session's receive buffer and says what it found ([`Event`]):
//!
//! - every literal is announced ([`Event::Literal`]) before any of its octets is taken,
//!   so the session can check APPENDLIMIT and answer `NO [TOOBIG]` instead of `+`, or
//!   send `+` and let it come; it then [accepts](CommandFramer::accept_literal) the
//!   literal, held in the command or streamed to it in chunks
//!   ([`Event::LiteralChunk`], [`Event::LiteralEnd`]; for APPEND messages), or
//!   [rejects](CommandFramer::reject_literal) it;
//! - a non-synchronizing literal over the LITERAL- limit (4096) is refused at once
//!   ([`ErrorKind::LiteralTooBig`], `BAD [TOOBIG]`) and its octets are skipped;
//! - the command's text (literals not counted) is capped at [`Limits::max_line`], and
//!   its held literals at [`Limits::max_buffered_literals`]; past a cap the command is
//!   refused and skipped through its end, following any `{n+}` literal on the way, so
//!   the next command is read from its start and literal octets are never read as
//!   commands.

use crate::append::{AppendScan, AppendTarget};
use crate::command::{Request, Tag};
use crate::cursor::LiteralSpan;
use crate::error::{CommandError, ErrorKind};
use crate::parse::parse_framed;
use crate::string::TextMode;

/// The framer's caps (STYLE §12: limits are a struct, enforced here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest command text, every line and its CRLF counted, literal octets not
    /// (DESIGN: 64 KiB).
    pub max_line: usize,
    /// Largest non-synchronizing literal (RFC 7888 §5 LITERAL-: 4096; set it to
    /// `u64::MAX` when advertising LITERAL+).
    pub max_nonsync_literal: u64,
    /// Most literal octets one command may hold in memory (streamed literals are not
    /// counted: the session bounds those by APPENDLIMIT).
    pub max_buffered_literals: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 64 * 1024,
            max_nonsync_literal: 4096,
            max_buffered_literals: 256 * 1024,
        }
    }
}

/// A literal the client announced; the session must call
/// [`CommandFramer::accept_literal`] or [`CommandFramer::reject_literal`] next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiteralInfo {
    /// The command's tag, if valid (to answer `tag NO [TOOBIG]`).
    pub tag: Option<Tag>,
    /// Octets announced.
    pub size: u64,
    /// `{n}`: the client waits for `+` before sending. `{n+}`: the octets are on the
    /// way already, so no `+` may be sent.
    pub sync: bool,
    /// `~{n}` literal8.
    pub binary: bool,
    /// Set when the literal is the message of an APPEND (the session streams it).
    pub append: Option<AppendTarget>,
}

/// How the session takes an accepted literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiteralMode {
    /// Keep the octets in the command (counted against
    /// [`Limits::max_buffered_literals`]).
    Buffer,
    /// Hand the octets over as [`Event::LiteralChunk`]s then [`Event::LiteralEnd`];
    /// the command then carries [`crate::AppendData::Streamed`] in its place. Only an
    /// APPEND message may be streamed; a streamed literal anywhere else makes the
    /// command fail to parse.
    Stream,
}

/// What [`CommandFramer::next_event`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Need more bytes: read and call again. The receive buffer is empty.
    Incomplete,
    /// A whole command, parsed.
    Command(Request),
    /// A refused command: answer with [`CommandError::write_response`] and go on.
    Error(CommandError),
    /// A literal was announced; decide before calling `next_event` again (it repeats
    /// this event until then).
    Literal(LiteralInfo),
    /// Octets of a streamed literal, in order.
    LiteralChunk(Vec<u8>),
    /// The streamed literal is complete.
    LiteralEnd,
    /// A refused over-long command line went on for more than [`MAX_OVERLONG_SKIP`]
    /// octets past its error, or a refused non-synchronizing literal announced more
    /// than that: the peer is not sending commands, or would make the server read
    /// without end. The session says `* BYE` and closes (RFC 7888 §4, second choice);
    /// the framer takes nothing more.
    Endless,
}

/// Octets of one over-long line the framer skips after refusing it (the `BAD` for
/// [`ErrorKind::LineTooLong`]) before giving up with [`Event::Endless`] or
/// [`LineFrame::Endless`] (1 MiB). A line a little over the limit costs the client one
/// `BAD` and the session goes on; a peer streaming megabytes without a line end is cut
/// off.
pub const MAX_OVERLONG_SKIP: usize = 1 << 20;

/// What [`CommandFramer::next_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum LineFrame {
    /// A whole line without its CRLF.
    Line(Vec<u8>),
    /// The line passed the limit; reported once, and skipped through its end.
    TooLong,
    /// The over-long line went on past [`MAX_OVERLONG_SKIP`]; the session closes.
    Endless,
    /// Need more bytes.
    Incomplete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading command text.
    Line,
    /// A literal was announced; waiting for the session.
    Decide { size: u64, sync: bool },
    /// Taking a literal's octets.
    Literal { remaining: u64, stream: bool },
    /// Skipping the rest of a refused command's line.
    DiscardLine,
    /// Skipping a refused non-synchronizing literal.
    DiscardLiteral { remaining: u64 },
}

/// Longest tail of a skipped line kept to spot a literal header at its end.
const TAIL: usize = 32;

/// Assembles commands from a receive buffer, literals included; see the module docs.
#[derive(Debug)]
pub struct CommandFramer {
    limits: Limits,
    mode: TextMode,
    state: State,
    /// The command so far: its text and held literals, as sent.
    cmd: Vec<u8>,
    spans: Vec<LiteralSpan>,
    /// Where the current line starts in `cmd`.
    line_start: usize,
    /// Command text octets so far.
    text_len: usize,
    /// Held literal octets so far.
    buffered: u64,
    /// The end of the line being skipped.
    tail: Vec<u8>,
    pending: Option<LiteralInfo>,
    /// Which literals of the command are APPEND messages.
    append_scan: AppendScan,
    /// For [`CommandFramer::next_line`]: skipping an over-long line.
    raw_discarding: bool,
    /// Octets of the over-long line being skipped, dropped so far.
    skipped: usize,
    /// [`Event::Endless`] or [`LineFrame::Endless`] was reported, or is due.
    endless: bool,
    /// [`Event::Endless`] is the next event (after the error of a refused literal).
    endless_due: bool,
}

impl CommandFramer {
    /// A framer at the start of a command. `mode` is how mailbox names are read
    /// (change it with [`CommandFramer::set_text_mode`] after ENABLE).
    pub fn new(limits: Limits, mode: TextMode) -> Self {
        CommandFramer {
            limits,
            mode,
            state: State::Line,
            cmd: Vec::new(),
            spans: Vec::new(),
            line_start: 0,
            text_len: 0,
            buffered: 0,
            tail: Vec::new(),
            pending: None,
            append_scan: AppendScan::Start,
            raw_discarding: false,
            skipped: 0,
            endless: false,
            endless_due: false,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Switches how later commands read mailbox names (after `ENABLE IMAP4rev2` or
    /// `ENABLE UTF8=ACCEPT`).
    pub fn set_text_mode(&mut self, mode: TextMode) {
        self.mode = mode;
    }

    /// The text mode in force.
    pub fn text_mode(&self) -> TextMode {
        self.mode
    }

    /// Octets of the current command held in memory.
    pub fn held(&self) -> usize {
        self.cmd.len()
    }

    /// True between commands (nothing of a command has been read).
    pub fn at_command_start(&self) -> bool {
        self.state == State::Line && self.cmd.is_empty() && self.text_len == 0
    }

    /// Forgets any partial command (after STARTTLS, whose pipelined bytes the session
    /// drops too).
    pub fn reset(&mut self) {
        self.reset_command();
        self.state = State::Line;
        self.raw_discarding = false;
        self.skipped = 0;
    }

    fn reset_command(&mut self) {
        self.cmd.clear();
        self.cmd.shrink_to(4096);
        self.spans.clear();
        self.line_start = 0;
        self.text_len = 0;
        self.buffered = 0;
        self.pending = None;
        self.append_scan = AppendScan::Start;
    }

    /// Takes what it can from `buf` and reports the next event. Octets it takes are
    /// removed from `buf`; after [`Event::Incomplete`] `buf` is empty. While a literal
    /// awaits a decision nothing is taken.
    pub fn next_event(&mut self, buf: &mut Vec<u8>) -> Event {
        if self.endless {
            buf.clear();
            if self.endless_due {
                self.endless_due = false;
                return Event::Endless;
            }
            return Event::Incomplete;
        }
        loop {
            match self.state {
                State::Decide { .. } => {
                    if let Some(info) = &self.pending {
                        return Event::Literal(info.clone());
                    }
                    // Unreachable in practice: a decision is always pending here.
                    self.reset();
                }
                State::Line => {
                    if let Some(ev) = self.take_line(buf) {
                        return ev;
                    }
                }
                State::Literal { remaining, stream } => {
                    if remaining == 0 {
                        self.state = State::Line;
                        self.line_start = self.cmd.len();
                        if stream {
                            return Event::LiteralEnd;
                        }
                        continue;
                    }
                    if buf.is_empty() {
                        return Event::Incomplete;
                    }
                    let k = take_len(remaining, buf.len());
                    self.state = State::Literal {
                        remaining: remaining - k as u64,
                        stream,
                    };
                    if stream {
                        return Event::LiteralChunk(buf.drain(..k).collect());
                    }
                    self.cmd.extend(buf.drain(..k));
                }
                State::DiscardLine => match buf.iter().position(|&b| b == b'\n') {
                    None => {
                        push_tail(&mut self.tail, buf);
                        self.skipped = self.skipped.saturating_add(buf.len());
                        buf.clear();
                        if self.skipped > MAX_OVERLONG_SKIP {
                            self.endless = true;
                            return Event::Endless;
                        }
                        return Event::Incomplete;
                    }
                    Some(i) => {
                        push_tail(&mut self.tail, &buf[..i]);
                        buf.drain(..=i);
                        self.skipped = 0;
                        if self.tail.last() == Some(&b'\r') {
                            self.tail.pop();
                        }
                        self.state = match literal_header(&self.tail) {
                            // The client sends the octets without waiting: skip them.
                            Some(h) if !h.sync => State::DiscardLiteral { remaining: h.size },
                            // A synchronizing literal never comes without `+`.
                            _ => State::Line,
                        };
                        self.tail.clear();
                    }
                },
                State::DiscardLiteral { remaining } => {
                    if remaining == 0 {
                        self.state = State::DiscardLine;
                        continue;
                    }
                    if buf.is_empty() {
                        return Event::Incomplete;
                    }
                    let k = take_len(remaining, buf.len());
                    buf.drain(..k);
                    self.state = State::DiscardLiteral {
                        remaining: remaining - k as u64,
                    };
                }
            }
        }
    }

    /// Reads command text up to the end of a line; `None` to go on with the new state.
    fn take_line(&mut self, buf: &mut Vec<u8>) -> Option<Event> {
        let newline = buf.iter().position(|&b| b == b'\n');
        let take = newline.map_or(buf.len(), |i| i + 1);
        if take == 0 {
            return Some(Event::Incomplete);
        }
        if self.text_len + take > self.limits.max_line {
            return Some(self.too_long(buf));
        }
        self.cmd.extend(buf.drain(..take));
        self.text_len += take;
        if newline.is_none() {
            return Some(Event::Incomplete);
        }
        self.cmd.pop();
        let had_cr = self.cmd.len() > self.line_start && self.cmd.last() == Some(&b'\r');
        if had_cr {
            self.cmd.pop();
        }
        let line = self.cmd.get(self.line_start..).unwrap_or_default();
        if let Some(h) = literal_header(line) {
            // The header keeps its line end as sent, so the command holds exactly
            // the octets counted.
            self.cmd
                .extend_from_slice(if had_cr { b"\r\n" } else { b"\n" });
            return Some(self.announce(h));
        }
        if self.cmd.is_empty() {
            // An empty line between commands: ignored.
            self.reset_command();
            return None;
        }
        let result = parse_framed(&self.cmd, &self.spans, self.mode);
        self.reset_command();
        Some(match result {
            Ok(req) => Event::Command(req),
            Err(e) => Event::Error(e),
        })
    }

    /// The command text passed the cap: refuse it and skip the rest of the line.
    fn too_long(&mut self, buf: &[u8]) -> Event {
        // The tag is read from the first octets of the command whatever the reads
        // were, so it does not depend on how the input was cut.
        let head: Vec<u8> = self
            .cmd
            .iter()
            .chain(buf)
            .take(self.limits.max_line.min(Tag::MAX_LEN + 1))
            .copied()
            .collect();
        let tag = Tag::before_space(&head);
        self.tail.clear();
        push_tail(
            &mut self.tail,
            self.cmd.get(self.line_start..).unwrap_or_default(),
        );
        self.reset_command();
        self.state = State::DiscardLine;
        Event::Error(CommandError::new(
            tag,
            ErrorKind::LineTooLong,
            &format!(
                "command text longer than {} octets; skipped",
                self.limits.max_line
            ),
        ))
    }

    /// A line ended with a literal header.
    fn announce(&mut self, h: Header) -> Event {
        // Only the head is looked at, so many literals cost linear time.
        let head = self.cmd.get(..Tag::MAX_LEN + 1).unwrap_or(&self.cmd);
        let tag = Tag::before_space(head);
        if !h.sync && h.size > self.limits.max_nonsync_literal {
            self.reset_command();
            self.state = State::DiscardLiteral { remaining: h.size };
            if h.size > MAX_OVERLONG_SKIP as u64 {
                // RFC 7888 §4: rather than read that much only to drop it, refuse
                // and end the connection (the BAD now, Event::Endless next).
                self.endless = true;
                self.endless_due = true;
            }
            return Event::Error(CommandError::new(
                tag,
                ErrorKind::LiteralTooBig { sync: false },
                &format!(
                    "non-synchronizing literal of {} octets is over the {} octet limit \
                     (LITERAL-); send {{{}}} and wait for +",
                    h.size, self.limits.max_nonsync_literal, h.size
                ),
            ));
        }
        let append = self
            .append_scan
            .announce(&self.cmd, &self.spans, h.size, self.mode);
        let info = LiteralInfo {
            tag,
            size: h.size,
            sync: h.sync,
            binary: h.binary,
            append,
        };
        self.state = State::Decide {
            size: h.size,
            sync: h.sync,
        };
        self.pending = Some(info.clone());
        Event::Literal(info)
    }

    /// Takes the announced literal. For a synchronizing one the session sends `+`
    /// after this returns `Ok`. `Err` when [`LiteralMode::Buffer`] would pass
    /// [`Limits::max_buffered_literals`]: the command is then refused like
    /// [`CommandFramer::reject_literal`] and the error is the answer to send.
    pub fn accept_literal(&mut self, how: LiteralMode) -> Result<(), CommandError> {
        let State::Decide { size, sync } = self.state else {
            return Ok(());
        };
        if how == LiteralMode::Buffer
            && self.buffered.saturating_add(size) > self.limits.max_buffered_literals
        {
            let tag = self.pending.as_ref().and_then(|p| p.tag.clone());
            self.reject_literal();
            return Err(CommandError::new(
                tag,
                ErrorKind::LiteralTooBig { sync },
                &format!(
                    "literals of this command are over {} octets",
                    self.limits.max_buffered_literals
                ),
            ));
        }
        self.spans.push(LiteralSpan {
            start: self.cmd.len(),
            len: size,
            streamed: how == LiteralMode::Stream,
        });
        if how == LiteralMode::Buffer {
            self.buffered += size;
        }
        if self.pending.as_ref().is_some_and(|p| p.append.is_some()) {
            let held = if how == LiteralMode::Buffer { size } else { 0 };
            let resume = u64::try_from(self.cmd.len())
                .unwrap_or(u64::MAX)
                .saturating_add(held);
            self.append_scan
                .accepted(usize::try_from(resume).unwrap_or(usize::MAX));
        }
        self.pending = None;
        self.state = State::Literal {
            remaining: size,
            stream: how == LiteralMode::Stream,
        };
        Ok(())
    }

    /// Refuses the announced literal; the session answers the command itself (e.g.
    /// `tag NO [TOOBIG]`). A synchronizing literal ends the command here (the client
    /// sends nothing more of it); a non-synchronizing one is skipped with the rest of
    /// its command.
    pub fn reject_literal(&mut self) {
        let State::Decide { size, sync } = self.state else {
            return;
        };
        self.reset_command();
        self.state = if sync {
            State::Line
        } else {
            State::DiscardLiteral { remaining: size }
        };
    }

    /// Reads one plain line, no literals: a SASL response (RFC 9051 §6.2.2) or IDLE's
    /// `DONE` (RFC 9051 §6.3.13). Call it only between commands. `max` counts the
    /// line with its CRLF.
    pub fn next_line(&mut self, buf: &mut Vec<u8>, max: usize) -> LineFrame {
        if self.endless {
            buf.clear();
            return LineFrame::Incomplete;
        }
        loop {
            let newline = buf.iter().position(|&b| b == b'\n');
            if self.raw_discarding {
                match newline {
                    Some(i) => {
                        buf.drain(..=i);
                        self.raw_discarding = false;
                        self.skipped = 0;
                        continue;
                    }
                    None => {
                        self.skipped = self.skipped.saturating_add(buf.len());
                        buf.clear();
                        if self.skipped > MAX_OVERLONG_SKIP {
                            self.endless = true;
                            return LineFrame::Endless;
                        }
                        return LineFrame::Incomplete;
                    }
                }
            }
            return match newline {
                Some(i) if i < max => {
                    let mut line: Vec<u8> = buf.drain(..=i).collect();
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    LineFrame::Line(line)
                }
                Some(i) => {
                    buf.drain(..=i);
                    LineFrame::TooLong
                }
                None if buf.len() >= max => {
                    self.skipped = buf.len() - max;
                    buf.clear();
                    self.raw_discarding = true;
                    LineFrame::TooLong
                }
                None => LineFrame::Incomplete,
            };
        }
    }
}

/// Is `line` the IDLE terminator (`DONE`, any case; RFC 9051 §6.3.13)?
pub fn is_idle_done(line: &[u8]) -> bool {
    line.eq_ignore_ascii_case(b"DONE")
}

fn take_len(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |r| r.min(available))
}

fn push_tail(tail: &mut Vec<u8>, more: &[u8]) {
    let keep = more.len().min(TAIL);
    tail.extend_from_slice(&more[more.len() - keep..]);
    if tail.len() > TAIL {
        tail.drain(..tail.len() - TAIL);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    size: u64,
    sync: bool,
    binary: bool,
}

/// The literal header a line ends with: `{n}`, `{n+}`, `~{n}`, `~{n+}`. A size past
/// 2^63-1 is taken as `u64::MAX` (too big for any limit).
fn literal_header(line: &[u8]) -> Option<Header> {
    let rest = line.strip_suffix(b"}")?;
    let (rest, sync) = match rest.strip_suffix(b"+") {
        Some(r) => (r, false),
        None => (rest, true),
    };
    let ndigits = rest.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if ndigits == 0 {
        return None;
    }
    let (rest, digits) = rest.split_at(rest.len() - ndigits);
    let rest = rest.strip_suffix(b"{")?;
    let binary = rest.last() == Some(&b'~');
    let mut size: u64 = 0;
    for &d in digits {
        size = size
            .checked_mul(10)
            .and_then(|s| s.checked_add(u64::from(d - b'0')))
            .unwrap_or(u64::MAX);
    }
    if size > i64::MAX as u64 {
        size = u64::MAX;
    }
    Some(Header { size, sync, binary })
}

#[cfg(test)]
#[path = "framing_tests.rs"]
mod tests;
