//! What goes on the wire: the DATA stream (dot-stuffing, RFC 5321 §4.5.2; long lines
//! wrapped, §4.5.3.1.6), the 8-bit to 7-bit conversion for hops without 8BITMIME
//! (RFC 6152 §3 leaves it to the MTA: we use quoted-printable, RFC 2045 §6.7), and
//! xtext (RFC 3461 §4) for ENVID and ORCPT.

use buudien_message::header_len;

/// The longest text line SMTP carries, without its CRLF (RFC 5321 §4.5.3.1.6).
pub const MAX_LINE: usize = 998;
/// Quoted-printable lines are at most 76 characters (RFC 2045 §6.7 rule 5).
const QP_LINE: usize = 76;
/// How deep multiparts and embedded messages are converted.
const MAX_DEPTH: usize = 32;

/// True when any octet has the high bit set.
pub fn has_8bit(bytes: &[u8]) -> bool {
    bytes.iter().any(|b| *b >= 0x80)
}

/// The DATA stream for a message (CRLF lines): lines starting with "." get another
/// one, lines longer than [`MAX_LINE`] are broken (header lines with CRLF SP, so the
/// field stays one field; body lines with CRLF, as Postfix does), and the end marker
/// `.<CRLF>` follows a final CRLF.
///
/// A bare CR or LF in the message ends a line too and goes out as CRLF, with the next
/// line dot-stuffed like any other: only CRLF ends a line on the wire (RFC 5321
/// §2.3.8), so a next hop that would take `<LF>.<LF>` for the end of the data (the
/// SMTP smuggling class, CVE-2023-51764) never sees a bare LF or CR from us.
pub fn data_stream(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + msg.len() / 64 + 8);
    let hlen = header_len(msg);
    let mut pos = 0;
    while pos < msg.len() {
        let rest = msg.get(pos..).unwrap_or_default();
        let (line, used) = next_line(rest);
        let next = pos + used;
        let in_header = pos < hlen && !line.is_empty();
        let mut first = true;
        let mut chunk = line;
        loop {
            let room = if first || !in_header {
                MAX_LINE
            } else {
                MAX_LINE - 1
            };
            let (piece, tail) = chunk.split_at(chunk.len().min(room));
            if !first && in_header {
                out.push(b' ');
            } else if piece.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
            first = false;
            if tail.is_empty() {
                break;
            }
            chunk = tail;
        }
        pos = next;
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The first line of `rest` without its end, and the octets it used with its end:
/// CRLF, a bare LF, a bare CR, or the end of the input.
fn next_line(rest: &[u8]) -> (&[u8], usize) {
    let Some(i) = rest.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return (rest, rest.len());
    };
    let line = rest.get(..i).unwrap_or_default();
    let crlf = rest.get(i..i + 2) == Some(&b"\r\n"[..]);
    (line, i + if crlf { 2 } else { 1 })
}

