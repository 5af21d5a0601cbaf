//! The selected mailbox as one session sees it (RFC 9051 §6.3.2): a snapshot of its
//! messages in UID order whose positions are the sequence numbers, and the flag
//! conversions between the store ([`Flags`] + keywords) and the wire ([`Flag`]).

use buudien_imap_proto::{Flag, SequenceSet};
use buudien_store::{Flags, MailboxId, MessageEntry};
use buudien_types::Uid;

/// The selected mailbox.
pub(crate) struct Selected {
    /// Its id in the store.
    pub(crate) id: MailboxId,
    /// EXAMINE: nothing may change (RFC 9051 §6.3.3).
    pub(crate) read_only: bool,
    /// The messages the client knows, in UID order; index + 1 is the sequence number.
    pub(crate) messages: Vec<MessageEntry>,
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
            return Vec::new();
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

    /// Brings the snapshot up to `now` (the store's messages in UID order), writing
    /// `* n EXPUNGE` for each message gone (highest first, so numbers stay right) and
    /// `* n EXISTS` when new messages came (expunges alone are implied by `EXPUNGE`) (RFC 9051 §7.4.1,
    /// §7.3.1). Flag changes by others are reported as untagged FETCH.
    pub(crate) fn sync(&mut self, now: Vec<MessageEntry>, out: &mut Vec<u8>) {
        let mut gone = Vec::new();
        for (i, m) in self.messages.iter().enumerate() {
            if now.binary_search_by_key(&m.uid, |n| n.uid).is_err() {
                gone.push(i);
            }
        }
        for i in gone.iter().rev() {
            out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
        }
        let old_max = self.max_uid();
        let mut changed_flags = Vec::new();
        for n in &now {
            if let Ok(i) = self.messages.binary_search_by_key(&n.uid, |m| m.uid)
                && let Some(m) = self.messages.get(i)
                && (m.flags != n.flags || m.keywords != n.keywords)
            {
                changed_flags.push(n.uid);
            }
        }
        let added = now.iter().any(|n| n.uid.0 > old_max);
        self.messages = now;
        if added {
            out.extend_from_slice(format!("* {} EXISTS\r\n", self.len()).as_bytes());
        }
        for uid in changed_flags {
            if let (Some(seq), Ok(i)) = (
                self.seq_of(uid),
                self.messages.binary_search_by_key(&uid, |m| m.uid),
            ) && let Some(m) = self.messages.get(i)
            {
                let mut line = format!("* {seq} FETCH (UID {} FLAGS ", uid.0).into_bytes();
                write_flags(&mut line, m);
                line.extend_from_slice(b")\r\n");
                out.extend_from_slice(&line);
            }
        }
    }
}

/// The wire flags of a message: system flags then keywords.
pub(crate) fn wire_flags(m: &MessageEntry) -> Vec<Flag> {
    let mut flags: Vec<Flag> = Flags::ALL
        .iter()
        .filter(|(f, _)| m.flags.contains(*f))
        .filter_map(|(_, name)| Flag::parse(name))
        .collect();
    flags.extend(m.keywords.iter().map(|k| Flag::Keyword(k.clone())));
    flags
}

/// `(\Seen $Junk)` for a message.
pub(crate) fn write_flags(out: &mut Vec<u8>, m: &MessageEntry) {
    buudien_imap_proto::flag::write_flag_list(out, &wire_flags(m), false);
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
