//! APPEND (RFC 9051 §6.3.12) with MULTIAPPEND (RFC 3502 §6), literal8 for BINARY
//! (RFC 3516 §4.4) and the `UTF8 (literal8)` form (RFC 6855 §4); and the look at a
//! command's beginning that tells the framer a literal is an APPEND message, so the
//! session can stream it instead of holding it.

use crate::command::Tag;
use crate::cursor::{Cursor, LiteralSpan, PResult};
use crate::datetime::{DateTime, date_time};
use crate::flag::{Flag, flag_list};
use crate::mailbox::{Mailbox, mailbox};
use crate::string::TextMode;

/// How a message's octets were sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendForm {
    /// `{n}` literal.
    Literal,
    /// `~{n}` literal8 (RFC 3516 §4.4): may hold NUL and binary parts.
    Binary,
    /// `UTF8 (~{n})` (RFC 6855 §4): a message with UTF-8 headers.
    Utf8,
}

/// A message's octets: in the command, or streamed to the session as they came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendData {
    /// The octets, held in the command.
    Buffered(Vec<u8>),
    /// The session took the octets as [`crate::Event::LiteralChunk`]s; this many.
    Streamed {
        /// Octets announced (and delivered).
        size: u64,
    },
}

impl AppendData {
    /// Size in octets.
    pub fn len(&self) -> u64 {
        match self {
            AppendData::Buffered(b) => b.len() as u64,
            AppendData::Streamed { size } => *size,
        }
    }

    /// True for an empty message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `append-message = [SP flag-list] [SP date-time] SP append-data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMessage {
    /// Flags to set.
    pub flags: Vec<Flag>,
    /// The internal date to give it.
    pub date: Option<DateTime>,
    /// Literal, literal8 or UTF8.
    pub form: AppendForm,
    /// The octets.
    pub data: AppendData,
}

/// Where an announced literal sits in an APPEND command
/// ([`crate::LiteralInfo::append`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendTarget {
    /// The destination mailbox.
    pub mailbox: Mailbox,
    /// 0 for the first message, 1 for the second (MULTIAPPEND)...
    pub index: usize,
    /// The literal's form.
    pub form: AppendForm,
}

/// `append-data = literal / literal8 / "UTF8" SP "(" literal8 ")"`; a plain literal
/// inside `UTF8 (...)` is taken too.
fn append_data(c: &mut Cursor<'_>) -> PResult<(AppendForm, Option<Vec<u8>>, u64)> {
    let utf8 = c.eat_word("UTF8");
    if utf8 {
        c.sp()?;
        c.expect(b'(', "expected '(' after UTF8")?;
    }
    if !matches!(c.peek(), Some(b'{' | b'~')) {
        return c.fail("expected the message as a literal");
    }
    let lit = c.literal()?;
    if utf8 {
        c.expect(b')', "expected ')' after the UTF8 literal")?;
    }
    let form = match (utf8, lit.binary) {
        (true, _) => AppendForm::Utf8,
        (false, true) => AppendForm::Binary,
        (false, false) => AppendForm::Literal,
    };
    Ok((form, lit.data.map(<[u8]>::to_vec), lit.len))
}

/// `[SP flag-list] [SP date-time] SP` before the data; returns flags and date.
fn message_head(c: &mut Cursor<'_>) -> PResult<(Vec<Flag>, Option<DateTime>)> {
    c.sp()?;
    let mut flags = Vec::new();
    if c.peek() == Some(b'(') {
        flags = flag_list(c)?;
        c.sp()?;
    }
    let mut date = None;
    if c.peek() == Some(b'"') {
        date = Some(date_time(c)?);
        c.sp()?;
    }
    Ok((flags, date))
}

/// ```text
/// append = "APPEND" SP mailbox 1*append-message          ; RFC 3502 §6
/// append-message = [SP flag-list] [SP date-time] SP append-data
/// ```
pub(crate) fn append(c: &mut Cursor<'_>) -> PResult<(Mailbox, Vec<AppendMessage>)> {
    c.sp()?;
    let mbox = mailbox(c)?;
    let mut messages = Vec::new();
    loop {
        let (flags, date) = message_head(c)?;
        let (form, data, size) = append_data(c)?;
        messages.push(AppendMessage {
            flags,
            date,
            form,
            data: match data {
                Some(d) => AppendData::Buffered(d),
                None => AppendData::Streamed { size },
            },
        });
        if c.at_end() {
            return Ok((mbox, messages));
        }
    }
}

