//! The queue worker: claims due messages, delivers each to its destinations with a
//! bounded number of connections per destination, records results, decides retries
//! and expiry, sends DSNs and releases the claim.

use crate::deliver::{self, Ctx, Destination, Verdict};
use crate::dsn::{self, Action, Report};
use crate::encode::has_8bit;
use crate::resolve::{HickoryResolver, Resolve};
use crate::{QueueConfig, QueueError, client, retry};
use buudien_message::header_len;
use buudien_store::{
    AccountId, Envelope, NewRecipient, Outcome, QueueId, QueueStore, QueuedMessage,
    QueuedRecipient, RcptState, StoreError, Submission,
};
use buudien_types::Address;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::io::AsyncReadExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

/// Retry times remembered to wake up for (beyond that, polling finds them).
const MAX_TIMERS: usize = 10_000;
/// After a store error the loop waits this long before claiming again.
const STORE_BACKOFF: Duration = Duration::from_secs(1);

/// Wakes the worker: call after submitting mail (cheap; clone freely).
#[derive(Clone, Debug)]
pub struct QueueHandle {
    wake: Arc<Notify>,
}

impl QueueHandle {
    /// New mail was queued (or `queue flush` ran): look for due work now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// The worker. Build it with [`QueueWorker::new`], keep a [`QueueHandle`] from
/// [`QueueWorker::handle`], then [`run`](QueueWorker::run) it until told to stop.
pub struct QueueWorker<S: QueueStore> {
    shared: Arc<Shared<S>>,
}

struct Shared<S> {
    store: S,
    ctx: Ctx,
    wake: Arc<Notify>,
    /// Messages being worked on in this process (a claim that outlived its lease is
    /// never worked on twice here).
    inflight: Mutex<HashSet<QueueId>>,
    /// Connection slots per destination.
    destinations: Mutex<HashMap<Destination, Arc<Semaphore>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<S: QueueStore> QueueWorker<S> {
    /// A worker using hickory with `config.dns_servers` (or the system resolver).
    /// Without a smarthost the DNS configuration must be readable now; with one, a
    /// broken configuration only defers mail that needs a lookup.
    pub fn new(store: S, config: QueueConfig) -> Result<Self, QueueError> {
        let resolver = match HickoryResolver::new(&config.dns_servers) {
            Ok(r) => r,
            Err(e) if config.smarthost.is_some() => {
                tracing::warn!("DNS resolver: {e}; trying again when a lookup is needed");
                HickoryResolver::lazy(&config.dns_servers)
            }
            Err(e) => return Err(QueueError::Resolver(e.to_string())),
        };
        Self::with_resolver(store, config, Arc::new(resolver))
    }

    /// A worker with another resolver (tests: [`StaticResolver`](crate::StaticResolver)).
    pub fn with_resolver(
        store: S,
        config: QueueConfig,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Self, QueueError> {
        if config.workers == 0 || config.max_connections_per_domain == 0 {
            return Err(QueueError::Config(
                "workers and max_connections_per_domain must be at least 1".into(),
            ));
        }
        if config.lease < Duration::from_millis(100) {
            return Err(QueueError::Config("lease must be at least 100ms".into()));
        }
        let tls = client::tls_connector().map_err(QueueError::Tls)?;
        Ok(QueueWorker {
            shared: Arc::new(Shared {
                store,
                ctx: Ctx {
                    config,
                    resolver,
                    tls,
                },
                wake: Arc::new(Notify::new()),
                inflight: Mutex::new(HashSet::new()),
                destinations: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// A handle that wakes this worker.
    pub fn handle(&self) -> QueueHandle {
        QueueHandle {
            wake: self.shared.wake.clone(),
        }
    }

    /// New mail was queued: look for due work now.
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }

    /// Claims and delivers until `stop` turns true (or its sender is dropped); then
    /// waits up to `shutdown_grace` for deliveries in flight. Abandoned ones keep
    /// their claims until the lease ends and are retried then.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let shared = self.shared;
        let cfg = &shared.ctx.config;
        let slots = Arc::new(Semaphore::new(cfg.workers));
        let mut tasks: JoinSet<Option<SystemTime>> = JoinSet::new();
        let mut timers: BinaryHeap<Reverse<SystemTime>> = BinaryHeap::new();
        tracing::info!(workers = cfg.workers, "queue worker started");
        loop {
            if *stop.borrow() {
                break;
            }
            let now = SystemTime::now();
            while timers.peek().is_some_and(|Reverse(t)| *t <= now) {
                timers.pop();
            }
            let free = slots.available_permits();
            let mut backoff = false;
            let mut full = false;
            if free > 0 {
                match shared.store.claim(now, cfg.lease, free).await {
                    Ok(batch) => {
                        full = batch.len() >= free;
                        for msg in batch {
                            if !lock(&shared.inflight).insert(msg.id) {
                                continue;
                            }
                            let Ok(permit) = slots.clone().try_acquire_owned() else {
                                lock(&shared.inflight).remove(&msg.id);
                                break;
                            };
                            tasks.spawn(process(shared.clone(), msg, permit));
                        }
                    }
                    Err(e) => {
                        tracing::warn!("queue claim failed: {e}");
                        backoff = true;
                    }
                }
            }
            if full && slots.available_permits() > 0 {
                continue;
            }
            let wait = if backoff {
                STORE_BACKOFF
            } else {
                let next = timers.peek().map(|Reverse(t)| *t);
                let poll = cfg.poll_interval;
                next.and_then(|t| t.duration_since(now).ok())
                    .map_or(poll, |d| d.min(poll))
            };
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = shared.wake.notified() => {}
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok(Some(t)) = done && timers.len() < MAX_TIMERS {
                        timers.push(Reverse(t));
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
            while let Some(done) = tasks.try_join_next() {
                if let Ok(Some(t)) = done
                    && timers.len() < MAX_TIMERS
                {
                    timers.push(Reverse(t));
                }
            }
        }
        tracing::info!(in_flight = tasks.len(), "queue worker stopping");
        let grace = cfg.shutdown_grace;
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }
}

/// Works on one claimed message; returns its earliest pending retry time.
async fn process<S: QueueStore>(
    shared: Arc<Shared<S>>,
    msg: QueuedMessage,
    _slot: OwnedSemaphorePermit,
) -> Option<SystemTime> {
    let id = msg.id;
    // Cut off before the lease ends, so no other worker can claim it meanwhile.
    let limit = shared.ctx.config.lease.mul_f64(0.9);
    let r = tokio::time::timeout(limit, work(&shared, msg)).await;
    lock(&shared.inflight).remove(&id);
    match r {
        Ok(next) => next,
        Err(_) => {
            tracing::warn!(
                queue_id = id,
                "delivery attempt ran out of time; retried after the lease"
            );
            None
        }
    }
}

async fn read_message<S: QueueStore>(
    store: &S,
    msg: &QueuedMessage,
) -> Result<Vec<u8>, StoreError> {
    let mut r = store.read_blob(&msg.blob).await?;
    let mut out = Vec::with_capacity(usize::try_from(msg.size).unwrap_or(0).min(64 << 20));
    (&mut r)
        .take(msg.size.saturating_add(1))
        .read_to_end(&mut out)
        .await?;
    Ok(out)
}

/// The destination of a recipient, or why it has none.
fn destination(config: &QueueConfig, address: &str) -> Result<Destination, String> {
    if config.smarthost.is_some() {
        return Ok(Destination::Smarthost);
    }
    match address.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
            Ok(Destination::Domain(domain.to_ascii_lowercase()))
        }
        _ => Err(format!("5.1.3 bad recipient address syntax: {address}")),
    }
}

/// Connection slot for a destination (at most `max_connections_per_domain`).
async fn slot<S>(shared: &Shared<S>, dest: &Destination) -> Option<OwnedSemaphorePermit> {
    let sem = lock(&shared.destinations)
        .entry(dest.clone())
        .or_insert_with(|| Arc::new(Semaphore::new(shared.ctx.config.max_connections_per_domain)))
        .clone();
    sem.acquire_owned().await.ok()
}

fn forget_idle<S>(shared: &Shared<S>, dest: &Destination) {
    let mut map = lock(&shared.destinations);
    if map.get(dest).is_some_and(|s| Arc::strong_count(s) == 1) {
        map.remove(dest);
    }
}

async fn work<S: QueueStore>(shared: &Shared<S>, msg: QueuedMessage) -> Option<SystemTime> {
    let cfg = &shared.ctx.config;
    let store = &shared.store;
    let id = msg.id;
    let message = match read_message(store, &msg).await {
        Ok(m) => m,
        Err(StoreError::Damaged(why)) => {
            // Permanent: retrying cannot bring the bytes back. Every pending recipient
            // fails and the sender gets a DSN (without the message, which is gone).
            tracing::error!(queue_id = id, "the queued message is damaged: {why}");
            return fail_damaged(shared, &msg).await;
        }
        Err(e) => {
            tracing::error!(queue_id = id, "cannot read the queued message: {e}");
            return None;
        }
    };
    let now = SystemTime::now();
    let mut states = msg.recipients.clone();
    let mut groups: BTreeMap<String, (Destination, Vec<QueuedRecipient>)> = BTreeMap::new();
    let mut immediate = Vec::new();
    for r in msg
        .recipients
        .iter()
        .filter(|r| r.state == RcptState::Pending && r.next_attempt <= now)
    {
        match destination(cfg, &r.address) {
            Ok(d) => {
                let key = match &d {
                    Destination::Smarthost => String::new(),
                    Destination::Domain(x) => x.clone(),
                };
                groups
                    .entry(key)
                    .or_insert_with(|| (d, Vec::new()))
                    .1
                    .push(r.clone());
            }
            Err(why) => immediate.push((r.index, Outcome::Failed { reply: why })),
        }
    }
    if !immediate.is_empty() && !record(shared, &msg, &mut states, immediate).await {
        return None;
    }
    for (dest, rcpts) in groups.into_values() {
        let permit = slot(shared, &dest).await;
        let verdicts = deliver::deliver(&shared.ctx, &dest, &msg.envelope, &message, &rcpts).await;
        drop(permit);
        forget_idle(shared, &dest);
        let outcomes = verdicts
            .into_iter()
            .map(|(idx, v)| {
                let attempts = rcpts
                    .iter()
                    .find(|r| r.index == idx)
                    .map_or(1, |r| r.attempts.saturating_add(1));
                (idx, outcome(cfg, &msg, attempts, v))
            })
            .collect();
        if !record(shared, &msg, &mut states, outcomes).await {
            return None;
        }
    }
    if let Err(e) = report(shared, &msg, &mut states, &message).await {
        tracing::warn!(
            queue_id = id,
            "DSN not sent yet: {e}; retried after the lease"
        );
        return None;
    }
    if let Err(e) = store.release(id).await {
        tracing::warn!(queue_id = id, "release failed: {e}");
    }
    states
        .iter()
        .filter(|r| r.state == RcptState::Pending)
        .map(|r| r.next_attempt)
        .min()
}

/// Fails every pending recipient of a message whose stored bytes are damaged
/// (RFC 3463 X.3.0: a mail system problem), sends the DSN and releases the claim.
async fn fail_damaged<S: QueueStore>(
    shared: &Shared<S>,
    msg: &QueuedMessage,
) -> Option<SystemTime> {
    let outcomes = msg
        .recipients
        .iter()
        .filter(|r| r.state == RcptState::Pending)
        .map(|r| {
            let reply = "5.3.0 the message was damaged in storage and cannot be sent".to_owned();
            (r.index, Outcome::Failed { reply })
        })
        .collect();
    let mut states = msg.recipients.clone();
    if !record(shared, msg, &mut states, outcomes).await {
        return None;
    }
    if let Err(e) = report(shared, msg, &mut states, b"").await {
        tracing::warn!(
            queue_id = msg.id,
            "DSN not sent yet: {e}; retried after the lease"
        );
        return None;
    }
    if let Err(e) = shared.store.release(msg.id).await {
        tracing::warn!(queue_id = msg.id, "release failed: {e}");
    }
    None
}

/// Turns an attempt's verdict into what is recorded: a deferral gets its retry time,
/// or fails once the message is older than `expire` (RFC 5321 §4.5.4.1).
fn outcome(cfg: &QueueConfig, msg: &QueuedMessage, attempts: u32, v: Verdict) -> Outcome {
    match v {
        Verdict::Delivered { reply, relayed } => Outcome::Delivered { reply, relayed },
        Verdict::Failed(reply) => Outcome::Failed { reply },
        Verdict::Deferred(reply) => {
            let now = SystemTime::now();
            match retry::next_attempt(&cfg.retry, attempts, msg.queued_at, cfg.expire, now) {
                Some(next_attempt) => Outcome::Deferred {
                    reply,
                    next_attempt,
                },
                None => Outcome::Failed { reply },
            }
        }
    }
}

/// Records outcomes and mirrors them in `states`; false when the store failed (the
/// claim is then left to expire).
async fn record<S: QueueStore>(
    shared: &Shared<S>,
    msg: &QueuedMessage,
    states: &mut [QueuedRecipient],
    outcomes: Vec<(u32, Outcome)>,
) -> bool {
    if let Err(e) = shared.store.record(msg.id, &outcomes).await {
        tracing::error!(queue_id = msg.id, "recording delivery results failed: {e}");
        return false;
    }
    for (idx, o) in outcomes {
        let Some(r) = states.iter_mut().find(|r| r.index == idx) else {
            continue;
        };
        r.attempts = r.attempts.saturating_add(1);
        match o {
            Outcome::Delivered { reply, relayed } => {
                tracing::info!(queue_id = msg.id, to = %r.address, status = "sent", "{reply}");
                r.state = RcptState::Delivered;
                r.relayed = relayed;
                r.last_reply = Some(reply);
            }
            Outcome::Failed { reply } => {
                tracing::info!(queue_id = msg.id, to = %r.address, status = "bounced", "{reply}");
                r.state = RcptState::Failed;
                r.last_reply = Some(reply);
            }
            Outcome::Deferred {
                reply,
                next_attempt,
            } => {
                tracing::info!(queue_id = msg.id, to = %r.address, status = "deferred", "{reply}");
                r.next_attempt = next_attempt;
                r.last_reply = Some(reply);
            }
        }
    }
    true
}

/// What a final recipient's DSN says, if it gets one (RFC 3461 §4.1, §5.2.2): a
/// failure unless NOTIFY excluded it; a success only as "relayed" to a hop without
/// DSN (a DSN-capable hop got the request passed on and reports itself).
fn action_for(r: &QueuedRecipient) -> Option<Action> {
    match r.state {
        RcptState::Failed if r.notify.is_none_or(|n| n.failure) => Some(Action::Failed),
        RcptState::Delivered if r.relayed && r.notify.is_some_and(|n| n.success) => {
            Some(Action::Relayed)
        }
        _ => None,
    }
}

/// Sends the DSN for final, unreported recipients, then marks them reported.
async fn report<S: QueueStore>(
    shared: &Shared<S>,
    msg: &QueuedMessage,
    states: &mut [QueuedRecipient],
    original: &[u8],
) -> Result<(), StoreError> {
    let cfg = &shared.ctx.config;
    let done: Vec<&QueuedRecipient> = states
        .iter()
        .filter(|r| r.state != RcptState::Pending && !r.reported)
        .collect();
    if done.is_empty() {
        return Ok(());
    }
    let entries: Vec<(&QueuedRecipient, Action)> = if msg.envelope.sender.is_empty() {
        // Never a DSN about a DSN (RFC 3461 §6.2, RFC 5321 §6.1).
        Vec::new()
    } else {
        done.iter()
            .filter_map(|r| action_for(r).map(|a| (*r, a)))
            .collect()
    };
    if !entries.is_empty() {
        let now = SystemTime::now();
        let dsn = dsn::build(&Report {
            reporting_mta: &cfg.hostname,
            envelope: &msg.envelope,
            arrival: msg.queued_at,
            recipients: entries,
            original,
            return_limit: cfg.dsn_return_limit,
            now,
        });
        if let Err(e) = send_dsn(shared, &msg.envelope.sender, dsn, now).await {
            let give_up = msg
                .queued_at
                .checked_add(cfg.expire.saturating_mul(2))
                .is_none_or(|t| now >= t);
            if !give_up {
                return Err(e);
            }
            tracing::warn!(
                queue_id = msg.id,
                "DSN to {} dropped: {e}",
                msg.envelope.sender
            );
        }
    }
    let indexes: Vec<u32> = done.iter().map(|r| r.index).collect();
    shared.store.mark_reported(msg.id, &indexes).await?;
    for r in states.iter_mut().filter(|r| indexes.contains(&r.index)) {
        r.reported = true;
    }
    Ok(())
}

/// The local accounts an address delivers to (a `+tag` form falls back to the base
/// address); `None` when it is not local.
async fn local_accounts<S: QueueStore>(
    store: &S,
    address: &str,
    separator: Option<char>,
) -> Result<Option<Vec<AccountId>>, StoreError> {
    let Ok(addr) = Address::parse(address) else {
        return Ok(None);
    };
    match store.resolve_recipient(&addr).await {
        Ok(a) => return Ok(Some(a)),
        Err(StoreError::NotFound(_) | StoreError::Refused(_)) => {}
        Err(e) => return Err(e),
    }
    let base = separator
        .and_then(|sep| addr.local().split_once(sep))
        .map(|(base, _)| format!("{base}@{}", addr.domain_str()))
        .and_then(|b| Address::parse(&b).ok());
    if let Some(base) = base {
        match store.resolve_recipient(&base).await {
            Ok(a) => return Ok(Some(a)),
            Err(StoreError::NotFound(_) | StoreError::Refused(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Delivers a DSN from `<>`: into the sender's INBOX when the sender is local, else
/// into the queue (RFC 3461 §6.2).
async fn send_dsn<S: QueueStore>(
    shared: &Shared<S>,
    sender: &str,
    dsn: Vec<u8>,
    now: SystemTime,
) -> Result<(), StoreError> {
    let store = &shared.store;
    if let Some(accounts) =
        local_accounts(store, sender, shared.ctx.config.subaddress_separator).await?
    {
        // RFC 5321 §4.4: Return-Path at final delivery; a DSN's is empty.
        let mut local = b"Return-Path: <>\r\n".to_vec();
        local.extend_from_slice(&dsn);
        store
            .submit(Submission {
                message: &local,
                local_prefix: &[],
                received: now,
                local: &accounts,
                outbound: None,
            })
            .await?;
        return Ok(());
    }
    let domain = sender.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    let is_local_domain = store
        .list_domains()
        .await?
        .iter()
        .any(|d| d.as_str().eq_ignore_ascii_case(domain));
    if is_local_domain {
        tracing::warn!("DSN for {sender} dropped: no such local address");
        return Ok(());
    }
    let envelope = Envelope {
        sender: String::new(),
        envid: None,
        ret: None,
        eight_bit: has_8bit(&dsn),
        smtputf8: !sender.is_ascii() || has_8bit(dsn.get(..header_len(&dsn)).unwrap_or_default()),
    };
    let rcpt = [NewRecipient {
        address: sender.to_string(),
        orcpt: None,
        notify: None,
    }];
    store
        .submit(Submission {
            message: &dsn,
            local_prefix: &[],
            received: now,
            local: &[],
            outbound: Some((&envelope, &rcpt)),
        })
        .await?;
    shared.wake.notify_one();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use buudien_store::Notify as DsnNotify;

    fn r(state: RcptState, notify: Option<DsnNotify>, relayed: bool) -> QueuedRecipient {
        QueuedRecipient {
            index: 0,
            address: "x@y".into(),
            orcpt: None,
            notify,
            state,
            attempts: 1,
            next_attempt: SystemTime::UNIX_EPOCH,
            last_reply: None,
            relayed,
            reported: false,
        }
    }

    #[test]
    fn which_recipients_get_a_dsn() {
        let success = Some(DsnNotify {
            success: true,
            failure: false,
            delay: false,
        });
        let failure = Some(DsnNotify {
            success: false,
            failure: true,
            delay: false,
        });
        assert_eq!(
            action_for(&r(RcptState::Failed, None, false)),
            Some(Action::Failed)
        );
        assert_eq!(
            action_for(&r(RcptState::Failed, failure, false)),
            Some(Action::Failed)
        );
        assert_eq!(
            action_for(&r(RcptState::Failed, Some(DsnNotify::NEVER), false)),
            None
        );
        assert_eq!(action_for(&r(RcptState::Failed, success, false)), None);
        assert_eq!(action_for(&r(RcptState::Delivered, None, false)), None);
        assert_eq!(
            action_for(&r(RcptState::Delivered, success, true)),
            Some(Action::Relayed)
        );
        assert_eq!(
            action_for(&r(RcptState::Delivered, success, false)),
            None,
            "passed on"
        );
        assert_eq!(action_for(&r(RcptState::Pending, None, false)), None);
    }

    #[test]
    fn destinations() {
        let mut cfg = QueueConfig::default();
        assert_eq!(
            destination(&cfg, "bob@B.Example"),
            Ok(Destination::Domain("b.example".into()))
        );
        assert_eq!(
            destination(&cfg, "\"a@b\"@[127.0.0.1]"),
            Ok(Destination::Domain("[127.0.0.1]".into()))
        );
        assert!(destination(&cfg, "nobody").is_err());
        assert!(destination(&cfg, "@x").is_err());
        cfg.smarthost = Some(crate::Smarthost {
            host: "relay".into(),
            port: 25,
            tls: crate::SmarthostTls::None,
            auth: None,
        });
        assert_eq!(
            destination(&cfg, "bob@b.example"),
            Ok(Destination::Smarthost)
        );
    }
}
