//! LIST (RFC 9051 §6.3.9) with LIST-EXTENDED (RFC 5258), SPECIAL-USE (RFC 6154) and
//! LIST-STATUS (RFC 5819), and STATUS (RFC 9051 §6.3.11).
//!
//! The choice of names and attributes is the pure function [`plan`] over the account's
//! known names ([`Known`]: existing mailboxes, subscriptions, and the implied levels
//! of hierarchy above them); the handler then writes one LIST line per planned name,
//! each followed by its STATUS line when LIST-STATUS asked for one.

use crate::reply::*;
use crate::session::Session;
use buudien_imap_proto::response::{self, ListItem};
use buudien_imap_proto::{
    ListCommand, Mailbox as Name, MailboxAttr, SpecialUse as UseAttr, StatusItem, Tag,
};
use buudien_store::{Flags, Mailbox, MailboxStore, MessageEntry, SpecialUse, StoreError};
use std::collections::{BTreeMap, BTreeSet};

/// The hierarchy delimiter of every buudien mailbox name.
pub(crate) const DELIMITER: char = '/';

/// One name the account knows about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Known {
    /// Full name, UTF-8.
    pub(crate) name: String,
    /// A mailbox of that name exists.
    pub(crate) exists: bool,
    /// The name is subscribed.
    pub(crate) subscribed: bool,
    /// Its special use (existing mailboxes only).
    pub(crate) special_use: Option<SpecialUse>,
}

impl<S: MailboxStore> Session<'_, S> {
    /// The account's mailboxes, and the names LIST and LSUB know: the mailboxes and
    /// the subscribed names without a mailbox, INBOX first then by name.
    pub(crate) async fn known_names(&self) -> Result<(Vec<Mailbox>, Vec<Known>), StoreError> {
        let boxes = self.shared.store.mailboxes(self.acct()).await?;
        let orphans = self.shared.store.orphan_subscriptions(self.acct()).await?;
        let mut known: Vec<Known> = boxes.iter().map(Known::of).collect();
        known.extend(orphans.into_iter().map(|name| Known {
            name,
            exists: false,
            subscribed: true,
            special_use: None,
        }));
        // The store's order: INBOX first, then by name.
        known.sort_by(|a, b| (a.name != "INBOX", &a.name).cmp(&(b.name != "INBOX", &b.name)));
        Ok((boxes, known))
    }
}

impl Known {
    /// The known name of an existing mailbox.
    pub(crate) fn of(mb: &Mailbox) -> Known {
        Known {
            name: mb.name.clone(),
            exists: true,
            subscribed: mb.subscribed,
            special_use: mb.special_use,
        }
    }
}

/// One LIST response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Planned {
    /// The name.
    pub(crate) name: String,
    /// Its attributes, in the order written.
    pub(crate) attrs: Vec<MailboxAttr>,
    /// `("CHILDINFO" ("SUBSCRIBED"))` (RFC 5258 §3.5).
    pub(crate) childinfo: bool,
    /// A STATUS line follows (RFC 5819 §2: selectable names that meet the selection
    /// criteria only).
    pub(crate) status: bool,
}

/// The proper ancestors of `name`, nearest last (`a/b/c` → `a`, `a/b`).
pub(crate) fn ancestors(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices(DELIMITER)
        .filter_map(move |(i, _)| name.get(..i))
        .filter(|a| !a.is_empty())
}

/// The wire attribute of a stored special use (RFC 6154 §2).
pub(crate) fn use_attr(su: SpecialUse) -> MailboxAttr {
    MailboxAttr::SpecialUse(UseAttr::from_name(su.as_str().trim_start_matches('\\')))
}

/// True when `name` matches one of `patterns`; INBOX matches without case (RFC 9051
/// §6.3.9: when the upper-case string "INBOX" matches).
pub(crate) fn matches_any(patterns: &[Pattern], name: &str) -> bool {
    let inbox = name == "INBOX";
    patterns.iter().any(|p| p.matches(name, inbox))
}

/// The canonical LIST patterns (RFC 9051 §6.3.9): reference and pattern joined, as
/// buudien has no break-out characters. In the extended syntax empty patterns are
/// ignored.
pub(crate) fn canonical_patterns(reference: &str, patterns: &[String]) -> Vec<Pattern> {
    patterns
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| Pattern::new(&format!("{reference}{p}")))
        .collect()
}

/// Sorts names INBOX first, then by octets.
fn inbox_first(a: &str, b: &str) -> std::cmp::Ordering {
    (a != "INBOX", a).cmp(&(b != "INBOX", b))
}

