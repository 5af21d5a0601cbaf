//! What IMAP sessions need to follow a mailbox: stored structure, the delta after a
//! MODSEQ (RFC 7162 §3.2.5.2), the `\Recent` mark (RFC 3501 §2.3.2), and the change
//! counter IDLE waits on.
//!
//! The counters are driven by one watcher task per store, alive while someone
//! watches. It holds a dedicated connection (not from the pool) that `LISTEN`s on
//! `buudien_mailbox`, which a trigger notifies with the mailbox id whenever a
//! mailbox's UIDNEXT or HIGHESTMODSEQ changes (on any node), at commit. On a
//! notification it reads `(UIDNEXT, HIGHESTMODSEQ)` of the notified, watched
//! mailboxes and bumps the counters of those that moved. As the fallback (no NOTIFY,
//! as on engines that lack it, or a lost listening connection) it reads every
//! watched mailbox every [`POLL`] ([`POLL_LISTENING`] while listening, to catch a
//! notification lost with a dropped connection). A counter's first look always
//! wakes its watchers.

use crate::folders::{ENTRY_QUERY, entry_from};
use crate::mail::{i64_of, u64_of, uid_of};
use crate::{Inner, Tx, get, lock, pg_err, row_opt, rows};
use buudien_store::{Delta, MailboxId, MessageEntry, Result, StoreError, StoredMeta};
use buudien_types::Uid;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio_postgres::AsyncMessage;

/// How often watched mailboxes are read when no notification can arrive.
pub(crate) const POLL: Duration = Duration::from_millis(100);
/// How often they are read while notifications arrive (a safety net only).
pub(crate) const POLL_LISTENING: Duration = Duration::from_secs(2);
/// How long after a failed LISTEN the watcher tries again (it polls meanwhile).
const RELISTEN: Duration = Duration::from_secs(10);
/// Notified mailbox ids remembered between two reads, at most; beyond it every
/// watched mailbox is read.
const MAX_DIRTY: usize = 4096;
/// The notification channel.
pub(crate) const CHANNEL: &str = "buudien_mailbox";

/// The watched mailboxes and the watcher's state.
pub(crate) struct Watch {
    mailboxes: Mutex<HashMap<MailboxId, Watched>>,
    running: Mutex<bool>,
    /// Mailboxes notified since the last read; `None`: read all.
    dirty: Arc<Mutex<Option<HashSet<MailboxId>>>>,
    kick: Arc<tokio::sync::Notify>,
}

/// One watched mailbox: its counter and what was seen last.
struct Watched {
    sender: tokio::sync::watch::Sender<u64>,
    /// `(UIDNEXT, HIGHESTMODSEQ)` at the last look (`Some(None)`: gone); `None`: not
    /// looked at yet.
    seen: Option<Option<(i64, i64)>>,
}

impl Watch {
    pub(crate) fn new() -> Watch {
        Watch {
            mailboxes: Mutex::new(HashMap::new()),
            running: Mutex::new(false),
            dirty: Arc::new(Mutex::new(Some(HashSet::new()))),
            kick: Arc::new(tokio::sync::Notify::new()),
        }
    }
}

/// A receiver of `mailbox`'s counter, starting the watcher task if it is not running.
pub(crate) fn subscribe(
    inner: &Arc<Inner>,
    mailbox: MailboxId,
) -> tokio::sync::watch::Receiver<u64> {
    let w = &inner.watch;
    let mut running = lock(&w.running);
    let rx = lock(&w.mailboxes)
        .entry(mailbox)
        .or_insert_with(|| Watched {
            sender: tokio::sync::watch::Sender::new(0),
            seen: None,
        })
        .sender
        .subscribe();
    w.kick.notify_one();
    if !*running {
        *running = true;
        inner.runtime.spawn(watcher(Arc::downgrade(inner)));
    }
    rx
}

/// A listening connection: its client (dropping it closes the connection) and a flag
/// its driver clears when the connection ends.
struct Listener {
    _client: tokio_postgres::Client,
    alive: Arc<std::sync::atomic::AtomicBool>,
}

/// Opens the dedicated connection and `LISTEN`s; its driver task records notified
/// mailboxes in `dirty` and kicks the watcher.
async fn listen(inner: &Inner) -> Option<Listener> {
    use std::sync::atomic::AtomicBool;
    let alive = Arc::new(AtomicBool::new(true));
    let connected = match &inner.tls {
        Some(tls) => match inner.config.connect(tls.clone()).await {
            Ok((client, conn)) => {
                drive(inner, conn, Arc::clone(&alive));
                Ok(client)
            }
            Err(e) => Err(e),
        },
        None => match inner.config.connect(tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                drive(inner, conn, Arc::clone(&alive));
                Ok(client)
            }
            Err(e) => Err(e),
        },
    };
    let client = match connected {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "change watch: no listening connection; polling");
            return None;
        }
    };
    if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
        tracing::debug!(error = %e, "change watch: LISTEN failed; polling");
        return None;
    }
    Some(Listener {
        _client: client,
        alive,
    })
}

