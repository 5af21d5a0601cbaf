//! Tables and migrations. `PRAGMA user_version` is the schema version; each migration
//! runs in its own transaction. Later versions only add (expand, then contract), so an
//! older binary keeps working during an upgrade.

use crate::db_err;
use buudien_store::{Result, StoreError};
use rusqlite::{Connection, TransactionBehavior};

const V1: &str = "
CREATE TABLE domains (
    name        TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL
);
CREATE TABLE accounts (
    id             INTEGER PRIMARY KEY,
    address        TEXT NOT NULL UNIQUE,
    domain         TEXT NOT NULL REFERENCES domains(name),
    password_hash  TEXT NOT NULL,
    scram_sha256   TEXT NOT NULL,
    apop_secret    TEXT,
    quota_bytes    INTEGER,
    quota_messages INTEGER,
    used_bytes     INTEGER NOT NULL DEFAULT 0,
    used_messages  INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL
);
CREATE INDEX accounts_domain ON accounts(domain);
CREATE TABLE aliases (
    address  TEXT PRIMARY KEY,
    domain   TEXT NOT NULL REFERENCES domains(name),
    targets  TEXT NOT NULL            -- one address per line
);
CREATE INDEX aliases_domain ON aliases(domain);
CREATE TABLE mailboxes (
    id             INTEGER PRIMARY KEY,
    account_id     INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    special_use    TEXT,
    subscribed     INTEGER NOT NULL DEFAULT 1,
    uidvalidity    INTEGER NOT NULL,
    uidnext        INTEGER NOT NULL DEFAULT 1,
    highestmodseq  INTEGER NOT NULL DEFAULT 1,
    messages       INTEGER NOT NULL DEFAULT 0,
    UNIQUE (account_id, name)
);
CREATE TABLE blobs (
    id        BLOB PRIMARY KEY,       -- BLAKE3 of the bytes (SHA-256 before)
    size      INTEGER NOT NULL,
    refcount  INTEGER NOT NULL        -- emails referring to it; 0 = garbage
);
CREATE INDEX blobs_garbage ON blobs(refcount) WHERE refcount <= 0;
CREATE TABLE emails (
    id              INTEGER PRIMARY KEY,
    account_id      INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    blob_id         BLOB NOT NULL REFERENCES blobs(id),
    size            INTEGER NOT NULL,
    surrogate_size  INTEGER,          -- size of the ASCII surrogate, if it needs one
    received_at     INTEGER NOT NULL
);
CREATE INDEX emails_account ON emails(account_id);
CREATE TABLE mailbox_entries (
    mailbox_id  INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid         INTEGER NOT NULL,
    email_id    INTEGER NOT NULL REFERENCES emails(id) ON DELETE CASCADE,
    flags       INTEGER NOT NULL DEFAULT 0,   -- system flags, a bit each
    keywords    TEXT NOT NULL DEFAULT '',     -- space-separated keywords
    modseq      INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX entries_email ON mailbox_entries(email_id);
CREATE TABLE changes (
    mailbox_id  INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    modseq      INTEGER NOT NULL,
    uid         INTEGER NOT NULL,
    kind        INTEGER NOT NULL,     -- 1 flags, 2 expunge
    PRIMARY KEY (mailbox_id, modseq, uid)
) WITHOUT ROWID;
";

/// The outbound queue (RFC 5321 §6.1: the server's responsibility once it said `250`).
/// Times are milliseconds since the epoch; a queued message holds one reference on
/// its blob (`blobs.refcount` counts emails and queued messages).
const V2: &str = "
CREATE TABLE queue (
    id           INTEGER PRIMARY KEY,
    sender       TEXT NOT NULL,            -- '' is the null sender
    envid        TEXT,                     -- DSN ENVID, decoded
    ret          INTEGER,                  -- DSN RET: NULL, 1 FULL, 2 HDRS
    eight_bit    INTEGER NOT NULL,
    smtputf8     INTEGER NOT NULL,
    blob_id      BLOB NOT NULL REFERENCES blobs(id),
    size         INTEGER NOT NULL,
    queued_at    INTEGER NOT NULL,
    lease_until  INTEGER NOT NULL DEFAULT 0  -- claimed until then
);
CREATE TABLE queue_rcpts (
    queue_id      INTEGER NOT NULL REFERENCES queue(id) ON DELETE CASCADE,
    idx           INTEGER NOT NULL,
    address       TEXT NOT NULL,
    orcpt         TEXT,
    notify        INTEGER,                 -- NULL = not given; bits 1 SUCCESS 2 FAILURE 4 DELAY
    state         INTEGER NOT NULL DEFAULT 0,  -- 0 pending, 1 delivered, 2 failed
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_attempt  INTEGER NOT NULL,
    last_reply    TEXT,
    relayed       INTEGER NOT NULL DEFAULT 0,
    reported      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue_id, idx)
) WITHOUT ROWID;
CREATE INDEX queue_rcpts_due ON queue_rcpts(next_attempt) WHERE state = 0;
";

