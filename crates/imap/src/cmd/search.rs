//! SEARCH and UID SEARCH (RFC 9051 §6.4.4, RFC 3501 §6.4.4), with ESEARCH results
//! (RFC 4731, RFC 9051 §7.3.4), SAVE and `$` (RFC 5182) and the MODSEQ criterion
//! (RFC 7162 §3.1.5).
//!
//! Messages are decided from the snapshot first (flags, sizes, dates, sets, MODSEQ);
//! only those whose answer still depends on their contents get their metadata read
//! (in batches), then their header section, then — for BODY / TEXT — the whole
//! message, one message at a time (bounded by its recorded size).
//!
//! BODY and TEXT keys are first put to the store's text index
//! ([`MailboxStore::search_text`]): where it answers, the key becomes a set of UIDs
//! (plus the messages the index does not cover, still read and scanned), so AND, OR
//! and NOT combine it like any other key; where it does not (no index, a needle under
//! three characters, a store error), the key is scanned as before.

mod eval;

use crate::reply::*;
use crate::selected::Selected;
use crate::session::Session;
use buudien_imap_proto::command::SearchCommand;
use buudien_imap_proto::response::{self, Esearch};
use buudien_imap_proto::{SearchReturn, SequenceSet, Tag};
use buudien_message::MessageMeta;
use buudien_store::{MailboxStore, MessageEntry, StoreError};
use buudien_types::{ModSeq, Uid};
use eval::{
    Indexed, Level, Msg, Node, beyond_snapshot, compile, eval, level, text_keys, uses_index,
    with_answers,
};
use tokio::io::AsyncReadExt;

/// Messages whose metadata is read in one store call.
const META_BATCH: usize = 256;

/// Initial buffer for a message read (grown up to its recorded size).
const READ_START: usize = 64 * 1024;

impl<S: MailboxStore> Session<'_, S> {
    /// SEARCH / UID SEARCH (RFC 9051 §6.4.4). A rev1 session without RETURN gets
    /// `* SEARCH` (RFC 3501 §7.2.5); RETURN or a rev2 session gets `* ESEARCH`
    /// (RFC 4731 §3.1, RFC 9051 §7.3.4).
    pub(crate) async fn search(&mut self, tag: &Tag, cmd: &SearchCommand, out: &mut Vec<u8>) {
        let what = if cmd.uid { "UID SEARCH" } else { "SEARCH" };
        let save = cmd.ret.is_some_and(|r| r.save);
        // Current flags, new mail; expunges wait (RFC 9051 §7.5.1).
        self.sync_keeping_numbers(out).await;
        let Some(sel) = self.selected.as_ref() else {
            return bad(out, tag, "no mailbox selected");
        };
        let mut program = compile(&cmd.key, sel);
        program.root = indexed(&self.shared.store, sel.id, program.root).await;
        if program.uses_modseq && !self.condstore {
            // RFC 7162 §3.1: a MODSEQ search criterion enables CONDSTORE.
            self.enable_condstore(out);
        }
        let Some(sel) = self.selected.as_ref() else {
            return bad(out, tag, "no mailbox selected");
        };
        let from_store = beyond_snapshot(&program.root);
        let found = match view(
            &self.shared.store,
            sel,
            from_store,
            uses_index(&program.root),
        )
        .await
        {
            Ok(view) => matching(&self.shared.store, sel, &view, &program.root)
                .await
                .map(|found| (view, found)),
            Err(e) => Err(e),
        };
        let (view, found) = match found {
            Ok(f) => f,
            Err(e) => {
                // RFC 5182 §2.1: a failed SEARCH with SAVE leaves `$` empty.
                if save && let Some(sel) = self.selected.as_mut() {
                    sel.saved.clear();
                }
                return store_error(out, tag, &e);
            }
        };
        let hits: Vec<&MessageEntry> = found
            .iter()
            .filter_map(|&i| view.get(i).and_then(Option::as_ref))
            .collect();
        let number = |i: usize, e: &MessageEntry| -> u32 {
            if cmd.uid {
                e.uid.0
            } else {
                u32::try_from(i).map_or(u32::MAX, |i| i.saturating_add(1))
            }
        };
        let numbers: Vec<u32> = found
            .iter()
            .zip(&hits)
            .map(|(&i, e)| number(i, e))
            .collect();
        let ret = match (cmd.ret, self.rev2) {
            (Some(r), _) => Some(r),
            // RFC 9051 §6.4.4: in IMAP4rev2 a SEARCH without RETURN is RETURN (ALL).
            (None, true) => Some(SearchReturn {
                all: true,
                ..SearchReturn::default()
            }),
            (None, false) => None,
        };
        let highest = |es: &[&MessageEntry]| es.iter().map(|e| e.modseq).max().map(ModSeq);
        match ret {
            None => {
                let modseq = if program.uses_modseq {
                    highest(&hits)
                } else {
                    None
                };
                response::search(out, &numbers, modseq);
            }
            Some(r) => {
                let min = numbers.first().copied();
                let max = numbers.last().copied();
                let only_ends = !r.all && !r.count;
                // RFC 4731 §3.2 (RFC 7162 §3.1.10): MODSEQ of the MIN / MAX message
                // when only those are asked, else the highest of all found.
                let reported: Vec<&MessageEntry> = if only_ends {
                    let mut v = Vec::new();
                    if r.min {
                        v.extend(hits.first().copied());
                    }
                    if r.max {
                        v.extend(hits.last().copied());
                    }
                    v
                } else {
                    hits.clone()
                };
                let all = if r.all {
                    SequenceSet::compact(numbers.iter().copied())
                } else {
                    None
                };
                if r.min || r.max || r.all || r.count {
                    response::esearch(
                        out,
                        &Esearch {
                            tag: Some(tag),
                            uid: cmd.uid,
                            min: min.filter(|_| r.min),
                            max: max.filter(|_| r.max),
                            all: all.as_ref(),
                            count: r
                                .count
                                .then(|| u32::try_from(numbers.len()).unwrap_or(u32::MAX)),
                            modseq: if program.uses_modseq {
                                highest(&reported)
                            } else {
                                None
                            },
                        },
                    );
                }
                if r.save {
                    // RFC 5182 §2.4: with only MIN and/or MAX, `$` holds just those.
                    let mut saved: Vec<Uid> = if only_ends && (r.min || r.max) {
                        reported.iter().map(|e| e.uid).collect()
                    } else {
                        hits.iter().map(|e| e.uid).collect()
                    };
                    saved.sort_unstable();
                    saved.dedup();
                    if let Some(sel) = self.selected.as_mut() {
                        sel.saved = saved;
                    }
                }
            }
        }
        ok(out, tag, &format!("{what} completed"));
    }
}