/// Runs the listening connection `conn` (plain or TLS) on the store's runtime: records
/// notified mailboxes in `dirty`, kicks the watcher, and clears `alive` at its end.
fn drive<S, T>(
    inner: &Inner,
    mut conn: tokio_postgres::Connection<S, T>,
    flag: Arc<std::sync::atomic::AtomicBool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use std::sync::atomic::Ordering;
    let dirty = Arc::clone(&inner.watch.dirty);
    let kick = Arc::clone(&inner.watch.kick);
    inner.runtime.spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if let Ok(id) = n.payload().parse::<MailboxId>() {
                        let mut d = lock(&dirty);
                        if let Some(set) = d.as_mut() {
                            set.insert(id);
                            if set.len() > MAX_DIRTY {
                                *d = None;
                            }
                        }
                    }
                    kick.notify_one();
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
        flag.store(false, Ordering::Relaxed);
        // Everything may have changed while nobody listened.
        *lock(&dirty) = None;
        kick.notify_one();
    });
}

/// The watcher task: ends when nobody watches or the store is gone.
async fn watcher(weak: Weak<Inner>) {
    use std::sync::atomic::Ordering;
    let mut listener: Option<Listener> = None;
    let mut next_listen = tokio::time::Instant::now();
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let w = &inner.watch;
        // Drop watchers nobody holds; stop when none is left.
        let watched: Vec<(MailboxId, bool)> = {
            let mut running = lock(&w.running);
            let mut m = lock(&w.mailboxes);
            m.retain(|_, x| x.sender.receiver_count() > 0);
            if m.is_empty() {
                *running = false;
                return;
            }
            m.iter().map(|(id, x)| (*id, x.seen.is_none())).collect()
        };
        let listening = listener
            .as_ref()
            .is_some_and(|l| l.alive.load(Ordering::Relaxed));
        if !listening && tokio::time::Instant::now() >= next_listen {
            listener = listen(&inner).await;
            if listener.is_none() {
                // No LISTEN here (an engine without it, or the server is away):
                // poll, and try again later rather than on every poll.
                next_listen = tokio::time::Instant::now() + RELISTEN;
            }
            // Whatever happened before the LISTEN took effect is read now.
            *lock(&w.dirty) = None;
        }
        let dirty = lock(&w.dirty).replace(HashSet::new());
        let ids: Vec<MailboxId> = watched
            .iter()
            .filter(|(id, new)| *new || dirty.as_ref().is_none_or(|d| d.contains(id)))
            .map(|(id, _)| *id)
            .collect();
        if !ids.is_empty() {
            match states(&inner, &ids).await {
                Ok(states) => {
                    let mut m = lock(&w.mailboxes);
                    for id in ids {
                        let state = states.get(&id).copied();
                        if let Some(x) = m.get_mut(&id)
                            && x.seen != Some(state)
                        {
                            x.seen = Some(state);
                            x.sender.send_modify(|n| *n = n.wrapping_add(1));
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "change watch: reading mailboxes failed");
                    *lock(&w.dirty) = None;
                }
            }
        }
        let kick = Arc::clone(&w.kick);
        let pause = if listener
            .as_ref()
            .is_some_and(|l| l.alive.load(Ordering::Relaxed))
        {
            POLL_LISTENING
        } else {
            POLL
        };
        drop(inner);
        if tokio::time::timeout(pause, kick.notified()).await.is_err() {
            // A timed-out wait reads every watched mailbox (the fallback poll).
            if let Some(inner) = weak.upgrade() {
                *lock(&inner.watch.dirty) = None;
            }
        }
    }
}

/// `(UIDNEXT, HIGHESTMODSEQ)` of these mailboxes (those that exist).
async fn states(inner: &Inner, ids: &[MailboxId]) -> Result<HashMap<MailboxId, (i64, i64)>> {
    let client = inner.client().await?;
    let st = client
        .prepare_cached("SELECT id, uidnext, highestmodseq FROM mailboxes WHERE id = ANY($1)")
        .await
        .map_err(pg_err)?;
    let rs = client.query(&st, &[&ids]).await.map_err(pg_err)?;
    rs.iter()
        .map(|r| Ok((get(r, 0)?, (get(r, 1)?, get(r, 2)?))))
        .collect()
}

