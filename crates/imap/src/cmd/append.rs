//! APPEND (RFC 9051 §6.3.12, RFC 3502 MULTIAPPEND).

use crate::reply::*;
use crate::selected::store_flags;
use crate::session::Session;
use buudien_imap_proto::{AppendData, AppendMessage, Mailbox as Name, Tag};
use buudien_store::MailboxStore;
use std::time::SystemTime;

impl<S: MailboxStore> Session<'_, S> {
    /// APPEND (RFC 9051 §6.3.12) with APPENDUID (RFC 4315 §3).
    pub(crate) async fn append(
        &mut self,
        tag: &Tag,
        mailbox: &Name,
        messages: Vec<AppendMessage>,
        out: &mut Vec<u8>,
    ) {
        let mut streamed = std::mem::take(&mut self.appended).into_iter();
        let store = &self.shared.store;
        let mb = match store.mailbox(self.acct(), mailbox.as_str()).await {
            Ok(Some(mb)) => mb,
            Ok(None) => {
                out.extend_from_slice(
                    format!("{tag} NO [TRYCREATE] no such mailbox\r\n").as_bytes(),
                );
                return;
            }
            Err(e) => return store_error(out, tag, &e),
        };
        let mut uids = Vec::new();
        for msg in messages {
            let data = match msg.data {
                AppendData::Buffered(b) => b,
                AppendData::Streamed { .. } => streamed.next().unwrap_or_default(),
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
            match store.append(mb.id, &data, flags, &keywords, received).await {
                Ok(e) => uids.push(e.uid.0),
                Err(e) => return store_error(out, tag, &e),
            }
        }
        let set = uid_set(&uids);
        ok(
            out,
            tag,
            &format!("[APPENDUID {} {set}] APPEND completed", mb.uidvalidity.0),
        );
    }
}
