//! Password checks on a few dedicated threads. Argon2id takes about 19 MiB for each
//! check; run on the runtime's blocking pool, every thread that ever ran one keeps
//! that much in its allocator arena, so login churn alone grew the server to more
//! than a gigabyte. A small fixed set of threads bounds both the memory (threads ×
//! 19 MiB) and the CPU that password guessing can take; waiting checks queue up.
//! Each thread keeps its Argon2 memory from one check to the next ([`Scratch`]).

use crate::password::{Scratch, dummy_verify_in, verify_password_in};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{mpsc, oneshot};

/// Checks that may wait for a thread; more wait for room in the queue.
const QUEUE: usize = 1024;

/// At most this many checks run at once (fewer on a machine with fewer cores).
const MAX_THREADS: usize = 4;

/// One password check.
struct Job {
    phc: Option<String>,
    password: Vec<u8>,
    reply: oneshot::Sender<bool>,
}

/// The queue to the threads, or `None` if no thread could be started.
static POOL: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();

fn pool() -> Option<&'static mpsc::Sender<Job>> {
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let n = std::thread::available_parallelism()
            .map_or(2, std::num::NonZeroUsize::get)
            .clamp(1, MAX_THREADS);
        let started = (0..n)
            .filter(|i| {
                let rx = Arc::clone(&rx);
                std::thread::Builder::new()
                    .name(format!("password-{i}"))
                    .spawn(move || worker(&rx))
                    .is_ok()
            })
            .count();
        (started > 0).then_some(tx)
    })
    .as_ref()
}

fn worker(rx: &Mutex<mpsc::Receiver<Job>>) {
    // Argon2's memory, kept for this thread's next check (see `crate::password`).
    let mut scratch = Scratch::default();
    loop {
        let job = {
            let mut queue = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            queue.blocking_recv()
        };
        let Some(mut job) = job else { return };
        let ok = check(job.phc.as_deref(), &job.password, &mut scratch);
        job.password.fill(0);
        // The session may have gone away meanwhile.
        let _ = job.reply.send(ok);
    }
}

fn check(phc: Option<&str>, password: &[u8], scratch: &mut Scratch) -> bool {
    match phc {
        Some(phc) => verify_password_in(phc, password, scratch),
        None => {
            dummy_verify_in(password, scratch);
            false
        }
    }
}

/// True when `password` matches the PHC string `phc`. With `None` (an unknown user)
/// it spends the same work and answers false, so timing does not tell which logins
/// exist. Runs on the password threads; waits its turn when they are busy.
pub async fn check_password(phc: Option<String>, password: Vec<u8>) -> bool {
    let Some(tx) = pool() else {
        return tokio::task::spawn_blocking(move || {
            check(phc.as_deref(), &password, &mut Scratch::default())
        })
        .await
        .unwrap_or(false);
    };
    let (reply, answer) = oneshot::channel();
    let job = Job {
        phc,
        password,
        reply,
    };
    if tx.send(job).await.is_err() {
        return false;
    }
    answer.await.unwrap_or(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::hash_password;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checks_run_on_the_pool() {
        let phc = hash_password(b"right").unwrap();
        let mut all = Vec::new();
        for i in 0..6 {
            let phc = phc.clone();
            all.push(tokio::spawn(async move {
                let pw: &[u8] = if i % 2 == 0 { b"right" } else { b"wrong" };
                (i, check_password(Some(phc), pw.to_vec()).await)
            }));
        }
        for task in all {
            let (i, ok) = task.await.unwrap();
            assert_eq!(ok, i % 2 == 0, "check {i}");
        }
        assert!(
            !check_password(None, b"right".to_vec()).await,
            "unknown user"
        );
    }
}