/// `root` with the BODY / TEXT keys the store's text index can answer replaced by
/// its answers. A key it cannot answer, or a failed lookup, is left to the scan.
async fn indexed<S: MailboxStore>(
    store: &S,
    mailbox: buudien_store::MailboxId,
    root: Node,
) -> Node {
    let mut keys = Vec::new();
    text_keys(&root, &mut keys);
    let mut answers = Vec::with_capacity(keys.len());
    for (needle, body_only) in keys {
        match store.search_text(mailbox, &needle, body_only).await {
            Ok(Some(found)) => {
                let sorted = |uids: Vec<buudien_types::Uid>| {
                    let mut v: Vec<u32> = uids.into_iter().map(|u| u.0).collect();
                    v.sort_unstable();
                    v
                };
                answers.push(Indexed {
                    needle,
                    body_only,
                    hits: sorted(found.matched),
                    unknown: sorted(found.unknown),
                });
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("text index lookup failed, scanning instead: {e}"),
        }
    }
    if answers.is_empty() {
        return root;
    }
    with_answers(root, &answers)
}

/// The session's messages as SEARCH sees them, by index in the snapshot: the store's
/// entry with the flags, keywords and MODSEQ the session knows; `None` for a message
/// another session expunged that this one has not been told of (it matches nothing).
/// Without `from_store` the snapshot answers alone; `gone_known` then leaves out the
/// messages known to be expunged (as a read of the store would), for keys the text
/// index answered from the store (its answer has no such message).
async fn view<S: MailboxStore>(
    store: &S,
    sel: &Selected,
    from_store: bool,
    gone_known: bool,
) -> Result<Vec<Option<MessageEntry>>, StoreError> {
    if !from_store {
        // Flags, keywords, numbers and MODSEQ only: the snapshot answers alone.
        return Ok(sel
            .slots
            .iter()
            .map(|slot| {
                if gone_known && sel.pending_expunges.binary_search(&slot.uid).is_ok() {
                    return None;
                }
                Some(MessageEntry {
                    uid: slot.uid,
                    blob: buudien_store::BlobId([0; 32]),
                    size: 0,
                    ascii_size: None,
                    flags: slot.flags,
                    keywords: sel.keywords_of(slot).to_vec(),
                    modseq: slot.modseq,
                    received: std::time::SystemTime::UNIX_EPOCH,
                })
            })
            .collect());
    }
    let now = store.messages(sel.id).await?;
    let mut out = Vec::with_capacity(sel.slots.len());
    let mut from = now.into_iter().peekable();
    for slot in &sel.slots {
        while from.next_if(|e| e.uid < slot.uid).is_some() {}
        out.push(from.next_if(|e| e.uid == slot.uid).map(|mut e| {
            e.flags = slot.flags;
            e.keywords = sel.keywords_of(slot).to_vec();
            e.modseq = slot.modseq;
            e
        }));
    }
    Ok(out)
}

/// The indices in the snapshot of the messages matching `root`, ascending.
async fn matching<S: MailboxStore>(
    store: &S,
    sel: &Selected,
    view: &[Option<MessageEntry>],
    root: &Node,
) -> Result<Vec<usize>, StoreError> {
    let mut found = Vec::new();
    let mut pending = Vec::new();
    for (i, entry) in view.iter().enumerate() {
        let Some(entry) = entry else { continue };
        let m = msg(sel, i, entry);
        match eval(root, &m) {
            Some(true) => found.push(i),
            Some(false) => {}
            None => pending.push(i),
        }
    }
    if pending.is_empty() {
        return Ok(found);
    }
    let needs = level(root);
    for batch in pending.chunks(META_BATCH) {
        let uids: Vec<Uid> = batch
            .iter()
            .filter_map(|&i| view.get(i).and_then(Option::as_ref).map(|e| e.uid))
            .collect();
        let metas = store.metas(sel.id, &uids).await?;
        for &i in batch {
            let Some(entry) = view.get(i).and_then(Option::as_ref) else {
                continue;
            };
            let stored = metas
                .iter()
                .find(|s| s.uid == entry.uid)
                .and_then(|s| s.meta.as_deref())
                .and_then(|b| MessageMeta::from_bytes(b).ok());
            if deep_match(store, sel, i, entry, root, needs, stored).await? {
                found.push(i);
            }
        }
        tokio::task::yield_now().await;
    }
    found.sort_unstable();
    Ok(found)
}

fn msg<'a>(sel: &Selected, i: usize, entry: &'a MessageEntry) -> Msg<'a> {
    Msg {
        seq: u32::try_from(i).map_or(u32::MAX, |i| i.saturating_add(1)),
        entry,
        recent: sel.is_recent(entry.uid),
        meta: None,
        header: None,
        whole: None,
    }
}

