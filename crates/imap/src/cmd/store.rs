//! STORE, EXPUNGE, COPY and MOVE (RFC 9051 §6.4.3, §6.4.6–§6.4.9).

use crate::reply::*;
use crate::selected::store_flags;
use crate::session::Session;
use buudien_imap_proto::{Mailbox as Name, SequenceSet, StoreCommand, StoreMode, Tag};
use buudien_store::{FlagOp, Flags, MailboxStore};
use buudien_types::Uid;

impl<S: MailboxStore> Session<'_, S> {
    /// EXPUNGE (RFC 9051 §6.4.3) and UID EXPUNGE (RFC 9051 §6.4.9).
    pub(crate) async fn expunge(
        &mut self,
        tag: &Tag,
        only: Option<&SequenceSet>,
        out: &mut Vec<u8>,
    ) {
        let Some(sel) = self.selected.as_ref() else {
            return bad(out, tag, "no mailbox selected");
        };
        if sel.read_only {
            return no(out, tag, "mailbox is read-only");
        }
        let allowed = only.map(|s| sel.uids(s, true));
        let uids: Vec<Uid> = sel
            .slots
            .iter()
            .filter(|m| m.flags.contains(Flags::DELETED))
            .filter(|m| allowed.as_ref().is_none_or(|a| a.contains(&m.uid)))
            .map(|m| m.uid)
            .collect();
        if let Err(e) = self.shared.store.expunge(sel.id, &uids).await {
            return store_error(out, tag, &e);
        }
        self.sync(out).await;
        ok(out, tag, "EXPUNGE completed");
    }

    /// STORE / UID STORE (RFC 9051 §6.4.6) with UNCHANGEDSINCE (RFC 7162 §3.1.3).
    pub(crate) async fn store(&mut self, tag: &Tag, s: &StoreCommand, out: &mut Vec<u8>) {
        // RFC 7162 §3.1: UNCHANGEDSINCE enables CONDSTORE; from then on untagged FETCH
        // responses carry MODSEQ (§3.1.3).
        if s.unchanged_since.is_some() {
            self.enable_condstore(out);
        }
        // Others' changes first, so UNCHANGEDSINCE and the FETCH replies start from
        // the current flags; expunges wait (RFC 9051 §7.5.1).
        self.sync_keeping_numbers(out).await;
        let condstore = self.condstore;
        let Some(sel) = self.selected.as_mut() else {
            return bad(out, tag, "no mailbox selected");
        };
        if sel.read_only {
            return no(out, tag, "mailbox is read-only");
        }
        let uids = sel.uids(&s.set, s.uid);
        let (flags, keywords) = store_flags(&s.flags);
        let op = match s.mode {
            StoreMode::Replace => FlagOp::Set,
            StoreMode::Add => FlagOp::Add,
            StoreMode::Remove => FlagOp::Remove,
        };
        let stored = match self
            .shared
            .store
            .store_flags(
                sel.id,
                &uids,
                op,
                flags,
                &keywords,
                s.unchanged_since.map(|m| m.0),
            )
            .await
        {
            Ok(st) => st,
            Err(e) => return store_error(out, tag, &e),
        };
        for changed in stored.changed {
            sel.announce(&changed.keywords, out);
            let Some(i) = sel.update(&changed) else {
                continue;
            };
            if s.silent && s.unchanged_since.is_none() {
                continue;
            }
            if let Some(m) = sel.slots.get(i) {
                let mut l = format!("* {} FETCH (", i + 1).into_bytes();
                if s.uid {
                    l.extend_from_slice(format!("UID {} ", m.uid.0).as_bytes());
                }
                l.extend_from_slice(b"FLAGS ");
                sel.write_slot_flags(&mut l, m);
                if condstore {
                    l.extend_from_slice(format!(" MODSEQ ({})", m.modseq).as_bytes());
                }
                l.extend_from_slice(b")\r\n");
                out.extend_from_slice(&l);
            }
        }
        let what = if s.uid { "UID STORE" } else { "STORE" };
        if stored.modified.is_empty() {
            ok(out, tag, &format!("{what} completed"));
        } else {
            let ids: Vec<u32> = if s.uid {
                stored.modified.iter().map(|u| u.0).collect()
            } else {
                stored
                    .modified
                    .iter()
                    .filter_map(|u| sel.seq_of(*u))
                    .collect()
            };
            ok(
                out,
                tag,
                &format!("[MODIFIED {}] conditional {what} failed", uid_set(&ids)),
            );
        }
    }

    /// COPY / MOVE and their UID forms (RFC 9051 §6.4.7, §6.4.8) with COPYUID.
    pub(crate) async fn copy(
        &mut self,
        tag: &Tag,
        uid: bool,
        set: &SequenceSet,
        mailbox: &Name,
        moving: bool,
        out: &mut Vec<u8>,
    ) {
        let Some(sel) = self.selected.as_ref() else {
            return bad(out, tag, "no mailbox selected");
        };
        if moving && sel.read_only {
            return no(out, tag, "mailbox is read-only");
        }
        let uids = sel.uids(set, uid);
        let Some(to) = self.target(tag, mailbox, out).await else {
            return;
        };
        let store = &self.shared.store;
        let pairs = if moving {
            store.move_messages(sel.id, &uids, to.id).await
        } else {
            store.copy(sel.id, &uids, to.id).await
        };
        let pairs = match pairs {
            Ok(p) => p,
            Err(e) => return store_error(out, tag, &e),
        };
        let code = if pairs.is_empty() {
            String::new()
        } else {
            let from: Vec<u32> = pairs.iter().map(|p| p.0.0).collect();
            let new: Vec<u32> = pairs.iter().map(|p| p.1.0).collect();
            format!(
                "[COPYUID {} {} {}] ",
                to.uidvalidity.0,
                uid_list(&from),
                uid_list(&new)
            )
        };
        let what = match (uid, moving) {
            (false, false) => "COPY",
            (true, false) => "UID COPY",
            (false, true) => "MOVE",
            (true, true) => "UID MOVE",
        };
        if moving {
            // RFC 6851 §4.3: COPYUID goes in an untagged OK before the expunges.
            if !code.is_empty() {
                line(out, &format!("* OK {}moved", code));
            }
            self.sync(out).await;
            ok(out, tag, &format!("{what} completed"));
        } else {
            ok(out, tag, &format!("{code}{what} completed"));
        }
    }
}
