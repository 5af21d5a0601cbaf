//! Domains, accounts and aliases, each operation inside the caller's transaction.

use crate::{Tx, exec, get, row_one, row_opt, rows};
use buudien_store::{
    Account, AccountId, Alias, AuthRecord, DEFAULT_MAILBOXES, MAX_ALIAS_DEPTH, NewAccount,
    PasswordRecord, Quota, Result, StoreError,
};
use buudien_types::{Address, Domain, Secret};
use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch, saturating.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn to_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|x| u64::try_from(x).ok())
}

fn to_i64(v: Option<u64>) -> Option<i64> {
    v.map(|x| i64::try_from(x).unwrap_or(i64::MAX))
}

async fn domain_exists(tx: &Tx<'_>, domain: &str) -> Result<bool> {
    Ok(
        row_opt(tx, "SELECT 1 FROM domains WHERE name = $1", &[&domain])
            .await?
            .is_some(),
    )
}

pub(crate) async fn account_id(tx: &Tx<'_>, address: &Address) -> Result<Option<AccountId>> {
    let r = row_opt(
        tx,
        "SELECT id FROM accounts WHERE address = $1",
        &[&address.as_str()],
    )
    .await?;
    r.map(|r| get(&r, 0)).transpose()
}

/// Adds a local domain.
pub async fn add_domain(tx: &Tx<'_>, domain: &Domain) -> Result<()> {
    let n = exec(
        tx,
        "INSERT INTO domains (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&domain.as_str(), &unix_now()],
    )
    .await?;
    if n == 0 {
        return Err(StoreError::Exists(format!("domain {domain}")));
    }
    Ok(())
}

/// Removes a domain that no account or alias uses.
pub async fn remove_domain(tx: &Tx<'_>, domain: &Domain) -> Result<()> {
    let name = domain.as_str();
    let Some(_) = row_opt(
        tx,
        "SELECT 1 FROM domains WHERE name = $1 FOR UPDATE",
        &[&name],
    )
    .await?
    else {
        return Err(StoreError::NotFound(format!("domain {domain}")));
    };
    let users: i64 = get(
        &row_one(
            tx,
            "SELECT (SELECT count(*) FROM accounts WHERE domain = $1)
                  + (SELECT count(*) FROM aliases WHERE domain = $1)",
            &[&name],
        )
        .await?,
        0,
    )?;
    if users > 0 {
        return Err(StoreError::Refused(format!(
            "domain {domain} still has {users} accounts or aliases; remove them first"
        )));
    }
    exec(tx, "DELETE FROM domains WHERE name = $1", &[&name]).await?;
    Ok(())
}

/// The local domains, sorted.
pub async fn list_domains(tx: &Tx<'_>) -> Result<Vec<Domain>> {
    let rs = rows(tx, "SELECT name FROM domains ORDER BY name", &[]).await?;
    rs.iter()
        .map(|r| {
            let n: &str = get(r, 0)?;
            Domain::parse(n).map_err(|e| StoreError::Database(format!("bad domain row: {e}")))
        })
        .collect()
}

/// Creates an account and its default mailboxes.
pub async fn add_account(tx: &Tx<'_>, new: &NewAccount) -> Result<AccountId> {
    let domain = new.address.domain_str();
    // Locks the domain so it cannot be removed meanwhile.
    if row_opt(
        tx,
        "SELECT 1 FROM domains WHERE name = $1 FOR SHARE",
        &[&domain],
    )
    .await?
    .is_none()
    {
        return Err(StoreError::NotFound(format!("domain {domain}")));
    }
    if account_id(tx, &new.address).await?.is_some() {
        return Err(StoreError::Exists(format!("account {}", new.address)));
    }
    if alias_targets(tx, &new.address).await?.is_some() {
        return Err(StoreError::Exists(format!("alias {}", new.address)));
    }
    let now = unix_now();
    let id: i64 = get(
        &row_one(
            tx,
            "INSERT INTO accounts (address, domain, password_hash, scram_sha256, quota_bytes,
                                   quota_messages, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[
                &new.address.as_str(),
                &domain,
                &new.password.hash,
                &new.password.scram_sha256,
                &to_i64(new.quota.bytes),
                &to_i64(new.quota.messages),
                &now,
            ],
        )
        .await?,
        0,
    )?;
    // UIDVALIDITY: the creation time, so a re-created account gets a new one.
    let uidvalidity = i64::from(u32::try_from(now).unwrap_or(u32::MAX).max(1));
    for (name, special) in DEFAULT_MAILBOXES {
        exec(
            tx,
            "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity, subscribed)
             VALUES ($1, $2, $3, $4, true)",
            &[&id, &name, &special.map(|s| s.as_str()), &uidvalidity],
        )
        .await?;
    }
    Ok(id)
}

