//! The SMTP client (RFC 5321): EHLO once per connection, then MAIL, RCPT, DATA per
//! message on the same connection. A message counts as done at the 250 reply to its
//! final dot; its latency runs from MAIL FROM to that reply.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::conn::{Conn, protocol_err};
use crate::stats::Stats;
use crate::{Common, Rng, Target};

/// One SMTP reply: its code and the text of its last line.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code (0 if the line had none).
    pub code: u16,
    /// The last line, without CRLF.
    pub text: String,
}

/// Reads one (possibly multi-line, `250-…` then `250 …`) reply (RFC 5321 §4.2.1).
pub async fn read_reply<S: AsyncRead + AsyncWrite + Unpin>(c: &mut Conn<S>) -> io::Result<Reply> {
    // A reply of more than 1,000 lines is not one a server sends.
    for _ in 0..1000 {
        let line = c.line().await?;
        let code = line
            .get(..3)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| d.parse::<u16>().ok())
            .ok_or_else(|| protocol_err(format!("not an SMTP reply: {}", show(&line))))?;
        if line.get(3) != Some(&b'-') {
            return Ok(Reply {
                code,
                text: show(&line),
            });
        }
    }
    Err(protocol_err("SMTP reply of over 1,000 lines"))
}

/// A line for an error message: lossy UTF-8, CRLF removed, at most 200 characters.
pub fn show(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(line);
    s.trim_end_matches(['\r', '\n']).chars().take(200).collect()
}

async fn expect<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<S>,
    what: &str,
    want: u16,
) -> io::Result<()> {
    let r = read_reply(c).await?;
    if r.code != want {
        return Err(protocol_err(format!("{what}: {}", r.text)));
    }
    Ok(())
}

/// A test message of about `size` bytes (CRLF lines, none starting with a dot, so
/// no dot-stuffing is needed), with a unique Message-ID from `seq`.
pub fn message(seq: u64, size: usize, from: &str, to: &str) -> Vec<u8> {
    let mut m = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: loadgen message {seq}\r\n\
         Date: Fri, 27 Nov 2026 00:00:00 +0000\r\nMessage-ID: <{seq}.loadgen@example.org>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    .into_bytes();
    // Lines of letters only (never a dot at the start of a line): a line of n letters
    // from letter r on is `LETTERS[r..r + n]`, copied whole, so that making a 100 KiB
    // message costs the load generator little of the CPU it shares with the server.
    const LETTERS: &[u8] =
        b"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwx";
    m.reserve(size.saturating_sub(m.len()).saturating_add(2));
    let mut i = seq;
    while m.len() + 2 < size {
        let n = (size - m.len() - 2).min(76);
        let r = (i % 26) as usize;
        m.extend_from_slice(LETTERS.get(r..r + n).unwrap_or_default());
        m.extend_from_slice(b"\r\n");
        i += 7;
    }
    if !m.ends_with(b"\r\n") {
        m.extend_from_slice(b"\r\n");
    }
    m
}

/// Sends one message on an open, greeted connection and waits for the final reply.
pub async fn send_one<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<S>,
    from: &str,
    to: &str,
    body: &[u8],
) -> io::Result<()> {
    c.send(format!("MAIL FROM:<{from}>\r\n").as_bytes()).await?;
    expect(c, "MAIL", 250).await?;
    c.send(format!("RCPT TO:<{to}>\r\n").as_bytes()).await?;
    expect(c, "RCPT", 250).await?;
    c.send(b"DATA\r\n").await?;
    expect(c, "DATA", 354).await?;
    let mut data = Vec::with_capacity(body.len() + 5);
    data.extend_from_slice(body);
    data.extend_from_slice(b".\r\n");
    c.send(&data).await?;
    expect(c, "end of data", 250).await
}

/// Greets: reads the 220 banner and does EHLO.
pub async fn hello<S: AsyncRead + AsyncWrite + Unpin>(c: &mut Conn<S>) -> io::Result<()> {
    expect(c, "greeting", 220).await?;
    c.send(b"EHLO loadgen.example.org\r\n").await?;
    expect(c, "EHLO", 250).await
}