/// Chooses the LIST responses (RFC 9051 §6.3.9, RFC 5258 §3, RFC 6154 §2):
///
/// - the names that meet the selection criteria (existing mailboxes; subscribed names
///   with SUBSCRIBED, `\NonExistent` when no mailbox has the name; special-use
///   mailboxes with SPECIAL-USE) and match a pattern;
/// - with RECURSIVEMATCH, names that match but do not meet the criteria and have a
///   descendant that does while not matching any pattern, with CHILDINFO (RFC 5258
///   §3.5, RFC 9051 §6.3.9.6 Table 3; redundant CHILDINFO responses suppressed as
///   §6.3.9.6 asks);
/// - without selection options, levels of hierarchy that do not exist but hold
///   mailboxes, when a pattern ending with `%` matches them (§6.3.9), as `\Noselect`
///   (rev1 basic LIST) or `\NonExistent` (rev2 or the extended syntax).
///
/// Every response carries `\HasChildren` or `\HasNoChildren` (RFC 5258 §4 / RFC 9051
/// §6.3.9.5: MAY always be returned, so rev2 clients can rely on them),
/// `\Subscribed` when the SUBSCRIBED selection or return option asked for it
/// (§6.3.9.1, §6.3.9.2: it MUST then be accurate; it is not sent otherwise), and the
/// special-use attributes whether or not they were asked for (RFC 6154 §2: MAY).
pub(crate) fn plan(known: &[Known], cmd: &ListCommand, rev2: bool) -> Vec<Planned> {
    let patterns = canonical_patterns(&cmd.reference, &cmd.patterns);
    if patterns.is_empty() {
        return Vec::new();
    }
    let mut all: BTreeMap<&str, &Known> = BTreeMap::new();
    for k in known {
        all.insert(k.name.as_str(), k);
    }
    let hole = Known::default();
    let mut holes: BTreeSet<&str> = BTreeSet::new();
    // Names with an existing descendant (\HasChildren).
    let mut parents: BTreeSet<&str> = BTreeSet::new();
    for k in known {
        for a in ancestors(&k.name) {
            if !all.contains_key(a) {
                holes.insert(a);
            }
            if k.exists {
                parents.insert(a);
            }
        }
    }
    let sel = cmd.select;
    let meets = |k: &Known| {
        let base = if sel.subscribed {
            k.subscribed
        } else {
            k.exists
        };
        base && (!sel.special_use || (k.exists && k.special_use.is_some()))
    };
    // RECURSIVEMATCH: names with a descendant meeting the criteria, and those with one
    // that matches no pattern (the only ones returned for a descendant alone).
    let mut has_meeting: BTreeSet<&str> = BTreeSet::new();
    let mut has_unlisted: BTreeSet<&str> = BTreeSet::new();
    if sel.recursive_match {
        for k in known.iter().filter(|k| meets(k)) {
            let listed = matches_any(&patterns, &k.name);
            for a in ancestors(&k.name) {
                has_meeting.insert(a);
                if !listed {
                    has_unlisted.insert(a);
                }
            }
        }
    }
    let percent: Vec<Pattern> = patterns
        .iter()
        .filter(|p| p.ends_with_percent())
        .cloned()
        .collect();
    let extended = rev2 || cmd.extended;
    let mut names: Vec<&str> = all.keys().chain(holes.iter()).copied().collect();
    names.sort_by(|a, b| inbox_first(a, b));
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        if !matches_any(&patterns, name) {
            continue;
        }
        let k = all.get(name).copied().unwrap_or(&hole);
        let meets = meets(k);
        let childinfo = if meets {
            has_meeting.contains(name)
        } else if has_unlisted.contains(name) {
            true
        } else if !sel.subscribed
            && !sel.special_use
            && !k.exists
            && parents.contains(name)
            && matches_any(&percent, name)
        {
            false
        } else {
            continue;
        };
        let mut attrs = Vec::new();
        if !k.exists {
            attrs.push(if extended {
                MailboxAttr::NonExistent
            } else {
                MailboxAttr::NoSelect
            });
        }
        attrs.push(if parents.contains(name) {
            MailboxAttr::HasChildren
        } else {
            MailboxAttr::HasNoChildren
        });
        if (sel.subscribed || cmd.ret.subscribed) && k.subscribed {
            attrs.push(MailboxAttr::Subscribed);
        }
        if let (true, Some(su)) = (k.exists, k.special_use) {
            attrs.push(use_attr(su));
        }
        out.push(Planned {
            name: name.to_owned(),
            attrs,
            childinfo,
            status: cmd.ret.status.is_some() && meets && k.exists,
        });
    }
    out
}

