//! FETCH and UID FETCH (RFC 9051 §6.4.5).

use crate::drive::stream_blob;
use crate::reply::*;
use crate::selected::write_flags;
use crate::session::{Outcome, Session};
use buudien_imap_proto::response::{self};
use buudien_imap_proto::{DateTime, FetchAttr, FetchCommand, Tag, TextMode};
use buudien_store::{FlagOp, Flags, MailboxStore, MessageEntry};
use buudien_types::Uid;
use std::time::SystemTime;
use tokio::io::AsyncWrite;

impl<S: MailboxStore> Session<'_, S> {
    /// FETCH / UID FETCH (RFC 9051 §6.4.5) of UID, FLAGS, INTERNALDATE, RFC822.SIZE,
    /// MODSEQ, BODY[] / BODY.PEEK[] / RFC822 (whole message only).
    pub(crate) async fn fetch<IO: AsyncWrite + Unpin>(
        &mut self,
        tag: &Tag,
        f: &FetchCommand,
        out: &mut Vec<u8>,
        io: &mut IO,
    ) -> Result<(), Outcome> {
        let Some(sel) = self.selected.as_ref() else {
            bad(out, tag, "no mailbox selected");
            return Ok(());
        };
        for attr in &f.items {
            let whole = match attr {
                FetchAttr::BodySection {
                    section, partial, ..
                } => section.part.is_empty() && section.text.is_none() && partial.is_none(),
                _ => true,
            };
            let supported = matches!(
                attr,
                FetchAttr::Uid
                    | FetchAttr::Flags
                    | FetchAttr::InternalDate
                    | FetchAttr::Rfc822Size
                    | FetchAttr::ModSeq
                    | FetchAttr::Rfc822
                    | FetchAttr::BodySection { .. }
            );
            if !supported || !whole {
                out.extend_from_slice(
                    format!("{tag} NO [CANNOT] fetch item not implemented yet\r\n").as_bytes(),
                );
                return Ok(());
            }
        }
        let targets = sel.resolve(&f.set, f.uid);
        let sets_seen = !sel.read_only && f.items.iter().any(FetchAttr::sets_seen);
        let id = sel.id;
        let mut entries: Vec<(u32, MessageEntry)> = targets
            .iter()
            .filter_map(|&(seq, i)| sel.messages.get(i).map(|m| (seq, m.clone())))
            .collect();
        let store = &self.shared.store;
        if sets_seen {
            let unseen: Vec<Uid> = entries
                .iter()
                .filter(|(_, m)| !m.flags.contains(Flags::SEEN))
                .map(|(_, m)| m.uid)
                .collect();
            if !unseen.is_empty() {
                match store
                    .store_flags(id, &unseen, FlagOp::Add, Flags::SEEN, &[], None)
                    .await
                {
                    Ok(stored) => {
                        for changed in stored.changed {
                            if let Some(sel) = self.selected.as_mut()
                                && let Ok(i) =
                                    sel.messages.binary_search_by_key(&changed.uid, |m| m.uid)
                                && let Some(slot) = sel.messages.get_mut(i)
                            {
                                *slot = changed.clone();
                            }
                            for (_, e) in entries.iter_mut() {
                                if e.uid == changed.uid {
                                    *e = changed.clone();
                                }
                            }
                        }
                    }
                    Err(e) => {
                        store_error(out, tag, &e);
                        return Ok(());
                    }
                }
            }
        }
        let idle = self.shared.config.idle_timeout;
        for (seq, m) in &entries {
            let mut r = response::FetchResponse::start(out, *seq, TextMode::Ascii);
            if f.uid && !f.items.contains(&FetchAttr::Uid) {
                r.uid(m.uid.0);
            }
            let mut bodies = Vec::new();
            for attr in &f.items {
                match attr {
                    FetchAttr::Uid => r.uid(m.uid.0),
                    FetchAttr::Flags => {
                        let mut v = Vec::new();
                        write_flags(&mut v, m, false);
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
                    FetchAttr::Rfc822Size => r.rfc822_size(m.size),
                    FetchAttr::ModSeq => r.modseq(buudien_types::ModSeq(m.modseq)),
                    _ => bodies.push(attr),
                }
            }
            // Bodies go last (item order is free, RFC 9051 §7.5.2): each is a literal
            // header, then the blob copied straight to the transport.
            let mut first = true;
            for attr in bodies {
                if first {
                    r.section_header(attr, m.size, false);
                    first = false;
                } else {
                    let buf = r.buffer();
                    buf.push(b' ');
                    attr.write_response_name(buf);
                    buf.extend_from_slice(format!(" {{{}}}\r\n", m.size).as_bytes());
                }
                let reader = match store.read_blob(&m.blob).await {
                    Ok(reader) => reader,
                    Err(e) => {
                        // The literal header is announced: the only way out is to close.
                        tracing::warn!(error = %e, "blob unavailable mid-FETCH");
                        return Err(Outcome::Closed);
                    }
                };
                stream_blob(io, r.buffer(), idle, reader, m.size).await?;
            }
            r.finish();
        }
        ok(
            out,
            tag,
            &format!("{} completed", if f.uid { "UID FETCH" } else { "FETCH" }),
        );
        Ok(())
    }
}