/// One sender: connects, sends messages while the budget lasts (reconnecting after
/// errors), quits.
pub async fn worker(t: Arc<Target>, common: Arc<Common>, id: usize, size: usize) -> Stats {
    let mut st = Stats::new();
    let mut rng = Rng::new(id as u64 + 1);
    let mut seq = (id as u64) << 32;
    'conn: while !t.budget.done() {
        let mut c = match crate::conn::connect(t.addr(id), t.source(id)).await {
            Ok(c) => c,
            Err(e) => {
                st.error(format!("connect: {e}"));
                t.budget.fail();
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(e) = hello(&mut c).await {
            st.error(e);
            t.budget.fail();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        }
        while t.budget.take() {
            seq += 1;
            let to = common.rcpt(rng.below(common.rcpt_count.max(1) as u64) as usize);
            let body = message(seq, size, &common.from, &to);
            let t0 = Instant::now();
            match send_one(&mut c, &common.from, &to, &body).await {
                Ok(()) => {
                    st.record(t0.elapsed());
                    st.bytes += body.len() as u64;
                }
                Err(e) => {
                    st.error(e);
                    continue 'conn;
                }
            }
        }
        let _ = c.send(b"QUIT\r\n").await;
        let _ = read_reply(&mut c).await;
        break;
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    #[tokio::test]
    async fn multi_line_reply_ends_at_space() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut c = Conn::new(a);
        b.write_all(b"250-mx\r\n250-PIPELINING\r\n250 SIZE 100\r\n")
            .await
            .unwrap();
        let r = read_reply(&mut c).await.unwrap();
        assert_eq!(
            r,
            Reply {
                code: 250,
                text: "250 SIZE 100".into()
            }
        );
        b.write_all(b"hello\r\n").await.unwrap();
        assert!(read_reply(&mut c).await.is_err());
    }

    #[tokio::test]
    async fn a_dead_server_ends_a_counted_run_with_errors() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let budget = crate::stats::Budget::Count(std::sync::atomic::AtomicU64::new(3));
        let t = Arc::new(Target {
            addrs: vec![addr],
            sources: vec![],
            budget,
        });
        let common = Arc::new(Common {
            users: vec![("u".into(), "p".into())],
            rcpt: "r%d@x.test".into(),
            first: 1,
            rcpt_count: 1,
            from: "s@x.test".into(),
        });
        let st = worker(t, common, 0, 1000).await;
        assert_eq!((st.ops, st.errors), (0, 3));
        assert!(
            st.first_errors[0].starts_with("connect:"),
            "{:?}",
            st.first_errors
        );
    }

    #[test]
    fn message_has_the_size_and_no_leading_dots() {
        for size in [300, 4096, 100 * 1024] {
            let m = message(9, size, "a@x.test", "b@y.test");
            assert!(m.len().abs_diff(size) <= 2, "{} vs {size}", m.len());
            assert!(m.ends_with(b"\r\n"));
            assert!(!m.windows(3).any(|w| w == b"\n.\r" || w == b"\n.."));
            assert!(m.split(|&b| b == b'\n').all(|l| l.len() <= 1000));
        }
    }

    #[test]
    fn message_lines_run_through_the_alphabet() {
        // Line j (from 0) of the body starts at letter (seq + 7j) mod 26 and goes on
        // letter by letter: the messages of earlier runs, byte for byte.
        let seq = 123_456_789;
        let m = message(seq, 100 * 1024, "a@x.test", "b@y.test");
        let at = m
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |p| p + 4);
        let body = m.get(at..).unwrap_or_default();
        let lines: Vec<&[u8]> = body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert!(lines.len() > 1000, "{}", lines.len());
        for (j, line) in lines.iter().enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let want: Vec<u8> = (0..line.len() as u64)
                .map(|k| b'a' + ((seq + 7 * j as u64 + k) % 26) as u8)
                .collect();
            assert_eq!(line, &want[..], "line {j}");
            assert!(line.len() == 76 || j == lines.len() - 1);
        }
    }

    #[tokio::test]
    async fn a_transaction_is_mail_rcpt_data_dot() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut r = BufReader::new(b);
            let mut seen = Vec::new();
            r.get_mut().write_all(b"220 hi\r\n").await.unwrap();
            for reply in [
                "250-x\r\n250 ok\r\n",
                "250 ok\r\n",
                "250 ok\r\n",
                "354 go\r\n",
            ] {
                let mut l = String::new();
                r.read_line(&mut l).await.unwrap();
                seen.push(l);
                r.get_mut().write_all(reply.as_bytes()).await.unwrap();
            }
            let mut body = String::new();
            loop {
                let mut l = String::new();
                r.read_line(&mut l).await.unwrap();
                if l == ".\r\n" {
                    break;
                }
                body.push_str(&l);
            }
            r.get_mut().write_all(b"250 queued\r\n").await.unwrap();
            (seen, body)
        });
        let mut c = Conn::new(a);
        hello(&mut c).await.unwrap();
        let msg = message(1, 500, "s@x.test", "r@y.test");
        send_one(&mut c, "s@x.test", "r@y.test", &msg)
            .await
            .unwrap();
        let (seen, body) = server.await.unwrap();
        assert_eq!(seen[0], "EHLO loadgen.example.org\r\n");
        assert_eq!(seen[1], "MAIL FROM:<s@x.test>\r\n");
        assert_eq!(seen[2], "RCPT TO:<r@y.test>\r\n");
        assert_eq!(seen[3], "DATA\r\n");
        assert_eq!(body.as_bytes(), &msg[..]);
    }
}
