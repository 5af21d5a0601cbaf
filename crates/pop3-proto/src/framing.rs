//! Bounded line framing: the input buffer is cut at LF (CRLF or a lone LF), and a line
//! longer than the limit is reported once and then skipped through its end, so the
//! session resynchronises on the next line (STYLE: framing that resynchronises).

/// What the framer found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// One whole line, without its CRLF (or LF).
    Line(Vec<u8>),
    /// The current line passed the limit; its bytes are being dropped. Reported once
    /// per over-long line, as soon as the limit is passed.
    TooLong,
    /// The same over-long line went on for more than [`MAX_OVERLONG_SKIP`] octets
    /// after it was reported: the peer is not sending commands, and the session must
    /// close the connection. Reported once; the framer then drops whatever it is given.
    Endless,
    /// Need more bytes.
    Incomplete,
}

/// Octets of one over-long line skipped after its [`Frame::TooLong`] before the
/// framer gives up with [`Frame::Endless`] (1 MiB). A line a little over the limit
/// costs the client one error and the session goes on; a peer streaming megabytes
/// without a line end is cut off, so neither memory nor time is spent on it.
pub const MAX_OVERLONG_SKIP: usize = 1 << 20;

/// Cuts command lines out of a receive buffer, never holding more than `max` bytes of
/// one line.
#[derive(Debug)]
pub struct LineFramer {
    discarding: bool,
    /// Octets of the current over-long line dropped since it was reported.
    skipped: usize,
    /// [`Frame::Endless`] was reported.
    endless: bool,
}

impl Default for LineFramer {
    fn default() -> Self {
        Self::new()
    }
}

impl LineFramer {
    /// A framer at the start of a line.
    pub fn new() -> Self {
        LineFramer {
            discarding: false,
            skipped: 0,
            endless: false,
        }
    }

    /// Takes the next line out of `buf`. `max` counts the line with its CRLF.
    ///
    /// Bytes of an over-long line are removed from `buf` as they arrive, so `buf` never
    /// needs to grow past `max` plus one read.
    pub fn next_frame(&mut self, buf: &mut Vec<u8>, max: usize) -> Frame {
        if self.endless {
            buf.clear();
            return Frame::Incomplete;
        }
        loop {
            let newline = buf.iter().position(|&b| b == b'\n');
            if self.discarding {
                match newline {
                    Some(i) => {
                        buf.drain(..=i);
                        self.discarding = false;
                        self.skipped = 0;
                        continue;
                    }
                    None => {
                        self.skipped = self.skipped.saturating_add(buf.len());
                        buf.clear();
                        if self.skipped > MAX_OVERLONG_SKIP {
                            self.endless = true;
                            return Frame::Endless;
                        }
                        return Frame::Incomplete;
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
                    Frame::Line(line)
                }
                Some(i) => {
                    buf.drain(..=i);
                    Frame::TooLong
                }
                None if buf.len() >= max => {
                    // What is past the limit already counts as skipped.
                    self.skipped = buf.len() - max;
                    buf.clear();
                    self.discarding = true;
                    Frame::TooLong
                }
                None => Frame::Incomplete,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_pipelined_lines() {
        let mut f = LineFramer::new();
        let mut buf = b"STAT\r\nLIST\nNOOP".to_vec();
        assert_eq!(f.next_frame(&mut buf, 255), Frame::Line(b"STAT".to_vec()));
        assert_eq!(f.next_frame(&mut buf, 255), Frame::Line(b"LIST".to_vec()));
        assert_eq!(f.next_frame(&mut buf, 255), Frame::Incomplete);
        buf.extend_from_slice(b"\r\n");
        assert_eq!(f.next_frame(&mut buf, 255), Frame::Line(b"NOOP".to_vec()));
    }

    #[test]
    fn long_line_is_reported_once_and_skipped() {
        let mut f = LineFramer::new();
        let mut buf = vec![b'A'; 300];
        assert_eq!(f.next_frame(&mut buf, 255), Frame::TooLong);
        assert!(buf.is_empty());
        buf.extend_from_slice(&[b'B'; 500]);
        assert_eq!(f.next_frame(&mut buf, 255), Frame::Incomplete);
        assert!(buf.is_empty());
        buf.extend_from_slice(b"BBB\r\nQUIT\r\n");
        assert_eq!(f.next_frame(&mut buf, 255), Frame::Line(b"QUIT".to_vec()));
    }

    #[test]
    fn limit_counts_the_crlf() {
        let mut f = LineFramer::new();
        let mut line = vec![b'A'; 253];
        line.extend_from_slice(b"\r\n");
        let mut buf = line.clone();
        assert!(matches!(f.next_frame(&mut buf, 255), Frame::Line(_)));
        let mut buf = vec![b'A'; 254];
        buf.extend_from_slice(b"\r\n");
        assert_eq!(f.next_frame(&mut buf, 255), Frame::TooLong);
    }
    #[test]
    fn endless_line_is_cut_off_past_the_skip_bound() {
        let mut f = LineFramer::new();
        let mut buf = vec![b'A'; 255 + 10];
        assert_eq!(f.next_frame(&mut buf, 255), Frame::TooLong);
        let mut fed = 10;
        let mut got = Frame::Incomplete;
        while fed <= MAX_OVERLONG_SKIP + 4096 {
            buf.extend_from_slice(&[b'B'; 4096]);
            fed += 4096;
            got = f.next_frame(&mut buf, 255);
            assert!(buf.is_empty());
            if got != Frame::Incomplete {
                break;
            }
        }
        assert_eq!(got, Frame::Endless);
        assert!(
            fed > MAX_OVERLONG_SKIP && fed <= MAX_OVERLONG_SKIP + 4096,
            "{fed}"
        );
        // Nothing more is framed, even a whole line.
        buf.extend_from_slice(b"\r\nQUIT\r\n");
        assert_eq!(f.next_frame(&mut buf, 255), Frame::Incomplete);
        assert!(buf.is_empty());
    }

    #[test]
    fn each_long_line_gets_its_own_skip_allowance() {
        let mut f = LineFramer::new();
        for _ in 0..3 {
            let mut buf = vec![b'A'; MAX_OVERLONG_SKIP];
            assert_eq!(f.next_frame(&mut buf, 255), Frame::TooLong);
            buf.extend_from_slice(b"\r\nNOOP\r\n");
            assert_eq!(f.next_frame(&mut buf, 255), Frame::Line(b"NOOP".to_vec()));
        }
    }
}
