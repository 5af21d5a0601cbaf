//! Domains, accounts and aliases. Every write is one `BEGIN IMMEDIATE` transaction.

use crate::cached::Cached;
use crate::db_err;
use buudien_store::{
    Account, AccountId, Alias, AuthRecord, DEFAULT_MAILBOXES, MAX_ALIAS_DEPTH, NewAccount,
    PasswordRecord, Quota, Result, StoreError,
};
use buudien_types::{Address, Domain, Secret};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch, saturating.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A `BEGIN IMMEDIATE` transaction, entered through the process's write gate (see
/// `gate`), waiting at most the busy timeout; durable when its commit returns.
pub(crate) fn write_tx(conn: &mut Connection) -> Result<crate::gate::WriteTx<'_>> {
    crate::gate::begin(conn, crate::BUSY_TIMEOUT, crate::gate::Sync::Full)
}

/// Like [`write_tx`], for changes that may wait for the next durable commit to reach
/// the disk ([`crate::gate::Sync::Light`]): flags, `\Recent`, expunges, the text
/// index. Never for a write that stores a message or that a delivery depends on.
pub(crate) fn write_tx_light(conn: &mut Connection) -> Result<crate::gate::WriteTx<'_>> {
    crate::gate::begin(conn, crate::BUSY_TIMEOUT, crate::gate::Sync::Light)
}

fn to_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|x| u64::try_from(x).ok())
}

fn to_i64(v: Option<u64>) -> Option<i64> {
    v.map(|x| i64::try_from(x).unwrap_or(i64::MAX))
}

fn domain_exists(tx: &Connection, domain: &str) -> Result<bool> {
    tx.row_c(
        "SELECT 1 FROM domains WHERE name = ?1",
        [domain],
        |_| Ok(()),
    )
    .optional()
    .map(|r| r.is_some())
    .map_err(db_err)
}

fn account_id(tx: &Connection, address: &Address) -> Result<Option<AccountId>> {
    tx.row_c(
        "SELECT id FROM accounts WHERE address = ?1",
        [address.as_str()],
        |r| r.get(0),
    )
    .optional()
    .map_err(db_err)
}

/// Adds a local domain.
pub fn add_domain(conn: &mut Connection, domain: &Domain) -> Result<()> {
    let tx = write_tx(conn)?;
    if domain_exists(&tx, domain.as_str())? {
        return Err(StoreError::Exists(format!("domain {domain}")));
    }
    tx.exec_c(
        "INSERT INTO domains (name, created_at) VALUES (?1, ?2)",
        params![domain.as_str(), unix_now()],
    )
    .map_err(db_err)?;
    tx.commit().map_err(db_err)
}

/// Removes a domain that no account or alias uses.
pub fn remove_domain(conn: &mut Connection, domain: &Domain) -> Result<()> {
    let tx = write_tx(conn)?;
    if !domain_exists(&tx, domain.as_str())? {
        return Err(StoreError::NotFound(format!("domain {domain}")));
    }
    let users: i64 = tx
        .row_c(
            "SELECT (SELECT count(*) FROM accounts WHERE domain = ?1)
                  + (SELECT count(*) FROM aliases WHERE domain = ?1)",
            [domain.as_str()],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    if users > 0 {
        return Err(StoreError::Refused(format!(
            "domain {domain} still has {users} accounts or aliases; remove them first"
        )));
    }
    tx.exec_c("DELETE FROM domains WHERE name = ?1", [domain.as_str()])
        .map_err(db_err)?;
    tx.commit().map_err(db_err)
}

/// The local domains, sorted.
pub fn list_domains(conn: &mut Connection) -> Result<Vec<Domain>> {
    let mut stmt = conn
        .prepare_cached("SELECT name FROM domains ORDER BY name")
        .map_err(db_err)?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)?;
    names
        .iter()
        .map(|n| Domain::parse(n).map_err(|e| StoreError::Database(format!("bad domain row: {e}"))))
        .collect()
}

/// Creates an account and its default mailboxes.
pub fn add_account(conn: &mut Connection, new: &NewAccount) -> Result<AccountId> {
    let tx = write_tx(conn)?;
    let domain = new.address.domain_str();
    if !domain_exists(&tx, domain)? {
        return Err(StoreError::NotFound(format!("domain {domain}")));
    }
    if account_id(&tx, &new.address)?.is_some() {
        return Err(StoreError::Exists(format!("account {}", new.address)));
    }
    if alias_targets(&tx, &new.address)?.is_some() {
        return Err(StoreError::Exists(format!("alias {}", new.address)));
    }
    let now = unix_now();
    tx.exec_c(
        "INSERT INTO accounts (address, domain, password_hash, scram_sha256, quota_bytes,
                               quota_messages, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            new.address.as_str(),
            domain,
            new.password.hash,
            new.password.scram_sha256,
            to_i64(new.quota.bytes),
            to_i64(new.quota.messages),
            now
        ],
    )
    .map_err(db_err)?;
    let id = tx.last_insert_rowid();
    // UIDVALIDITY: the creation time, so a re-created account gets a new one.
    let uidvalidity = u32::try_from(now).unwrap_or(u32::MAX).max(1);
    for (name, special) in DEFAULT_MAILBOXES {
        tx.exec_c(
            "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity)
             VALUES (?1, ?2, ?3, ?4)",
            params![id, name, special.map(|s| s.as_str()), uidvalidity],
        )
        .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)?;
    Ok(id)
}

