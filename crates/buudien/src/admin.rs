//! `domain`, `user` and `alias`: managing what the store serves.

use crate::cli::{AliasCmd, CliError, DomainCmd, UserCmd, exit};
use crate::config::Config;
use crate::secret::{self, Source};
use crate::store::{open_store, with_store};
use buudien_store::{MailStore, NewAccount, Quota, StoreError};
use buudien_types::{Address, Domain, parse_size};

/// Parses an address argument.
pub fn address(s: &str) -> Result<Address, CliError> {
    Address::parse(s).map_err(|e| CliError::usage(format!("{s:?}: {e}")))
}

fn domain_arg(s: &str) -> Result<Domain, CliError> {
    Domain::parse(s).map_err(|e| CliError::usage(format!("{s:?}: {e}")))
}

/// The error for an address whose domain is not local, naming the fix.
fn not_local(a: &Address) -> CliError {
    let d = a.domain_str();
    CliError::new(
        exit::NOUSER,
        format!("{d} is not a local domain; add it first with `buudien domain add {d}`"),
    )
}

/// `buudien domain …`
pub async fn domain(cfg: &Config, cmd: DomainCmd) -> Result<(), CliError> {
    with_store!(open_store(cfg).await?, |s| domain_on(&s, cmd).await)
}

async fn domain_on(store: &impl MailStore, cmd: DomainCmd) -> Result<(), CliError> {
    match cmd {
        DomainCmd::Add { domain } => {
            let d = domain_arg(&domain)?;
            store.add_domain(&d).await?;
            println!("domain {d} added");
        }
        DomainCmd::List => {
            for d in store.list_domains().await? {
                println!("{d}");
            }
        }
        DomainCmd::Remove { domain } => {
            let d = domain_arg(&domain)?;
            store.remove_domain(&d).await?;
            println!("domain {d} removed");
        }
    }
    Ok(())
}

fn quota_of(size: Option<&str>, messages: Option<u64>) -> Result<Quota, CliError> {
    let bytes = match size {
        None => None,
        Some(s) if s.eq_ignore_ascii_case("none") || s.eq_ignore_ascii_case("unlimited") => None,
        Some(s) => Some(parse_size(s).map_err(|e| CliError::usage(e.to_string()))?),
    };
    Ok(Quota { bytes, messages })
}

fn human(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)];
    for (u, n) in UNITS {
        if bytes >= n {
            return format!("{:.1}{u}", bytes as f64 / n as f64);
        }
    }
    format!("{bytes}")
}

/// Creates an account; returns the generated password when one was generated.
pub async fn add_user(
    store: &impl MailStore,
    email: &Address,
    password: &str,
    quota: Quota,
) -> Result<(), CliError> {
    let record = secret::record(password)?;
    let new = NewAccount {
        address: email.clone(),
        password: record,
        quota,
    };
    match store.add_account(new).await {
        Ok(_) => Ok(()),
        Err(StoreError::NotFound(_)) => Err(not_local(email)),
        Err(e) => Err(e.into()),
    }
}

/// `buudien user …`
pub async fn user(cfg: &Config, cmd: UserCmd) -> Result<(), CliError> {
    with_store!(open_store(cfg).await?, |s| user_on(&s, cmd).await)
}

async fn user_on(store: &impl MailStore, cmd: UserCmd) -> Result<(), CliError> {
    match cmd {
        UserCmd::Add {
            email,
            password_stdin,
            quota,
            quota_messages,
        } => {
            let a = address(&email)?;
            let quota = quota_of(quota.as_deref(), quota_messages)?;
            // Check before asking for a password.
            if !store.list_domains().await?.contains(&a.domain()) {
                return Err(not_local(&a));
            }
            if store.account(&a).await?.is_some() {
                return Err(CliError::usage(format!("account {a} already exists")));
            }
            let pw = secret::obtain(password_stdin, "password")?;
            add_user(store, &a, pw.password(), quota).await?;
            println!("account {a} added");
            if let Source::Generated(p) = pw {
                println!("password: {p}");
            }
        }
        UserCmd::Passwd {
            email,
            password_stdin,
            apop,
        } => {
            let a = address(&email)?;
            if store.account(&a).await?.is_none() {
                return Err(CliError::new(exit::NOUSER, format!("no account {a}")));
            }
            let what = if apop { "APOP secret" } else { "password" };
            let pw = secret::obtain(password_stdin, what)?;
            if apop {
                store
                    .set_apop_secret(&a, Some(pw.password().to_string()))
                    .await?;
            } else {
                store
                    .set_password(&a, secret::record(pw.password())?)
                    .await?;
            }
            println!("{what} of {a} changed");
            if let Source::Generated(p) = pw {
                println!("{what}: {p}");
            }
        }
        UserCmd::Quota {
            email,
            size,
            messages,
        } => {
            let a = address(&email)?;
            store
                .set_quota(&a, quota_of(Some(&size), messages)?)
                .await?;
            println!("quota of {a} changed");
        }
        UserCmd::List => {
            for acct in store.list_accounts().await? {
                let quota = match acct.quota.bytes {
                    Some(q) => human(q),
                    None => "unlimited".into(),
                };
                println!(
                    "{}\t{} messages\t{} of {}",
                    acct.address,
                    acct.used_messages,
                    human(acct.used_bytes),
                    quota
                );
            }
        }
        UserCmd::Remove { email } => {
            let a = address(&email)?;
            store.remove_account(&a).await?;
            println!("account {a} removed with its mail");
        }
    }
    Ok(())
}

/// `buudien alias …`
pub async fn alias(cfg: &Config, cmd: AliasCmd) -> Result<(), CliError> {
    with_store!(open_store(cfg).await?, |s| alias_on(&s, cmd).await)
}

async fn alias_on(store: &impl MailStore, cmd: AliasCmd) -> Result<(), CliError> {
    match cmd {
        AliasCmd::Add {
            address: a,
            targets,
        } => {
            let a = address(&a)?;
            let targets = targets
                .iter()
                .map(|t| address(t))
                .collect::<Result<Vec<_>, _>>()?;
            match store.add_alias(&a, &targets).await {
                Ok(()) => {}
                Err(StoreError::NotFound(_)) => return Err(not_local(&a)),
                Err(StoreError::Exists(_)) => {
                    return Err(CliError::usage(format!(
                        "{a} is an account; an alias cannot replace it"
                    )));
                }
                Err(e) => return Err(e.into()),
            }
            // Say so when a target delivers nowhere yet (it may be created later).
            for t in &targets {
                if store.resolve_recipient(t).await.is_err() {
                    eprintln!("buudien: note: {t} is not a local account or alias (yet)");
                }
            }
            println!("alias {a} added");
        }
        AliasCmd::List => {
            for al in store.list_aliases().await? {
                let t: Vec<&str> = al.targets.iter().map(Address::as_str).collect();
                println!("{}\t{}", al.address, t.join(", "));
            }
        }
        AliasCmd::Remove { address: a } => {
            let a = address(&a)?;
            store.remove_alias(&a).await?;
            println!("alias {a} removed");
        }
    }
    Ok(())
}
