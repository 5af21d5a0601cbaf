//! kill -9 during `buudien deliver`: every delivery that exited 0 is in the store, and
//! nothing half-written is (each stored message is complete and byte-identical).

use buudien_store::MailStore;
use buudien_store_sqlite::SqliteStore;
use buudien_types::Address;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::AsyncReadExt;

const BIN: &str = env!("CARGO_BIN_EXE_buudien");

fn cli(config: &Path, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin);
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait: {e}"))
}

fn message(n: usize) -> Vec<u8> {
    let mut m = format!("Subject: crash test {n}\r\n\r\n").into_bytes();
    let line = format!("{n:08} the quick brown fox jumps over the lazy dog\r\n");
    while m.len() < 4 << 20 {
        m.extend_from_slice(line.as_bytes());
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_delivery_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("buudien.toml");
    std::fs::write(
        &config,
        format!(
            "hostname = \"mx.test\"\ndata_dir = \"{}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        cli(&config, &["domain", "add", "crash.test"], b"")
            .status
            .success()
    );
    let out = cli(
        &config,
        &["user", "add", "ann@crash.test", "--password-stdin"],
        b"pw\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut acknowledged = Vec::new();
    let rounds = 30;
    for n in 0..rounds {
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .args(["deliver", "ann@crash.test"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn: {e}"));
        let msg = message(n);
        let mut stdin = child.stdin.take().unwrap_or_else(|| panic!("stdin"));
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&msg);
        });
        // Kill at a different point each round: while reading, writing or committing.
        std::thread::sleep(Duration::from_millis((n as u64 * 7) % 140));
        if n % 3 != 0 {
            let _ = child.kill(); // SIGKILL
        }
        let status = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
        let _ = writer.join();
        if status.success() {
            acknowledged.push(n);
        }
    }
    assert!(
        !acknowledged.is_empty(),
        "no delivery survived; the test proves nothing"
    );

    let store = SqliteStore::open(&dir.path().join("data")).unwrap_or_else(|e| panic!("{e}"));
    let a = Address::parse("ann@crash.test").unwrap_or_else(|e| panic!("{e}"));
    let rec = store.auth_record(&a).await.ok().flatten();
    let id = rec.unwrap_or_else(|| panic!("account")).account_id;
    let drop_ = store
        .open_maildrop(id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut stored = Vec::new();
    for e in &drop_.entries {
        let mut r = store
            .read_blob(&e.blob)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bytes.len() as u64, e.size, "size matches the bytes");
        let n: usize = std::str::from_utf8(&bytes[..40])
            .ok()
            .and_then(|s| s.strip_prefix("Subject: crash test "))
            .and_then(|s| s.split('\r').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected message start"));
        assert_eq!(bytes, message(n), "message {n} is complete");
        stored.push(n);
    }
    for n in &acknowledged {
        assert!(stored.contains(n), "acknowledged delivery {n} is missing");
    }
    eprintln!(
        "{} rounds, {} acknowledged, {} stored",
        rounds,
        acknowledged.len(),
        stored.len()
    );
}
