//! The IMAP client (RFC 9051, also RFC 3501 servers): tagged commands, untagged
//! responses with literals, APPEND with a synchronizing literal, IDLE (RFC 2177),
//! and the workloads built on them: a mixed session in the spirit of Dovecot
//! imaptest's default proportions, and single repeated commands for the growth runs.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::conn::{Conn, protocol_err};
use crate::smtp::show;
use crate::stats::Stats;
use crate::{Common, Rng, Target};

/// What one tagged command returned.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resp {
    /// True for a tagged OK.
    pub ok: bool,
    /// The tagged line, for error messages.
    pub tagged: String,
    /// The last `* N EXISTS` seen, if any.
    pub exists: Option<u64>,
    /// `* N EXPUNGE` responses seen.
    pub expunged: u64,
    /// Numbers in `* SEARCH` responses.
    pub found: u64,
    /// Untagged responses seen.
    pub untagged: u64,
    /// Literal bytes received.
    pub literal_bytes: u64,
}

/// A quoted string (RFC 9051 §4.3) for LOGIN arguments.
pub fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for ch in s.chars() {
        if ch == '"' || ch == '\\' {
            q.push('\\');
        }
        q.push(ch);
    }
    q.push('"');
    q
}

/// The size of a literal announced at the end of `line` (`{N}` or `{N+}` CRLF).
pub fn literal_len(line: &[u8]) -> Option<usize> {
    let body = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let body = body.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = body.get(open + 1..)?;
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Notes what an untagged response says about the mailbox (EXISTS, EXPUNGE, SEARCH).
fn note_untagged(r: &mut Resp, line: &[u8]) {
    if !line.starts_with(b"* ") {
        return;
    }
    r.untagged += 1;
    let text = show(line);
    let mut words = text.split_whitespace().skip(1);
    match (words.next(), words.next()) {
        (Some(n), Some(kind)) if kind.eq_ignore_ascii_case("EXISTS") => {
            r.exists = n.parse().ok();
        }
        (Some(_), Some(kind)) if kind.eq_ignore_ascii_case("EXPUNGE") => {
            r.expunged += 1;
        }
        (Some(kw), _) if kw.eq_ignore_ascii_case("SEARCH") => {
            r.found += text.split_whitespace().skip(2).count() as u64;
        }
        _ => {}
    }
}

/// A client session: the stream plus the tag counter.
pub struct Session<S> {
    /// The connection.
    pub c: Conn<S>,
    next: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Reads the greeting; an error unless it is `* OK`.
    pub async fn start(mut c: Conn<S>) -> io::Result<Self> {
        let g = c.line().await?;
        if !g.starts_with(b"* OK") {
            return Err(protocol_err(format!("greeting: {}", show(&g))));
        }
        Ok(Session { c, next: 0 })
    }

    fn tag(&mut self) -> String {
        self.next += 1;
        format!("a{}", self.next)
    }

    /// Reads responses up to the tagged one for `tag`, skipping literals.
    pub async fn finish(&mut self, tag: &str) -> io::Result<Resp> {
        let mut r = Resp::default();
        let prefix = format!("{tag} ");
        loop {
            let mut line = self.c.line().await?;
            // A response may carry several literals: read each, then the rest of it.
            let first = line.clone();
            while let Some(n) = literal_len(&line) {
                self.c.skip(n).await?;
                r.literal_bytes += n as u64;
                line = self.c.line().await?;
            }
            if first.starts_with(prefix.as_bytes()) {
                r.tagged = show(&first);
                r.ok = first
                    .get(prefix.len()..)
                    .is_some_and(|s| s.starts_with(b"OK"));
                return Ok(r);
            }
            note_untagged(&mut r, &first);
        }
    }

    /// Sends `tag command` and reads up to its tagged reply; an error unless OK.
    pub async fn run(&mut self, command: &str) -> io::Result<Resp> {
        let tag = self.tag();
        self.c
            .send(format!("{tag} {command}\r\n").as_bytes())
            .await?;
        let r = self.finish(&tag).await?;
        if !r.ok {
            let verb = command.split(' ').next().unwrap_or(command);
            return Err(protocol_err(format!("{verb}: {}", r.tagged)));
        }
        Ok(r)
    }

    /// Waits for a `+` continuation request, noting untagged responses in `r`.
    async fn continuation(&mut self, tag: &str, r: &mut Resp) -> io::Result<()> {
        for _ in 0..10_000 {
            let mut line = self.c.line().await?;
            if line.starts_with(b"+") {
                return Ok(());
            }
            if line.starts_with(format!("{tag} ").as_bytes()) {
                return Err(protocol_err(format!("no continuation: {}", show(&line))));
            }
            note_untagged(r, &line);
            while let Some(n) = literal_len(&line) {
                self.c.skip(n).await?;
                line = self.c.line().await?;
            }
        }
        Err(protocol_err("no continuation after 10,000 lines"))
    }

    /// LOGIN with quoted user and password.
    pub async fn login(&mut self, user: &str, pass: &str) -> io::Result<()> {
        self.run(&format!("LOGIN {} {}", quote(user), quote(pass)))
            .await
            .map(|_| ())
    }

    /// APPEND `msg` to `mailbox` with a synchronizing literal.
    pub async fn append(&mut self, mailbox: &str, msg: &[u8]) -> io::Result<Resp> {
        let tag = self.tag();
        self.c
            .send(format!("{tag} APPEND {mailbox} (\\Seen) {{{}}}\r\n", msg.len()).as_bytes())
            .await?;
        let mut before = Resp::default();
        self.continuation(&tag, &mut before).await?;
        let mut data = Vec::with_capacity(msg.len() + 2);
        data.extend_from_slice(msg);
        data.extend_from_slice(b"\r\n");
        self.c.send(&data).await?;
        let mut r = self.finish(&tag).await?;
        r.exists = r.exists.or(before.exists);
        r.expunged += before.expunged;
        if !r.ok {
            return Err(protocol_err(format!("APPEND: {}", r.tagged)));
        }
        Ok(r)
    }

    /// Enters IDLE and returns once the server has sent its continuation; the tag
    /// is kept for `idle_done`.
    pub async fn idle_start(&mut self) -> io::Result<String> {
        let tag = self.tag();
        self.c.send(format!("{tag} IDLE\r\n").as_bytes()).await?;
        self.continuation(&tag, &mut Resp::default()).await?;
        Ok(tag)
    }

    /// Ends IDLE with DONE and reads the tagged reply.
    pub async fn idle_done(&mut self, tag: &str) -> io::Result<Resp> {
        self.c.send(b"DONE\r\n").await?;
        let r = self.finish(tag).await?;
        if !r.ok {
            return Err(protocol_err(format!("IDLE: {}", r.tagged)));
        }
        Ok(r)
    }
}

/// One operation of the IMAP workloads.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Op {
    /// The mixed session (SELECT, FETCH headers, FETCH BODY[], STORE, UID SEARCH,
    /// APPEND, STORE \Deleted + EXPUNGE, IDLE).
    Mix,
    /// SELECT INBOX, repeated.
    Select,
    /// FETCH 1:* (FLAGS), repeated.
    FetchFlags,
    /// UID SEARCH BODY "loadgen-needle", repeated.
    SearchBody,
}

