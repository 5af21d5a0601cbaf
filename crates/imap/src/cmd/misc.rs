//! CREATE with special uses (RFC 9051 §6.3.4, RFC 6154 §3), NAMESPACE (RFC 9051
//! §6.3.10, RFC 2342) and ID (RFC 2971).

use crate::cmd::list::DELIMITER;
use crate::reply::*;
use crate::session::Session;
use buudien_imap_proto::response;
use buudien_imap_proto::{Mailbox as Name, SpecialUse as UseAttr, Tag};
use buudien_store::{MailboxStore, SpecialUse};

/// RFC 2971 §3.3: at most 30 field/value pairs, fields of at most 30 octets, values
/// of at most 1024 octets. Longer input is cut to these sizes for the log.
const ID_MAX_PAIRS: usize = 30;
const ID_MAX_FIELD: usize = 30;
const ID_MAX_VALUE: usize = 1024;

/// The longest prefix of `s` of at most `max` octets that ends on a character.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// The store's special use for the `USE` list of CREATE: none, or exactly one that
/// the store keeps (`\Drafts \Sent \Junk \Trash \Archive`). `Err` for `\All`,
/// `\Flagged` (virtual mailboxes buudien does not have), unknown attributes and more
/// than one use (RFC 6154 §3: answered `NO [USEATTR]`).
fn store_use(uses: &[UseAttr]) -> Result<Option<SpecialUse>, ()> {
    let mut found: Option<SpecialUse> = None;
    for u in uses {
        let su = match u {
            UseAttr::Drafts => SpecialUse::Drafts,
            UseAttr::Sent => SpecialUse::Sent,
            UseAttr::Junk => SpecialUse::Junk,
            UseAttr::Trash => SpecialUse::Trash,
            UseAttr::Archive => SpecialUse::Archive,
            UseAttr::All | UseAttr::Flagged | UseAttr::Other(_) => return Err(()),
        };
        match found {
            Some(f) if f != su => return Err(()),
            _ => found = Some(su),
        }
    }
    Ok(found)
}

impl<S: MailboxStore> Session<'_, S> {
    /// CREATE (RFC 9051 §6.3.4) with `(USE (...))` (RFC 6154 §3, CREATE-SPECIAL-USE):
    /// a special use buudien cannot give is refused with `NO [USEATTR]` and nothing
    /// is created. A trailing delimiter is dropped (§6.3.4).
    pub(crate) async fn create(
        &mut self,
        tag: &Tag,
        mailbox: &Name,
        uses: &[UseAttr],
        out: &mut Vec<u8>,
    ) {
        let Ok(special_use) = store_use(uses) else {
            no(out, tag, "[USEATTR] special use not supported");
            return;
        };
        let name = mailbox.as_str().trim_end_matches(DELIMITER);
        let r = self
            .shared
            .store
            .create_mailbox(self.acct(), name, special_use)
            .await;
        done(out, tag, "CREATE", r.map(|_| ()));
    }

    /// NAMESPACE (RFC 9051 §6.3.10, RFC 2342 §5): one personal namespace with no
    /// prefix and `/` as the delimiter; no other users' or shared namespaces.
    pub(crate) fn namespace(&mut self, tag: &Tag, out: &mut Vec<u8>) {
        response::namespace(out, [&[("", Some(DELIMITER))], &[], &[]], self.text_mode());
        ok(out, tag, "NAMESPACE completed");
    }

    /// ID (RFC 2971 §3.1): logs what the client says about itself (bounded as
    /// RFC 2971 §3.3 bounds it, escaped) and answers with the server's name and
    /// version. Allowed in every state.
    pub(crate) fn id(
        &mut self,
        tag: &Tag,
        params: Option<&[(String, Option<String>)]>,
        out: &mut Vec<u8>,
    ) {
        if let Some(params) = params {
            let fields: Vec<(&str, Option<&str>)> = params
                .iter()
                .take(ID_MAX_PAIRS)
                .map(|(k, v)| {
                    (
                        cut(k, ID_MAX_FIELD),
                        v.as_deref().map(|v| cut(v, ID_MAX_VALUE)),
                    )
                })
                .collect();
            tracing::debug!(client_id = ?fields, "client ID");
        }
        response::id(
            out,
            Some(&[
                ("name", Some("buudien")),
                ("version", Some(env!("CARGO_PKG_VERSION"))),
            ]),
        );
        ok(out, tag, "ID completed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_characters() {
        assert_eq!(cut("abc", 2), "ab");
        assert_eq!(cut("\u{e9}\u{e9}", 3), "\u{e9}");
        assert_eq!(cut("ab", 10), "ab");
    }

    #[test]
    fn uses() {
        assert_eq!(store_use(&[]), Ok(None));
        assert_eq!(store_use(&[UseAttr::Sent]), Ok(Some(SpecialUse::Sent)));
        assert_eq!(
            store_use(&[UseAttr::Trash, UseAttr::Trash]),
            Ok(Some(SpecialUse::Trash))
        );
        assert!(store_use(&[UseAttr::Sent, UseAttr::Trash]).is_err());
        assert!(store_use(&[UseAttr::All]).is_err());
        assert!(store_use(&[UseAttr::Other("Foo".into())]).is_err());
    }
}
