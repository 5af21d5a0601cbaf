//! QUOTA (RFC 9208): one quota root, `""`, per account, holding all its mailboxes,
//! with the STORAGE (§5.1, units of 1024 octets) and MESSAGE (§5.2) resources.
//! Limits are set by the administrator, so SETQUOTA is refused (no QUOTASET).

use crate::reply::*;
use crate::session::Session;
use buudien_imap_proto::response;
use buudien_imap_proto::{Mailbox as Name, Tag};
use buudien_store::{Account, MailboxStore};

/// The one quota root of an account.
const ROOT: &str = "";

/// The `(resource usage limit)` triples of `account`: only resources with a limit
/// (RFC 9208 §4.2.1); STORAGE rounded up to whole KiB for usage, down for the limit.
fn resources(account: &Account) -> Vec<(&'static str, u64, u64)> {
    let mut r = Vec::new();
    if let Some(limit) = account.quota.bytes {
        r.push(("STORAGE", account.used_bytes.div_ceil(1024), limit / 1024));
    }
    if let Some(limit) = account.quota.messages {
        r.push(("MESSAGE", account.used_messages, limit));
    }
    r
}

impl<S: MailboxStore> Session<'_, S> {
    /// The resources of the logged-in account; on failure the tagged NO is written.
    async fn account_quota(
        &self,
        tag: &Tag,
        out: &mut Vec<u8>,
    ) -> Option<Vec<(&'static str, u64, u64)>> {
        let store = &self.shared.store;
        let found = match self.address.as_ref() {
            Some(address) => store.account(address).await,
            // A login path that did not record the address: find the account by id.
            None => store.list_accounts().await.map(|all| {
                let id = self.acct();
                all.into_iter().find(|a| a.id == id)
            }),
        };
        match found {
            Ok(Some(account)) => Some(resources(&account)),
            Ok(None) => {
                no(out, tag, "[UNAVAILABLE] quota not known");
                None
            }
            Err(e) => {
                store_error(out, tag, &e);
                None
            }
        }
    }

    /// GETQUOTA (RFC 9208 §4.1.1): only the root `""` exists.
    pub(crate) async fn get_quota(&mut self, tag: &Tag, root: &str, out: &mut Vec<u8>) {
        if root != ROOT {
            no(out, tag, "[NONEXISTENT] no such quota root");
            return;
        }
        if let Some(res) = self.account_quota(tag, out).await {
            response::quota(out, ROOT, &res);
            ok(out, tag, "GETQUOTA completed");
        }
    }

    /// GETQUOTAROOT (RFC 9208 §4.1.2): every mailbox, existing or not, is under `""`
    /// (`* QUOTAROOT name ""`, then that root's `* QUOTA`).
    pub(crate) async fn get_quota_root(&mut self, tag: &Tag, mailbox: &Name, out: &mut Vec<u8>) {
        if let Some(res) = self.account_quota(tag, out).await {
            response::quotaroot(out, mailbox.as_str(), &[ROOT], self.text_mode());
            response::quota(out, ROOT, &res);
            ok(out, tag, "GETQUOTAROOT completed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use buudien_store::Quota;
    use buudien_types::Address;

    #[test]
    fn only_limited_resources() {
        let mut a = Account {
            id: 1,
            address: Address::parse("a@example.org").unwrap_or_else(|_| unreachable!()),
            quota: Quota::default(),
            used_bytes: 1025,
            used_messages: 3,
        };
        assert!(resources(&a).is_empty());
        a.quota.bytes = Some(10 * 1024);
        assert_eq!(resources(&a), [("STORAGE", 2, 10)]);
        a.quota.messages = Some(100);
        assert_eq!(resources(&a), [("STORAGE", 2, 10), ("MESSAGE", 3, 100)]);
    }
}
