//! The selected mailbox as one session sees it (RFC 9051 §6.3.2): a snapshot of its
//! messages in UID order whose positions are the sequence numbers, and the flag
//! conversions between the store ([`Flags`] + keywords) and the wire ([`Flag`]).

use buudien_imap_proto::{Flag, SequenceSet};
use buudien_store::{Delta, Flags, MailboxId, MessageEntry};
use buudien_types::Uid;

/// The selected mailbox.
pub(crate) struct Selected {
    /// Its id in the store.
    pub(crate) id: MailboxId,
    /// EXAMINE: nothing may change (RFC 9051 §6.3.3).
    pub(crate) read_only: bool,
    /// The messages the client knows, in UID order; index + 1 is the sequence number.
    pub(crate) messages: Vec<MessageEntry>,
    /// The HIGHESTMODSEQ up to which the client has been told everything.
    pub(crate) modseq: u64,
    /// The UIDs that are `\Recent` in this session (RFC 3501 §2.3.2), ascending.
    pub(crate) recent: Vec<Uid>,
    /// The result of the last `SEARCH RETURN (SAVE)`, for `$` (RFC 5182 §2.1).
    pub(crate) saved: Vec<Uid>,
}

/// How the session reports changes (RFC 7162 §3.1.4, §3.2.10; RFC 3501 §7.3.2).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Report {
    /// QRESYNC is enabled: `VANISHED` instead of `EXPUNGE`.
    pub(crate) qresync: bool,
    /// CONDSTORE is enabled: untagged FETCH carries MODSEQ.
    pub(crate) condstore: bool,
    /// An IMAP4rev1 session: `* n RECENT` after `EXISTS`.
    pub(crate) recent: bool,
}

impl Selected {
    /// Largest sequence number.
    pub(crate) fn len(&self) -> u32 {
        u32::try_from(self.messages.len()).unwrap_or(u32::MAX)
    }

    /// Largest UID (0 when empty), the value of `*` in a UID set.
    pub(crate) fn max_uid(&self) -> u32 {
        self.messages.last().map_or(0, |m| m.uid.0)
    }

