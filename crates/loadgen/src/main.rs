//! loadgen: drives any SMTP, POP3 or IMAP server at host:port with many concurrent
//! connections and prints one JSON line of results (workload, ops, seconds,
//! ops_per_sec, mb_per_sec, p50_ms, p99_ms, errors, …). The same client drives
//! buudien and the reference servers in `bench/run`, so their figures compare.
//! Errors are counted and reported; the exit code is 1 only for bad arguments.

mod conn;
mod idle;
mod imap;
mod pop3;
mod smtp;
mod stats;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use crate::stats::{Budget, Stats};

/// Load generator for SMTP, POP3 and IMAP servers.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// SMTP senders: one message per MAIL/RCPT/DATA, done at the 250 after the dot.
    Smtp {
        #[command(flatten)]
        common: CommonArgs,
        /// Message size in bytes (suffix K or M allowed).
        #[arg(long, default_value = "4K", value_parser = parse_size)]
        size: usize,
    },
    /// POP3 clients: UIDL then RETR of every message (and DELE with `--mode dele`), or
    /// LIST only.
    Pop3 {
        #[command(flatten)]
        common: CommonArgs,
        /// What each client does per round.
        #[arg(long, value_enum, default_value = "retr")]
        mode: pop3::Mode,
        /// Exactly this many rounds per client (whole maildrop each); 0: the budget.
        #[arg(long, default_value_t = 0)]
        rounds: u64,
    },
    /// IMAP clients: the mixed session, or one command repeated.
    Imap {
        #[command(flatten)]
        common: CommonArgs,
        /// The operation.
        #[arg(long, value_enum, default_value = "mix")]
        op: imap::Op,
        /// Size of APPENDed messages (suffix K or M allowed).
        #[arg(long, default_value = "4K", value_parser = parse_size)]
        size: usize,
    },
    /// N authenticated IMAP sessions in IDLE on INBOX (N = --conns), held until
    /// stdin closes, a signal, or --hold seconds.
    Idle {
        #[command(flatten)]
        common: CommonArgs,
        /// Sessions being opened at the same time.
        #[arg(long, default_value_t = 64)]
        parallel: usize,
        /// Release the sessions after this many seconds.
        #[arg(long)]
        hold: Option<f64>,
    },
}

/// Options every subcommand takes.
#[derive(Args, Clone)]
struct CommonArgs {
    /// Server address, host:port; several, comma-separated, spread the connections
    /// (connection i goes to address i mod n: the nodes of a cluster).
    #[arg(long, value_delimiter = ',', required = true)]
    addr: Vec<String>,
    /// Concurrent connections (sessions for `idle`).
    #[arg(long, default_value_t = 8)]
    conns: usize,
    /// Run for this many seconds.
    #[arg(long, conflicts_with = "count")]
    duration: Option<f64>,
    /// Run this many operations in all (default when neither is given: 10 s).
    #[arg(long)]
    count: Option<u64>,
    /// Login name pattern; `%d` is replaced by the user number.
    #[arg(long, default_value = "user%d@example.test")]
    user: String,
    /// Number of users (connection i logs in as user first + i mod count).
    #[arg(long, default_value_t = 1)]
    user_count: usize,
    /// The first user number.
    #[arg(long, default_value_t = 1)]
    user_first: usize,
    /// Password of every pattern user.
    #[arg(long, default_value = "password")]
    password: String,
    /// A file of `user:password` lines, used instead of the pattern.
    #[arg(long)]
    users: Option<std::path::PathBuf>,
    /// SMTP recipient pattern (`%d`: a random number in first..first+rcpt-count).
    #[arg(long, default_value = "user%d@example.test")]
    rcpt: String,
    /// Number of distinct recipients (default: --user-count).
    #[arg(long)]
    rcpt_count: Option<usize>,
    /// SMTP envelope sender.
    #[arg(long, default_value = "loadgen@example.org")]
    from: String,
    /// Source addresses to connect from, comma-separated (connection i uses i mod n).
    #[arg(long, value_delimiter = ',')]
    source: Vec<IpAddr>,
}