/// Follows an APPEND's messages as their literals are announced, so that each is
/// recognised by reading only the text since the previous one (a command with many
/// literals costs linear time, not quadratic).
#[derive(Debug, Clone, Default)]
pub(crate) enum AppendScan {
    /// No message literal seen yet.
    #[default]
    Start,
    /// Message `next - 1` was the last literal; its octets end at `resume`.
    Message {
        /// Where the text after the last message's octets starts.
        resume: usize,
        /// Index of the next message.
        next: usize,
        /// The destination.
        mailbox: Mailbox,
        /// The last message was `UTF8 (...)`, so `)` comes first.
        utf8: bool,
    },
    /// Not an APPEND, or not one whose literals are messages.
    No,
}

/// What follows `[SP flag-list] [SP date-time] SP` when the literal being announced
/// ends the buffer: `Some(form)` when it is that literal, `None` when it is an earlier
/// message (now passed).
fn message_data(c: &mut Cursor<'_>) -> PResult<Option<AppendForm>> {
    message_head(c)?;
    let utf8 = c.eat_word("UTF8");
    if utf8 {
        c.sp()?;
        c.expect(b'(', "expected '(' after UTF8")?;
    }
    let lit = c.literal()?;
    let form = match (utf8, lit.binary) {
        (true, _) => AppendForm::Utf8,
        (false, true) => AppendForm::Binary,
        (false, false) => AppendForm::Literal,
    };
    if lit.data.is_none() && c.at_end() {
        return Ok(Some(form));
    }
    if utf8 {
        c.expect(b')', "expected ')' after the UTF8 literal")?;
    }
    Ok(None)
}

impl AppendScan {
    /// Is the literal of `size` octets announced at the end of `cmd` an APPEND
    /// message? `spans` are the command's earlier literals.
    pub(crate) fn announce(
        &mut self,
        cmd: &[u8],
        spans: &[LiteralSpan],
        size: u64,
        mode: TextMode,
    ) -> Option<AppendTarget> {
        match std::mem::replace(self, AppendScan::No) {
            AppendScan::No => None,
            AppendScan::Start => {
                // The first message is the first or (mailbox as a literal) the second
                // literal; past that this is not an APPEND with messages.
                if spans.len() > 1 {
                    return None;
                }
                let mut c = Cursor::with_pending(cmd, spans, size, 0, mode);
                c.take_while1(Tag::is_tag_char, "").ok()?;
                c.sp().ok()?;
                if !c.eat_word("APPEND") {
                    return None;
                }
                c.sp().ok()?;
                let Ok(mbox) = mailbox(&mut c) else {
                    // The mailbox itself may be this literal; look again at the next.
                    if spans.is_empty() {
                        *self = AppendScan::Start;
                    }
                    return None;
                };
                let mut index = 0;
                loop {
                    match message_data(&mut c).ok()? {
                        Some(form) => return Some(self.found(mbox, index, form)),
                        None if c.at_end() => return None,
                        None => index += 1,
                    }
                }
            }
            AppendScan::Message {
                resume,
                next,
                mailbox,
                utf8,
            } => {
                let mut c = Cursor::with_pending(cmd, spans, size, resume, mode);
                if utf8 && !c.eat(b')') {
                    return None;
                }
                message_data(&mut c)
                    .ok()?
                    .map(|form| self.found(mailbox, next, form))
            }
        }
    }

    fn found(&mut self, mailbox: Mailbox, index: usize, form: AppendForm) -> AppendTarget {
        *self = AppendScan::Message {
            resume: 0,
            next: index + 1,
            mailbox: mailbox.clone(),
            utf8: form == AppendForm::Utf8,
        };
        AppendTarget {
            mailbox,
            index,
            form,
        }
    }

    /// The announced message literal was accepted; the text after it starts at
    /// `resume`.
    pub(crate) fn accepted(&mut self, resume: usize) {
        if let AppendScan::Message { resume: r, .. } = self {
            *r = resume;
        }
    }
}
