//! The selected mailbox as one session sees it (RFC 9051 §6.3.2): a compact snapshot
//! of its messages in UID order whose positions are the sequence numbers — UID,
//! flags, keyword set and MODSEQ, 24 octets a message, so that thousands of idle
//! sessions cost little — and the flag conversions between the store ([`Flags`] +
//! keywords) and the wire ([`Flag`]). Everything else about a message (blob, size,
//! dates) is read from the store when a command needs it.

use buudien_imap_proto::{Flag, SequenceSet};
use buudien_store::{Delta, Flags, MailboxId, MessageEntry};
use buudien_types::Uid;
use std::collections::HashMap;

/// One message of the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    /// Its UID.
    pub(crate) uid: Uid,
    /// System flags as the client was last told.
    pub(crate) flags: Flags,
    /// Its keyword set, an index into [`Keywords`].
    pub(crate) kw: u32,
    /// Its MODSEQ as the client was last told.
    pub(crate) modseq: u64,
}

/// The distinct keyword sets of a mailbox, each stored once (index 0: none).
#[derive(Debug, Default)]
pub(crate) struct Keywords {
    sets: Vec<Vec<String>>,
    index: HashMap<Vec<String>, u32>,
}

impl Keywords {
    /// The index of a (sorted) keyword set, adding it if new.
    fn intern(&mut self, kw: &[String]) -> u32 {
        if kw.is_empty() {
            return 0;
        }
        if let Some(&i) = self.index.get(kw) {
            return i;
        }
        if self.sets.is_empty() {
            self.sets.push(Vec::new());
        }
        let i = u32::try_from(self.sets.len()).unwrap_or(u32::MAX);
        self.sets.push(kw.to_vec());
        self.index.insert(kw.to_vec(), i);
        i
    }

    /// The keyword set at `i`.
    pub(crate) fn get(&self, i: u32) -> &[String] {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.sets.get(i))
            .map_or(&[], Vec::as_slice)
    }
}

/// The selected mailbox.
pub(crate) struct Selected {
    /// Its id in the store.
    pub(crate) id: MailboxId,
    /// EXAMINE: nothing may change (RFC 9051 §6.3.3).
    pub(crate) read_only: bool,
    /// The messages the client knows, in UID order; index + 1 is the sequence number.
    pub(crate) slots: Vec<Slot>,
    /// The keyword sets the slots refer to.
    pub(crate) keywords: Keywords,
    /// The HIGHESTMODSEQ up to which the client has been told everything.
    pub(crate) modseq: u64,
    /// The UIDs that are `\Recent` in this session (RFC 3501 §2.3.2), ascending.
    pub(crate) recent: Vec<Uid>,
    /// The result of the last `SEARCH RETURN (SAVE)`, for `$` (RFC 5182 §2.1).
    pub(crate) saved: Vec<Uid>,
    /// The keywords the client was told of in `FLAGS` (RFC 9051 §7.3.5), sorted.
    pub(crate) announced: Vec<String>,
    /// Expunges seen in the store but not yet reported: FETCH, STORE and SEARCH
    /// report flag changes and new mail first, expunges only after (RFC 9051 §7.5.1).
    pub(crate) pending_expunges: Vec<Uid>,
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
    /// Expunges may be reported now; otherwise they wait in `pending_expunges`.
    pub(crate) expunges: bool,
}

impl Selected {
    /// A snapshot of `messages` (in UID order).
    pub(crate) fn new(
        id: MailboxId,
        read_only: bool,
        messages: &[MessageEntry],
        modseq: u64,
        recent: Vec<Uid>,
    ) -> Selected {
        let mut sel = Selected {
            id,
            read_only,
            slots: Vec::with_capacity(messages.len()),
            keywords: Keywords::default(),
            modseq,
            recent,
            saved: Vec::new(),
            announced: Vec::new(),
            pending_expunges: Vec::new(),
        };
        for m in messages {
            let slot = sel.slot_of(m);
            sel.slots.push(slot);
        }
        let mut kw: Vec<String> = sel.keywords.sets.iter().flatten().cloned().collect();
        kw.sort();
        kw.dedup();
        sel.announced = kw;
        sel
    }