async fn update_account(
    tx: &Tx<'_>,
    address: &Address,
    sql: &str,
    params: &[crate::P<'_>],
) -> Result<()> {
    if exec(tx, sql, params).await? == 0 {
        return Err(StoreError::NotFound(format!("account {address}")));
    }
    Ok(())
}

/// Replaces the password hash and SCRAM keys.
pub async fn set_password(tx: &Tx<'_>, address: &Address, pw: &PasswordRecord) -> Result<()> {
    update_account(
        tx,
        address,
        "UPDATE accounts SET password_hash = $1, scram_sha256 = $2 WHERE address = $3",
        &[&pw.hash, &pw.scram_sha256, &address.as_str()],
    )
    .await
}

/// Sets or clears the APOP secret.
pub async fn set_apop_secret(tx: &Tx<'_>, address: &Address, secret: Option<&str>) -> Result<()> {
    update_account(
        tx,
        address,
        "UPDATE accounts SET apop_secret = $1 WHERE address = $2",
        &[&secret, &address.as_str()],
    )
    .await
}

/// Sets the quota.
pub async fn set_quota(tx: &Tx<'_>, address: &Address, quota: Quota) -> Result<()> {
    update_account(
        tx,
        address,
        "UPDATE accounts SET quota_bytes = $1, quota_messages = $2 WHERE address = $3",
        &[
            &to_i64(quota.bytes),
            &to_i64(quota.messages),
            &address.as_str(),
        ],
    )
    .await
}

/// Removes an account, its mailboxes and messages; blobs nobody else uses become
/// garbage.
pub async fn remove_account(tx: &Tx<'_>, address: &Address) -> Result<()> {
    let Some(r) = row_opt(
        tx,
        "SELECT id FROM accounts WHERE address = $1 FOR UPDATE",
        &[&address.as_str()],
    )
    .await?
    else {
        return Err(StoreError::NotFound(format!("account {address}")));
    };
    let id: i64 = get(&r, 0)?;
    // Blob rows in id order, so concurrent removals lock them in one order.
    exec(
        tx,
        "UPDATE blobs b SET refcount = b.refcount - e.n
         FROM (SELECT blob_id, count(*) AS n FROM emails WHERE account_id = $1
               GROUP BY blob_id ORDER BY blob_id) e
         WHERE b.id = e.blob_id",
        &[&id],
    )
    .await?;
    exec(
        tx,
        "DELETE FROM mailbox_entries
         WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = $1)",
        &[&id],
    )
    .await?;
    exec(tx, "DELETE FROM emails WHERE account_id = $1", &[&id]).await?;
    exec(tx, "DELETE FROM mailboxes WHERE account_id = $1", &[&id]).await?;
    exec(
        tx,
        "DELETE FROM maildrop_locks WHERE account_id = $1",
        &[&id],
    )
    .await?;
    exec(tx, "DELETE FROM accounts WHERE id = $1", &[&id]).await?;
    Ok(())
}

const ACCOUNT_COLUMNS: &str =
    "SELECT id, address, quota_bytes, quota_messages, used_bytes, used_messages FROM accounts";

fn account_from_row(r: &tokio_postgres::Row) -> Result<Account> {
    let address: &str = get(r, 1)?;
    let address = Address::parse(address)
        .map_err(|e| StoreError::Database(format!("bad account row: {e}")))?;
    Ok(Account {
        id: get(r, 0)?,
        address,
        quota: Quota {
            bytes: to_u64(get(r, 2)?),
            messages: to_u64(get(r, 3)?),
        },
        used_bytes: u64::try_from(get::<i64>(r, 4)?).unwrap_or(0),
        used_messages: u64::try_from(get::<i64>(r, 5)?).unwrap_or(0),
    })
}

/// All accounts, sorted by address.
pub async fn list_accounts(tx: &Tx<'_>) -> Result<Vec<Account>> {
    let rs = rows(tx, &format!("{ACCOUNT_COLUMNS} ORDER BY address"), &[]).await?;
    rs.iter().map(account_from_row).collect()
}

