//! The POP3 client (RFC 1939): USER/PASS, STAT, UIDL, then RETR of every message
//! (mode `retr`), or LIST only (mode `list`, for the growth workload). Nothing is
//! deleted, so every round sees the same maildrop; except in mode `dele` (RETR and
//! DELE of every message, applied by the QUIT), which empties it, as `rabid` does.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::conn::{Conn, protocol_err};
use crate::smtp::show;
use crate::stats::Stats;
use crate::{Common, Target};

/// Reads a one-line status; an error unless it is `+OK`.
pub async fn status<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<S>,
    what: &str,
) -> io::Result<Vec<u8>> {
    let line = c.line().await?;
    if !line.starts_with(b"+OK") {
        return Err(protocol_err(format!("{what}: {}", show(&line))));
    }
    Ok(line)
}

/// Reads a multi-line body up to the terminating `.` line (RFC 1939 §3); returns
/// the number of lines and their bytes (dot-stuffing included).
pub async fn multiline<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<S>,
) -> io::Result<(u64, u64)> {
    c.dot_body().await
}

/// Logs in with USER/PASS after reading the greeting.
pub async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<S>,
    user: &str,
    pass: &str,
) -> io::Result<()> {
    status(c, "greeting").await?;
    c.send(format!("USER {user}\r\n").as_bytes()).await?;
    status(c, "USER").await?;
    c.send(format!("PASS {pass}\r\n").as_bytes()).await?;
    status(c, "PASS").await?;
    Ok(())
}

/// STAT: the message count.
pub async fn stat<S: AsyncRead + AsyncWrite + Unpin>(c: &mut Conn<S>) -> io::Result<u64> {
    c.send(b"STAT\r\n").await?;
    let line = status(c, "STAT").await?;
    let text = show(&line);
    text.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| protocol_err(format!("STAT: {text}")))
}

/// What one POP3 client does.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Mode {
    /// UIDL, then RETR every message (each RETR is one operation).
    Retr,
    /// LIST (each LIST is one operation), repeated.
    List,
    /// UIDL, then RETR and DELE of every message (each RETR is one operation); the
    /// QUIT applies the deletions (RFC 1939 §6), so the maildrop is empty after one
    /// round. For the cross-check with `rabid`, which downloads the same way.
    Dele,
}