/// V3: the last UIDVALIDITY an account gave out, so that a mailbox deleted and
/// created again always gets a new one (RFC 9051 §2.3.1.1), even within a second.
const V3: &str = "
ALTER TABLE accounts ADD COLUMN last_uidvalidity INTEGER NOT NULL DEFAULT 0;
UPDATE accounts SET last_uidvalidity =
    coalesce((SELECT max(uidvalidity) FROM mailboxes WHERE account_id = accounts.id), 0);
";

/// V4: the parsed structure of each email (and of its ASCII surrogate), stored at
/// delivery so that IMAP never re-parses a message; the `\\Recent` mark per mailbox;
/// an index for "what changed since MODSEQ n".
const V4: &str = "
ALTER TABLE emails ADD COLUMN meta BLOB;
ALTER TABLE emails ADD COLUMN surrogate_meta BLOB;
ALTER TABLE mailboxes ADD COLUMN recent_uid INTEGER NOT NULL DEFAULT 0;
UPDATE mailboxes SET recent_uid = uidnext - 1;
CREATE INDEX entries_modseq ON mailbox_entries(mailbox_id, modseq);
";

/// V5: subscriptions of names that have no mailbox (RFC 9051 §6.3.7: deleting a
/// mailbox leaves its subscription; SUBSCRIBE may name a mailbox that does not
/// exist). An existing mailbox's subscription stays in `mailboxes.subscribed`.
const V5: &str = "
CREATE TABLE orphan_subscriptions (
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
) WITHOUT ROWID;
";

/// V6: blobs found damaged (missing, or not the size or hash the index records) and
/// set aside under `quarantine/`, one row each, so the damage is reported once and
/// a read of it fails at once (see `quarantine`). The `blobs` row stays: the emails
/// still refer to it until they are expunged.
const V6: &str = "
CREATE TABLE quarantine (
    blob_id   BLOB PRIMARY KEY,       -- the damaged blob (the id its bytes should hash to)
    size      INTEGER NOT NULL,       -- the size the index records
    problem   TEXT NOT NULL,          -- what was wrong, one line
    file      TEXT,                   -- its name under quarantine/; NULL: no file
    found_at  INTEGER NOT NULL        -- seconds since the epoch
);
";

/// The trigger that notes an indexed email's row going (V10).
macro_rules! text_gone_trigger {
    () => {
        "
CREATE TRIGGER email_text_gone AFTER DELETE ON emails WHEN old.text_state = 1 BEGIN
    INSERT OR IGNORE INTO text_gone (id) VALUES (old.id);
END;
"
    };
}

