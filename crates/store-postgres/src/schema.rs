//! Tables and their versioned migrations.
//!
//! `schema_version` has one row per applied version with the oldest code version
//! (`min_code`) that can use a database at that version. Migrations are
//! expand-then-contract: a version that only adds keeps `min_code` low, so nodes still
//! running the previous code go on working during a rolling upgrade; a contracting
//! version raises it. A node whose [`CODE_VERSION`] is below the highest `min_code`
//! refuses to start. All pending versions run in one transaction under a
//! transaction-scoped advisory lock, so two nodes starting at once migrate one after
//! the other and the second finds nothing left to do.

use crate::{Inner, pg_err};
use buudien_store::{Result, StoreError};

/// The version of this code's view of the schema. Bumped whenever code depends on a
/// new schema version.
pub const CODE_VERSION: i64 = 2;

/// The advisory lock key migrations serialise on ("buudien" in ASCII).
const MIGRATION_LOCK: i64 = 0x0062_7575_6469_656e;

/// One schema version: its number, the oldest code version that can use it, its SQL.
struct Migration {
    version: i64,
    min_code: i64,
    sql: &'static str,
}

/// V1: the mail model, the queue, blobs in chunks, leases, and the change trigger.
/// Text columns that are sorted use the "C" collation (byte order, as the SQLite
/// backend sorts). Times: `received_at` in seconds, queue times in milliseconds since
/// the epoch (as the SQLite backend); leases use the database clock (`now()`), so
/// nodes with skewed clocks agree.
const V1: &str = r#"
CREATE TABLE domains (
    name        text COLLATE "C" PRIMARY KEY,
    created_at  bigint NOT NULL
);
CREATE TABLE accounts (
    id                bigserial PRIMARY KEY,
    address           text COLLATE "C" NOT NULL UNIQUE,
    domain            text COLLATE "C" NOT NULL REFERENCES domains(name),
    password_hash     text NOT NULL,
    scram_sha256      text NOT NULL,
    apop_secret       text,
    quota_bytes       bigint,
    quota_messages    bigint,
    used_bytes        bigint NOT NULL DEFAULT 0,
    used_messages     bigint NOT NULL DEFAULT 0,
    last_uidvalidity  bigint NOT NULL DEFAULT 0,
    created_at        bigint NOT NULL
);
CREATE INDEX accounts_domain ON accounts(domain);
CREATE TABLE aliases (
    address  text COLLATE "C" PRIMARY KEY,
    domain   text COLLATE "C" NOT NULL REFERENCES domains(name),
    targets  text NOT NULL
);
CREATE INDEX aliases_domain ON aliases(domain);
CREATE TABLE mailboxes (
    id             bigserial PRIMARY KEY,
    account_id     bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name           text COLLATE "C" NOT NULL,
    special_use    text,
    subscribed     boolean NOT NULL DEFAULT true,
    uidvalidity    bigint NOT NULL,
    uidnext        bigint NOT NULL DEFAULT 1,
    highestmodseq  bigint NOT NULL DEFAULT 1,
    messages       bigint NOT NULL DEFAULT 0,
    recent_uid     bigint NOT NULL DEFAULT 0,
    UNIQUE (account_id, name)
);
CREATE TABLE orphan_subscriptions (
    account_id  bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name        text COLLATE "C" NOT NULL,
    PRIMARY KEY (account_id, name)
);
CREATE TABLE blobs (
    id        bytea PRIMARY KEY,
    size      bigint NOT NULL,
    refcount  bigint NOT NULL
);
CREATE INDEX blobs_garbage ON blobs(id) WHERE refcount <= 0;
CREATE TABLE blob_chunks (
    blob_id  bytea NOT NULL REFERENCES blobs(id) ON DELETE CASCADE,
    seq      integer NOT NULL,
    data     bytea NOT NULL,
    PRIMARY KEY (blob_id, seq)
);
CREATE TABLE snapshots (
    id     bigserial PRIMARY KEY,
    until  timestamptz NOT NULL
);
CREATE TABLE snapshot_blobs (
    snapshot_id  bigint NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    blob_id      bytea NOT NULL,
    PRIMARY KEY (blob_id, snapshot_id)
);
CREATE TABLE emails (
    id              bigserial PRIMARY KEY,
    account_id      bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    blob_id         bytea NOT NULL REFERENCES blobs(id),
    size            bigint NOT NULL,
    surrogate_size  bigint,
    received_at     bigint NOT NULL,
    meta            bytea,
    surrogate_meta  bytea
);
CREATE INDEX emails_account ON emails(account_id);
CREATE TABLE mailbox_entries (
    mailbox_id  bigint NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid         bigint NOT NULL,
    email_id    bigint NOT NULL REFERENCES emails(id) ON DELETE CASCADE,
    flags       integer NOT NULL DEFAULT 0,
    keywords    text NOT NULL DEFAULT '',
    modseq      bigint NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX entries_email ON mailbox_entries(email_id);
CREATE INDEX entries_modseq ON mailbox_entries(mailbox_id, modseq);
CREATE TABLE changes (
    mailbox_id  bigint NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    modseq      bigint NOT NULL,
    uid         bigint NOT NULL,
    kind        integer NOT NULL,
    PRIMARY KEY (mailbox_id, modseq, uid)
);
CREATE TABLE maildrop_locks (
    account_id  bigint PRIMARY KEY,
    holder      text NOT NULL,
    until       timestamptz NOT NULL
);
CREATE TABLE queue (
    id           bigserial PRIMARY KEY,
    sender       text NOT NULL,
    envid        text,
    ret          integer,
    eight_bit    boolean NOT NULL,
    smtputf8     boolean NOT NULL,
    blob_id      bytea NOT NULL REFERENCES blobs(id),
    size         bigint NOT NULL,
    queued_at    bigint NOT NULL,
    lease_until  bigint NOT NULL DEFAULT 0
);
CREATE TABLE queue_rcpts (
    queue_id      bigint NOT NULL REFERENCES queue(id) ON DELETE CASCADE,
    idx           integer NOT NULL,
    address       text NOT NULL,
    orcpt         text,
    notify        integer,
    state         integer NOT NULL DEFAULT 0,
    attempts      integer NOT NULL DEFAULT 0,
    next_attempt  bigint NOT NULL,
    last_reply    text,
    relayed       boolean NOT NULL DEFAULT false,
    reported      boolean NOT NULL DEFAULT false,
    PRIMARY KEY (queue_id, idx)
);
CREATE INDEX queue_rcpts_due ON queue_rcpts(next_attempt) WHERE state = 0;
CREATE FUNCTION buudien_mailbox_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('buudien_mailbox', OLD.id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER mailbox_changed
    AFTER UPDATE OF uidnext, highestmodseq OR DELETE ON mailboxes
    FOR EACH ROW EXECUTE FUNCTION buudien_mailbox_changed();
"#;

/// V2: the text index behind SEARCH BODY / TEXT (see `text`): each email's folded
/// searchable text in `email_text`, `emails.text_state` (0 not yet, 1 indexed, 2 left
/// to a scan), and trigram indexes when the `pg_trgm` extension can be had (it is a
/// trusted extension: the database owner may create it). Without it the index is not
/// used and SEARCH scans. Only adds: code of version 1 runs on it.
const V2: &str = r#"
ALTER TABLE emails ADD COLUMN text_state smallint NOT NULL DEFAULT 0;
CREATE INDEX emails_text_pending ON emails(id) WHERE text_state = 0;
CREATE TABLE email_text (
    email_id  bigint PRIMARY KEY REFERENCES emails(id) ON DELETE CASCADE,
    header    text NOT NULL,
    body      text NOT NULL
);
DO $$ BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm is not available: SEARCH BODY/TEXT reads the messages';
END $$;
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE INDEX email_text_header_trgm ON email_text USING gin (header gin_trgm_ops);
        CREATE INDEX email_text_body_trgm ON email_text USING gin (body gin_trgm_ops);
    END IF;
END $$;
"#;

/// V3: failed and successful logins of every node (`auth`), so that the nodes of a
/// cluster throttle password guessing as one. Only adds: code of version 1 runs on it.
const V3: &str = r#"
CREATE TABLE auth_events (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node    text NOT NULL,
    at      timestamptz NOT NULL DEFAULT now(),
    failed  boolean NOT NULL,
    ip      text NOT NULL,
    login   text
);
CREATE INDEX auth_events_at ON auth_events(at);
"#;

/// V4: `queue.claimed_by`, the node that holds a claim (see `queue`), so a node
/// restarted after a crash releases its own claims at once. Only adds: code of version
/// 1 runs on it (its claims name no node and lapse with their lease).
const V4: &str = r#"
ALTER TABLE queue ADD COLUMN claimed_by text;
"#;

/// V5: objects of collected blobs still to be deleted from object storage (see
/// `blobs_s3`): the transaction that deletes a blob row records its id here, and the
/// object goes after it committed. Only adds: code of version 1 runs on it.
const V5: &str = r#"
CREATE TABLE blob_deletions (
    id  bytea PRIMARY KEY
);
"#;

/// V6: a STORE drops the message's previous flag change from `changes` by UID, which
/// the primary key (by MODSEQ) could only find by reading every change the mailbox
/// ever logged. Only adds: code of version 1 runs on it.
const V6: &str = r#"
CREATE INDEX changes_uid ON changes(mailbox_id, uid);
"#;

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        min_code: 1,
        sql: V1,
    },
    Migration {
        version: 2,
        min_code: 1,
        sql: V2,
    },
    Migration {
        version: 3,
        min_code: 1,
        sql: V3,
    },
    Migration {
        version: 4,
        min_code: 1,
        sql: V4,
    },
    Migration {
        version: 5,
        min_code: 1,
        sql: V5,
    },
    Migration {
        version: 6,
        min_code: 1,
        sql: V6,
    },
];