    /// (sequence number, index) of the messages `set` names, as sequence numbers or
    /// UIDs; numbers beyond the mailbox are ignored.
    pub(crate) fn resolve(&self, set: &SequenceSet, uid: bool) -> Vec<(u32, usize)> {
        if set.is_saved() {
            // `$` (RFC 5182 §2.1): the saved UIDs still in the mailbox.
            return self
                .saved
                .iter()
                .filter_map(|u| {
                    let i = self.messages.binary_search_by_key(u, |m| m.uid).ok()?;
                    Some((u32::try_from(i).ok()?.checked_add(1)?, i))
                })
                .collect();
        }
        let len = self.len();
        let max_uid = self.max_uid();
        self.messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let seq = u32::try_from(i).ok()?.checked_add(1)?;
                let hit = if uid {
                    set.contains(m.uid.0, max_uid)
                } else {
                    set.contains(seq, len)
                };
                hit.then_some((seq, i))
            })
            .collect()
    }

    /// The UIDs of [`Selected::resolve`].
    pub(crate) fn uids(&self, set: &SequenceSet, uid: bool) -> Vec<Uid> {
        self.resolve(set, uid)
            .into_iter()
            .filter_map(|(_, i)| self.messages.get(i).map(|m| m.uid))
            .collect()
    }

    /// Sequence number of `uid` in the snapshot.
    pub(crate) fn seq_of(&self, uid: Uid) -> Option<u32> {
        let i = self.messages.binary_search_by_key(&uid, |m| m.uid).ok()?;
        u32::try_from(i).ok()?.checked_add(1)
    }

    /// True when `uid` is `\Recent` in this session.
    pub(crate) fn is_recent(&self, uid: Uid) -> bool {
        self.recent.binary_search(&uid).is_ok()
    }

    /// Applies what changed in the store (`delta`, read after `self.modseq`) and
    /// writes the untagged responses (RFC 9051 §7.4.1, §7.3.1, §7.5.1): expunges
    /// first — `* n EXPUNGE` from the highest number down, or one `VANISHED` under
    /// QRESYNC — then `* n EXISTS` if messages came, then `FETCH` for flag changes made
    /// by others. `new_recent` are the UIDs this session claimed as `\Recent`.
    pub(crate) fn apply(
        &mut self,
        delta: Delta,
        new_recent: &[Uid],
        how: Report,
        out: &mut Vec<u8>,
    ) {
        let mut gone_seq = Vec::new();
        let mut gone_uid = Vec::new();
        for uid in &delta.expunged {
            if let Ok(i) = self.messages.binary_search_by_key(uid, |m| m.uid) {
                gone_seq.push(i);
                gone_uid.push(uid.0);
            }
        }
        if how.qresync {
            if let Some(set) = SequenceSet::compact(gone_uid.iter().copied()) {
                out.extend_from_slice(format!("* VANISHED {set}\r\n").as_bytes());
            }
        } else {
            for i in gone_seq.iter().rev() {
                out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
            }
        }
        if !gone_seq.is_empty() {
            let mut next = gone_seq.iter().peekable();
            let mut i = 0usize;
            self.messages.retain(|_| {
                let drop = next.peek().is_some_and(|&&g| g == i);
                if drop {
                    next.next();
                }
                i += 1;
                !drop
            });
            self.recent
                .retain(|u| delta.expunged.binary_search(u).is_err());
            self.saved
                .retain(|u| delta.expunged.binary_search(u).is_err());
        }
        let old_max = self.max_uid();
        let mut flag_changes = Vec::new();
        let mut added = false;
        for n in delta.changed {
            if n.uid.0 > old_max {
                self.messages.push(n);
                added = true;
            } else if let Ok(i) = self.messages.binary_search_by_key(&n.uid, |m| m.uid)
                && let Some(m) = self.messages.get_mut(i)
            {
                if m.flags != n.flags || m.keywords != n.keywords {
                    flag_changes.push(i);
                }
                *m = n;
            }
        }
        self.recent.extend_from_slice(new_recent);
        if added {
            out.extend_from_slice(format!("* {} EXISTS\r\n", self.len()).as_bytes());
            if how.recent {
                out.extend_from_slice(format!("* {} RECENT\r\n", self.recent.len()).as_bytes());
            }
        }
        for i in flag_changes {
            if let Some(m) = self.messages.get(i) {
                let mut line = format!("* {} FETCH (UID {} FLAGS ", i + 1, m.uid.0).into_bytes();
                write_flags(&mut line, m, self.is_recent(m.uid));
                if how.condstore {
                    line.extend_from_slice(format!(" MODSEQ ({})", m.modseq).as_bytes());
                }
                line.extend_from_slice(b")\r\n");
                out.extend_from_slice(&line);
            }
        }
        self.modseq = self.modseq.max(delta.highestmodseq);
    }
}

/// The wire flags of a message: system flags (with `\Recent` when it is recent in
/// this session) then keywords.
pub(crate) fn wire_flags(m: &MessageEntry, recent: bool) -> Vec<Flag> {
    let mut flags: Vec<Flag> = Flags::ALL
        .iter()
        .filter(|(f, _)| m.flags.contains(*f))
        .filter_map(|(_, name)| Flag::parse(name))
        .collect();
    if recent {
        flags.push(Flag::Recent);
    }
    flags.extend(m.keywords.iter().map(|k| Flag::Keyword(k.clone())));
    flags
}

/// `(\Seen $Junk)` for a message.
pub(crate) fn write_flags(out: &mut Vec<u8>, m: &MessageEntry, recent: bool) {
    buudien_imap_proto::flag::write_flag_list(out, &wire_flags(m, recent), false);
}

/// Splits wire flags into store flags and keywords; `\Recent` and unknown
/// `\`-flags are dropped (RFC 9051 §2.3.2: a client cannot set them).
pub(crate) fn store_flags(flags: &[Flag]) -> (Flags, Vec<String>) {
    let mut bits = Flags::default();
    let mut keywords = Vec::new();
    for f in flags {
        match f {
            Flag::Answered => bits = bits.with(Flags::ANSWERED),
            Flag::Flagged => bits = bits.with(Flags::FLAGGED),
            Flag::Deleted => bits = bits.with(Flags::DELETED),
            Flag::Seen => bits = bits.with(Flags::SEEN),
            Flag::Draft => bits = bits.with(Flags::DRAFT),
            Flag::Keyword(k) => keywords.push(k.clone()),
            Flag::Recent | Flag::Extension(_) => {}
        }
    }
    keywords.sort();
    keywords.dedup();
    (bits, keywords)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip() {
        let (bits, kw) = store_flags(&[Flag::Seen, Flag::Keyword("$Junk".into()), Flag::Recent]);
        assert_eq!(bits, Flags::SEEN);
        assert_eq!(kw, vec!["$Junk".to_owned()]);
    }
}