fn update_account(
    conn: &mut Connection,
    address: &Address,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<()> {
    let tx = write_tx(conn)?;
    let n = tx.execute(sql, params).map_err(db_err)?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("account {address}")));
    }
    tx.commit().map_err(db_err)
}

/// Replaces the password hash and SCRAM keys.
pub fn set_password(conn: &mut Connection, address: &Address, pw: &PasswordRecord) -> Result<()> {
    update_account(
        conn,
        address,
        "UPDATE accounts SET password_hash = ?1, scram_sha256 = ?2 WHERE address = ?3",
        &[&pw.hash, &pw.scram_sha256, &address.as_str()],
    )
}

/// Sets or clears the APOP secret.
pub fn set_apop_secret(
    conn: &mut Connection,
    address: &Address,
    secret: Option<&str>,
) -> Result<()> {
    update_account(
        conn,
        address,
        "UPDATE accounts SET apop_secret = ?1 WHERE address = ?2",
        &[&secret, &address.as_str()],
    )
}

/// Sets the quota.
pub fn set_quota(conn: &mut Connection, address: &Address, quota: Quota) -> Result<()> {
    update_account(
        conn,
        address,
        "UPDATE accounts SET quota_bytes = ?1, quota_messages = ?2 WHERE address = ?3",
        &[
            &to_i64(quota.bytes),
            &to_i64(quota.messages),
            &address.as_str(),
        ],
    )
}

/// Removes an account, its mailboxes and messages; blobs nobody else uses become
/// garbage.
pub fn remove_account(conn: &mut Connection, address: &Address) -> Result<()> {
    let tx = write_tx(conn)?;
    let Some(id) = account_id(&tx, address)? else {
        return Err(StoreError::NotFound(format!("account {address}")));
    };
    tx.exec_c(
        "UPDATE blobs SET refcount = refcount - (
             SELECT count(*) FROM emails WHERE emails.blob_id = blobs.id AND account_id = ?1)
         WHERE id IN (SELECT blob_id FROM emails WHERE account_id = ?1)",
        [id],
    )
    .map_err(db_err)?;
    tx.exec_c(
        "DELETE FROM changes WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = ?1)",
        [id],
    )
    .map_err(db_err)?;
    tx.exec_c(
        "DELETE FROM mailbox_entries
         WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = ?1)",
        [id],
    )
    .map_err(db_err)?;
    tx.exec_c("DELETE FROM emails WHERE account_id = ?1", [id])
        .map_err(db_err)?;
    tx.exec_c("DELETE FROM mailboxes WHERE account_id = ?1", [id])
        .map_err(db_err)?;
    tx.exec_c("DELETE FROM accounts WHERE id = ?1", [id])
        .map_err(db_err)?;
    tx.commit().map_err(db_err)
}

type AccountRow = (i64, String, Option<i64>, Option<i64>, i64, i64);

fn account_from_row(row: AccountRow) -> Result<Account> {
    let (id, address, qb, qm, ub, um) = row;
    let address = Address::parse(&address)
        .map_err(|e| StoreError::Database(format!("bad account row: {e}")))?;
    Ok(Account {
        id,
        address,
        quota: Quota {
            bytes: to_u64(qb),
            messages: to_u64(qm),
        },
        used_bytes: u64::try_from(ub).unwrap_or(0),
        used_messages: u64::try_from(um).unwrap_or(0),
    })
}

/// The account columns `read_account_row` reads, for `concat!`.
macro_rules! account_columns {
    () => {
        "SELECT id, address, quota_bytes, quota_messages, used_bytes, used_messages FROM accounts"
    };
}

fn read_account_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccountRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

/// All accounts, sorted by address.
pub fn list_accounts(conn: &mut Connection) -> Result<Vec<Account>> {
    let mut stmt = conn
        .prepare_cached(concat!(account_columns!(), " ORDER BY address"))
        .map_err(db_err)?;
    let rows = stmt
        .query_map([], read_account_row)
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)?;
    rows.into_iter().map(account_from_row).collect()
}