/// Why a message could not be made 7-bit (the recipient then gets `5.6.3`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot convert to 7 bit: {0}")]
pub struct Unconvertible(pub &'static str);

/// Converts every 8-bit body part of a MIME message to quoted-printable and relabels
/// it (RFC 6152 §3, RFC 2045 §6.7); multiparts and message/rfc822 parts are converted
/// part by part, 7-bit parts are left byte for byte. Fails on 8-bit header fields
/// (only SMTPUTF8 carries those), `binary` or broken base64/QP content, and 8-bit
/// bytes outside any part.
pub fn to_7bit(msg: &[u8]) -> Result<Vec<u8>, Unconvertible> {
    let mut out = Vec::with_capacity(msg.len() + msg.len() / 8);
    convert(msg, false, 0, &mut out)?;
    Ok(out)
}

fn convert(
    entity: &[u8],
    digest: bool,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<(), Unconvertible> {
    if !has_8bit(entity) {
        out.extend_from_slice(entity);
        return Ok(());
    }
    if depth > MAX_DEPTH {
        return Err(Unconvertible("MIME structure too deep"));
    }
    let (headers, body) = split_entity(entity);
    if has_8bit(headers) {
        return Err(Unconvertible("8-bit header field"));
    }
    let default_type = if digest {
        "message/rfc822"
    } else {
        "text/plain"
    };
    let ct = header(headers, "content-type");
    let (mime, params) = match &ct {
        Some(v) => parse_content_type(v),
        None => (default_type.to_string(), Vec::new()),
    };
    let cte = header(headers, "content-transfer-encoding")
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_else(|| "7bit".into());
    if mime.starts_with("multipart/") {
        let boundary = params
            .iter()
            .find(|(k, _)| k == "boundary")
            .map(|(_, v)| v.clone())
            .ok_or(Unconvertible("multipart without boundary"))?;
        out.extend_from_slice(headers);
        return convert_multipart(body, &boundary, mime == "multipart/digest", depth, out);
    }
    if mime == "message/rfc822" {
        if cte != "7bit" && cte != "8bit" {
            return Err(Unconvertible("encoded message/rfc822 part"));
        }
        push_headers_with_cte(headers, Some("7bit"), out);
        return convert(body, false, depth + 1, out);
    }
    if mime.starts_with("message/") {
        return Err(Unconvertible("8-bit message/* part"));
    }
    if cte != "7bit" && cte != "8bit" {
        return Err(Unconvertible("8-bit octets in binary or encoded content"));
    }
    push_headers_with_cte(headers, Some("quoted-printable"), out);
    qp_encode(body, out);
    Ok(())
}

/// Splits an entity into its header section (with the empty line) and body. A part
/// that starts with CRLF has no header fields.
fn split_entity(entity: &[u8]) -> (&[u8], &[u8]) {
    let h = header_len(entity).min(entity.len());
    entity.split_at(h)
}

fn convert_multipart(
    body: &[u8],
    boundary: &str,
    digest: bool,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<(), Unconvertible> {
    let delim = format!("--{boundary}");
    // Start offsets of delimiter lines: at the body's start or after a CRLF.
    let mut lines = Vec::new();
    let mut pos = 0;
    while pos <= body.len() {
        let rest = body.get(pos..).unwrap_or_default();
        if is_delimiter(rest, delim.as_bytes()) {
            lines.push(pos);
        }
        match rest.windows(2).position(|w| w == b"\r\n") {
            Some(i) => pos += i + 2,
            None => break,
        }
    }
    let Some(&first) = lines.first() else {
        return Err(Unconvertible("multipart without parts"));
    };
    let preamble = body.get(..first).unwrap_or_default();
    if has_8bit(preamble) {
        return Err(Unconvertible("8-bit multipart preamble"));
    }
    out.extend_from_slice(preamble);
    for (i, &start) in lines.iter().enumerate() {
        let line_end = body
            .get(start..)
            .and_then(|r| r.windows(2).position(|w| w == b"\r\n"))
            .map(|e| start + e + 2)
            .unwrap_or(body.len());
        let delimiter = body.get(start..line_end).unwrap_or_default();
        out.extend_from_slice(delimiter);
        let close = delimiter
            .get(delim.len()..)
            .is_some_and(|t| t.starts_with(b"--"));
        if close {
            let epilogue = body.get(line_end..).unwrap_or_default();
            if has_8bit(epilogue) {
                return Err(Unconvertible("8-bit multipart epilogue"));
            }
            out.extend_from_slice(epilogue);
            return Ok(());
        }
        // The part runs to the CRLF before the next delimiter line (that CRLF belongs
        // to the delimiter, RFC 2046 §5.1.1).
        let next = lines.get(i + 1).copied();
        let part_end = match next {
            Some(n) => n.saturating_sub(2).max(line_end),
            None => body.len(),
        };
        let part = body.get(line_end..part_end).unwrap_or_default();
        convert(part, digest, depth + 1, out)?;
        if let Some(n) = next {
            out.extend_from_slice(body.get(part_end..n).unwrap_or_default());
        }
    }
    Ok(())
}

/// A boundary delimiter line (RFC 2046 §5.1.1): `--boundary`, then `--` (the close
/// delimiter) or only white space up to the line's end.
fn is_delimiter(line_start: &[u8], delim: &[u8]) -> bool {
    let Some(tail) = line_start.strip_prefix(delim) else {
        return false;
    };
    if tail.starts_with(b"--") {
        return true;
    }
    let end = tail
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(tail.len());
    tail.get(..end)
        .unwrap_or_default()
        .iter()
        .all(|b| *b == b' ' || *b == b'\t')
}

/// The header fields as `(name, raw field with continuation lines and CRLFs)`.
fn fields(headers: &[u8]) -> Vec<(String, &[u8])> {
    let mut out: Vec<(String, &[u8])> = Vec::new();
    let mut start = None::<usize>;
    let mut pos = 0;
    while pos < headers.len() {
        let rest = headers.get(pos..).unwrap_or_default();
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|i| pos + i + 2)
            .unwrap_or(headers.len());
        let line = headers.get(pos..end).unwrap_or_default();
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            if let Some(s) = start.take() {
                push_field(headers, s, pos, &mut out);
            }
            if line != b"\r\n" {
                start = Some(pos);
            }
        }
        pos = end;
    }
    if let Some(s) = start {
        push_field(headers, s, headers.len(), &mut out);
    }
    out
}

fn push_field<'a>(headers: &'a [u8], s: usize, e: usize, out: &mut Vec<(String, &'a [u8])>) {
    let raw = headers.get(s..e).unwrap_or_default();
    let name = raw
        .iter()
        .position(|b| *b == b':')
        .and_then(|i| raw.get(..i))
        .map(|n| String::from_utf8_lossy(n).trim().to_ascii_lowercase())
        .unwrap_or_default();
    out.push((name, raw));
}

/// The unfolded value of the first field called `name` (lowercase).
pub fn header(headers: &[u8], name: &str) -> Option<String> {
    let (_, raw) = fields(headers).into_iter().find(|(n, _)| n == name)?;
    let colon = raw.iter().position(|b| *b == b':')?;
    let value = raw.get(colon + 1..)?;
    let text = String::from_utf8_lossy(value);
    Some(
        text.split("\r\n")
            .map(|l| l.trim_end_matches('\r'))
            .collect::<Vec<_>>()
            .join("")
            .trim()
            .to_string(),
    )
}

/// Writes the header section with its Content-Transfer-Encoding replaced by `cte`.
fn push_headers_with_cte(headers: &[u8], cte: Option<&str>, out: &mut Vec<u8>) {
    for (name, raw) in fields(headers) {
        if name != "content-transfer-encoding" {
            out.extend_from_slice(raw);
        }
    }
    if let Some(cte) = cte {
        out.extend_from_slice(format!("Content-Transfer-Encoding: {cte}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// `type/subtype` (lowercase) and the parameters (names lowercase, values unquoted).
pub fn parse_content_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut parts = split_params(value).into_iter();
    let mime = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let params = parts
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            Some((k.trim().to_ascii_lowercase(), v.replace("\\\"", "\"")))
        })
        .collect();
    (mime, params)
}

/// Splits on `;` outside quoted strings.
fn split_params(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        match c {
            _ if escaped => {
                escaped = false;
                cur.push(c);
            }
            '\\' if quoted => {
                escaped = true;
                cur.push(c);
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ';' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Quoted-printable encoding of line-oriented content (RFC 2045 §6.7): CRLF stays a
/// hard line break, other octets outside `!`..`~` (and `=`) become `=XX`, trailing
/// white space is encoded, and soft breaks keep lines within 76 characters.
pub fn qp_encode(body: &[u8], out: &mut Vec<u8>) {
    let mut pos = 0;
    while pos < body.len() {
        let rest = body.get(pos..).unwrap_or_default();
        let (line, next, crlf) = match rest.windows(2).position(|w| w == b"\r\n") {
            Some(i) => (rest.get(..i).unwrap_or_default(), pos + i + 2, true),
            None => (rest, body.len(), false),
        };
        let mut width = 0;
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            let literal = match b {
                b'=' => false,
                b' ' | b'\t' => !last,
                33..=126 => true,
                _ => false,
            };
            let len = if literal { 1 } else { 3 };
            // Room for a soft break "=" unless this is the line's last token.
            let limit = if last { QP_LINE } else { QP_LINE - 1 };
            if width + len > limit {
                out.extend_from_slice(b"=\r\n");
                width = 0;
            }
            if literal {
                out.push(b);
            } else {
                out.extend_from_slice(format!("={b:02X}").as_bytes());
            }
            width += len;
        }
        if crlf {
            out.extend_from_slice(b"\r\n");
        }
        pos = next;
    }
}

/// xtext (RFC 3461 §4): `+` followed by two upper-case hex digits for `+`, `=`, and
/// octets outside `!`..`~`.
pub fn xtext_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// Decodes xtext; malformed `+` sequences are kept as they are.
pub fn xtext_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'+' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qp(s: &[u8]) -> String {
        let mut out = Vec::new();
        qp_encode(s, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn dot_stuffing() {
        let got = data_stream(b"Subject: x\r\n\r\n.hidden\r\n..two\r\nok\r\n.\r\n");
        assert_eq!(
            got,
            b"Subject: x\r\n\r\n..hidden\r\n...two\r\nok\r\n..\r\n.\r\n".to_vec()
        );
        assert_eq!(
            data_stream(b"A: b\r\n\r\nno newline"),
            b"A: b\r\n\r\nno newline\r\n.\r\n"
        );
        assert_eq!(data_stream(b""), b".\r\n");
    }

    /// A stored message with bare line ends never puts a bare CR or LF on the wire,
    /// and a "." after one is stuffed: `<LF>.<LF>` cannot end a next hop's DATA early.
    #[test]
    fn bare_line_ends_go_out_as_crlf_and_stuffed() {
        let smuggle = b"Subject: x\r\n\r\nbody\n.\nMAIL FROM:<e@x>\r\n\r.\r\n\r\r\n.\r\r\nend";
        let got = data_stream(smuggle);
        assert_eq!(
            got,
            b"Subject: x\r\n\r\nbody\r\n..\r\nMAIL FROM:<e@x>\r\n\r\n..\r\n\r\n\r\n..\r\n\r\nend\r\n.\r\n"
                .to_vec()
        );
        for ending in [
            &b"\n.\n"[..],
            b"\n.\r",
            b"\r.\n",
            b"\r.\r",
            b"\n.\r\n",
            b"\r.\r\n",
            b"\r\n.\n",
            b"\r\n.\r",
            b"\r\n.\r\r\n",
            b"\r\r\n.\r\r\n",
        ] {
            let mut msg = b"Subject: y\r\n\r\nbody".to_vec();
            msg.extend_from_slice(ending);
            msg.extend_from_slice(b"MAIL FROM:<e@x>\r\n");
            let out = data_stream(&msg);
            // Every CR is followed by LF and every LF preceded by CR.
            for (i, &b) in out.iter().enumerate() {
                if b == b'\r' {
                    assert_eq!(out.get(i + 1), Some(&b'\n'), "{ending:?}: {out:?}");
                }
                if b == b'\n' {
                    assert_eq!(out.get(i.wrapping_sub(1)), Some(&b'\r'), "{ending:?}");
                }
            }
            // The only <CRLF>.<CRLF> is the final one.
            let ends = out.windows(5).filter(|w| w == b"\r\n.\r\n").count();
            assert_eq!(ends, 1, "{ending:?}: {out:?}");
            assert!(out.ends_with(b"MAIL FROM:<e@x>\r\n.\r\n"), "{ending:?}");
        }
    }

    #[test]
    fn long_lines_are_wrapped() {
        let long_header = format!("X-Long: {}\r\n", "h".repeat(1500));
        let long_body = format!(".{}\r\n", "b".repeat(2500));
        let msg = format!("{long_header}\r\n{long_body}");
        let got = data_stream(msg.as_bytes());
        let text = String::from_utf8(got).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert!(lines.iter().all(|l| l.len() <= MAX_LINE + 1), "{lines:?}");
        // Header continuation starts with a space; the body's first piece is stuffed.
        assert!(lines[1].starts_with(' '));
        assert_eq!(lines[0].len() + lines[1].len() - 1, long_header.len() - 2);
        assert!(lines[3].starts_with(".."));
        let body: String = lines[3..6].concat();
        assert_eq!(
            body.len(),
            long_body.len() - 2 + 1,
            "only the stuffed dot added"
        );
    }

    #[test]
    fn quoted_printable() {
        assert_eq!(qp(b"plain text\r\n"), "plain text\r\n");
        assert_eq!(qp("Grüße = 1\r\n".as_bytes()), "Gr=C3=BC=C3=9Fe =3D 1\r\n");
        assert_eq!(qp(b"trailing \r\ntab\t"), "trailing=20\r\ntab=09");
        let long = qp("é".repeat(40).as_bytes());
        for l in long.split("\r\n") {
            assert!(l.len() <= 76, "{l}");
        }
        assert!(long.contains("=\r\n"));
        let long = qp("a".repeat(200).as_bytes());
        let lines: Vec<_> = long.split("=\r\n").collect();
        assert_eq!(lines.concat(), "a".repeat(200));
        assert!(lines.iter().all(|l| l.len() <= 75));
    }

    #[test]
    fn single_part_becomes_quoted_printable() {
        let msg = "From: a@b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n";
        let got = String::from_utf8(to_7bit(msg.as_bytes()).unwrap()).unwrap();
        assert_eq!(
            got,
            "From: a@b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe\r\n"
        );
        // Already 7-bit: untouched.
        let seven = b"Subject: x\r\n\r\nhello\r\n";
        assert_eq!(to_7bit(seven).unwrap(), seven.to_vec());
        // No MIME headers at all: text/plain, labelled.
        let got =
            String::from_utf8(to_7bit("Subject: x\r\n\r\nà\r\n".as_bytes()).unwrap()).unwrap();
        assert_eq!(
            got,
            "Subject: x\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A0\r\n"
        );
    }

    #[test]
    fn multipart_parts_are_converted_one_by_one() {
        let msg = "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npre\r\n--b1\r\nContent-Type: text/plain\r\n\r\nascii\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nnaïve\r\n--b1--\r\nepi\r\n";
        let got = String::from_utf8(to_7bit(msg.as_bytes()).unwrap()).unwrap();
        assert_eq!(
            got,
            "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npre\r\n--b1\r\nContent-Type: text/plain\r\n\r\nascii\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nna=C3=AFve\r\n--b1--\r\nepi\r\n"
        );
        assert!(!has_8bit(got.as_bytes()));
    }

    #[test]
    fn unconvertible() {
        assert!(to_7bit("Subject: Grüße\r\n\r\nx\r\n".as_bytes()).is_err());
        let bin = "Content-Transfer-Encoding: binary\r\n\r\n\u{e9}\r\n";
        assert!(to_7bit(bin.as_bytes()).is_err());
        let nob = "Content-Type: multipart/mixed\r\n\r\n\u{e9}\r\n";
        assert!(to_7bit(nob.as_bytes()).is_err());
    }

    #[test]
    fn xtext() {
        assert_eq!(xtext_encode("a+b=c d"), "a+2Bb+3Dc+20d");
        assert_eq!(xtext_decode("a+2Bb+3Dc+20d"), "a+b=c d");
        assert_eq!(xtext_decode("rfc822;bob+40x"), "rfc822;bob@x");
        assert_eq!(xtext_decode("bad+zz+4"), "bad+zz+4");
    }

    #[test]
    fn header_lookup_unfolds() {
        let h = b"Content-Type: multipart/mixed;\r\n boundary=\"x;y\"\r\nX: 1\r\n\r\n";
        let v = header(h, "content-type").unwrap();
        assert_eq!(v, "multipart/mixed; boundary=\"x;y\"");
        let (mime, params) = parse_content_type(&v);
        assert_eq!(mime, "multipart/mixed");
        assert_eq!(params, vec![("boundary".to_string(), "x;y".to_string())]);
        assert_eq!(header(h, "x").as_deref(), Some("1"));
        assert_eq!(header(h, "y"), None);
    }
}
