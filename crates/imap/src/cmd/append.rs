//! APPEND (RFC 9051 §6.3.12, RFC 3502 MULTIAPPEND).

use crate::reply::*;
use crate::selected::store_flags;
use crate::session::Session;
use buudien_imap_proto::{AppendData, AppendMessage, Mailbox as Name, Tag};
use buudien_store::{Mailbox, MailboxStore, MessageSource, NewMessage};
use std::time::SystemTime;

impl<S: MailboxStore> Session<'_, S> {
    /// The mailbox an APPEND, COPY or MOVE puts messages into; `None` after answering
    /// `NO [TRYCREATE]` (RFC 9051 §6.3.12, §6.4.7) or the store's error.
    pub(crate) async fn target(
        &self,
        tag: &Tag,
        mailbox: &Name,
        out: &mut Vec<u8>,
    ) -> Option<Mailbox> {
        match self
            .shared
            .store
            .mailbox(self.acct(), mailbox.as_str())
            .await
        {
            Ok(Some(mb)) => Some(mb),
            Ok(None) => {
                out.extend_from_slice(
                    format!("{tag} NO [TRYCREATE] no such mailbox\r\n").as_bytes(),
                );
                None
            }
            Err(e) => {
                store_error(out, tag, &e);
                None
            }
        }
    }

    /// APPEND (RFC 9051 §6.3.12) with APPENDUID (RFC 4315 §3).
    pub(crate) async fn append(
        &mut self,
        tag: &Tag,
        mailbox: &Name,
        messages: Vec<AppendMessage>,
        out: &mut Vec<u8>,
    ) {
        let spooled = match self.spool.take() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "APPEND spool failed");
                out.extend_from_slice(
                    format!("{tag} NO [UNAVAILABLE] cannot store the message now\r\n").as_bytes(),
                );
                return;
            }
        };
        let mut spooled = spooled.into_iter();
        let Some(mb) = self.target(tag, mailbox, out).await else {
            return;
        };
        let store = &self.shared.store;
        let mut batch = Vec::with_capacity(messages.len());
        for msg in messages {
            let source = match msg.data {
                AppendData::Buffered(b) => MessageSource::Bytes(b),
                AppendData::Streamed { .. } => {
                    spooled.next().unwrap_or(MessageSource::Bytes(Vec::new()))
                }
            };
            let (flags, keywords) = store_flags(&msg.flags);
            let received = msg
                .date
                .and_then(|d| {
                    u64::try_from(d.unix_time())
                        .ok()
                        .map(|s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s))
                })
                .unwrap_or_else(SystemTime::now);
            batch.push(NewMessage {
                source,
                flags,
                keywords,
                received,
            });
        }
        // RFC 3502 §6.3.11: all messages or none, in one transaction.
        let uids: Vec<u32> = match store.append_many(mb.id, batch).await {
            Ok(entries) => entries.iter().map(|e| e.uid.0).collect(),
            Err(e) => return store_error(out, tag, &e),
        };
        // A message appended to the selected mailbox shows up as EXISTS now.
        self.sync(out).await;
        let set = uid_set(&uids);
        ok(
            out,
            tag,
            &format!("[APPENDUID {} {set}] APPEND completed", mb.uidvalidity.0),
        );
    }
}