/// One account.
pub fn account(conn: &mut Connection, address: &Address) -> Result<Option<Account>> {
    // Every delivery looks its recipients up: the statement comes from the cache.
    let row = conn
        .row_c(
            concat!(account_columns!(), " WHERE address = ?1"),
            [address.as_str()],
            read_account_row,
        )
        .optional()
        .map_err(db_err)?;
    row.map(account_from_row).transpose()
}

/// What a login checks.
pub fn auth_record(conn: &mut Connection, address: &Address) -> Result<Option<AuthRecord>> {
    let row: Option<(i64, String, String, String, Option<String>)> = conn
        .row_c(
            "SELECT id, address, password_hash, scram_sha256, apop_secret
             FROM accounts WHERE address = ?1",
            [address.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()
        .map_err(db_err)?;
    let Some((account_id, addr, password_hash, scram_sha256, apop)) = row else {
        return Ok(None);
    };
    let address =
        Address::parse(&addr).map_err(|e| StoreError::Database(format!("bad account row: {e}")))?;
    Ok(Some(AuthRecord {
        account_id,
        address,
        password_hash,
        scram_sha256,
        apop_secret: apop.map(Secret::new),
    }))
}

fn alias_targets(conn: &Connection, address: &Address) -> Result<Option<Vec<String>>> {
    let t: Option<String> = conn
        .row_c(
            "SELECT targets FROM aliases WHERE address = ?1",
            [address.as_str()],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?;
    Ok(t.map(|t| t.lines().map(str::to_string).collect()))
}

/// Adds or replaces an alias.
pub fn add_alias(conn: &mut Connection, address: &Address, targets: &[Address]) -> Result<()> {
    if targets.is_empty() {
        return Err(StoreError::Refused(format!(
            "alias {address} needs at least one target"
        )));
    }
    let tx = write_tx(conn)?;
    let domain = address.domain_str();
    if !domain_exists(&tx, domain)? {
        return Err(StoreError::NotFound(format!("domain {domain}")));
    }
    if account_id(&tx, address)?.is_some() {
        return Err(StoreError::Exists(format!("account {address}")));
    }
    let joined = targets
        .iter()
        .map(Address::as_str)
        .collect::<Vec<_>>()
        .join("\n");
    tx.exec_c(
        "INSERT INTO aliases (address, domain, targets) VALUES (?1, ?2, ?3)
         ON CONFLICT (address) DO UPDATE SET targets = excluded.targets",
        params![address.as_str(), domain, joined],
    )
    .map_err(db_err)?;
    tx.commit().map_err(db_err)
}

/// Removes an alias.
pub fn remove_alias(conn: &mut Connection, address: &Address) -> Result<()> {
    let tx = write_tx(conn)?;
    let n = tx
        .exec_c("DELETE FROM aliases WHERE address = ?1", [address.as_str()])
        .map_err(db_err)?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("alias {address}")));
    }
    tx.commit().map_err(db_err)
}

/// All aliases, sorted.
pub fn list_aliases(conn: &mut Connection) -> Result<Vec<Alias>> {
    let mut stmt = conn
        .prepare_cached("SELECT address, targets FROM aliases ORDER BY address")
        .map_err(db_err)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)?;
    let bad = |e| StoreError::Database(format!("bad alias row: {e}"));
    rows.into_iter()
        .map(|(a, t)| {
            Ok(Alias {
                address: Address::parse(&a).map_err(bad)?,
                targets: t
                    .lines()
                    .map(|x| Address::parse(x).map_err(bad))
                    .collect::<Result<_>>()?,
            })
        })
        .collect()
}

/// The accounts an address delivers to, aliases expanded breadth-first. A target that
/// is neither an account nor an alias is skipped; an alias chain deeper than
/// [`MAX_ALIAS_DEPTH`] (a loop) is refused.
pub fn resolve_recipient(conn: &mut Connection, address: &Address) -> Result<Vec<AccountId>> {
    let mut found = BTreeSet::new();
    let mut level = vec![address.clone()];
    let mut seen_alias = false;
    for _ in 0..=MAX_ALIAS_DEPTH {
        let mut next = Vec::new();
        for a in level {
            if let Some(id) = account_id(conn, &a)? {
                found.insert(id);
            } else if let Some(targets) = alias_targets(conn, &a)? {
                seen_alias = true;
                for t in targets {
                    if let Ok(t) = Address::parse(&t) {
                        next.push(t);
                    }
                }
            }
        }
        next.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        next.dedup();
        if next.is_empty() {
            if found.is_empty() {
                return Err(if seen_alias {
                    StoreError::Refused(format!("alias {address} delivers to no account"))
                } else {
                    StoreError::NotFound(format!("recipient {address}"))
                });
            }
            return Ok(found.into_iter().collect());
        }
        level = next;
    }
    Err(StoreError::Refused(format!(
        "alias {address} nests deeper than {MAX_ALIAS_DEPTH} levels (a loop?)"
    )))
}