impl<S: MailboxStore> Session<'_, S> {
    /// LIST (RFC 9051 §6.3.9): the basic form, `LIST "" ""` for the delimiter, and
    /// the extended form of RFC 5258 with its selection and return options, several
    /// patterns and LIST-STATUS (RFC 5819 §2: a STATUS line after each LIST line of a
    /// selectable mailbox).
    pub(crate) async fn list(&mut self, tag: &Tag, list: &ListCommand, out: &mut Vec<u8>) {
        let mode = self.text_mode();
        if !list.extended && list.patterns.iter().all(String::is_empty) {
            // §6.3.9: the delimiter and the root of the (never rooted) reference.
            response::list(
                out,
                &ListItem {
                    attrs: &[MailboxAttr::NoSelect],
                    delimiter: Some(DELIMITER),
                    name: "",
                    childinfo_subscribed: false,
                    old_name: None,
                },
                mode,
                false,
            );
            ok(out, tag, "LIST completed");
            return;
        }
        let (boxes, known) = match self.known_names().await {
            Ok(k) => k,
            Err(e) => return store_error(out, tag, &e),
        };
        let by_name: BTreeMap<&str, &Mailbox> =
            boxes.iter().map(|b| (b.name.as_str(), b)).collect();
        for p in plan(&known, list, self.rev2) {
            response::list(
                out,
                &ListItem {
                    attrs: &p.attrs,
                    delimiter: Some(DELIMITER),
                    name: &p.name,
                    childinfo_subscribed: p.childinfo,
                    old_name: None,
                },
                mode,
                false,
            );
            if let (true, Some(items), Some(mb)) = (
                p.status,
                list.ret.status.as_deref(),
                by_name.get(p.name.as_str()),
            ) {
                // RFC 5819 §2: a STATUS that fails is dropped; LIST still succeeds.
                match self.status_values(mb, items).await {
                    Ok(values) => response::status(out, &mb.name, &values, mode),
                    Err(e) => tracing::warn!(error = %e, "LIST-STATUS failed"),
                }
            }
        }
        ok(out, tag, "LIST completed");
    }

    /// STATUS (RFC 9051 §6.3.11), with DELETED-STORAGE (RFC 9208 §4.1.4).
    pub(crate) async fn status(
        &mut self,
        tag: &Tag,
        mailbox: &Name,
        items: &[StatusItem],
        out: &mut Vec<u8>,
    ) {
        let mb = match self
            .shared
            .store
            .mailbox(self.acct(), mailbox.as_str())
            .await
        {
            Ok(Some(mb)) => mb,
            Ok(None) => return nonexistent(out, tag),
            Err(e) => return store_error(out, tag, &e),
        };
        match self.status_values(&mb, items).await {
            Ok(values) => {
                response::status(out, &mb.name, &values, self.text_mode());
                ok(out, tag, "STATUS completed");
            }
            Err(e) => store_error(out, tag, &e),
        }
    }

    /// The values of STATUS `items` for `mb` (RFC 9051 §6.3.11, RFC 9208 §4.1.4:
    /// DELETED-STORAGE as the sum of the RFC822.SIZE of the `\Deleted` messages).
    pub(crate) async fn status_values(
        &self,
        mb: &Mailbox,
        items: &[StatusItem],
    ) -> Result<Vec<(StatusItem, Option<u64>)>, StoreError> {
        let messages = self.shared.store.messages(mb.id).await?;
        // RFC 3501 §6.3.10: messages above the \Recent mark (not moved by STATUS).
        let recent_mark = if items.contains(&StatusItem::Recent) {
            self.shared.store.recent_mark(mb.id).await?
        } else {
            buudien_types::Uid(u32::MAX)
        };
        let count =
            |f: &dyn Fn(&MessageEntry) -> bool| messages.iter().filter(|m| f(m)).count() as u64;
        let deleted = |m: &MessageEntry| m.flags.contains(Flags::DELETED);
        Ok(items
            .iter()
            .map(|item| {
                let v = match item {
                    StatusItem::Messages => messages.len() as u64,
                    StatusItem::UidNext => u64::from(mb.uidnext.0),
                    StatusItem::UidValidity => u64::from(mb.uidvalidity.0),
                    StatusItem::Unseen => count(&|m| !m.flags.contains(Flags::SEEN)),
                    StatusItem::Deleted => count(&deleted),
                    StatusItem::Size => messages.iter().map(|m| m.size).sum(),
                    StatusItem::Recent => count(&|m| m.uid > recent_mark),
                    StatusItem::HighestModSeq => mb.highestmodseq,
                    StatusItem::AppendLimit => self.shared.config.max_append,
                    StatusItem::DeletedStorage => {
                        messages.iter().filter(|m| deleted(m)).map(|m| m.size).sum()
                    }
                };
                (*item, Some(v))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use buudien_imap_proto::{ListReturn, ListSelect};

    fn k(name: &str, exists: bool, subscribed: bool) -> Known {
        Known {
            name: name.to_owned(),
            exists,
            subscribed,
            special_use: None,
        }
    }

    fn cmd(select: ListSelect, pattern: &str, ret: ListReturn) -> ListCommand {
        ListCommand {
            select,
            reference: String::new(),
            patterns: vec![pattern.to_owned()],
            ret,
            extended: true,
        }
    }

    /// `name attrs... [CHILDINFO]` lines, for comparing plans.
    fn show(p: &[Planned]) -> Vec<String> {
        p.iter()
            .map(|p| {
                let mut s = p.name.clone();
                for a in &p.attrs {
                    s.push(' ');
                    s.push_str(&a.to_string());
                }
                if p.childinfo {
                    s.push_str(" CHILDINFO");
                }
                s
            })
            .collect()
    }

    fn subscribed() -> ListSelect {
        ListSelect {
            subscribed: true,
            ..ListSelect::default()
        }
    }

    #[test]
    fn ancestors_of_a_name() {
        assert_eq!(ancestors("a/b/c").collect::<Vec<_>>(), ["a", "a/b"]);
        assert_eq!(ancestors("a").count(), 0);
    }

    /// RFC 5258 §5 example 2: a subscribed name with no mailbox is `\NonExistent`.
    #[test]
    fn subscribed_but_gone() {
        let known = [
            k("Fruit", true, false),
            k("Fruit/Banana", true, true),
            k("Fruit/Peach", false, true),
            k("Vegetable", true, true),
        ];
        let p = plan(&known, &cmd(subscribed(), "*", ListReturn::default()), true);
        assert_eq!(
            show(&p),
            [
                "Fruit/Banana \\HasNoChildren \\Subscribed",
                "Fruit/Peach \\NonExistent \\HasNoChildren \\Subscribed",
                "Vegetable \\HasNoChildren \\Subscribed",
            ]
        );
    }

    /// RFC 5258 §5 example 8: CHILDINFO with RECURSIVEMATCH, redundant ones dropped.
    #[test]
    fn recursive_match_childinfo() {
        let known = [
            k("INBOX", true, false),
            k("foo2", true, false),
            k("foo2/bar1", true, true),
            k("foo2/bar2", true, true),
            k("baz2", true, false),
            k("baz2/bar2", true, true),
            k("baz2/bar22", true, true),
            k("eps2", true, true),
            k("eps2/mamba", true, true),
            k("qux2/bar2", true, true),
        ];
        let select = ListSelect {
            subscribed: true,
            recursive_match: true,
            ..ListSelect::default()
        };
        let p = plan(&known, &cmd(select, "*2", ListReturn::default()), true);
        assert_eq!(
            show(&p),
            [
                "baz2/bar2 \\HasNoChildren \\Subscribed",
                "baz2/bar22 \\HasNoChildren \\Subscribed",
                "eps2 \\HasChildren \\Subscribed CHILDINFO",
                "foo2 \\HasChildren CHILDINFO",
                "foo2/bar2 \\HasNoChildren \\Subscribed",
                "qux2/bar2 \\HasNoChildren \\Subscribed",
            ]
        );
        // RFC 5258 example 9 (a3): a missing parent of a subscribed-only name.
        let known = [k("foo", true, false), k("foo/bar", false, true)];
        let p = plan(&known, &cmd(select, "foo", ListReturn::default()), true);
        assert_eq!(show(&p), ["foo \\HasNoChildren CHILDINFO"]);
        let known = [k("Foo/Baz", true, true)];
        let p = plan(&known, &cmd(select, "%", ListReturn::default()), true);
        assert_eq!(show(&p), ["Foo \\NonExistent \\HasChildren CHILDINFO"]);
    }

    /// RFC 9051 §6.3.9: `%` at the end returns levels of hierarchy that are not
    /// mailboxes; `*` does not.
    #[test]
    fn holes() {
        let known = [k("music/rock", true, false)];
        let mut c = cmd(ListSelect::default(), "%", ListReturn::default());
        assert_eq!(
            show(&plan(&known, &c, true)),
            ["music \\NonExistent \\HasChildren"]
        );
        c.extended = false;
        assert_eq!(
            show(&plan(&known, &c, false)),
            ["music \\Noselect \\HasChildren"]
        );
        c.patterns = vec!["*".into()];
        assert_eq!(
            show(&plan(&known, &c, false)),
            ["music/rock \\HasNoChildren"]
        );
    }

    #[test]
    fn special_use_selection() {
        let mut sent = k("Sent", true, false);
        sent.special_use = Some(SpecialUse::Sent);
        let known = [k("INBOX", true, true), sent];
        let select = ListSelect {
            special_use: true,
            ..ListSelect::default()
        };
        let p = plan(&known, &cmd(select, "*", ListReturn::default()), true);
        assert_eq!(show(&p), ["Sent \\HasNoChildren \\Sent"]);
    }
}