/// One client: logs in as user `id`, and per round runs the mode on the maildrop.
/// `rounds` > 0 runs exactly that many rounds (ignoring the budget).
pub async fn worker(
    t: Arc<Target>,
    common: Arc<Common>,
    id: usize,
    mode: Mode,
    rounds: u64,
) -> Stats {
    let mut st = Stats::new();
    let (user, pass) = common.user(id);
    let mut round = 0u64;
    while if rounds > 0 {
        round < rounds
    } else {
        !t.budget.done()
    } {
        round += 1;
        let mut c = match crate::conn::connect(t.addr(id), t.source(id)).await {
            Ok(c) => c,
            Err(e) => {
                st.error(format!("connect: {e}"));
                t.budget.fail();
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(e) = one_round(&mut c, &mut st, &t, &user, &pass, mode, rounds > 0).await {
            st.error(e);
            t.budget.fail();
            continue;
        }
        let quit = quit(&mut c).await;
        if mode == Mode::Dele
            && let Err(e) = quit
        {
            // The deletions were not applied: the round did not do its work.
            st.error(e);
            t.budget.fail();
        }
    }
    st
}

/// QUIT (RFC 1939 §6): in the TRANSACTION state it commits the deletions, and `+OK`
/// says they are done.
async fn quit<S: AsyncRead + AsyncWrite + Unpin>(c: &mut Conn<S>) -> io::Result<()> {
    c.send(b"QUIT\r\n").await?;
    status(c, "QUIT").await.map(drop)
}

async fn one_round<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<S>,
    st: &mut Stats,
    t: &Target,
    user: &str,
    pass: &str,
    mode: Mode,
    whole: bool,
) -> io::Result<()> {
    login(c, user, pass).await?;
    let n = stat(c).await?;
    match mode {
        Mode::List => {
            while t.budget.take() {
                let t0 = Instant::now();
                c.send(b"LIST\r\n").await?;
                status(c, "LIST").await?;
                let (lines, _) = multiline(c).await?;
                if lines != n {
                    return Err(protocol_err(format!("LIST gave {lines} lines, STAT {n}")));
                }
                st.record(t0.elapsed());
                if whole {
                    break;
                }
            }
        }
        Mode::Retr | Mode::Dele => {
            c.send(b"UIDL\r\n").await?;
            status(c, "UIDL").await?;
            let (lines, _) = multiline(c).await?;
            if lines != n {
                return Err(protocol_err(format!("UIDL gave {lines} lines, STAT {n}")));
            }
            for i in 1..=n {
                if !whole && !t.budget.take() {
                    break;
                }
                let t0 = Instant::now();
                c.send(format!("RETR {i}\r\n").as_bytes()).await?;
                status(c, "RETR").await?;
                let (_, bytes) = multiline(c).await?;
                st.record(t0.elapsed());
                st.bytes += bytes;
                if mode == Mode::Dele {
                    c.send(format!("DELE {i}\r\n").as_bytes()).await?;
                    status(c, "DELE").await?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn multiline_stops_at_the_dot_and_counts() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut c = Conn::new(a);
        b.write_all(b"+OK 2 messages\r\n1 abc\r\n..2 stuffed\r\n.\r\n+OK next\r\n")
            .await
            .unwrap();
        status(&mut c, "x").await.unwrap();
        assert_eq!(multiline(&mut c).await.unwrap(), (2, 20));
        status(&mut c, "x").await.unwrap();
    }

    #[tokio::test]
    async fn multiline_split_into_single_octets() {
        // Every octet in a read of its own: the terminator and the stuffed dots
        // straddle reads.
        let (a, mut b) = tokio::io::duplex(1);
        let mut c = Conn::new(a);
        let writer = tokio::spawn(async move {
            let body = b"+OK\r\n.\rx\r\n..\r\n.x\n\r\n.\n+OK next\r\n";
            for byte in body {
                b.write_all(&[*byte]).await.unwrap();
            }
            b
        });
        status(&mut c, "x").await.unwrap();
        // ".\rx", "..", ".x" (LF only), "" and then ".\n" ends it.
        assert_eq!(multiline(&mut c).await.unwrap(), (4, 14));
        status(&mut c, "x").await.unwrap();
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn dele_mode_deletes_every_message_and_quits() {
        // A scripted server with two messages: the client must RETR and DELE each,
        // in order, and end with QUIT (whose +OK applies the deletions).
        let (a, mut b) = tokio::io::duplex(4096);
        let mut c = Conn::new(a);
        b.write_all(
            b"+OK hi\r\n+OK send PASS\r\n+OK in\r\n+OK 2 20\r\n\
              +OK\r\n1 a\r\n2 b\r\n.\r\n\
              +OK\r\nm1\r\n.\r\n+OK deleted\r\n\
              +OK\r\nm2\r\n.\r\n+OK deleted\r\n+OK bye\r\n",
        )
        .await
        .unwrap();
        let t = Target {
            addrs: vec![],
            sources: vec![],
            budget: crate::stats::Budget::Count(std::sync::atomic::AtomicU64::new(10)),
        };
        let mut st = Stats::new();
        one_round(&mut c, &mut st, &t, "u", "p", Mode::Dele, true)
            .await
            .unwrap();
        quit(&mut c).await.unwrap();
        assert_eq!(st.ops, 2);
        drop(c);
        let mut sent = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut b, &mut sent)
            .await
            .unwrap();
        assert_eq!(
            sent,
            "USER u\r\nPASS p\r\nSTAT\r\nUIDL\r\nRETR 1\r\nDELE 1\r\nRETR 2\r\nDELE 2\r\nQUIT\r\n"
        );
    }

    #[tokio::test]
    async fn err_status_and_bad_stat_are_errors() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut c = Conn::new(a);
        b.write_all(b"-ERR [AUTH] no\r\n+OK 7 1234\r\n+OK\r\n")
            .await
            .unwrap();
        let e = status(&mut c, "PASS").await.unwrap_err();
        assert!(e.to_string().contains("PASS: -ERR [AUTH] no"), "{e}");
        assert_eq!(stat(&mut c).await.unwrap(), 7);
        assert!(stat(&mut c).await.is_err());
    }
}