/// Where and how much: the servers, the source addresses, the budget.
pub struct Target {
    /// The servers (at least one).
    addrs: Vec<SocketAddr>,
    sources: Vec<IpAddr>,
    /// The work left.
    pub budget: Budget,
}

impl Target {
    /// The server connection `id` talks to.
    pub fn addr(&self, id: usize) -> SocketAddr {
        let n = self.addrs.len().max(1);
        self.addrs
            .get(id % n)
            .copied()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The servers, comma-separated.
    pub fn addrs_text(&self) -> String {
        let all: Vec<String> = self.addrs.iter().map(|a| a.to_string()).collect();
        all.join(",")
    }

    /// The source address of connection `id`, if any were given.
    pub fn source(&self, id: usize) -> Option<IpAddr> {
        if self.sources.is_empty() {
            None
        } else {
            self.sources.get(id % self.sources.len()).copied()
        }
    }
}

/// Accounts and addresses shared by all connections.
pub struct Common {
    users: Vec<(String, String)>,
    rcpt: String,
    first: usize,
    /// Number of distinct SMTP recipients.
    pub rcpt_count: usize,
    /// SMTP envelope sender.
    pub from: String,
}

impl Common {
    /// Login and password of connection `id`.
    pub fn user(&self, id: usize) -> (String, String) {
        if self.users.is_empty() {
            return (String::new(), String::new());
        }
        self.users
            .get(id % self.users.len())
            .cloned()
            .unwrap_or_default()
    }

    /// Recipient number `i` (0-based) of the pattern.
    pub fn rcpt(&self, i: usize) -> String {
        self.rcpt.replace("%d", &(self.first + i).to_string())
    }
}

/// A small xorshift generator: workloads need cheap, repeatable choices, not
/// cryptographic ones.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced).
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number in 0..n (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if n == 0 { 0 } else { self.0 % n }
    }
}

fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1024),
        Some('M' | 'm') => (&t[..t.len() - 1], 1024 * 1024),
        _ => (t, 1),
    };
    let n: usize = num.parse().map_err(|_| format!("not a size: {s}"))?;
    n.checked_mul(mult)
        .filter(|&v| v <= 256 << 20)
        .ok_or_else(|| format!("too large: {s}"))
}

fn load_users(a: &CommonArgs) -> Result<Vec<(String, String)>, String> {
    if let Some(path) = &a.users {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let users: Vec<_> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| {
                l.split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
            })
            .collect();
        if users.is_empty() {
            return Err(format!("{}: no user:password lines", path.display()));
        }
        return Ok(users);
    }
    Ok((0..a.user_count.max(1))
        .map(|i| {
            (
                a.user.replace("%d", &(a.user_first + i).to_string()),
                a.password.clone(),
            )
        })
        .collect())
}

async fn setup(a: &CommonArgs) -> Result<(Arc<Target>, Arc<Common>), String> {
    let mut addrs = Vec::with_capacity(a.addr.len());
    for one in &a.addr {
        let addr = tokio::net::lookup_host(one)
            .await
            .map_err(|e| format!("--addr {one}: {e}"))?
            .next()
            .ok_or_else(|| format!("--addr {one}: no address"))?;
        addrs.push(addr);
    }
    if addrs.is_empty() {
        return Err("--addr: give at least one host:port".into());
    }
    let budget = match (a.duration, a.count) {
        (_, Some(n)) => Budget::Count(AtomicU64::new(n)),
        (Some(s), None) => Budget::Until(Instant::now() + Duration::from_secs_f64(s.max(0.0))),
        (None, None) => Budget::Until(Instant::now() + Duration::from_secs(10)),
    };
    let users = load_users(a)?;
    let common = Common {
        rcpt_count: a.rcpt_count.unwrap_or(users.len()),
        users,
        rcpt: a.rcpt.clone(),
        first: a.user_first,
        from: a.from.clone(),
    };
    Ok((
        Arc::new(Target {
            addrs,
            sources: a.source.clone(),
            budget,
        }),
        Arc::new(common),
    ))
}

