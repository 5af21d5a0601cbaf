//! The DATA receiver (RFC 5321 §4.1.1.4, §4.5.2): streaming dot-unstuffing that ends
//! only on `<CRLF>.<CRLF>`.
//!
//! The data starts right after the CRLF of the `DATA` line (the server reads it after
//! its `354`), so a `.` CRLF on the very first line ends an empty message: that CRLF
//! counts as the first half of the terminator.
//!
//! SMTP smuggling (CVE-2023-51764, CVE-2023-51765, CVE-2023-51766): a sender that
//! ends its data with `<LF>.<LF>`, `<LF>.<CRLF>`, `<CR>.<CR>`, `<CRLF>.<LF>` and the
//! like gets its following bytes read as a second message by a server that accepts
//! such endings. Here none of them ends the data; a bare CR or bare LF anywhere is
//! flagged ([`DataReceiver::bare_newline`]) so that the session can refuse the message
//! once its real end has arrived (Postfix's `smtpd_forbid_bare_newline`).
//!
//! Lines longer than 998 octets are accepted (RFC 5321 §4.5.3.1.6 allows the server
//! to; Postfix does). Only the total size is bounded: past `max_size`, bytes are
//! counted but no longer stored, and reading goes on to the terminator so that the
//! session stays in step with the client, up to twice the limit
//! ([`DataReceiver::is_absurd`]): a stream longer than that is no message this server
//! would take, and reading it to an end that may never come is refused (the session
//! replies and closes, as for an absurd BDAT chunk size).

/// What [`DataReceiver::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataStatus {
    /// The terminator has not been seen yet: every input byte was used.
    More,
    /// The terminator ended at `input[consumed - 1]`; `input[consumed..]` belongs to
    /// the next command (pipelining).
    Done {
        /// Bytes of this input used, terminator included.
        consumed: usize,
    },
}

/// Where the receiver is in the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Right after a CRLF (or at the start of the data).
    LineStart,
    /// Inside a line.
    Text,
    /// A CR was seen inside a line (held back until the next byte says what it is).
    Cr,
    /// A `.` at the start of a line (held back).
    Dot,
    /// `.` CR at the start of a line (held back).
    DotCr,
    /// `<CRLF>.<CRLF>` was seen.
    Done,
}

/// Receives one message's DATA: feed it byte chunks as they arrive; it writes the
/// unstuffed message (with its final CRLF, without the terminator) to the caller's
/// buffer.
#[derive(Debug, Clone)]
pub struct DataReceiver {
    state: State,
    max_size: u64,
    size: u64,
    overflow: bool,
    bare_newline: bool,
}

impl DataReceiver {
    /// A receiver that stores at most `max_size` octets of message.
    pub fn new(max_size: u64) -> Self {
        DataReceiver {
            state: State::LineStart,
            max_size,
            size: 0,
            overflow: false,
            bare_newline: false,
        }
    }

