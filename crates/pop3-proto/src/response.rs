//! Responses (RFC 1939 §3): `+OK`/`-ERR` status lines, RFC 2449 §8 response codes, SASL
//! continuations (RFC 5034 §4), and dot-stuffed multi-line bodies.

/// Extended response codes (RFC 2449 §8, RFC 3206, RFC 6856 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespCode {
    /// `[IN-USE]`: the maildrop is locked by another session (RFC 2449 §8.1.2).
    InUse,
    /// `[LOGIN-DELAY]`: logged in too soon after the last login (RFC 2449 §8.1.1).
    LoginDelay,
    /// `[SYS/TEMP]`: a temporary server problem; retry later (RFC 3206 §4).
    SysTemp,
    /// `[SYS/PERM]`: a permanent server problem (RFC 3206 §4).
    SysPerm,
    /// `[AUTH]`: the credentials were wrong or not allowed (RFC 3206 §5).
    Auth,
    /// `[UTF8]`: the request needs UTF-8 mode (RFC 6856 §5).
    Utf8,
}

impl RespCode {
    /// The code as it appears between the brackets.
    pub fn as_str(self) -> &'static str {
        match self {
            RespCode::InUse => "IN-USE",
            RespCode::LoginDelay => "LOGIN-DELAY",
            RespCode::SysTemp => "SYS/TEMP",
            RespCode::SysPerm => "SYS/PERM",
            RespCode::Auth => "AUTH",
            RespCode::Utf8 => "UTF8",
        }
    }
}

/// Writes `+OK text` CRLF (just `+OK` when `text` is empty).
pub fn ok(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"+OK");
    if !text.is_empty() {
        out.push(b' ');
        push_clean(out, text);
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes `-ERR [CODE] text` CRLF.
pub fn err(out: &mut Vec<u8>, code: Option<RespCode>, text: &str) {
    out.extend_from_slice(b"-ERR");
    if let Some(code) = code {
        out.extend_from_slice(b" [");
        out.extend_from_slice(code.as_str().as_bytes());
        out.push(b']');
    }
    if !text.is_empty() {
        out.push(b' ');
        push_clean(out, text);
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes a SASL continuation `+ base64` CRLF (RFC 5034 §4); `encoded` is already base64.
pub fn continuation(out: &mut Vec<u8>, encoded: &str) {
    out.extend_from_slice(b"+ ");
    out.extend_from_slice(encoded.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes one line of a multi-line response (a capability, a scan listing), dot-stuffed.
pub fn line(out: &mut Vec<u8>, text: &str) {
    if text.starts_with('.') {
        out.push(b'.');
    }
    push_clean(out, text);
    out.extend_from_slice(b"\r\n");
}

/// Writes the `.` CRLF that ends a multi-line response.
pub fn end(out: &mut Vec<u8>) {
    out.extend_from_slice(b".\r\n");
}

/// Status text never carries CR or LF (it would end the line early and let text from
/// elsewhere, such as a client-sent name, forge a response).
fn push_clean(out: &mut Vec<u8>, text: &str) {
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
}

/// Streams a message body as a multi-line response: every line that starts with `.`
/// gets another `.` in front (RFC 1939 §3), and [`DotStuffer::finish`] closes the
/// response with `CRLF.CRLF`, adding a CRLF first if the body did not end with one.
///
/// The input may arrive in chunks of any size; state carries across them.
#[derive(Debug)]
pub struct DotStuffer {
    at_line_start: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl DotStuffer {
    /// A stuffer at the start of the body.
    pub fn new() -> Self {
        DotStuffer {
            at_line_start: true,
        }
    }

    /// Appends `chunk`, dot-stuffed, to `out`: copied in spans between the line
    /// starts that hold a `.` (found with memchr's substring search for `\n.`), so
    /// the cost is one scan and one copy, not a step per line.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let Some(&last) = chunk.last() else {
            return;
        };
        out.reserve(chunk.len() + 8);
        if self.at_line_start && chunk.first() == Some(&b'.') {
            out.push(b'.');
        }
        let mut start = 0;
        // Every other line start in the chunk follows one of its `\n`s.
        for i in memchr::memmem::find_iter(chunk, b"\n.") {
            out.extend_from_slice(chunk.get(start..=i).unwrap_or_default());
            out.push(b'.');
            start = i + 1;
        }
        out.extend_from_slice(chunk.get(start..).unwrap_or_default());
        self.at_line_start = last == b'\n';
    }

    /// Ends the response: CRLF if the body did not end a line, then `.` CRLF.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.at_line_start = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let mut out = Vec::new();
        ok(&mut out, "2 320");
        err(&mut out, Some(RespCode::InUse), "maildrop locked");
        err(&mut out, None, "no such message");
        ok(&mut out, "");
        assert_eq!(
            out,
            b"+OK 2 320\r\n-ERR [IN-USE] maildrop locked\r\n-ERR no such message\r\n+OK\r\n"
        );
    }

    #[test]
    fn status_text_cannot_break_the_line() {
        let mut out = Vec::new();
        err(&mut out, None, "bad\r\n+OK forged");
        assert_eq!(out, b"-ERR bad  +OK forged\r\n");
    }

    #[test]
    fn dot_stuffing_across_chunks() {
        let mut s = DotStuffer::new();
        let mut out = Vec::new();
        s.push(b".hidden\r\nok\r", &mut out);
        s.push(b"\n", &mut out);
        s.push(b".", &mut out);
        s.push(b"\r\n..two\r\nlast", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"..hidden\r\nok\r\n..\r\n...two\r\nlast\r\n.\r\n");
    }

    /// Any cut of a body into chunks stuffs it as a line-by-line reading does.
    #[test]
    fn dot_stuffing_agrees_with_line_by_line_for_every_cut() {
        let body: &[u8] = b".a\r\n..b\r\nc.\r\n.\r\n\r\n.\n.d\n\n..";
        let mut want = Vec::new();
        for line in body.split_inclusive(|&b| b == b'\n') {
            if line.first() == Some(&b'.') {
                want.push(b'.');
            }
            want.extend_from_slice(line);
        }
        for a in 0..=body.len() {
            for b in a..=body.len() {
                let mut s = DotStuffer::new();
                let mut out = Vec::new();
                s.push(&body[..a], &mut out);
                s.push(&body[a..b], &mut out);
                s.push(&body[b..], &mut out);
                assert_eq!(out, want, "cut at {a} and {b}");
            }
        }
    }

    #[test]
    fn body_ending_in_crlf_gets_just_the_dot() {
        let mut s = DotStuffer::new();
        let mut out = Vec::new();
        s.push(b"a\r\n", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"a\r\n.\r\n");
        let mut s = DotStuffer::new();
        let mut out = Vec::new();
        s.finish(&mut out);
        assert_eq!(out, b".\r\n");
    }

    #[test]
    fn listing_lines_are_stuffed() {
        let mut out = Vec::new();
        line(&mut out, ".x");
        line(&mut out, "TOP");
        end(&mut out);
        assert_eq!(out, b"..x\r\nTOP\r\n.\r\n");
    }
}