/// Runs `conns` workers made by `make`, merges their statistics, prints the line.
async fn drive<F, Fut>(
    workload: &str,
    a: &CommonArgs,
    t: Arc<Target>,
    extra: serde_json::Value,
    make: F,
) where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Stats> + Send + 'static,
{
    let start = Instant::now();
    let handles: Vec<_> = (0..a.conns.max(1)).map(|i| tokio::spawn(make(i))).collect();
    let mut total = Stats::new();
    for h in handles {
        match h.await {
            Ok(s) => total.merge(s),
            Err(e) => total.error(format!("worker: {e}")),
        }
    }
    let mut extra = extra;
    if let Some(m) = extra.as_object_mut() {
        m.insert("conns".into(), a.conns.into());
        m.insert("addr".into(), t.addrs_text().into());
    }
    println!("{}", total.json(workload, start.elapsed(), extra));
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let a = match &cli.cmd {
        Cmd::Smtp { common, .. }
        | Cmd::Pop3 { common, .. }
        | Cmd::Imap { common, .. }
        | Cmd::Idle { common, .. } => common.clone(),
    };
    let (t, common) = match setup(&a).await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    };
    match cli.cmd {
        Cmd::Smtp { size, .. } => {
            let extra = serde_json::json!({"size": size});
            drive("smtp", &a, t.clone(), extra, |i| {
                smtp::worker(t.clone(), common.clone(), i, size)
            })
            .await
        }
        Cmd::Pop3 { mode, rounds, .. } => {
            let extra = serde_json::json!({"mode": format!("{mode:?}").to_lowercase()});
            drive("pop3", &a, t.clone(), extra, |i| {
                pop3::worker(t.clone(), common.clone(), i, mode, rounds)
            })
            .await
        }
        Cmd::Imap { op, size, .. } => {
            let extra = serde_json::json!({"op": format!("{op:?}").to_lowercase()});
            drive("imap", &a, t.clone(), extra, |i| {
                imap::worker(t.clone(), common.clone(), i, op, size)
            })
            .await
        }
        Cmd::Idle { parallel, hold, .. } => idle::run(t, common, a.conns, parallel, hold).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("100k"), Ok(102_400));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("x").is_err());
        assert!(parse_size("1000M").is_err());
    }

    #[test]
    fn users_from_pattern_and_round_robin() {
        let cli = Cli::parse_from([
            "x",
            "smtp",
            "--addr",
            "127.0.0.1:1",
            "--user-count",
            "3",
            "--user-first",
            "5",
        ]);
        let Cmd::Smtp { common: a, .. } = cli.cmd else {
            panic!("smtp")
        };
        let u = load_users(&a).unwrap();
        assert_eq!(u.len(), 3);
        assert_eq!(u[0], ("user5@example.test".into(), "password".into()));
        let c = Common {
            users: u,
            rcpt: a.rcpt.clone(),
            first: 5,
            rcpt_count: 3,
            from: a.from.clone(),
        };
        assert_eq!(c.user(4).0, "user6@example.test");
        assert_eq!(c.rcpt(2), "user7@example.test");
    }

    #[tokio::test]
    async fn several_addresses_spread_the_connections() {
        let cli = Cli::parse_from([
            "x",
            "smtp",
            "--addr",
            "127.0.0.1:1,127.0.0.1:2",
            "--count",
            "1",
        ]);
        let Cmd::Smtp { common: a, .. } = cli.cmd else {
            panic!("smtp")
        };
        let (t, _) = setup(&a).await.unwrap();
        assert_eq!(t.addr(0).port(), 1);
        assert_eq!(t.addr(1).port(), 2);
        assert_eq!(t.addr(2).port(), 1);
        assert_eq!(t.addrs_text(), "127.0.0.1:1,127.0.0.1:2");
    }

    #[test]
    fn rng_stays_in_range() {
        let mut r = Rng::new(0);
        assert!((0..1000).all(|_| r.below(7) < 7));
        assert_eq!(r.below(0), 0);
    }
}