/// The FTS5 table and its trigger, as V7 made them (V10 replaced the trigger).
macro_rules! text_index {
    () => {
        "
CREATE VIRTUAL TABLE email_text USING fts5(
    header, body,
    tokenize = 'trigram case_sensitive 1',
    content = '', contentless_delete = 1
);
CREATE TRIGGER email_text_drop AFTER DELETE ON emails WHEN old.text_state = 1 BEGIN
    DELETE FROM email_text WHERE rowid = old.id;
END;
"
    };
}

/// V7: the text index for SEARCH BODY / TEXT (see `text`). `emails.text_state` says
/// whether an email's text is in `email_text` (0 not yet, 1 indexed, 2 left to a
/// scan: too large or unreadable); the FTS5 table is contentless (the text is not
/// kept twice) with deletes, keyed by `emails.id`, and folded by buudien before it
/// is indexed (`case_sensitive 1`). A trigger drops an email's entry when the email
/// row goes, so no writer has to know of the index. Existing emails start unindexed
/// and are indexed in the background.
const V7: &str = concat!(
    "
ALTER TABLE emails ADD COLUMN text_state INTEGER NOT NULL DEFAULT 0;
CREATE INDEX emails_text_pending ON emails(id) WHERE text_state <> 1;
",
    text_index!()
);

/// The text index's table and trigger as they are now (V7's table, V10's trigger),
/// for `text::rebuild`.
pub(crate) const TEXT_INDEX: &str = concat!(
    "
CREATE VIRTUAL TABLE email_text USING fts5(
    header, body,
    tokenize = 'trigram case_sensitive 1',
    content = '', contentless_delete = 1
);
",
    text_gone_trigger!()
);
/// The tables FTS5 keeps `email_text` in.
pub(crate) const TEXT_INDEX_SHADOWS: &[&str] = &[
    "email_text_data",
    "email_text_idx",
    "email_text_docsize",
    "email_text_config",
    "email_text_content",
];

/// V8: indexes on the columns that reference `blobs(id)`. Deleting a blob row checks
/// the foreign keys, which without them scanned every email and queued message once
/// per blob: garbage collection of thousands of blobs held the write lock for
/// minutes on a large store.
const V8: &str = "
CREATE INDEX emails_blob ON emails(blob_id);
CREATE INDEX queue_blob ON queue(blob_id);
";

/// V9: small messages kept in the database (`blobs.data`, NULL for a blob in its file;
/// see `blobs`), so that storing one costs no fsync of its own: the group commit's
/// one log fsync makes it durable.
const V9: &str = "
ALTER TABLE blobs ADD COLUMN data BLOB;
";

/// V10: an email's entry leaves the text index in the background, not inside the
/// transaction that deletes the email. FTS5 writes a delete out when the statement's
/// savepoint is released and then merges its segments, so with V7's trigger every
/// EXPUNGE (and every garbage collection) paid for an index merge while holding the
/// write lock: on a store with a large index, IMAP's p99 went from 19 to 40-150 ms.
/// Now the trigger notes the email's id in `text_gone`, and the text indexer
/// deletes those entries in batches (see `text`).
const V10: &str = concat!(
    "
DROP TRIGGER email_text_drop;
CREATE TABLE text_gone (id INTEGER PRIMARY KEY);
",
    text_gone_trigger!()
);

/// V11: a STORE drops the message's previous flag change from `changes` by UID,
/// which the primary key (by MODSEQ) could only find by reading every change the
/// mailbox ever logged, expunges included: under the IMAP benchmark that scan was a
/// fifth of the server's CPU, and it grew with the mailbox's history.
const V11: &str = "
CREATE INDEX changes_uid ON changes(mailbox_id, uid);
";

const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11];

/// Brings the database to the newest schema.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err)?;
    let version = usize::try_from(version).unwrap_or(0);
    if version > MIGRATIONS.len() {
        return Err(StoreError::Database(format!(
            "the database has schema version {version}, newer than this buudien knows ({}); \
             run a newer buudien",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(sql).map_err(db_err)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
            .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)
}