/// One account.
pub async fn account(tx: &Tx<'_>, address: &Address) -> Result<Option<Account>> {
    let r = row_opt(
        tx,
        &format!("{ACCOUNT_COLUMNS} WHERE address = $1"),
        &[&address.as_str()],
    )
    .await?;
    r.as_ref().map(account_from_row).transpose()
}

/// What a login checks.
pub async fn auth_record(tx: &Tx<'_>, address: &Address) -> Result<Option<AuthRecord>> {
    let Some(r) = row_opt(
        tx,
        "SELECT id, address, password_hash, scram_sha256, apop_secret
         FROM accounts WHERE address = $1",
        &[&address.as_str()],
    )
    .await?
    else {
        return Ok(None);
    };
    let addr: &str = get(&r, 1)?;
    let address =
        Address::parse(addr).map_err(|e| StoreError::Database(format!("bad account row: {e}")))?;
    Ok(Some(AuthRecord {
        account_id: get(&r, 0)?,
        address,
        password_hash: get(&r, 2)?,
        scram_sha256: get(&r, 3)?,
        apop_secret: get::<Option<String>>(&r, 4)?.map(Secret::new),
    }))
}

async fn alias_targets(tx: &Tx<'_>, address: &Address) -> Result<Option<Vec<String>>> {
    let r = row_opt(
        tx,
        "SELECT targets FROM aliases WHERE address = $1",
        &[&address.as_str()],
    )
    .await?;
    let t: Option<String> = r.map(|r| get(&r, 0)).transpose()?;
    Ok(t.map(|t| t.lines().map(str::to_string).collect()))
}

/// Adds or replaces an alias.
pub async fn add_alias(tx: &Tx<'_>, address: &Address, targets: &[Address]) -> Result<()> {
    if targets.is_empty() {
        return Err(StoreError::Refused(format!(
            "alias {address} needs at least one target"
        )));
    }
    let domain = address.domain_str();
    if !domain_exists(tx, domain).await? {
        return Err(StoreError::NotFound(format!("domain {domain}")));
    }
    if account_id(tx, address).await?.is_some() {
        return Err(StoreError::Exists(format!("account {address}")));
    }
    let joined = targets
        .iter()
        .map(Address::as_str)
        .collect::<Vec<_>>()
        .join("\n");
    exec(
        tx,
        "INSERT INTO aliases (address, domain, targets) VALUES ($1, $2, $3)
         ON CONFLICT (address) DO UPDATE SET targets = excluded.targets",
        &[&address.as_str(), &domain, &joined],
    )
    .await?;
    Ok(())
}

/// Removes an alias.
pub async fn remove_alias(tx: &Tx<'_>, address: &Address) -> Result<()> {
    let n = exec(
        tx,
        "DELETE FROM aliases WHERE address = $1",
        &[&address.as_str()],
    )
    .await?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("alias {address}")));
    }
    Ok(())
}

/// All aliases, sorted.
pub async fn list_aliases(tx: &Tx<'_>) -> Result<Vec<Alias>> {
    let rs = rows(
        tx,
        "SELECT address, targets FROM aliases ORDER BY address",
        &[],
    )
    .await?;
    let bad = |e| StoreError::Database(format!("bad alias row: {e}"));
    rs.iter()
        .map(|r| {
            let a: &str = get(r, 0)?;
            let t: &str = get(r, 1)?;
            Ok(Alias {
                address: Address::parse(a).map_err(bad)?,
                targets: t
                    .lines()
                    .map(|x| Address::parse(x).map_err(bad))
                    .collect::<Result<_>>()?,
            })
        })
        .collect()
}

/// The accounts an address delivers to, aliases expanded breadth-first (as the SQLite
/// backend does): a target that is neither account nor alias is skipped; a chain
/// deeper than [`MAX_ALIAS_DEPTH`] (a loop) is refused.
pub async fn resolve_recipient(tx: &Tx<'_>, address: &Address) -> Result<Vec<AccountId>> {
    let mut found = BTreeSet::new();
    let mut level = vec![address.clone()];
    let mut seen_alias = false;
    for _ in 0..=MAX_ALIAS_DEPTH {
        let mut next = Vec::new();
        for a in level {
            if let Some(id) = account_id(tx, &a).await? {
                found.insert(id);
            } else if let Some(targets) = alias_targets(tx, &a).await? {
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
