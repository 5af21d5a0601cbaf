//! FETCH and UID FETCH (RFC 9051 §6.4.5; RFC 3501 §6.4.5 for the RFC822 items), with
//! BINARY (RFC 3516), CHANGEDSINCE and VANISHED (RFC 7162 §3.1.4, §3.2.6).
//!
//! ENVELOPE and BODYSTRUCTURE come from the structure stored at delivery, sections
//! are byte ranges of the stored message streamed from its blob; only
//! `HEADER.FIELDS`, `BINARY` and messages served as their ASCII surrogate are read
//! into memory (each bounded by the message size limit).

use crate::drive::{stream_blob, stream_range};
use crate::fetch_body::{Ahead, Content, MessageData, binary_check, item_content, needs_structure};
use crate::reply::*;
use crate::selected::write_flags;
use crate::session::{Outcome, Session};
use buudien_imap_proto::response;
use buudien_imap_proto::{
    DateTime, FetchAttr, FetchCommand, SectionText, SequenceSet, Tag, TextMode,
};
use buudien_store::{BlobId, FlagOp, Flags, MailboxStore, MessageEntry, StoreError, StoredMeta};
use buudien_types::{ModSeq, Uid};
use std::time::SystemTime;
use tokio::io::AsyncWrite;

/// Messages whose stored structure is read from the store at once.
const META_BATCH: usize = 256;
/// At most this many octets of a batch's headers are read ahead (`read_ahead`); the
/// rest are read message by message.
const AHEAD_BUDGET: u64 = 1 << 20;

/// One message to answer: sequence number, the session's view of it (the entry's
/// flags, keywords and MODSEQ as the session knows them; the rest is filled from the
/// store when an item needs it), `\Recent` in this session, whether this FETCH set
/// its `\Seen`.
struct Target {
    seq: u32,
    entry: MessageEntry,
    recent: bool,
    seen_now: bool,
}

/// True for items answered from the session's snapshot alone.
fn from_snapshot(attr: &FetchAttr) -> bool {
    matches!(attr, FetchAttr::Uid | FetchAttr::Flags | FetchAttr::ModSeq)
}

