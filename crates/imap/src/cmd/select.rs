//! SELECT, EXAMINE (RFC 9051 §6.3.2, §6.3.3) with CONDSTORE and QRESYNC (RFC 7162
//! §3.1.8, §3.2.5), and the change report every command ends with (§7.5.1).

use crate::reply::*;
use crate::selected::{Report, Selected, write_flags};
use crate::session::Session;
use buudien_imap_proto::response::{self, ListItem};
use buudien_imap_proto::{Mailbox as Name, SelectParams, SequenceSet, Tag};
use buudien_store::{MailboxStore, StoreError};
use buudien_types::Uid;

impl<S: MailboxStore> Session<'_, S> {
    /// How this session reports changes.
    pub(crate) fn report(&self) -> Report {
        Report {
            qresync: self.qresync,
            condstore: self.condstore,
            recent: !self.rev2,
            expunges: true,
        }
    }

    /// Turns CONDSTORE on because a command used it (RFC 7162 §3.1): the first such
    /// command in a selected mailbox also reports its HIGHESTMODSEQ (§3.1.2.1).
    pub(crate) fn enable_condstore(&mut self, out: &mut Vec<u8>) {
        if self.condstore {
            return;
        }
        self.condstore = true;
        if let Some(sel) = &self.selected {
            line(out, &format!("* OK [HIGHESTMODSEQ {}] modseq", sel.modseq));
        }
    }

    /// SELECT / EXAMINE (RFC 9051 §6.3.2, §6.3.3).
    pub(crate) async fn select(
        &mut self,
        tag: &Tag,
        mailbox: &Name,
        params: &SelectParams,
        read_only: bool,
        out: &mut Vec<u8>,
    ) {
        let previous = self.selected.take();
        if previous.is_some() && self.qresync {
            // RFC 7162 §3.2.11: the old mailbox is closed before the new one opens.
            line(out, "* OK [CLOSED] previous mailbox closed");
        }
        if params.qresync.is_some() && !self.qresync {
            // RFC 7162 §3.2.5: QRESYNC parameters need ENABLE QRESYNC first.
            return bad(out, tag, "QRESYNC is not enabled");
        }
        if params.condstore {
            self.condstore = true;
        }
        let store = &self.shared.store;
        let mb = match store.mailbox(self.acct(), mailbox.as_str()).await {
            Ok(Some(mb)) => mb,
            Ok(None) => return nonexistent(out, tag),
            Err(e) => return store_error(out, tag, &e),
        };
        // SELECT of the mailbox already selected (clients re-select to resynchronise):
        // the session's snapshot brought up to date from the change log is the same
        // view as a fresh read, without reading every message again.
        let reused = match previous.filter(|p| p.id == mb.id) {
            Some(mut p) => match store.delta(mb.id, p.modseq).await {
                Ok(delta) => {
                    p.refresh(delta, read_only);
                    Some(p)
                }
                Err(e) => return store_error(out, tag, &e),
            },
            None => None,
        };
        let messages = match reused {
            Some(_) => Vec::new(),
            None => match store.messages(mb.id).await {
                Ok(m) => m,
                Err(e) => return store_error(out, tag, &e),
            },
        };
        // \Recent exists in IMAP4rev1 only (RFC 9051 Appendix E item 7).
        let recent_from = if self.rev2 {
            None
        } else {
            let r = if read_only {
                // EXAMINE shows \Recent but leaves it to the next SELECT.
                store.recent_mark(mb.id).await
            } else {
                store.claim_recent(mb.id).await
            };
            match r {
                Ok(u) => Some(u),
                Err(e) => return store_error(out, tag, &e),
            }
        };
        let sel = match reused {
            Some(mut sel) => {
                sel.modseq = sel.modseq.max(mb.highestmodseq);
                sel.recent = match recent_from {
                    Some(from) => sel.all_uids().filter(|u| *u > from).collect(),
                    None => Vec::new(),
                };
                sel
            }
            None => {
                // The list was read after the mailbox row: never report less than it
                // shows.
                let modseq = messages
                    .iter()
                    .map(|m| m.modseq)
                    .fold(mb.highestmodseq, u64::max);
                let recent: Vec<Uid> = match recent_from {
                    Some(from) => messages
                        .iter()
                        .filter(|m| m.uid > from)
                        .map(|m| m.uid)
                        .collect(),
                    None => Vec::new(),
                };
                let mut sel = Selected::new(mb.id, read_only, &messages, modseq, recent);
                drop(messages);
                // Re-home the snapshot now that the full list is freed: built while
                // that list was alive, it would pin a hole the allocator cannot hand
                // to the next session's list, and idle sessions would cost the full
                // list, not 24 octets a message.
                sel.slots = sel.slots.clone();
                sel
            }
        };
        let uidnext = mb.uidnext.0.max(sel.max_uid().saturating_add(1));
        sel.write_flags_responses(out);
        line(out, &format!("* {} EXISTS", sel.len()));
        if !self.rev2 {
            line(out, &format!("* {} RECENT", sel.recent.len()));
            if let Some(first) = sel
                .slots
                .iter()
                .position(|m| !m.flags.contains(buudien_store::Flags::SEEN))
            {
                // RFC 3501 §6.3.1: the first unseen message (gone from rev2).
                line(out, &format!("* OK [UNSEEN {}] first unseen", first + 1));
            }
        }
        line(
            out,
            &format!("* OK [UIDVALIDITY {}] UIDs valid", mb.uidvalidity.0),
        );
        line(out, &format!("* OK [UIDNEXT {uidnext}] next UID"));
        line(out, &format!("* OK [HIGHESTMODSEQ {}] modseq", sel.modseq));
        if self.rev2 {
            // RFC 9051 §6.3.2: a LIST response with the mailbox's canonical name.
            response::list(
                out,
                &ListItem {
                    attrs: &[],
                    delimiter: Some('/'),
                    name: &mb.name,
                    childinfo_subscribed: false,
                    old_name: None,
                },
                self.text_mode(),
                false,
            );
        }
        if let Some(q) = &params.qresync
            && q.uid_validity.0 == mb.uidvalidity.0
            && let Err(e) = self.qresync_report(&sel, q, out).await
        {
            return store_error(out, tag, &e);
        }
        self.selected = Some(sel);
        let code = if read_only { "READ-ONLY" } else { "READ-WRITE" };
        let cmd = if read_only { "EXAMINE" } else { "SELECT" };
        ok(out, tag, &format!("[{code}] {cmd} completed"));
    }

    /// The QRESYNC part of SELECT (RFC 7162 §3.2.5.2): `VANISHED (EARLIER)` for known
    /// UIDs expunged since the client's MODSEQ and FETCH for messages changed since,
    /// both from the store's change log.
    async fn qresync_report(
        &self,
        sel: &Selected,
        q: &buudien_imap_proto::QResync,
        out: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        let delta = self.shared.store.delta(sel.id, q.modseq.0).await?;
        let max = delta.uidnext.saturating_sub(1);
        let vanished: Vec<u32> = delta
            .expunged
            .iter()
            .map(|u| u.0)
            .filter(|u| q.known_uids.as_ref().is_none_or(|k| k.contains(*u, max)))
            .collect();
        if let Some(set) = SequenceSet::compact(vanished) {
            line(out, &format!("* VANISHED (EARLIER) {set}"));
        }
        for m in &delta.changed {
            if let Some(seq) = sel.seq_of(m.uid) {
                let mut l = format!("* {seq} FETCH (UID {} FLAGS ", m.uid.0).into_bytes();
                write_flags(&mut l, m, sel.is_recent(m.uid));
                l.extend_from_slice(format!(" MODSEQ ({}))\r\n", m.modseq).as_bytes());
                out.extend_from_slice(&l);
            }
        }
        Ok(())
    }

    /// Reports what changed in the selected mailbox since the session last looked
    /// (RFC 9051 §7.5.1: only between commands, never in the middle of one).
    pub(crate) async fn sync(&mut self, out: &mut Vec<u8>) {
        self.sync_with(true, out).await;
    }

    /// Before FETCH, STORE and SEARCH: flag changes and new messages are reported
    /// (so FLAGS answers are current), expunges wait for the next command that may
    /// send them — sequence numbers must not shift under these (RFC 9051 §7.5.1).
    pub(crate) async fn sync_keeping_numbers(&mut self, out: &mut Vec<u8>) {
        self.sync_with(false, out).await;
    }

    async fn sync_with(&mut self, expunges: bool, out: &mut Vec<u8>) {
        let how = Report {
            expunges,
            ..self.report()
        };
        let store = &self.shared.store;
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        let delta = match store.delta(sel.id, sel.modseq).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "mailbox refresh failed");
                return;
            }
        };
        let max = sel.max_uid();
        let mut new_recent = Vec::new();
        if how.recent && !sel.read_only && delta.changed.iter().any(|m| m.uid.0 > max) {
            match store.claim_recent(sel.id).await {
                Ok(from) => {
                    new_recent = delta
                        .changed
                        .iter()
                        .filter(|m| m.uid.0 > max && m.uid > from)
                        .map(|m| m.uid)
                        .collect();
                }
                Err(e) => tracing::warn!(error = %e, "recent claim failed"),
            }
        }
        sel.apply(delta, &new_recent, how, out);
    }
}