/// `emails.meta`, `emails.surrogate_meta`.
type MetaPair = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The stored structure of these messages (those that exist), in the order asked
/// (a UID asked twice is answered twice, as the SQLite backend does).
pub(crate) async fn metas(
    tx: &Tx<'_>,
    mailbox: MailboxId,
    uids: &[Uid],
) -> Result<Vec<StoredMeta>> {
    let want: Vec<i64> = uids.iter().map(|u| i64::from(u.0)).collect();
    let rs = rows(
        tx,
        "SELECT e.uid, m.meta, m.surrogate_meta FROM mailbox_entries e
         JOIN emails m ON m.id = e.email_id WHERE e.mailbox_id = $1 AND e.uid = ANY($2)",
        &[&mailbox, &want],
    )
    .await?;
    let mut found: HashMap<i64, MetaPair> = HashMap::new();
    for r in &rs {
        found.insert(get(r, 0)?, (get(r, 1)?, get(r, 2)?));
    }
    let mut out = Vec::with_capacity(found.len());
    for uid in uids {
        if let Some((meta, ascii_meta)) = found.get(&i64::from(uid.0)) {
            out.push(StoredMeta {
                uid: *uid,
                meta: meta.clone(),
                ascii_meta: ascii_meta.clone(),
            });
        }
    }
    Ok(out)
}

/// These messages, in UID order.
pub(crate) async fn entries(
    tx: &Tx<'_>,
    mailbox: MailboxId,
    uids: &[Uid],
) -> Result<Vec<MessageEntry>> {
    let want: Vec<i64> = uids.iter().map(|u| i64::from(u.0)).collect();
    let rs = rows(
        tx,
        &format!("{ENTRY_QUERY} WHERE e.mailbox_id = $1 AND e.uid = ANY($2) ORDER BY e.uid"),
        &[&mailbox, &want],
    )
    .await?;
    rs.iter().map(entry_from).collect()
}

/// Everything that changed after `since`. The mailbox row is read first and the
/// rest is bounded by its HIGHESTMODSEQ, so a change committed between the reads
/// (READ COMMITTED) is left to the next delta instead of being half seen.
pub(crate) async fn delta(tx: &Tx<'_>, mailbox: MailboxId, since: u64) -> Result<Delta> {
    // One snapshot for the mailbox row and its entries: under READ COMMITTED each
    // statement has its own, and a flag change committed between them moved a new
    // message's MODSEQ above the HIGHESTMODSEQ read first, so it was left out while
    // UIDNEXT already counted it — a session never heard of that message.
    tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(pg_err)?;
    let since = i64_of(since);
    let Some(r) = row_opt(
        tx,
        "SELECT highestmodseq, uidnext FROM mailboxes WHERE id = $1",
        &[&mailbox],
    )
    .await?
    else {
        return Err(StoreError::NotFound(format!("mailbox #{mailbox}")));
    };
    let (highestmodseq, uidnext): (i64, i64) = (get(&r, 0)?, get(&r, 1)?);
    let rs = rows(
        tx,
        &format!(
            "{ENTRY_QUERY} WHERE e.mailbox_id = $1 AND e.modseq > $2 AND e.modseq <= $3
             ORDER BY e.uid"
        ),
        &[&mailbox, &since, &highestmodseq],
    )
    .await?;
    let expunged = rows(
        tx,
        "SELECT uid FROM changes WHERE mailbox_id = $1 AND modseq > $2 AND modseq <= $3
           AND kind = 2 ORDER BY uid",
        &[&mailbox, &since, &highestmodseq],
    )
    .await?;
    Ok(Delta {
        highestmodseq: u64_of(highestmodseq),
        uidnext: u32::try_from(uidnext).unwrap_or(u32::MAX),
        changed: rs.iter().map(entry_from).collect::<Result<_>>()?,
        expunged: expunged
            .iter()
            .map(|r| uid_of(get(r, 0)?))
            .collect::<Result<_>>()?,
    })
}

/// Where the `\Recent` mark is.
pub(crate) async fn recent_mark(tx: &Tx<'_>, mailbox: MailboxId) -> Result<Uid> {
    let Some(r) = row_opt(
        tx,
        "SELECT recent_uid FROM mailboxes WHERE id = $1",
        &[&mailbox],
    )
    .await?
    else {
        return Err(StoreError::NotFound(format!("mailbox #{mailbox}")));
    };
    Ok(Uid(u32::try_from(get::<i64>(&r, 0)?).unwrap_or(0)))
}

/// Moves the `\Recent` mark to the newest message; returns where it was.
pub(crate) async fn claim_recent(tx: &Tx<'_>, mailbox: MailboxId) -> Result<Uid> {
    let Some(r) = row_opt(
        tx,
        "SELECT recent_uid FROM mailboxes WHERE id = $1 FOR UPDATE",
        &[&mailbox],
    )
    .await?
    else {
        return Err(StoreError::NotFound(format!("mailbox #{mailbox}")));
    };
    let old: i64 = get(&r, 0)?;
    crate::exec(
        tx,
        "UPDATE mailboxes SET recent_uid = uidnext - 1 WHERE id = $1",
        &[&mailbox],
    )
    .await?;
    Ok(Uid(u32::try_from(old).unwrap_or(0)))
}