    /// Brings the snapshot of a mailbox selected again up to date with `delta` (the
    /// changes since its MODSEQ), silently, and resets what a new SELECT resets:
    /// read-only or not, the saved search result (RFC 5182 §2.1), pending expunges
    /// (applied now), and the announced keywords (those in use). It is then what
    /// [`Selected::new`] gives for a fresh read of the mailbox; `recent` is the
    /// caller's to set.
    pub(crate) fn refresh(&mut self, delta: Delta, read_only: bool) {
        let how = Report {
            expunges: true,
            ..Report::default()
        };
        self.apply(delta, &[], how, &mut Vec::new());
        self.read_only = read_only;
        self.saved.clear();
        self.recent.clear();
        let mut in_use: Vec<u32> = self.slots.iter().map(|s| s.kw).collect();
        in_use.sort_unstable();
        in_use.dedup();
        let mut kw: Vec<String> = in_use
            .into_iter()
            .flat_map(|i| self.keywords.get(i).to_vec())
            .collect();
        kw.sort();
        kw.dedup();
        self.announced = kw;
    }

    /// The UIDs of the snapshot, ascending.
    pub(crate) fn all_uids(&self) -> impl Iterator<Item = Uid> + '_ {
        self.slots.iter().map(|s| s.uid)
    }

    /// `* FLAGS (...)` and `* OK [PERMANENTFLAGS (...)]` with the system flags and
    /// the keywords in use (RFC 9051 §7.3.5, §7.1): at SELECT, and again whenever a
    /// keyword new to the client shows up.
    pub(crate) fn write_flags_responses(&self, out: &mut Vec<u8>) {
        let kw: String = self.announced.iter().map(|k| format!(" {k}")).collect();
        out.extend_from_slice(
            format!("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{kw})\r\n").as_bytes(),
        );
        if self.read_only {
            out.extend_from_slice(b"* OK [PERMANENTFLAGS ()] read-only\r\n");
        } else {
            out.extend_from_slice(
                format!(
                    "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{kw} \\*)] flags\r\n"
                )
                .as_bytes(),
            );
        }
    }

    /// Announces the keywords of `kw` the client does not know yet.
    pub(crate) fn announce(&mut self, kw: &[String], out: &mut Vec<u8>) {
        let mut new = false;
        for k in kw {
            if let Err(i) = self.announced.binary_search(k) {
                self.announced.insert(i, k.clone());
                new = true;
            }
        }
        if new {
            self.write_flags_responses(out);
        }
    }

    /// The slot for a store entry.
    fn slot_of(&mut self, m: &MessageEntry) -> Slot {
        Slot {
            uid: m.uid,
            flags: m.flags,
            kw: self.keywords.intern(&m.keywords),
            modseq: m.modseq,
        }
    }

    /// Takes a message's new flags and MODSEQ (after a STORE or a FETCH that set
    /// `\Seen`); returns its index.
    pub(crate) fn update(&mut self, m: &MessageEntry) -> Option<usize> {
        let i = self.index_of(m.uid)?;
        let slot = self.slot_of(m);
        if let Some(s) = self.slots.get_mut(i) {
            *s = slot;
        }
        Some(i)
    }

    /// Index of `uid` in the snapshot.
    pub(crate) fn index_of(&self, uid: Uid) -> Option<usize> {
        self.slots.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    /// Keywords of a slot.
    pub(crate) fn keywords_of(&self, slot: &Slot) -> &[String] {
        self.keywords.get(slot.kw)
    }

    /// `(\Seen $Junk)` for the slot at index `i`.
    pub(crate) fn write_slot_flags(&self, out: &mut Vec<u8>, slot: &Slot) {
        write_flag_set(
            out,
            slot.flags,
            self.keywords_of(slot),
            self.is_recent(slot.uid),
        );
    }

    /// Largest sequence number.
    pub(crate) fn len(&self) -> u32 {
        u32::try_from(self.slots.len()).unwrap_or(u32::MAX)
    }

    /// Largest UID (0 when empty), the value of `*` in a UID set.
    pub(crate) fn max_uid(&self) -> u32 {
        self.slots.last().map_or(0, |m| m.uid.0)
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
                    let i = self.index_of(*u)?;
                    Some((u32::try_from(i).ok()?.checked_add(1)?, i))
                })
                .collect();
        }
        let len = self.len();
        let max_uid = self.max_uid();
        self.slots
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
            .filter_map(|(_, i)| self.slots.get(i).map(|m| m.uid))
            .collect()
    }

    /// Sequence number of `uid` in the snapshot.
    pub(crate) fn seq_of(&self, uid: Uid) -> Option<u32> {
        let i = self.index_of(uid)?;
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
        mut delta: Delta,
        new_recent: &[Uid],
        how: Report,
        out: &mut Vec<u8>,
    ) {
        if how.expunges {
            if !self.pending_expunges.is_empty() {
                delta.expunged.append(&mut self.pending_expunges);
                delta.expunged.sort_unstable();
                delta.expunged.dedup();
            }
        } else {
            self.pending_expunges.append(&mut delta.expunged);
            self.pending_expunges.sort_unstable();
            self.pending_expunges.dedup();
        }
        let mut gone_seq = Vec::new();
        let mut gone_uid = Vec::new();
        for uid in &delta.expunged {
            if let Some(i) = self.index_of(*uid) {
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
            self.slots.retain(|_| {
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
        for n in &delta.changed {
            self.announce(&n.keywords, out);
            let slot = self.slot_of(n);
            if n.uid.0 > old_max {
                self.slots.push(slot);
                added = true;
            } else if let Some(i) = self.index_of(n.uid)
                && let Some(m) = self.slots.get_mut(i)
            {
                if m.flags != slot.flags || m.kw != slot.kw {
                    flag_changes.push(i);
                }
                *m = slot;
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
            if let Some(m) = self.slots.get(i) {
                let mut line = format!("* {} FETCH (UID {} FLAGS ", i + 1, m.uid.0).into_bytes();
                self.write_slot_flags(&mut line, m);
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

/// The wire flags: system flags (with `\Recent` when it is recent in this session)
/// then keywords.
pub(crate) fn wire_flags(flags: Flags, keywords: &[String], recent: bool) -> Vec<Flag> {
    let mut out: Vec<Flag> = Flags::ALL
        .iter()
        .filter(|(f, _)| flags.contains(*f))
        .filter_map(|(_, name)| Flag::parse(name))
        .collect();
    if recent {
        out.push(Flag::Recent);
    }
    out.extend(keywords.iter().map(|k| Flag::Keyword(k.clone())));
    out
}

/// `(\Seen $Junk)`.
pub(crate) fn write_flag_set(out: &mut Vec<u8>, flags: Flags, keywords: &[String], recent: bool) {
    buudien_imap_proto::flag::write_flag_list(out, &wire_flags(flags, keywords, recent), false);
}

/// `(\Seen $Junk)` for a store entry.
pub(crate) fn write_flags(out: &mut Vec<u8>, m: &MessageEntry, recent: bool) {
    write_flag_set(out, m.flags, &m.keywords, recent);
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
    fn keyword_sets_are_shared() {
        let mut k = Keywords::default();
        assert_eq!(k.intern(&[]), 0);
        let a = k.intern(&["$Junk".to_owned()]);
        let b = k.intern(&["$Junk".to_owned()]);
        assert_eq!(a, b);
        assert_ne!(a, 0);
        assert_eq!(k.get(a), ["$Junk".to_owned()]);
        assert!(k.get(0).is_empty() && k.get(99).is_empty());
        assert_eq!(std::mem::size_of::<Slot>(), 24);
    }

    #[test]
    fn flags_round_trip() {
        let (bits, kw) = store_flags(&[Flag::Seen, Flag::Keyword("$Junk".into()), Flag::Recent]);
        assert_eq!(bits, Flags::SEEN);
        assert_eq!(kw, vec!["$Junk".to_owned()]);
    }
}