impl<S: MailboxStore> Session<'_, S> {
    /// FETCH / UID FETCH (RFC 9051 §6.4.5).
    pub(crate) async fn fetch<IO: AsyncWrite + Unpin>(
        &mut self,
        tag: &Tag,
        f: &FetchCommand,
        out: &mut Vec<u8>,
        io: &mut IO,
    ) -> Result<(), Outcome> {
        let what = if f.uid { "UID FETCH" } else { "FETCH" };
        if f.vanished && (!f.uid || !self.qresync || f.changed_since.is_none()) {
            // RFC 7162 §3.2.6: VANISHED only in UID FETCH, with CHANGEDSINCE, after
            // ENABLE QRESYNC.
            bad(
                out,
                tag,
                "VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC",
            );
            return Ok(());
        }
        if f.changed_since.is_some() || f.items.contains(&FetchAttr::ModSeq) {
            // RFC 7162 §3.1: using a MODSEQ feature enables CONDSTORE.
            self.enable_condstore(out);
        }
        // Current flags, new mail; expunges wait (RFC 9051 §7.5.1).
        self.sync_keeping_numbers(out).await;
        let utf8 = self.utf8_ok();
        let Some(sel) = self.selected.as_ref() else {
            bad(out, tag, "no mailbox selected");
            return Ok(());
        };
        let since = f.changed_since.map(|m| m.0);
        let mut targets: Vec<Target> = sel
            .resolve(&f.set, f.uid)
            .into_iter()
            .filter_map(|(seq, i)| sel.slots.get(i).map(|m| (seq, m)))
            .filter(|(_, m)| since.is_none_or(|s| m.modseq > s))
            .map(|(seq, m)| Target {
                seq,
                entry: MessageEntry {
                    uid: m.uid,
                    blob: BlobId([0; 32]),
                    size: 0,
                    ascii_size: None,
                    flags: m.flags,
                    keywords: sel.keywords_of(m).to_vec(),
                    modseq: m.modseq,
                    received: SystemTime::UNIX_EPOCH,
                },
                recent: sel.is_recent(m.uid),
                seen_now: false,
            })
            .collect();
        let id = sel.id;
        let read_only = sel.read_only;
        let max_uid = sel.max_uid();
        let store = &self.shared.store;
        if let (true, Some(since)) = (f.vanished, since) {
            // RFC 7162 §3.2.6: the UIDs of the set expunged since CHANGEDSINCE.
            match store.delta(id, since).await {
                Ok(d) => {
                    let gone = d
                        .expunged
                        .iter()
                        .map(|u| u.0)
                        .filter(|&u| f.set.contains(u, max_uid.max(u)));
                    if let Some(set) = SequenceSet::compact(gone) {
                        line(out, &format!("* VANISHED (EARLIER) {set}"));
                    }
                }
                Err(e) => {
                    store_error(out, tag, &e);
                    return Ok(());
                }
            }
        }
        if !read_only && f.items.iter().any(FetchAttr::sets_seen) {
            let unseen: Vec<Uid> = targets
                .iter()
                .filter(|t| !t.entry.flags.contains(Flags::SEEN))
                .map(|t| t.entry.uid)
                .collect();
            if !unseen.is_empty() {
                let stored = match store
                    .store_flags(id, &unseen, FlagOp::Add, Flags::SEEN, &[], None)
                    .await
                {
                    Ok(s) => s,
                    Err(e) => {
                        store_error(out, tag, &e);
                        return Ok(());
                    }
                };
                for changed in stored.changed {
                    if let Some(sel) = self.selected.as_mut() {
                        sel.update(&changed);
                    }
                    if let Ok(i) = targets.binary_search_by_key(&changed.uid, |t| t.entry.uid)
                        && let Some(t) = targets.get_mut(i)
                    {
                        t.entry.flags = changed.flags;
                        t.entry.keywords = changed.keywords;
                        t.entry.modseq = changed.modseq;
                        t.seen_now = true;
                    }
                }
            }
        }
        let needs_meta = f.items.iter().any(needs_structure);
        let needs_entry = !f.items.iter().all(from_snapshot);
        let with_modseq = f.changed_since.is_some() || f.items.contains(&FetchAttr::ModSeq);
        let mut unknown_cte = false;
        let mut damaged = false;
        for batch in targets.chunks_mut(META_BATCH) {
            let uids: Vec<Uid> = batch.iter().map(|t| t.entry.uid).collect();
            // Every item that needs the structure needs the entry too.
            let (stored_entries, metas): (Vec<MessageEntry>, Vec<StoredMeta>) = if needs_entry {
                match store.entries_and_metas(id, &uids, needs_meta).await {
                    Ok(both) => both,
                    Err(e) => {
                        store_error(out, tag, &e);
                        return Ok(());
                    }
                }
            } else {
                (Vec::new(), Vec::new())
            };
            let mut ahead = if needs_meta {
                read_ahead(store, batch, &stored_entries, &metas, &f.items, utf8).await
            } else {
                Vec::new()
            };
            for (i, t) in batch.iter_mut().enumerate() {
                if needs_entry {
                    // A message expunged by another session is still in this one's
                    // snapshot but has nothing left to show: it gets no response
                    // (RFC 2180 §4.1.2 allows that).
                    let Ok(k) = stored_entries.binary_search_by_key(&t.entry.uid, |e| e.uid) else {
                        continue;
                    };
                    if let Some(e) = stored_entries.get(k) {
                        t.entry.blob = e.blob;
                        t.entry.size = e.size;
                        t.entry.ascii_size = e.ascii_size;
                        t.entry.received = e.received;
                    }
                }
                let t = &*t;
                let stored = metas
                    .binary_search_by_key(&t.entry.uid, |s| s.uid)
                    .ok()
                    .and_then(|k| metas.get(k));
                let read = ahead.get_mut(i).and_then(Option::take);
                let data = match MessageData::load(
                    store,
                    &t.entry,
                    stored,
                    utf8,
                    &f.items,
                    read.as_ref(),
                )
                .await
                {
                    Ok(d) => d,
                    Err(StoreError::Damaged(e)) => {
                        tracing::warn!(uid = t.entry.uid.0, error = %e, "FETCH of a damaged message");
                        damaged = true;
                        continue;
                    }
                    Err(e) => {
                        // Nothing of this message was written yet: end the command.
                        store_error(out, tag, &e);
                        return Ok(());
                    }
                };
                if !binary_check(&data, &f.items) {
                    unknown_cte = true;
                    continue;
                }
                // The blob is opened (and its size checked) before the response
                // starts: once a literal is announced, a failure can only close.
                let reader = if data.items.iter().any(|c| matches!(c, Content::Range(_))) {
                    match store.read_blob(&t.entry.blob).await {
                        Ok(r) => Some(r),
                        Err(StoreError::Damaged(e)) => {
                            tracing::warn!(uid = t.entry.uid.0, error = %e, "FETCH of a damaged message");
                            damaged = true;
                            continue;
                        }
                        Err(e) => {
                            store_error(out, tag, &e);
                            return Ok(());
                        }
                    }
                } else {
                    None
                };
                self.fetch_one(t, &data, reader, f, with_modseq, out, io)
                    .await?;
            }
        }
        if damaged {
            // RFC 9051 §6.4.5 "NO - fetch error: can't fetch that data"; §7.1
            // SERVERBUG: the server broke one of its own invariants (a stored
            // message's bytes are gone). The other messages were answered.
            no(
                out,
                tag,
                &format!("[SERVERBUG] a message is damaged in storage; {what} partly done"),
            );
        } else if unknown_cte {
            // RFC 3516 §4.3.
            no(
                out,
                tag,
                &format!("[UNKNOWN-CTE] unknown Content-Transfer-Encoding; {what} partly done"),
            );
        } else {
            ok(out, tag, &format!("{what} completed"));
        }
        Ok(())
    }

    /// Writes one `* n FETCH (...)` response, streaming large sections; `reader` is
    /// the blob opened for the first streamed section.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_one<IO: AsyncWrite + Unpin>(
        &self,
        t: &Target,
        data: &MessageData,
        mut reader: Option<buudien_store::BlobReader>,
        f: &FetchCommand,
        with_modseq: bool,
        out: &mut Vec<u8>,
        io: &mut IO,
    ) -> Result<(), Outcome> {
        let idle = self.shared.config.idle_timeout;
        let store = &self.shared.store;
        let m = &t.entry;
        let mode = if self.utf8_ok() {
            TextMode::Utf8
        } else {
            TextMode::Ascii
        };
        let mut r = response::FetchResponse::start(out, t.seq, mode);
        if f.uid && !f.items.contains(&FetchAttr::Uid) {
            // RFC 9051 §6.4.9: UID FETCH responses always carry the UID.
            r.uid(m.uid.0);
        }
        if t.seen_now && !f.items.contains(&FetchAttr::Flags) {
            // The \Seen flag this FETCH set (RFC 9051 §6.4.5).
            let mut v = Vec::new();
            write_flags(&mut v, m, t.recent);
            r.raw("FLAGS", &v);
        }
        if with_modseq && !f.items.contains(&FetchAttr::ModSeq) {
            r.modseq(ModSeq(m.modseq));
        }
        for (index, attr) in f.items.iter().enumerate() {
            match attr {
                FetchAttr::Uid => r.uid(m.uid.0),
                FetchAttr::Flags => {
                    let mut v = Vec::new();
                    write_flags(&mut v, m, t.recent);
                    r.raw("FLAGS", &v);
                }
                FetchAttr::InternalDate => {
                    let secs = m
                        .received
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
                    if let Some(dt) = DateTime::from_unix(secs, 0) {
                        r.internal_date(&dt);
                    }
                }
                FetchAttr::Rfc822Size => r.rfc822_size(data.size),
                FetchAttr::ModSeq => r.modseq(ModSeq(m.modseq)),
                FetchAttr::Envelope => {
                    let mut v = Vec::new();
                    if let Some(meta) = &data.meta {
                        buudien_message::render_envelope(meta, &mut v, data.utf8);
                    }
                    r.raw("ENVELOPE", &v);
                }
                FetchAttr::Body | FetchAttr::BodyStructure => {
                    let ext = matches!(attr, FetchAttr::BodyStructure);
                    let mut v = Vec::new();
                    if let Some(meta) = &data.meta {
                        buudien_message::render_bodystructure(meta, &mut v, ext, data.utf8);
                    }
                    r.raw(if ext { "BODYSTRUCTURE" } else { "BODY" }, &v);
                }
                FetchAttr::BinarySize { .. } => {
                    let n = match item_content(data, index) {
                        Content::Size(n) => n,
                        _ => 0,
                    };
                    r.binary_size(attr, n);
                }
                _ => match item_content(data, index) {
                    Content::Bytes(mut b) => {
                        if !matches!(attr, FetchAttr::Binary { .. }) {
                            crate::drive::replace_nul(&mut b);
                        }
                        r.section(attr, Some(&b))
                    }
                    Content::Nil | Content::Size(_) | Content::UnknownCte => r.section(attr, None),
                    Content::Range(range) => {
                        let len = range.end.saturating_sub(range.start);
                        r.section_header(attr, len, false);
                        let opened = match reader.take() {
                            Some(r) => Ok(r),
                            None => store.read_blob(&m.blob).await,
                        };
                        let reader = match opened {
                            Ok(reader) => reader,
                            Err(e) => {
                                // The literal is announced: the only way out is to close.
                                tracing::warn!(error = %e, "blob unavailable mid-FETCH");
                                return Err(Outcome::Closed);
                            }
                        };
                        if range.start == 0 {
                            stream_blob(io, r.buffer(), idle, reader, len).await?;
                        } else {
                            stream_range(io, r.buffer(), idle, reader, range.start, len).await?;
                        }
                    }
                },
            }
        }
        r.finish();
        Ok(())
    }
}

