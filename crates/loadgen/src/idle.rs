//! Many idle IMAP sessions for the memory workload: each logs in, selects INBOX and
//! enters IDLE (RFC 2177). Once every session has either reached IDLE or failed, one
//! JSON line says how many are idling; the sessions are then held until stdin closes,
//! a signal arrives, or `--hold` seconds pass.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::imap::Session;
use crate::stats::Stats;
use crate::{Common, Target};

async fn open(t: &Target, common: &Common, id: usize) -> io::Result<Session<TcpStream>> {
    let c = crate::conn::connect(t.addr(id), t.source(id)).await?;
    let mut s = Session::start(c).await?;
    let (user, pass) = common.user(id);
    s.login(&user, &pass).await?;
    s.run("SELECT INBOX").await?;
    s.idle_start().await?;
    Ok(s)
}

/// Opens `n` sessions, `parallel` at a time, prints the result line, then holds them.
pub async fn run(
    t: Arc<Target>,
    common: Arc<Common>,
    n: usize,
    parallel: usize,
    hold: Option<f64>,
) {
    let start = Instant::now();
    let gate = Arc::new(Semaphore::new(parallel.max(1)));
    let mut tasks = Vec::with_capacity(n);
    for id in 0..n {
        let (t, common, gate) = (t.clone(), common.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let t0 = Instant::now();
            open(&t, &common, id).await.map(|s| (s, t0.elapsed()))
        }));
    }
    let mut st = Stats::new();
    let mut held = Vec::with_capacity(n);
    for task in tasks {
        match task.await {
            Ok(Ok((s, d))) => {
                st.record(d);
                held.push(s);
            }
            Ok(Err(e)) => st.error(e),
            Err(e) => st.error(format!("task: {e}")),
        }
    }
    let extra = serde_json::json!({"sessions": n, "idling": held.len(), "addr": t.addrs_text()});
    println!("{}", st.json("idle", start.elapsed(), extra));
    wait_release(hold).await;
    // Leave politely where the line is still open; errors no longer matter.
    for s in held.iter_mut() {
        let _ = s.c.send(b"DONE\r\n").await;
    }
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        for s in held.iter_mut() {
            let _ = s.c.read_some(Duration::from_millis(1)).await;
        }
    })
    .await;
}

/// Returns when stdin reaches EOF, SIGTERM or SIGINT arrives, or `hold` seconds pass.
async fn wait_release(hold: Option<f64>) {
    let stdin = async {
        let mut buf = [0u8; 256];
        let mut input = tokio::io::stdin();
        while let Ok(k) = input.read(&mut buf).await {
            if k == 0 {
                break;
            }
        }
    };
    let timer = async {
        match hold {
            Some(s) => tokio::time::sleep(Duration::from_secs_f64(s.max(0.0))).await,
            None => std::future::pending::<()>().await,
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = stdin => {}
        _ = timer => {}
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