    /// Unstuffs `input` into `out` until the terminator.
    ///
    /// `out` gets at most `max_size` octets from this receiver; once the message is
    /// bigger, nothing more is appended ([`DataReceiver::exceeded`]), but the bytes are
    /// still read and counted.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> DataStatus {
        let mut i = 0;
        while let Some(&b) = input.get(i) {
            match self.state {
                State::Text => {
                    // Fast path: copy the run up to the next CR or LF at once.
                    let rest = input.get(i..).unwrap_or_default();
                    let run = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                    if run > 0 {
                        self.emit(out, rest.get(..run).unwrap_or_default());
                        i += run;
                        continue;
                    }
                    if b == b'\r' {
                        self.state = State::Cr;
                    } else {
                        self.bare_newline = true;
                        self.emit(out, b"\n");
                    }
                }
                State::LineStart => match b {
                    b'.' => self.state = State::Dot,
                    b'\r' => self.state = State::Cr,
                    b'\n' => {
                        self.bare_newline = true;
                        self.emit(out, b"\n");
                        self.state = State::Text;
                    }
                    _ => {
                        self.emit(out, &[b]);
                        self.state = State::Text;
                    }
                },
                State::Cr => match b {
                    b'\n' => {
                        self.emit(out, b"\r\n");
                        self.state = State::LineStart;
                    }
                    b'\r' => {
                        // The first CR was bare; the second may start a CRLF.
                        self.bare_newline = true;
                        self.emit(out, b"\r");
                    }
                    _ => {
                        self.bare_newline = true;
                        self.emit(out, b"\r");
                        self.state = State::Text;
                        continue; // `b` is ordinary text: read it again in Text.
                    }
                },
                State::Dot => match b {
                    b'\r' => self.state = State::DotCr,
                    b'\n' => {
                        // `<CRLF>.<LF>`: not an end (smuggling); kept as content.
                        self.bare_newline = true;
                        self.emit(out, b".\n");
                        self.state = State::Text;
                    }
                    _ => {
                        // RFC 5321 §4.5.2: a line starting with "." and holding more
                        // characters loses that first ".".
                        self.state = State::Text;
                        continue;
                    }
                },
                State::DotCr => match b {
                    b'\n' => {
                        self.state = State::Done;
                        return DataStatus::Done { consumed: i + 1 };
                    }
                    b'\r' => {
                        // `.` CR CR: the first CR is bare; the stuffed "." goes.
                        self.bare_newline = true;
                        self.emit(out, b"\r");
                        self.state = State::Cr;
                    }
                    _ => {
                        // `<CRLF>.<CR>x`: not an end (smuggling).
                        self.bare_newline = true;
                        self.emit(out, b"\r");
                        self.state = State::Text;
                        continue;
                    }
                },
                State::Done => return DataStatus::Done { consumed: i },
            }
            i += 1;
        }
        if self.state == State::Done {
            DataStatus::Done { consumed: 0 }
        } else {
            DataStatus::More
        }
    }

    /// Counts `bytes` and stores them while the message fits: exactly the first
    /// `max_size` octets of the message are stored, however the input was chunked.
    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if !self.overflow {
            let room = self.max_size.saturating_sub(self.size);
            if len <= room {
                out.extend_from_slice(bytes);
            } else {
                let fits = usize::try_from(room).unwrap_or(usize::MAX);
                out.extend_from_slice(bytes.get(..fits).unwrap_or_default());
                self.overflow = true;
            }
        }
        self.size = self.size.saturating_add(len);
    }

    /// True once the terminator has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The unstuffed size so far (counted past the limit too).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// True when the message is bigger than `max_size`: it was not stored whole and
    /// must be refused (`552 5.3.4`).
    pub fn exceeded(&self) -> bool {
        self.overflow
    }

    /// True once the data has gone on past twice `max_size` (and past
    /// `max_size` + 1 MiB, for small limits) without its terminator: the session stops
    /// reading, replies `552 5.3.4` and closes, as for [`crate::ChunkCheck::Absurd`].
    pub fn is_absurd(&self) -> bool {
        !self.is_done()
            && self.size
                > self.max_size.saturating_mul(2).max(
                    self.max_size
                        .saturating_add(crate::MAX_OVERLONG_SKIP as u64),
                )
    }

    /// True when a CR or LF appeared other than as part of a CRLF
    /// (RFC 5321 §2.3.8): the session refuses such a message.
    pub fn bare_newline(&self) -> bool {
        self.bare_newline
    }
}

