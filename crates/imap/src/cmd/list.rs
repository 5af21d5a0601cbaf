//! LIST (RFC 9051 §6.3.9) and STATUS (§6.3.11).

use crate::reply::*;
use crate::session::Session;
use buudien_imap_proto::response::{self, ListItem};
use buudien_imap_proto::{ListCommand, Mailbox as Name, StatusItem, Tag, TextMode};
use buudien_store::{Flags, MailboxStore, MessageEntry};

impl<S: MailboxStore> Session<'_, S> {
    /// LIST (RFC 9051 §6.3.9) with `*` and `%` patterns, no selection options.
    pub(crate) async fn list(&mut self, tag: &Tag, list: &ListCommand, out: &mut Vec<u8>) {
        if list.patterns.iter().all(String::is_empty) {
            line(out, "* LIST (\\Noselect) \"/\" \"\"");
            ok(out, tag, "LIST completed");
            return;
        }
        let boxes = match self.shared.store.mailboxes(self.acct()).await {
            Ok(b) => b,
            Err(e) => return store_error(out, tag, &e),
        };
        for mb in &boxes {
            let hit = list.patterns.iter().any(|p| {
                let full = format!("{}{}", list.reference, p);
                matches_pattern(full.as_bytes(), mb.name.as_bytes())
                    || (mb.name == "INBOX"
                        && matches_pattern(full.to_ascii_uppercase().as_bytes(), b"INBOX"))
            });
            if !hit {
                continue;
            }
            let has_children = boxes.iter().any(|o| {
                o.name.len() > mb.name.len() && o.name.starts_with(&format!("{}/", mb.name))
            });
            let mut attrs = vec![if has_children {
                buudien_imap_proto::MailboxAttr::HasChildren
            } else {
                buudien_imap_proto::MailboxAttr::HasNoChildren
            }];
            if mb.subscribed {
                attrs.push(buudien_imap_proto::MailboxAttr::Subscribed);
            }
            if let Some(su) = mb.special_use {
                // RFC 6154 §2: the special-use attribute rides on plain LIST.
                attrs.push(buudien_imap_proto::MailboxAttr::SpecialUse(
                    buudien_imap_proto::SpecialUse::from_name(su.as_str().trim_start_matches('\\')),
                ));
            }
            response::list(
                out,
                &ListItem {
                    attrs: &attrs,
                    delimiter: Some('/'),
                    name: &mb.name,
                    childinfo_subscribed: false,
                    old_name: None,
                },
                TextMode::Ascii,
                false,
            );
        }
        ok(out, tag, "LIST completed");
    }

    /// STATUS (RFC 9051 §6.3.11).
    pub(crate) async fn status(
        &mut self,
        tag: &Tag,
        mailbox: &Name,
        items: &[StatusItem],
        out: &mut Vec<u8>,
    ) {
        let store = &self.shared.store;
        let mb = match store.mailbox(self.acct(), mailbox.as_str()).await {
            Ok(Some(mb)) => mb,
            Ok(None) => return nonexistent(out, tag),
            Err(e) => return store_error(out, tag, &e),
        };
        let messages = match store.messages(mb.id).await {
            Ok(m) => m,
            Err(e) => return store_error(out, tag, &e),
        };
        let count =
            |f: &dyn Fn(&MessageEntry) -> bool| messages.iter().filter(|m| f(m)).count() as u64;
        let values: Vec<(StatusItem, Option<u64>)> = items
            .iter()
            .map(|item| {
                let v = match item {
                    StatusItem::Messages => Some(messages.len() as u64),
                    StatusItem::UidNext => Some(u64::from(mb.uidnext.0)),
                    StatusItem::UidValidity => Some(u64::from(mb.uidvalidity.0)),
                    StatusItem::Unseen => Some(count(&|m| !m.flags.contains(Flags::SEEN))),
                    StatusItem::Deleted => Some(count(&|m| m.flags.contains(Flags::DELETED))),
                    StatusItem::Size => Some(messages.iter().map(|m| m.size).sum()),
                    StatusItem::Recent => Some(0),
                    StatusItem::HighestModSeq => Some(mb.highestmodseq),
                    StatusItem::AppendLimit => Some(self.shared.config.max_append),
                    StatusItem::DeletedStorage => None,
                };
                (*item, v)
            })
            .collect();
        response::status(out, &mb.name, &values, TextMode::Ascii);
        ok(out, tag, "STATUS completed");
    }
}
