//! LSUB (RFC 3501 §6.3.9), for IMAP4rev1 clients (deprecated by RFC 9051, which
//! replaces it with `LIST (SUBSCRIBED)`).

use crate::cmd::list::{DELIMITER, Known, ancestors, canonical_patterns, matches_any};
use crate::reply::*;
use crate::session::Session;
use buudien_imap_proto::response::{self, ListItem};
use buudien_imap_proto::{MailboxAttr, Tag};
use buudien_store::MailboxStore;
use std::collections::{BTreeMap, BTreeSet};

/// The LSUB responses: subscribed names that match, with `\Noselect` when no mailbox
/// has the name; and, for a pattern ending with `%`, the unsubscribed levels of
/// hierarchy above subscribed names that match it, with `\Noselect` (RFC 3501
/// §6.3.9: "foo/bar" subscribed, "foo" not, `%` returns "foo" flagged `\Noselect`).
pub(crate) fn lsub_plan(known: &[Known], reference: &str, pattern: &str) -> Vec<(String, bool)> {
    let patterns = canonical_patterns(reference, &[pattern.to_owned()]);
    let percent = patterns.iter().any(|p| p.ends_with_percent());
    let subscribed: BTreeSet<&str> = known
        .iter()
        .filter(|k| k.subscribed)
        .map(|k| k.name.as_str())
        .collect();
    // name → selectable-and-subscribed.
    let mut hits: BTreeMap<&str, bool> = BTreeMap::new();
    for k in known.iter().filter(|k| k.subscribed) {
        if matches_any(&patterns, &k.name) {
            hits.insert(&k.name, k.exists);
        }
        if percent {
            for a in ancestors(&k.name) {
                if !subscribed.contains(a) && matches_any(&patterns, a) {
                    hits.insert(a, false);
                }
            }
        }
    }
    let mut out: Vec<(String, bool)> = hits.into_iter().map(|(n, s)| (n.to_owned(), s)).collect();
    out.sort_by(|a, b| (a.0 != "INBOX", &a.0).cmp(&(b.0 != "INBOX", &b.0)));
    out
}

impl<S: MailboxStore> Session<'_, S> {
    /// LSUB (RFC 3501 §6.3.9): the subscribed names matching the pattern.
    pub(crate) async fn lsub(
        &mut self,
        tag: &Tag,
        reference: &str,
        pattern: &str,
        out: &mut Vec<u8>,
    ) {
        let (_, known) = match self.known_names().await {
            Ok(k) => k,
            Err(e) => return store_error(out, tag, &e),
        };
        let mode = self.text_mode();
        for (name, selectable) in lsub_plan(&known, reference, pattern) {
            let attrs: &[MailboxAttr] = if selectable {
                &[]
            } else {
                &[MailboxAttr::NoSelect]
            };
            response::list(
                out,
                &ListItem {
                    attrs,
                    delimiter: Some(DELIMITER),
                    name: &name,
                    childinfo_subscribed: false,
                    old_name: None,
                },
                mode,
                true,
            );
        }
        ok(out, tag, "LSUB completed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &str, subscribed: bool) -> Known {
        Known {
            name: name.to_owned(),
            exists: true,
            subscribed,
            special_use: None,
        }
    }

    #[test]
    fn percent_returns_unsubscribed_parents() {
        let known = [
            k("INBOX", true),
            k("foo", false),
            k("foo/bar", true),
            k("baz", false),
        ];
        assert_eq!(
            lsub_plan(&known, "", "%"),
            [("INBOX".to_owned(), true), ("foo".to_owned(), false)]
        );
        assert_eq!(
            lsub_plan(&known, "", "*"),
            [("INBOX".to_owned(), true), ("foo/bar".to_owned(), true)]
        );
        assert_eq!(
            lsub_plan(&known, "foo/", "%"),
            [("foo/bar".to_owned(), true)]
        );
        assert!(lsub_plan(&known, "", "b*").is_empty());
    }
}