/// The newest schema version this code knows.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Brings the database to the newest schema as code of version `code`
/// ([`CODE_VERSION`] but in upgrade tests), or refuses when it needs newer code.
pub(crate) async fn migrate_as(inner: &Inner, code: i64) -> Result<()> {
    let mut client = inner.client().await?;
    let tx = client.transaction().await.map_err(pg_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_err)?;
    // Without it, every start logs PostgreSQL's NOTICE that schema_version exists
    // (the pg_trgm notice of V2 is logged by `text` instead).
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await
        .map_err(pg_err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version     bigint PRIMARY KEY,
             min_code    bigint NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(pg_err)?;
    let row = tx
        .query_one(
            "SELECT coalesce(max(version), 0), coalesce(max(min_code), 0) FROM schema_version",
            &[],
        )
        .await
        .map_err(pg_err)?;
    let current: i64 = row.try_get(0).map_err(pg_err)?;
    let min_code: i64 = row.try_get(1).map_err(pg_err)?;
    if code < min_code {
        return Err(StoreError::Refused(format!(
            "the database schema (version {current}) needs buudien code version {min_code} \
             or newer; this is code version {code}: upgrade buudien"
        )));
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.batch_execute(m.sql).await.map_err(pg_err)?;
        tx.execute(
            "INSERT INTO schema_version (version, min_code) VALUES ($1, $2)",
            &[&m.version, &m.min_code],
        )
        .await
        .map_err(pg_err)?;
        tracing::info!(version = m.version, "PostgreSQL schema migrated");
    }
    tx.commit().await.map_err(pg_err)
}