/// True when `message` holds a CR or LF that is not part of a CRLF (RFC 5321 §2.3.8).
///
/// For a whole message that did not come through [`DataReceiver`]: a BDAT message
/// (RFC 3030 §3: without BINARYMIME, chunks carry 7bit or 8bitmime text, whose lines
/// end in CRLF), checked once its LAST chunk is in, so that a CRLF split between two
/// chunks is not taken for a bare CR and a bare LF.
pub fn has_bare_newline(message: &[u8]) -> bool {
    let mut prev = 0u8;
    for (i, &b) in message.iter().enumerate() {
        match b {
            b'\n' if prev != b'\r' => return true,
            b'\r' if message.get(i + 1) != Some(&b'\n') => return true,
            _ => {}
        }
        prev = b;
    }
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Feeds `input` whole; returns (message, consumed or None, bare flag).
    fn run(input: &[u8]) -> (Vec<u8>, Option<usize>, bool) {
        let mut r = DataReceiver::new(1 << 20);
        let mut out = Vec::new();
        let st = r.feed(input, &mut out);
        let consumed = match st {
            DataStatus::Done { consumed } => Some(consumed),
            DataStatus::More => None,
        };
        (out, consumed, r.bare_newline())
    }

    /// Feeds `input` one byte at a time.
    fn run_bytewise(input: &[u8]) -> (Vec<u8>, Option<usize>, bool) {
        let mut r = DataReceiver::new(1 << 20);
        let mut out = Vec::new();
        for (i, b) in input.iter().enumerate() {
            if let DataStatus::Done { consumed } = r.feed(std::slice::from_ref(b), &mut out) {
                assert_eq!(consumed, 1);
                return (out, Some(i + 1), r.bare_newline());
            }
        }
        (out, None, r.bare_newline())
    }

    fn both(input: &[u8]) -> (Vec<u8>, Option<usize>, bool) {
        let a = run(input);
        assert_eq!(a, run_bytewise(input), "chunking changed the result");
        a
    }

    #[test]
    fn plain_message() {
        let input = b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n";
        let (msg, consumed, bare) = both(input);
        assert_eq!(msg, b"Subject: x\r\n\r\nhello\r\n");
        assert_eq!(&input[consumed.unwrap()..], b"QUIT\r\n");
        assert!(!bare);
    }

    #[test]
    fn empty_message_ends_on_first_line() {
        let (msg, consumed, bare) = both(b".\r\nNOOP\r\n");
        assert!(msg.is_empty());
        assert_eq!(consumed, Some(3));
        assert!(!bare);
    }

    #[test]
    fn dot_unstuffing() {
        let (msg, consumed, _) = both(b"..\r\n...x\r\n.y\r\na.b\r\n.\r\n");
        assert_eq!(msg, b".\r\n..x\r\ny\r\na.b\r\n");
        assert!(consumed.is_some());
    }

    #[test]
    fn long_lines_are_accepted() {
        let mut input = vec![b'a'; 5000];
        input.extend_from_slice(b"\r\n.\r\n");
        let (msg, consumed, bare) = both(&input);
        assert_eq!(msg.len(), 5002);
        assert_eq!(consumed, Some(input.len()));
        assert!(!bare);
    }

    /// Every smuggling ending from the SEC Consult research and the Postfix/Sendmail/
    /// Exim advisories: none ends the data, all are flagged, and what follows is still
    /// data, so "MAIL FROM" after them is never a command.
    #[test]
    fn smuggling_variants_never_end_the_data() {
        let endings: &[&[u8]] = &[
            b"\n.\n",
            b"\n.\r\n",
            b"\r\n.\n",
            b"\r.\r",
            b"\r.\r\n",
            b"\r\n.\r",
            b"\n.\r",
            b"\r.\n",
            b"\n\n.\n\n",
            b"\r\n\n.\n\r\n",
            b"\r\r\n.\r\r\n",
            b"\r\n.\r\r\n",
        ];
        for ending in endings {
            let mut input = b"Subject: one\r\n\r\nbody".to_vec();
            input.extend_from_slice(ending);
            input.extend_from_slice(b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<a@b.c>\r\nDATA\r\n");
            let (msg, consumed, bare) = both(&input);
            assert_eq!(consumed, None, "{ending:?} ended the data");
            assert!(bare, "{ending:?} not flagged");
            assert!(
                msg.windows(9).any(|w| w == b"MAIL FROM"),
                "{ending:?}: the smuggled command vanished"
            );
            // The real terminator still ends it, once.
            let mut input2 = input.clone();
            input2.extend_from_slice(b"\r\n.\r\nQUIT\r\n");
            let (_, consumed, bare) = both(&input2);
            assert_eq!(&input2[consumed.unwrap()..], b"QUIT\r\n", "{ending:?}");
            assert!(bare);
        }
    }

    #[test]
    fn a_dot_with_more_on_its_line_is_content() {
        let (msg, consumed, bare) = both(b"a\r\n.\x00\r\n. \r\nb\r\n.\r\n");
        assert_eq!(msg, b"a\r\n\x00\r\n \r\nb\r\n");
        assert_eq!(consumed, Some(17));
        assert!(!bare);
    }

    #[test]
    fn bare_cr_and_lf_are_flagged() {
        for input in [
            &b"a\nb\r\n.\r\n"[..],
            b"a\rb\r\n.\r\n",
            b"\n.\r\n.\r\n",
            b"a\r\r\n.\r\n",
            b"\r\n\r\n.\r\r\n.\r\n",
        ] {
            let (_, consumed, bare) = both(input);
            assert!(bare, "{input:?}");
            assert!(consumed.is_some(), "{input:?}");
        }
        let (msg, _, bare) = both(b"a\r\nb\r\n\r\n.\r\n");
        assert!(!bare);
        assert_eq!(msg, b"a\r\nb\r\n\r\n");
    }

    #[test]
    fn terminator_split_across_chunks() {
        let parts: &[&[u8]] = &[b"hello\r", b"\n.", b"\r", b"\nRSET\r\n"];
        let mut r = DataReceiver::new(100);
        let mut out = Vec::new();
        assert_eq!(r.feed(parts[0], &mut out), DataStatus::More);
        assert_eq!(r.feed(parts[1], &mut out), DataStatus::More);
        assert_eq!(r.feed(parts[2], &mut out), DataStatus::More);
        assert_eq!(r.feed(parts[3], &mut out), DataStatus::Done { consumed: 1 });
        assert!(r.is_done());
        assert_eq!(out, b"hello\r\n");
    }

    #[test]
    fn size_limit_stops_storing_but_keeps_reading() {
        let mut r = DataReceiver::new(10);
        let mut out = Vec::new();
        assert_eq!(r.feed(b"0123456789", &mut out), DataStatus::More);
        assert!(!r.exceeded());
        assert_eq!(r.feed(b"abc\r\n", &mut out), DataStatus::More);
        assert!(r.exceeded());
        assert_eq!(out, b"0123456789");
        let mut r2 = DataReceiver::new(10);
        let mut out2 = Vec::new();
        r2.feed(b"01234567", &mut out2);
        r2.feed(b"89abc", &mut out2);
        assert_eq!(
            out2, b"0123456789",
            "the first max_size octets, whatever the chunks"
        );
        let st = r.feed(&vec![b'x'; 100_000], &mut out);
        assert_eq!(st, DataStatus::More);
        assert_eq!(out.len(), 10);
        assert_eq!(
            r.feed(b"\r\n.\r\nQUIT\r\n", &mut out),
            DataStatus::Done { consumed: 5 }
        );
        assert_eq!(r.size(), 10 + 5 + 100_000 + 2);
    }

    #[test]
    fn feeding_after_done_consumes_nothing() {
        let mut r = DataReceiver::new(10);
        let mut out = Vec::new();
        assert_eq!(r.feed(b".\r\n", &mut out), DataStatus::Done { consumed: 3 });
        assert_eq!(r.feed(b"more", &mut out), DataStatus::Done { consumed: 0 });
        assert_eq!(r.feed(b"", &mut out), DataStatus::Done { consumed: 0 });
    }

    #[test]
    fn whole_message_bare_newline_check() {
        for clean in [
            &b""[..],
            b"a\r\nb\r\n",
            b"\r\n\r\n.\r\n",
            b"no line end",
            b"\x00.\r\n",
        ] {
            assert!(!has_bare_newline(clean), "{clean:?}");
        }
        for bare in [
            &b"\n"[..],
            b"\r",
            b"a\nb",
            b"a\rb",
            b"a\r\n.\r\r\n",
            b"a\r\r\n",
            b"a\n\r",
            b"a\r\n\n",
            b"ends in cr\r",
        ] {
            assert!(has_bare_newline(bare), "{bare:?}");
        }
        // It agrees with the streaming receiver on every smuggling ending.
        for ending in [
            &b"\n.\n"[..],
            b"\n.\r",
            b"\r.\n",
            b"\r.\r",
            b"\n.\r\n",
            b"\r.\r\n",
            b"\r\n.\r\r\n",
            b"\r\r\n.\r\r\n",
            b"\r\n\x00.\r\n",
        ] {
            let mut msg = b"Subject: x\r\n\r\nbody".to_vec();
            msg.extend_from_slice(ending);
            msg.extend_from_slice(b"tail\r\n");
            let mut input = msg.clone();
            input.extend_from_slice(b".\r\n");
            let (_, consumed, bare) = both(&input);
            assert_eq!(consumed, Some(input.len()), "{ending:?}");
            assert_eq!(has_bare_newline(&msg), bare, "{ending:?}");
        }
    }

    #[test]
    fn endless_data_becomes_absurd_past_twice_the_limit() {
        let max = 4 << 20;
        let mut r = DataReceiver::new(max);
        let mut out = Vec::new();
        let line = [b'x'; 1000];
        let mut fed = 0u64;
        while !r.is_absurd() {
            assert_eq!(r.feed(&line, &mut out), DataStatus::More);
            fed += 1000;
            assert!(fed <= 2 * max + 1000, "never absurd");
        }
        assert!(fed > 2 * max);
        assert_eq!(out.len() as u64, max);
        // A small limit still allows MAX_OVERLONG_SKIP past it.
        let mut r = DataReceiver::new(10);
        r.feed(&[b'y'; 1 << 20], &mut Vec::new());
        assert!(!r.is_absurd());
        r.feed(&[b'y'; 100], &mut Vec::new());
        assert!(r.is_absurd());
        // A finished message never is.
        let mut r = DataReceiver::new(1);
        let mut out = Vec::new();
        r.feed(&[b'z'; 3 << 20], &mut out);
        assert!(matches!(
            r.feed(b"\r\n.\r\n", &mut out),
            DataStatus::Done { .. }
        ));
        assert!(!r.is_absurd());
    }
}