/// Decides one message that its snapshot entry could not: with its metadata, then
/// its header section, then the whole message, stopping as soon as the answer is
/// known. A message stored without (readable) metadata is read whole and parsed.
async fn deep_match<S: MailboxStore>(
    store: &S,
    sel: &Selected,
    i: usize,
    entry: &MessageEntry,
    root: &Node,
    needs: Level,
    stored: Option<MessageMeta>,
) -> Result<bool, StoreError> {
    let base = msg(sel, i, entry);
    let mut reader = None;
    let mut bytes = Vec::new();
    let meta = match stored {
        Some(meta) => {
            let m = Msg {
                meta: Some(&meta),
                ..msg(sel, i, entry)
            };
            if let Some(answer) = eval(root, &m) {
                return Ok(answer);
            }
            meta
        }
        None => {
            read_up_to(store, entry, &mut reader, &mut bytes, entry.size).await?;
            MessageMeta::parse(&bytes)
        }
    };
    let body_start = u64::try_from(meta.root.body_start).unwrap_or(u64::MAX);
    if needs >= Level::Header {
        read_up_to(store, entry, &mut reader, &mut bytes, body_start).await?;
        let header = bytes.get(meta.root.header_range()).unwrap_or_default();
        let m = Msg {
            meta: Some(&meta),
            header: Some(header),
            ..msg(sel, i, entry)
        };
        if let Some(answer) = eval(root, &m) {
            return Ok(answer);
        }
    }
    read_up_to(store, entry, &mut reader, &mut bytes, entry.size).await?;
    let header = bytes.get(meta.root.header_range()).unwrap_or_default();
    let m = Msg {
        meta: Some(&meta),
        header: Some(header),
        whole: Some(&bytes),
        ..base
    };
    // Everything is loaded: an unknown answer cannot remain; count it as no match.
    Ok(eval(root, &m).unwrap_or(false))
}

/// Makes `bytes` hold the first `upto` octets of the message (at most its recorded
/// size), continuing the read `reader` already started.
async fn read_up_to<S: MailboxStore>(
    store: &S,
    entry: &MessageEntry,
    reader: &mut Option<buudien_store::BlobReader>,
    bytes: &mut Vec<u8>,
    upto: u64,
) -> Result<(), StoreError> {
    let upto = upto.min(entry.size);
    let have = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if have >= upto {
        return Ok(());
    }
    if reader.is_none() {
        *reader = Some(store.read_blob(&entry.blob).await?);
    }
    let Some(r) = reader.as_mut() else {
        return Ok(());
    };
    if bytes.capacity() == 0 {
        bytes.reserve(usize::try_from(entry.size).map_or(READ_START, |s| s.min(READ_START)));
    }
    AsyncReadExt::take(&mut *r, upto - have)
        .read_to_end(bytes)
        .await
        .map_err(|e| StoreError::Io(e.to_string()))?;
    Ok(())
}