/// Per-cycle percentages of the mixed session: modelled on imaptest's defaults
/// (SELECT, FETCH, FETCH2 (BODY[]), DELETE+EXPUNGE and APPEND each cycle, STORE
/// 50 %), plus UID SEARCH 30 % and IDLE 10 %, which the benchmark also wants.
pub const MIX: [(&str, u64); 9] = [
    ("select", 100),
    ("fetch_headers", 100),
    ("fetch_body", 100),
    ("store_flags", 50),
    ("uid_search", 30),
    ("append", 100),
    ("store_deleted", 100),
    ("expunge", 100),
    ("idle", 10),
];

/// One client: logs in as user `id` and runs `op` while the budget lasts
/// (reconnecting after errors).
pub async fn worker(t: Arc<Target>, common: Arc<Common>, id: usize, op: Op, size: usize) -> Stats {
    let mut st = Stats::new();
    let (user, pass) = common.user(id);
    let mut rng = Rng::new(0x9e37_79b9 ^ id as u64);
    let mut seq = ((id as u64) << 32) | 0x8000_0000;
    while !t.budget.done() {
        let c = match crate::conn::connect(t.addr(id), t.source(id)).await {
            Ok(c) => c,
            Err(e) => {
                st.error(format!("connect: {e}"));
                t.budget.fail();
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let r = async {
            let mut s = Session::start(c).await?;
            s.login(&user, &pass).await?;
            let sel = s.run("SELECT INBOX").await?;
            let mut exists = sel.exists.unwrap_or(0);
            while t.budget.take() {
                match op {
                    Op::Mix => {
                        cycle(
                            &mut s,
                            &mut st,
                            &mut rng,
                            &mut exists,
                            &mut seq,
                            &common,
                            size,
                        )
                        .await?;
                    }
                    Op::Select => {
                        timed(&mut st, "select", s.run("SELECT INBOX")).await?;
                    }
                    Op::FetchFlags => {
                        timed(&mut st, "fetch_flags", s.run("FETCH 1:* (FLAGS)")).await?;
                    }
                    Op::SearchBody => {
                        timed(
                            &mut st,
                            "search_body",
                            s.run("UID SEARCH BODY \"loadgen-needle\""),
                        )
                        .await?;
                    }
                }
            }
            s.run("LOGOUT").await.map(|_| ())
        }
        .await;
        if let Err(e) = r {
            st.error(e);
            t.budget.fail();
        }
    }
    st
}

async fn timed(
    st: &mut Stats,
    name: &'static str,
    fut: impl std::future::Future<Output = io::Result<Resp>>,
) -> io::Result<Resp> {
    let t0 = Instant::now();
    let r = fut.await?;
    st.record_op(name, t0.elapsed());
    st.bytes += r.literal_bytes;
    Ok(r)
}

/// One cycle of the mixed session on the selected INBOX of `exists` messages.
async fn cycle<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut Session<S>,
    st: &mut Stats,
    rng: &mut Rng,
    exists: &mut u64,
    seq: &mut u64,
    common: &Common,
    size: usize,
) -> io::Result<()> {
    for (name, pct) in MIX {
        if rng.below(100) >= pct {
            continue;
        }
        let n = *exists;
        let pick = 1 + rng.below(n.max(1));
        let r = match name {
            "select" => timed(st, name, s.run("SELECT INBOX")).await?,
            _ if n == 0 && name != "append" && name != "idle" => continue,
            "fetch_headers" => {
                let lo = 1 + rng.below(n.saturating_sub(9).max(1));
                let hi = (lo + 9).min(n);
                let cmd = format!(
                    "FETCH {lo}:{hi} (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS \
                     (FROM TO SUBJECT DATE MESSAGE-ID)])"
                );
                timed(st, name, s.run(&cmd)).await?
            }
            "fetch_body" => timed(st, name, s.run(&format!("FETCH {pick} BODY.PEEK[]"))).await?,
            "store_flags" => {
                timed(st, name, s.run(&format!("STORE {pick} +FLAGS (\\Flagged)"))).await?
            }
            "uid_search" => timed(st, name, s.run("UID SEARCH FLAGGED")).await?,
            "append" => {
                *seq += 1;
                let msg = crate::smtp::message(*seq, size, &common.from, "inbox@example.test");
                timed(st, name, s.append("INBOX", &msg)).await?
            }
            "store_deleted" => {
                timed(
                    st,
                    name,
                    s.run(&format!("STORE {pick} +FLAGS.SILENT (\\Deleted)")),
                )
                .await?
            }
            "expunge" => timed(st, name, s.run("EXPUNGE")).await?,
            "idle" => {
                let t0 = Instant::now();
                let tag = s.idle_start().await?;
                let r = s.idle_done(&tag).await?;
                st.record_op(name, t0.elapsed());
                r
            }
            _ => continue,
        };
        if let Some(e) = r.exists {
            *exists = e;
        }
        *exists = exists.saturating_sub(r.expunged);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    #[test]
    fn literal_sizes() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {120}\r\n"), Some(120));
        assert_eq!(literal_len(b"* 1 FETCH (X {7+}\r\n"), Some(7));
        assert_eq!(literal_len(b"* 1 FETCH (X {abc}\r\n"), None);
        assert_eq!(literal_len(b"a1 OK done\r\n"), None);
    }

    #[test]
    fn quoting_escapes() {
        assert_eq!(quote(r#"a "b" \c"#), r#""a \"b\" \\c""#);
    }

    #[tokio::test]
    async fn finish_reads_literals_and_counts_untagged() {
        let (a, mut b) = tokio::io::duplex(4096);
        b.write_all(b"* OK ready\r\n").await.unwrap();
        let mut s = Session::start(Conn::new(a)).await.unwrap();
        b.write_all(
            b"* 3 EXISTS\r\n* 1 FETCH (BODY[] {11}\r\na1 OK fake)\r\n\r\n* 2 EXPUNGE\r\n\
              * SEARCH 4 9 12\r\na1 OK done\r\n",
        )
        .await
        .unwrap();
        let r = s.finish("a1").await.unwrap();
        assert!(r.ok);
        assert_eq!(r.tagged, "a1 OK done");
        assert_eq!(
            (r.exists, r.expunged, r.found, r.literal_bytes),
            (Some(3), 1, 3, 11)
        );
        // finish() was called without a tag of our own: the next tag is a1 again.
        b.write_all(b"a1 NO [OVERQUOTA] full\r\n").await.unwrap();
        let e = s.run("APPEND x").await.unwrap_err();
        assert!(e.to_string().contains("a1 NO [OVERQUOTA] full"), "{e}");
    }

    #[tokio::test]
    async fn append_waits_for_the_continuation_and_idle_ends_with_done() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut r = BufReader::new(b);
            r.get_mut().write_all(b"* OK hi\r\n").await.unwrap();
            let mut l = String::new();
            r.read_line(&mut l).await.unwrap();
            assert_eq!(l, "a1 APPEND INBOX (\\Seen) {4}\r\n");
            r.get_mut()
                .write_all(b"* 1 EXISTS\r\n+ go\r\n")
                .await
                .unwrap();
            let mut m = String::new();
            r.read_line(&mut m).await.unwrap();
            r.read_line(&mut m).await.unwrap();
            assert_eq!(
                m, "hi\r\n\r\n",
                "the literal, then the CRLF ending the command"
            );
            r.get_mut()
                .write_all(b"a1 OK [APPENDUID 1 1] done\r\n")
                .await
                .unwrap();
            let mut l = String::new();
            r.read_line(&mut l).await.unwrap();
            assert_eq!(l, "a2 IDLE\r\n");
            r.get_mut().write_all(b"+ idling\r\n").await.unwrap();
            let mut l = String::new();
            r.read_line(&mut l).await.unwrap();
            assert_eq!(l, "DONE\r\n");
            r.get_mut().write_all(b"a2 OK IDLE done\r\n").await.unwrap();
        });
        let mut s = Session::start(Conn::new(a)).await.unwrap();
        let r = s.append("INBOX", b"hi\r\n").await.unwrap();
        assert_eq!(r.exists, Some(1));
        let tag = s.idle_start().await.unwrap();
        s.idle_done(&tag).await.unwrap();
        server.await.unwrap();
    }
}