/// True for an item answered from the top-level header's bytes in memory
/// (`BODY[HEADER.FIELDS (…)]`, `BODY[HEADER.FIELDS.NOT (…)]`).
fn wants_header_fields(attr: &FetchAttr) -> bool {
    matches!(
        attr,
        FetchAttr::BodySection { section, .. }
            if section.part.is_empty()
                && matches!(
                    section.text,
                    Some(SectionText::HeaderFields(_) | SectionText::HeaderFieldsNot(_))
                )
    )
}

/// The headers of a batch's messages, read in one go when the FETCH asks for header
/// fields (a client listing a mailbox): one store call, one read transaction in
/// SQLite, instead of one per message. Indexed like `batch`; `None` where nothing was
/// read ahead (a message served as its surrogate, one without a stored structure,
/// past [`AHEAD_BUDGET`], one the store leaves to `read_blob_range`, or any error:
/// the message's own read then answers for it).
async fn read_ahead<S: MailboxStore>(
    store: &S,
    batch: &[Target],
    entries: &[MessageEntry],
    metas: &[StoredMeta],
    items: &[FetchAttr],
    utf8: bool,
) -> Vec<Option<Ahead>> {
    let mut out: Vec<Option<Ahead>> = Vec::new();
    if !items.iter().any(wants_header_fields) {
        return out;
    }
    out.resize_with(batch.len(), || None);
    let mut wants = Vec::new();
    let mut at = Vec::new();
    let mut budget = AHEAD_BUDGET;
    for (i, t) in batch.iter().enumerate() {
        let uid = t.entry.uid;
        let Some(entry) = entries
            .binary_search_by_key(&uid, |e| e.uid)
            .ok()
            .and_then(|k| entries.get(k))
        else {
            continue;
        };
        if !utf8 && entry.ascii_size.is_some() {
            // Served from its surrogate, made from the whole message.
            continue;
        }
        let Some(meta) = metas
            .binary_search_by_key(&uid, |s| s.uid)
            .ok()
            .and_then(|k| metas.get(k))
            .and_then(|s| s.meta.as_deref())
            .and_then(|b| buudien_message::MessageMeta::from_bytes(b).ok())
        else {
            continue;
        };
        let r = meta.root.header_range();
        let range = r.start as u64..r.end as u64;
        let len = range.end.saturating_sub(range.start);
        if len > budget {
            break;
        }
        budget -= len;
        wants.push((entry.blob, range));
        at.push(i);
    }
    if wants.is_empty() {
        return out;
    }
    if let Ok(read) = store.read_blob_ranges(&wants).await {
        for ((i, (_, range)), bytes) in at.into_iter().zip(wants).zip(read) {
            if let (Some(slot), Some(bytes)) = (out.get_mut(i), bytes) {
                *slot = Some((range, bytes));
            }
        }
    }
    out
}
